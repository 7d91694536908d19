package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/PID/stat times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// treeCPUTime is cpuTime of pid plus its live children (nginx workers).
func treeCPUTime(pid int) (time.Duration, error) {
	total, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	for _, child := range children(pid) {
		if t, err := cpuTime(child); err == nil {
			total += t
		}
	}
	return total, nil
}

// children lists the child process ids of pid's threads.
func children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/PID/stat
// line; the command name in parentheses may itself hold spaces.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command field")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command", len(f))
	}
	var total int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		total += v
	}
	return time.Duration(total) * clockTick, nil
}

// cpuMeter adds up the CPU time that named processes spend over chosen
// windows, to tell where a case's time goes.
type cpuMeter struct {
	pids  map[string]int
	used  map[string]time.Duration
	start map[string]time.Duration
}

// newCPUMeter watches the given processes; "bench" (this process) is
// always included.
func newCPUMeter(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: map[string]int{"bench": os.Getpid()}, used: map[string]time.Duration{}}
	for name, pid := range pids {
		m.pids[name] = pid
	}
	return m
}

// sample reads the CPU time of one watched process: the bench alone (its
// children are the other components), any other with its children.
func (m *cpuMeter) sample(name string, pid int) (time.Duration, error) {
	if name == "bench" {
		return cpuTime(pid)
	}
	return treeCPUTime(pid)
}

// begin opens a window.
func (m *cpuMeter) begin() {
	m.start = map[string]time.Duration{}
	for name, pid := range m.pids {
		if t, err := m.sample(name, pid); err == nil {
			m.start[name] = t
		}
	}
}

// end closes the window and adds its CPU time.
func (m *cpuMeter) end() {
	for name, pid := range m.pids {
		s, ok := m.start[name]
		if t, err := m.sample(name, pid); err == nil && ok {
			m.used[name] += t - s
		}
	}
}

// perUnit renders "bench 120 µs, upstream 800 µs" for n units of work
// (requests, GiB), largest first.
func (m *cpuMeter) perUnit(n float64, unit string) string {
	if n <= 0 {
		return ""
	}
	names := make([]string, 0, len(m.used))
	for name := range m.used {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return m.used[names[i]] > m.used[names[j]] })
	parts := make([]string, len(names))
	for i, name := range names {
		v := float64(m.used[name]) / n
		switch unit {
		case "µs":
			parts[i] = fmt.Sprintf("%s %.0f µs", name, v/1e3)
		default:
			parts[i] = fmt.Sprintf("%s %.2f s", name, v/1e9)
		}
	}
	return strings.Join(parts, ", ")
}

package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// row is one line of the results table.
type row struct {
	kase     string // "1 GET tag c=1"
	metric   string
	baseline string
	proxy    string
	ratio    string
	goal     string
	met      string // "yes", "NO" or "—"
}

// report collects the rows and notes of a run.
type report struct {
	mu    sync.Mutex
	rows  []row
	notes []string
}

func (r *report) add(x row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range []*string{&x.kase, &x.metric, &x.baseline, &x.proxy, &x.ratio, &x.goal, &x.met} {
		*p = strings.ReplaceAll(*p, "|", `\|`)
		if *p == "" {
			*p = "—"
		}
	}
	r.rows = append(r.rows, x)
}

// fail records that a case could not measure, with the reason.
func (r *report) fail(kase, metric string, err error) {
	msg := strings.ReplaceAll(err.Error(), "|", "/")
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	r.add(row{kase: kase, metric: metric, proxy: "error: " + msg, met: "—"})
}

// note adds a sentence under the table.
func (r *report) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// met renders a goal check.
func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// markdown renders the whole report.
func (r *report) markdown(machine, command string, took time.Duration) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("## Benchmark results\n\n")
	fmt.Fprintf(&b, "Machine: %s  \n", machine)
	fmt.Fprintf(&b, "Command: `%s` (run took %s)\n\n", command, took.Round(time.Second))
	b.WriteString("| case | metric | baseline | proxy | ratio | goal | met? |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n",
			x.kase, x.metric, x.baseline, x.proxy, x.ratio, x.goal, x.met)
	}
	if len(r.notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// machineLine names the machine: CPU count and model, Go version, OS, date.
func machineLine() string {
	return fmt.Sprintf("%d CPU (nproc), %s, %s %s/%s, %s",
		runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// loadAverage is the 1-minute load average of /proc/loadavg, -1 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// loadNote says how busy the machine was; figures taken while other work
// ran are not comparable with an idle run.
func loadNote(start, end float64) string {
	s := fmt.Sprintf("Load average (1 min): %.2f at start, %.2f at end (the bench's own work included), on %d CPUs.",
		start, end, runtime.NumCPU())
	if start > float64(runtime.NumCPU())/2 {
		s += " The machine was busy with other work: read the ratios, not the absolute figures, and rerun on an idle machine."
	}
	return s
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// commandLine is how to rerun with the same settings.
func commandLine(o *options) string {
	c := "go run ./e2e/bench"
	if o.quick {
		c += " -quick"
	}
	if o.out != "" {
		c += " -out " + o.out
	}
	if o.cases.String() != "1,2,3,4,5,6,7,8,9,10,11" {
		c += " -cases " + o.cases.String()
	}
	return c + fmt.Sprintf("; %s per load case", o.duration)
}

// Number formats used in the table.
func fRPS(v float64) string       { return fmt.Sprintf("%.0f req/s", v) }
func fMS(d time.Duration) string  { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
func fRatio(v float64) string     { return fmt.Sprintf("%.2fx", v) }
func fMBps(v float64) string      { return fmt.Sprintf("%.0f MB/s", v) }
func fMiB(v int64) string         { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
func fSec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func fAddMS(d time.Duration) string {
	return fmt.Sprintf("%+.3f ms", float64(d)/1e6)
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// caseBlob is case 4: throughput of one large blob GET, direct, through the
// proxy, through nginx and through the distribution pull-through cache.
// Goal: proxy >= 0.9x direct and at least nginx's figure; proxy peak RSS
// below 64 MiB while streaming.
func caseBlob(ctx context.Context, e *env, r *report) {
	label := fmt.Sprintf("4 blob %d MiB", e.bigSize>>20)
	path := "/v2/" + bigRepo + "/blobs/" + e.bigBlob
	targets := []struct {
		name string
		srv  *server
	}{
		{"direct", e.upstream}, {"proxy", e.proxy}, {"nginx", e.nginx}, {"pull-through", e.pullThrough},
	}
	mbps := map[string]float64{}
	var peak int64
	var cpu []string
	for _, t := range targets {
		var mon *rssMonitor
		pids := e.pids(t.name == "proxy")
		if t.name == "proxy" && t.srv.proc != nil {
			mon = startRSSMonitor(t.srv.pid())
		} else if t.srv.proc != nil && t.srv != e.upstream {
			pids[t.name] = t.srv.pid()
		}
		meter := newCPUMeter(pids)
		meter.begin()
		v, err := medianThroughput(ctx, t.srv.url()+path, e.bigSize, e.o.blobReps)
		meter.end()
		if mon != nil {
			peak = mon.stop()
		}
		gib := float64(e.bigSize) * float64(e.o.blobReps) / (1 << 30)
		cpu = append(cpu, t.name+": "+meter.perUnit(gib, "s"))
		if err != nil {
			r.fail(label, t.name+" throughput", err)
			continue
		}
		mbps[t.name] = v
	}
	d, ok := mbps["direct"]
	if !ok {
		return
	}
	if p, ok := mbps["proxy"]; ok {
		r.add(row{kase: label, metric: "throughput, proxy", baseline: "direct " + fMBps(d), proxy: fMBps(p),
			ratio: fRatio(ratio(p, d)), goal: ">= 0.9x", met: met(ratio(p, d) >= 0.9)})
		if n, ok := mbps["nginx"]; ok {
			r.add(row{kase: label, metric: "throughput, proxy vs nginx", baseline: "nginx " + fMBps(n), proxy: fMBps(p),
				ratio: fRatio(ratio(p, n)), goal: ">= 1.0x", met: met(p >= n)})
		}
		if peak > 0 {
			r.add(row{kase: label, metric: "proxy peak RSS while streaming", proxy: fMiB(peak),
				goal: "< 64 MiB", met: met(peak < 64<<20)})
		}
	}
	for _, peer := range []string{"nginx", "pull-through"} {
		if v, ok := mbps[peer]; ok {
			r.add(row{kase: label, metric: "throughput, " + peer + " (peer)", baseline: "direct " + fMBps(d),
				proxy: peer + " " + fMBps(v), ratio: fRatio(ratio(v, d))})
		}
	}
	r.note("Case 4: median of %d reads per target; the pull-through cache's first read fetches from the upstream while it stores the blob. "+
		"CPU per GiB read: %s.", e.o.blobReps, strings.Join(cpu, "; "))
}

// medianThroughput reads url reps times and returns the median MB/s.
func medianThroughput(ctx context.Context, url string, size int64, reps int) (float64, error) {
	var vals []float64
	for i := 0; i < reps; i++ {
		v, err := readBlob(ctx, url, size)
		if err != nil {
			return 0, err
		}
		vals = append(vals, v)
	}
	sort.Float64s(vals)
	return vals[len(vals)/2], nil
}

// readBlob GETs a blob on a fresh connection, discards it and returns MB/s
// (10^6 bytes per second). The length must be exactly size.
func readBlob(ctx context.Context, url string, size int64) (float64, error) {
	c := newClient(1)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("GET %s after %d bytes: %w", url, n, err)
		}
	}
	el := time.Since(start)
	if n != size {
		return 0, fmt.Errorf("GET %s: %d bytes, want %d", url, n, size)
	}
	return float64(n) / el.Seconds() / 1e6, nil
}

// rssMonitor samples a process's resident set while a case runs.
type rssMonitor struct {
	pid   int
	reset bool // VmHWM was reset, so it is the peak of this window
	quit  chan struct{}
	wg    sync.WaitGroup
	max   int64
}

// startRSSMonitor resets the process's peak RSS (clear_refs 5, Linux >= 4.0)
// and samples VmRSS every 10 ms until stop.
func startRSSMonitor(pid int) *rssMonitor {
	m := &rssMonitor{pid: pid, quit: make(chan struct{})}
	m.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "VmRSS"); err == nil && v > m.max {
				m.max = v
			}
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// stop ends sampling and returns the peak in bytes: VmHWM when it could be
// reset, else the largest sample.
func (m *rssMonitor) stop() int64 {
	close(m.quit)
	m.wg.Wait()
	if m.reset {
		if v, err := procStatus(m.pid, "VmHWM"); err == nil && v > m.max {
			return v
		}
	}
	return m.max
}

// procStatus reads one "kB" field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusField(f, field)
}

// parseStatusField finds "Field:   123 kB" and returns 123*1024.
func parseStatusField(r io.Reader, field string) (int64, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok || k != field {
			continue
		}
		num := strings.TrimSuffix(strings.TrimSpace(v), " kB")
		kb, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s not found", field)
}

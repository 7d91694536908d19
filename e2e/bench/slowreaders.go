package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Case 9: slow readers. Many connections each ask for a large admitted
// manifest with credentials of their own (so that no two requests share an
// upstream fetch) and never read the answer. The proxy must stay within
// bounded memory while they hang on, and serve a new client at once after
// they leave.

// slowManifestSize is roughly the size of the manifest case 9 asks for.
const slowManifestSize = 3_500_000

// slowRepo holds the large signed manifest of case 9.
const slowRepo = "bench/slow"

// slowPeakGoal is the bound on the proxy's peak RSS.
const slowPeakGoal = 128 << 20

// slowRecoverGoal is what "served at once" means for the recovery figure.
const slowRecoverGoal = time.Second

// slowReaderRcvBuf is the receive buffer of a slow reader's socket: small,
// so that the manifest stays in the proxy, not in the kernel's buffers.
const slowReaderRcvBuf = 4096

// caseSlowReaders is case 9: -slow-readers connections (1500) with distinct
// Authorization headers GET a ~3.5 MB signed manifest and never read it,
// for -slow-hold (20s), first by tag, then by digest, each against a proxy
// started for it. Goals: proxy peak RSS below 128 MiB; a new client served
// 200 at once after the slow readers leave.
func caseSlowReaders(ctx context.Context, e *env, r *report) {
	n := e.o.slowReaders
	if lim := raiseNoFile(); lim > 0 && uint64(n)+256 > lim {
		n = int(lim) - 256
		r.note("Case 9: RLIMIT_NOFILE is %d; %d slow readers instead of %d.", lim, n, e.o.slowReaders)
	}
	for _, by := range []string{"tag", "digest"} {
		if ctx.Err() != nil {
			return
		}
		label := fmt.Sprintf("9 slow readers by %s, %d x 3.5 MB", by, n)
		res, err := runSlowReaders(ctx, e, by, n)
		if err != nil {
			r.fail(label, "slow readers", err)
			continue
		}
		res.rows(r, label)
	}
	r.note("Case 9: each slow reader opens its own connection (receive buffer %d bytes), sends one manifest GET "+
		"with an Authorization of its own and reads nothing for %s; then its status line is read and it is closed. "+
		"Each run (by tag, by digest) has an upstream docker-registry and a proxy of its own, the proxy warmed by one GET; "+
		"the upstream checks no credentials, so every slow reader may read the manifest. "+
		"RSS is the process's own (VmRSS sampled every 10 ms, VmHWM after clear_refs).",
		slowReaderRcvBuf, e.o.slowHold)
}

// slowUpstream starts a docker-registry of its own for one run of case 9
// and pushes and signs the large manifest in it.
func slowUpstream(ctx context.Context, e *env, by string) (*server, seeded, error) {
	up, err := startRegistry(ctx, e.ws, "upstream-slow-"+by, "")
	if err != nil {
		return nil, seeded{}, err
	}
	t := time.Now()
	img, size, err := seedLargeManifest(ctx, e, up)
	if err != nil {
		up.stop()
		return nil, seeded{}, fmt.Errorf("seed a large signed manifest: %w", err)
	}
	log.Printf("case 9 %s: pushed and signed a %d-byte manifest in %s", by, size, time.Since(t).Round(time.Millisecond))
	return up, img, nil
}

// slowProxy starts a proxy for up (named by its address) as a subprocess
// or, with -profile, inside this process; stop ends it.
func slowProxy(ctx context.Context, e *env, name string, up *server) (p *server, stop func(), err error) {
	if e.o.profile != "" {
		return startProxyInProcess(ctx, e.ws, name, up.addr, up.url(), e.pub)
	}
	p, err = startProxy(ctx, e.ws, name, e.cosign, up.addr, up.url(), e.pub)
	if err != nil {
		return nil, nil, err
	}
	return p, p.proc.stop, nil
}

// seedLargeManifest pushes an OCI image manifest of about slowManifestSize
// bytes (one small layer, the rest annotations) to slowRepo:v1 and signs
// it with the bench key.
func seedLargeManifest(ctx context.Context, e *env, up *server) (seeded, int, error) {
	rr := &rawRegistry{base: up.url(), client: newClient(1)}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgDigest, err := rr.putBlob(ctx, slowRepo, cfg)
	if err != nil {
		return seeded{}, 0, fmt.Errorf("config: %w", err)
	}
	layer := []byte("case 9 layer")
	layerDigest, err := rr.putBlob(ctx, slowRepo, layer)
	if err != nil {
		return seeded{}, 0, fmt.Errorf("layer: %w", err)
	}
	const chunk = 100_000
	ann := map[string]string{}
	pad := strings.Repeat("0123456789abcdef", chunk/16)
	for i := 0; i < slowManifestSize/chunk; i++ {
		ann[fmt.Sprintf("dev.cosign.bench.padding.%02d", i)] = pad
	}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	body, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mt,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": len(cfg)},
		"layers":        []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": len(layer)}},
		"annotations":   ann,
	})
	if err != nil {
		return seeded{}, 0, err
	}
	if err := rr.putManifest(ctx, slowRepo, "v1", mt, body); err != nil {
		return seeded{}, 0, err
	}
	s := seeded{repo: slowRepo, tag: "v1", digest: sha256Digest(body)}
	if err := signAll(ctx, e.cosign, e.key, []string{s.ref(up.addr)}); err != nil {
		return seeded{}, 0, err
	}
	return s, len(body), nil
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to the hard limit
// and returns the soft limit now in force (0 if unknown).
func raiseNoFile() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur
}

// slowResult is what one run of case 9 measured.
type slowResult struct {
	n                int
	idleRSS, peakRSS int64
	afterRSS         int64
	rssOK            bool // the RSS figures are the proxy process's own
	idleGo, peakGo   goStats
	afterGo          goStats
	opened           int
	dialErrs         int
	firstDialErr     string
	openTook         time.Duration
	status           map[string]int // "200", "503", other codes, "none"
	duringStatus     string
	duringLatency    time.Duration
	recovered        bool
	recoverAfter     time.Duration
	recoverTries     int
	recoverFirst     string // first non-200 answer while recovering
	heapProfile      string
	hold             time.Duration
	// The upstream, asked directly: how long it took to answer a GET of
	// the manifest mid-hold, and to answer one 200 after they left.
	upDuring, upAfter    time.Duration
	upDuringStatus       string
	upRecovered          bool
	upIdleRSS, upPeakRSS int64
	upIdle               time.Duration // a direct GET of the manifest before the slow readers
	memLow               bool          // the upstream was stopped: the machine ran low on memory
	proxyCPU, upCPU      time.Duration
}

// runSlowReaders starts an upstream holding the large signed manifest and a
// proxy in front of it, warms the proxy with one GET, and holds n slow
// readers of the manifest (by tag or by digest, as by says) against it.
func runSlowReaders(ctx context.Context, e *env, by string, n int) (*slowResult, error) {
	up, img, err := slowUpstream(ctx, e, by)
	if err != nil {
		return nil, err
	}
	defer up.stop()
	p, stopProxy, err := slowProxy(ctx, e, "proxy-slow-"+by, up)
	if err != nil {
		return nil, err
	}
	defer stopProxy()
	ref := img.tag
	if by == "digest" {
		ref = img.digest
	}
	path := "/v2/" + img.repo + "/manifests/" + ref
	url := p.url() + path
	upURL := up.url() + path
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	if code, _, err := getWithAuth(ctx, client, url, ""); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("warm-up GET %s: status %d, %v", path, code, err)
	}
	time.Sleep(500 * time.Millisecond)
	res := &slowResult{n: n, status: map[string]int{}, hold: e.o.slowHold}
	pid := 0
	if p.proc != nil {
		pid = p.pid()
		res.rssOK = true
		res.idleRSS, _ = procStatus(pid, "VmRSS")
	}
	upPid := up.pid()
	res.upIdleRSS, _ = procStatus(upPid, "VmRSS")
	proxyCPU0, _ := cpuTime(pid)
	upCPU0, _ := cpuTime(upPid)
	upMon := startRSSMonitor(upPid)
	guard := guardMemory(up)
	defer guard()
	res.idleGo = readGoStats(ctx, client, p.url())
	t0 := time.Now()
	if code, _, err := getWithAuth(ctx, client, upURL, ""); err == nil && code == http.StatusOK {
		res.upIdle = time.Since(t0)
	}

	var mon *rssMonitor
	if pid != 0 {
		mon = startRSSMonitor(pid)
	}
	gmon := startGoroutineMonitor(ctx, p.url())

	// Open the slow readers, 64 dials at a time.
	conns := make([]net.Conn, n)
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		mu       sync.Mutex
		dialErrs int
		firstErr string
	)
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, slowReaderRcvBuf)
		})
		return errors.Join(err, serr)
	}}
	host := p.addr
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := openSlowReader(ctx, dialer, host, path, i)
				if err != nil {
					mu.Lock()
					if dialErrs == 0 {
						firstErr = err.Error()
					}
					dialErrs++
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	res.openTook = time.Since(start)
	res.dialErrs, res.firstDialErr = dialErrs, firstErr
	res.opened = n - dialErrs
	log.Printf("case 9 %s: %d slow readers open in %s (%d failed)", by, res.opened, res.openTook.Round(time.Millisecond), dialErrs)

	// Halfway through the hold, a new client asks (with credentials of its
	// own), through the proxy and, at the same time, straight upstream.
	holdEnd := start.Add(e.o.slowHold)
	sleepUntil(ctx, start.Add(e.o.slowHold/2))
	var upWG sync.WaitGroup
	upWG.Add(1)
	go func() {
		defer upWG.Done()
		t := time.Now()
		code, _, err := getWithAuth(ctx, client, upURL, "")
		res.upDuring = time.Since(t)
		res.upDuringStatus = answer(code, err)
	}()
	t := time.Now()
	code, _, err := getWithAuth(ctx, client, url, basicAuth("during-"+by, "x"))
	res.duringLatency = time.Since(t)
	res.duringStatus = answer(code, err)
	upWG.Wait()
	sleepUntil(ctx, holdEnd)
	if e.o.profile != "" {
		res.heapProfile = writeHeapProfile(e.o.profile, by)
	}

	// What each slow reader was answered: its status line, read now.
	readStatuses(conns, res.status)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	gone := time.Now()
	upWG.Add(1)
	go func() {
		defer upWG.Done()
		for time.Since(gone) < 30*time.Second && ctx.Err() == nil {
			if code, _, err := getWithAuth(ctx, client, upURL, ""); err == nil && code == http.StatusOK {
				res.upRecovered = true
				break
			}
			sleepUntil(ctx, time.Now().Add(50*time.Millisecond))
		}
		res.upAfter = time.Since(gone)
	}()

	// A new client, with credentials of its own, until it is served 200.
	deadline := gone.Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		res.recoverTries++
		code, _, err := getWithAuth(ctx, client, url, basicAuth("after-"+by, strconv.Itoa(res.recoverTries)))
		if err == nil && code == http.StatusOK {
			res.recovered = true
			res.recoverAfter = time.Since(gone)
			break
		}
		if res.recoverFirst == "" {
			res.recoverFirst = answer(code, err)
		}
		sleepUntil(ctx, time.Now().Add(50*time.Millisecond))
	}
	if !res.recovered {
		res.recoverAfter = time.Since(gone)
	}
	upWG.Wait()
	if pid != 0 {
		c, _ := cpuTime(pid)
		res.proxyCPU = c - proxyCPU0
	}
	res.memLow = guard()
	if c, err := cpuTime(upPid); err == nil {
		res.upCPU = c - upCPU0
	}
	res.upPeakRSS = upMon.stop()
	if mon != nil {
		res.peakRSS = mon.stop()
		res.afterRSS, _ = procStatus(pid, "VmRSS")
	}
	res.peakGo = gmon.stop()
	// Goroutines once the slow readers' handlers have had a moment to end.
	sleepUntil(ctx, time.Now().Add(time.Second))
	res.afterGo = readGoStats(ctx, client, p.url())
	return res, nil
}

// openSlowReader dials the proxy and sends one manifest GET with reader i's
// own credentials; it reads nothing.
func openSlowReader(ctx context.Context, d *net.Dialer, host, path string, i int) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: " + manifestAccept +
		"\r\nAuthorization: " + basicAuth(fmt.Sprintf("slow-%d", i), fmt.Sprintf("secret-%d", i)) + "\r\n\r\n"
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readStatuses reads the status line each connection was answered with,
// 64 at a time, within a short deadline, and counts the codes ("none":
// no status line arrived).
func readStatuses(conns []net.Conn, counts map[string]int) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next atomic.Int64
	)
	deadline := time.Now().Add(3 * time.Second)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				c := conns[i]
				if c == nil {
					continue
				}
				_ = c.SetReadDeadline(deadline)
				line, err := bufio.NewReaderSize(c, 256).ReadSlice('\n')
				code := "none"
				if f := strings.Fields(string(line)); err == nil && len(f) >= 2 {
					code = f[1]
				}
				mu.Lock()
				counts[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// getWithAuth GETs url with the manifest Accept and, when set, auth as the
// Authorization header; it reads and discards the body.
func getWithAuth(ctx context.Context, c *http.Client, url, auth string) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Accept", manifestAccept)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, n, err
}

// minAvailable is the machine's MemAvailable below which case 9 stops its
// upstream, whose memory grows with the requests it is sent, so that the
// run cannot exhaust the machine.
const minAvailable = 2 << 30

// guardMemory watches MemAvailable every 100 ms until the returned
// function is called, and stops up when it falls below minAvailable. The
// returned function reports whether it did.
func guardMemory(up *server) func() bool {
	quit, done := make(chan struct{}), make(chan struct{})
	var fired bool
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := memAvailable(); err == nil && v < minAvailable {
				log.Printf("case 9: MemAvailable %s: stopping the upstream", fMiB(v))
				fired = true
				up.stop()
				return
			}
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() bool {
		once.Do(func() { close(quit); <-done })
		return fired
	}
}

// memAvailable is MemAvailable of /proc/meminfo, in bytes.
func memAvailable() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusField(f, "MemAvailable")
}

// answer renders a probe's outcome: the status code or the error.
func answer(code int, err error) string {
	if err != nil {
		return "error: " + shortErr(err)
	}
	return strconv.Itoa(code)
}

// basicAuth is an "Authorization: Basic" value for user and password.
func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// shortErr is err's message, at most 120 characters.
func shortErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// sleepUntil waits until t or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// goStats are gauges of the proxy's Go runtime, from its /metrics.
type goStats struct {
	goroutines int
	stack      int64 // go_memstats_stack_inuse_bytes
	heap       int64 // go_memstats_heap_inuse_bytes
}

// readGoStats reads goStats from the proxy's /metrics; -1 where it cannot.
func readGoStats(ctx context.Context, c *http.Client, base string) goStats {
	m := scrapeMetrics(ctx, c, base)
	return goStats{
		goroutines: int(metricOr(m, "go_goroutines", -1)),
		stack:      int64(metricOr(m, "go_memstats_stack_inuse_bytes", -1)),
		heap:       int64(metricOr(m, "go_memstats_heap_inuse_bytes", -1)),
	}
}

// max keeps the larger of each gauge.
func (g goStats) max(o goStats) goStats {
	return goStats{goroutines: max(g.goroutines, o.goroutines), stack: max(g.stack, o.stack), heap: max(g.heap, o.heap)}
}

// goroutineMonitor polls the proxy's goStats every 500 ms and keeps the
// largest of each.
type goroutineMonitor struct {
	quit chan struct{}
	done chan struct{}
	max  goStats
}

func startGoroutineMonitor(ctx context.Context, base string) *goroutineMonitor {
	m := &goroutineMonitor{quit: make(chan struct{}), done: make(chan struct{}), max: goStats{-1, -1, -1}}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	go func() {
		defer close(m.done)
		defer c.CloseIdleConnections()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			m.max = m.max.max(readGoStats(ctx, c, base))
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *goroutineMonitor) stop() goStats {
	close(m.quit)
	<-m.done
	return m.max
}

// writeHeapProfile writes this process's heap and goroutine profiles (in
// -profile mode the process holds the proxy) next to the CPU profile; it
// returns the heap profile's path or "".
func writeHeapProfile(cpuProfile, by string) string {
	var heap string
	for _, p := range []struct {
		name, ext string
		debug     int
	}{{"heap", "heap", 0}, {"goroutine", "goroutines.txt", 1}} {
		path := filepath.Join(filepath.Dir(cpuProfile), fmt.Sprintf("slowreaders-%s.%s", by, p.ext))
		f, err := os.Create(path)
		if err != nil {
			log.Printf("case 9: %s profile: %v", p.name, err)
			continue
		}
		if err := pprof.Lookup(p.name).WriteTo(f, p.debug); err != nil {
			log.Printf("case 9: %s profile: %v", p.name, err)
		} else if p.name == "heap" {
			heap = path
		}
		f.Close()
		log.Printf("case 9: %s profile at the end of the hold written to %s", p.name, path)
	}
	return heap
}

// rows adds the figures of one run to the report.
func (s *slowResult) rows(r *report, label string) {
	if s.rssOK {
		r.add(row{kase: label, metric: "proxy RSS: idle / peak while held / after", baseline: "idle " + fMiB(s.idleRSS),
			proxy: fmt.Sprintf("peak %s; after %s", fMiB(s.peakRSS), fMiB(s.afterRSS)),
			ratio: fmt.Sprintf("%+.1f MiB", float64(s.peakRSS-s.idleRSS)/(1<<20)),
			goal:  "peak < " + fMiB(slowPeakGoal), met: met(s.peakRSS < slowPeakGoal)})
	} else {
		r.add(row{kase: label, metric: "proxy RSS", proxy: "not measured (proxy inside the bench process, -profile)"})
	}
	r.add(row{kase: label, metric: "proxy goroutines: idle / peak / 1 s after",
		proxy: fmt.Sprintf("%d / %d / %d", s.idleGo.goroutines, s.peakGo.goroutines, s.afterGo.goroutines)})
	r.add(row{kase: label, metric: "proxy Go stacks / heap in use: idle / peak (sampled every 0.5 s)",
		baseline: fmt.Sprintf("idle %s / %s", fMiB(s.idleGo.stack), fMiB(s.idleGo.heap)),
		proxy:    fmt.Sprintf("peak %s / %s", fMiB(s.peakGo.stack), fMiB(s.peakGo.heap))})
	r.add(row{kase: label, metric: "slow readers answered (status line)", proxy: statusCounts(s.status),
		ratio: fmt.Sprintf("%d opened in %s", s.opened, fSec(s.openTook))})
	r.add(row{kase: label, metric: "new client mid-hold (proxy; upstream direct)", baseline: fmt.Sprintf("upstream direct: idle 200 in %s; mid-hold %s in %s", fMS(s.upIdle), s.upDuringStatus, fMS(s.upDuring)),
		proxy: fmt.Sprintf("%s in %s", s.duringStatus, fMS(s.duringLatency))})
	x := row{kase: label, metric: "new client after they leave: 200 after", goal: "at once (< 1 s)"}
	if s.recovered {
		x.proxy = fmt.Sprintf("%s (%d tries)", fSec(s.recoverAfter), s.recoverTries)
		x.met = met(s.recoverAfter < slowRecoverGoal)
	} else {
		x.proxy = fmt.Sprintf("not within %s (%d tries, first answer %s)", fSec(s.recoverAfter), s.recoverTries, s.recoverFirst)
		x.met = met(false)
	}
	if s.recovered && s.recoverFirst != "" {
		x.proxy += "; first answer " + s.recoverFirst
	}
	if s.upRecovered {
		x.baseline = "upstream direct: 200 after " + fSec(s.upAfter)
	} else {
		x.baseline = "upstream direct: no 200 within " + fSec(s.upAfter)
	}
	r.add(x)
	cpu := row{kase: label, metric: "CPU used, from opening to recovery", baseline: "upstream " + fSec(s.upCPU)}
	if s.rssOK {
		cpu.proxy = fSec(s.proxyCPU)
	}
	r.add(cpu)
	r.add(row{kase: label, metric: "upstream docker-registry RSS: idle / peak", baseline: "idle " + fMiB(s.upIdleRSS),
		proxy: "upstream peak " + fMiB(s.upPeakRSS)})
	if s.memLow {
		r.note("%s: the machine's MemAvailable fell below %s, so the upstream was stopped: the figures after that are not comparable.", label, fMiB(minAvailable))
	}
	if s.dialErrs > 0 {
		r.note("%s: %d of %d connections could not be opened, first: %s", label, s.dialErrs, s.n, s.firstDialErr)
	}
	if s.heapProfile != "" {
		r.note("%s: heap profile at the end of the hold: %s (go tool pprof -sample_index=inuse_space -top %s)", label, s.heapProfile, s.heapProfile)
	}
}

// statusCounts renders {"200": 12, "503": 1488} as "200: 12, 503: 1488",
// 200 first, "none" last.
func statusCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) string {
		switch k {
		case "200":
			return "0"
		case "none":
			return "9"
		}
		return "1" + k
	}
	sort.Slice(keys, func(i, j int) bool { return rank(keys[i]) < rank(keys[j]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// sha256Digest is "sha256:<hex>" of b.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

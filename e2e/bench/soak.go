package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Case 10: a bounded soak. 64 clients send mixed manifest HEAD and GET (by
// tag and by digest) and blob GET traffic through a cosign proxy process
// in front of a docker-registry of its own, for -soak-duration (60 s),
// while the proxy's configuration is reloaded every 5 s, by SIGHUP and by
// touching the configuration file in turn. It reports requests served,
// errors, reloads done, and the proxy's goroutines and RSS at start and
// end: flat is the goal.

const (
	soakClients    = 64
	soakReloadEach = 5 * time.Second
	soakRepo       = "bench/soak"
	soakLibRepo    = "bench/soak-lib"
	soakUnsigned   = "bench/soak-unsigned"
	// soakWarmUp is the load run before the start figures are taken, so
	// that the connection pools are filled as they will be at the end.
	soakWarmUp = 3 * time.Second
	// soakFlat is how much an end figure may exceed the start one and
	// still count as flat.
	soakFlat = 1.25
)

// soakTarget is one request of the mix.
type soakTarget struct {
	method, path string
	unsigned     bool // a 403 is the expected answer
}

// soakImage is a seeded image with its blobs.
type soakImage struct {
	seeded
	blobs []string // config and layer digests
}

// soakCounts are the outcomes of the soak's requests.
type soakCounts struct {
	ok, denied, errs atomic.Int64
	mu               sync.Mutex
	errKinds         map[string]int
}

func (c *soakCounts) fail(what string) {
	c.errs.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errKinds == nil {
		c.errKinds = map[string]int{}
	}
	if len(c.errKinds) < 20 {
		c.errKinds[what]++
	} else if _, ok := c.errKinds[what]; ok {
		c.errKinds[what]++
	}
}

// soakSnapshot is the proxy's state at one moment.
type soakSnapshot struct {
	goroutines int
	reloads    int
	rss        int64
}

// caseSoak is case 10.
func caseSoak(ctx context.Context, e *env, r *report) {
	dur := e.o.soakDuration
	if dur <= 0 {
		dur = time.Minute
	}
	label := fmt.Sprintf("10 soak, %d clients, %s, reload every %s", soakClients, dur, soakReloadEach)
	res, err := runSoak(ctx, e, dur)
	if err != nil {
		r.fail(label, "soak", err)
		return
	}
	res.rows(r, label)
}

// soakResult is what the soak measured.
type soakResult struct {
	dur              time.Duration
	elapsed          time.Duration
	ok, denied, errs int64
	errKinds         map[string]int
	triggered        int // reloads asked for (SIGHUP and touch)
	start, end, peak soakSnapshot
	mix              int
}

func runSoak(ctx context.Context, e *env, dur time.Duration) (*soakResult, error) {
	if e.cosign == "" {
		if err := e.build(ctx); err != nil {
			return nil, fmt.Errorf("build cosign: %w", err)
		}
	}
	if e.key == "" {
		dir := filepath.Join(e.ws, "keys-soak")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		var err error
		if e.key, e.pub, err = keyPair(ctx, e.cosign, dir); err != nil {
			return nil, err
		}
	}
	up, err := startRegistry(ctx, e.ws, "upstream-soak", "")
	if err != nil {
		return nil, err
	}
	defer up.stop()
	t := time.Now()
	targets, err := seedSoak(ctx, e, up)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	log.Printf("case 10: seeded and signed in %s", time.Since(t).Round(time.Millisecond))
	p, err := startProxy(ctx, e.ws, "proxy-soak", e.cosign, up.addr, up.url(), e.pub)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	cfgPath := filepath.Join(e.ws, "proxy-soak.yaml")
	base := p.url()
	mc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer mc.CloseIdleConnections()
	snap := func() soakSnapshot {
		s := readSoakMetrics(ctx, mc, base)
		if rss, err := procStatus(p.pid(), "VmRSS"); err == nil {
			s.rss = rss
		}
		return s
	}

	client := newClient(soakClients)
	counts := &soakCounts{}
	// Warm-up: the same load for a moment, then idle client connections
	// closed, so that start and end are compared in the same state.
	runSoakLoad(ctx, client, base, targets, time.Now().Add(soakWarmUp), counts)
	if n := counts.errs.Load(); n > 0 {
		return nil, fmt.Errorf("%d errors during the warm-up: %s", n, errSummary(counts.errKinds))
	}
	client.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	res := &soakResult{dur: dur, mix: len(targets)}
	res.start = snap()
	res.peak = res.start

	counts = &soakCounts{}
	begin := time.Now()
	end := begin.Add(dur)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var peakMu sync.Mutex
	wg.Go(func() {
		tick := time.NewTicker(soakReloadEach)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			if time.Until(end) < 2500*time.Millisecond {
				// A touch needs the proxy's 2 s poll to be seen: none
				// this close to the end.
				continue
			}
			var err error
			if i%2 == 0 {
				err = syscall.Kill(p.pid(), syscall.SIGHUP)
			} else {
				now := time.Now()
				err = os.Chtimes(cfgPath, now, now)
			}
			if err != nil {
				log.Printf("case 10: reload %d: %v", i+1, err)
				continue
			}
			res.triggered++
			s := snap()
			peakMu.Lock()
			res.peak.goroutines = max(res.peak.goroutines, s.goroutines)
			res.peak.rss = max(res.peak.rss, s.rss)
			peakMu.Unlock()
		}
	})
	runSoakLoad(lctx, client, base, targets, end, counts)
	res.elapsed = time.Since(begin)
	cancel()
	wg.Wait()
	client.CloseIdleConnections()
	// The last reload by touch is seen at the proxy's next poll (2 s).
	deadline := time.Now().Add(5 * time.Second)
	for {
		res.end = snap()
		if res.end.reloads-res.start.reloads >= res.triggered || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.peak.goroutines = max(res.peak.goroutines, res.end.goroutines)
	res.peak.rss = max(res.peak.rss, res.end.rss)
	res.ok, res.denied, res.errs = counts.ok.Load(), counts.denied.Load(), counts.errs.Load()
	res.errKinds = counts.errKinds
	return res, nil
}

// runSoakLoad runs soakClients workers over the mix until until.
func runSoakLoad(ctx context.Context, c *http.Client, base string, targets []soakTarget, until time.Time, counts *soakCounts) {
	var wg sync.WaitGroup
	for w := range soakClients {
		wg.Go(func() {
			for i := w; ctx.Err() == nil && time.Now().Before(until); i++ {
				soakOnce(ctx, c, base, targets[i%len(targets)], counts)
			}
		})
	}
	wg.Wait()
}

// soakOnce sends one request of the mix and counts its outcome.
func soakOnce(ctx context.Context, c *http.Client, base string, t soakTarget, counts *soakCounts) {
	req, err := http.NewRequestWithContext(ctx, t.method, base+t.path, nil)
	if err != nil {
		counts.fail(err.Error())
		return
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			counts.fail(t.method + " " + shortPath(t.path) + ": " + firstLine(err.Error()))
		}
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil && ctx.Err() == nil:
		counts.fail(t.method + " " + shortPath(t.path) + ": body: " + firstLine(err.Error()))
	case err != nil:
	case t.unsigned && resp.StatusCode == http.StatusForbidden:
		counts.denied.Add(1)
	case !t.unsigned && resp.StatusCode/100 == 2:
		counts.ok.Add(1)
	default:
		counts.fail(fmt.Sprintf("%s %s: status %d", t.method, shortPath(t.path), resp.StatusCode))
	}
}

func shortPath(p string) string {
	if i := strings.Index(p, "sha256:"); i >= 0 && len(p) > i+19 {
		return p[:i+19] + "…"
	}
	return p
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// seedSoak pushes two signed images and an unsigned one to up and returns
// the request mix: for each signed image HEAD and GET by tag, GET by
// digest and GET of each blob; HEAD and GET of the unsigned one by tag.
func seedSoak(ctx context.Context, e *env, up *server) ([]soakTarget, error) {
	var imgs []soakImage
	for _, s := range []struct {
		repo   string
		size   int64
		layers int64
	}{{soakRepo, 256 << 10, 3}, {soakLibRepo, 32 << 10, 2}, {soakUnsigned, 4 << 10, 1}} {
		sd, err := pushRandom(ctx, up.addr, s.repo, "v1", s.size, s.layers)
		if err != nil {
			return nil, err
		}
		blobs, err := soakBlobs(ctx, up.url(), sd)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, soakImage{seeded: sd, blobs: blobs})
	}
	if err := signAll(ctx, e.cosign, e.key, []string{imgs[0].ref(up.addr), imgs[1].ref(up.addr)}); err != nil {
		return nil, err
	}
	var mix []soakTarget
	for i, img := range imgs {
		m := "/v2/" + img.repo + "/manifests/"
		if i == 2 {
			mix = append(mix, soakTarget{http.MethodHead, m + img.tag, true}, soakTarget{http.MethodGet, m + img.tag, true})
			continue
		}
		mix = append(mix,
			soakTarget{http.MethodHead, m + img.tag, false},
			soakTarget{http.MethodGet, m + img.tag, false},
			soakTarget{http.MethodGet, m + img.digest, false},
			soakTarget{http.MethodHead, m + img.digest, false})
		for _, b := range img.blobs {
			mix = append(mix, soakTarget{http.MethodGet, "/v2/" + img.repo + "/blobs/" + b, false})
		}
	}
	return mix, nil
}

// soakBlobs reads the config and layer digests of s's manifest upstream.
func soakBlobs(ctx context.Context, base string, s seeded) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+s.repo+"/manifests/"+s.digest, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := newClient(1).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest %s: status %d", s.digest, resp.StatusCode)
	}
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&m); err != nil {
		return nil, err
	}
	out := []string{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out, nil
}

// readSoakMetrics reads go_goroutines and cosign_proxy_config_reloads_total
// from the proxy's /metrics; -1 where it cannot.
func readSoakMetrics(ctx context.Context, c *http.Client, base string) soakSnapshot {
	m := scrapeMetrics(ctx, c, base)
	return soakSnapshot{goroutines: int(metricOr(m, "go_goroutines", -1)),
		reloads: int(metricOr(m, "cosign_proxy_config_reloads_total", -1)), rss: -1}
}

// errSummary lists error kinds, most frequent first.
func errSummary(kinds map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var l []kv
	for k, n := range kinds {
		l = append(l, kv{k, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n || (l[i].n == l[j].n && l[i].k < l[j].k) })
	var parts []string
	for i, x := range l {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %s", x.n, x.k))
	}
	return strings.Join(parts, "; ")
}

// rows adds the soak's section to the table: baseline is the figure at
// start, proxy the figure at end.
func (s *soakResult) rows(r *report, label string) {
	served := s.ok + s.denied
	r.add(row{kase: label, metric: "requests served (2xx + expected 403)",
		proxy: fmt.Sprintf("%d (%.0f req/s; %d 2xx, %d 403 for the unsigned image)", served, float64(served)/s.elapsed.Seconds(), s.ok, s.denied),
		goal:  "—", met: "—"})
	errs := strconv.FormatInt(s.errs, 10)
	if s.errs > 0 {
		errs += ": " + errSummary(s.errKinds)
	}
	r.add(row{kase: label, metric: "errors (non-2xx other than the unsigned image's 403, transport errors)",
		proxy: errs, goal: "0", met: met(s.errs == 0)})
	reloads := s.end.reloads - s.start.reloads
	r.add(row{kase: label, metric: "reloads done (cosign_proxy_config_reloads_total) / asked (SIGHUP, touch)",
		proxy: fmt.Sprintf("%d / %d", reloads, s.triggered), goal: "all done",
		met: met(s.start.reloads >= 0 && reloads == s.triggered && s.triggered > 0)})
	r.add(row{kase: label, metric: fmt.Sprintf("proxy goroutines (go_goroutines), start → end (peak %d)", s.peak.goroutines),
		baseline: strconv.Itoa(s.start.goroutines), proxy: strconv.Itoa(s.end.goroutines),
		ratio: fRatio(ratio(float64(s.end.goroutines), float64(s.start.goroutines))),
		goal:  fmt.Sprintf("flat (≤ %.2fx)", soakFlat),
		met:   met(s.start.goroutines > 0 && float64(s.end.goroutines) <= soakFlat*float64(s.start.goroutines))})
	r.add(row{kase: label, metric: fmt.Sprintf("proxy RSS (VmRSS), start → end (peak %s)", fMiB(s.peak.rss)),
		baseline: fMiB(s.start.rss), proxy: fMiB(s.end.rss),
		ratio: fRatio(ratio(float64(s.end.rss), float64(s.start.rss))),
		goal:  fmt.Sprintf("flat (≤ %.2fx)", soakFlat),
		met:   met(s.start.rss > 0 && float64(s.end.rss) <= soakFlat*float64(s.start.rss))})
	r.note("Case 10: %d clients loop over a mix of %d requests (HEAD and GET of two signed images by tag and by digest, "+
		"GET of each of their blobs, HEAD and GET of an unsigned image, which must be 403) through a cosign proxy process "+
		"in front of a docker-registry of its own, for %s; every %s the configuration is reloaded, by SIGHUP and by touching "+
		"the configuration file in turn. Start figures are taken after a %s warm-up with the same load, end figures after the load, "+
		"both with the clients' idle connections closed; the peak is sampled at each reload.",
		soakClients, s.mix, s.dur, soakReloadEach, soakWarmUp)
}

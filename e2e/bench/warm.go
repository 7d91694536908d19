package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// warmSpec is one warm comparison: the same request direct and through the proxy.
type warmSpec struct {
	label    string // row label
	method   string
	ref      string // tag or digest
	conc     int
	minRatio float64 // throughput goal, proxy/direct
	maxAdded time.Duration
	// distinct gives each worker its own tag (ref-0, ref-1, ...), all
	// naming one digest, so that no two concurrent requests are identical
	// and the proxy cannot share their upstream fetches.
	distinct bool
}

// caseWarmTag is case 1: warm manifest GET and HEAD by tag at concurrency 1
// and 32. Goal: >= 0.8x direct throughput, p50 added below 0.5 ms.
func caseWarmTag(ctx context.Context, e *env, r *report) {
	for _, conc := range []int{1, 32} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			runWarm(ctx, e, r, warmSpec{
				label: fmt.Sprintf("1 %s tag c=%d", m, conc), method: m, ref: e.warm.tag,
				conc: conc, minRatio: 0.8, maxAdded: 500 * time.Microsecond,
			})
		}
	}
	runWarm(ctx, e, r, warmSpec{
		label: fmt.Sprintf("1 GET tag c=%d, a tag per client", warmTags), method: http.MethodGet, ref: e.warm.tag,
		conc: warmTags, minRatio: 0.8, distinct: true,
	})
}

// warmTags is how many extra tags the warm image carries, for the case
// where every client asks for a tag of its own.
const warmTags = 32

// spec is the load s describes against base (a registry URL).
func (s warmSpec) spec(base, repo string) loadSpec {
	l := loadSpec{method: s.method, url: base + "/v2/" + repo + "/manifests/" + s.ref, conc: s.conc}
	if s.distinct {
		for w := range s.conc {
			l.urls = append(l.urls, fmt.Sprintf("%s-%d", l.url, w))
		}
	}
	return l
}

// caseWarmDigest is case 2: warm manifest GET by digest. Goal: >= 1.0x.
func caseWarmDigest(ctx context.Context, e *env, r *report) {
	for _, conc := range []int{1, 32} {
		runWarm(ctx, e, r, warmSpec{
			label: fmt.Sprintf("2 GET digest c=%d", conc), method: http.MethodGet, ref: e.warm.digest,
			conc: conc, minRatio: 1.0,
		})
	}
}

// runWarm measures one warmSpec direct and through the proxy, adding rows.
func runWarm(ctx context.Context, e *env, r *report, s warmSpec) {
	targets := []struct {
		name string
		load loadSpec
	}{
		{"direct", s.spec(e.upstream.url(), e.warm.repo)},
		{"proxy", s.spec(e.proxy.url(), e.warm.repo)},
	}
	clients := [2]*http.Client{newClient(s.conc), newClient(s.conc)}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	for i, t := range targets {
		if err := warmUp(ctx, clients[i], t.load, 20*s.conc, 5*time.Second); err != nil {
			r.fail(s.label, "throughput ("+t.name+")", err)
			return
		}
	}
	// Alternate slices of at most one second between the two targets, so
	// a change of machine load while measuring hits both alike.
	var res [2]loadResult
	before := upstreamManifestRequests(ctx, clients[1], e.proxy.url())
	meters := [2]*cpuMeter{newCPUMeter(e.pids(false)), newCPUMeter(e.pids(true))}
	parts := max(1, int(e.o.duration/time.Second))
	for k := 0; k < parts; k++ {
		for i, t := range targets {
			spec := t.load
			spec.dur = e.o.duration / time.Duration(parts)
			spec.max = e.o.maxRequests - res[i].ok - res[i].errs
			if spec.max <= 0 {
				continue
			}
			meters[i].begin()
			res[i].merge(runLoad(ctx, clients[i], spec))
			meters[i].end()
		}
	}
	r.note("%s, CPU per request: direct: %s; proxy: %s.", s.label,
		meters[0].perUnit(float64(res[0].ok+res[0].errs), "µs"), meters[1].perUnit(float64(res[1].ok+res[1].errs), "µs"))
	for i, t := range targets {
		if res[i].errs > 0 {
			r.note("%s %s: %d of %d requests failed, first: %s", s.label, t.name, res[i].errs, res[i].errs+res[i].ok, res[i].firstErr)
		}
		if res[i].ok == 0 {
			r.fail(s.label, "throughput ("+t.name+")", fmt.Errorf("no request succeeded: %s", res[i].firstErr))
			return
		}
	}
	d, p := res[0], res[1]
	tr := ratio(p.rps(), d.rps())
	r.add(row{kase: s.label, metric: "throughput", baseline: "direct " + fRPS(d.rps()), proxy: fRPS(p.rps()),
		ratio: fRatio(tr), goal: fmt.Sprintf(">= %.1fx", s.minRatio), met: met(tr >= s.minRatio)})
	added := p.quantile(0.5) - d.quantile(0.5)
	x := row{kase: s.label, metric: "p50 latency", baseline: fMS(d.quantile(0.5)), proxy: fMS(p.quantile(0.5)),
		ratio: fAddMS(added)}
	if s.maxAdded > 0 {
		x.goal = fmt.Sprintf("added < %.1f ms", float64(s.maxAdded)/1e6)
		x.met = met(added < s.maxAdded)
	}
	r.add(x)
	r.add(row{kase: s.label, metric: "p99 latency", baseline: fMS(d.quantile(0.99)), proxy: fMS(p.quantile(0.99)),
		ratio: fAddMS(p.quantile(0.99) - d.quantile(0.99))})
	// Docker Hub counts manifest GETs as pulls, HEADs not: what the
	// proxied requests cost upstream.
	if after := upstreamManifestRequests(ctx, clients[1], e.proxy.url()); after != nil && before != nil && p.ok > 0 {
		per := func(m string) string { return fmt.Sprintf("%.0f", (after[m]-before[m])*1000/float64(p.ok+p.errs)) }
		direct := "1000 / 0"
		if s.method == http.MethodHead {
			direct = "0 / 1000"
		}
		r.add(row{kase: s.label, metric: "upstream manifest GET / HEAD per 1000 requests", baseline: direct,
			proxy: per(http.MethodGet) + " / " + per(http.MethodHead)})
	}
}

// upstreamManifestRequests reads cosign_proxy_upstream_manifest_requests_total
// from the proxy's /metrics, summed by method; nil when it cannot.
func upstreamManifestRequests(ctx context.Context, c *http.Client, base string) map[string]float64 {
	m := scrapeMetrics(ctx, c, base)
	if m == nil {
		return nil
	}
	out := map[string]float64{}
	for name, v := range m {
		labels, ok := strings.CutPrefix(name, "cosign_proxy_upstream_manifest_requests_total{")
		if !ok {
			continue
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if strings.Contains(labels, `method="`+method+`"`) {
				out[method] += v
			}
		}
	}
	return out
}

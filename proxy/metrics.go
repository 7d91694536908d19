package proxy

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cosign-dev/cosign/verifier"
)

// metrics are the proxy's Prometheus metrics, all prefixed cosign_proxy_:
//
//	requests_total{route,code}            requests answered
//	request_duration_seconds{route}       time to answer (to the last byte)
//	decisions_total{result,reason}        manifest decisions: admit, warn, deny
//	manifest_cache_total{result}          by-digest lookups in the verified-bytes cache: hit, miss
//	upstream_errors_total{upstream,kind}  timeout, network, status, ratelimited, truncated, invalid, digest, lookup
//	upstream_manifest_requests_total{upstream,method}  manifest GETs and HEADs sent upstream
//	config_reloads_total, config_reload_errors_total
//	verifier_cache_hits_total, verifier_cache_misses_total, signature_lookups_total
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	duration       [numRoutes]prometheus.Observer
	decisions      *prometheus.CounterVec
	cache          [2]prometheus.Counter // miss, hit
	upstreamErrors *prometheus.CounterVec
	reloads        prometheus.Counter
	reloadErrors   prometheus.Counter
	upstreamGets   *prometheus.CounterVec
	// byCode caches requests_total children per route and status, so the
	// hot path does not build label slices.
	byCode [numRoutes][600]atomic.Pointer[prometheus.Counter]
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosign_proxy", Name: "requests_total", Help: "Requests answered, by route and HTTP status.",
		}, []string{"route", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosign_proxy", Name: "decisions_total",
			Help: "Manifest decisions: result admit, warn (admitted by mode warn) or deny, by reason.",
		}, []string{"result", "reason"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosign_proxy", Name: "upstream_errors_total",
			Help: "Upstream failures, by upstream registry and kind.",
		}, []string{"upstream", "kind"}),
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "cosign_proxy", Name: "request_duration_seconds", Help: "Time to answer a request, by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
	}, []string{"route"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cosign_proxy", Name: "manifest_cache_total",
		Help: "By-digest lookups in the verified manifest bytes cache: hit or miss.",
	}, []string{"result"})
	m.reloads = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "cosign_proxy", Name: "config_reloads_total", Help: "Configurations reloaded and put in force.",
	})
	m.reloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "cosign_proxy", Name: "config_reload_errors_total", Help: "Reloads refused (the configuration in force stayed).",
	})
	m.upstreamGets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cosign_proxy", Name: "upstream_manifest_requests_total",
		Help: "Manifest requests the proxy sent upstream, by upstream and method (Docker Hub counts GETs as pulls).",
	}, []string{"upstream", "method"})
	for _, c := range []prometheus.Collector{m.requests, duration, m.decisions, cache, m.upstreamErrors, m.reloads, m.reloadErrors, m.upstreamGets} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for i, name := range routeNames {
		m.duration[i] = duration.WithLabelValues(name)
	}
	m.cache[0], m.cache[1] = cache.WithLabelValues("miss"), cache.WithLabelValues("hit")
	return m, nil
}

// watchVerifier exports the verifier's own counters.
func (m *metrics) watchVerifier(stats func() verifier.Stats) {
	for _, c := range []struct {
		name, help string
		get        func(verifier.Stats) uint64
	}{
		{"verifier_cache_hits_total", "Decisions answered from the verifier's cache.", func(s verifier.Stats) uint64 { return s.Hits }},
		{"verifier_cache_misses_total", "Decisions not in the verifier's cache.", func(s verifier.Stats) uint64 { return s.Misses }},
		{"signature_lookups_total", "Signature lookups made upstream.", func(s verifier.Stats) uint64 { return s.Lookups }},
	} {
		get := c.get
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "cosign_proxy", Name: c.name, Help: c.help,
		}, func() float64 { return float64(get(stats())) }))
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// request counts one answered request.
func (m *metrics) request(route, status int, d time.Duration) {
	m.duration[route].Observe(d.Seconds())
	if status < 0 || status >= len(m.byCode[route]) {
		m.requests.WithLabelValues(routeNames[route], strconv.Itoa(status)).Inc()
		return
	}
	slot := &m.byCode[route][status]
	c := slot.Load()
	if c == nil {
		counter := m.requests.WithLabelValues(routeNames[route], strconv.Itoa(status))
		slot.CompareAndSwap(nil, &counter)
		c = slot.Load()
	}
	(*c).Inc()
}

// decision counts a manifest decision; it is the verifier's OnDecision.
func (m *metrics) decision(_ verifier.Image, d verifier.Decision) {
	result := "deny"
	switch {
	case d.Admit && d.Warn:
		result = "warn"
	case d.Admit:
		result = "admit"
	}
	m.decisions.WithLabelValues(result, string(d.Reason)).Inc()
}

func (m *metrics) manifestCache(hit bool) {
	if hit {
		m.cache[1].Inc()
	} else {
		m.cache[0].Inc()
	}
}

func (m *metrics) upstreamError(upstream, kind string) {
	m.upstreamErrors.WithLabelValues(upstream, kind).Inc()
}

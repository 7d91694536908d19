package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// hit is one request that went through the counter to the upstream.
type hit struct {
	method string
	path   string
	status int
	start  time.Time
	end    time.Time
}

// counter is a reverse proxy in front of the upstream registry that records
// every request, so a case can count the upstream round trips the cosign
// proxy makes.
type counter struct {
	rp   *httputil.ReverseProxy
	mu   sync.Mutex
	hits []hit
	srv  *http.Server
	addr string
}

// newCounter forwards to upstream (a base URL such as http://127.0.0.1:5000).
func newCounter(upstream string) (*counter, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	c := &counter{}
	c.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		FlushInterval: -1,
	}
	return c, nil
}

// start listens on a free loopback port and serves in the background.
func (c *counter) start() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.addr = l.Addr().String()
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(l) }()
	return nil
}

// close stops serving.
func (c *counter) close() {
	if c.srv != nil {
		_ = c.srv.Close()
	}
}

// url is the counter's base URL.
func (c *counter) url() string { return "http://" + c.addr }

// statusRecorder keeps the status the upstream answered and when the last
// bytes were handed on. That moment, not the handler's return, ends a
// request: the client may have its answer, and send its next request,
// before the handler returns.
type statusRecorder struct {
	http.ResponseWriter
	status int
	last   time.Time
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.last = time.Now()
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.last = time.Now()
	return s.ResponseWriter.Write(b)
}

// Flush lets the reverse proxy stream through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ServeHTTP forwards the request and records it once the response is done.
func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	c.rp.ServeHTTP(rec, r)
	end := rec.last
	if end.IsZero() {
		end = time.Now()
	}
	h := hit{method: r.Method, path: r.URL.Path, status: rec.status, start: start, end: end}
	c.mu.Lock()
	c.hits = append(c.hits, h)
	c.mu.Unlock()
}

// reset forgets every recorded request.
func (c *counter) reset() {
	c.mu.Lock()
	c.hits = nil
	c.mu.Unlock()
}

// snapshot returns the requests recorded since the last reset.
func (c *counter) snapshot() []hit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]hit(nil), c.hits...)
}

// countMatching counts hits whose path ends with suffix (any method when
// method is "").
func countMatching(hits []hit, method, suffix string) int {
	n := 0
	for _, h := range hits {
		if (method == "" || h.method == method) && strings.HasSuffix(h.path, suffix) {
			n++
		}
	}
	return n
}

// rounds is the number of sequential round trips in a trace: requests whose
// time spans overlap were in flight together and count as one round.
func rounds(hits []hit) int {
	if len(hits) == 0 {
		return 0
	}
	hs := append([]hit(nil), hits...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].start.Before(hs[j].start) })
	n := 1
	end := hs[0].end
	for _, h := range hs[1:] {
		if h.start.After(end) {
			n++
			end = h.end
			continue
		}
		if h.end.After(end) {
			end = h.end
		}
	}
	return n
}

// longHex is a digest's hex, shortened in traces.
var longHex = regexp.MustCompile(`[0-9a-f]{64}`)

// describeHits summarises a trace in order of start, each request with its
// status and its time span from the first start: "GET manifests/v1 200
// [0.0-1.2 ms]; ...".
func describeHits(hits []hit) string {
	hs := append([]hit(nil), hits...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].start.Before(hs[j].start) })
	parts := make([]string, len(hs))
	for i, h := range hs {
		p := h.path
		for _, kw := range []string{"/manifests/", "/blobs/", "/referrers/", "/tags/"} {
			if i := strings.LastIndex(p, kw); i >= 0 {
				p = p[i+1:]
				break
			}
		}
		p = longHex.ReplaceAllStringFunc(p, func(h string) string { return h[:8] + "…" })
		from, to := h.start.Sub(hs[0].start), h.end.Sub(hs[0].start)
		parts[i] = fmt.Sprintf("%s %s %d [%.1f-%.1f ms]", h.method, p, h.status,
			float64(from)/1e6, float64(to)/1e6)
	}
	return strings.Join(parts, "; ")
}

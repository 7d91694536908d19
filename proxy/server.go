package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// Server timeouts. A request (GET or HEAD, no body) must arrive within
// readTimeout. Writes have deadlines set per response: a manifest must be
// written within manifestWriteTimeout, and a blob, which may take as long
// as it takes, must make progress every blobWriteIdle (see progressWriter).
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownTimeout   = 10 * time.Second
	maxHeaderBytes    = 64 << 10
	// defaultWriteTimeout bounds every answer but blobs.
	defaultWriteTimeout = 60 * time.Second
)

// Server is the verifying registry proxy. It is an http.Handler.
//
// What a configuration decides (upstreams, policies, client
// authentication) is one immutable state, swapped whole by Reload: a
// request reads it once when it arrives and finishes on it.
type Server struct {
	state     atomic.Pointer[state]
	reloadMu  sync.Mutex
	statsBase statsBase
	opts      options
	// shared is the transport of upstreams without TLS settings of
	// their own, made once.
	shared     http.RoundTripper
	sharedOnce sync.Once
	log        *slog.Logger
	inflight   *budget            // manifest bytes being read from upstreams
	blobBytes  *budget            // JSON blob bytes held by the blob gate
	health     *health            // when each upstream last answered, for /readyz
	fetches    flights[*manifest] // concurrent identical manifest fetches
	metrics    *metrics
	buffers    *bufferPool
	handler    http.Handler
	recorders  sync.Pool
}

// Option configures a Server.
type Option func(*options)

type options struct {
	logger    *slog.Logger
	transport http.RoundTripper
	registry  *prometheus.Registry
}

// WithLogger sets the logger for the access log (one line per request at
// level Info) and for warnings. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithTransport sets the RoundTripper for every upstream request. The
// default is a tuned *http.Transport shared by all upstreams
// (MaxIdleConnsPerHost 256, IdleConnTimeout 90s, ResponseHeaderTimeout
// the larger of 30s and UpstreamTimeout, dial timeout 10s, HTTP/2 when
// offered, no compression).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.transport = rt }
}

// WithMetricsRegistry registers the proxy's metrics in reg and serves reg
// at /metrics. The default is a new registry with the Go and process
// collectors.
func WithMetricsRegistry(reg *prometheus.Registry) Option {
	return func(o *options) { o.registry = reg }
}

// New validates cfg and returns a Server for it.
func New(cfg *Config, opts ...Option) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("proxy: nil config")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("proxy: config: %w", err)
	}
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.registry)
	if err != nil {
		return nil, fmt.Errorf("proxy: metrics: %w", err)
	}
	s := &Server{
		opts:      o,
		log:       o.logger,
		inflight:  &budget{max: c.Cache.InflightBytes},
		blobBytes: &budget{max: c.Cache.InflightBytes},
		health:    newHealth(),
		metrics:   m,
		buffers:   newBufferPool(),
	}
	s.recorders.New = func() any { return new(recorder) }
	st, err := s.newState(c)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	m.watchVerifier(s.verifierStats)
	s.handler = s.accessLog(s.routes())
	return s, nil
}

// Handler returns the proxy's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Addr is the configured listen address.
func (s *Server) Addr() string { return s.state.Load().cfg.Listen }

// ListenAndServe listens on the configured address and serves until ctx is
// done, then shuts down gracefully.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.Addr())
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then stops accepting, lets
// requests in flight finish for up to 10s, and returns nil. ln is closed.
// While it serves, it pings the upstreams for /readyz.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	pctx, stopPings := context.WithCancel(ctx)
	defer stopPings()
	go s.pingLoop(pctx)
	return s.serveHandler(ctx, ln, s.handler)
}

// MetricsHandler serves /metrics, for a metricsListen of its own.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler() }

// serveHandler serves h on ln until ctx is done, then shuts down
// gracefully (shutdownTimeout at most).
func (s *Server) serveHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("proxy: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("proxy: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

// Route names, used in metrics and the access log.
const (
	routePing = iota
	routeManifest
	routeBlob
	routeTags
	routeReferrers
	routeMetrics
	routeHealth
	routeOther
	numRoutes
)

var routeNames = [numRoutes]string{"ping", "manifest", "blob", "tags", "referrers", "metrics", "health", "other"}

// routes builds the router. The path is matched encoded and uncleaned, so
// that %2F, ".." and "//" reach validation (and are refused) instead of
// being decoded or redirected. A repository is everything before the last
// /manifests/, /blobs/, /tags/ or /referrers/ (a repository may be named
// a/manifests/b); the endpoints are matched by endpoint, which does with
// string scans what a regexp route would do with backtracking.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	r.NotFoundHandler = s.handle(routeOther, s.notFound)
	r.MethodNotAllowedHandler = s.handle(routeOther, unsupported)
	read := []string{http.MethodGet, http.MethodHead}

	if s.state.Load().cfg.MetricsListen == "" {
		r.Path("/metrics").Methods(read...).Handler(s.withRoute(routeMetrics, s.metrics.handler()))
	}
	r.Path("/healthz").Methods(read...).Handler(s.withRoute(routeHealth, http.HandlerFunc(s.handleHealthz)))
	r.Path("/readyz").Methods(read...).Handler(s.withRoute(routeHealth, http.HandlerFunc(s.handleReadyz)))
	r.Path("/v2/").Methods(read...).Handler(s.handle(routePing, s.handlePing))
	r.Path("/v2").Methods(read...).Handler(s.handle(routePing, s.handlePing))
	r.MatcherFunc(endpoint("manifests", "reference", "")).Methods(read...).Handler(s.handle(routeManifest, s.handleManifest))
	r.MatcherFunc(endpoint("blobs", "digest", "")).Methods(read...).Handler(s.handle(routeBlob, s.handleBlob))
	r.MatcherFunc(endpoint("tags", "", "list")).Methods(read...).Handler(s.handle(routeTags, s.handleTags))
	r.MatcherFunc(endpoint("referrers", "digest", "")).Methods(read...).Handler(s.handle(routeReferrers, s.handleReferrers))
	return r
}

// endpoint matches /v2/<name>/<kind>/<last>, the path still encoded, and
// sets the route variables "name" and varName (the last segment). name is
// everything before the last "/<kind>/" and may not be empty; the last
// segment may not be empty or contain '/'; when fixed is set it must equal
// it (tags/list).
func endpoint(kind, varName, fixed string) mux.MatcherFunc {
	marker := "/" + kind + "/"
	return func(r *http.Request, m *mux.RouteMatch) bool {
		p := r.URL.EscapedPath()
		rest, ok := strings.CutPrefix(p, "/v2/")
		if !ok {
			return false
		}
		i := strings.LastIndex(rest, marker)
		if i <= 0 {
			return false
		}
		last := rest[i+len(marker):]
		if last == "" || strings.Contains(last, "/") || (fixed != "" && last != fixed) {
			return false
		}
		m.Vars = map[string]string{"name": rest[:i]}
		if varName != "" {
			m.Vars[varName] = last
		}
		return true
	}
}

// handle adapts a handler that returns an error; every error is rendered by
// writeError.
func (s *Server) handle(route int, fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			rec.route = route
		}
		setDeadlines(w, route)
		out := w
		if route == routeBlob {
			out = &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
		}
		if err := fn(out, r); err != nil {
			s.logError(r, err)
			writeError(w, r, err)
		}
	})
}

// setDeadlines replaces the server's read deadline, which covered reading
// the request, with the write deadline of the answer: every route but
// blobs must be answered within defaultWriteTimeout. (Left in place, the
// read deadline would cancel a long blob stream: net/http's background
// read ends the request when it passes.)
func setDeadlines(w http.ResponseWriter, route int) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	if route != routeBlob {
		_ = rc.SetWriteDeadline(time.Now().Add(defaultWriteTimeout))
	} else {
		_ = rc.SetWriteDeadline(time.Now().Add(blobWriteIdle))
	}
}

// blobWriteIdle is how long a blob stream may make no progress before
// the client is cut off.
const blobWriteIdle = 60 * time.Second

// progressWriter pushes the write deadline out on every write, so that a
// blob may take as long as it takes as long as the client keeps reading.
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

// Write implements http.ResponseWriter.
func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(blobWriteIdle))
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer beneath.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

func (s *Server) withRoute(route int, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			rec.route = route
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) logError(r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) && e.Err != nil && e.Status >= 500 {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream failure",
			slog.String("path", r.URL.Path), slog.Int("status", e.Status), slog.String("error", e.Err.Error()))
	}
}

func unsupported(w http.ResponseWriter, r *http.Request) error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: CodeUnsupported,
		Message: r.Method + " is not supported: this proxy serves pulls only (GET and HEAD)"}
}

// notFound answers paths no route matches; a write anywhere is 405.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return unsupported(w, r)
	}
	if strings.HasPrefix(r.URL.Path, "/v2/") {
		return newError(http.StatusNotFound, CodeUnsupported,
			"no such endpoint %q: this proxy serves manifests, blobs, tags/list and referrers", r.URL.EscapedPath())
	}
	return newError(http.StatusNotFound, CodeUnsupported, "not found: the registry API is under /v2/")
}

// target is the upstream and repository a request is for, and the
// verifier of the state the request runs on.
type target struct {
	up   *upstream
	repo string
	v    *verifier.Verifier
	mc   *manifestCache
}

// resolve finds the upstream and repository of a /v2/<name>/... request:
// ?ns=<registry> names the upstream (containerd's mirror parameter); else a
// first name component that is a configured upstream's registry does (and
// is stripped); else the default upstream. An unknown ns is refused, never
// sent elsewhere.
func (s *Server) resolve(r *http.Request) (target, error) {
	st := stateOf(r)
	name := mux.Vars(r)["name"]
	ns, err := nsParam(r)
	if err != nil {
		return target{}, err
	}
	if ns != "" {
		up, err := st.namespace(ns)
		if err != nil {
			return target{}, err
		}
		return st.target(r, up, name)
	}
	if first, rest, ok := strings.Cut(name, "/"); ok {
		if up := st.upstreams[first]; up != nil {
			return st.target(r, up, rest)
		}
	}
	if err := checkName(name); err != nil {
		if first, _, ok := strings.Cut(name, "/"); ok && strings.ContainsAny(first, ".:") {
			err.Message += fmt.Sprintf(" (%q is not a configured upstream; have %s)", first, strings.Join(st.order, ", "))
		}
		return target{}, err
	}
	if st.def == nil {
		return target{}, newError(http.StatusNotFound, CodeNameUnknown,
			"%s: no default upstream: name the registry with ?ns= or a /v2/<registry>/<repository>/ prefix (have %s)",
			name, strings.Join(st.order, ", "))
	}
	return st.target(r, st.def, name)
}

// target checks name and the client's credentials and makes the target
// of up: Docker Hub's single names are under library/, as clients mean
// them.
func (st *state) target(r *http.Request, up *upstream, name string) (target, error) {
	if err := checkName(name); err != nil {
		return target{}, err
	}
	user, err := authenticate(r, st, up)
	if err != nil {
		return target{}, err
	}
	if rec := recorderOf(r); rec != nil {
		rec.user = user
	}
	if up.dockerHub && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	return target{up: up, repo: name, v: st.verifier, mc: st.manifests}, nil
}

// upstreamFor chooses the upstream of a request without a name (the ping):
// ns, else the default, else nil.
func (s *Server) upstreamFor(r *http.Request) (*upstream, error) {
	st := stateOf(r)
	ns, err := nsParam(r)
	if err != nil {
		return nil, err
	}
	if ns != "" {
		return st.namespace(ns)
	}
	return st.def, nil
}

func (st *state) namespace(ns string) (*upstream, error) {
	if up := st.upstreams[strings.ToLower(ns)]; up != nil {
		return up, nil
	}
	return nil, newError(http.StatusNotFound, CodeNameUnknown,
		"ns=%q is not an upstream of this proxy (have %s)", ns, strings.Join(st.order, ", "))
}

// nsParam returns the ns query parameter; several different values are
// refused.
func nsParam(r *http.Request) (string, error) {
	raw := r.URL.RawQuery
	if raw == "" || !strings.Contains(raw, "ns=") {
		return "", nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", newError(http.StatusBadRequest, CodeNameInvalid, "bad query string: %v", err)
	}
	vals := q["ns"]
	for _, v := range vals[1:] {
		if v != vals[0] {
			return "", newError(http.StatusBadRequest, CodeNameInvalid, "ns given twice with different values")
		}
	}
	if len(vals) == 0 {
		return "", nil
	}
	return vals[0], nil
}

// pathVar returns a route variable, percent-decoded.
func pathVar(r *http.Request, key string) (string, error) {
	v := mux.Vars(r)[key]
	if !strings.Contains(v, "%") {
		return v, nil
	}
	d, err := url.PathUnescape(v)
	if err != nil {
		return "", newError(http.StatusBadRequest, CodeNameInvalid, "bad escape in %s %q", key, v)
	}
	return d, nil
}

// maxNameLength bounds a repository name.
const maxNameLength = sigstore.MaxRepositoryLength

// checkName validates a repository name with the distribution spec's
// grammar (sigstore.CheckRepository). The name is checked as it was sent,
// still percent-encoded, so %2F, "..", "//" and upper case fail.
func checkName(name string) *Error {
	if err := sigstore.CheckRepository(name); err != nil {
		return newError(http.StatusBadRequest, CodeNameInvalid, "%v", err)
	}
	return nil
}

// recorder captures what the access log and metrics need.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	route    int
	decision string
	// st is the state the request runs on; user the client's name when
	// it authenticated to the proxy; start when the request arrived.
	st    *state
	user  string
	start time.Time
}

type recorderKey struct{}

// clientAddr is the host of a client's address, without the port.
func clientAddr(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// recorderOf is the recorder of a request that went through accessLog.
func recorderOf(r *http.Request) *recorder {
	rec, _ := r.Context().Value(recorderKey{}).(*recorder)
	return rec
}

// WriteHeader implements http.ResponseWriter.
func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && code >= 200 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// accessLog writes one line per request and counts it.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := s.recorders.Get().(*recorder)
		*rec = recorder{ResponseWriter: w, route: routeOther, st: s.state.Load(), start: start}
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			s.metrics.request(rec.route, status, elapsed)
			if rec.route != routeHealth && s.log.Enabled(r.Context(), slog.LevelInfo) {
				s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
					slog.String("method", r.Method),
					slog.String("path", r.URL.RequestURI()),
					slog.Int("status", status),
					slog.Int64("bytes", rec.bytes),
					slog.Duration("duration", elapsed),
					slog.String("decision", rec.decision),
					slog.String("client", r.RemoteAddr),
					slog.String("user", rec.user))
			}
			*rec = recorder{}
			s.recorders.Put(rec)
		}()
		ctx := context.WithValue(r.Context(), recorderKey{}, rec)
		ctx = context.WithValue(ctx, clientKey{}, clientAddr(r.RemoteAddr))
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

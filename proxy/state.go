package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/cosign-dev/cosign/verifier"
)

// state is what one configuration decides, built whole and never changed:
// Reload swaps in a new one, and a request runs on the one it started with.
type state struct {
	cfg       Config
	verifier  *verifier.Verifier
	upstreams map[string]*upstream // by every name clients use for them
	order     []string             // registry names in configuration order, for messages
	def       *upstream            // nil when requests must name their upstream
	users     *htpasswd            // nil without clientAuth
	// manifests are the verified bytes, kept per state: a reload may
	// point a registry name at another URL, where other credentials may
	// read them.
	manifests *manifestCache
}

// stateOf is the state a request runs on: the one in force when it
// arrived.
func stateOf(r *http.Request) *state {
	return recorderOf(r).st
}

// dockerHubNames are the names clients use for Docker Hub; an upstream
// named docker.io answers to all of them.
var dockerHubNames = []string{"docker.io", "index.docker.io", "registry-1.docker.io"}

// newState builds the state of c, which has its defaults and is valid.
func (s *Server) newState(c Config) (*state, error) {
	vc := c.verifierConfig()
	vc.LookupTimeout = c.UpstreamTimeout
	vc.OnDecision = s.metrics.decision
	v, err := verifier.New(vc)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	st := &state{cfg: c, verifier: v, upstreams: make(map[string]*upstream, len(c.Upstreams)),
		manifests: newManifestCache(c.Cache.ManifestBytes, c.Cache.TTL)}
	if c.ClientAuth != nil {
		if st.users, err = loadHtpasswd(c.ClientAuth.Htpasswd); err != nil {
			return nil, fmt.Errorf("proxy: clientAuth: %w", err)
		}
	}
	for _, u := range c.Upstreams {
		rt, err := s.transportFor(u, c.UpstreamTimeout)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream %s: %w", u.Registry, err)
		}
		up, err := newUpstream(u, c.forwardsCredentials(u), rt)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream %s: %w", u.Registry, err)
		}
		up.timeout = c.UpstreamTimeout
		if u.Auth != nil {
			if up.owned, err = newOwnedAuth(up, u.Auth); err != nil {
				return nil, fmt.Errorf("proxy: upstream %s: %w", u.Registry, err)
			}
			up.needsClientAuth = !u.Public
		} else if up.anon, err = newTokenAuth(up, authn.Anonymous); err != nil {
			return nil, fmt.Errorf("proxy: upstream %s: %w", u.Registry, err)
		}
		up.proxy = s.newReverseProxy(up)
		st.upstreams[u.Registry] = up
		if u.Registry == "docker.io" {
			up.dockerHub = true
			for _, alias := range dockerHubNames {
				if _, taken := st.upstreams[alias]; !taken {
					st.upstreams[alias] = up
				}
			}
		}
		st.order = append(st.order, u.Registry)
	}
	st.def = st.upstreams[c.DefaultUpstream]
	return st, nil
}

// transportFor is the RoundTripper for upstream u: the one given with
// WithTransport; else one shared by every upstream that needs no TLS
// settings of its own, kept across reloads so that its connections are;
// else one of its own, trusting u's CA file or, with a warning, any
// certificate.
func (s *Server) transportFor(u Upstream, timeout time.Duration) (http.RoundTripper, error) {
	if s.opts.transport != nil {
		return s.opts.transport, nil
	}
	headerTimeout := max(30*time.Second, timeout)
	if u.CAFile == "" && !u.InsecureSkipVerify {
		s.sharedOnce.Do(func() { s.shared = newTransport(headerTimeout) })
		return s.shared, nil
	}
	t := newTransport(headerTimeout)
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if u.CAFile != "" {
		pool, err := loadCertPool(u.CAFile)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig.RootCAs = pool
	}
	if u.InsecureSkipVerify {
		t.TLSClientConfig.InsecureSkipVerify = true
		s.log.Warn("upstream TLS certificates are NOT checked (insecureSkipVerify): anyone on the path can serve this upstream's content",
			slog.String("upstream", u.Registry))
	}
	return t, nil
}

// Reload validates cfg and makes it the configuration of new requests;
// requests in flight finish on the one they started with. On an error the
// configuration in force stays. The listen address, TLS and metrics
// address are the process's: a change of them is logged and takes effect
// at the next start.
func (s *Server) Reload(cfg *Config) error {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return fmt.Errorf("proxy: config: %w", err)
	}
	st, err := s.newState(c)
	if err != nil {
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.state.Swap(st)
	s.statsBase.add(old.verifier.Stats())
	if c.Listen != old.cfg.Listen || c.MetricsListen != old.cfg.MetricsListen || !sameTLS(c.TLS, old.cfg.TLS) {
		s.log.Warn("listen, metricsListen or the tls file names changed: they take effect at the next start " +
			"(the tls files themselves are read again whenever they change)")
	}
	s.metrics.reloads.Inc()
	return nil
}

// statsBase sums the counters of the verifiers replaced by reloads, so
// that the counters /metrics reports never go back.
type statsBase struct {
	mu sync.Mutex
	s  verifier.Stats
}

func (b *statsBase) add(s verifier.Stats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Hits += s.Hits
	b.s.Misses += s.Misses
	b.s.Lookups += s.Lookups
	b.s.Admitted += s.Admitted
	b.s.Refused += s.Refused
	b.s.Warned += s.Warned
	b.s.Errors += s.Errors
}

// verifierStats is the verifier counters since the server started.
func (s *Server) verifierStats() verifier.Stats {
	cur := s.state.Load().verifier.Stats()
	s.statsBase.mu.Lock()
	defer s.statsBase.mu.Unlock()
	b := s.statsBase.s
	return verifier.Stats{Hits: b.Hits + cur.Hits, Misses: b.Misses + cur.Misses, Lookups: b.Lookups + cur.Lookups,
		Admitted: b.Admitted + cur.Admitted, Refused: b.Refused + cur.Refused, Warned: b.Warned + cur.Warned, Errors: b.Errors + cur.Errors}
}

func sameTLS(a, b *TLSConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

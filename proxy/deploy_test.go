package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// --- helpers for the deployment tests ---

// logText is what a syncBuffer (logwriter_test.go) holds.
func logText(b *syncBuffer) string {
	s, _ := b.snapshot()
	return s
}

// writeFileAtomic replaces path with data in one rename, so that a watcher
// polling the file never reads it half written.
func writeFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// htpasswdEntry is an htpasswd line for user with a bcrypt hash of pass.
func htpasswdEntry(t testing.TB, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h) + "\n"
}

// basicAuth is the Authorization header of Basic user:pass.
func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// eventually polls cond until it holds; the deadline is generous, it only
// stops a test that would otherwise hang.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		<-tick.C
	}
}

// metricIn returns the value of the sample called name carrying every
// label (`key="value"`) given, from a Prometheus text exposition; 0 when
// absent (a counter vector has no child before its first increment).
func metricIn(t testing.TB, text, name string, labels ...string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, value := line[:i], line[i+1:]
		metric, _, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	return 0
}

// metricsOf is the /metrics text of srv.
func metricsOf(t testing.TB, srv *Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// get sends GET path to the proxy with an optional Authorization header
// and returns the status, the body and the response.
func (e *env) get(path, auth string) (int, []byte, *http.Response) {
	e.t.Helper()
	var resp *http.Response
	if auth == "" {
		resp = e.do(http.MethodGet, path)
	} else {
		resp = e.do(http.MethodGet, path, "Authorization", auth)
	}
	return resp.StatusCode, body(e.t, resp), resp
}

// in is e for a subtest: failures end t, not the parent.
func (e *env) in(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// configOf is the digest of img's config blob.
func configOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// wantGet checks the status of GET path.
func (e *env) wantGet(path, auth string, want int) []byte {
	e.t.Helper()
	code, b, _ := e.get(path, auth)
	if code != want {
		e.t.Fatalf("GET %s: status %d, want %d; body %s", path, code, want, b)
	}
	return b
}

// configTrusting is a copy of e's configuration whose one policy trusts k
// alone.
func (e *env) configTrusting(k testKey) *Config {
	c := *e.cfg
	pol := *e.cfg.Policies[0]
	pol.Keys = []sigstore.PublicKey{k.pub}
	c.Policies = []*verifier.Policy{&pol}
	return &c
}

// The proxy's own credentials for the upstream, and its clients' htpasswd.
const (
	robotUser, robotPass = "robot", "s3cr3t-of-the-robot"
	aliceUser, alicePass = "alice", "wonderland"
)

// newOwnedEnv is an env whose proxy holds robot's credentials for the
// upstream; clients authenticate with htpasswd (alice) unless public.
func newOwnedEnv(t testing.TB, public bool, edit ...func(*env, *Config)) *env {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "robot.password")
	ht := filepath.Join(dir, "htpasswd")
	writeFileAtomic(t, pw, []byte(robotPass+"\n"))
	writeFileAtomic(t, ht, []byte(htpasswdEntry(t, aliceUser, alicePass)))
	return newEnv(t, append([]func(*env, *Config){func(e *env, c *Config) {
		c.Upstreams[0].Auth = &UpstreamAuth{Username: robotUser, PasswordFile: pw}
		c.Upstreams[0].Public = public
		if !public {
			c.ClientAuth = &ClientAuthConfig{Htpasswd: ht}
		}
	}}, edit...)...)
}

// requireRobot makes the upstream answer 401 with a Basic challenge to any
// request without robot's credentials.
func (u *fakeUpstream) requireRobot() {
	u.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == basicAuth(robotUser, robotPass) {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
}

// --- 1. Reload ---

func TestReloadChangesWhichKeyIsTrusted(t *testing.T) {
	e := newEnv(t)
	other := newTestKey(t)
	_, d1 := e.pushRandom("app", "v1")
	e.sign("app", d1, e.key)
	_, d2 := e.pushRandom("app", "v2")
	e.sign("app", d2, other)
	first, second := e.cfg, e.configTrusting(other)

	e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)
	e.wantGet("/v2/app/manifests/v2", "", http.StatusForbidden)

	if err := e.srv.Reload(second); err != nil {
		t.Fatal(err)
	}
	// Admitted (and its bytes held) before: refused now, by tag and by digest.
	e.wantGet("/v2/app/manifests/v1", "", http.StatusForbidden)
	e.wantGet("/v2/app/manifests/"+d1.String(), "", http.StatusForbidden)
	e.wantGet("/v2/app/manifests/v2", "", http.StatusOK)

	if err := e.srv.Reload(first); err != nil {
		t.Fatal(err)
	}
	e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)
	e.wantGet("/v2/app/manifests/v2", "", http.StatusForbidden)
	if got := metricIn(t, metricsOf(t, e.srv), "cosign_proxy_config_reloads_total"); got != 2 {
		t.Errorf("config_reloads_total = %v, want 2", got)
	}
}

func TestReloadOfInvalidConfigKeepsTheOneInForce(t *testing.T) {
	e := newEnv(t)
	other := newTestKey(t)
	_, d1 := e.pushRandom("app", "v1")
	e.sign("app", d1, e.key)
	_, d2 := e.pushRandom("app", "v2")
	e.sign("app", d2, other)
	e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)

	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no upstreams", func(c *Config) { c.Upstreams = nil }},
		{"unknown default upstream", func(c *Config) { c.DefaultUpstream = "nowhere.example:5000" }},
		{"bad upstream url", func(c *Config) { c.Upstreams = []Upstream{{Registry: e.up.host, URL: "ftp://x"}} }},
		{"enforce policy without keys", func(c *Config) { c.Policies[0].Keys = nil }},
		{"missing htpasswd", func(c *Config) { c.ClientAuth = &ClientAuthConfig{Htpasswd: missing} }},
		{"missing upstream CA file", func(c *Config) {
			c.Upstreams = []Upstream{{Registry: e.up.host, URL: e.up.URL, CAFile: missing}}
		}},
		{"missing password file", func(c *Config) {
			c.Upstreams = []Upstream{{Registry: e.up.host, URL: e.up.URL, Public: true,
				Auth: &UpstreamAuth{Username: robotUser, PasswordFile: missing}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := e.configTrusting(other) // would flip v1 and v2 if it took
			tc.edit(bad)
			if err := e.srv.Reload(bad); err == nil {
				t.Fatal("Reload accepted an invalid configuration")
			}
			e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)
			e.wantGet("/v2/app/manifests/v2", "", http.StatusForbidden)
		})
	}
	if got := metricIn(t, metricsOf(t, e.srv), "cosign_proxy_config_reloads_total"); got != 0 {
		t.Errorf("config_reloads_total = %v after refused reloads, want 0", got)
	}
}

func TestRequestInFlightFinishesOnTheStateItArrivedWith(t *testing.T) {
	e := newEnv(t, func(_ *env, c *Config) { c.UpstreamTimeout = time.Minute })
	other := newTestKey(t)
	_, d := e.pushRandom("app", "v1")
	e.sign("app", d, e.key)

	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && r.URL.Path == "/v2/app/manifests/v1" {
			once.Do(func() {
				close(arrived)
				<-release
			})
		}
		return false
	})
	type result struct {
		code int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(e.proxy.URL + "/v2/app/manifests/v1")
		if err != nil {
			done <- result{code: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, b}
	}()
	<-arrived
	if err := e.srv.Reload(e.configTrusting(other)); err != nil {
		close(release)
		t.Fatal(err)
	}
	// A request arriving now runs on the new state.
	e.up.setHook(nil)
	close(release)
	res := <-done
	if res.code != http.StatusOK {
		t.Fatalf("request in flight across the reload: %d %s, want 200 (decided on the old state)", res.code, res.body)
	}
	e.wantGet("/v2/app/manifests/v1", "", http.StatusForbidden)
}

// --- 2. /healthz and /readyz ---

func TestHealthzAndReadyz(t *testing.T) {
	t.Run("healthz always 200; readyz 503 until the ping answered", func(t *testing.T) {
		e := newEnv(t)
		e.wantGet("/healthz", "", http.StatusOK)
		b := e.wantGet("/readyz", "", http.StatusServiceUnavailable)
		if !strings.Contains(string(b), e.up.host) {
			t.Errorf("readyz body %s does not name the upstream %s", b, e.up.host)
		}
		e.srv.pingAll(context.Background())
		e.wantGet("/readyz", "", http.StatusOK)
		e.wantGet("/healthz", "", http.StatusOK)
	})

	t.Run("Serve pings the upstreams", func(t *testing.T) {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.srv.Serve(ctx, ln) }()
		url := "http://" + ln.Addr().String() + "/readyz"
		eventually(t, "readyz 200 once served", func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an upstream that is down is not ready", func(t *testing.T) {
		e := newEnv(t)
		e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		})
		e.srv.pingAll(context.Background())
		b := e.wantGet("/readyz", "", http.StatusServiceUnavailable)
		if !strings.Contains(string(b), e.up.host) || !strings.Contains(string(b), "503") {
			t.Errorf("readyz body %s should name %s and its 503", b, e.up.host)
		}
		e.wantGet("/healthz", "", http.StatusOK)
	})

	t.Run("an upstream that stopped answering becomes not ready", func(t *testing.T) {
		e := newEnv(t)
		e.srv.pingAll(context.Background())
		e.wantGet("/readyz", "", http.StatusOK)
		e.up.Close()
		e.srv.pingAll(context.Background())
		e.srv.health.mu.Lock()
		later := time.Now().Add(readyWindow + time.Minute)
		e.srv.health.now = func() time.Time { return later }
		e.srv.health.mu.Unlock()
		e.wantGet("/readyz", "", http.StatusServiceUnavailable)
		e.wantGet("/healthz", "", http.StatusOK)
	})

	t.Run("never forwarded nor authenticated, even with clientAuth", func(t *testing.T) {
		e := newOwnedEnv(t, false)
		e.up.requireRobot()
		for _, path := range []string{"/healthz", "/readyz", "/healthz?ns=" + e.up.host, "/readyz?ns=" + e.up.host} {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				resp := e.do(m, path)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("%s %s without credentials: %d, want 200 or 503", m, path, resp.StatusCode)
				}
				if resp.Header.Get("WWW-Authenticate") != "" {
					t.Errorf("%s %s: challenged (%q)", m, path, resp.Header.Get("WWW-Authenticate"))
				}
			}
		}
		e.srv.pingAll(context.Background()) // a 401 counts as an answer
		e.wantGet("/readyz", "", http.StatusOK)
		for _, r := range e.up.requests() {
			if r.Path != "/v2/" {
				t.Errorf("upstream saw %s %s: health checks must not be forwarded", r.Method, r.Path)
			}
			if r.Auth != "" {
				t.Errorf("the ping carried credentials %q", r.Auth)
			}
		}
	})
}

// --- 3. proxy-owned credentials and client authentication ---

func TestOwnedCredentialsWithClientAuth(t *testing.T) {
	e := newOwnedEnv(t, false)
	img, signed := e.pushRandom("app", "signed")
	e.sign("app", signed, e.key)
	e.pushRandom("app", "unsigned")
	e.up.requireRobot()
	e.up.requests()
	blob := "/v2/app/blobs/" + configOf(t, img)

	alice := basicAuth(aliceUser, alicePass)
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"right password, signed", "/v2/app/manifests/signed", alice, http.StatusOK},
		{"right password, by digest", "/v2/app/manifests/" + signed.String(), alice, http.StatusOK},
		{"right password, unsigned", "/v2/app/manifests/unsigned", alice, http.StatusForbidden},
		{"wrong password (after the right one passed)", "/v2/app/manifests/signed", basicAuth(aliceUser, "wrong"), http.StatusUnauthorized},
		{"unknown user", "/v2/app/manifests/signed", basicAuth("mallory", alicePass), http.StatusUnauthorized},
		{"robot's own credentials", "/v2/app/manifests/signed", basicAuth(robotUser, robotPass), http.StatusUnauthorized},
		{"a bearer token", "/v2/app/manifests/signed", "Bearer abc", http.StatusUnauthorized},
		{"no credentials", "/v2/app/manifests/signed", "", http.StatusUnauthorized},
		{"right password, blob", blob, alice, http.StatusOK},
		{"no credentials, blob", blob, "", http.StatusUnauthorized},
		{"no credentials, tags", "/v2/app/tags/list", "", http.StatusUnauthorized},
		{"no credentials, with ns", "/v2/app/manifests/signed?ns=" + e.up.host, "", http.StatusUnauthorized},
		{"no credentials, with prefix", "/v2/" + e.up.host + "/app/manifests/signed", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b, resp := e.in(t).get(tc.path, tc.auth)
			if code != tc.want {
				t.Fatalf("GET %s: %d, want %d; body %s", tc.path, code, tc.want, b)
			}
			if code == http.StatusUnauthorized {
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") || strings.Contains(ch, `realm="x"`) {
					t.Errorf("challenge %q, want the proxy's own Basic challenge", ch)
				}
			}
		})
	}

	t.Run("the ping is the proxy's own challenge", func(t *testing.T) {
		e := e.in(t)
		e.up.requests()
		for _, path := range []string{"/v2/", "/v2/?ns=" + e.up.host} {
			code, b, resp := e.get(path, "")
			ch := resp.Header.Get("WWW-Authenticate")
			if code != http.StatusUnauthorized || !strings.HasPrefix(ch, "Basic ") || strings.Contains(ch, `realm="x"`) {
				t.Errorf("GET %s: %d %q, want 401 with the proxy's Basic challenge; body %s", path, code, ch, b)
			}
			e.wantGet(path, alice, http.StatusOK)
		}
		if n := count(e.up.requests(), func(r seenRequest) bool { return r.Path == "/v2/" }); n != 0 {
			t.Errorf("the ping went upstream %d times", n)
		}
	})

	t.Run("upstream saw only robot's credentials", func(t *testing.T) {
		e := e.in(t)
		e.wantGet("/v2/app/manifests/signed", alice, http.StatusOK)
		e.wantGet(blob, alice, http.StatusOK)
		e.wantGet("/v2/app/tags/list", alice, http.StatusOK)
		robot := basicAuth(robotUser, robotPass)
		withRobot := 0
		for _, r := range e.up.requests() {
			switch r.Auth {
			case robot:
				withRobot++
			case "":
			default:
				t.Errorf("upstream saw %s %s with %q, not robot's credentials", r.Method, r.Path, r.Auth)
			}
		}
		if withRobot == 0 {
			t.Error("upstream saw no request with robot's credentials")
		}
	})
}

func TestOwnedCredentialsPublicUpstreamNeedsNoClientCredentials(t *testing.T) {
	e := newOwnedEnv(t, true)
	_, signed := e.pushRandom("app", "signed")
	e.sign("app", signed, e.key)
	e.pushRandom("app", "unsigned")
	e.up.requireRobot()
	e.up.requests()

	e.wantGet("/v2/app/manifests/signed", "", http.StatusOK)
	e.wantGet("/v2/app/manifests/unsigned", "", http.StatusForbidden)
	e.wantGet("/v2/", "", http.StatusOK)
	// Whatever a client sends, robot's credentials are what goes upstream.
	e.wantGet("/v2/app/manifests/signed", basicAuth("someone", "else"), http.StatusOK)
	for _, r := range e.up.requests() {
		if r.Auth != "" && r.Auth != basicAuth(robotUser, robotPass) {
			t.Errorf("upstream saw %s %s with %q", r.Method, r.Path, r.Auth)
		}
	}
}

func TestParseConfigRefusesOwnedCredentialsWithoutClientAuth(t *testing.T) {
	dir := t.TempDir()
	writeFileAtomic(t, filepath.Join(dir, "robot.password"), []byte(robotPass+"\n"))
	writeFileAtomic(t, filepath.Join(dir, "htpasswd"), []byte(htpasswdEntry(t, aliceUser, alicePass)))
	const base = `upstreams:
  - registry: registry.example.com
    url: https://registry.example.com
    auth:
      username: robot
      passwordFile: robot.password
`
	for _, tc := range []struct {
		name, extra string
		ok          bool
	}{
		{"neither clientAuth nor public", "defaultPolicy: allow\n", false},
		{"public: false", "    public: false\ndefaultPolicy: allow\n", false},
		{"with clientAuth", "defaultPolicy: allow\nclientAuth:\n  htpasswd: htpasswd\n", true},
		{"public", "    public: true\ndefaultPolicy: allow\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(base+tc.extra), "proxy.yaml", dir)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Upstreams[0].Auth == nil || cfg.Upstreams[0].Auth.Username != robotUser {
					t.Fatalf("auth not parsed: %+v", cfg.Upstreams[0])
				}
				return
			}
			if err == nil {
				t.Fatal("accepted proxy-owned credentials anyone reaching the proxy could use")
			}
			if !strings.Contains(err.Error(), "registry.example.com") || !strings.Contains(err.Error(), "clientAuth") {
				t.Errorf("error %q should name the upstream and clientAuth", err)
			}
		})
	}
}

// --- 4. the bearer token flow, with a stand-in for Docker Hub ---

// tokenServer is a stand-in for auth.docker.io: it grants a pull token for
// repository:library/<name>:pull to robot, and records what it was asked.
type tokenServer struct {
	*httptest.Server
	epoch  atomic.Int64 // part of every token: a new epoch expires the old ones
	mu     sync.Mutex
	scopes []string // the scope of each request
	auths  []string // the Authorization of each request
}

func newTokenServer(t testing.TB, grant bool) *tokenServer {
	ts := &tokenServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope := strings.Join(r.URL.Query()["scope"], " ")
		ts.mu.Lock()
		ts.scopes = append(ts.scopes, scope)
		ts.auths = append(ts.auths, r.Header.Get("Authorization"))
		ts.mu.Unlock()
		repo, ok := strings.CutPrefix(scope, "repository:")
		repo, ok2 := strings.CutSuffix(repo, ":pull")
		if !grant || !ok || !ok2 || r.URL.Path != "/token" || r.URL.Query().Get("service") != "registry.docker.io" ||
			r.Header.Get("Authorization") != basicAuth(robotUser, robotPass) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, ts.token(repo))
	}))
	t.Cleanup(ts.Close)
	return ts
}

// token is the token valid now for repo.
func (ts *tokenServer) token(repo string) string {
	return fmt.Sprintf("tok:%s:%d", repo, ts.epoch.Load())
}

func (ts *tokenServer) asked(scope string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for _, s := range ts.scopes {
		if s == scope {
			n++
		}
	}
	return n
}

// requireBearer makes the upstream want the token ts gives for the
// repository of each request, challenging with realm.
func (u *fakeUpstream) requireBearer(realm string, ts *tokenServer) {
	u.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		repo := ""
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v2/"); ok {
			for _, kind := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
				if i := strings.LastIndex(rest, kind); i > 0 {
					repo = rest[:i]
				}
			}
		}
		if repo != "" && r.Header.Get("Authorization") == "Bearer "+ts.token(repo) {
			return false
		}
		ch := fmt.Sprintf(`Bearer realm=%q,service="registry.docker.io"`, realm)
		if repo != "" {
			ch += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		}
		w.Header().Set("WWW-Authenticate", ch)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
}

// localhostURL is u with its host written localhost: the same listener,
// reached by a DNS name (go-containerregistry refuses token realms on a
// loopback IP other than the registry's own host:port).
func localhostURL(t testing.TB, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return "http://localhost:" + p.Port()
}

func TestOwnedCredentialsBearerTokenFlowForDockerHub(t *testing.T) {
	tokens := newTokenServer(t, true)
	e := newOwnedEnv(t, true, func(e *env, c *Config) {
		c.Upstreams[0].Registry = "docker.io"
		c.Upstreams[0].URL = localhostURL(t, e.up.URL)
		c.Policies[0].Match = []string{"docker.io/**"}
	})
	alpineImg, alpine := e.pushRandom("library/alpine", "v1")
	e.signAs("docker.io/library/alpine", "library/alpine", alpine, e.key)
	_, busybox := e.pushRandom("library/busybox", "v1")
	e.signAs("docker.io/library/busybox", "library/busybox", busybox, e.key)
	e.pushRandom("library/unsigned", "v1")
	e.up.requireBearer(localhostURL(t, tokens.URL)+"/token", tokens)
	e.up.requests()

	for _, path := range []string{
		"/v2/alpine/manifests/v1",
		"/v2/library/alpine/manifests/v1",
		"/v2/alpine/manifests/" + alpine.String(),
		"/v2/alpine/manifests/v1?ns=docker.io",
		"/v2/alpine/manifests/v1?ns=index.docker.io",
		"/v2/alpine/manifests/v1?ns=registry-1.docker.io",
		"/v2/docker.io/alpine/manifests/v1",
		"/v2/index.docker.io/library/alpine/manifests/v1",
		"/v2/registry-1.docker.io/alpine/manifests/v1",
		"/v2/alpine/blobs/" + configOf(t, alpineImg),
		"/v2/busybox/manifests/v1",
		"/v2/library/busybox/manifests/v1?ns=index.docker.io",
	} {
		e.wantGet(path, "", http.StatusOK)
	}
	e.wantGet("/v2/unsigned/manifests/v1", "", http.StatusForbidden)

	for _, repo := range []string{"library/alpine", "library/busybox", "library/unsigned"} {
		if n := tokens.asked("repository:" + repo + ":pull"); n != 1 {
			t.Errorf("token server asked %d times for %s, want once (tokens are cached per repository)", n, repo)
		}
	}
	tokens.mu.Lock()
	for i, a := range tokens.auths {
		if a != basicAuth(robotUser, robotPass) {
			t.Errorf("token request %d (%s) carried %q, not robot's credentials", i, tokens.scopes[i], a)
		}
	}
	tokens.mu.Unlock()
	for _, r := range e.up.requests() {
		if r.Auth != "" && !strings.HasPrefix(r.Auth, "Bearer tok:") {
			t.Errorf("registry saw %s %s with %q", r.Method, r.Path, r.Auth)
		}
		if strings.HasPrefix(r.Path, "/v2/alpine") || strings.HasPrefix(r.Path, "/v2/busybox") {
			t.Errorf("registry saw %s: single names must be library/<name>", r.Path)
		}
	}
}

func TestOwnedCredentialsTokenRefreshedWhenExpired(t *testing.T) {
	tokens := newTokenServer(t, true)
	e := newOwnedEnv(t, true, func(e *env, c *Config) {
		c.Upstreams[0].URL = localhostURL(t, e.up.URL)
	})
	_, d := e.pushRandom("app", "v1")
	e.sign("app", d, e.key)
	e.up.requireBearer(localhostURL(t, tokens.URL)+"/token", tokens)
	const scope = "repository:app:pull"

	e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)
	e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)
	if n := tokens.asked(scope); n != 1 {
		t.Fatalf("token server asked %d times before expiry, want 1", n)
	}
	tokens.epoch.Add(1) // the token held no longer works
	e.wantGet("/v2/app/manifests/v1", "", http.StatusOK)
	e.wantGet("/v2/app/manifests/"+d.String(), "", http.StatusOK)
	if n := tokens.asked(scope); n != 2 {
		t.Fatalf("token server asked %d times after expiry, want 2 (one refresh)", n)
	}
}

func TestOwnedCredentialsNeverSentToAForeignRealm(t *testing.T) {
	foreign := newTokenServer(t, true) // would grant, were it asked with robot's credentials
	e := newOwnedEnv(t, true)
	_, d := e.pushRandom("app", "v1")
	e.sign("app", d, e.key)
	// The upstream is 127.0.0.1; localhost is another registrable domain.
	e.up.requireBearer(localhostURL(t, foreign.URL)+"/token", foreign)
	e.up.requests()

	code, b, _ := e.get("/v2/app/manifests/v1", "")
	if code != http.StatusBadGateway && code != http.StatusUnauthorized {
		t.Errorf("pull with a foreign realm: %d %s, want 502 or 401", code, b)
	}
	foreign.mu.Lock()
	defer foreign.mu.Unlock()
	if len(foreign.auths) == 0 {
		t.Fatal("the foreign realm was never asked: the test proves nothing")
	}
	for i, a := range foreign.auths {
		if a != "" {
			t.Errorf("the foreign realm got Authorization %q on request %d", a, i)
		}
	}
}

func TestSameSite(t *testing.T) {
	for _, tc := range []struct {
		origin, target string
		want           bool
	}{
		{"https://registry-1.docker.io", "https://auth.docker.io/token", true},
		{"https://registry-1.docker.io", "http://auth.docker.io/token", false},
		{"https://registry-1.docker.io", "https://docker.io.evil.com/token", false},
		{"https://registry-1.docker.io", "https://evil.io/token", false},
		{"https://ghcr.io", "https://ghcr.io/token", true},
		{"https://ghcr.io", "https://x.ghcr.io/token", true},
		{"https://a.github.io", "https://b.github.io/token", false}, // github.io is a public suffix
		{"http://127.0.0.1:5000", "http://127.0.0.1:6000/token", true},
		{"http://127.0.0.1:5000", "http://localhost:5000/token", false},
		{"http://127.0.0.1:5000", "http://127.0.0.2:5000/token", false},
		{"http://localhost:5000", "http://evil.localhost:5000/token", false},
		{"https://REGISTRY.example.com", "https://auth.example.com", true},
	} {
		o, _ := url.Parse(tc.origin)
		u, _ := url.Parse(tc.target)
		if got := sameSite(o, u); got != tc.want {
			t.Errorf("sameSite(%s, %s) = %v, want %v", tc.origin, tc.target, got, tc.want)
		}
	}
}

// --- 5. Docker Hub counts GETs ---

func TestSecondTagPullIsAHeadNotAGet(t *testing.T) {
	for _, tc := range []struct{ first, second string }{
		{http.MethodGet, http.MethodGet},
		{http.MethodHead, http.MethodHead},
		{http.MethodGet, http.MethodHead},
		{http.MethodHead, http.MethodGet},
	} {
		t.Run(tc.first+" then "+tc.second, func(t *testing.T) {
			e := newEnv(t)
			img, d := e.pushRandom("app", "v1")
			e.sign("app", d, e.key)
			want, _ := rawManifest(t, img)
			e.up.requests()
			path := "/v2/app/manifests/v1"
			method := func(m string) func(seenRequest) bool {
				return func(r seenRequest) bool { return r.Method == m && strings.Contains(r.Path, "/manifests/") }
			}
			pull := func(m string) {
				resp := e.do(m, path)
				b := wantStatus(t, resp, http.StatusOK, "")
				if resp.Header.Get("Docker-Content-Digest") != d.String() || (m == http.MethodGet && !bytes.Equal(b, want)) {
					t.Fatalf("%s %s served other bytes than the verified manifest", m, path)
				}
			}

			pull(tc.first)
			first := e.up.requests()
			if g := count(first, func(r seenRequest) bool { return r.Method == http.MethodGet && r.Path == path }); g != 1 {
				t.Errorf("first pull: %d GETs of the tag upstream, want 1 (the bytes must be hashed)", g)
			}
			pull(tc.second)
			second := e.up.requests()
			if g, h := count(second, method(http.MethodGet)), count(second, func(r seenRequest) bool {
				return r.Method == http.MethodHead && r.Path == path
			}); g != 0 || h != 1 {
				t.Errorf("second pull: %d manifest GETs and %d HEADs of the tag upstream, want 0 and 1: %v", g, h, second)
			}

			text := metricsOf(t, e.srv)
			up := `upstream="` + e.up.host + `"`
			if g := metricIn(t, text, "cosign_proxy_upstream_manifest_requests_total", up, `method="GET"`); g != 1 {
				t.Errorf("upstream_manifest_requests_total GET = %v, want 1", g)
			}
			if h := metricIn(t, text, "cosign_proxy_upstream_manifest_requests_total", up, `method="HEAD"`); h != 1 {
				t.Errorf("upstream_manifest_requests_total HEAD = %v, want 1", h)
			}
		})
	}
}

// --- 6. upstream TLS ---

func TestUpstreamTLS(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	up := httptest.NewTLSServer(reg)
	t.Cleanup(up.Close)
	host := strings.TrimPrefix(up.URL, "https://")
	client := remote.WithTransport(up.Client().Transport)
	key := newTestKey(t)

	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, client); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	payload, err := sigstore.NewPayload(host+"/app", d, nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.priv.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sigstore.AppendSignature(context.Background(), ref.Context().Digest(d.String()), payload, sig, client); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFileAtomic(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}))

	for _, tc := range []struct {
		name     string
		u        Upstream
		want     int
		wantWarn bool
	}{
		{"system roots only", Upstream{}, http.StatusBadGateway, false},
		{"caFile", Upstream{CAFile: caFile}, http.StatusOK, false},
		{"insecureSkipVerify", Upstream{InsecureSkipVerify: true}, http.StatusOK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			u := tc.u
			u.Registry, u.URL = host, up.URL
			cfg := &Config{
				Upstreams:       []Upstream{u},
				Policies:        []*verifier.Policy{{Name: "all", Match: []string{host + "/**"}, Keys: []sigstore.PublicKey{key.pub}}},
				UpstreamTimeout: 5 * time.Second,
			}
			srv, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			ps := httptest.NewServer(srv)
			defer ps.Close()
			resp, err := http.Get(ps.URL + "/v2/app/manifests/v1")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.want, b)
			}
			warned := strings.Contains(logText(&logs), "level=WARN") && strings.Contains(logText(&logs), "insecureSkipVerify")
			if warned != tc.wantWarn {
				t.Errorf("warning logged: %v, want %v; logs:\n%s", warned, tc.wantWarn, logText(&logs))
			}
		})
	}
}

// --- 9. the audit line ---

func TestAuditLineForEachDecision(t *testing.T) {
	var logs syncBuffer
	e := newOwnedEnv(t, false)
	e.srv = nil
	e.proxy.Close()
	srv, err := New(e.cfg, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.proxy = httptest.NewServer(srv)
	t.Cleanup(e.proxy.Close)

	_, signed := e.pushRandom("app", "signed")
	e.sign("app", signed, e.key)
	_, unsigned := e.pushRandom("app", "unsigned")
	_, broken := e.pushRandom("app", "broken")
	robot := basicAuth(robotUser, robotPass)
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != robot {
			w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		if strings.Contains(r.URL.Path, broken.Hex) { // its signature lookups fail
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		return false
	})
	alice := basicAuth(aliceUser, alicePass)

	e.wantGet("/v2/app/manifests/signed", alice, http.StatusOK)
	e.wantGet("/v2/app/manifests/unsigned", alice, http.StatusForbidden)
	e.wantGet("/v2/app/manifests/"+signed.String(), alice, http.StatusOK)
	e.wantGet("/v2/app/manifests/broken", alice, http.StatusBadGateway)
	e.wantGet("/v2/app/manifests/signed", "", http.StatusUnauthorized) // no decision
	e.wantGet("/healthz", "", http.StatusOK)                           // no decision

	var decisions []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logText(&logs)))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if rec["msg"] == "decision" {
			decisions = append(decisions, rec)
		}
	}
	if len(decisions) != 4 {
		t.Fatalf("%d decision records, want 4:\n%s", len(decisions), logText(&logs))
	}
	want := []map[string]any{
		{"reference": "signed", "digest": signed.String(), "result": "admit", "reason": string(verifier.ReasonVerified),
			"keys": e.key.pub.ID(), "cached": false},
		{"reference": "unsigned", "digest": unsigned.String(), "result": "deny", "reason": string(verifier.ReasonNoSignatures),
			"keys": "", "cached": false},
		{"reference": signed.String(), "digest": signed.String(), "result": "admit", "reason": string(verifier.ReasonVerified),
			"keys": e.key.pub.ID(), "cached": true},
		{"reference": "broken", "digest": broken.String(), "result": "error", "keys": "", "cached": false},
	}
	for i, rec := range decisions {
		for k, v := range want[i] {
			if rec[k] != v {
				t.Errorf("decision %d: %s = %v, want %v", i, k, rec[k], v)
			}
		}
		for k, v := range map[string]any{"user": aliceUser, "upstream": e.up.host, "repository": "app", "policy": "all", "level": "INFO"} {
			if k == "policy" && rec["result"] == "error" {
				continue // no decision was made: the verifier names no policy
			}
			if rec[k] != v {
				t.Errorf("decision %d: %s = %v, want %v", i, k, rec[k], v)
			}
		}
		if c, _ := rec["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
			t.Errorf("decision %d: client = %v, want the client's address", i, rec["client"])
		}
		if l, ok := rec["latency"].(float64); !ok || l < 0 {
			t.Errorf("decision %d: latency = %v, want a duration", i, rec["latency"])
		}
	}
	for _, secret := range []string{robotPass, alicePass, robot, alice, base64.StdEncoding.EncodeToString([]byte(robotPass))} {
		if strings.Contains(logText(&logs), secret) {
			t.Errorf("the logs hold a credential (%q)", secret)
		}
	}
}

// A client that logged in to the proxy (clientAuth) sends those
// credentials on every request to the proxy's host, whichever upstream the
// path names. They are the proxy's password: no upstream may see them, not
// even one whose clients' credentials are forwarded.
func TestClientAuthCredentialsNeverGoUpstream(t *testing.T) {
	private := newFakeUpstream(t)
	e := newOwnedEnv(t, false, func(e *env, c *Config) {
		// The env's upstream is the default one and forwards clients'
		// credentials; the private one holds the proxy's own.
		c.Upstreams[0].Auth, c.Upstreams[0].Public = nil, false
		dir := t.TempDir()
		pw := filepath.Join(dir, "robot.password")
		writeFileAtomic(t, pw, []byte(robotPass+"\n"))
		c.Upstreams = append(c.Upstreams, Upstream{Registry: private.host, URL: private.URL,
			Auth: &UpstreamAuth{Username: robotUser, PasswordFile: pw}})
		c.DefaultUpstream = e.up.host
		c.Policies[0].Match = []string{"**"}
	})
	_, d := e.pushRandom("app", "v1")
	e.sign("app", d, e.key)
	alice := basicAuth(aliceUser, alicePass)
	e.up.requests()

	e.wantGet("/v2/app/manifests/v1", alice, http.StatusOK)
	e.wantGet("/v2/", alice, http.StatusOK)
	e.wantGet("/v2/app/tags/list", alice, http.StatusOK)
	for _, r := range e.up.requests() {
		if r.Auth == alice {
			t.Errorf("upstream %s saw alice's proxy credentials on %s %s", e.up.host, r.Method, r.Path)
		}
	}
}

func TestOwnedCredentialsFromDockerConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		registry func(*env) string // the upstream's registry name
		key      func(*env) string // the key of auths in config.json
	}{
		{"by host", func(e *env) string { return e.up.host }, func(e *env) string { return e.up.host }},
		{"Docker Hub", func(*env) string { return "docker.io" }, func(*env) string { return "https://index.docker.io/v1/" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgFile := filepath.Join(dir, "config.json")
			e := newEnv(t, func(e *env, c *Config) {
				auths := map[string]any{"auths": map[string]any{tc.key(e): map[string]string{
					"auth": base64.StdEncoding.EncodeToString([]byte(robotUser + ":" + robotPass))}}}
				b, _ := json.Marshal(auths)
				writeFileAtomic(t, cfgFile, b)
				c.Upstreams[0].Registry = tc.registry(e)
				c.Upstreams[0].Auth = &UpstreamAuth{DockerConfig: cfgFile}
				c.Upstreams[0].Public = true
				c.Policies[0].Match = []string{tc.registry(e) + "/**"}
			})
			_, d := e.pushRandom("library/app", "v1")
			e.signAs(tc.registry(e)+"/library/app", "library/app", d, e.key)
			e.up.requireRobot()
			e.wantGet("/v2/library/app/manifests/v1", "", http.StatusOK)
		})
	}

	t.Run("no credentials for the upstream", func(t *testing.T) {
		dir := t.TempDir()
		cfgFile := filepath.Join(dir, "config.json")
		writeFileAtomic(t, cfgFile, []byte(`{"auths":{"elsewhere.example.com":{"auth":"eDp5"}}}`))
		up := newFakeUpstream(t)
		_, err := New(&Config{
			Upstreams:    []Upstream{{Registry: up.host, URL: up.URL, Public: true, Auth: &UpstreamAuth{DockerConfig: cfgFile}}},
			DefaultAllow: true,
		}, WithLogger(slog.New(slog.DiscardHandler)))
		if err == nil {
			t.Fatal("New accepted a Docker config without credentials for the upstream")
		}
	})
}

func TestParseConfigDeploymentKeys(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "test CA")
	cert, key := ca.issue(t, 9, false)
	files := map[string][]byte{
		"tls.crt": cert, "tls.key": key, "ca.pem": ca.pem, "robot.password": []byte(robotPass + "\n"),
		"htpasswd":     []byte(htpasswdEntry(t, aliceUser, alicePass)),
		"config.json":  []byte(`{"auths":{"ghcr.io":{"auth":"cm9ib3Q6cHc="}}}`),
		"md5.htpasswd": []byte("bob:$apr1$abcdefgh$0123456789abcdefghijkl\n"),
		"not.pem":      []byte("hello\n"),
	}
	for name, b := range files {
		writeFileAtomic(t, filepath.Join(dir, name), b)
	}
	const full = `listen: 0.0.0.0:5443
metricsListen: 127.0.0.1:9090
tls:
  cert: tls.crt
  key: tls.key
  clientCA: ca.pem
log:
  format: json
  level: warn
clientAuth:
  htpasswd: htpasswd
upstreams:
  - registry: registry.example.com
    url: https://registry.example.com
    caFile: ca.pem
    auth:
      username: robot
      passwordFile: robot.password
  - registry: ghcr.io
    url: https://ghcr.io
    auth:
      dockerConfig: config.json
    public: true
  - registry: insecure.example.com:5000
    url: https://insecure.example.com:5000
    insecureSkipVerify: true
    forwardCredentials: false
defaultUpstream: registry.example.com
defaultPolicy: allow
`
	cfg, err := ParseConfig([]byte(full), filepath.Join(dir, "proxy.yaml"), dir)
	if err != nil {
		t.Fatal(err)
	}
	j := func(name string) string { return filepath.Join(dir, name) }
	switch {
	case cfg.TLS == nil || cfg.TLS.Cert != j("tls.crt") || cfg.TLS.Key != j("tls.key") || cfg.TLS.ClientCA != j("ca.pem"):
		t.Errorf("tls: %+v", cfg.TLS)
	case cfg.MetricsListen != "127.0.0.1:9090":
		t.Errorf("metricsListen %q", cfg.MetricsListen)
	case cfg.Log != LogConfig{Format: "json", Level: "warn"}:
		t.Errorf("log %+v", cfg.Log)
	case cfg.ClientAuth == nil || cfg.ClientAuth.Htpasswd != j("htpasswd"):
		t.Errorf("clientAuth %+v", cfg.ClientAuth)
	case len(cfg.Upstreams) != 3:
		t.Fatalf("upstreams %+v", cfg.Upstreams)
	}
	u0, u1, u2 := cfg.Upstreams[0], cfg.Upstreams[1], cfg.Upstreams[2]
	if u0.CAFile != j("ca.pem") || u0.Auth == nil || *u0.Auth != (UpstreamAuth{Username: robotUser, PasswordFile: j("robot.password")}) || u0.Public {
		t.Errorf("upstream 0: %+v %+v", u0, u0.Auth)
	}
	if u1.Auth == nil || *u1.Auth != (UpstreamAuth{DockerConfig: j("config.json")}) || !u1.Public {
		t.Errorf("upstream 1: %+v %+v", u1, u1.Auth)
	}
	if !u2.InsecureSkipVerify || u2.ForwardCredentials == nil || *u2.ForwardCredentials || u2.Auth != nil {
		t.Errorf("upstream 2: %+v", u2)
	}
	for _, f := range []string{"proxy.yaml", "tls.crt", "tls.key", "ca.pem", "htpasswd", "robot.password", "config.json"} {
		if !slices.Contains(cfg.Files(), j(f)) {
			t.Errorf("Files() lacks %s (a change of it must reload): %v", f, cfg.Files())
		}
	}

	for _, tc := range []struct{ name, from, to, want string }{
		{"tls without key", "  key: tls.key\n", "", "tls needs both cert and key"},
		{"tls key of another certificate", "  cert: tls.crt\n", "  cert: ca.pem\n", "tls"},
		{"clientCA not PEM", "  clientCA: ca.pem\n", "  clientCA: not.pem\n", "no PEM certificate"},
		{"log format", "  format: json\n", "  format: xml\n", "log.format"},
		{"log level", "  level: warn\n", "  level: loud\n", "log.level"},
		{"metricsListen", "metricsListen: 127.0.0.1:9090\n", "metricsListen: nowhere\n", "metricsListen"},
		{"htpasswd not bcrypt", "  htpasswd: htpasswd\n", "  htpasswd: md5.htpasswd\n", "bcrypt"},
		{"htpasswd missing", "  htpasswd: htpasswd\n", "  htpasswd: nope\n", "htpasswd"},
		{"caFile not PEM", "    caFile: ca.pem\n", "    caFile: not.pem\n", "no PEM certificate"},
		{"auth with both", "      dockerConfig: config.json\n", "      dockerConfig: config.json\n      username: robot\n", "not both"},
		{"auth without password", "      passwordFile: robot.password\n", "", "passwordFile"},
		{"empty password file", "      passwordFile: robot.password\n", "      passwordFile: htpasswd-empty\n", "htpasswd-empty"},
		{"insecureSkipVerify not a bool", "    insecureSkipVerify: true\n", "    insecureSkipVerify: yes\n", "insecureSkipVerify"},
		{"public not a bool", "    public: true\n", "    public: 1\n", "public"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "empty password file" {
				writeFileAtomic(t, j("htpasswd-empty"), nil)
			}
			y := strings.Replace(full, tc.from, tc.to, 1)
			if y == full && tc.from != tc.to {
				t.Fatalf("%q is not in the configuration", tc.from)
			}
			_, err := ParseConfig([]byte(y), "proxy.yaml", dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseConfig: %v, want an error mentioning %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "proxy.yaml:") {
				t.Errorf("error %q does not start with FILE:LINE", err)
			}
		})
	}
}

func TestHtpasswdAcceptsOnlyBcrypt(t *testing.T) {
	good := htpasswdEntry(t, aliceUser, alicePass)
	for _, tc := range []struct {
		name, file string
		ok         bool
	}{
		{"$2a$", good, true},
		{"$2y$ (htpasswd -B)", strings.Replace(good, "$2a$", "$2y$", 1), true},
		{"$2b$", strings.Replace(good, "$2a$", "$2b$", 1), true},
		{"comments, blank lines, CRLF", "# users\r\n\r\n" + strings.TrimSuffix(good, "\n") + "\r\n", true},
		{"MD5", "alice:$apr1$abcdefgh$0123456789abcdefghijkl\n", false},
		{"SHA1", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", false},
		{"plain text", "alice:wonderland\n", false},
		{"no users", "# nobody\n", false},
		{"no colon", "alice\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "htpasswd")
			writeFileAtomic(t, path, []byte(tc.file))
			h, err := loadHtpasswd(path)
			if !tc.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				auth string
				want bool
			}{
				{basicAuth(aliceUser, alicePass), true},
				{basicAuth(aliceUser, "wrong"), false},
				{basicAuth(aliceUser, alicePass), true}, // remembered
				{basicAuth(aliceUser, alicePass+"x"), false},
				{basicAuth("bob", alicePass), false},
			} {
				r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
				r.Header.Set("Authorization", c.auth)
				if user, ok := h.check(r); ok != c.want || (ok && user != aliceUser) {
					t.Errorf("check(%s) = %q, %v; want %v", c.auth, user, ok, c.want)
				}
			}
		})
	}
}

// A reload that changes cache.manifestBytes (here: keep none) either takes
// effect or says it will not; it does not go silently unapplied.
func TestReloadOfManifestCacheSizeIsAppliedOrWarned(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t)
	e.proxy.Close()
	srv, err := New(e.cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.proxy = srv, httptest.NewServer(srv)
	t.Cleanup(e.proxy.Close)
	_, d := e.pushRandom("app", "v1")
	e.sign("app", d, e.key)
	byDigest := "/v2/app/manifests/" + d.String()
	e.wantGet(byDigest, "", http.StatusOK) // held from now on

	c := *e.cfg
	c.Cache.ManifestBytes = -1
	if err := e.srv.Reload(&c); err != nil {
		t.Fatal(err)
	}
	e.up.requests()
	e.wantGet(byDigest, "", http.StatusOK)
	gets := count(e.up.requests(), func(r seenRequest) bool {
		return r.Method == http.MethodGet && r.Path == "/v2/app/manifests/"+d.String()
	})
	warned := strings.Contains(logText(&logs), "level=WARN") && strings.Contains(logText(&logs), "cache")
	if gets == 0 && !warned {
		t.Errorf("after a reload to cache.manifestBytes: 0 (keep none), bytes are still served from memory, and nothing says the change waits for a restart")
	}
}

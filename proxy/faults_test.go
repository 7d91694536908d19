package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// Reliability: faults between the proxy and its upstream. Every case puts
// one fault on the path, asks the proxy once, and wants a clear OCI error
// (JSON {"errors":[{"code","message"}]}, a status that says what
// happened) and no admission; then ends the fault and wants the same
// request to succeed, so that no failure was cached; and the proxy, its
// upstream and the test's servers must leave no goroutine behind.

// faultTimeout is the proxy's upstreamTimeout in these tests.
const faultTimeout = 500 * time.Millisecond

// faultLink is a TCP fault injector: it listens on a fixed loopback
// address and forwards every connection to target, unless it is down (the
// address refuses connections) or stalling (a new connection is held
// without a byte forwarded either way for the stall).
type faultLink struct {
	addr   string
	target string
	stall  atomic.Int64 // time.Duration

	mu    sync.Mutex
	ln    net.Listener // nil while down
	conns map[net.Conn]struct{}
	quit  chan struct{} // closed when the link goes down: ends stalls
	wg    sync.WaitGroup
}

func newFaultLink(t testing.TB, target string) *faultLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &faultLink{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	l.serve(ln)
	t.Cleanup(func() {
		l.down()
		l.wg.Wait()
	})
	return l
}

func (l *faultLink) url() string { return "http://" + l.addr }

func (l *faultLink) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln, l.quit = ln, make(chan struct{})
	quit := l.quit
	l.mu.Unlock()
	l.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !l.track(c) {
				c.Close()
				continue
			}
			l.wg.Go(func() { l.forward(c, quit) })
		}
	})
}

// track registers c to be closed when the link goes down; false when it
// is down already.
func (l *faultLink) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *faultLink) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.Close()
}

func (l *faultLink) forward(c net.Conn, quit <-chan struct{}) {
	defer l.untrack(c)
	if d := time.Duration(l.stall.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-quit:
			return
		}
	}
	u, err := net.DialTimeout("tcp", l.target, time.Second)
	if err != nil {
		return
	}
	if !l.track(u) {
		u.Close()
		return
	}
	defer l.untrack(u)
	done := make(chan struct{}, 2)
	l.wg.Go(func() { _, _ = io.Copy(u, c); done <- struct{}{} })
	l.wg.Go(func() { _, _ = io.Copy(c, u); done <- struct{}{} })
	<-done // one side ended: closing both (deferred) ends the other copy
}

// down closes the listener (connections are refused) and every
// connection through the link.
func (l *faultLink) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return
	}
	l.ln.Close()
	l.ln = nil
	close(l.quit)
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
}

// up listens again on the same address.
func (l *faultLink) up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		t.Fatalf("fault link: listening again on %s: %v", l.addr, err)
	}
	l.serve(ln)
}

// faultPort is the port of a host:port.
func faultPort(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// faultHijack takes the raw connection of an upstream answer.
func faultHijack(w http.ResponseWriter) net.Conn {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic("fault: cannot hijack the upstream connection: " + err.Error())
	}
	return c
}

// faultHead is the status line and headers of a 200 with body's length
// announced as length.
func faultHead(contentType, digest string, length int) string {
	h := "HTTP/1.1 200 OK\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(length) + "\r\n"
	if digest != "" {
		h += "Docker-Content-Digest: " + digest + "\r\n"
	}
	return h + "\r\n"
}

// faultReset answers 200 announcing all of body, sends its first n bytes
// and resets the connection (RST, not FIN).
func faultReset(w http.ResponseWriter, contentType, digest string, body []byte, n int) {
	c := faultHijack(w)
	_, _ = io.WriteString(c, faultHead(contentType, digest, len(body)))
	_, _ = c.Write(body[:n])
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// faultTruncate answers 200 announcing more bytes than body, sends body and
// closes the connection cleanly (FIN).
func faultTruncate(w http.ResponseWriter, contentType, digest string, body []byte) {
	c := faultHijack(w)
	_, _ = io.WriteString(c, faultHead(contentType, digest, len(body)+1000))
	_, _ = c.Write(body)
	c.Close()
}

// faultAnswer answers status with a body of the given type.
func faultAnswer(w http.ResponseWriter, status int, contentType, body string, header ...string) {
	for i := 0; i+1 < len(header); i += 2 {
		w.Header().Set(header[i], header[i+1])
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// faultSigLookup: the requests the proxy makes to read a digest's
// signatures (the .sig tag, the referrers API, the referrers tag).
func faultSigLookup(r *http.Request) bool {
	return strings.Contains(r.URL.Path, "/manifests/sha256-") || strings.Contains(r.URL.Path, "/referrers/")
}

// faultFixture is one case's world: the fake upstream (in-memory
// registry), the fault link in front of it, a proxy whose upstream is the
// link, a signed image app:v1 with a 1 MiB layer, and an unsigned image
// app:unsigned.
type faultFixture struct {
	*env
	link *faultLink

	signed, unsigned v1.Hash
	signedBody       []byte
	signedType       string
	unsignedBody     []byte
	unsignedType     string
	layer            v1.Hash
	layerBody        []byte

	// tokens is the token server's link (withTokenServer); afterSeed
	// runs once the images are pushed and signed.
	tokens    *faultLink
	afterSeed func()
}

func newFaultFixture(t *testing.T, edit ...func(*faultFixture, *Config)) *faultFixture {
	t.Helper()
	f := &faultFixture{}
	f.env = newEnv(t, func(e *env, c *Config) {
		f.env = e
		f.link = newFaultLink(t, e.up.host)
		c.Upstreams[0].URL = f.link.url()
		c.UpstreamTimeout = faultTimeout
		for _, fn := range edit {
			fn(f, c)
		}
	})
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.signed = f.push("app", "v1", img)
	f.sign("app", f.signed, f.key)
	f.signedBody, f.signedType = rawManifest(t, img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if f.layer, err = layers[0].Digest(); err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if f.layerBody, err = io.ReadAll(rc); err != nil {
		t.Fatal(err)
	}
	if len(f.layerBody) < 512<<10 {
		t.Fatalf("the layer is %d bytes; the mid-stream reset needs more than 512 KiB", len(f.layerBody))
	}
	other, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.unsigned = f.push("app", "unsigned", other)
	f.unsignedBody, f.unsignedType = rawManifest(t, other)
	if f.afterSeed != nil {
		f.afterSeed()
	}
	return f
}

func (f *faultFixture) manifestPath(ref string) string { return "/v2/app/manifests/" + ref }
func (f *faultFixture) blobPath() string               { return "/v2/app/blobs/" + f.layer.String() }

// faultCase is one fault: what the client asks, how the fault starts and
// ends, and the error the client must get.
type faultCase struct {
	name string
	// edit changes the fixture's configuration (token server case).
	edit func(*faultFixture, *Config)
	// path is what the client GETs; want is the body of a success.
	path func(*faultFixture) (path string, want []byte)
	// start puts the fault in place and returns what ends it.
	start func(*testing.T, *faultFixture) (end func())
	// status and code are the error the client must get; retryAfter,
	// when set, is the Retry-After it must carry.
	status     int
	code       string
	retryAfter string
	// midStream: the status line is out before the fault (a blob
	// streaming), so the client must see the body cut short instead.
	midStream bool
	// getOnly: the fault is in a body, which a HEAD of a blob does not
	// have.
	getOnly bool
	// warm: the proxy has served the request once before the fault, so
	// it holds the verified bytes and asks upstream by tag with a HEAD.
	warm bool
}

func faultSignedTag(f *faultFixture) (string, []byte) { return f.manifestPath("v1"), f.signedBody }
func faultSignedDigest(f *faultFixture) (string, []byte) {
	return f.manifestPath(f.signed.String()), f.signedBody
}
func faultLayer(f *faultFixture) (string, []byte) { return f.blobPath(), f.layerBody }

// faultHook answers the requests match selects with answer until the
// returned end is called.
func faultHook(f *faultFixture, match func(*http.Request) bool, answer func(http.ResponseWriter, *http.Request)) func() {
	f.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		answer(w, r)
		return true
	})
	return func() { f.up.setHook(nil) }
}

// faultPath matches the upstream requests for path (GET or HEAD).
func faultPath(path string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.URL.Path == path }
}

func faultCases() []faultCase {
	const plain500 = "<html><body>500 Internal Server Error</body></html>"
	const oci429 = `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`
	return []faultCase{
		{
			name: "upstream down/manifest", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				f.link.down()
				return func() { f.link.up(t) }
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "upstream down/blob", path: faultLayer,
			start: func(t *testing.T, f *faultFixture) func() {
				f.link.down()
				return func() { f.link.up(t) }
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "upstream down/manifest, warm cache", path: faultSignedTag, warm: true,
			start: func(t *testing.T, f *faultFixture) func() {
				f.link.down()
				return func() { f.link.up(t) }
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "upstream slow/manifest", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				f.link.stall.Store(int64(3 * faultTimeout))
				return func() { f.link.stall.Store(0) }
			},
			status: http.StatusGatewayTimeout, code: CodeUnavailable,
		},
		{
			name: "upstream slow/signature lookup", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultSigLookup, func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(3 * faultTimeout):
					case <-r.Context().Done():
					}
					http.NotFound(w, r)
				})
			},
			status: http.StatusGatewayTimeout, code: CodeUnavailable,
		},
		{
			name: "reset mid-body/manifest", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.manifestPath("v1")), func(w http.ResponseWriter, r *http.Request) {
					faultReset(w, f.signedType, f.signed.String(), f.signedBody, len(f.signedBody)/2)
				})
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "reset mid-body/blob within the gate's peek", path: faultLayer,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.blobPath()), func(w http.ResponseWriter, r *http.Request) {
					faultReset(w, "application/octet-stream", f.layer.String(), f.layerBody, 100)
				})
			},
			getOnly: true,
			status:  http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "reset mid-body/blob streaming", path: faultLayer,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.blobPath()), func(w http.ResponseWriter, r *http.Request) {
					faultReset(w, "application/octet-stream", f.layer.String(), f.layerBody, 256<<10)
				})
			},
			midStream: true, getOnly: true,
		},
		{
			name: "500/manifest", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, func(*http.Request) bool { return true }, func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusInternalServerError, "text/html", plain500)
				})
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "500/manifest, warm cache", path: faultSignedTag, warm: true,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, func(*http.Request) bool { return true }, func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusInternalServerError, "text/html", plain500)
				})
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "500/signature lookup", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultSigLookup, func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusInternalServerError, "text/html", plain500)
				})
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			// Fails until the proxy is fixed: blob pass-through relays
			// upstream's 500 and its HTML body as they are.
			name: "500/blob", path: faultLayer,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.blobPath()), func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusInternalServerError, "text/html", plain500)
				})
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			name: "429/manifest", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.manifestPath("v1")), func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusTooManyRequests, "application/json", oci429, "Retry-After", "7")
				})
			},
			status: http.StatusTooManyRequests, code: CodeTooManyRequests, retryAfter: "7",
		},
		{
			name: "429/manifest, warm cache", path: faultSignedTag, warm: true,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.manifestPath("v1")), func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusTooManyRequests, "application/json", oci429, "Retry-After", "7")
				})
			},
			status: http.StatusTooManyRequests, code: CodeTooManyRequests, retryAfter: "7",
		},
		{
			name: "429/signature lookup", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultSigLookup, func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusTooManyRequests, "application/json", oci429, "Retry-After", "7")
				})
			},
			status: http.StatusServiceUnavailable, code: CodeTooManyRequests, retryAfter: "7",
		},
		{
			name: "429/blob", path: faultLayer,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.blobPath()), func(w http.ResponseWriter, r *http.Request) {
					faultAnswer(w, http.StatusTooManyRequests, "application/json", oci429, "Retry-After", "7")
				})
			},
			status: http.StatusTooManyRequests, code: CodeTooManyRequests, retryAfter: "7",
		},
		{
			name: "truncated manifest", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.manifestPath("v1")), func(w http.ResponseWriter, r *http.Request) {
					faultTruncate(w, f.signedType, f.signed.String(), f.signedBody)
				})
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
		{
			// The header names the signed digest, the bytes are the
			// unsigned image's: the proxy decides on what it hashed.
			name: "lying Docker-Content-Digest/by tag", path: faultSignedTag,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.manifestPath("v1")), func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Docker-Content-Digest", f.signed.String())
					serveBytes(w, f.unsignedBody, f.unsignedType)
				})
			},
			status: http.StatusForbidden, code: CodeDenied,
		},
		{
			name: "lying Docker-Content-Digest/by digest", path: faultSignedDigest,
			start: func(t *testing.T, f *faultFixture) func() {
				return faultHook(f, faultPath(f.manifestPath(f.signed.String())), func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Docker-Content-Digest", f.signed.String())
					serveBytes(w, f.unsignedBody, f.unsignedType)
				})
			},
			status: http.StatusBadGateway, code: CodeManifestInvalid,
		},
		{
			// The upstream holds the proxy's own credentials and
			// challenges for a Bearer token from a realm that is down.
			name: "token server down", path: faultSignedTag, edit: faultWithTokenServer,
			start: func(t *testing.T, f *faultFixture) func() {
				f.tokens.down()
				return func() { f.tokens.up(t) }
			},
			status: http.StatusBadGateway, code: CodeUnavailable,
		},
	}
}

// faultWithTokenServer gives the upstream a Bearer token flow: every request
// without the token gets a 401 naming the realm of a token server (behind
// a fault link of its own), and the proxy holds the credentials for it
// (auth: {username, passwordFile}; public: true, no client auth).
func faultWithTokenServer(f *faultFixture, c *Config) {
	t := f.t.(*testing.T)
	const user, pass, token = "proxy", "s3cret", "tok-123"
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "expires_in": 300})
	}))
	t.Cleanup(tokens.Close)
	f.tokens = newFaultLink(t, strings.TrimPrefix(tokens.URL, "http://"))
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Upstreams[0].Auth = &UpstreamAuth{Username: user, PasswordFile: pw}
	c.Upstreams[0].Public = true
	// By the name localhost: go-containerregistry refuses a token realm
	// on a loopback IP other than the registry's own host:port, and the
	// proxy sends its credentials only to a realm on the upstream's host.
	c.Upstreams[0].URL = "http://localhost:" + faultPort(f.link.addr)
	realm := fmt.Sprintf(`Bearer realm="%s/token",service="%s"`, "http://localhost:"+faultPort(f.tokens.addr), f.up.host)
	// The images are pushed and signed anonymously first; then every
	// request needs the token.
	f.afterSeed = func() {
		f.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Authorization") == "Bearer "+token {
				return false
			}
			w.Header().Set("WWW-Authenticate", realm)
			faultAnswer(w, http.StatusUnauthorized, "application/json", `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`)
			return true
		})
	}
}

func TestFaults(t *testing.T) {
	for _, tc := range faultCases() {
		before := runtime.NumGoroutine()
		t.Run(tc.name, func(t *testing.T) { runFaultCase(t, tc) })
		faultGoroutines(t, tc.name, before)
	}
}

func runFaultCase(t *testing.T, tc faultCase) {
	var edits []func(*faultFixture, *Config)
	if tc.edit != nil {
		edits = append(edits, tc.edit)
	}
	f := newFaultFixture(t, edits...)
	path, want := tc.path(f)
	if tc.warm {
		if b := wantStatus(t, f.do(http.MethodGet, path), http.StatusOK, ""); !bytes.Equal(b, want) {
			t.Fatalf("warm-up GET %s: not the expected content", path)
		}
	}
	end := tc.start(t, f)
	ended := false
	defer func() {
		if !ended {
			end()
		}
	}()

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if tc.getOnly && method == http.MethodHead {
			continue
		}
		resp := f.do(method, path)
		if tc.midStream {
			faultCutShort(t, resp, len(want))
			continue
		}
		b := body(t, resp)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s %s during the fault: status %d, want %d; body %.300s", method, path, resp.StatusCode, tc.status, b)
		}
		if d := resp.Header.Get("Docker-Content-Digest"); d != "" {
			t.Errorf("%s during the fault: an error carries Docker-Content-Digest %s", method, d)
		}
		if tc.retryAfter != "" && resp.Header.Get("Retry-After") != tc.retryAfter {
			t.Errorf("%s during the fault: Retry-After %q, want %q", method, resp.Header.Get("Retry-After"), tc.retryAfter)
		}
		if method == http.MethodHead {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET during the fault: Content-Type %q, want application/json", ct)
		}
		e := decodeOCIError(t, b)
		if e.Code != tc.code || e.Message == "" {
			t.Errorf("GET during the fault: error %s %q, want code %s and a message", e.Code, e.Message, tc.code)
		}
		if bytes.Contains(b, want[:min(len(want), 64)]) {
			t.Errorf("GET during the fault: the error body carries the content")
		}
		t.Logf("during the fault: %d %s: %s", resp.StatusCode, e.Code, e.Message)
	}

	end()
	ended = true
	// Recovery: the same request now succeeds, at once (nothing cached
	// the failure), with exactly the content.
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp := f.do(method, path)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s after the fault ended: status %d, want 200; body %.300s", method, path, resp.StatusCode, b)
		}
		if method == http.MethodGet && !bytes.Equal(b, want) {
			t.Fatalf("GET after the fault ended: %d bytes, not the %d expected", len(b), len(want))
		}
	}
}

// faultCutShort wants a response whose body ends before its announced
// length with a read error: the client cannot take it for the whole blob.
func faultCutShort(t *testing.T, resp *http.Response, full int) {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		// An error status is as good, if it is an OCI error.
		if e := decodeOCIError(t, b); e.Code == "" {
			t.Fatalf("status %d without an OCI error code", resp.StatusCode)
		}
		t.Logf("during the fault: %d", resp.StatusCode)
		return
	}
	if err == nil || len(b) >= full {
		t.Fatalf("blob cut upstream after 256 KiB reached the client whole: %d of %d bytes, read error %v", len(b), full, err)
	}
	t.Logf("during the fault: 200 (status line already out), body cut after %d of %d bytes: %v", len(b), full, err)
}

// faultGoroutines waits up to 5 s for the goroutine count to come back to
// what it was before the case; else it fails with the goroutines left.
func faultGoroutines(t *testing.T, name string, before int) {
	t.Helper()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > before {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Errorf("%s: %d goroutines after the case, %d before:\n%s", name, n, before, buf.String())
		return
	}
	t.Logf("%s: goroutines %d before, %d after", name, before, n)
}

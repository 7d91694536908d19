package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// seenRequest is what the upstream recorded of one request.
type seenRequest struct {
	Method, Path, Query, Auth, Accept string
}

// fakeUpstream is an in-memory registry behind a wrapper that records every
// request and lets a test answer some requests itself (faults, lies).
type fakeUpstream struct {
	*httptest.Server
	host string // 127.0.0.1:PORT, also the registry name clients use

	mu   sync.Mutex
	seen []seenRequest
	hook atomic.Pointer[func(http.ResponseWriter, *http.Request) bool]
}

func newFakeUpstream(t testing.TB, opts ...registry.Option) *fakeUpstream {
	t.Helper()
	opts = append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)
	reg := registry.New(opts...)
	u := &fakeUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Accept")})
		u.mu.Unlock()
		if h := u.hook.Load(); h != nil && (*h)(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	u.host = strings.TrimPrefix(u.URL, "http://")
	return u
}

// setHook makes h answer the requests it returns true for; nil removes it.
func (u *fakeUpstream) setHook(h func(http.ResponseWriter, *http.Request) bool) {
	if h == nil {
		u.hook.Store(nil)
		return
	}
	u.hook.Store(&h)
}

// requests returns the requests seen so far and forgets them.
func (u *fakeUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.seen
	u.seen = nil
	return out
}

func count(reqs []seenRequest, pred func(seenRequest) bool) int {
	n := 0
	for _, r := range reqs {
		if pred(r) {
			n++
		}
	}
	return n
}

func isSigTag(r seenRequest) bool {
	return strings.Contains(r.Path, "/manifests/sha256-") && strings.HasSuffix(r.Path, ".sig")
}

// testKey is a generated Ed25519 key pair.
type testKey struct {
	priv sigstore.PrivateKey
	pub  sigstore.PublicKey
	pem  []byte
}

func newTestKey(t testing.TB) testKey {
	t.Helper()
	privPEM, pubPEM, err := sigstore.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := sigstore.ParsePrivateKey(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sigstore.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, pub: pub, pem: pubPEM}
}

// env is an upstream registry, a key, and a proxy in front of the upstream
// with one enforce policy for everything in it.
type env struct {
	t     testing.TB
	up    *fakeUpstream
	key   testKey
	cfg   *Config
	srv   *Server
	proxy *httptest.Server
	host  string // the proxy's 127.0.0.1:PORT
}

// newEnv starts upstream and proxy; edit may change the config first.
func newEnv(t testing.TB, edit ...func(*env, *Config)) *env {
	t.Helper()
	e := &env{t: t, up: newFakeUpstream(t), key: newTestKey(t)}
	e.cfg = &Config{
		Upstreams: []Upstream{{Registry: e.up.host, URL: e.up.URL}},
		Policies: []*verifier.Policy{{
			Name:  "all",
			Match: []string{e.up.host + "/**"},
			Keys:  []sigstore.PublicKey{e.key.pub},
		}},
		UpstreamTimeout: 2 * time.Second,
	}
	for _, f := range edit {
		f(e, e.cfg)
	}
	e.start()
	return e
}

func (e *env) start() {
	e.t.Helper()
	srv, err := New(e.cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	e.proxy = httptest.NewServer(srv.Handler())
	e.t.Cleanup(e.proxy.Close)
	e.host = strings.TrimPrefix(e.proxy.URL, "http://")
}

// restart replaces the proxy with a fresh one (empty caches).
func (e *env) restart() {
	e.proxy.Close()
	e.start()
}

// push writes img to the upstream as repo:tag and returns its digest.
func (e *env) push(repo, tag string, img v1.Image) v1.Hash {
	e.t.Helper()
	ref, err := name.ParseReference(e.up.host + "/" + repo + ":" + tag)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		e.t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// pushRandom pushes a new random image and returns it and its digest.
func (e *env) pushRandom(repo, tag string) (v1.Image, v1.Hash) {
	e.t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	return img, e.push(repo, tag, img)
}

// sign stores a simple-signing signature by k for repo@d, naming the
// upstream registry in its docker-reference.
func (e *env) sign(repo string, d v1.Hash, k testKey) {
	e.t.Helper()
	e.signAs(e.up.host+"/"+repo, repo, d, k)
}

// signAs signs repo@d with a docker-reference of reference.
func (e *env) signAs(reference, repo string, d v1.Hash, k testKey) {
	e.t.Helper()
	payload, err := sigstore.NewPayload(reference, d, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	sig, err := k.priv.Sign(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	dig, err := name.NewDigest(e.up.host + "/" + repo + "@" + d.String())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := sigstore.AppendSignature(context.Background(), dig, payload, sig); err != nil {
		e.t.Fatal(err)
	}
}

// ref is repo:tag (or repo@digest) through the proxy.
func (e *env) ref(repo, tagOrDigest string) name.Reference {
	e.t.Helper()
	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}
	ref, err := name.ParseReference(e.host + "/" + repo + sep + tagOrDigest)
	if err != nil {
		e.t.Fatal(err)
	}
	return ref
}

// do sends a raw request to the proxy.
func (e *env) do(method, path string, header ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.proxy.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// body reads a response body.
func body(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ociError decodes an OCI error body and returns its first error.
func decodeOCIError(t testing.TB, b []byte) ociError {
	t.Helper()
	var e ociErrors
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q (%v)", b, err)
	}
	return e.Errors[0]
}

// wantStatus checks a response's status and, for errors, its OCI code, and
// returns the body.
func wantStatus(t testing.TB, resp *http.Response, status int, code string) []byte {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, b)
	}
	if code != "" && resp.Request.Method != http.MethodHead {
		if got := decodeOCIError(t, b); got.Code != code {
			t.Fatalf("code %q, want %q (message %q)", got.Code, code, got.Message)
		}
	}
	return b
}

// transportErr returns the registry error ggcr's client got.
func transportErr(t testing.TB, err error) *transport.Error {
	t.Helper()
	var te *transport.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a registry error, got %v", err)
	}
	return te
}

// rawManifest returns the bytes and media type of an image's manifest.
func rawManifest(t testing.TB, img v1.Image) ([]byte, string) {
	t.Helper()
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return b, string(mt)
}

// serveBytes answers with a manifest body of the given type.
func serveBytes(w http.ResponseWriter, b []byte, mediaType string) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, bytes.NewReader(b))
}

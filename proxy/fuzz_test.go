package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// FuzzRoutes sends arbitrary requests through the whole handler, with an
// upstream that records what reaches it and answers 404. Whatever the path,
// query and method: no panic, no 5xx (an upstream that answers is not a
// failure), writes are refused, and what reaches upstream is a GET or HEAD
// under /v2/ whose repository is a valid name, with no ns parameter left.
func FuzzRoutes(f *testing.F) {
	for _, s := range []string{
		"/v2/", "/v2/prod/app/manifests/v1", "/v2/prod/app/manifests/sha256:" + strings.Repeat("a", 64),
		"/v2/a/manifests/b/manifests/v1", "/v2/prod%2Fapp/manifests/v1", "/v2/x/../y/blobs/sha256:00",
		"/v2/up.example:5000/prod/app/tags/list?n=10", "/v2/prod/app/referrers/sha256:" + strings.Repeat("b", 64) + "?ns=up.example:5000",
		"/v2/prod/app/blobs/sha512:" + strings.Repeat("c", 128), "/metrics", "/v2/_catalog", "//v2//x",
	} {
		f.Add("GET", s)
		f.Add("HEAD", s)
	}
	f.Add("PUT", "/v2/prod/app/manifests/v1")
	f.Add("DELETE", "/v2/prod/app/blobs/sha256:"+strings.Repeat("0", 64))

	var mu sync.Mutex
	var reached []*http.Request
	upstream := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		reached = append(reached, r)
		mu.Unlock()
		return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}`)), Request: r}, nil
	})
	key := newTestKey(f)
	srv, err := New(&Config{
		Upstreams: []Upstream{{Registry: "up.example:5000", URL: "http://up.example:5000"}},
		Policies:  []*verifier.Policy{{Name: "all", Match: []string{"up.example:5000/**"}, Keys: []sigstore.PublicKey{key.pub}}},
	}, WithTransport(upstream), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, method, target string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n/") || !strings.HasPrefix(target, "/") {
			return
		}
		req, err := http.NewRequest(method, "http://proxy.example"+target, nil)
		if err != nil {
			return
		}
		req.RequestURI = target
		mu.Lock()
		reached = nil
		mu.Unlock()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: status %d: %s", method, target, rec.Code, rec.Body)
		}
		if method != http.MethodGet && method != http.MethodHead && rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("%s %s: status %d, want 405", method, target, rec.Code)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range reached {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				t.Fatalf("%s %s sent %s upstream", method, target, r.Method)
			}
			if strings.Contains(r.URL.RawQuery, "ns=") {
				t.Fatalf("%s %s sent ns upstream: %s", method, target, r.URL)
			}
			p := r.URL.EscapedPath()
			if p == "/v2/" {
				continue
			}
			rest, ok := strings.CutPrefix(p, "/v2/")
			if !ok {
				t.Fatalf("%s %s sent %s upstream", method, target, p)
			}
			i := max(strings.LastIndex(rest, "/manifests/"), strings.LastIndex(rest, "/blobs/"),
				strings.LastIndex(rest, "/tags/"), strings.LastIndex(rest, "/referrers/"))
			if i <= 0 {
				t.Fatalf("%s %s sent %s upstream", method, target, p)
			}
			if err := sigstore.CheckRepository(rest[:i]); err != nil {
				t.Fatalf("%s %s sent %s upstream: %v", method, target, p, err)
			}
		}
	})
}

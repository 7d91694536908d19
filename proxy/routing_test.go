package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/sigstore"
)

func TestPathTricks(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("a/manifests/b", "v1")
	e.sign("a/manifests/b", d, e.key)
	e.pushRandom("prod/app", "v1")
	e.up.requests()

	for _, tc := range []struct {
		name, path string
		status     int
		code       string
	}{
		{"a repository named a/manifests/b works", "/v2/a/manifests/b/manifests/v1", 200, ""},
		{"upper case", "/v2/Prod/app/manifests/v1", 400, "NAME_INVALID"},
		{"encoded slash", "/v2/prod%2Fapp/manifests/v1", 400, "NAME_INVALID"},
		{"encoded slash and dots", "/v2/x/y%2F..%2F..%2Fprod/app/manifests/v1", 400, "NAME_INVALID"},
		{"dot-dot", "/v2/x/../prod/app/manifests/v1", 400, "NAME_INVALID"},
		{"dot", "/v2/./prod/app/manifests/v1", 400, "NAME_INVALID"},
		{"double slash", "/v2/prod//app/manifests/v1", 400, "NAME_INVALID"},
		{"leading slash", "/v2//prod/app/manifests/v1", 400, "NAME_INVALID"},
		{"trailing separator", "/v2/prod-/app/manifests/v1", 400, "NAME_INVALID"},
		{"too long", "/v2/" + strings.Repeat("a", 256) + "/manifests/v1", 400, "NAME_INVALID"},
		// What is not a tag names no manifest: 404, as the OCI
		// conformance suite requires.
		{"encoded slash in tag", "/v2/prod/app/manifests/v1%2F..%2Fv2", 404, "MANIFEST_UNKNOWN"},
		{"tag starting with a dot", "/v2/prod/app/manifests/.v1", 404, "MANIFEST_UNKNOWN"},
		{"tag too long", "/v2/prod/app/manifests/" + strings.Repeat("t", 129), 404, "MANIFEST_UNKNOWN"},
		{"no reference", "/v2/prod/app/manifests/", 404, "UNSUPPORTED"},
		{"catalog is not served", "/v2/_catalog", 404, "UNSUPPORTED"},
		{"outside /v2", "/v1/prod/app", 404, "UNSUPPORTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, e.do(http.MethodGet, tc.path), tc.status, tc.code)
			reqs := e.up.requests()
			if tc.status != 200 && len(reqs) != 0 {
				t.Fatalf("a refused path reached upstream: %v", reqs)
			}
		})
	}
}

func TestBadDigests(t *testing.T) {
	e := newEnv(t)
	hex64 := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct{ name, digest string }{
		{"too short", "sha256:" + hex64[:63]},
		{"too long", "sha256:" + hex64 + "0"},
		{"upper-case hex", "sha256:" + strings.ToUpper(hex64)},
		{"not hex", "sha256:" + hex64[:63] + "g"},
		{"unknown algorithm", "sha257:" + hex64},
		{"sha512 manifest", "sha512:" + hex64 + hex64},
		{"empty algorithm", ":" + hex64},
		{"trailing newline", "sha256:" + hex64 + "%0A"},
		{"encoded colon, then junk", "sha256%3A" + hex64 + "%20"},
	} {
		for _, route := range []string{"manifests", "blobs", "referrers"} {
			t.Run(tc.name+" "+route, func(t *testing.T) {
				if route == "blobs" && strings.HasPrefix(tc.digest, "sha512:") {
					// A valid blob digest: passed through to upstream.
					resp := e.do(http.MethodGet, "/v2/prod/app/blobs/"+tc.digest)
					if reqs := e.up.requests(); len(reqs) != 1 || reqs[0].Path != "/v2/prod/app/blobs/"+tc.digest {
						t.Fatalf("sha512 blob request not passed through (status %d): %v", resp.StatusCode, reqs)
					}
					return
				}
				b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/"+route+"/"+tc.digest), 400, "DIGEST_INVALID")
				if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, "invalid digest") {
					t.Fatalf("message %q", msg)
				}
			})
		}
	}
	if reqs := e.up.requests(); len(reqs) != 0 {
		t.Fatalf("bad digests reached upstream: %v", reqs)
	}
}

func TestWritesRefused(t *testing.T) {
	e := newEnv(t)
	e.pushRandom("prod/app", "v1")
	e.up.requests()
	for _, tc := range []struct{ method, path string }{
		{http.MethodPut, "/v2/prod/app/manifests/v1"},
		{http.MethodDelete, "/v2/prod/app/manifests/v1"},
		{http.MethodPost, "/v2/prod/app/blobs/uploads/"},
		{http.MethodPatch, "/v2/prod/app/blobs/uploads/abc"},
		{http.MethodPut, "/v2/prod/app/blobs/uploads/abc?digest=sha256:" + strings.Repeat("0", 64)},
		{http.MethodDelete, "/v2/prod/app/blobs/sha256:" + strings.Repeat("0", 64)},
		{http.MethodPut, "/v2/"},
		{http.MethodOptions, "/v2/prod/app/manifests/v1"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			b := wantStatus(t, e.do(tc.method, tc.path), http.StatusMethodNotAllowed, "UNSUPPORTED")
			if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, tc.method) {
				t.Fatalf("message %q", msg)
			}
		})
	}
	if reqs := e.up.requests(); len(reqs) != 0 {
		t.Fatalf("writes reached upstream: %v", reqs)
	}
	t.Run("ggcr push fails", func(t *testing.T) {
		_, err := remote.Image(e.ref("prod/app", "v1")) // warm the proxy path
		_ = err
		img := emptyImage(t)
		err = remote.Write(e.ref("prod/app", "pushed"), img)
		if te := transportErr(t, err); te.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("push through the proxy: %v", err)
		}
	})
}

func TestUpstreamSelection(t *testing.T) {
	second := newFakeUpstream(t)
	e := newEnv(t, func(e *env, c *Config) {
		c.Upstreams = append(c.Upstreams, Upstream{Registry: second.host, URL: second.URL})
		c.DefaultUpstream = e.up.host
		c.Policies[0].Match = append(c.Policies[0].Match, second.host+"/**")
	})
	// The same repository name on both upstreams: only the second one's is signed.
	e.pushRandom("team/app", "v1")
	other := &env{t: t, up: second, host: e.host}
	img, d := other.pushRandom("team/app", "v1")
	other.sign("team/app", d, e.key)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[0].Digest()
	e.up.requests()
	second.requests()

	for _, tc := range []struct {
		name, path string
		status     int
		code       string
		wantPath   string // what the second upstream must have seen ("" = nothing)
	}{
		{"ns names the second upstream", "/v2/team/app/manifests/v1?ns=" + second.host, 200, "", "/v2/team/app/manifests/v1"},
		{"registry prefix names the second upstream", "/v2/" + second.host + "/team/app/manifests/v1", 200, "", "/v2/team/app/manifests/v1"},
		{"blob through the prefix", "/v2/" + second.host + "/team/app/blobs/" + ld.String(), 200, "", "/v2/team/app/blobs/" + ld.String()},
		{"blob through ns", "/v2/team/app/blobs/" + ld.String() + "?ns=" + second.host, 200, "", "/v2/team/app/blobs/" + ld.String()},
		{"neither: the default upstream, unsigned there", "/v2/team/app/manifests/v1", 403, "DENIED", ""},
		{"unknown ns is refused", "/v2/team/app/manifests/v1?ns=registry.example", 404, "NAME_UNKNOWN", ""},
		{"unknown registry prefix is refused", "/v2/registry.example:5000/team/app/manifests/v1", 400, "NAME_INVALID", ""},
		{"ns given twice differently", "/v2/team/app/manifests/v1?ns=" + second.host + "&ns=" + e.up.host, 400, "NAME_INVALID", ""},
		{"ping with an unknown ns", "/v2/?ns=registry.example", 404, "NAME_UNKNOWN", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.requests()
			b := wantStatus(t, e.do(http.MethodGet, tc.path), tc.status, tc.code)
			reqs := second.requests()
			if tc.wantPath == "" {
				if len(reqs) != 0 {
					t.Fatalf("the second upstream saw %v", reqs)
				}
				if strings.Contains(tc.name, "unknown") {
					if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, second.host) {
						t.Fatalf("message %q does not list the configured upstreams", msg)
					}
					if reqs := e.up.requests(); len(reqs) != 0 {
						t.Fatalf("a refused request reached the default upstream: %v", reqs)
					}
				}
				return
			}
			if len(reqs) == 0 || reqs[0].Path != tc.wantPath || strings.Contains(reqs[0].Query, "ns=") {
				t.Fatalf("second upstream saw %v, want first %s without ns", reqs, tc.wantPath)
			}
		})
	}
	t.Run("no default upstream", func(t *testing.T) {
		e.cfg.DefaultUpstream = ""
		e.restart()
		b := wantStatus(t, e.do(http.MethodGet, "/v2/team/app/manifests/v1"), 404, "NAME_UNKNOWN")
		if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, "ns=") {
			t.Fatalf("message %q", msg)
		}
		wantStatus(t, e.do(http.MethodGet, "/v2/"), 200, "")
		wantStatus(t, e.do(http.MethodGet, "/v2/team/app/manifests/v1?ns="+second.host), 200, "")
	})
}

func TestBlobPassThrough(t *testing.T) {
	e := newEnv(t)
	img, _ := e.pushRandom("prod/app", "v1")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[0].Digest()
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v2/prod/app/blobs/" + ld.String()

	t.Run("GET streams the blob", func(t *testing.T) {
		if b := wantStatus(t, e.do(http.MethodGet, path), 200, ""); !bytes.Equal(b, blob) {
			t.Fatal("blob differs")
		}
	})
	t.Run("HEAD has the length", func(t *testing.T) {
		resp := e.do(http.MethodHead, path)
		wantStatus(t, resp, 200, "")
		if resp.ContentLength != int64(len(blob)) {
			t.Fatalf("Content-Length %d, want %d", resp.ContentLength, len(blob))
		}
	})
	t.Run("Range gives 206 and the bytes", func(t *testing.T) {
		resp := e.do(http.MethodGet, path, "Range", "bytes=5-20")
		if b := wantStatus(t, resp, http.StatusPartialContent, ""); !bytes.Equal(b, blob[5:21]) {
			t.Fatalf("range bytes %x, want %x", b, blob[5:21])
		}
		if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, "bytes 5-20/") {
			t.Fatalf("Content-Range %q", cr)
		}
	})
	t.Run("a redirect to storage is followed, without credentials", func(t *testing.T) {
		var storageAuth atomic.Value
		storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			storageAuth.Store(r.Header.Get("Authorization") + " ")
			_, _ = w.Write(blob)
		}))
		defer storage.Close()
		e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != path {
				return false
			}
			http.Redirect(w, r, storage.URL+"/storage/blob?sig=abc", http.StatusTemporaryRedirect)
			return true
		})
		defer e.up.setHook(nil)
		resp := e.do(http.MethodGet, path, "Authorization", "Basic dTpw")
		if b := wantStatus(t, resp, http.StatusOK, ""); !bytes.Equal(b, blob) {
			t.Fatal("blob differs")
		}
		if a := storageAuth.Load(); a != " " {
			t.Fatalf("storage got Authorization %q", a)
		}
	})
	t.Run("unknown blob is upstream's 404", func(t *testing.T) {
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/blobs/sha256:"+strings.Repeat("0", 64)), 404, "BLOB_UNKNOWN")
	})
	t.Run("unreachable upstream is 502 with an OCI body", func(t *testing.T) {
		e.cfg.Upstreams[0].URL = "http://127.0.0.1:1"
		e.restart()
		wantStatus(t, e.do(http.MethodGet, path), http.StatusBadGateway, "UNAVAILABLE")
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusBadGateway, "UNAVAILABLE")
	})
}

func TestTagsAndReferrersPassThrough(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.pushRandom("prod/app", "v2")
	e.sign("prod/app", d, e.key)
	b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/tags/list?n=2"), 200, "")
	if !regexp.MustCompile(`"tags":\["` + regexp.QuoteMeta(sigstore.SignatureTag(d)) + `","v1"\]`).Match(b) {
		t.Fatalf("tags %s", b)
	}

	const index = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		_, _ = io.WriteString(w, index)
		return true
	})
	e.up.requests()
	resp := e.do(http.MethodGet, "/v2/prod/app/referrers/"+d.String()+"?artifactType=x&ns="+e.up.host)
	if b := wantStatus(t, resp, 200, ""); string(b) != index {
		t.Fatalf("referrers %s", b)
	}
	reqs := e.up.requests()
	if len(reqs) != 1 || reqs[0].Query != "artifactType=x" {
		t.Fatalf("upstream saw %v", reqs)
	}
}

func TestWithoutNS(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"ns=a":                "",
		"n=1&ns=a&last=b":     "n=1&last=b",
		"ns":                  "",
		"dns=x":               "dns=x",
		"a=ns%3Dx":            "a=ns%3Dx",
		"ns=a&ns=b&n=5":       "n=5",
		"artifactType=ns=foo": "artifactType=ns=foo",
	} {
		if got := withoutNS(in); got != want {
			t.Errorf("withoutNS(%q) = %q, want %q", in, got, want)
		}
	}
}

var nameRegexp = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "a__b", "a___b", "a--b", "a.-b", "a/", "A", "a..b", "a_.b", "x/y.z-w__q"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxNameLength {
			return
		}
		if got, want := checkName(s) == nil, nameRegexp.MatchString(s); got != want {
			t.Fatalf("checkName(%q) ok=%v, the spec's regexp says %v", s, got, want)
		}
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"v1", "latest", "sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("A", 64), ".x", "a:b", ""} {
		f.Add(s)
	}
	tag := regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	dig := regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	f.Fuzz(func(t *testing.T, s string) {
		_, byDigest, err := parseReference(s)
		want := tag.MatchString(s) || dig.MatchString(s)
		if (err == nil) != want {
			t.Fatalf("parseReference(%q) err=%v, want valid=%v", s, err, want)
		}
		if err == nil && byDigest != strings.HasPrefix(s, "sha256:") {
			t.Fatalf("parseReference(%q) byDigest=%v", s, byDigest)
		}
	})
}

// CVE-2023-2253: a huge n on the tags listing made the registry allocate
// for it; the proxy refuses page sizes past distribution's 1000 without
// asking upstream.
func TestTagsPageSizeIsBounded(t *testing.T) {
	e := newEnv(t)
	e.pushRandom("prod/app", "v1")
	for _, n := range []string{"1001", "99999999999999999999", "-1", "x", ""} {
		e.up.requests()
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/tags/list?n="+n), http.StatusBadRequest, CodePaginationInvalid)
		if reqs := e.up.requests(); len(reqs) != 0 {
			t.Errorf("n=%q reached upstream: %v", n, reqs)
		}
	}
	for _, n := range []string{"0", "1000"} {
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/tags/list?n="+n), http.StatusOK, "")
	}
}

// TestCredentialsStayWithTheirUpstream: a client sends the proxy one set
// of credentials, those of the default upstream (whose challenge the /v2/
// ping returns); they never reach another upstream, for any request the
// proxy makes there, unless that upstream says forwardCredentials: true.
func TestCredentialsStayWithTheirUpstream(t *testing.T) {
	const auth = "Basic ZGVmYXVsdDpzZWNyZXQ="
	for _, forward := range []bool{false, true} {
		t.Run(map[bool]string{false: "default: not forwarded", true: "forwardCredentials: true"}[forward], func(t *testing.T) {
			second := newFakeUpstream(t)
			e := newEnv(t, func(e *env, c *Config) {
				u := Upstream{Registry: second.host, URL: second.URL}
				if forward {
					u.ForwardCredentials = &forward
				}
				c.Upstreams = append(c.Upstreams, u)
				c.DefaultUpstream = e.up.host
				c.Policies[0].Match = append(c.Policies[0].Match, second.host+"/**")
			})
			other := &env{t: t, up: second, host: e.host}
			img, d := other.pushRandom("team/app", "v1")
			other.sign("team/app", d, e.key)
			_, unsigned := other.pushRandom("team/app", "unsigned")
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			_, dd := e.pushRandom("team/app", "v1")
			e.sign("team/app", dd, e.key)
			second.requests()
			e.up.requests()
			for _, path := range []string{
				"/v2/" + second.host + "/team/app/manifests/v1",
				"/v2/team/app/manifests/v1?ns=" + second.host,
				"/v2/" + second.host + "/team/app/manifests/" + d.String(),
				"/v2/" + second.host + "/team/app/manifests/unsigned",
				"/v2/" + second.host + "/team/app/manifests/" + unsigned.String(),
				"/v2/" + second.host + "/team/app/blobs/" + ld.String(),
				"/v2/team/app/tags/list?ns=" + second.host,
				"/v2/team/app/referrers/" + d.String() + "?ns=" + second.host,
				"/v2/?ns=" + second.host,
			} {
				e.do(http.MethodGet, path, "Authorization", auth).Body.Close()
				e.do(http.MethodHead, path, "Authorization", auth).Body.Close()
			}
			reqs := second.requests()
			if len(reqs) == 0 {
				t.Fatal("the second upstream saw nothing")
			}
			for _, r := range reqs {
				if forward != (r.Auth == auth) {
					t.Errorf("%s %s reached the second upstream with Authorization %q", r.Method, r.Path, r.Auth)
				}
			}
			// The default upstream still gets them.
			e.do(http.MethodGet, "/v2/team/app/manifests/v1", "Authorization", auth).Body.Close()
			for _, r := range e.up.requests() {
				if r.Auth != auth {
					t.Errorf("default upstream: %s %s without the client's credentials", r.Method, r.Path)
				}
			}
		})
	}
}

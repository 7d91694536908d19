package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

func TestSignedImagePulls(t *testing.T) {
	e := newEnv(t)
	img, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	want, _ := rawManifest(t, img)

	t.Run("full pull by tag", func(t *testing.T) {
		got, err := remote.Image(e.ref("prod/app", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil { // every blob fetched and hashed
			t.Fatal(err)
		}
		if gd, _ := got.Digest(); gd != d {
			t.Fatalf("digest %s, want %s", gd, d)
		}
	})
	t.Run("crane pull by digest", func(t *testing.T) {
		got, err := crane.Pull(e.host + "/prod/app@" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Fatal(err)
		}
	})
	for _, ref := range []string{"v1", d.String()} {
		t.Run("HEAD "+ref, func(t *testing.T) {
			desc, err := remote.Head(e.ref("prod/app", ref))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != d || desc.Size != int64(len(want)) {
				t.Fatalf("HEAD gave %s size %d, want %s size %d", desc.Digest, desc.Size, d, len(want))
			}
		})
		t.Run("GET "+ref+" serves the exact bytes", func(t *testing.T) {
			resp := e.do(http.MethodGet, "/v2/prod/app/manifests/"+ref)
			b := wantStatus(t, resp, http.StatusOK, "")
			if !bytes.Equal(b, want) {
				t.Fatal("served bytes differ from the pushed manifest")
			}
			if resp.Header.Get("Docker-Content-Digest") != d.String() ||
				resp.Header.Get("Content-Type") != string(types.DockerManifestSchema2) ||
				resp.Header.Get("Content-Length") != fmt.Sprint(len(want)) {
				t.Fatalf("headers %v", resp.Header)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	_, unsigned := e.pushRandom("prod/unsigned", "v1")
	_, wrongKey := e.pushRandom("prod/wrongkey", "v1")
	e.sign("prod/wrongkey", wrongKey, newTestKey(t))
	_, otherRepo := e.pushRandom("prod/replayed", "v1")
	e.signAs(e.up.host+"/prod/elsewhere", "prod/replayed", otherRepo, e.key) // identity names another repository

	for _, tc := range []struct {
		name, repo string
		digest     v1.Hash
		reason     verifier.Reason
	}{
		{"unsigned", "prod/unsigned", unsigned, verifier.ReasonNoSignatures},
		{"signed by an unknown key", "prod/wrongkey", wrongKey, verifier.ReasonUntrusted},
		{"docker-reference names another repository", "prod/replayed", otherRepo, verifier.ReasonIdentityMismatch},
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			t.Run(tc.name+" "+method, func(t *testing.T) {
				resp := e.do(method, "/v2/"+tc.repo+"/manifests/v1")
				b := wantStatus(t, resp, http.StatusForbidden, "DENIED")
				if resp.Header.Get("Docker-Content-Digest") != "" {
					t.Fatal("a refusal carries a digest header")
				}
				if method == http.MethodHead {
					return
				}
				msg := decodeOCIError(t, b).Message
				for _, part := range []string{e.up.host + "/" + tc.repo, tc.digest.String(), string(tc.reason)} {
					if !strings.Contains(msg, part) {
						t.Errorf("message %q does not name %q", msg, part)
					}
				}
			})
		}
	}
	t.Run("ggcr client sees DENIED", func(t *testing.T) {
		_, err := remote.Image(e.ref("prod/unsigned", "v1"))
		te := transportErr(t, err)
		if te.StatusCode != http.StatusForbidden || len(te.Errors) == 0 || te.Errors[0].Code != "DENIED" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no policy matches and defaultPolicy is deny", func(t *testing.T) {
		e2 := newEnv(t, func(e *env, c *Config) { c.Policies[0].Match = []string{e.up.host + "/prod/**"} })
		_, d := e2.pushRandom("dev/app", "v1")
		e2.sign("dev/app", d, e2.key)
		b := wantStatus(t, e2.do(http.MethodGet, "/v2/dev/app/manifests/v1"), http.StatusForbidden, "DENIED")
		if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, "no policy") {
			t.Fatalf("message %q", msg)
		}
	})
}

func TestMovedTagServesOnlyVerifiedBytes(t *testing.T) {
	e := newEnv(t)
	signedImg, signed := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", signed, e.key)
	signedBytes, _ := rawManifest(t, signedImg)
	unsignedImg, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	unsignedBytes, mt := rawManifest(t, unsignedImg)

	// Upstream answers the tag with the signed manifest once, then with the
	// unsigned one: the tag moves between two requests.
	var mu sync.Mutex
	calls := 0
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/prod/app/manifests/v1" {
			return false
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			return false // the registry serves the signed manifest
		}
		serveBytes(w, unsignedBytes, mt)
		return true
	})
	resp := e.do(http.MethodGet, "/v2/prod/app/manifests/v1")
	if b := wantStatus(t, resp, http.StatusOK, ""); !bytes.Equal(b, signedBytes) {
		t.Fatal("first answer is not the signed manifest")
	}
	if resp.Header.Get("Docker-Content-Digest") != signed.String() {
		t.Fatalf("digest header %q", resp.Header.Get("Docker-Content-Digest"))
	}
	b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusForbidden, "DENIED")
	ud, _ := unsignedImg.Digest()
	if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, ud.String()) {
		t.Fatalf("refusal names %q, want the moved-to digest %s", msg, ud)
	}
	// The signed digest is still served, by digest.
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+signed.String()), http.StatusOK, "")
}

func TestUpstreamDigestHeaderIgnored(t *testing.T) {
	e := newEnv(t)
	img, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	raw, mt := rawManifest(t, img)
	lie := "sha256:" + strings.Repeat("ab", 32)
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/v2/prod/app/manifests/v1") {
			return false
		}
		w.Header().Set("Docker-Content-Digest", lie)
		serveBytes(w, raw, mt)
		return true
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp := e.do(method, "/v2/prod/app/manifests/v1")
		wantStatus(t, resp, http.StatusOK, "")
		if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
			t.Fatalf("%s: digest header %q, want the hash %s (upstream said %s)", method, got, d, lie)
		}
	}
}

func TestHeadIsVerifiedWithGetUpstream(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	_, unsigned := e.pushRandom("prod/unsigned", "v1")
	e.sign("prod/app", d, e.key)
	e.up.requests()

	wantStatus(t, e.do(http.MethodHead, "/v2/prod/unsigned/manifests/v1"), http.StatusForbidden, "")
	wantStatus(t, e.do(http.MethodHead, "/v2/prod/unsigned/manifests/"+unsigned.String()), http.StatusForbidden, "")
	resp := e.do(http.MethodHead, "/v2/prod/app/manifests/v1")
	if b := wantStatus(t, resp, http.StatusOK, ""); len(b) != 0 {
		t.Fatal("HEAD has a body")
	}
	if resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("digest %q", resp.Header.Get("Docker-Content-Digest"))
	}
	reqs := e.up.requests()
	if n := count(reqs, func(r seenRequest) bool { return r.Method == http.MethodHead }); n != 0 {
		t.Fatalf("%d HEAD requests upstream; the proxy must GET to hash", n)
	}
}

func TestByDigestMismatchRefused(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	other, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, mt := rawManifest(t, other)
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/prod/app/manifests/"+d.String() {
			return false
		}
		w.Header().Set("Docker-Content-Digest", d.String())
		serveBytes(w, raw, mt)
		return true
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		b := wantStatus(t, e.do(method, "/v2/prod/app/manifests/"+d.String()), http.StatusBadGateway, "MANIFEST_INVALID")
		if method == http.MethodGet && !strings.Contains(decodeOCIError(t, b).Message, "sent content with digest") {
			t.Fatalf("message %s", b)
		}
	}
}

// pushIndex pushes a two-image index as repo:tag and returns it.
func (e *env) pushIndex(repo, tag string) (v1.ImageIndex, v1.Hash, []v1.Hash) {
	e.t.Helper()
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := name.ParseReference(e.up.host + "/" + repo + ":" + tag)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		e.t.Fatal(err)
	}
	d, _ := idx.Digest()
	im, err := idx.IndexManifest()
	if err != nil {
		e.t.Fatal(err)
	}
	var children []v1.Hash
	for _, m := range im.Manifests {
		children = append(children, m.Digest)
	}
	return idx, d, children
}

func TestIndexAdmitsChildren(t *testing.T) {
	e := newEnv(t)
	idx, d, children := e.pushIndex("prod/multi", "v1")
	e.sign("prod/multi", d, e.key)

	t.Run("child by digest without its parent is refused", func(t *testing.T) {
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/multi/manifests/"+children[0].String()), http.StatusForbidden, "DENIED")
	})
	t.Run("children are admitted once the index is verified", func(t *testing.T) {
		idx, err := remote.Index(e.ref("prod/multi", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil { // fetches each child by digest, and its blobs
			t.Fatal(err)
		}
	})
	t.Run("children inherit only in the same repository", func(t *testing.T) {
		child, err := idx.Image(children[0])
		if err != nil {
			t.Fatal(err)
		}
		e.push("prod/other", "c", child)
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/other/manifests/"+children[0].String()), http.StatusForbidden, "")
	})
	t.Run("require-signed refuses unsigned children", func(t *testing.T) {
		e.cfg.Policies[0].Children = verifier.ChildrenRequireSigned
		e.restart()
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/multi/manifests/v1"), http.StatusOK, "")
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/multi/manifests/"+children[0].String()), http.StatusForbidden, "DENIED")
		e.sign("prod/multi", children[1], e.key)
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/multi/manifests/"+children[1].String()), http.StatusOK, "")
	})
}

func TestSignatureArtifacts(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	sigTag := sigstore.SignatureTag(d)

	t.Run("the .sig manifest is served (cosign reads it)", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/v2/prod/app/manifests/"+sigTag)
		wantStatus(t, resp, http.StatusOK, "")
	})
	t.Run("a runnable image tagged like a signature is verified as an image", func(t *testing.T) {
		_, victim := e.pushRandom("prod/app", "v2")
		_, runnable := e.pushRandom("prod/app", sigstore.SignatureTag(victim))
		b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+sigstore.SignatureTag(victim)), http.StatusForbidden, "DENIED")
		if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, runnable.String()) {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("a signature artifact mixing in a tar layer is verified as an image", func(t *testing.T) {
		sigLayer := static.NewLayer([]byte(`{}`), sigstore.SimpleSigningMediaType)
		tarLayer, err := random.Layer(256, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(emptyImage(t), sigLayer, tarLayer)
		if err != nil {
			t.Fatal(err)
		}
		e.push("prod/app", "mixed.sig", img)
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/mixed.sig"), http.StatusForbidden, "DENIED")
	})
	t.Run("a tar layer labelled as a signature payload is verified as an image", func(t *testing.T) {
		tarLayer, err := random.Layer(256, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		labelled := mutate.Addendum{Layer: tarLayer, MediaType: sigstore.SimpleSigningMediaType}
		img, err := mutate.Append(emptyImage(t), labelled)
		if err != nil {
			t.Fatal(err)
		}
		e.push("prod/app", "disguised.sig", img)
		wantStatus(t, e.do(http.MethodHead, "/v2/prod/app/manifests/disguised.sig"), http.StatusForbidden, "")
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/disguised.sig"), http.StatusForbidden, "DENIED")
	})
	t.Run("a payload blob upstream cannot serve is no admission", func(t *testing.T) {
		e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.Contains(r.URL.Path, "/blobs/") {
				w.WriteHeader(http.StatusInternalServerError)
				return true
			}
			return false
		})
		defer e.up.setHook(nil)
		e.restart() // no cached manifests
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+sigTag), http.StatusBadGateway, CodeUnavailable)
	})
	t.Run("not in repositories no policy covers", func(t *testing.T) {
		_, d := e.pushRandom("elsewhere/app", "v1")
		e.cfg.Policies[0].Match = []string{e.up.host + "/prod/**"}
		e.restart()
		e.sign("elsewhere/app", d, e.key)
		wantStatus(t, e.do(http.MethodGet, "/v2/elsewhere/app/manifests/"+sigstore.SignatureTag(d)), http.StatusForbidden, "DENIED")
	})
}

func emptyImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestInvalidUpstreamDocuments(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	const ociManifest = "application/vnd.oci.image.manifest.v1+json"
	zeros := "sha256:" + strings.Repeat("0", 64)
	cfg := `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + zeros + `","size":2}`
	for _, tc := range []struct {
		name, contentType, body, want string
	}{
		{"invalid JSON", ociManifest, `{"schemaVersion":2,`, "invalid JSON"},
		{"not an object", ociManifest, `[1,2]`, "not a JSON object"},
		{"trailing data", ociManifest, `{"schemaVersion":2} {}`, "data after the JSON value"},
		{"mediaType differs from Content-Type", ociManifest,
			`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, "differs from Content-Type"},
		{"both manifest and index", ociManifest,
			`{"schemaVersion":2,"mediaType":"` + ociManifest + `","manifests":[],"layers":[],"config":{}}`, "both an index"},
		{"duplicate key", ociManifest, `{"mediaType":"` + ociManifest + `","mediaType":"x"}`, "duplicate key"},
		{"case-variant key", ociManifest, `{"MediaType":"application/vnd.oci.image.index.v1+json"}`, "spec's key"},
		{"case-variant layer key", ociManifest,
			`{"schemaVersion":2,"config":` + cfg + `,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + zeros + `","size":1,"MEDIATYPE":"` + sigstore.SimpleSigningMediaType + `"}]}`, "spec's key"},
		{"case-variant urls key", ociManifest,
			`{"schemaVersion":2,"config":` + cfg + `,"layers":[{"mediaType":"a","digest":"` + zeros + `","size":1,"URLs":["http://x/"]}]}`, "spec's key"},
		{"layer digest in upper case", ociManifest,
			`{"schemaVersion":2,"config":` + cfg + `,"layers":[{"mediaType":"a","digest":"sha256:` + strings.Repeat("A", 64) + `","size":1}]}`, "lowercase hex"},
		{"negative size", ociManifest,
			`{"schemaVersion":2,"config":` + cfg + `,"layers":[{"mediaType":"a","digest":"` + zeros + `","size":-1}]}`, "non-negative"},
		{"image manifest without config", ociManifest, `{"schemaVersion":2,"layers":[]}`, "no config"},
		{"schemaVersion 1 as an OCI manifest", ociManifest, `{"schemaVersion":1,"config":` + cfg + `,"layers":[]}`, "schemaVersion 1"},
		{"no media type at all", "", `{"schemaVersion":2}`, "no media type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/v2/prod/app/manifests/v1" {
					return false
				}
				w.Header()["Content-Type"] = []string{tc.contentType}
				serveBytes(w, []byte(tc.body), tc.contentType)
				return true
			})
			b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusBadGateway, "MANIFEST_INVALID")
			if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q, want %q", msg, tc.want)
			}
		})
	}
	e.up.setHook(nil)
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusOK, "")
}

func TestManifestSizeLimit(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	big := append([]byte(`{"schemaVersion":2,"x":"`), bytes.Repeat([]byte("a"), maxManifestSize)...)
	big = append(big, `"}`...)
	for _, tc := range []struct {
		name    string
		chunked bool
	}{{"with Content-Length", false}, {"chunked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/v2/prod/app/manifests/v1" {
					return false
				}
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				}
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(big)
				return true
			})
			b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusBadGateway, "MANIFEST_INVALID")
			if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, "4 MiB") {
				t.Fatalf("message %q", msg)
			}
		})
	}
	t.Run("exactly 4 MiB is read", func(t *testing.T) {
		exact := bytes.Clone(big[len(big)-maxManifestSize:])
		copy(exact, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:`+strings.Repeat("0", 64)+`","size":1},"layers":[],"x":"`)
		exact[len(exact)-2], exact[len(exact)-1] = '"', '}'
		sum := sha256.Sum256(exact)
		e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/v2/prod/app/manifests/v1" {
				return false
			}
			serveBytes(w, exact, "application/vnd.oci.image.manifest.v1+json")
			return true
		})
		b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusForbidden, "DENIED")
		if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, hex.EncodeToString(sum[:])) {
			t.Fatalf("message %q", msg)
		}
	})
}

// hijackTruncated promises n bytes and closes the connection after a few.
func hijackTruncated(w http.ResponseWriter, n int) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: %d\r\n\r\n{\"sch", n)
	_ = buf.Flush()
	_ = conn.Close()
}

func TestUpstreamFailuresFailClosedAndAreNotCached(t *testing.T) {
	e := newEnv(t, func(_ *env, c *Config) { c.UpstreamTimeout = 300 * time.Millisecond })
	img, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	raw, _ := rawManifest(t, img)

	manifestPath := "/v2/prod/app/manifests/v1"
	sigPath := "/v2/prod/app/manifests/" + sigstore.SignatureTag(d)
	for _, tc := range []struct {
		name   string
		path   string // upstream path to fail
		fail   func(http.ResponseWriter)
		status int
		code   string
		header string // a header the answer must carry
	}{
		{"manifest 500", manifestPath, func(w http.ResponseWriter) { w.WriteHeader(500) }, 502, "UNAVAILABLE", ""},
		{"manifest 503", manifestPath, func(w http.ResponseWriter) { w.WriteHeader(503) }, 502, "UNAVAILABLE", ""},
		{"manifest 429", manifestPath, func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		}, 429, "TOOMANYREQUESTS", "Retry-After"},
		{"manifest timeout", manifestPath, func(http.ResponseWriter) { time.Sleep(time.Second) }, 504, "UNAVAILABLE", ""},
		{"manifest truncated", manifestPath, func(w http.ResponseWriter) { hijackTruncated(w, len(raw)) }, 502, "UNAVAILABLE", ""},
		{"manifest connection dropped", manifestPath, func(w http.ResponseWriter) {
			conn, _, _ := http.NewResponseController(w).Hijack()
			_ = conn.Close()
		}, 502, "UNAVAILABLE", ""},
		{"signature lookup 500", sigPath, func(w http.ResponseWriter) { w.WriteHeader(500) }, 502, "UNAVAILABLE", ""},
		{"signature lookup 429", sigPath, func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "9")
			w.WriteHeader(429)
		}, 503, "TOOMANYREQUESTS", "Retry-After"},
		{"signature lookup timeout", sigPath, func(http.ResponseWriter) { time.Sleep(time.Second) }, 504, "UNAVAILABLE", ""},
		{"signature lookup truncated", sigPath, func(w http.ResponseWriter) { hijackTruncated(w, 500) }, 502, "UNAVAILABLE", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.restart() // cold caches: every case reaches the failing request
			e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != tc.path {
					return false
				}
				tc.fail(w)
				return true
			})
			resp := e.do(http.MethodGet, manifestPath)
			b := wantStatus(t, resp, tc.status, tc.code)
			if tc.header != "" && resp.Header.Get(tc.header) == "" {
				t.Fatalf("no %s header: %v", tc.header, resp.Header)
			}
			if resp.Header.Get("Docker-Content-Digest") != "" || bytes.Contains(b, raw) {
				t.Fatal("an error answer carries the manifest")
			}
			e.up.setHook(nil)
			resp = e.do(http.MethodGet, manifestPath)
			if got := wantStatus(t, resp, http.StatusOK, ""); !bytes.Equal(got, raw) {
				t.Fatal("after recovery, not the manifest")
			}
		})
	}
}

func TestUpstreamNotFoundPassesThroughWithoutLookup(t *testing.T) {
	e := newEnv(t)
	e.pushRandom("prod/app", "v1")
	e.up.requests()
	b := wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/nope"), http.StatusNotFound, "MANIFEST_UNKNOWN")
	_ = b
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/missing/manifests/v1"), http.StatusNotFound, "NAME_UNKNOWN")
	if n := count(e.up.requests(), isSigTag); n != 0 {
		t.Fatalf("%d signature lookups for a manifest upstream does not have", n)
	}
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusNotFound) // no OCI body
		_, _ = w.Write([]byte("not here"))
		return true
	})
	b = wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusNotFound, "MANIFEST_UNKNOWN")
	if msg := decodeOCIError(t, b).Message; !strings.Contains(msg, "prod/app:v1") {
		t.Fatalf("message %q", msg)
	}
}

func TestWarmPathUpstreamRequests(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusOK, "")
	e.up.requests()

	for _, tc := range []struct {
		method, ref string
		want        int
	}{
		{http.MethodGet, "v1", 1},
		{http.MethodHead, "v1", 1},
		{http.MethodGet, d.String(), 0},
		{http.MethodHead, d.String(), 0},
	} {
		t.Run(tc.method+" "+tc.ref, func(t *testing.T) {
			for range 3 {
				wantStatus(t, e.do(tc.method, "/v2/prod/app/manifests/"+tc.ref), http.StatusOK, "")
				if reqs := e.up.requests(); len(reqs) != tc.want {
					t.Fatalf("%d upstream requests %v, want %d", len(reqs), reqs, tc.want)
				}
			}
		})
	}
	t.Run("another credential does not get the cached bytes", func(t *testing.T) {
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+d.String(), "Authorization", "Basic b3RoZXI6eA=="), http.StatusOK, "")
		reqs := e.up.requests()
		if len(reqs) != 1 || reqs[0].Auth != "Basic b3RoZXI6eA==" {
			t.Fatalf("upstream requests %v, want one with the client's credentials", reqs)
		}
	})
}

func TestConcurrentColdPullsShareOneLookup(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	e.up.requests()
	// Slow the signature lookup down so the requests overlap.
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".sig") {
			time.Sleep(200 * time.Millisecond)
		}
		return false
	})
	const n = 200
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := "v1"
			if i%2 == 1 {
				ref = d.String()
			}
			resp, err := client.Get(e.proxy.URL + "/v2/prod/app/manifests/" + ref)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := count(e.up.requests(), isSigTag); got != 1 {
		t.Fatalf("%d .sig lookups for %d concurrent pulls, want 1", got, n)
	}
}

// A stampede of pulls of one tag costs upstream one manifest fetch, not one
// per client; another credential gets a fetch of its own.
func TestConcurrentTagPullsShareOneManifestFetch(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	release := make(chan struct{})
	var fetches atomic.Int32
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/manifests/v1") {
			fetches.Add(1)
			<-release
		}
		return false
	})
	var entered atomic.Int32
	inner := e.srv.Handler()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		inner.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	const n = 50
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	statuses := make(chan string, n+1)
	get := func(auth string) {
		defer wg.Done()
		req, _ := http.NewRequest(http.MethodGet, proxy.URL+"/v2/prod/app/manifests/v1", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			statuses <- err.Error()
			return
		}
		resp.Body.Close()
		statuses <- resp.Status + " " + resp.Header.Get("Docker-Content-Digest")
	}
	for range n {
		wg.Add(1)
		go get("")
	}
	wg.Add(1)
	go get("Basic b3RoZXI6eA==")
	for entered.Load() < n+1 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let every request reach the shared fetch
	close(release)
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != "200 OK "+d.String() {
			t.Fatalf("answer %q, want 200 with %s", st, d)
		}
	}
	if got := fetches.Load(); got != 2 {
		t.Fatalf("%d upstream fetches of the tag for %d pulls with two credentials, want 2", got, n+1)
	}
}

func TestWarnAndAllowModes(t *testing.T) {
	e := newEnv(t, func(e *env, c *Config) {
		c.Policies = []*verifier.Policy{
			{Name: "warn", Match: []string{e.up.host + "/warn/**"}, Keys: c.Policies[0].Keys, Mode: verifier.ModeWarn},
			{Name: "allow", Match: []string{e.up.host + "/allow/**"}, Mode: verifier.ModeAllow},
		}
	})
	e.pushRandom("warn/app", "v1")
	e.pushRandom("allow/app", "v1")
	e.up.requests()
	wantStatus(t, e.do(http.MethodGet, "/v2/warn/app/manifests/v1"), http.StatusOK, "")
	wantStatus(t, e.do(http.MethodGet, "/v2/allow/app/manifests/v1"), http.StatusOK, "")
	if n := count(e.up.requests(), isSigTag); n != 1 {
		t.Fatalf("%d signature lookups, want 1 (warn looks, allow does not)", n)
	}
	metrics := string(wantStatus(t, e.do(http.MethodGet, "/metrics"), http.StatusOK, ""))
	for _, want := range []string{
		`cosign_proxy_decisions_total{reason="no signatures",result="warn"} 1`,
		`cosign_proxy_decisions_total{reason="allowed by policy without a check",result="admit"} 1`,
		`cosign_proxy_requests_total{code="200",route="manifest"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestManifestRedirectDropsCredentialsOffOrigin(t *testing.T) {
	e := newEnv(t)
	img, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	raw, mt := rawManifest(t, img)

	var mu sync.Mutex
	var foreignAuth []string
	foreign := newFakeUpstream(t)
	foreign.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		foreignAuth = append(foreignAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		serveBytes(w, raw, mt)
		return true
	})
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/prod/app/manifests/v1" {
			return false
		}
		http.Redirect(w, r, foreign.URL+"/storage/manifest", http.StatusTemporaryRedirect)
		return true
	})
	e.up.requests()
	resp := e.do(http.MethodGet, "/v2/prod/app/manifests/v1", "Authorization", "Bearer secret")
	if b := wantStatus(t, resp, http.StatusOK, ""); !bytes.Equal(b, raw) {
		t.Fatal("not the manifest")
	}
	if a := count(e.up.requests(), func(r seenRequest) bool { return r.Auth == "Bearer secret" }); a == 0 {
		t.Fatal("upstream did not get the client's credentials")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(foreignAuth) != 1 || foreignAuth[0] != "" {
		t.Fatalf("the redirect target (same host, another port) got Authorization %q", foreignAuth)
	}
}

func TestCredentialTransportStaysOnOrigin(t *testing.T) {
	var got []string
	var mu sync.Mutex
	rec := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		got = append(got, r.URL.Host+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
	})
	up, err := newUpstream(Upstream{Registry: "reg.example:5000", URL: "http://reg.example:5000"}, true, rec)
	if err != nil {
		t.Fatal(err)
	}
	ct := &credentialTransport{base: rec, origin: up.base, auth: "Bearer t"}
	for _, u := range []string{"http://reg.example:5000/v2/", "http://reg.example:5001/v2/", "http://sub.reg.example:5000/v2/", "https://reg.example:5000/v2/"} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
		if _, err := ct.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if req.Header.Get("Authorization") != "" {
			t.Fatal("RoundTrip modified the caller's request")
		}
	}
	want := []string{"reg.example:5000 Bearer t", "reg.example:5001 ", "sub.reg.example:5000 ", "reg.example:5000 "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestAuthChallengePassesBack(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	const challenge = `Bearer realm="http://auth.example/token",service="reg",scope="repository:prod/app:pull"`
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == "Bearer good" {
			return false
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		return true
	})
	for _, path := range []string{"/v2/", "/v2/prod/app/manifests/v1", "/v2/prod/app/tags/list"} {
		resp := e.do(http.MethodGet, path)
		b := wantStatus(t, resp, http.StatusUnauthorized, "UNAUTHORIZED")
		if resp.Header.Get("WWW-Authenticate") != challenge {
			t.Fatalf("%s: challenge %q", path, resp.Header.Get("WWW-Authenticate"))
		}
		if msg := decodeOCIError(t, b).Message; msg != "authentication required" {
			t.Fatalf("%s: message %q, want upstream's", path, msg)
		}
	}
	e.up.requests()
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1", "Authorization", "Bearer good"), http.StatusOK, "")
	reqs := e.up.requests()
	if n := count(reqs, func(r seenRequest) bool { return isSigTag(r) && r.Auth == "Bearer good" }); n != 1 {
		t.Fatalf("signature lookup did not reuse the client's credentials: %v", reqs)
	}
}

func TestServeAndShutdown(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ping: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// containerd resolves with HEAD alone and prints only the status line, so a
// refused HEAD carries the refusal in its reason phrase.
func TestHeadRefusalNamesReasonInStatusLine(t *testing.T) {
	e := newEnv(t)
	_, unsigned := e.pushRandom("prod/unsigned", "v1")
	resp := e.do(http.MethodHead, "/v2/prod/unsigned/manifests/v1")
	wantStatus(t, resp, http.StatusForbidden, "")
	for _, want := range []string{"403 Forbidden (DENIED: ", unsigned.String(), string(verifier.ReasonNoSignatures)} {
		if !strings.Contains(resp.Status, want) {
			t.Errorf("status line %q lacks %q", resp.Status, want)
		}
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	// A GET keeps the standard status line and carries the message in the body.
	resp = e.do(http.MethodGet, "/v2/prod/unsigned/manifests/v1")
	if resp.Status != "403 Forbidden" {
		t.Errorf("GET status line %q", resp.Status)
	}
	wantStatus(t, resp, http.StatusForbidden, CodeDenied)
}

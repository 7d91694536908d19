package sigstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// vectorDir holds what the real cosign v3.1.2 wrote to a registry.
const vectorDir = "testdata/cosign-v3.1.2"

// Digests of the interop vectors (see testdata/cosign-v3.1.2/tags.json).
var (
	appV1    = mustHash("sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c")
	appV2    = mustHash("sha256:28eb0959570ca76b3c9adf3ed8cad7c0426a3bd07dbb589a9415282fcacefdc2")
	multiV1  = mustHash("sha256:d059ce8dbdcaa84448f253dc63854eb5329d98906a5e18d26b51d9617f83ce76")
	unsigned = appV2 // interop/unsigned:v1 is the same image, pushed where nothing signed it
)

// The artifacts cosign wrote for them.
const (
	appV1ECDSAPayload   = "sha256:803ac2839e1535ccb5e59a0f4c721639a62d71a5b54beda0ef1203b6b8167304"
	appV1Ed25519Payload = "sha256:b253890994138607dc85312179f4aa38eb37414994e0b74006aea391e452a5d8"
	appV2Referrer       = "sha256:92fdd6d2cdbf6b7f83133d044e16122e5c09685ac1fe21dda24ad8e9275b9aeb"
	appV2Bundle         = "sha256:d89a90b5486b5fa72474ac96440d0691515a29b5bb636e9039ee7f862f23993b"
	multiV1Payload      = "sha256:eee3fe1964b873eb6035e1a217e4e570a11687a45bc52d89031df7b83fc4c95e"
)

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

// --- a counting test registry ---

// middleware wraps the in-memory registry to change what it answers.
type middleware func(http.Handler) http.Handler

// testRegistry is go-containerregistry's in-memory registry behind
// middlewares, recording every request that reaches it.
type testRegistry struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	// user and pass, if set, are the credentials the test helpers use.
	user, pass string
}

// do sends a test helper's request with the helpers' credentials.
func (r *testRegistry) do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	if r.user != "" {
		req.SetBasicAuth(r.user, r.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// newTestRegistry starts a registry; referrers says whether it serves a
// (conformant) referrers API, otherwise /referrers/ answers 404 as on a
// registry that predates OCI 1.1. The first middleware is the outermost.
func newTestRegistry(t *testing.T, referrers bool, mws ...middleware) *testRegistry {
	t.Helper()
	var h http.Handler = registry.New(
		registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithReferrersSupport(referrers),
	)
	if referrers {
		h = conformantReferrers(h)
	}
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	r := &testRegistry{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

// host is the registry's host:port.
func (r *testRegistry) host() string { return strings.TrimPrefix(r.URL, "http://") }

// reset forgets the requests recorded so far.
func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// recorded returns the requests recorded since the last reset, sorted.
func (r *testRegistry) recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.requests)
	sort.Strings(out)
	return out
}

// signatures looks up digest in repo with a fresh Fetcher and a deadline.
func (r *testRegistry) signatures(t *testing.T, repo string, digest v1.Hash) ([]Signature, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return NewFetcher(r.URL, nil).Signatures(ctx, repo, digest)
}

// conformantReferrers fixes one deviation of go-containerregistry's
// registry from the OCI distribution spec: its referrers API reports the
// config media type as artifactType even when the manifest has an
// artifactType of its own. The filter is still ignored, as some registries do.
func conformantReferrers(inner http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		repo, _, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/referrers/")
		if !ok || req.Method != http.MethodGet {
			inner.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, req)
		var idx v1.IndexManifest
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &idx) != nil {
			copyRecorded(w, rec)
			return
		}
		for i, d := range idx.Manifests {
			get := httptest.NewRequest(http.MethodGet, "/v2/"+repo+"/manifests/"+d.Digest.String(), nil)
			mrec := httptest.NewRecorder()
			inner.ServeHTTP(mrec, get)
			var m v1.Manifest
			if err := json.Unmarshal(mrec.Body.Bytes(), &m); err == nil && m.ArtifactType != "" {
				idx.Manifests[i].ArtifactType = m.ArtifactType
			}
		}
		b, _ := json.Marshal(idx)
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		w.Write(b)
	})
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// serve answers GET and HEAD of path with h, and passes the rest through.
func serve(path string, h http.HandlerFunc) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == path && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
				h(w, req)
				return
			}
			inner.ServeHTTP(w, req)
		})
	}
}

// body answers with status, content type and bytes.
func body(status int, contentType string, b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		w.Write(b)
	}
}

// ociError answers with an OCI error body.
func ociError(status int, code, message string) http.HandlerFunc {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
	return body(status, "application/json", b)
}

// hang answers only when the request's context ends.
func hang(_ http.ResponseWriter, req *http.Request) {
	select {
	case <-req.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// truncated promises an n-byte body, sends 17 bytes and closes the
// connection.
func truncated(n int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n{\"schemaVersion\":", types.OCIManifestSchema1, n)
		buf.Flush()
	}
}

// --- loading the interop vectors ---

// loadVectors pushes every tag of tags.json, with the manifests and blobs
// it reaches, into the registry, then forgets those requests.
func loadVectors(t *testing.T, r *testRegistry) {
	t.Helper()
	var tags map[string]map[string]struct {
		Digest    string `json:"digest"`
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(readVector(t, "tags.json"), &tags); err != nil {
		t.Fatal(err)
	}
	for repo, byTag := range tags {
		for tag, target := range byTag {
			raw, mt := pushManifestTree(t, r, repo, target.Digest)
			if mt != target.MediaType {
				t.Fatalf("%s:%s: media type %s, tags.json says %s", repo, tag, mt, target.MediaType)
			}
			putManifest(t, r, repo, tag, raw, mt)
		}
	}
	r.reset()
}

// pushManifestTree pushes the manifest digest after its blobs and child
// manifests, and returns its bytes and media type.
func pushManifestTree(t *testing.T, r *testRegistry, repo, digest string) ([]byte, string) {
	t.Helper()
	raw := readVector(t, "manifests", strings.Replace(digest, ":", "-", 1))
	var m struct {
		MediaType string          `json:"mediaType"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest %s: %v", digest, err)
	}
	for _, child := range m.Manifests {
		pushManifestTree(t, r, repo, child.Digest.String())
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, b := range blobs {
		pushBlob(t, r, repo, readVector(t, "blobs", strings.Replace(b.Digest.String(), ":", "-", 1)))
	}
	putManifest(t, r, repo, digest, raw, m.MediaType)
	return raw, m.MediaType
}

func readVector(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{vectorDir}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pushBlob uploads b in one POST and returns its digest.
func pushBlob(t *testing.T, r *testRegistry, repo string, b []byte) string {
	t.Helper()
	d := sha256Digest(b)
	req, err := http.NewRequest(http.MethodPost, r.URL+"/v2/"+repo+"/blobs/uploads/?digest="+d, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp := r.do(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing blob %s: status %d", d, resp.StatusCode)
	}
	return d
}

// putManifest PUTs raw bytes as manifest ref.
func putManifest(t *testing.T, r *testRegistry, repo, ref string, raw []byte, mediaType string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, r.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp := r.do(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("putting manifest %s:%s: status %d", repo, ref, resp.StatusCode)
	}
}

// getManifest returns the bytes of manifest ref, nil when not found.
func getManifest(t *testing.T, r *testRegistry, repo, ref string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := r.do(t, req)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("getting %s:%s: status %d, %v", repo, ref, resp.StatusCode, err)
	}
	return b
}

func loadKey(t *testing.T, file string) PublicKey {
	t.Helper()
	k, err := LoadPublicKey(filepath.Join(vectorDir, "keys", file))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// --- the interop vectors ---

// wantSig is what a test expects of one signature.
type wantSig struct {
	format  Format
	payload string    // digest of the payload blob (simple signing) or bundle blob
	key     PublicKey // verifies Sig over Signed
}

func TestSignaturesReadsWhatCosignWrote(t *testing.T) {
	ecdsaKey, ed25519Key := loadKey(t, "ecdsa.pub"), loadKey(t, "ed25519.pub")
	tagPath := func(repo string, d v1.Hash, suffix string) string {
		return "GET /v2/" + repo + "/manifests/" + ReferrersTag(d) + suffix
	}
	for _, tc := range []struct {
		name      string
		referrers bool
		repo      string
		digest    v1.Hash
		want      []wantSig
		requests  []string
	}{{
		name: "app:v1 two legacy signatures", repo: "interop/app", digest: appV1,
		want: []wantSig{{FormatSimpleSigning, appV1ECDSAPayload, ecdsaKey}, {FormatSimpleSigning, appV1Ed25519Payload, ed25519Key}},
		requests: []string{
			"GET /v2/interop/app/blobs/" + appV1ECDSAPayload,
			"GET /v2/interop/app/blobs/" + appV1Ed25519Payload,
			tagPath("interop/app", appV1, ""),
			tagPath("interop/app", appV1, ".sig"),
			"GET /v2/interop/app/referrers/" + appV1.String(),
		},
	}, {
		name: "app:v1 with referrers API", referrers: true, repo: "interop/app", digest: appV1,
		want: []wantSig{{FormatSimpleSigning, appV1ECDSAPayload, ecdsaKey}, {FormatSimpleSigning, appV1Ed25519Payload, ed25519Key}},
		requests: []string{
			"GET /v2/interop/app/blobs/" + appV1ECDSAPayload,
			"GET /v2/interop/app/blobs/" + appV1Ed25519Payload,
			tagPath("interop/app", appV1, ""),
			tagPath("interop/app", appV1, ".sig"),
			"GET /v2/interop/app/referrers/" + appV1.String(),
		},
	}, {
		name: "app:v2 bundle through the referrers tag", repo: "interop/app", digest: appV2,
		want: []wantSig{{FormatBundle, appV2Bundle, ecdsaKey}},
		requests: []string{
			"GET /v2/interop/app/blobs/" + appV2Bundle,
			"GET /v2/interop/app/manifests/" + appV2Referrer,
			tagPath("interop/app", appV2, ""),
			tagPath("interop/app", appV2, ".sig"),
			"GET /v2/interop/app/referrers/" + appV2.String(),
		},
	}, {
		// The dump also holds the referrers tag cosign wrote: both list the
		// one referrer, which is fetched once.
		name: "app:v2 bundle through the referrers API and tag", referrers: true, repo: "interop/app", digest: appV2,
		want: []wantSig{{FormatBundle, appV2Bundle, ecdsaKey}},
		requests: []string{
			"GET /v2/interop/app/blobs/" + appV2Bundle,
			"GET /v2/interop/app/manifests/" + appV2Referrer,
			tagPath("interop/app", appV2, ""),
			tagPath("interop/app", appV2, ".sig"),
			"GET /v2/interop/app/referrers/" + appV2.String(),
		},
	}, {
		name: "unsigned has none", repo: "interop/unsigned", digest: unsigned,
		requests: []string{
			tagPath("interop/unsigned", unsigned, ""),
			tagPath("interop/unsigned", unsigned, ".sig"),
			"GET /v2/interop/unsigned/referrers/" + unsigned.String(),
		},
	}, {
		name: "unsigned has none with referrers API", referrers: true, repo: "interop/unsigned", digest: unsigned,
		requests: []string{
			tagPath("interop/unsigned", unsigned, ""),
			tagPath("interop/unsigned", unsigned, ".sig"),
			"GET /v2/interop/unsigned/referrers/" + unsigned.String(),
		},
	}, {
		name: "multi:v1 index digest", repo: "interop/multi", digest: multiV1,
		want: []wantSig{{FormatSimpleSigning, multiV1Payload, ecdsaKey}},
		requests: []string{
			"GET /v2/interop/multi/blobs/" + multiV1Payload,
			tagPath("interop/multi", multiV1, ""),
			tagPath("interop/multi", multiV1, ".sig"),
			"GET /v2/interop/multi/referrers/" + multiV1.String(),
		},
	}, {
		name: "repository never pushed", repo: "interop/nothing", digest: appV1,
		requests: []string{
			tagPath("interop/nothing", appV1, ""),
			tagPath("interop/nothing", appV1, ".sig"),
			"GET /v2/interop/nothing/referrers/" + appV1.String(),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers)
			loadVectors(t, r)
			sigs, err := r.signatures(t, tc.repo, tc.digest)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkSignatures(t, sigs, tc.digest, tc.want)
			sort.Strings(tc.requests)
			if got := r.recorded(); !slices.Equal(got, tc.requests) {
				t.Errorf("%d requests:\n  %s\nwant %d:\n  %s", len(got), strings.Join(got, "\n  "), len(tc.requests), strings.Join(tc.requests, "\n  "))
			}
		})
	}
}

// checkSignatures checks sigs against want, in order: format, the blob
// behind each, a valid signature, and claims bound to digest.
func checkSignatures(t *testing.T, sigs []Signature, digest v1.Hash, want []wantSig) {
	t.Helper()
	if len(sigs) != len(want) {
		t.Fatalf("got %d signatures, want %d: %+v", len(sigs), len(want), sigs)
	}
	for i, w := range want {
		s := sigs[i]
		if s.Err != nil {
			t.Errorf("signature %d (%s): %v", i, s.Where, s.Err)
			continue
		}
		if s.Format != w.format {
			t.Errorf("signature %d: format %s, want %s", i, s.Format, w.format)
		}
		blob := s.Payload
		if s.Format == FormatBundle {
			blob = s.Bundle
		} else if !bytes.Equal(s.Signed, s.Payload) {
			t.Errorf("signature %d: Signed differs from Payload", i)
		}
		if got := sha256Digest(blob); got != w.payload {
			t.Errorf("signature %d: blob %s, want %s", i, got, w.payload)
		}
		if err := w.key.Verify(s.Signed, s.Sig); err != nil {
			t.Errorf("signature %d (%s): does not verify with %s: %v", i, s.Where, w.key.ID(), err)
		}
		claims, err := s.Claims()
		if err != nil {
			t.Errorf("signature %d: claims: %v", i, err)
		} else if !slices.Contains(claims.Digests, digest) {
			t.Errorf("signature %d: claims %v do not bind %s", i, claims.Digests, digest)
		}
		if s.Where == "" {
			t.Errorf("signature %d: no Where", i)
		}
	}
}

// TestSignaturesFiltersReferrersByArtifactType: go-containerregistry's own
// registry lists cosign's bundle under the config media type (the OCI empty
// type) instead of the manifest's artifactType. Such an entry is not a
// bundle by its descriptor and is not fetched, as cosign itself does. (The
// referrers tag cosign wrote, which lists it correctly, is hidden here.)
func TestSignaturesFiltersReferrersByArtifactType(t *testing.T) {
	var inner http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))
	inner = serve(tagPath(appV2), ociError(http.StatusNotFound, "MANIFEST_UNKNOWN", "hidden"))(inner)
	r := &testRegistry{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		inner.ServeHTTP(w, req)
	}))
	defer r.Close()
	loadVectors(t, r)

	sigs, err := r.signatures(t, "interop/app", appV2)
	if err != nil || len(sigs) != 0 {
		t.Fatalf("got %d signatures, %v; want none", len(sigs), err)
	}
	for _, req := range r.recorded() {
		if strings.Contains(req, appV2Referrer) {
			t.Errorf("fetched the mislabelled referrer: %s", req)
		}
	}
}

// --- attacks and failures ---

// sigManifest is a .sig manifest whose layers are built by layer.
func sigManifest(n int, layer func(i int) v1.Descriptor) []byte {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: 2, Digest: mustHash(sha256Digest([]byte("{}")))},
		Layers:        []v1.Descriptor{},
	}
	for i := range n {
		m.Layers = append(m.Layers, layer(i))
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// payloadLayer describes payload b signed by sig.
func payloadLayer(b []byte, sig string) v1.Descriptor {
	return v1.Descriptor{
		MediaType:   SimpleSigningMediaType,
		Size:        int64(len(b)),
		Digest:      mustHash(sha256Digest(b)),
		Annotations: map[string]string{SignatureAnnotation: sig},
	}
}

// attackRepo is where the attack tests look: an image of the vectors.
const attackRepo = "interop/app"

func sigPath(d v1.Hash) string      { return "/v2/" + attackRepo + "/manifests/" + SignatureTag(d) }
func blobPath(d string) string      { return "/v2/" + attackRepo + "/blobs/" + d }
func tagPath(d v1.Hash) string      { return "/v2/" + attackRepo + "/manifests/" + ReferrersTag(d) }
func refPath(d v1.Hash) string      { return "/v2/" + attackRepo + "/referrers/" + d.String() }
func manPath(d string) string       { return "/v2/" + attackRepo + "/manifests/" + d }
func b64(b []byte) string           { return base64.StdEncoding.EncodeToString(b) }
func oci(b []byte) http.HandlerFunc { return body(http.StatusOK, string(types.OCIManifestSchema1), b) }

// TestSignaturesReportsBrokenSources: a source that holds something other
// than signatures is one broken signature, never the lookup's error, so
// that it cannot veto the signatures of another source.
func TestSignaturesReportsBrokenSources(t *testing.T) {
	target := mustHash(sha256Digest([]byte("attack target")))
	payload := []byte(`{"critical":{}}`)
	index, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})

	for _, tc := range []struct {
		name       string
		referrers  bool
		mw         middleware
		noRequests string // no request path may contain this
	}{
		{name: ".sig manifest with a layer digest in upper case", mw: serve(sigPath(target), oci([]byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1},"layers":[{"mediaType":"a","digest":"sha256:`+strings.Repeat("A", 64)+`","size":1}]}`))), noRequests: "/blobs/"},
		{name: "Docker manifest list under the referrers tag",
			mw: serve(tagPath(target), body(http.StatusOK, string(types.DockerManifestList), []byte(`{"schemaVersion":2,"mediaType":"`+string(types.DockerManifestList)+`","manifests":[]}`)))},
		{name: "malformed .sig manifest JSON", mw: serve(sigPath(target), oci([]byte(`{"schemaVersion":2,"layers":[`)))},
		{name: ".sig manifest with layers of the wrong JSON type", mw: serve(sigPath(target), oci([]byte(`{"schemaVersion":2,"layers":{"a":1}}`)))},
		{name: ".sig manifest schemaVersion 1", mw: serve(sigPath(target), oci([]byte(`{"schemaVersion":1,"layers":[]}`)))},
		{name: ".sig tag holding an index by Content-Type", mw: serve(sigPath(target), body(http.StatusOK, string(types.OCIImageIndex), index))},
		{name: ".sig tag holding an index served as a manifest", mw: serve(sigPath(target), oci(index))},
		{name: ".sig manifest that is also an index",
			mw: serve(sigPath(target), oci([]byte(`{"schemaVersion":2,"mediaType":"`+string(types.OCIManifestSchema1)+`","layers":[],"manifests":[]}`)))},
		{name: ".sig manifest over MaxManifestSize", mw: serve(sigPath(target), oci(bytes.Repeat([]byte(" "), MaxManifestSize+1)))},
		{name: ".sig manifest announcing more than MaxManifestSize", mw: serve(sigPath(target), func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(MaxManifestSize+1))
			w.Write([]byte("{"))
		})},
		{name: "referrers tag that is not an index", mw: serve(tagPath(target), oci(sigManifest(1, func(int) v1.Descriptor { return payloadLayer(payload, "") })))},
		{name: "referrers tag that is not an index beside a referrers API", referrers: true,
			mw: serve(tagPath(target), oci(sigManifest(1, func(int) v1.Descriptor { return payloadLayer(payload, "") })))},
		{name: "referrers API index that is malformed", referrers: true,
			mw: serve(refPath(target), body(http.StatusOK, string(types.OCIImageIndex), []byte(`{"schemaVersion":2,"mediaType":"`+string(types.OCIImageIndex)+`","manifests":[{"size":"x"}]}`)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers, tc.mw)
			sigs, err := r.signatures(t, attackRepo, target)
			if err != nil {
				t.Fatalf("Signatures: %v; want the broken source as a signature", err)
			}
			if len(sigs) != 1 || !errors.Is(sigs[0].Err, ErrInvalidArtifact) {
				t.Fatalf("got %+v; want one signature with ErrInvalidArtifact", sigs)
			}
			for _, req := range r.recorded() {
				if tc.noRequests != "" && strings.Contains(req, tc.noRequests) {
					t.Errorf("fetched %s", req)
				}
			}
		})
	}
}

// TestSignaturesReadsAtMostTheLimit: past MaxSignatures layers of the .sig
// manifest, or MaxReferrers bundle referrers, the rest are reported as one
// broken signature, not read.
func TestSignaturesReadsAtMostTheLimit(t *testing.T) {
	target := mustHash(sha256Digest([]byte("attack target")))
	many := sigManifest(MaxSignatures+1, func(i int) v1.Descriptor {
		return payloadLayer([]byte(fmt.Sprint(i)), b64([]byte("sig")))
	})
	manyBundles := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for i := range MaxReferrers + 1 {
		manyBundles.Manifests = append(manyBundles.Manifests, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 100,
			Digest: mustHash(sha256Digest([]byte(fmt.Sprint(i)))), ArtifactType: BundleMediaType})
	}
	manyBundlesJSON, _ := json.Marshal(manyBundles)
	for _, tc := range []struct {
		name      string
		referrers bool
		mw        middleware
		fetched   string
		limit     int
	}{
		{"layers of the .sig manifest", false, serve(sigPath(target), oci(many)), "/blobs/", MaxSignatures},
		{"bundles in the referrers tag", false, serve(tagPath(target), body(http.StatusOK, string(types.OCIImageIndex), manyBundlesJSON)), "/manifests/sha256:", MaxReferrers},
		{"bundles from the referrers API", true, serve(refPath(target), body(http.StatusOK, string(types.OCIImageIndex), manyBundlesJSON)), "/manifests/sha256:", MaxReferrers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers, tc.mw)
			sigs, err := r.signatures(t, attackRepo, target)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			if len(sigs) != tc.limit+1 {
				t.Fatalf("got %d signatures, want %d read and one report", len(sigs), tc.limit+1)
			}
			if !slices.ContainsFunc(sigs, func(s Signature) bool { return s.Err != nil && strings.Contains(s.Err.Error(), "past the limit") }) {
				t.Errorf("no report of what was not read")
			}
			n := 0
			for _, req := range r.recorded() {
				if strings.Contains(req, tc.fetched) {
					n++
				}
			}
			if n > tc.limit {
				t.Errorf("fetched %d artifacts, at most %d may be read", n, tc.limit)
			}
		})
	}
}

// TestSignaturesUntilStopsWhenEnough: junk referrers ahead of a valid
// bundle cost reading until enough says the signatures suffice, and no
// more; with the lookup's byte limit reached first, the rest is reported.
func TestSignaturesUntilStopsWhenEnough(t *testing.T) {
	plain := newTestRegistry(t, false)
	loadVectors(t, plain)
	var tagIndex v1.IndexManifest
	resp, err := http.Get(plain.URL + tagPath(appV2))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tagIndex); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	real := tagIndex.Manifests[0]
	var entries []v1.Descriptor
	for i := range 200 { // junk first, as an attacker grinds it
		entries = append(entries, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 100,
			Digest: mustHash(sha256Digest([]byte(fmt.Sprint("junk", i)))), ArtifactType: BundleMediaType})
	}
	entries = append(entries, real)
	for i := range 300 {
		entries = append(entries, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 100,
			Digest: mustHash(sha256Digest([]byte(fmt.Sprint("late", i)))), ArtifactType: BundleMediaType})
	}
	idx, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: entries})
	r := newTestRegistry(t, false, serve(tagPath(appV2), body(http.StatusOK, string(types.OCIImageIndex), idx)))
	loadVectors(t, r)
	f := NewFetcher(r.URL, nil)
	sigs, err := f.SignaturesUntil(context.Background(), attackRepo, appV2, func(batch []Signature) bool {
		return slices.ContainsFunc(batch, func(s Signature) bool { return s.Err == nil && s.Format == FormatBundle })
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(sigs, func(s Signature) bool { return s.Err == nil && s.Format == FormatBundle }) {
		t.Fatalf("the valid bundle behind 200 junk referrers was not read")
	}
	if len(sigs) >= len(entries) {
		t.Fatalf("read %d referrers after the valid one sufficed", len(sigs)-201)
	}

	// With the lookup's byte limit below what the junk costs, the valid
	// bundle is not reached and the rest is reported, not read.
	defer func(old int64) { lookupByteLimit = old }(lookupByteLimit)
	lookupByteLimit = 1
	sigs, err = f.SignaturesUntil(context.Background(), attackRepo, appV2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(sigs, func(s Signature) bool { return s.Err != nil && strings.Contains(s.Err.Error(), "its limit of 1 bytes") }) {
		t.Fatalf("no report of the referrers past the byte limit among %d signatures", len(sigs))
	}
}

func TestSignaturesKeepsGoodSignaturesBesideBadOnes(t *testing.T) {
	target := mustHash(sha256Digest([]byte("mixed target")))
	good := []byte(`{"good":true}`)
	swapped := []byte("0riginal") // same length as "original", other bytes
	huge := payloadLayer([]byte("huge"), b64([]byte("sig")))
	huge.Size = 1 << 20
	short := payloadLayer([]byte("short body"), b64([]byte("sig")))
	short.Size++
	missing := payloadLayer([]byte("never pushed"), b64([]byte("sig")))
	badB64 := payloadLayer([]byte("bad base64"), "not base64!")
	noSig := payloadLayer([]byte("no annotation"), "")
	delete(noSig.Annotations, SignatureAnnotation)
	wrongType := payloadLayer([]byte("wrong type"), b64([]byte("sig")))
	wrongType.MediaType = "application/vnd.oci.image.layer.v1.tar"

	layers := []struct {
		desc    v1.Descriptor
		errText string // "" = valid
	}{
		{payloadLayer(good, b64([]byte("good sig"))), ""},
		{payloadLayer([]byte("original"), b64([]byte("sig"))), "does not match"},
		{payloadLayer([]byte("longer"), b64([]byte("sig"))), "exceeds"},
		{huge, "exceeds"},
		{short, "bytes, descriptor says"},
		{missing, "not found"},
		{badB64, "base64"},
		{noSig, "no dev.cosignproject.cosign/signature"},
		{wrongType, "media type"},
	}
	raw := sigManifest(len(layers), func(i int) v1.Descriptor { return layers[i].desc })
	r := newTestRegistry(t, false,
		serve(sigPath(target), oci(raw)),
		serve(blobPath(layers[1].desc.Digest.String()), body(http.StatusOK, "", swapped)),
		serve(blobPath(short.Digest.String()), body(http.StatusOK, "", []byte("short body"))),
		serve(blobPath(layers[2].desc.Digest.String()), body(http.StatusOK, "", []byte("longer by far"))),
	)
	pushBlob(t, r, attackRepo, good)
	pushBlob(t, r, attackRepo, []byte("huge"))
	r.reset()

	sigs, err := r.signatures(t, attackRepo, target)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	if len(sigs) != len(layers) {
		t.Fatalf("got %d signatures, want %d", len(sigs), len(layers))
	}
	for i, l := range layers {
		s := sigs[i]
		if s.Where != fmt.Sprintf("%s layer %d", SignatureTag(target), i) {
			t.Errorf("layer %d: Where %q", i, s.Where)
		}
		if l.errText == "" {
			if s.Err != nil || !bytes.Equal(s.Payload, good) || string(s.Sig) != "good sig" || s.Format != FormatSimpleSigning {
				t.Errorf("layer %d: %+v, want the good signature", i, s)
			}
			continue
		}
		if !errors.Is(s.Err, ErrInvalidArtifact) || !strings.Contains(s.Err.Error(), l.errText) {
			t.Errorf("layer %d: Err %v, want ErrInvalidArtifact saying %q", i, s.Err, l.errText)
		}
		if s.Payload != nil || s.Sig != nil {
			t.Errorf("layer %d: invalid signature carries payload or sig", i)
		}
	}
	for _, req := range r.recorded() {
		for _, never := range []v1.Descriptor{huge, badB64, noSig, wrongType} {
			if strings.Contains(req, never.Digest.String()) {
				t.Errorf("fetched a blob it should have refused unread: %s", req)
			}
		}
	}
}

func TestSignaturesRefusesBadBundleReferrers(t *testing.T) {
	// interop/app:v2's real bundle manifest, and variants of it.
	real := readVector(t, "manifests", strings.Replace(appV2Referrer, ":", "-", 1))
	entry := func(raw []byte) v1.Descriptor {
		return v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(raw)), Digest: mustHash(sha256Digest(raw)), ArtifactType: BundleMediaType}
	}
	variant := func(edit func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(real, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	otherSubject := variant(func(m map[string]any) {
		m["subject"].(map[string]any)["digest"] = unsigned.String()[:len(unsigned.String())-1] + "0"
	})
	noSubject := variant(func(m map[string]any) { delete(m, "subject") })
	notBundle := variant(func(m map[string]any) { m["artifactType"] = "application/spdx+json" })
	twoLayers := variant(func(m map[string]any) {
		ls := m["layers"].([]any)
		m["layers"] = append(ls, ls[0])
	})
	liar := entry(real)
	liar.Digest = mustHash(sha256Digest([]byte("something else")))
	for _, tc := range []struct {
		name    string
		entry   v1.Descriptor
		raw     []byte
		errText string
	}{
		{"manifest not matching the index entry digest", liar, real, "does not match"},
		{"referrer of another image", entry(otherSubject), otherSubject, "subject"},
		{"referrer without subject", entry(noSubject), noSubject, "subject"},
		{"manifest whose artifactType is not a bundle", entry(notBundle), notBundle, "artifact type"},
		{"two bundle layers", entry(twoLayers), twoLayers, "want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{tc.entry}})
			r := newTestRegistry(t, false,
				serve(tagPath(appV2), body(http.StatusOK, string(types.OCIImageIndex), idx)),
				serve(manPath(tc.entry.Digest.String()), oci(tc.raw)),
			)
			loadVectors(t, r)
			sigs, err := r.signatures(t, attackRepo, appV2)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			if len(sigs) != 1 || !errors.Is(sigs[0].Err, ErrInvalidArtifact) || !strings.Contains(sigs[0].Err.Error(), tc.errText) {
				t.Fatalf("got %+v, want one signature whose Err says %q", sigs, tc.errText)
			}
			if sigs[0].Format != FormatBundle || sigs[0].Where != "referrer "+tc.entry.Digest.String() {
				t.Errorf("Format %s, Where %q", sigs[0].Format, sigs[0].Where)
			}
			for _, req := range r.recorded() {
				if strings.Contains(req, "/blobs/") {
					t.Errorf("fetched the bundle of a refused referrer: %s", req)
				}
			}
		})
	}
}

func TestSignaturesReportsRegistryFailures(t *testing.T) {
	target := appV1
	for _, tc := range []struct {
		name      string
		mw        middleware
		referrers bool
		deadline  time.Duration
		status    int
		code      string
		timeout   bool
	}{
		{name: "500 on the .sig manifest", mw: serve(sigPath(target), ociError(500, "UNKNOWN", "boom")), status: 500, code: "UNKNOWN"},
		{name: "429 on the .sig manifest", mw: serve(sigPath(target), ociError(429, "TOOMANYREQUESTS", "slow down")), status: 429, code: "TOOMANYREQUESTS"},
		{name: "401 on the .sig manifest", mw: serve(sigPath(target), ociError(401, "UNAUTHORIZED", "who are you")), status: 401, code: "UNAUTHORIZED"},
		{name: "403 on the referrers tag", mw: serve(tagPath(target), ociError(403, "DENIED", "no")), status: 403, code: "DENIED"},
		{name: "503 on the referrers API", referrers: true, mw: serve(refPath(target), body(503, "text/plain", []byte("down"))), status: 503},
		{name: "403 on the referrers tag beside a referrers API", referrers: true, mw: serve(tagPath(target), ociError(403, "DENIED", "no")), status: 403, code: "DENIED"},
		{name: "timeout on the referrers API, tag not found", mw: serve(refPath(target), hang), deadline: 200 * time.Millisecond, timeout: true},
		{name: "timeout on the referrers tag beside a referrers API", referrers: true, mw: serve(tagPath(target), hang), deadline: 200 * time.Millisecond, timeout: true},
		{name: "502 on a payload blob", mw: serve(blobPath(appV1ECDSAPayload), body(502, "text/html", []byte("<html>"))), status: 502},
		{name: "timeout on the .sig manifest", mw: serve(sigPath(target), hang), deadline: 200 * time.Millisecond, timeout: true},
		{name: "timeout on a payload blob", mw: serve(blobPath(appV1Ed25519Payload), hang), deadline: 200 * time.Millisecond, timeout: true},
		{name: "truncated .sig manifest", mw: serve(sigPath(target), truncated(1000)), status: 200},
		{name: "truncated payload blob", mw: serve(blobPath(appV1ECDSAPayload), truncated(252)), status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers, tc.mw)
			loadVectors(t, r)
			deadline := cmpOrDuration(tc.deadline, 10*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			sigs, err := NewFetcher(r.URL, nil).Signatures(ctx, attackRepo, target)
			var rerr *RegistryError
			if !errors.As(err, &rerr) {
				t.Fatalf("got %d signatures, error %v; want *RegistryError", len(sigs), err)
			}
			if errors.Is(err, ErrInvalidArtifact) {
				t.Errorf("a registry failure reported as an invalid artifact: %v", err)
			}
			if rerr.StatusCode != tc.status || rerr.Code != tc.code || rerr.Timeout() != tc.timeout {
				t.Errorf("RegistryError{StatusCode: %d, Code: %q, Timeout: %t}, want {%d, %q, %t}: %v",
					rerr.StatusCode, rerr.Code, rerr.Timeout(), tc.status, tc.code, tc.timeout, err)
			}
			if elapsed := time.Since(start); elapsed > deadline+2*time.Second {
				t.Errorf("took %s", elapsed)
			}
		})
	}
}

func cmpOrDuration(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

func TestSignaturesRefusesBadArguments(t *testing.T) {
	r := newTestRegistry(t, false)
	for _, tc := range []struct {
		name   string
		repo   string
		digest v1.Hash
	}{
		{"uppercase hex", "interop/app", v1.Hash{Algorithm: "sha256", Hex: strings.ToUpper(appV1.Hex)}},
		{"short hex", "interop/app", v1.Hash{Algorithm: "sha256", Hex: appV1.Hex[:63]}},
		{"sha512", "interop/app", v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("a", 128)}},
		{"hex with newline", "interop/app", v1.Hash{Algorithm: "sha256", Hex: appV1.Hex[:63] + "\n"}},
		{"empty repository", "", appV1},
		{"uppercase repository", "Interop/app", appV1},
		{"path traversal", "interop/../app", appV1},
		{"escaped slash", "interop%2Fapp", appV1},
		{"query in repository", "interop/app?x=1", appV1},
		{"double slash", "interop//app", appV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.signatures(t, tc.repo, tc.digest); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if got := r.recorded(); len(got) != 0 {
		t.Errorf("bad arguments reached the registry: %v", got)
	}
}

func TestRegistryErrorTimeout(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{context.Canceled, false},
		{io.ErrUnexpectedEOF, false},
		{nil, false},
	} {
		if got := (&RegistryError{Err: tc.err}).Timeout(); got != tc.want {
			t.Errorf("Timeout() with %v = %t, want %t", tc.err, got, tc.want)
		}
	}
	e := &RegistryError{Op: "GET /v2/a/manifests/b", StatusCode: 429, Code: "TOOMANYREQUESTS", Message: "slow down"}
	if want := "registry: GET /v2/a/manifests/b: status 429: TOOMANYREQUESTS: slow down"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// basicAuth demands user:pass on every /v2/ request.
func basicAuth(user, pass string) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				ociError(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")(w, req)
				return
			}
			inner.ServeHTTP(w, req)
		})
	}
}

// staticKeychain resolves every resource to one authenticator.
type staticKeychain struct{ auth authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

func TestFetcherForUsesTheKeychain(t *testing.T) {
	r := newTestRegistry(t, false, basicAuth("alice", "secret"))
	r.user, r.pass = "alice", "secret"
	loadVectors(t, r)

	repo, err := name.NewRepository(r.host() + "/interop/app")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		kc       authn.Keychain
		wantCode int
	}{
		{"right credentials", staticKeychain{&authn.Basic{Username: "alice", Password: "secret"}}, 0},
		{"wrong credentials", staticKeychain{&authn.Basic{Username: "alice", Password: "guess"}}, http.StatusUnauthorized},
		{"anonymous", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FetcherFor(ctx, repo, tc.kc, nil)
			if err != nil {
				t.Fatalf("FetcherFor: %v", err)
			}
			sigs, err := f.Signatures(ctx, repo.RepositoryStr(), appV1)
			var rerr *RegistryError
			switch {
			case tc.wantCode == 0 && err != nil:
				t.Fatalf("Signatures: %v", err)
			case tc.wantCode == 0 && len(sigs) != 2:
				t.Fatalf("got %d signatures, want app:v1's 2", len(sigs))
			case tc.wantCode != 0 && (!errors.As(err, &rerr) || rerr.StatusCode != tc.wantCode):
				t.Fatalf("got %v, want a RegistryError with status %d", err, tc.wantCode)
			}
		})
	}
}

// --- fuzzing the manifest parsers ---

func FuzzParseSignatureManifest(f *testing.F) {
	f.Add(readVector(f, "manifests", "sha256-4e8657b6bbc927c8544e0c1ebd2549e476f68259307b39d7cb2c6a3f7d0be9f8"), string(types.OCIManifestSchema1))
	f.Add([]byte(`{"schemaVersion":2,"layers":[null,{},[]]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), string(types.OCIImageIndex))
	f.Fuzz(func(t *testing.T, b []byte, contentType string) {
		layers, err := parseSignatureManifest(b, contentType)
		if err != nil && !errors.Is(err, ErrInvalidArtifact) {
			t.Fatalf("error not wrapping ErrInvalidArtifact: %v", err)
		}
		if len(layers) > MaxSignatures {
			t.Fatalf("%d layers accepted", len(layers))
		}
	})
}

func FuzzParseReferrersIndex(f *testing.F) {
	f.Add(readVector(f, "manifests", "sha256-bb2ecbe75ac013ccf3bf9633d8f8e036940130d49505a081bc02c0713d81adce"))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"artifactType":"x"},null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseReferrersIndex(b)
		if err != nil && !errors.Is(err, ErrInvalidArtifact) {
			t.Fatalf("error not wrapping ErrInvalidArtifact: %v", err)
		}
		if len(entries) > MaxSignatures {
			t.Fatalf("%d entries accepted", len(entries))
		}
		for _, e := range entries {
			if e.ArtifactType != BundleMediaType {
				t.Fatalf("kept a non-bundle entry %+v", e)
			}
		}
	})
}

func FuzzParseBundleManifest(f *testing.F) {
	f.Add(readVector(f, "manifests", strings.Replace(appV2Referrer, ":", "-", 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		layer, err := parseBundleManifest(b, appV2)
		if err != nil {
			if !errors.Is(err, ErrInvalidArtifact) {
				t.Fatalf("error not wrapping ErrInvalidArtifact: %v", err)
			}
			return
		}
		if layer.MediaType != BundleMediaType {
			t.Fatalf("returned a %q layer", layer.MediaType)
		}
	})
}

// --- round trips ---

// lockstep is a RoundTripper that answers from an in-memory handler in
// rounds, inside a synctest bubble: it holds every request until the lookup
// cannot send another one without an answer (synctest.Wait), then answers
// all of them at once. A request's round is the number of rounds answered
// before it was sent, plus one, so that the number of rounds is the depth
// of the lookup's chain of dependent requests, whatever the scheduling.
type lockstep struct {
	h        http.Handler
	mu       sync.Mutex
	answered int             // rounds answered so far
	pending  []chan struct{} // requests waiting for the next round
	sent     []sentRequest
}

// sentRequest is one request and the round it was sent in.
type sentRequest struct {
	round int
	path  string
}

// RoundTrip holds req until its round is answered.
func (l *lockstep) RoundTrip(req *http.Request) (*http.Response, error) {
	release := make(chan struct{})
	l.mu.Lock()
	l.pending = append(l.pending, release)
	l.sent = append(l.sent, sentRequest{round: l.answered + 1, path: req.Method + " " + req.URL.Path})
	l.mu.Unlock()
	select {
	case <-release:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	rec := httptest.NewRecorder()
	l.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// answerRound releases every held request and reports how many there were.
func (l *lockstep) answerRound() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.pending)
	for _, release := range l.pending {
		close(release)
	}
	l.pending = nil
	if n > 0 {
		l.answered++
	}
	return n
}

// lookupInRounds runs one Signatures lookup against h in lockstep and
// returns its result and the requests it sent, each with its round.
func lookupInRounds(t *testing.T, h http.Handler, repo string, digest v1.Hash) ([]Signature, error, []sentRequest) {
	t.Helper()
	var (
		sigs []Signature
		err  error
		l    = &lockstep{h: h}
	)
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			sigs, err = NewFetcher("http://registry.test", l).Signatures(ctx, repo, digest)
		}()
		for {
			synctest.Wait() // every request the lookup can send without an answer is held
			if l.answerRound() == 0 {
				break
			}
		}
		<-done
	})
	return sigs, err, l.sent
}

// rounds is the highest round of sent.
func rounds(sent []sentRequest) int {
	n := 0
	for _, s := range sent {
		n = max(n, s.round)
	}
	return n
}

// TestSignaturesRoundTrips counts the sequential round trips of a lookup:
// the .sig manifest, the referrers API and the referrers tag are asked at
// once, so a legacy signature costs 2 rounds (manifest, payloads) and a
// bundle 3 (indexes, referrer manifest, bundle), with or without the
// referrers API.
func TestSignaturesRoundTrips(t *testing.T) {
	ecdsaKey, ed25519Key := loadKey(t, "ecdsa.pub"), loadKey(t, "ed25519.pub")
	for _, tc := range []struct {
		name      string
		referrers bool
		repo      string
		digest    v1.Hash
		want      []wantSig
		rounds    int
		requests  int
	}{
		{name: "legacy signatures, no referrers API", repo: "interop/app", digest: appV1, rounds: 2, requests: 5,
			want: []wantSig{{FormatSimpleSigning, appV1ECDSAPayload, ecdsaKey}, {FormatSimpleSigning, appV1Ed25519Payload, ed25519Key}}},
		{name: "legacy signatures, referrers API", referrers: true, repo: "interop/app", digest: appV1, rounds: 2, requests: 5,
			want: []wantSig{{FormatSimpleSigning, appV1ECDSAPayload, ecdsaKey}, {FormatSimpleSigning, appV1Ed25519Payload, ed25519Key}}},
		{name: "bundle in the referrers tag, no referrers API", repo: "interop/app", digest: appV2, rounds: 3, requests: 5,
			want: []wantSig{{FormatBundle, appV2Bundle, ecdsaKey}}},
		{name: "bundle through the referrers API", referrers: true, repo: "interop/app", digest: appV2, rounds: 3, requests: 5,
			want: []wantSig{{FormatBundle, appV2Bundle, ecdsaKey}}},
		{name: "index with a legacy signature", repo: "interop/multi", digest: multiV1, rounds: 2, requests: 4,
			want: []wantSig{{FormatSimpleSigning, multiV1Payload, ecdsaKey}}},
		{name: "unsigned, no referrers API", repo: "interop/unsigned", digest: unsigned, rounds: 1, requests: 3},
		{name: "unsigned, referrers API", referrers: true, repo: "interop/unsigned", digest: unsigned, rounds: 1, requests: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers)
			loadVectors(t, r)
			sigs, err, sent := lookupInRounds(t, r.Config.Handler, tc.repo, tc.digest)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkSignatures(t, sigs, tc.digest, tc.want)
			if got := rounds(sent); got != tc.rounds || len(sent) != tc.requests {
				var log strings.Builder
				for _, s := range sent {
					fmt.Fprintf(&log, "\n  round %d: %s", s.round, s.path)
				}
				t.Errorf("%d requests in %d rounds, want %d in %d:%s", len(sent), got, tc.requests, tc.rounds, log.String())
			}
		})
	}
}

// TestSignaturesUnitesReferrersAPIAndTag: bundles are the union of what the
// referrers API and the referrers tag list, each referrer fetched once.
func TestSignaturesUnitesReferrersAPIAndTag(t *testing.T) {
	ecdsaKey := loadKey(t, "ecdsa.pub")
	emptyIndex, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
	for _, tc := range []struct {
		name  string
		mw    middleware
		fresh bool // write a second bundle, which only the referrers API lists
	}{
		// cosign's tag from before the registry had the API
		{name: "old referrers tag, API listing nothing", mw: serve(refPath(appV2), body(http.StatusOK, string(types.OCIImageIndex), emptyIndex))},
		{name: "API only, no referrers tag", mw: serve(tagPath(appV2), ociError(http.StatusNotFound, "MANIFEST_UNKNOWN", "no tag"))},
		{name: "API and tag listing the same referrer", mw: func(h http.Handler) http.Handler { return h }},
		{name: "API listing one more than the tag", mw: func(h http.Handler) http.Handler { return h }, fresh: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, true, tc.mw)
			loadVectors(t, r)
			want := map[string]PublicKey{appV2Bundle: ecdsaKey}
			if tc.fresh {
				k := newKey(t)
				bundle := writeBundleFor(t, r, attackRepo, appV2, k)
				want[sha256Digest(bundle)] = k.Public()
			}
			sigs, err := r.signatures(t, attackRepo, appV2)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			if len(sigs) != len(want) {
				t.Fatalf("got %d signatures, want %d: %+v", len(sigs), len(want), sigs)
			}
			for _, s := range sigs {
				key, ok := want[sha256Digest(s.Bundle)]
				if !ok {
					t.Fatalf("unexpected signature %s", s.Where)
				}
				checkSignatures(t, []Signature{s}, appV2, []wantSig{{FormatBundle, sha256Digest(s.Bundle), key}})
				delete(want, sha256Digest(s.Bundle))
			}
			fetched := 0
			for _, req := range r.recorded() {
				if strings.HasSuffix(req, "/manifests/"+appV2Referrer) {
					fetched++
				}
			}
			if fetched != 1 {
				t.Errorf("cosign's referrer fetched %d times, want once", fetched)
			}
		})
	}
}

// writeBundleFor signs digest (a manifest already in repo) with key as a
// bundle referrer and returns the bundle.
func writeBundleFor(t *testing.T, r *testRegistry, repo string, digest v1.Hash, key PrivateKey) []byte {
	t.Helper()
	manifest := getManifest(t, r, repo, digest.String())
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	bundle, err := NewBundle(key, digest, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(r.host() + "/" + repo + "@" + digest.String())
	if err != nil {
		t.Fatal(err)
	}
	subject := v1.Descriptor{MediaType: m.MediaType, Size: int64(len(manifest)), Digest: digest}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WriteBundle(ctx, d, subject, bundle); err != nil {
		t.Fatalf("WriteBundle: %v", err)
	}
	r.reset()
	return bundle
}

// TestSignaturesCapsTheReferrersUnion: MaxSignatures bounds the union of
// the referrers API and tag, counting a referrer both list once.
func TestSignaturesCapsTheReferrersUnion(t *testing.T) {
	target := mustHash(sha256Digest([]byte("union target")))
	index := func(from, to int) []byte {
		idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
		for i := from; i < to; i++ {
			idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 100,
				Digest: mustHash(sha256Digest([]byte(fmt.Sprint(i)))), ArtifactType: BundleMediaType})
		}
		b, _ := json.Marshal(idx)
		return b
	}
	const half = MaxReferrers/2 + 1
	for _, tc := range []struct {
		name       string
		api, tag   []byte
		wantErr    bool
		wantBundle int
	}{
		{"disjoint halves over the cap", index(0, half), index(half, 2*half), true, MaxReferrers},
		{"overlapping lists over the cap", index(0, MaxReferrers), index(1, MaxReferrers+1), true, MaxReferrers},
		{"the same MaxReferrers in both", index(0, MaxReferrers), index(0, MaxReferrers), false, MaxReferrers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, true,
				serve(refPath(target), body(http.StatusOK, string(types.OCIImageIndex), tc.api)),
				serve(tagPath(target), body(http.StatusOK, string(types.OCIImageIndex), tc.tag)),
			)
			sigs, err := r.signatures(t, attackRepo, target)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			if tc.wantErr {
				report := slices.IndexFunc(sigs, func(s Signature) bool {
					return s.Err != nil && strings.Contains(s.Err.Error(), "past the limit")
				})
				if report < 0 {
					t.Fatalf("no report of the referrers over the cap")
				}
				sigs = slices.Delete(sigs, report, report+1)
			}
			// None was pushed: each is a referrer pointing at nothing.
			if len(sigs) != tc.wantBundle {
				t.Fatalf("got %d signatures, want %d", len(sigs), tc.wantBundle)
			}
			for _, s := range sigs {
				if !errors.Is(s.Err, ErrInvalidArtifact) || !strings.Contains(s.Err.Error(), "not found") {
					t.Fatalf("%s: Err %v, want not found", s.Where, s.Err)
				}
			}
		})
	}
}

// TestSignaturesBrokenSourceBesideGoodOne: whatever an attacker pushes into
// one source, the valid signatures of another still come back; and a source
// the registry fails on is an error returned beside them.
func TestSignaturesBrokenSourceBesideGoodOne(t *testing.T) {
	junk := sigManifest(MaxSignatures+1, func(i int) v1.Descriptor {
		return payloadLayer([]byte(fmt.Sprint(i)), b64([]byte("sig")))
	})
	list := []byte(`{"schemaVersion":2,"mediaType":"` + string(types.DockerManifestList) + `","manifests":[]}`)
	manyEntries := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for i := range MaxSignatures + 1 {
		manyEntries.Manifests = append(manyEntries.Manifests, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 100,
			Digest: mustHash(sha256Digest([]byte(fmt.Sprint(i)))), ArtifactType: BundleMediaType})
	}
	manyJSON, _ := json.Marshal(manyEntries)
	for _, tc := range []struct {
		name    string
		digest  v1.Hash
		format  Format
		mw      middleware
		wantErr bool
	}{
		{"legacy signature, Docker manifest list under the referrers tag", appV1, FormatSimpleSigning,
			serve(tagPath(appV1), body(http.StatusOK, string(types.DockerManifestList), list)), false},
		{"legacy signature, 101 junk referrers", appV1, FormatSimpleSigning,
			serve(tagPath(appV1), body(http.StatusOK, string(types.OCIImageIndex), manyJSON)), false},
		{"bundle, .sig tag with 101 junk layers", appV2, FormatBundle, serve(sigPath(appV2), oci(junk)), false},
		{"bundle, .sig tag holding an index", appV2, FormatBundle,
			serve(sigPath(appV2), body(http.StatusOK, string(types.DockerManifestList), list)), false},
		{"bundle, .sig tag answering 500", appV2, FormatBundle, serve(sigPath(appV2), body(http.StatusInternalServerError, "", nil)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, false, tc.mw)
			loadVectors(t, r)
			sigs, err := r.signatures(t, attackRepo, tc.digest)
			var rerr *RegistryError
			if tc.wantErr != errors.As(err, &rerr) {
				t.Fatalf("error %v, want a registry error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			good := 0
			for _, s := range sigs {
				if s.Err == nil && s.Format == tc.format {
					good++
				}
			}
			if good == 0 {
				t.Fatalf("no valid %s signature among %d: %+v", tc.format, len(sigs), sigs)
			}
		})
	}
}

// --- keyless annotations of .sig layers ---

// The keyless annotations of a .sig layer are read strictly: malformed
// ones break that signature only, never the lookup, and never a good
// signature beside it.
func TestSignaturesKeylessAnnotations(t *testing.T) {
	vs := newVirtualSigstore(t)
	payload, err := NewPayload("127.0.0.1:5000/interop/app", appV1, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := vs.signSimple(t, payload)
	cert, chain := good.annotations[CertificateAnnotation], good.annotations[ChainAnnotation]
	block, _ := pem.Decode([]byte(cert))
	body := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(cert, "-----BEGIN CERTIFICATE-----"), "-----END CERTIFICATE-----\n"))
	// A character changed in the middle of the DER.
	tampered := strings.Replace(cert, body[100:104], "AAAA", 1)
	if tampered == cert {
		tampered = strings.Replace(cert, body[100:104], "BBBB", 1)
	}
	publicKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: block.Bytes}))
	withHeaders := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes}))
	rekor := good.annotations[RekorBundleAnnotation]
	var rb cosignRekorBundle
	if err := json.Unmarshal([]byte(rekor), &rb); err != nil {
		t.Fatal(err)
	}
	setB64 := b64(rb.SignedEntryTimestamp)

	for _, tc := range []struct {
		name   string
		change map[string]string // annotation -> value; "-" deletes
		want   string            // "" = valid
		check  func(t *testing.T, s Signature)
	}{
		{name: "cosign's layout", check: func(t *testing.T, s Signature) {
			if !bytes.Equal(s.Certificate, block.Bytes) || len(s.Chain) != 2 || string(s.RekorBundle) != rekor {
				t.Errorf("Signature = %s", describe(s))
			}
		}},
		{name: "empty chain annotation, as cosign writes without a chain", change: map[string]string{ChainAnnotation: ""}, check: func(t *testing.T, s Signature) {
			if !s.Keyless() || s.Chain != nil {
				t.Errorf("Signature = %s", describe(s))
			}
		}},
		{name: "key signature with a Rekor bundle", change: map[string]string{CertificateAnnotation: "-", ChainAnnotation: "-"}, check: func(t *testing.T, s Signature) {
			if s.Keyless() || string(s.RekorBundle) != rekor {
				t.Errorf("Signature = %s", describe(s))
			}
		}},
		{name: "tampered certificate", change: map[string]string{CertificateAnnotation: tampered}, want: CertificateAnnotation},
		{name: "certificate not PEM", change: map[string]string{CertificateAnnotation: body}, want: "text outside PEM blocks"},
		{name: "text before the certificate", change: map[string]string{CertificateAnnotation: "issued by me\n" + cert}, want: "text outside PEM blocks"},
		{name: "text after the certificate", change: map[string]string{CertificateAnnotation: cert + "trailer"}, want: "text outside PEM blocks"},
		{name: "two certificates", change: map[string]string{CertificateAnnotation: cert + cert}, want: "2 certificates, want 1"},
		{name: "certificate annotation holding a public key", change: map[string]string{CertificateAnnotation: publicKey}, want: `PEM block "PUBLIC KEY"`},
		{name: "certificate with PEM headers", change: map[string]string{CertificateAnnotation: withHeaders}, want: "headers"},
		{name: "unterminated PEM", change: map[string]string{CertificateAnnotation: strings.TrimSuffix(cert, "-----END CERTIFICATE-----\n")}, want: "malformed PEM block"},
		{name: "oversized certificate annotation", change: map[string]string{CertificateAnnotation: cert + strings.Repeat("\n", maxKeylessAnnotationSize)}, want: "limit"},
		{name: "chain with a non-CERTIFICATE block", change: map[string]string{ChainAnnotation: chain + "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"}, want: `PEM block "PRIVATE KEY"`},
		{name: "chain with a tampered certificate", change: map[string]string{ChainAnnotation: tampered + chain}, want: ChainAnnotation},
		{name: "chain too long", change: map[string]string{ChainAnnotation: strings.Repeat(cert, 11)}, want: "more than 10 certificates"},
		{name: "chain without a certificate", change: map[string]string{CertificateAnnotation: "-"}, want: "without a " + CertificateAnnotation},
		{name: "Rekor bundle not JSON", change: map[string]string{RekorBundleAnnotation: "{" + rekor}, want: "invalid JSON"},
		{name: "Rekor bundle with bad base64", change: map[string]string{RekorBundleAnnotation: strings.Replace(rekor, setB64, "%"+setB64[1:], 1)}, want: "SignedEntryTimestamp: invalid base64"},
		{name: "Rekor bundle missing its payload", change: map[string]string{RekorBundleAnnotation: `{"SignedEntryTimestamp":"` + setB64 + `"}`}, want: `missing key "Payload"`},
		{name: "empty Rekor bundle", change: map[string]string{RekorBundleAnnotation: ""}, want: RekorBundleAnnotation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			annotations := map[string]string{}
			for k, v := range good.annotations {
				annotations[k] = v
			}
			for k, v := range tc.change {
				if v == "-" {
					delete(annotations, k)
				} else {
					annotations[k] = v
				}
			}
			r := newTestRegistry(t, false)
			other := vs.signSimple(t, append(bytes.Clone(payload), ' '))
			putSig(t, r, attackRepo, appV1, keylessSig{payload: payload, annotations: annotations}, other)
			sigs, err := r.signatures(t, attackRepo, appV1)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			if len(sigs) != 2 || sigs[1].Err != nil || !sigs[1].Keyless() {
				t.Fatalf("got %s; want the layer under test and a good one", describe(sigs...))
			}
			s := sigs[0]
			if tc.want == "" {
				if s.Err != nil {
					t.Fatal(s.Err)
				}
				tc.check(t, s)
				return
			}
			if s.Err == nil || !strings.Contains(s.Err.Error(), tc.want) || !errors.Is(s.Err, ErrInvalidArtifact) {
				t.Fatalf("error %v; want ErrInvalidArtifact mentioning %q", s.Err, tc.want)
			}
			if s.Sig != nil || s.Certificate != nil || s.RekorBundle != nil {
				t.Errorf("a broken signature carries material: %s", describe(s))
			}
		})
	}
}

// FuzzParseKeylessAnnotations: never panics; what it accepts is DER that
// parses as certificates and a Rekor bundle that parses; what it refuses
// wraps ErrInvalidArtifact.
func FuzzParseKeylessAnnotations(f *testing.F) {
	cert, chain, rekor := publicGoodAnnotations(f)
	f.Add(cert, chain, rekor)
	f.Add(cert, "", "")
	f.Add("", "", `{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0,"logID":"`+strings.Repeat("0", 64)+`"}}`)
	f.Fuzz(func(t *testing.T, cert, chain, rekor string) {
		annotations := map[string]string{CertificateAnnotation: cert, ChainAnnotation: chain}
		if rekor != "" {
			annotations[RekorBundleAnnotation] = rekor
		}
		k, err := parseKeylessAnnotations(annotations)
		if err != nil {
			if !errors.Is(err, ErrInvalidArtifact) {
				t.Fatalf("error %v does not wrap ErrInvalidArtifact", err)
			}
			return
		}
		for _, der := range append([][]byte{k.certificate}, k.chain...) {
			if der == nil && k.certificate == nil {
				continue
			}
			if _, err := x509.ParseCertificate(der); err != nil {
				t.Fatalf("accepted a certificate that does not parse: %v", err)
			}
		}
		if len(k.chain) > 0 && k.certificate == nil {
			t.Fatal("a chain without a certificate")
		}
		if (k.rekorBundle != nil) != (rekor != "") {
			t.Fatalf("Rekor bundle %q kept as %q", rekor, k.rekorBundle)
		}
		if _, err := parseRekorBundle(k.rekorBundle); k.rekorBundle != nil && err != nil {
			t.Fatalf("accepted a Rekor bundle that does not parse: %v", err)
		}
	})
}

// publicGoodAnnotations returns the keyless annotations cosign would
// write for the public-good vector: its certificate, its chain and its
// Rekor entry as a Rekor bundle.
func publicGoodAnnotations(t testing.TB) (cert, chain, rekor string) {
	t.Helper()
	b, err := os.ReadFile("testdata/public-good/slsa-provenance-npm.sigstore.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		VerificationMaterial struct {
			X509CertificateChain struct {
				Certificates []struct{ RawBytes []byte } `json:"certificates"`
			} `json:"x509CertificateChain"`
			TlogEntries []struct {
				LogIndex int64 `json:"logIndex,string"`
				LogID    struct {
					KeyID []byte `json:"keyId"`
				} `json:"logId"`
				IntegratedTime   int64 `json:"integratedTime,string"`
				InclusionPromise struct {
					SignedEntryTimestamp []byte `json:"signedEntryTimestamp"`
				} `json:"inclusionPromise"`
				CanonicalizedBody []byte `json:"canonicalizedBody"`
			} `json:"tlogEntries"`
		} `json:"verificationMaterial"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	certs := doc.VerificationMaterial.X509CertificateChain.Certificates
	for i, c := range certs {
		if i == 0 {
			cert = certPEM(c.RawBytes)
		} else {
			chain += certPEM(c.RawBytes)
		}
	}
	e := doc.VerificationMaterial.TlogEntries[0]
	var rb cosignRekorBundle
	rb.SignedEntryTimestamp = e.InclusionPromise.SignedEntryTimestamp
	rb.Payload.Body = e.CanonicalizedBody
	rb.Payload.IntegratedTime, rb.Payload.LogIndex = e.IntegratedTime, e.LogIndex
	rb.Payload.LogID = hex.EncodeToString(e.LogID.KeyID)
	r, err := json.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}
	return cert, chain, string(r)
}

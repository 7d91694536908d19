package sigstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeRepo is where the write tests push their image.
const writeRepo = "test/app"

// noRetry makes a failed push fail at once.
var noRetry = remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1})

// pushImage pushes a random image tagged v1 and latest, and returns its
// digest reference and descriptor.
func pushImage(t *testing.T, r *testRegistry) (name.Digest, v1.Descriptor) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"v1", "latest"} {
		ref, err := name.NewTag(r.host() + "/" + writeRepo + ":" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	desc := v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: mustHash(sha256Digest(raw))}
	d, err := name.NewDigest(r.host() + "/" + writeRepo + "@" + desc.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	return d, desc
}

// newKey generates an Ed25519 key pair.
func newKey(t *testing.T) PrivateKey {
	t.Helper()
	priv, _, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed returns a simple-signing payload for d and key's signature of it.
func signed(t *testing.T, d name.Digest, key PrivateKey) (payload, sig []byte) {
	t.Helper()
	payload, err := NewPayload(d.Context().String(), mustHash(d.DigestStr()), nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err = key.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	return payload, sig
}

func appendSignature(t *testing.T, d name.Digest, payload, sig []byte, opts ...remote.Option) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	added, err := AppendSignature(ctx, d, payload, sig, opts...)
	if err != nil {
		t.Fatalf("AppendSignature: %v", err)
	}
	return added
}

// rawLayers returns the layer descriptors of a manifest as raw JSON.
func rawLayers(t *testing.T, manifest []byte) []json.RawMessage {
	t.Helper()
	var m struct {
		Layers []json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	return m.Layers
}

// tagList returns the repository's tags.
func tagList(t *testing.T, r *testRegistry, repo string) []string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/"+repo+"/tags/list", nil)
	resp := r.do(t, req)
	defer resp.Body.Close()
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	slices.Sort(list.Tags)
	return list.Tags
}

func TestAppendSignatureTwoKeysKeepsBoth(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	h := mustHash(d.DigestStr())
	k1, k2 := newKey(t), newKey(t)
	p1, s1 := signed(t, d, k1)
	p2, s2 := signed(t, d, k2)

	if !appendSignature(t, d, p1, s1) {
		t.Fatal("first signature not added")
	}
	first := getManifest(t, r, writeRepo, SignatureTag(h))
	if !appendSignature(t, d, p2, s2) {
		t.Fatal("second signature not added")
	}
	second := getManifest(t, r, writeRepo, SignatureTag(h))

	var m v1.Manifest
	if err := json.Unmarshal(second, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s with config %s, want an OCI image manifest and config", m.MediaType, m.Config.MediaType)
	}
	if got := rawLayers(t, second); len(got) != 2 || string(got[0]) != string(rawLayers(t, first)[0]) {
		t.Errorf("second append changed or dropped the first layer:\n%s\n%s", first, second)
	}
	sigs, err := r.signatures(t, writeRepo, h)
	if err != nil {
		t.Fatal(err)
	}
	checkSignatures(t, sigs, h, []wantSig{
		{FormatSimpleSigning, sha256Digest(p1), k1.Public()},
		{FormatSimpleSigning, sha256Digest(p2), k2.Public()},
	})
}

func TestAppendSignatureSkipsExactDuplicates(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	h := mustHash(d.DigestStr())
	k := newKey(t)
	payload, sig := signed(t, d, k)
	otherPayload, err := NewPayload(d.Context().String(), h, map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	otherSig := slices.Clone(sig)
	otherSig[0] ^= 1

	if !appendSignature(t, d, payload, sig) {
		t.Fatal("first signature not added")
	}
	for _, tc := range []struct {
		name         string
		payload, sig []byte
		want         bool
	}{
		{"same payload and signature", payload, sig, false},
		{"same payload, other signature", payload, otherSig, true},
		{"other payload, same signature", otherPayload, sig, true},
		{"the second one again", payload, otherSig, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := getManifest(t, r, writeRepo, SignatureTag(h))
			if got := appendSignature(t, d, tc.payload, tc.sig); got != tc.want {
				t.Fatalf("added = %t, want %t", got, tc.want)
			}
			after := getManifest(t, r, writeRepo, SignatureTag(h))
			if changed := string(before) != string(after); changed != tc.want {
				t.Errorf("manifest changed = %t, want %t", changed, tc.want)
			}
		})
	}
	if n := len(rawLayers(t, getManifest(t, r, writeRepo, SignatureTag(h)))); n != 3 {
		t.Errorf("%d layers, want 3", n)
	}
}

func TestAppendSignatureLeavesTheImageAlone(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	h := mustHash(d.DigestStr())
	tags := tagList(t, r, writeRepo)
	manifests := map[string][]byte{}
	for _, ref := range append(slices.Clone(tags), h.String()) {
		manifests[ref] = getManifest(t, r, writeRepo, ref)
	}
	r.reset()

	payload, sig := signed(t, d, newKey(t))
	appendSignature(t, d, payload, sig)

	for _, req := range r.recorded() {
		if strings.HasPrefix(req, "PUT /v2/"+writeRepo+"/manifests/") && req != "PUT /v2/"+writeRepo+"/manifests/"+SignatureTag(h) {
			t.Errorf("wrote a manifest other than the .sig tag: %s", req)
		}
		if strings.HasPrefix(req, "DELETE") {
			t.Errorf("deleted: %s", req)
		}
	}
	want := append(slices.Clone(tags), SignatureTag(h))
	slices.Sort(want)
	if got := tagList(t, r, writeRepo); !slices.Equal(got, want) {
		t.Errorf("tags %v, want %v", got, want)
	}
	for ref, before := range manifests {
		if after := getManifest(t, r, writeRepo, ref); string(after) != string(before) {
			t.Errorf("manifest %s changed", ref)
		}
	}
}

func TestAppendSignatureKeepsCosignLayers(t *testing.T) {
	r := newTestRegistry(t, false)
	loadVectors(t, r)
	d, err := name.NewDigest(r.host() + "/interop/app@" + appV1.String())
	if err != nil {
		t.Fatal(err)
	}
	before := getManifest(t, r, "interop/app", SignatureTag(appV1))
	k := newKey(t)
	payload, sig := signed(t, d, k)
	if !appendSignature(t, d, payload, sig) {
		t.Fatal("not added")
	}
	after := getManifest(t, r, "interop/app", SignatureTag(appV1))
	old, now := rawLayers(t, before), rawLayers(t, after)
	if len(now) != len(old)+1 {
		t.Fatalf("%d layers after appending to %d", len(now), len(old))
	}
	for i := range old {
		if string(old[i]) != string(now[i]) {
			t.Errorf("layer %d changed:\n%s\n%s", i, old[i], now[i])
		}
	}
	sigs, err := r.signatures(t, "interop/app", appV1)
	if err != nil {
		t.Fatal(err)
	}
	checkSignatures(t, sigs, appV1, []wantSig{
		{FormatSimpleSigning, appV1ECDSAPayload, loadKey(t, "ecdsa.pub")},
		{FormatSimpleSigning, appV1Ed25519Payload, loadKey(t, "ed25519.pub")},
		{FormatSimpleSigning, sha256Digest(payload), k.Public()},
	})
}

// failManifestPuts answers 500 to manifest PUTs while fail is set.
func failManifestPuts(fail *atomic.Bool) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if fail.Load() && req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") {
				ociError(http.StatusInternalServerError, "UNKNOWN", "disk full")(w, req)
				return
			}
			inner.ServeHTTP(w, req)
		})
	}
}

func TestAppendSignatureFailedPushKeepsOldManifest(t *testing.T) {
	var fail atomic.Bool
	r := newTestRegistry(t, false, failManifestPuts(&fail))
	d, _ := pushImage(t, r)
	h := mustHash(d.DigestStr())
	payload, sig := signed(t, d, newKey(t))
	appendSignature(t, d, payload, sig)
	before := getManifest(t, r, writeRepo, SignatureTag(h))

	fail.Store(true)
	payload2, sig2 := signed(t, d, newKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if added, err := AppendSignature(ctx, d, payload2, sig2, noRetry); err == nil || added {
		t.Fatalf("added = %t, err = %v; want the push to fail", added, err)
	}
	if after := getManifest(t, r, writeRepo, SignatureTag(h)); string(after) != string(before) {
		t.Errorf("a failed push changed the .sig manifest:\n%s\n%s", before, after)
	}
}

func TestAppendSignatureRefusesBadSignatureTags(t *testing.T) {
	full := sigManifest(MaxSignatures, func(i int) v1.Descriptor {
		return payloadLayer([]byte{byte(i)}, b64([]byte{byte(i)}))
	})
	index, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
	for _, tc := range []struct {
		name         string
		raw          []byte
		mediaType    types.MediaType
		payload, sig []byte
		wantAdded    bool
		wantErr      string
	}{
		{"full .sig manifest", full, types.OCIManifestSchema1, []byte("new"), []byte("sig"), false, "MaxSignatures"},
		{"duplicate in a full .sig manifest", full, types.OCIManifestSchema1, []byte{7}, []byte{7}, false, ""},
		{"index at the .sig tag", index, types.OCIImageIndex, []byte("new"), []byte("sig"), false, "want an image manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, false)
			d, _ := pushImage(t, r)
			h := mustHash(d.DigestStr())
			putManifest(t, r, writeRepo, SignatureTag(h), tc.raw, string(tc.mediaType))
			r.reset()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			added, err := AppendSignature(ctx, d, tc.payload, tc.sig, noRetry)
			if added != tc.wantAdded || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("added = %t, err = %v; want %t, error containing %q", added, err, tc.wantAdded, tc.wantErr)
			}
			for _, req := range r.recorded() {
				if !strings.HasPrefix(req, "GET") && !strings.HasPrefix(req, "HEAD") {
					t.Errorf("wrote: %s", req)
				}
			}
		})
	}
}

func TestAppendSignatureRefusesBadArguments(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		payload, sig []byte
	}{
		{"empty payload", nil, []byte("sig")},
		{"oversize payload", make([]byte, MaxPayloadSize+1), []byte("sig")},
		{"empty signature", []byte("payload"), nil},
	} {
		if _, err := AppendSignature(ctx, d, tc.payload, tc.sig); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestWriteBundleThenSignatures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		referrers bool
	}{
		{"registry without referrers API: referrers tag", false},
		{"registry with referrers API", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers)
			d, subject := pushImage(t, r)
			h := subject.Digest
			imageBefore := getManifest(t, r, writeRepo, h.String())
			k := newKey(t)
			bundle, err := NewBundle(k, h, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range 2 { // the second write changes nothing
				if err := WriteBundle(ctx, d, subject, bundle); err != nil {
					t.Fatalf("WriteBundle: %v", err)
				}
			}

			sigs, err := r.signatures(t, writeRepo, h)
			if err != nil {
				t.Fatal(err)
			}
			checkSignatures(t, sigs, h, []wantSig{{FormatBundle, sha256Digest(bundle), k.Public()}})

			fallback := getManifest(t, r, writeRepo, ReferrersTag(h))
			if tc.referrers {
				if fallback != nil {
					t.Errorf("referrers tag written on a registry with the API: %s", fallback)
				}
			} else {
				var idx v1.IndexManifest
				if err := json.Unmarshal(fallback, &idx); err != nil {
					t.Fatalf("referrers tag: %v", err)
				}
				if len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != BundleMediaType {
					t.Errorf("referrers tag %s, want one bundle entry", fallback)
				}
			}
			want := []string{"latest", "v1"}
			if !tc.referrers {
				want = append(want, ReferrersTag(h))
				slices.Sort(want)
			}
			if got := tagList(t, r, writeRepo); !slices.Equal(got, want) {
				t.Errorf("tags %v, want %v", got, want)
			}
			if after := getManifest(t, r, writeRepo, h.String()); string(after) != string(imageBefore) {
				t.Error("the image manifest changed")
			}
		})
	}
}

// TestWriteBundleManifestMatchesCosign builds the manifest for the bundle
// cosign v3.1.2 wrote for interop/app:v2 and compares it with cosign's,
// less cosign's creation time and the artifactType it copies into the
// config descriptor.
func TestWriteBundleManifestMatchesCosign(t *testing.T) {
	want := readVector(t, "manifests", strings.Replace(appV2Referrer, ":", "-", 1))
	var cosign v1.Manifest
	if err := json.Unmarshal(want, &cosign); err != nil {
		t.Fatal(err)
	}
	bundle := readVector(t, "blobs", strings.Replace(appV2Bundle, ":", "-", 1))
	raw, err := bundleManifest(static.NewLayer([]byte("{}"), emptyMediaType), static.NewLayer(bundle, BundleMediaType), *cosign.Subject, CosignPredicateType)
	if err != nil {
		t.Fatal(err)
	}
	var got, wantMap map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wantMap); err != nil {
		t.Fatal(err)
	}
	delete(wantMap["annotations"].(map[string]any), "org.opencontainers.image.created")
	delete(wantMap["config"].(map[string]any), "artifactType")
	if !reflect.DeepEqual(got, wantMap) {
		t.Errorf("manifest\n%s\nwant (cosign's)\n%s", raw, want)
	}
}

func TestWriteBundleRefusesBadArguments(t *testing.T) {
	r := newTestRegistry(t, false)
	d, subject := pushImage(t, r)
	r.reset()
	other := subject
	other.Digest = appV1
	noType := subject
	noType.MediaType = ""
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		subject v1.Descriptor
		bundle  []byte
	}{
		{"subject of another digest", other, []byte("{}")},
		{"subject without media type", noType, []byte("{}")},
		{"empty bundle", subject, nil},
		{"oversize bundle", subject, make([]byte, MaxPayloadSize+1)},
	} {
		if err := WriteBundle(ctx, d, tc.subject, tc.bundle); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if got := r.recorded(); slices.ContainsFunc(got, func(s string) bool { return !strings.HasPrefix(s, "GET") && !strings.HasPrefix(s, "HEAD") }) {
		t.Errorf("refused arguments still wrote: %v", got)
	}
}

// revertTag replays the manifest old at the same path right after each of
// the next n manifest PUTs whose path match accepts: a concurrent writer that
// read the tag before the push and wrote after it.
func revertTag(match func(path string) bool, old *atomic.Pointer[[]byte], n *atomic.Int32) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method != http.MethodPut || !strings.Contains(req.URL.Path, "/manifests/") || !match(req.URL.Path) {
				inner.ServeHTTP(w, req)
				return
			}
			inner.ServeHTTP(w, req)
			if n.Add(-1) < 0 {
				return
			}
			raw := *old.Load()
			var m struct {
				MediaType string `json:"mediaType"`
			}
			if err := json.Unmarshal(raw, &m); err != nil {
				panic(err)
			}
			replay := httptest.NewRequest(http.MethodPut, req.URL.Path, bytes.NewReader(raw))
			replay.Header.Set("Content-Type", m.MediaType)
			inner.ServeHTTP(httptest.NewRecorder(), replay)
		})
	}
}

// isSigTag matches manifest paths of .sig tags.
func isSigTag(path string) bool { return strings.HasSuffix(path, ".sig") }

// isReferrersTag matches manifest paths of referrers tags ("sha256-<hex>").
func isReferrersTag(path string) bool {
	_, ref, _ := strings.Cut(path, "/manifests/")
	return strings.HasPrefix(ref, "sha256-") && !strings.HasSuffix(ref, ".sig")
}

// countPuts counts manifest PUTs whose path match accepts.
func countPuts(match func(path string) bool, n *atomic.Int32) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") && match(req.URL.Path) {
				n.Add(1)
			}
			inner.ServeHTTP(w, req)
		})
	}
}

// verifiedBy returns how many of keys verify one of sigs each.
func verifiedBy(sigs []Signature, keys []PrivateKey) int {
	n := 0
	for _, k := range keys {
		for _, s := range sigs {
			if s.Err == nil && k.Public().Verify(s.Signed, s.Sig) == nil {
				n++
				break
			}
		}
	}
	return n
}

// concurrently runs write once per key, all at once, and fails the test
// for every error.
func concurrently(t *testing.T, keys []PrivateKey, write func(ctx context.Context, k PrivateKey) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, len(keys))
	for _, k := range keys {
		go func() { errs <- write(ctx, k) }()
	}
	for range keys {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func newKeys(t *testing.T, n int) []PrivateKey {
	keys := make([]PrivateKey, n)
	for i := range keys {
		keys[i] = newKey(t)
	}
	return keys
}

func TestAppendSignatureConcurrentSignersAllKept(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	keys := newKeys(t, 16)
	concurrently(t, keys, func(ctx context.Context, k PrivateKey) error {
		payload, err := NewPayload(d.Context().String(), mustHash(d.DigestStr()), nil)
		if err != nil {
			return err
		}
		sig, err := k.Sign(payload)
		if err != nil {
			return err
		}
		added, err := AppendSignature(ctx, d, payload, sig)
		if err == nil && !added {
			err = errors.New("added = false for a new signature")
		}
		return err
	})
	sigs, err := r.signatures(t, writeRepo, mustHash(d.DigestStr()))
	if err != nil {
		t.Fatal(err)
	}
	if n := verifiedBy(sigs, keys); n != len(keys) || len(sigs) != len(keys) {
		t.Errorf("%d signatures stored, %d of %d keys verify one; want all kept", len(sigs), n, len(keys))
	}
}

func TestAppendSignatureReaddsWhatAConcurrentWriterDropped(t *testing.T) {
	var old atomic.Pointer[[]byte]
	var reverts, puts atomic.Int32
	r := newTestRegistry(t, false, countPuts(isSigTag, &puts), revertTag(isSigTag, &old, &reverts))
	d, _ := pushImage(t, r)
	h := mustHash(d.DigestStr())
	k1, k2 := newKey(t), newKey(t)
	p1, s1 := signed(t, d, k1)
	appendSignature(t, d, p1, s1)
	before := getManifest(t, r, writeRepo, SignatureTag(h))
	old.Store(&before)

	reverts.Store(1)
	puts.Store(0)
	p2, s2 := signed(t, d, k2)
	if !appendSignature(t, d, p2, s2) {
		t.Fatal("added = false")
	}
	if n := puts.Load(); n != 2 {
		t.Errorf("%d pushes of the .sig manifest, want 2 (the dropped one and the one that kept it)", n)
	}
	sigs, err := r.signatures(t, writeRepo, h)
	if err != nil {
		t.Fatal(err)
	}
	if n := verifiedBy(sigs, []PrivateKey{k1, k2}); n != 2 || len(sigs) != 2 {
		t.Errorf("%d signatures, %d keys verify; want both kept", len(sigs), n)
	}
}

func TestAppendSignatureGivesUpWhenAlwaysDropped(t *testing.T) {
	var old atomic.Pointer[[]byte]
	var reverts, puts atomic.Int32
	r := newTestRegistry(t, false, countPuts(isSigTag, &puts), revertTag(isSigTag, &old, &reverts))
	d, _ := pushImage(t, r)
	p1, s1 := signed(t, d, newKey(t))
	appendSignature(t, d, p1, s1)
	before := getManifest(t, r, writeRepo, SignatureTag(mustHash(d.DigestStr())))
	old.Store(&before)

	reverts.Store(1 << 20)
	puts.Store(0)
	p2, s2 := signed(t, d, newKey(t))
	added, err := AppendSignature(context.Background(), d, p2, s2)
	if added || !errors.Is(err, ErrNotKept) {
		t.Fatalf("added = %t, err = %v; want ErrNotKept", added, err)
	}
	if n := puts.Load(); n != keepAttempts {
		t.Errorf("%d pushes, want keepAttempts (%d)", n, keepAttempts)
	}
}

func TestWriteBundleConcurrentSignersAllKept(t *testing.T) {
	for _, tc := range []struct {
		name      string
		referrers bool
	}{
		{"registry without referrers API: referrers tag", false},
		{"registry with referrers API", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, tc.referrers)
			d, subject := pushImage(t, r)
			keys := newKeys(t, 16)
			concurrently(t, keys, func(ctx context.Context, k PrivateKey) error {
				b, err := NewBundle(k, subject.Digest, nil)
				if err != nil {
					return err
				}
				return WriteBundle(ctx, d, subject, b)
			})
			sigs, err := r.signatures(t, writeRepo, subject.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if n := verifiedBy(sigs, keys); n != len(keys) || len(sigs) != len(keys) {
				t.Errorf("%d bundles found, %d of %d keys verify one; want all kept", len(sigs), n, len(keys))
			}
		})
	}
}

func TestWriteBundleReaddsWhatAConcurrentWriterDropped(t *testing.T) {
	var old atomic.Pointer[[]byte]
	var reverts, puts atomic.Int32
	r := newTestRegistry(t, false, countPuts(isReferrersTag, &puts), revertTag(isReferrersTag, &old, &reverts))
	d, subject := pushImage(t, r)
	k1, k2 := newKey(t), newKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, k := range []PrivateKey{k1, k2} {
		if i == 1 {
			before := getManifest(t, r, writeRepo, strings.Replace(subject.Digest.String(), ":", "-", 1))
			old.Store(&before)
			reverts.Store(1)
			puts.Store(0)
		}
		b, err := NewBundle(k, subject.Digest, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteBundle(ctx, d, subject, b); err != nil {
			t.Fatal(err)
		}
	}
	if n := puts.Load(); n != 2 {
		t.Errorf("%d pushes of the referrers tag, want 2 (the dropped one and the one that kept it)", n)
	}
	sigs, err := r.signatures(t, writeRepo, subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if n := verifiedBy(sigs, []PrivateKey{k1, k2}); n != 2 || len(sigs) != 2 {
		t.Errorf("%d bundles, %d keys verify; want both kept", len(sigs), n)
	}
}

// failOnce answers the next n manifest PUTs whose path match accepts with
// 400 MANIFEST_BLOB_UNKNOWN, as CNCF distribution does while a concurrent
// upload of the same blob commits.
func failOnce(match func(path string) bool, n *atomic.Int32) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") && match(req.URL.Path) && n.Add(-1) >= 0 {
				ociError(http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")(w, req)
				return
			}
			inner.ServeHTTP(w, req)
		})
	}
}

func TestAppendSignatureRetriesDistributionsUploadRace(t *testing.T) {
	var fails atomic.Int32
	r := newTestRegistry(t, false, failOnce(isSigTag, &fails))
	d, _ := pushImage(t, r)
	fails.Store(2)
	k := newKey(t)
	p, s := signed(t, d, k)
	if !appendSignature(t, d, p, s) {
		t.Fatal("added = false")
	}
	sigs, err := r.signatures(t, writeRepo, mustHash(d.DigestStr()))
	if err != nil {
		t.Fatal(err)
	}
	if n := verifiedBy(sigs, []PrivateKey{k}); n != 1 {
		t.Errorf("the signature is not there after two MANIFEST_BLOB_UNKNOWN answers")
	}
}

// moveTagBeforeManifestPut replays the manifest other at the .sig tag just
// before the next n blob existence checks: another writer that pushed
// between this writer's read and its manifest push.
func moveTagBeforeManifestPut(sigPath *atomic.Pointer[string], other *atomic.Pointer[[]byte], n *atomic.Int32) middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodHead && strings.Contains(req.URL.Path, "/blobs/") && n.Add(-1) >= 0 {
				replay := httptest.NewRequest(http.MethodPut, *sigPath.Load(), bytes.NewReader(*other.Load()))
				replay.Header.Set("Content-Type", string(types.OCIManifestSchema1))
				inner.ServeHTTP(httptest.NewRecorder(), replay)
			}
			inner.ServeHTTP(w, req)
		})
	}
}

func TestAppendSignatureRebasesOnATagThatMoved(t *testing.T) {
	var sigPath atomic.Pointer[string]
	var other atomic.Pointer[[]byte]
	var moves, puts atomic.Int32
	r := newTestRegistry(t, false, countPuts(isSigTag, &puts), moveTagBeforeManifestPut(&sigPath, &other, &moves))
	d, _ := pushImage(t, r)
	h := mustHash(d.DigestStr())
	path := "/v2/" + writeRepo + "/manifests/" + SignatureTag(h)
	sigPath.Store(&path)
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)

	// The manifest another writer pushes: k1's signature and k3's.
	p1, s1 := signed(t, d, k1)
	appendSignature(t, d, p1, s1)
	onlyK1 := getManifest(t, r, writeRepo, SignatureTag(h))
	p3, s3 := signed(t, d, k3)
	appendSignature(t, d, p3, s3)
	both := getManifest(t, r, writeRepo, SignatureTag(h))
	other.Store(&both)
	// Back to k1's alone, then k2 appends while the other writer pushes.
	putManifest(t, r, writeRepo, SignatureTag(h), onlyK1, string(types.OCIManifestSchema1))

	moves.Store(1)
	puts.Store(0)
	p2, s2 := signed(t, d, k2)
	if !appendSignature(t, d, p2, s2) {
		t.Fatal("added = false")
	}
	if n := puts.Load(); n != 1 {
		t.Errorf("%d manifest pushes, want 1: the append is based again on the moved tag before it pushes", n)
	}
	sigs, err := r.signatures(t, writeRepo, h)
	if err != nil {
		t.Fatal(err)
	}
	if n := verifiedBy(sigs, []PrivateKey{k1, k2, k3}); n != 3 || len(sigs) != 3 {
		t.Errorf("%d signatures, %d of 3 keys verify; want the other writer's kept too", len(sigs), n)
	}
}

package sigstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

func attPath(d v1.Hash) string { return "/v2/" + attackRepo + "/manifests/" + AttestationTag(d) }

// keyEnvelope is a DSSE envelope over statement signed with key, as cosign
// writes it for "cosign attest --key".
func keyEnvelope(t testing.TB, key PrivateKey, statement []byte) []byte {
	t.Helper()
	sig, err := key.Sign(PAE(InTotoPayloadType, statement))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"payloadType":"` + InTotoPayloadType + `","payload":"` + b64(statement) +
		`","signatures":[{"keyid":"","sig":"` + b64(sig) + `"}]}`)
}

// envelopeLayer describes envelope as a .att layer with cosign's
// annotations for a key signature.
func envelopeLayer(envelope []byte) v1.Descriptor {
	return v1.Descriptor{
		MediaType:   AttestationLayerMediaType,
		Size:        int64(len(envelope)),
		Digest:      mustHash(sha256Digest(envelope)),
		Annotations: map[string]string{PredicateTypeAnnotation: slsaV1, SignatureAnnotation: ""},
	}
}

func TestAttestationsReadsKeyAttestations(t *testing.T) {
	r := newTestRegistry(t, false)
	key := newKey(t)
	statement := statementFor(appV1, slsaV1)
	env := keyEnvelope(t, key, statement)
	l := envelopeLayer(env)
	pushBlob(t, r, attackRepo, env)
	putManifest(t, r, attackRepo, AttestationTag(appV1), layerManifest(t, r, attackRepo, []v1.Descriptor{l}), string(types.OCIManifestSchema1))

	s := only(t)(r.attestations(t, attackRepo, appV1))
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if s.Keyless() || s.RekorBundle != nil || !bytes.Equal(s.Payload, statement) || !bytes.Equal(s.Bundle, env) {
		t.Fatalf("Signature = %s", describe(s))
	}
	if err := key.Public().Verify(s.Signed, s.Sig); err != nil {
		t.Fatalf("the key does not verify Sig over Signed: %v", err)
	}
	if _, err := s.Entity(); err == nil {
		t.Error("a key attestation has a keyless entity")
	}
	// The predicateType annotation is a hint: the statement's counts.
	if sigs, err := r.attestations(t, attackRepo, appV2); err != nil || len(sigs) != 0 {
		t.Errorf("another digest: %s, %v; want no attestation", describe(sigs...), err)
	}
}

// Junk beside a good attestation is a broken signature each; the good one
// still counts.
func TestAttestationsKeepsGoodBesideBad(t *testing.T) {
	vs := newVirtualSigstore(t)
	good := vs.attest(t, statementFor(appV1, slsaV1))
	key := newKey(t)
	statement := statementFor(appV1, slsaV1)
	keySigned := keyEnvelope(t, key, statement)
	oversized := append(bytes.Clone(keySigned), ' ')

	twoSigs := bytes.Replace(good.envelope, []byte(`"signatures":[`), []byte(`"signatures":[{"keyid":"","sig":"MEUC"},`), 1)
	unknownKey := bytes.Replace(good.envelope, []byte(`{"payloadType"`), []byte(`{"payloadSha256":"","payloadType"`), 1)
	duplicate := bytes.Replace(good.envelope, []byte(`{"payloadType"`), []byte(`{"payload":"e30=","payloadType"`), 1)

	type layer struct {
		blob        []byte
		desc        func(v1.Descriptor) v1.Descriptor
		annotations map[string]string
		want        string // "" = valid
	}
	same := func(d v1.Descriptor) v1.Descriptor { return d }
	layers := []layer{
		{blob: good.envelope, desc: same, annotations: good.annotations},
		{blob: []byte("not a DSSE layer"), desc: func(d v1.Descriptor) v1.Descriptor {
			d.MediaType = SimpleSigningMediaType
			return d
		}, want: "layer media type"},
		{blob: twoSigs, desc: same, want: "2 signatures"},
		{blob: unknownKey, desc: same, want: `unknown key "payloadSha256"`},
		{blob: duplicate, desc: same, want: `duplicate key "payload"`},
		{blob: []byte(`{"payloadType":`), desc: same, want: "invalid JSON"},
		{blob: oversized, desc: func(d v1.Descriptor) v1.Descriptor {
			d.Size = MaxAttestationSize + 1
			return d
		}, want: "exceeds the 1048576 byte limit"},
		{blob: []byte("swapped"), desc: func(d v1.Descriptor) v1.Descriptor {
			d.Digest = mustHash(sha256Digest([]byte("other")))
			return d
		}, want: "not found"},
		{blob: good.envelope, desc: same, annotations: map[string]string{CertificateAnnotation: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, want: "not an X.509 certificate"},
		{blob: good.envelope, desc: same, annotations: map[string]string{CertificateAnnotation: good.annotations[CertificateAnnotation], RekorBundleAnnotation: "{"}, want: RekorBundleAnnotation},
		{blob: keySigned, desc: same},
	}
	r := newTestRegistry(t, false)
	var descs []v1.Descriptor
	for _, l := range layers {
		pushBlob(t, r, attackRepo, l.blob)
		d := l.desc(envelopeLayer(l.blob))
		if l.annotations != nil {
			d.Annotations = l.annotations
		}
		descs = append(descs, d)
	}
	putManifest(t, r, attackRepo, AttestationTag(appV1), layerManifest(t, r, attackRepo, descs), string(types.OCIManifestSchema1))
	r.reset()

	sigs, err := r.attestations(t, attackRepo, appV1)
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != len(layers) {
		t.Fatalf("got %d signatures for %d layers", len(sigs), len(layers))
	}
	for i, l := range layers {
		s := sigs[i]
		if s.Format != FormatAttestation || s.Where != fmt.Sprintf("%s layer %d", AttestationTag(appV1), i) {
			t.Errorf("layer %d: %s", i, describe(s))
		}
		if l.want == "" {
			if s.Err != nil {
				t.Errorf("layer %d: %v", i, s.Err)
			}
			continue
		}
		if s.Err == nil || !strings.Contains(s.Err.Error(), l.want) || !errors.Is(s.Err, ErrInvalidArtifact) {
			t.Errorf("layer %d: error %v, want ErrInvalidArtifact mentioning %q", i, s.Err, l.want)
		}
		if s.Sig != nil || s.Certificate != nil {
			t.Errorf("layer %d: a broken attestation carries material", i)
		}
	}
	if !sigs[0].Keyless() {
		t.Error("the keyless attestation lost its certificate")
	}
	if _, err := vs.verify(t, sigs[0], verify.WithoutArtifactUnsafe()); err != nil {
		t.Errorf("the keyless attestation beside junk does not verify: %v", err)
	}
	for _, req := range r.recorded() {
		if strings.HasSuffix(req, "/blobs/"+sha256Digest(oversized)) {
			t.Errorf("fetched the blob of the oversized layer: %s", req)
		}
	}
}

// An envelope up to MaxAttestationSize is read: real provenance passes
// the 64 KiB of a simple-signing payload.
func TestAttestationsReadsLargeEnvelopes(t *testing.T) {
	key := newKey(t)
	statement := []byte(strings.Replace(string(statementFor(appV1, slsaV1)), `"buildType"`, `"pad":"`+strings.Repeat("x", 600<<10)+`","buildType"`, 1))
	env := keyEnvelope(t, key, statement)
	env = append(env, bytes.Repeat([]byte(" "), MaxAttestationSize-len(env))...)
	r := newTestRegistry(t, false)
	pushBlob(t, r, attackRepo, env)
	putManifest(t, r, attackRepo, AttestationTag(appV1), layerManifest(t, r, attackRepo, []v1.Descriptor{envelopeLayer(env)}), string(types.OCIManifestSchema1))
	s := only(t)(r.attestations(t, attackRepo, appV1))
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if err := key.Public().Verify(s.Signed, s.Sig); err != nil {
		t.Fatal(err)
	}
}

func TestAttestationsSources(t *testing.T) {
	target := mustHash(sha256Digest([]byte("attestation target")))
	index, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
	many := sigManifest(MaxSignatures+1, func(i int) v1.Descriptor { return envelopeLayer([]byte(fmt.Sprint(i))) })
	for _, tc := range []struct {
		name    string
		mw      middleware
		sigs    int    // signatures returned
		want    string // in the one broken signature's error
		fetched int    // most blob requests
	}{
		{name: "no .att tag"},
		{name: ".att tag holding an index", mw: serve(attPath(target), body(http.StatusOK, string(types.OCIImageIndex), index)), sigs: 1, want: "want an image manifest"},
		{name: "malformed .att manifest", mw: serve(attPath(target), oci([]byte(`{"schemaVersion":2,"layers":[`))), sigs: 1, want: "signature manifest"},
		{name: ".att manifest over MaxManifestSize", mw: serve(attPath(target), oci(bytes.Repeat([]byte(" "), MaxManifestSize+1))), sigs: 1, want: "limit"},
		{name: "more than MaxSignatures layers", mw: serve(attPath(target), oci(many)), sigs: MaxSignatures + 1, want: "past the limit of 100", fetched: MaxSignatures},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mws []middleware
			if tc.mw != nil {
				mws = append(mws, tc.mw)
			}
			r := newTestRegistry(t, false, mws...)
			sigs, err := r.attestations(t, attackRepo, target)
			if err != nil {
				t.Fatalf("Attestations: %v", err)
			}
			if len(sigs) != tc.sigs {
				t.Fatalf("got %d signatures, want %d", len(sigs), tc.sigs)
			}
			if tc.want != "" {
				var found bool
				for _, s := range sigs {
					found = found || (s.Err != nil && strings.Contains(s.Err.Error(), tc.want) && errors.Is(s.Err, ErrInvalidArtifact))
				}
				if !found {
					t.Errorf("no broken signature mentions %q: %s", tc.want, describe(sigs[len(sigs)-1]))
				}
			}
			n := 0
			for _, req := range r.recorded() {
				if strings.Contains(req, "/blobs/") {
					n++
				}
			}
			if n > tc.fetched {
				t.Errorf("fetched %d blobs, at most %d may be read", n, tc.fetched)
			}
		})
	}
}

func TestAttestationsReportsRegistryFailures(t *testing.T) {
	key := newKey(t)
	env := keyEnvelope(t, key, statementFor(appV1, slsaV1))
	for _, tc := range []struct {
		name     string
		mw       func(blob string) middleware
		status   int
		timeout  bool
		deadline time.Duration
	}{
		{name: "500 on the .att manifest", mw: func(string) middleware { return serve(attPath(appV1), ociError(500, "UNKNOWN", "boom")) }, status: 500},
		{name: "401 on the .att manifest", mw: func(string) middleware { return serve(attPath(appV1), ociError(401, "UNAUTHORIZED", "who")) }, status: 401},
		{name: "502 on an envelope blob", mw: func(b string) middleware { return serve(blobPath(b), body(502, "text/html", []byte("<html>"))) }, status: 502},
		{name: "truncated envelope blob", mw: func(b string) middleware { return serve(blobPath(b), truncated(len(env))) }, status: 200},
		{name: "timeout on the .att manifest", mw: func(string) middleware { return serve(attPath(appV1), hang) }, timeout: true, deadline: 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, false, tc.mw(sha256Digest(env)))
			pushBlob(t, r, attackRepo, env)
			putManifest(t, r, attackRepo, AttestationTag(appV1), layerManifest(t, r, attackRepo, []v1.Descriptor{envelopeLayer(env)}), string(types.OCIManifestSchema1))
			ctx, cancel := context.WithTimeout(context.Background(), cmpOrDuration(tc.deadline, 10*time.Second))
			defer cancel()
			sigs, err := NewFetcher(r.URL, nil).Attestations(ctx, attackRepo, appV1)
			var rerr *RegistryError
			if !errors.As(err, &rerr) {
				t.Fatalf("got %s, error %v; want *RegistryError", describe(sigs...), err)
			}
			if errors.Is(err, ErrInvalidArtifact) || rerr.StatusCode != tc.status || rerr.Timeout() != tc.timeout {
				t.Errorf("error %v: status %d, timeout %v; want %d, %v", err, rerr.StatusCode, rerr.Timeout(), tc.status, tc.timeout)
			}
		})
	}
}

func TestAttestationsRefusesBadArguments(t *testing.T) {
	r := newTestRegistry(t, false)
	for name, tc := range map[string]struct {
		repo   string
		digest v1.Hash
	}{
		"uppercase hex":  {"interop/app", v1.Hash{Algorithm: "sha256", Hex: strings.ToUpper(appV1.Hex)}},
		"path traversal": {"interop/../app", appV1},
	} {
		if _, err := r.attestations(t, tc.repo, tc.digest); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := r.recorded(); len(got) != 0 {
		t.Errorf("bad arguments reached the registry: %v", got)
	}
}

// blobFarm serves blobs by digest from memory for the repository, and
// counts the bytes it sends.
type blobFarm struct {
	blobs map[string][]byte
	sent  atomic.Int64
}

func (f *blobFarm) middleware(inner http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if d, ok := strings.CutPrefix(req.URL.Path, "/v2/"+attackRepo+"/blobs/"); ok && req.Method == http.MethodGet {
			if b, ok := f.blobs[d]; ok {
				f.sent.Add(int64(len(b)))
				w.Write(b)
				return
			}
		}
		inner.ServeHTTP(w, req)
	})
}

// paddedEnvelopes returns n distinct valid envelopes of size bytes each.
func paddedEnvelopes(t *testing.T, n, size int) [][]byte {
	key := newKey(t)
	var out [][]byte
	for i := range n {
		env := keyEnvelope(t, key, statementFor(mustHash(sha256Digest([]byte(fmt.Sprint(i)))), slsaV1))
		out = append(out, append(env, bytes.Repeat([]byte(" "), size-len(env))...))
	}
	return out
}

// The lookup's byte budget holds however many 1 MiB envelopes or bundles
// the layers and referrers name: MaxLookupBytes is read at most, the
// rest is reported, not read.
func TestLookupByteBudgetBoundsLargeArtifacts(t *testing.T) {
	const n = 40 // 40 MiB named, 32 MiB may be read
	t.Run(".att envelopes", func(t *testing.T) {
		farm := &blobFarm{blobs: map[string][]byte{}}
		var layers []v1.Descriptor
		for _, env := range paddedEnvelopes(t, n, MaxAttestationSize) {
			farm.blobs[sha256Digest(env)] = env
			layers = append(layers, envelopeLayer(env))
		}
		r := newTestRegistry(t, false, farm.middleware)
		putManifest(t, r, attackRepo, AttestationTag(appV1), layerManifest(t, r, attackRepo, layers), string(types.OCIManifestSchema1))
		sigs, err := r.attestations(t, attackRepo, appV1)
		if err != nil {
			t.Fatal(err)
		}
		checkBudget(t, sigs, n, farm.sent.Load())
	})
	t.Run("bundle referrers", func(t *testing.T) {
		farm := &blobFarm{blobs: map[string][]byte{}}
		r := newTestRegistry(t, false, farm.middleware)
		key := newKey(t)
		var entries []v1.Descriptor
		for i := range n {
			b, err := NewBundle(key, appV1, map[string]string{"i": fmt.Sprint(i)})
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, bytes.Repeat([]byte(" "), MaxAttestationSize-len(b))...)
			farm.blobs[sha256Digest(b)] = b
			empty := []byte("{}")
			m, _ := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: BundleMediaType,
				Config:  v1.Descriptor{MediaType: emptyMediaType, Size: 2, Digest: mustHash(sha256Digest(empty))},
				Layers:  []v1.Descriptor{{MediaType: BundleMediaType, Size: int64(len(b)), Digest: mustHash(sha256Digest(b))}},
				Subject: &v1.Descriptor{MediaType: types.DockerManifestSchema2, Size: 423, Digest: appV1}})
			putManifest(t, r, attackRepo, sha256Digest(m), m, string(types.OCIManifestSchema1))
			entries = append(entries, v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(m)), Digest: mustHash(sha256Digest(m)), ArtifactType: BundleMediaType})
		}
		idx, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: entries})
		putManifest(t, r, attackRepo, ReferrersTag(appV1), idx, string(types.OCIImageIndex))
		r.reset()
		sigs, err := r.signatures(t, attackRepo, appV1)
		if err != nil {
			t.Fatal(err)
		}
		checkBudget(t, sigs, n, farm.sent.Load())
	})
}

// checkBudget checks that of n artifacts of MaxAttestationSize bytes
// each, those read are valid, at most MaxLookupBytes were sent, and the
// rest are reported as not read.
func checkBudget(t *testing.T, sigs []Signature, n int, sent int64) {
	t.Helper()
	if sent > MaxLookupBytes {
		t.Errorf("the registry sent %d bytes of blobs, the lookup's limit is %d", sent, MaxLookupBytes)
	}
	read, notRead := 0, 0
	for _, s := range sigs {
		switch {
		case s.Err == nil:
			read++
		case strings.Contains(s.Err.Error(), "limit of 33554432 bytes") && errors.Is(s.Err, ErrInvalidArtifact):
			notRead++
		default:
			t.Errorf("unexpected %s", describe(s))
		}
	}
	if read < MaxLookupBytes/MaxAttestationSize-2 || int64(read)*MaxAttestationSize > MaxLookupBytes {
		t.Errorf("%d of %d artifacts of %d bytes read within %d bytes", read, n, MaxAttestationSize, MaxLookupBytes)
	}
	if notRead == 0 {
		t.Error("nothing reported as not read")
	}
}

// FuzzSignatureFromEnvelope: never panics; an accepted envelope binds
// Signed to PAE(PayloadType, Payload) and has one non-empty signature; a
// refused one wraps ErrInvalidArtifact and carries nothing to verify.
func FuzzSignatureFromEnvelope(f *testing.F) {
	priv, _, err := GenerateKeyPair(nil)
	if err != nil {
		f.Fatal(err)
	}
	key, err := ParsePrivateKey(priv, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(keyEnvelope(f, key, statementFor(appV1, slsaV1)))
	f.Add([]byte(`{"payloadType":"t","payload":"","signatures":[{"sig":"AA"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := SignatureFromEnvelope(raw, "fuzz")
		if s.Format != FormatAttestation || !bytes.Equal(s.Bundle, raw) || s.Where != "fuzz" {
			t.Fatalf("Signature = %s", describe(s))
		}
		if s.Err != nil {
			if !errors.Is(s.Err, ErrInvalidArtifact) || s.Signed != nil || s.Sig != nil {
				t.Fatalf("refused envelope: %v, %s", s.Err, describe(s))
			}
			return
		}
		if !bytes.Equal(s.Signed, PAE(s.PayloadType, s.Payload)) || len(s.Sig) == 0 || s.PayloadType == "" {
			t.Fatalf("accepted envelope: %s", describe(s))
		}
		if _, err := s.Entity(); err == nil {
			t.Fatal("an envelope without a certificate has a keyless entity")
		}
	})
}

// The lookups in flight share one pool of bytes: past it a lookup's reads
// fail as a registry overload (never a refusal, never cached), except for
// the first lookupFloorBytes of each lookup, so that small signature sets
// are read whatever other lookups hold; and a lookup gives its bytes back
// when it ends.
func TestLookupPoolBoundsConcurrentLookups(t *testing.T) {
	saved := lookupPool
	t.Cleanup(func() { lookupPool = saved })
	lookupPool = &bytePool{limit: 4 << 20}

	farm := &blobFarm{blobs: map[string][]byte{}}
	var layers []v1.Descriptor
	for _, env := range paddedEnvelopes(t, 3, MaxAttestationSize) {
		farm.blobs[sha256Digest(env)] = env
		layers = append(layers, envelopeLayer(env))
	}
	r := newTestRegistry(t, false, farm.middleware)
	putManifest(t, r, attackRepo, AttestationTag(appV1), layerManifest(t, r, attackRepo, layers), string(types.OCIManifestSchema1))
	small := paddedEnvelopes(t, 1, 2048)[0]
	farm.blobs[sha256Digest(small)] = small
	putManifest(t, r, attackRepo, AttestationTag(appV2), layerManifest(t, r, attackRepo, []v1.Descriptor{envelopeLayer(small)}), string(types.OCIManifestSchema1))

	// Other lookups hold all but 1 MiB of the pool.
	lookupPool.take(3<<20, true)
	_, err := r.attestations(t, attackRepo, appV1)
	var re *RegistryError
	if !errors.As(err, &re) || re.StatusCode != 503 || re.RetryAfter == "" || !errors.Is(err, ErrLookupsBusy) || errors.Is(err, ErrInvalidArtifact) {
		t.Fatalf("3 MiB with 1 MiB left in the pool: %v; want a 503 RegistryError with Retry-After", err)
	}
	if sigs, err := r.attestations(t, attackRepo, appV2); err != nil || len(sigs) != 1 || sigs[0].Err != nil {
		t.Fatalf("a 2 KiB attestation with the pool full: %v, %v", sigs, err)
	}
	lookupPool.give(3 << 20)
	if sigs, err := r.attestations(t, attackRepo, appV1); err != nil || len(sigs) != 3 {
		t.Fatalf("3 MiB with the pool free: %d attestations, %v", len(sigs), err)
	}
	if lookupPool.used != 0 {
		t.Errorf("%d bytes still held after the lookups ended", lookupPool.used)
	}
}

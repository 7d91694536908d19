package verifier

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// Manifest shapes for the signature-artifact rule. desc and doc build JSON
// the way registries serve it.

type testDesc map[string]any

func desc(mediaType string, content []byte, extra ...any) testDesc {
	sum := sha256.Sum256(content)
	d := testDesc{"mediaType": mediaType, "digest": "sha256:" + hex.EncodeToString(sum[:]), "size": len(content)}
	for i := 0; i+1 < len(extra); i += 2 {
		d[extra[i].(string)] = extra[i+1]
	}
	return d
}

func doc(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	fields["schemaVersion"] = 2
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
	dockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	tarLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// TestSignatureArtifacts: the verifier admits signature artifacts without
// signatures only when no client could be led from them to runnable
// content; everything else needs signatures like any image. Case 1 of the
// gate's findings is "index entry with urls and a platform".
func TestSignatureArtifacts(t *testing.T) {
	payload := []byte(`{"critical":{"type":"cosign container image signature"}}`)
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
	envelope := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"c2ln"}]}`)
	bigEnvelope := []byte(`{"payload":"` + strings.Repeat("A", sigstore.MaxPayloadSize+4) + `"}`)
	attLayer := func(b []byte) testDesc {
		return desc(sigstore.AttestationLayerMediaType, b, "annotations", map[string]string{"predicateType": "https://slsa.dev/provenance/v1"})
	}
	// Layers of 1 MiB, declared but never read: more of them than the
	// lookup budget allows.
	hugeLayers := func() []any {
		var ls []any
		for i := range sigstore.MaxLookupBytes/sigstore.MaxAttestationSize + 1 {
			d := attLayer(envelope)
			d["size"] = sigstore.MaxAttestationSize
			d["digest"] = "sha256:" + strings.Repeat(strconv.Itoa(i%10), 64)
			ls = append(ls, d)
		}
		return ls
	}
	tarball := []byte("\x1f\x8b\x08\x00 a gzipped tar, runnable")
	jsonTar := jsonTarLayer(t)
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	runnable := doc(t, map[string]any{"mediaType": ociManifest,
		"config": desc("application/vnd.oci.image.config.v1+json", config), "layers": []any{desc(tarLayer, tarball)}})
	sigLayer := func(extra ...any) testDesc {
		return desc(sigstore.SimpleSigningMediaType, payload, append([]any{"annotations", map[string]string{sigstore.SignatureAnnotation: "c2ln"}}, extra...)...)
	}
	sigManifest := func(layers ...any) []byte {
		return doc(t, map[string]any{"mediaType": ociManifest,
			"config": desc("application/vnd.oci.image.config.v1+json", config), "layers": layers})
	}
	entry := func(extra ...any) testDesc {
		return desc(ociManifest, runnable, append([]any{"artifactType", sigstore.SimpleSigningMediaType}, extra...)...)
	}
	index := func(mediaType string, entries ...any) []byte {
		if entries == nil {
			entries = []any{}
		}
		return doc(t, map[string]any{"mediaType": mediaType, "manifests": entries})
	}
	linux := map[string]string{"architecture": "amd64", "os": "linux"}
	evilURL := []string{"http://upstream.example/v2/prod/app/manifests/sha256:" + strings.Repeat("a", 64)}

	for _, tc := range []struct {
		name      string
		body      []byte
		mediaType string
		admit     bool
	}{
		{".sig manifest of simple-signing payloads", sigManifest(sigLayer(), sigLayer()), ociManifest, true},
		{"bundle referrer manifest", sigManifest(desc(sigstore.BundleMediaType, bundle)), ociManifest, true},
		{".att manifest of DSSE envelopes", sigManifest(attLayer(envelope), attLayer(envelope)), ociManifest, true},
		{".att envelope past 64 KiB", sigManifest(attLayer(bigEnvelope)), ociManifest, true},
		{".att layers past the lookup budget", sigManifest(hugeLayers()...), ociManifest, false},
		{"simple-signing layer past 64 KiB", sigManifest(desc(sigstore.SimpleSigningMediaType, bigEnvelope)), ociManifest, false},
		{"referrers index of bundles", index(ociIndex, desc(ociManifest, runnable, "artifactType", sigstore.BundleMediaType)), ociIndex, true},
		{"index entry with urls and a platform (finding 1)", index(ociIndex, entry("urls", evilURL, "platform", linux)), ociIndex, false},
		{"index entry with urls", index(ociIndex, entry("urls", evilURL)), ociIndex, false},
		{"index entry with empty urls", index(ociIndex, entry("urls", []string{})), ociIndex, false},
		{"index entry with a platform", index(ociIndex, entry("platform", linux)), ociIndex, false},
		{"index entry that is an index", index(ociIndex, desc(ociIndex, runnable, "artifactType", sigstore.BundleMediaType)), ociIndex, false},
		{"index entry without a signature artifactType", index(ociIndex, desc(ociManifest, runnable)), ociIndex, false},
		{"one good entry beside a plain one", index(ociIndex, entry(), desc(ociManifest, runnable)), ociIndex, false},
		{"Docker manifest list of signature entries", index(dockerList, entry()), dockerList, false},
		{"empty index", index(ociIndex), ociIndex, false},
		{"signature layer with urls", sigManifest(sigLayer("urls", evilURL)), ociManifest, false},
		{"index entry with embedded data", index(ociIndex, entry("data", "e30=")), ociIndex, false},
		{"signature layer with embedded data", sigManifest(sigLayer("data", "e30=")), ociManifest, false},
		{"layer that is JSON and a tar archive at once", sigManifest(desc(sigstore.SimpleSigningMediaType, jsonTar)), ociManifest, false},
		{"config with urls", doc(t, map[string]any{"mediaType": ociManifest,
			"config": desc("application/vnd.oci.image.config.v1+json", config, "urls", evilURL), "layers": []any{sigLayer()}}), ociManifest, false},
		{"subject with urls", doc(t, map[string]any{"mediaType": ociManifest, "subject": desc(ociManifest, runnable, "urls", evilURL),
			"config": desc("application/vnd.oci.image.config.v1+json", config), "layers": []any{sigLayer()}}), ociManifest, false},
		{"runnable layer labelled as a signature", sigManifest(desc(sigstore.SimpleSigningMediaType, tarball)), ociManifest, false},
		{"signature layers beside a tar layer", sigManifest(sigLayer(), desc(tarLayer, tarball)), ociManifest, false},
		{"layer blob missing", sigManifest(desc(sigstore.SimpleSigningMediaType, []byte(`{"never":"pushed"}`))), ociManifest, false},
		{"no layers", sigManifest(), ociManifest, false},
		{"plain runnable image", runnable, ociManifest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(newEd25519(t))}})
			src := newFakeSource()
			src.blobs = map[v1.Hash][]byte{digestOf(string(payload)): payload, digestOf(string(bundle)): bundle,
				digestOf(string(envelope)): envelope, digestOf(string(bigEnvelope)): bigEnvelope,
				digestOf(string(tarball)): tarball, digestOf(string(jsonTar)): jsonTar}
			img := Image{Registry: testRegistry, Repository: testRepo, Digest: digestOf(string(tc.body))}
			m, err := sigstore.ParseManifest(tc.body, tc.mediaType)
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			d, err := v.Decide(context.Background(), src, img, m)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Admit != tc.admit {
				t.Fatalf("Admit = %v (%s), want %v", d.Admit, d.Message, tc.admit)
			}
			if tc.admit {
				if d.Reason != ReasonSignatureArtifact || src.calls.Load() != 0 {
					t.Errorf("Reason %q after %d signature lookups, want a signature artifact and none", d.Reason, src.calls.Load())
				}
				return
			}
			if d.Reason != ReasonNoSignatures || src.calls.Load() != 1 {
				t.Errorf("Reason %q after %d lookups, want it verified as an image: no signatures", d.Reason, src.calls.Load())
			}
			// Its children inherit nothing either.
			for _, c := range m.Children() {
				child := Image{Registry: testRegistry, Repository: testRepo, Digest: c}
				if d := mustDecide(t, v, src, child, nil, ""); d.Admit {
					t.Errorf("child %s admitted: %s", c, d.Message)
				}
			}
		})
	}
}

// TestSignatureArtifactChildrenInheritNothing: an admitted signature
// artifact index passes nothing on to the manifests it lists.
func TestSignatureArtifactChildrenInheritNothing(t *testing.T) {
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(newEd25519(t))}})
	child := digestOf("a runnable image manifest")
	body := []byte(`{"schemaVersion":2,"mediaType":"` + ociIndex + `","manifests":[{"mediaType":"` + ociManifest +
		`","digest":"` + child.String() + `","size":10,"artifactType":"` + sigstore.BundleMediaType + `"}]}`)
	src := newFakeSource()
	img := Image{Registry: testRegistry, Repository: testRepo, Digest: digestOf(string(body))}
	if d := mustDecide(t, v, src, img, body, ociIndex); d.Reason != ReasonSignatureArtifact {
		t.Fatalf("index: %s", d.Message)
	}
	if d := mustDecide(t, v, src, Image{Registry: testRegistry, Repository: testRepo, Digest: child}, nil, ""); d.Admit {
		t.Fatalf("child admitted: %s", d.Message)
	}
}

// TestSignatureArtifactOutage: a payload blob upstream cannot serve leaves
// no decision, and nothing is cached.
func TestSignatureArtifactOutage(t *testing.T) {
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(newEd25519(t))}})
	payload := []byte(`{"a":1}`)
	body := []byte(`{"schemaVersion":2,"mediaType":"` + ociManifest + `","config":{"mediaType":"a","digest":"` + digestOf("c").String() +
		`","size":1},"layers":[{"mediaType":"` + sigstore.SimpleSigningMediaType + `","digest":"` + digestOf(string(payload)).String() + `","size":7}]}`)
	src := &outageSource{fakeSource: newFakeSource()}
	img := Image{Registry: testRegistry, Repository: testRepo, Digest: digestOf(string(body))}
	m, err := sigstore.ParseManifest(body, ociManifest)
	if err != nil {
		t.Fatal(err)
	}
	var re *sigstore.RegistryError
	if _, err := v.Decide(context.Background(), src, img, m); !errors.As(err, &re) {
		t.Fatalf("Decide: %v, want the registry error", err)
	}
	if v.CacheLen() != 0 {
		t.Fatalf("an outage was cached")
	}
	src.blobs = map[v1.Hash][]byte{digestOf(string(payload)): payload}
	src.down = false
	if d, err := v.Decide(context.Background(), src, img, m); err != nil || d.Reason != ReasonSignatureArtifact {
		t.Fatalf("after the outage: %+v, %v", d, err)
	}
}

type outageSource struct {
	*fakeSource
	down bool
}

func (s *outageSource) Blob(ctx context.Context, repo string, d sigstore.Descriptor, limit int64) ([]byte, error) {
	if s.down || s.blobs == nil {
		return nil, &sigstore.RegistryError{Op: "GET blob", StatusCode: 503}
	}
	return s.fakeSource.Blob(ctx, repo, d, limit)
}

// partialSource returns its signatures together with a registry failure of
// another source.
type partialSource struct{ *fakeSource }

func (s partialSource) SignaturesUntil(ctx context.Context, repo string, d v1.Hash, _ sigstore.Enough) ([]sigstore.Signature, error) {
	sigs, _ := s.fakeSource.SignaturesUntil(ctx, repo, d, nil)
	return sigs, &sigstore.RegistryError{Op: "GET referrers", StatusCode: 502, RetryAfter: "7"}
}

// TestPartialLookup: signatures read from one source admit even when
// another source failed; without enough of them, the failure is the answer
// (never a cached refusal).
func TestPartialLookup(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	signed, unsigned := testImage("signed"), testImage("unsigned")
	src := partialSource{newFakeSource()}
	src.add(testRepo, signed.Digest, simpleSig(t, key, testRef, signed.Digest, nil))
	d, err := v.Decide(context.Background(), src, signed, nil)
	if err != nil || !d.Admit {
		t.Fatalf("signed: %+v, %v; want admitted on the signatures that were read", d, err)
	}
	_, err = v.Decide(context.Background(), src, unsigned, nil)
	var re *sigstore.RegistryError
	if !errors.As(err, &re) || re.RetryAfter != "7" {
		t.Fatalf("unsigned: %v; want the registry error with its Retry-After", err)
	}
	if v.CacheLen() != 1 {
		t.Fatalf("cache holds %d decisions, want only the admission", v.CacheLen())
	}
}

// TestAnnotationsOfAnotherSubject: a trusted statement whose subjects are
// [{X, env=prod}, {D}] does not give D the annotation env=prod (finding 6).
func TestAnnotationsOfAnotherSubject(t *testing.T) {
	key := newEd25519(t)
	img, other := testImage("D"), testImage("X")
	stmt := `{"_type":"https://in-toto.io/Statement/v1","subject":[` +
		`{"digest":{"sha256":"` + other.Digest.Hex + `"},"annotations":{"env":"prod"}},` +
		`{"digest":{"sha256":"` + img.Digest.Hex + `"}}],` +
		`"predicateType":"` + sigstore.CosignPredicateType + `","predicate":{}}`
	pae := sigstore.PAE(sigstore.InTotoPayloadType, []byte(stmt))
	sig, err := key.Sign(pae)
	if err != nil {
		t.Fatal(err)
	}
	s := sigstore.Signature{Format: sigstore.FormatBundle, PayloadType: sigstore.InTotoPayloadType,
		Payload: []byte(stmt), Signed: pae, Sig: sig, Where: "referrer"}
	p := testPolicy(key)
	p.Annotations = map[string]string{"env": "prod"}
	if d := Evaluate(p, img, []sigstore.Signature{s}); d.Admit || d.Reason != ReasonAnnotations {
		t.Fatalf("D: %s; want refused for the missing annotation", d.Message)
	}
	if d := Evaluate(p, other, []sigstore.Signature{s}); !d.Admit {
		t.Fatalf("X: %s; want admitted, its own subject has env=prod", d.Message)
	}
}

// jsonTarLayer is one valid JSON object that is also an uncompressed tar
// archive holding one file: a V7 header whose fields are printable (octal
// numbers terminated by spaces), opening the JSON in the file name and
// closing it in the padding.
func jsonTarLayer(t testing.TB) []byte {
	t.Helper()
	block := make([]byte, 1024)
	for i := range block {
		block[i] = ' '
	}
	copy(block, `{"a":"pwned`)
	put := func(off int, s string) { copy(block[off:], s) }
	put(100, "0000755 ")     // mode
	put(108, "0000000 ")     // uid
	put(116, "0000000 ")     // gid
	put(124, "00000000004 ") // size: 4 bytes
	put(136, "00000000000 ") // mtime
	put(156, "0")            // typeflag: regular file
	put(512, "evil")         // the file's data
	copy(block[1022:], `"}`)
	sum := 0
	for i, c := range block[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	put(148, fmt.Sprintf("%06o  ", sum)) // checksum, space-terminated
	if !json.Valid(block) {
		t.Fatalf("not JSON: %q", block)
	}
	if _, err := tar.NewReader(bytes.NewReader(block)).Next(); err != nil {
		t.Fatalf("not a tar: %v", err)
	}
	return block
}

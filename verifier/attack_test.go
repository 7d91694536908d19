package verifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// attackKeys are the keys the attack cases sign with.
type attackKeys struct {
	trusted, second, unknown sigstore.PrivateKey
	ecdsa                    sigstore.PrivateKey
}

// TestAttacks has one case per applicable attack or bad-input case of
// FACTS.md (named "<number>/<what>") and per advisory. Each case asserts
// both Admit and Reason.
func TestAttacks(t *testing.T) {
	k := attackKeys{trusted: newEd25519(t), second: newEd25519(t), unknown: newEd25519(t), ecdsa: newECDSA(t)}
	img := testImage("app")
	d := img.Digest

	tests := []struct {
		name   string
		run    func(t *testing.T) Decision
		admit  bool
		reason Reason
	}{
		{
			name: "3/signature-replayed-from-another-digest",
			run: func(t *testing.T) Decision {
				// sha256-B.sig holds the signature made for digest A.
				other := testImage("other")
				src := newFakeSource()
				src.add(testRepo, d, simpleSig(t, k.trusted, testRef, other.Digest, nil), bundleSig(t, k.trusted, other.Digest, nil))
				return decideOnce(t, testPolicy(k.trusted), src, img)
			},
			admit: false, reason: ReasonDigestMismatch,
		},
		{
			name: "4/reference-names-other-repository",
			run: func(t *testing.T) Decision {
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{simpleSig(t, k.trusted, testRegistry+"/dev/app", d, nil)})
			},
			admit: false, reason: ReasonIdentityMismatch,
		},
		{
			name: "4/reference-names-other-registry",
			run: func(t *testing.T) Decision {
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{simpleSig(t, k.trusted, "evil.example:5000/"+testRepo, d, nil)})
			},
			admit: false, reason: ReasonIdentityMismatch,
		},
		{
			name: "5/child-of-signed-index-admitted",
			run: func(t *testing.T) Decision {
				v, src, parent, body, child := signedIndex(t, k.trusted, testPolicy(k.trusted))
				mustAdmit(t, v, src, parent, body, ociIndexMediaType)
				got := mustDecide(t, v, src, child, nil, manifestType)
				if n := src.calls.Load(); n != 1 {
					t.Errorf("lookups = %d, want 1: the child must come from the index's decision", n)
				}
				return got
			},
			admit: true, reason: ReasonParent,
		},
		{
			name: "5/child-by-digest-without-parent-refused",
			run: func(t *testing.T) Decision {
				v, src, _, _, child := signedIndex(t, k.trusted, testPolicy(k.trusted))
				return mustDecide(t, v, src, child, nil, manifestType)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "5/child-of-index-in-another-repository-refused",
			run: func(t *testing.T) Decision {
				v, src, parent, body, child := signedIndex(t, k.trusted, testPolicy(k.trusted))
				mustAdmit(t, v, src, parent, body, ociIndexMediaType)
				child.Repository = "prod/other"
				return mustDecide(t, v, src, child, nil, manifestType)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "5/require-signed-child-needs-own-signature",
			run: func(t *testing.T) Decision {
				p := testPolicy(k.trusted)
				p.Children = ChildrenRequireSigned
				v, src, parent, body, child := signedIndex(t, k.trusted, p)
				mustAdmit(t, v, src, parent, body, ociIndexMediaType)
				return mustDecide(t, v, src, child, nil, manifestType)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "5/signed-child-does-not-admit-its-index",
			run: func(t *testing.T) Decision {
				v, src, parent, body, child := signedIndex(t, k.trusted, testPolicy(k.trusted))
				src.sigs = map[string][]sigstore.Signature{}
				src.add(testRepo, child.Digest, simpleSig(t, k.trusted, testRef, child.Digest, nil))
				mustAdmit(t, v, src, child, nil, manifestType)
				return mustDecide(t, v, src, parent, body, ociIndexMediaType)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "5/nested-index",
			run: func(t *testing.T) Decision {
				leaf := testImage("leaf")
				innerBody := index(ociIndexMediaType, leaf.Digest)
				inner := testImage(string(innerBody))
				outerBody := index(ociIndexMediaType, inner.Digest)
				outer := testImage(string(outerBody))
				v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(k.trusted)}})
				src := newFakeSource()
				src.add(testRepo, outer.Digest, simpleSig(t, k.trusted, testRef, outer.Digest, nil))
				mustAdmit(t, v, src, outer, outerBody, ociIndexMediaType)
				if got := mustAdmit(t, v, src, inner, innerBody, ociIndexMediaType); got.Reason != ReasonParent {
					t.Errorf("inner index: %q, want %q", got.Reason, ReasonParent)
				}
				return mustDecide(t, v, src, leaf, nil, manifestType)
			},
			admit: true, reason: ReasonParent,
		},
		{
			name: "8/bad-child-digests-not-inherited",
			run: func(t *testing.T) Decision {
				child := testImage("child")
				body := []byte(fmt.Sprintf(`{"mediaType":%q,"manifests":[{"digest":%q},{"digest":%q},{"digest":%q}]}`,
					ociIndexMediaType, "sha256:"+strings.ToUpper(child.Digest.Hex), child.Digest.String()+"\n", "sha512:"+child.Digest.Hex))
				parent := testImage(string(body))
				v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(k.trusted)}})
				src := newFakeSource()
				src.add(testRepo, parent.Digest, simpleSig(t, k.trusted, testRef, parent.Digest, nil))
				mustAdmit(t, v, src, parent, body, ociIndexMediaType)
				return mustDecide(t, v, src, child, nil, manifestType)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "9/sig-tag-image-still-verified",
			run: func(t *testing.T) Decision {
				// A runnable image pushed under tag "sha256-<hex>.sig": the
				// verifier never sees tags and decides on its digest.
				runnable := testImage(`{"schemaVersion":2,"layers":[{"digest":"sha256:evil"}]}`)
				src := newFakeSource()
				src.add(testRepo, d, simpleSig(t, k.trusted, testRef, d, nil)) // the image the tag names is signed
				return decideOnce(t, testPolicy(k.trusted), src, runnable)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "12/bad-signature-lengths",
			run: func(t *testing.T) Decision {
				var sigs []sigstore.Signature
				for _, key := range []sigstore.PrivateKey{k.trusted, k.ecdsa} {
					good := simpleSig(t, key, testRef, d, nil)
					for _, sig := range [][]byte{nil, {}, good.Sig[:len(good.Sig)-1], append(good.Sig, 0), make([]byte, 1<<20)} {
						s := good
						s.Sig = sig
						sigs = append(sigs, s)
					}
				}
				return Evaluate(testPolicy(k.trusted, k.ecdsa), img, sigs)
			},
			admit: false, reason: ReasonUntrusted,
		},
		{
			name: "12/wrong-key-type",
			run: func(t *testing.T) Decision {
				// An Ed25519 signature checked with an ECDSA key and the reverse.
				edSig := simpleSig(t, k.trusted, testRef, d, nil)
				ecSig := simpleSig(t, k.ecdsa, testRef, d, nil)
				p := &Policy{Name: "swapped", Match: []string{"**"}, Keys: []sigstore.PublicKey{k.ecdsa.Public()}}
				if got := Evaluate(p, img, []sigstore.Signature{edSig}); got.Admit {
					t.Errorf("ECDSA key admitted an Ed25519 signature")
				}
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{ecSig})
			},
			admit: false, reason: ReasonUntrusted,
		},
		{
			name: "13/duplicate-keys",
			run: func(t *testing.T) Decision {
				// A lax parser keeps the last digest, the one being pulled.
				payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q,"docker-manifest-digest":%q},"type":%q},"optional":null}`,
					testRef, digestOf("other"), d, sigstore.SimpleSigningType)
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{signPayload(t, k.trusted, []byte(payload))})
			},
			admit: false, reason: ReasonInvalid,
		},
		{
			name: "13/case-variant-keys",
			run: func(t *testing.T) Decision {
				payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"Docker-Manifest-Digest":%q},"type":%q},"optional":null}`,
					testRef, d, sigstore.SimpleSigningType)
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{signPayload(t, k.trusted, []byte(payload))})
			},
			admit: false, reason: ReasonInvalid,
		},
		{
			name: "13/trailing-data",
			run: func(t *testing.T) Decision {
				payload, err := sigstore.NewPayload(testRef, d, nil)
				if err != nil {
					t.Fatal(err)
				}
				payload = append(payload, `{"critical":{}}`...)
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{signPayload(t, k.trusted, payload)})
			},
			admit: false, reason: ReasonInvalid,
		},
		{
			name: "13/wrong-type",
			run: func(t *testing.T) Decision {
				payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"atomic container signature"},"optional":null}`,
					testRef, d)
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{signPayload(t, k.trusted, []byte(payload))})
			},
			admit: false, reason: ReasonInvalid,
		},
		{
			name: "14/valid-unknown-key-beside-bad-trusted",
			run: func(t *testing.T) Decision {
				forged := simpleSig(t, k.trusted, testRef, d, nil)
				forged.Sig = append([]byte(nil), forged.Sig...)
				forged.Sig[0] ^= 0xff
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{
					simpleSig(t, k.unknown, testRef, d, nil), forged, bundleSig(t, k.unknown, d, nil),
				})
			},
			admit: false, reason: ReasonUntrusted,
		},
		{
			name: "16/source-error-not-cached",
			run: func(t *testing.T) Decision {
				v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(k.trusted)}})
				src := newFakeSource()
				src.add(testRepo, d, simpleSig(t, k.trusted, testRef, d, nil))
				src.errs = []error{
					&sigstore.RegistryError{StatusCode: 502},
					&sigstore.RegistryError{StatusCode: 429, Code: "TOOMANYREQUESTS"},
					&sigstore.RegistryError{Message: "unexpected EOF"},
				}
				for range 3 {
					if _, err := v.Decide(context.Background(), src, img, nil); err == nil {
						t.Fatal("an upstream failure gave a decision")
					}
				}
				got := mustDecide(t, v, src, img, nil, manifestType)
				if n := src.calls.Load(); n != 4 {
					t.Errorf("lookups = %d, want 4: failures must not be cached", n)
				}
				return got
			},
			admit: true, reason: ReasonVerified,
		},
		{
			name: "10/oversized-artifact-refused",
			run: func(t *testing.T) Decision {
				src := newFakeSource()
				src.errs = []error{fmt.Errorf("sha256-x.sig has 5000 layers, over %d: %w", sigstore.MaxSignatures, sigstore.ErrInvalidArtifact)}
				return decideOnce(t, testPolicy(k.trusted), src, img)
			},
			admit: false, reason: ReasonInvalid,
		},
		{
			name: "15/index-that-is-also-a-manifest-passes-nothing-on",
			run: func(t *testing.T) Decision {
				child := testImage("child")
				body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q},"layers":[],"manifests":[{"digest":%q}]}`,
					ociIndexMediaType, digestOf("cfg"), child.Digest))
				parent := testImage(string(body))
				v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(k.trusted)}})
				src := newFakeSource()
				src.add(testRepo, parent.Digest, simpleSig(t, k.trusted, testRef, parent.Digest, nil))
				mustAdmit(t, v, src, parent, body, ociIndexMediaType)
				return mustDecide(t, v, src, child, nil, manifestType)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "17/cache-keys-separate-repos-upstreams-policies",
			run: func(t *testing.T) Decision {
				// One policy covers both upstreams.
				both := func() *Policy {
					p := testPolicy(k.trusted)
					p.Match = append(p.Match, "b.example/prod/**")
					return p
				}
				v, _ := newVerifier(t, Config{Policies: []*Policy{both()}})
				src := newFakeSource()
				src.add(testRepo, d, simpleSig(t, k.trusted, testRef, d, nil))
				mustAdmit(t, v, src, img, nil, manifestType)
				// Same digest, other repository: its own lookup, nothing there.
				otherRepo := Image{Registry: testRegistry, Repository: "prod/other", Digest: d}
				if got := mustDecide(t, v, src, otherRepo, nil, manifestType); got.Admit {
					t.Errorf("admission shared across repositories: %s", got.Message)
				}
				// Same repository and digest on another upstream.
				otherUpstream := Image{Registry: "b.example", Repository: testRepo, Digest: d}
				if got := mustDecide(t, v, src, otherUpstream, nil, manifestType); got.Admit {
					t.Errorf("admission shared across upstreams: %s", got.Message)
				}
				// Same image under a changed policy (another annotation rule).
				p := both()
				p.Annotations = map[string]string{"env": "prod"}
				if err := v.SetPolicies([]*Policy{p}); err != nil {
					t.Fatal(err)
				}
				got := mustDecide(t, v, src, img, nil, manifestType)
				if n := src.calls.Load(); n != 4 {
					t.Errorf("lookups = %d, want 4 (one per repository, upstream, policy)", n)
				}
				return got
			},
			admit: false, reason: ReasonAnnotations,
		},
		{
			name: "17/key-rotation-invalidates",
			run: func(t *testing.T) Decision {
				v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(k.trusted)}})
				src := newFakeSource()
				src.add(testRepo, d, simpleSig(t, k.trusted, testRef, d, nil))
				mustAdmit(t, v, src, img, nil, manifestType)
				if err := v.SetPolicies([]*Policy{testPolicy(k.second)}); err != nil {
					t.Fatal(err)
				}
				return mustDecide(t, v, src, img, nil, manifestType)
			},
			admit: false, reason: ReasonUntrusted,
		},
		{
			name: "19/stampede-one-lookup",
			run: func(t *testing.T) Decision {
				return stampede(t, k.trusted, img, 200)
			},
			admit: true, reason: ReasonVerified,
		},
		{
			name: "threshold/2-of-2-with-one-signer-below-threshold",
			run: func(t *testing.T) Decision {
				p := testPolicy(k.trusted, k.second)
				p.Threshold = 2
				return Evaluate(p, img, []sigstore.Signature{simpleSig(t, k.trusted, testRef, d, nil), bundleSig(t, k.trusted, d, nil)})
			},
			admit: false, reason: ReasonBelowThreshold,
		},
		{
			name: "threshold/2-with-one-key-below-threshold",
			run: func(t *testing.T) Decision {
				// Evaluate is pure: a policy New would reject still fails closed.
				p := testPolicy(k.trusted)
				p.Threshold = 2
				return Evaluate(p, img, []sigstore.Signature{simpleSig(t, k.trusted, testRef, d, nil)})
			},
			admit: false, reason: ReasonBelowThreshold,
		},
		{
			name: "threshold/across-formats",
			run: func(t *testing.T) Decision {
				p := testPolicy(k.trusted, k.ecdsa)
				p.Threshold = 2
				return Evaluate(p, img, []sigstore.Signature{simpleSig(t, k.trusted, testRef, d, nil), bundleSig(t, k.ecdsa, d, nil)})
			},
			admit: true, reason: ReasonVerified,
		},
		{
			name: "CVE-2022-35929/zero-signatures",
			run: func(t *testing.T) Decision {
				return decideOnce(t, testPolicy(k.trusted), newFakeSource(), img)
			},
			admit: false, reason: ReasonNoSignatures,
		},
		{
			name: "CVE-2022-35929/zero-keys",
			run: func(t *testing.T) Decision {
				p := &Policy{Name: "keyless", Match: []string{"**"}, Threshold: 0}
				return Evaluate(p, img, []sigstore.Signature{simpleSig(t, k.trusted, testRef, d, nil)})
			},
			admit: false, reason: ReasonUntrusted,
		},
		{
			name: "CVE-2026-39395/payload-parse-error-rejects",
			run: func(t *testing.T) Decision {
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{signPayload(t, k.trusted, []byte(`{"critical":`))})
			},
			admit: false, reason: ReasonInvalid,
		},
		{
			name: "CVE-2026-39395/bundle-statement-parse-error-rejects",
			run: func(t *testing.T) Decision {
				stmt := []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":%q}}],"predicateType":"https://example.com/other","predicate":{}}`, d.Hex))
				signed := sigstore.PAE(sigstore.InTotoPayloadType, stmt)
				sig, err := k.trusted.Sign(signed)
				if err != nil {
					t.Fatal(err)
				}
				s := sigstore.Signature{Format: sigstore.FormatBundle, Signed: signed, Sig: sig, Payload: stmt, PayloadType: sigstore.InTotoPayloadType}
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{s})
			},
			// Another predicate type makes an attestation, which is
			// never counted as a signature.
			admit: false, reason: ReasonUntrusted,
		},
		{
			name: "claims-read-only-from-signed-bytes",
			run: func(t *testing.T) Decision {
				// Payload swapped after signing: the signature covers Signed.
				s := simpleSig(t, k.trusted, testRef, digestOf("other"), nil)
				p, err := sigstore.NewPayload(testRef, d, nil)
				if err != nil {
					t.Fatal(err)
				}
				s.Payload = p
				return Evaluate(testPolicy(k.trusted), img, []sigstore.Signature{s})
			},
			admit: false, reason: ReasonInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run(t)
			if got.Admit != tt.admit || got.Reason != tt.reason {
				t.Fatalf("got admit %v reason %q, want %v %q\nmessage: %s", got.Admit, got.Reason, tt.admit, tt.reason, got.Message)
			}
			if got.Message == "" || strings.ContainsAny(got.Message, "\r\n") {
				t.Errorf("Message = %q, want one non-empty line", got.Message)
			}
		})
	}
}

// decideOnce decides img with a fresh Verifier.
func decideOnce(t *testing.T, p *Policy, src Source, img Image) Decision {
	t.Helper()
	v, _ := newVerifier(t, Config{Policies: []*Policy{p}})
	return mustDecide(t, v, src, img, nil, manifestType)
}

func mustAdmit(t *testing.T, v *Verifier, src Source, img Image, body []byte, mediaType string) Decision {
	t.Helper()
	d := mustDecide(t, v, src, img, body, mediaType)
	if !d.Admit {
		t.Fatalf("%s refused: %s", img, d.Message)
	}
	return d
}

// signedIndex sets up an index, signed by key, listing one child.
func signedIndex(t *testing.T, key sigstore.PrivateKey, p *Policy) (*Verifier, *fakeSource, Image, []byte, Image) {
	t.Helper()
	child := testImage("child")
	body := index(ociIndexMediaType, child.Digest)
	parent := testImage(string(body))
	v, _ := newVerifier(t, Config{Policies: []*Policy{p}})
	src := newFakeSource()
	src.add(testRepo, parent.Digest, simpleSig(t, key, testRef, parent.Digest, nil))
	return v, src, parent, body, child
}

// stampede runs n concurrent Decide calls for one digest against a Source
// that blocks until all have been started, and checks there was one lookup.
func stampede(t *testing.T, key sigstore.PrivateKey, img Image, n int) Decision {
	t.Helper()
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	src := newFakeSource()
	src.add(testRepo, img.Digest, simpleSig(t, key, testRef, img.Digest, nil))
	src.started, src.release = make(chan struct{}), make(chan struct{})

	decisions := make([]Decision, n)
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			decisions[i], errs[i] = v.Decide(context.Background(), src, img, nil)
		}()
	}
	ready.Wait()
	<-src.started
	close(src.release)
	done.Wait()

	if got := src.calls.Load(); got != 1 {
		t.Errorf("%d concurrent requests made %d lookups, want 1", n, got)
	}
	for i := range n {
		if errs[i] != nil || decisions[i].Reason != decisions[0].Reason || decisions[i].Admit != decisions[0].Admit {
			t.Fatalf("request %d: %v %q %v, request 0: %q", i, decisions[i].Admit, decisions[i].Reason, errs[i], decisions[0].Reason)
		}
	}
	if st := v.Stats(); st.Lookups != 1 || st.Hits+st.Misses != uint64(n) || st.Admitted != uint64(n) {
		t.Errorf("Stats = %+v", st)
	}
	return decisions[0]
}

// The interop vectors: a registry dump made by sigstore cosign v3.1.2.

const dumpDir = "../sigstore/testdata/cosign-v3.1.2"

// dumpSource serves the signatures of the dump the way the registry would:
// the ".sig" tag's layers and the referrers tag's bundles.
type dumpSource struct {
	tags map[string]map[string]dumpTag
}

type dumpTag struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
}

func loadDump(t testing.TB) *dumpSource {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dumpDir, "tags.json"))
	if err != nil {
		t.Fatalf("reading the interop dump: %v", err)
	}
	s := &dumpSource{}
	if err := json.Unmarshal(b, &s.tags); err != nil {
		t.Fatalf("tags.json: %v", err)
	}
	return s
}

// image returns the Image and manifest of repo:tag, as served by registry.
func (s *dumpSource) image(t testing.TB, registry, repo, tag string) (Image, []byte, string) {
	t.Helper()
	tg, ok := s.tags[repo][tag]
	if !ok {
		t.Fatalf("no %s:%s in the dump", repo, tag)
	}
	h, err := v1.NewHash(tg.Digest)
	if err != nil {
		t.Fatal(err)
	}
	body, err := readDump("manifests", h)
	if err != nil {
		t.Fatal(err)
	}
	return Image{Registry: registry, Repository: repo, Digest: h}, body, tg.MediaType
}

func readDump(kind string, h v1.Hash) ([]byte, error) {
	return os.ReadFile(filepath.Join(dumpDir, kind, h.Algorithm+"-"+h.Hex))
}

type dumpManifest struct {
	Manifests []struct {
		Digest       v1.Hash `json:"digest"`
		ArtifactType string  `json:"artifactType"`
	} `json:"manifests"`
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      v1.Hash           `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

func (s *dumpSource) manifest(repo, tag string) (*dumpManifest, bool, error) {
	tg, ok := s.tags[repo][tag]
	if !ok {
		return nil, false, nil
	}
	h, err := v1.NewHash(tg.Digest)
	if err != nil {
		return nil, false, err
	}
	m, err := readManifest(h)
	return m, true, err
}

func readManifest(h v1.Hash) (*dumpManifest, error) {
	b, err := readDump("manifests", h)
	if err != nil {
		return nil, err
	}
	var m dumpManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	return &m, nil
}

// Blob implements Source over the dump.
func (s *dumpSource) Blob(_ context.Context, _ string, d sigstore.Descriptor, limit int64) ([]byte, error) {
	b, err := readDump("blobs", d.Digest)
	if err != nil || int64(len(b)) != d.Size || int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: blob %s not in the dump or not as described", sigstore.ErrInvalidArtifact, d.Digest)
	}
	return b, nil
}

// Attestations implements Source: the dump holds no .att tags.
func (s *dumpSource) Attestations(context.Context, string, v1.Hash) ([]sigstore.Signature, error) {
	return nil, nil
}

// Signatures implements Source over the dump.
func (s *dumpSource) SignaturesUntil(_ context.Context, repo string, d v1.Hash, _ sigstore.Enough) ([]sigstore.Signature, error) {
	simple, err := s.simpleSignatures(repo, d)
	if err != nil {
		return nil, err
	}
	bundles, err := s.bundles(repo, d)
	return append(simple, bundles...), err
}

func (s *dumpSource) simpleSignatures(repo string, d v1.Hash) ([]sigstore.Signature, error) {
	tag := sigstore.SignatureTag(d)
	m, ok, err := s.manifest(repo, tag)
	if !ok || err != nil {
		return nil, err
	}
	var out []sigstore.Signature
	for i, l := range m.Layers {
		if l.MediaType != sigstore.SimpleSigningMediaType {
			continue
		}
		where := fmt.Sprintf("%s layer %d", tag, i+1)
		blob, err := readDump("blobs", l.Digest)
		if err != nil {
			return nil, err
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[sigstore.SignatureAnnotation])
		s := sigstore.Signature{Format: sigstore.FormatSimpleSigning, Signed: blob, Payload: blob, Sig: sig, Where: where}
		if err != nil {
			s.Err = fmt.Errorf("signature annotation: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (s *dumpSource) bundles(repo string, d v1.Hash) ([]sigstore.Signature, error) {
	idx, ok, err := s.manifest(repo, sigstore.ReferrersTag(d))
	if !ok || err != nil {
		return nil, err
	}
	var out []sigstore.Signature
	for _, e := range idx.Manifests {
		if e.ArtifactType != sigstore.BundleMediaType {
			continue
		}
		m, err := readManifest(e.Digest)
		if err != nil {
			return nil, err
		}
		if len(m.Layers) != 1 {
			return nil, fmt.Errorf("bundle manifest %s: %d layers: %w", e.Digest, len(m.Layers), sigstore.ErrInvalidArtifact)
		}
		blob, err := readDump("blobs", m.Layers[0].Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, sigstore.SignatureFromBundle(blob, "referrer "+e.Digest.String()))
	}
	return out, nil
}

func interopKey(t testing.TB, name string) sigstore.PublicKey {
	t.Helper()
	k, err := sigstore.LoadPublicKey(filepath.Join(dumpDir, "keys", name))
	if err != nil {
		t.Fatalf("LoadPublicKey(%s): %v", name, err)
	}
	return k
}

// TestInteropVectors decides the images real cosign signed.
func TestInteropVectors(t *testing.T) {
	dump := loadDump(t)
	ecdsaKey, edKey := interopKey(t, "ecdsa.pub"), interopKey(t, "ed25519.pub")
	const signedAt, mirror = "127.0.0.1:5000", "mirror.local:5050"
	remap := &Remap{Prefix: mirror, SignedPrefix: signedAt}

	tests := []struct {
		name        string
		registry    string
		repo, tag   string
		keys        []sigstore.PublicKey
		threshold   int
		remap       *Remap
		annotations map[string]string
		admit       bool
		reason      Reason
	}{
		{"app:v1 by ecdsa.pub", signedAt, "interop/app", "v1", []sigstore.PublicKey{ecdsaKey}, 0, nil, nil, true, ReasonVerified},
		{"app:v1 by ed25519.pub (Ed25519ph)", signedAt, "interop/app", "v1", []sigstore.PublicKey{edKey}, 0, nil, nil, true, ReasonVerified},
		{"app:v1 by both keys, threshold 2", signedAt, "interop/app", "v1", []sigstore.PublicKey{ecdsaKey, edKey}, 2, nil, nil, true, ReasonVerified},
		{"app:v1 env=prod by ecdsa.pub", signedAt, "interop/app", "v1", []sigstore.PublicKey{ecdsaKey}, 0, nil, map[string]string{"env": "prod"}, true, ReasonVerified},
		{"app:v1 env=prod by ed25519.pub", signedAt, "interop/app", "v1", []sigstore.PublicKey{edKey}, 0, nil, map[string]string{"env": "prod"}, false, ReasonAnnotations},
		{"app:v2 bundle by ecdsa.pub", signedAt, "interop/app", "v2", []sigstore.PublicKey{ecdsaKey}, 0, nil, nil, true, ReasonVerified},
		{"app:v2 bundle by ed25519.pub", signedAt, "interop/app", "v2", []sigstore.PublicKey{edKey}, 0, nil, nil, false, ReasonUntrusted},
		{"multi:v1 index by ecdsa.pub", signedAt, "interop/multi", "v1", []sigstore.PublicKey{ecdsaKey}, 0, nil, nil, true, ReasonVerified},
		{"multi:amd64 alone", signedAt, "interop/multi", "amd64", []sigstore.PublicKey{ecdsaKey}, 0, nil, nil, false, ReasonNoSignatures},
		{"unsigned:v1 (digest signed in interop/app only)", signedAt, "interop/unsigned", "v1", []sigstore.PublicKey{ecdsaKey, edKey}, 0, nil, nil, false, ReasonNoSignatures},
		{"app:v1 via mirror without remap", mirror, "interop/app", "v1", []sigstore.PublicKey{ecdsaKey}, 0, nil, nil, false, ReasonIdentityMismatch},
		{"app:v1 via mirror with remap", mirror, "interop/app", "v1", []sigstore.PublicKey{ecdsaKey}, 0, remap, nil, true, ReasonVerified},
		{"app:v1 via mirror with remap, Ed25519ph", mirror, "interop/app", "v1", []sigstore.PublicKey{edKey}, 0, remap, nil, true, ReasonVerified},
		{"app:v1 at signedAt with a remap that does not apply", signedAt, "interop/app", "v1", []sigstore.PublicKey{ecdsaKey}, 0, remap, nil, true, ReasonVerified},
		{"app:v2 bundle via mirror (binds the digest only)", mirror, "interop/app", "v2", []sigstore.PublicKey{ecdsaKey}, 0, nil, nil, true, ReasonVerified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Name: "interop", Match: []string{"**"}, Keys: tt.keys, Threshold: tt.threshold,
				Remap: tt.remap, Annotations: tt.annotations}
			v, _ := newVerifier(t, Config{Policies: []*Policy{p}})
			img, body, mt := dump.image(t, tt.registry, tt.repo, tt.tag)
			got := mustDecide(t, v, dump, img, body, mt)
			if got.Admit != tt.admit || got.Reason != tt.reason {
				t.Fatalf("got admit %v reason %q, want %v %q\nmessage: %s", got.Admit, got.Reason, tt.admit, tt.reason, got.Message)
			}
			if got.Admit && len(got.Keys) != max(tt.threshold, 1) {
				t.Errorf("Keys = %v, want %d", got.Keys, max(tt.threshold, 1))
			}
		})
	}
}

// TestInteropIndexChildren pulls multi:v1 the way a client does: the index,
// then each platform manifest by digest.
func TestInteropIndexChildren(t *testing.T) {
	dump := loadDump(t)
	p := &Policy{Name: "interop", Match: []string{"127.0.0.1:5000/interop/**"}, Keys: []sigstore.PublicKey{interopKey(t, "ecdsa.pub")}}
	v, _ := newVerifier(t, Config{Policies: []*Policy{p}})
	idx, body, mt := dump.image(t, "127.0.0.1:5000", "interop/multi", "v1")
	if d := mustDecide(t, v, dump, idx, body, mt); !d.Admit || d.Reason != ReasonVerified {
		t.Fatalf("index: %v %q: %s", d.Admit, d.Reason, d.Message)
	}
	for _, tag := range []string{"amd64", "arm64"} {
		child, cbody, cmt := dump.image(t, "127.0.0.1:5000", "interop/multi", tag)
		d := mustDecide(t, v, dump, child, cbody, cmt)
		if !d.Admit || d.Reason != ReasonParent || !strings.Contains(d.Message, idx.Digest.String()) {
			t.Errorf("%s: %v %q: %s", tag, d.Admit, d.Reason, d.Message)
		}
	}
	if got := v.Stats().Lookups; got != 1 {
		t.Errorf("lookups = %d, want 1", got)
	}
}

package verifier_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
	"github.com/cosign-dev/cosign/verifier"
)

// Red team 6: the keyless memo (one verification per canonical bundle and
// payload), the key-then-keyless fallback, and attestation-only policies
// with indexes, attacked by someone who can push anything to the registry
// and holds a genuine certificate of the trusted Sigstore for an identity
// no policy names ("mallory"), but no trusted key and no certificate for a
// trusted identity. Each test asserts the safe behaviour.

// rt6Img is registry.example/app@digest.
func rt6Img(d v1.Hash) verifier.Image {
	return verifier.Image{Registry: rt4Reg, Repository: "app", Digest: d}
}

// rt6Key makes a trusted key with sigstore's own key code.
func rt6Key(t testing.TB) sigstore.PrivateKey {
	t.Helper()
	privPEM, _, err := sigstore.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := sigstore.ParsePrivateKey(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rt6Retarget rewrites the digest hex of from to to in an in-toto
// statement or simple-signing payload.
func rt6Retarget(t testing.TB, payload []byte, from, to v1.Hash) []byte {
	t.Helper()
	out := bytes.ReplaceAll(payload, []byte(from.Hex), []byte(to.Hex))
	if bytes.Equal(out, payload) {
		t.Fatal("payload does not name the digest")
	}
	return out
}

// rt6PEMs is the DER of every certificate in PEM text.
func rt6PEMs(text string) [][]byte {
	var out [][]byte
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		out = append(out, b.Bytes)
	}
}

// rt6Legacy is a keyless .sig layer of d for ref by who, as the Fetcher
// reads it: payload, signature and keyless annotations.
func rt6Legacy(t testing.TB, l *rt4Lab, ref string, d v1.Hash, who string) sigstore.Signature {
	t.Helper()
	payload, ann, err := l.ss.SimpleSigningLayer(ref, d, sigstoretest.Options{Identity: who, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(ann[sigstore.SignatureAnnotation])
	if err != nil {
		t.Fatal(err)
	}
	return sigstore.Signature{Format: sigstore.FormatSimpleSigning, Signed: payload, Payload: payload, Sig: sig,
		Certificate: pemDER(t, ann[sigstore.CertificateAnnotation]), Chain: rt6PEMs(ann[sigstore.ChainAnnotation]),
		RekorBundle: []byte(ann[sigstore.RekorBundleAnnotation]), Where: "legacy"}
}

// TestRedTeam6KeylessMemoCarriesNoVerdictToOtherBytes: within a lookup,
// keyless verifications are remembered by a hash of the format, the
// sigstore-go bundle as deterministic protobuf, and the payload. The
// attacker lists, after the trusted identity's genuine signature of the
// trusted image D, copies of it that claim their own image E: the same
// bundle JSON (or respaced) with the payload and signed bytes swapped for
// a statement about E, a .sig layer with the same annotations and a
// payload about E, the trusted bundle re-labelled as another format, and
// a legacy .att layer made of the bundle's envelope, certificate and
// chain. If any of them shared the genuine signature's memo key, the
// verdict "verified, trusted identity" would be carried to a payload the
// certificate never signed.
//
// Safe: every forgery is refused for E while the genuine signature, tried
// first in the same lookup, is admitted for D.
func TestRedTeam6KeylessMemoCarriesNoVerdictToOtherBytes(t *testing.T) {
	l := newRT4Lab(t)
	p := l.policy()
	d, e := rt4Digest("trusted image"), rt4Digest("mallory's image")
	genuine := sigstore.SignatureFromBundle(l.bundle(t, d, rt4Trusted), "genuine bundle")
	if got := verifier.Evaluate(p, rt6Img(d), []sigstore.Signature{genuine}); !got.Admit {
		t.Fatalf("the genuine bundle is refused for its own digest: %s", got.Message)
	}
	legacy := rt6Legacy(t, l, rt4Reg+"/app", d, rt4Trusted)
	if got := verifier.Evaluate(p, rt6Img(d), []sigstore.Signature{legacy}); !got.Admit {
		t.Fatalf("the genuine .sig layer is refused for its own digest: %s", got.Message)
	}

	swapped := func(s sigstore.Signature, bundle []byte) sigstore.Signature {
		s.Payload = rt6Retarget(t, s.Payload, d, e)
		s.Signed = sigstore.PAE(s.PayloadType, s.Payload)
		if bundle != nil {
			s.Bundle = bundle
		}
		s.Where = "forgery"
		return s
	}
	legacySwap := legacy
	legacySwap.Payload = rt6Retarget(t, legacy.Payload, d, e)
	legacySwap.Signed = legacySwap.Payload
	relabelled := genuine
	relabelled.Format = sigstore.FormatAttestation
	relabelled.Payload = rt6Retarget(t, genuine.Payload, d, e)
	relabelled.Signed = sigstore.PAE(genuine.PayloadType, relabelled.Payload)
	asAtt := genuine
	asAtt.Format, asAtt.Bundle, asAtt.RekorBundle = sigstore.FormatAttestation, nil, legacy.RekorBundle
	forgeries := map[string]sigstore.Signature{
		"bundle, payload swapped":          swapped(genuine, nil),
		"bundle respaced, payload swapped": swapped(genuine, append([]byte("{  "), genuine.Bundle[1:]...)),
		".sig layer, payload swapped":      legacySwap,
		"bundle relabelled .att, swapped":  relabelled,
		".att of the bundle's parts for E": swapped(asAtt, nil),
		"bundle, payload type case-changed": func() sigstore.Signature {
			s := swapped(genuine, nil)
			s.PayloadType = strings.ToUpper(s.PayloadType)
			return s
		}(),
		".sig layer, legacy annotations of D": func() sigstore.Signature { s := legacy; s.Payload = legacySwap.Payload; return s }(),
	}
	for name, f := range forgeries {
		for _, first := range []sigstore.Signature{genuine, legacy} {
			got := verifier.Evaluate(p, rt6Img(e), []sigstore.Signature{first, f})
			if got.Admit {
				t.Errorf("%s (after the genuine %s of D in the same lookup) admitted mallory's image E: %s", name, first.Format, got.Message)
			}
		}
	}
}

// TestRedTeam6KeyFallbackVerifiesWhatItReads: a signature with a
// certificate whose keyless verification fails is tried with the policy's
// keys (cosign sign --key K --certificate C). The attacker takes
// signatures the trusted key made for the trusted image D (a key bundle, a
// .sig layer, an .att envelope), attaches their own genuine certificate
// (mallory's), and swaps the payload the claims are read from for one
// about their image E, keeping the signed bytes (or re-deriving them).
//
// Safe: the key path verifies the bytes the claims are read from: no
// forgery is admitted for E, while the unmodified signatures, certificate
// attached, are admitted for D by the key.
func TestRedTeam6KeyFallbackVerifiesWhatItReads(t *testing.T) {
	l := newRT4Lab(t)
	key := rt6Key(t)
	p := l.policy()
	p.Keys = []sigstore.PublicKey{key.Public()}
	d, e := rt4Digest("trusted image"), rt4Digest("mallory's image")
	mallory := sigstore.SignatureFromBundle(l.bundle(t, e, rt4Mallory), "mallory")
	if mallory.Err != nil {
		t.Fatal(mallory.Err)
	}

	kb, err := sigstore.NewBundle(key, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	bundle := sigstore.SignatureFromBundle(kb, "key bundle")
	payload, err := sigstore.NewPayload(rt4Reg+"/app", d, nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	dotSig := sigstore.Signature{Format: sigstore.FormatSimpleSigning, Signed: payload, Payload: payload, Sig: sig, Where: ".sig"}
	env, _, err := sigstoretest.KeyAttestationEnvelope(key, d, rt4SLSA, map[string]any{"buildType": "x"})
	if err != nil {
		t.Fatal(err)
	}
	att := sigstore.SignatureFromEnvelope(env, ".att")
	pa := l.policy()
	pa.Keys = p.Keys
	pa.Attestations = []verifier.AttestationRule{{PredicateType: rt4SLSA}}
	pa.SignatureOptional = true

	for _, tc := range []struct {
		sig sigstore.Signature
		p   *verifier.Policy
	}{{bundle, p}, {dotSig, p}, {att, pa}} {
		s := tc.sig
		if s.Err != nil {
			t.Fatalf("%s: %v", s.Where, s.Err)
		}
		withCert := s
		withCert.Certificate, withCert.Chain = mallory.Certificate, mallory.Chain
		if got := verifier.Evaluate(tc.p, rt6Img(d), []sigstore.Signature{withCert}); !got.Admit || (tc.p == p && len(got.Keys) != 1) {
			t.Errorf("%s made by the trusted key for D, with mallory's certificate attached, is not admitted by the key: %s", s.Where, got.Message)
		}
		other := rt6Retarget(t, s.Payload, d, e)
		forgeries := map[string]sigstore.Signature{}
		f := withCert
		f.Payload = other // signed bytes kept
		forgeries["payload swapped, signed bytes kept"] = f
		f = withCert
		f.Payload = other
		if s.Format == sigstore.FormatSimpleSigning {
			f.Signed = other
		} else {
			f.Signed = sigstore.PAE(s.PayloadType, other)
		}
		forgeries["payload and signed bytes swapped"] = f
		f.Sig = mallory.Sig
		forgeries["payload swapped, mallory's signature"] = f
		for name, f := range forgeries {
			if got := verifier.Evaluate(tc.p, rt6Img(e), []sigstore.Signature{withCert, f}); got.Admit {
				t.Errorf("%s, %s, with mallory's certificate: admitted for mallory's image E: %s", s.Where, name, got.Message)
			}
		}
	}
	// Mallory's own genuine keyless signature of E: verified, but the
	// identity is not trusted and no key verifies it.
	if got := verifier.Evaluate(p, rt6Img(e), []sigstore.Signature{mallory}); got.Admit || got.Reason != verifier.ReasonCertificateIdentity {
		t.Errorf("mallory's genuine signature of E: %s (%s), want refused as %s", got.Reason, got.Message, verifier.ReasonCertificateIdentity)
	}
}

// rt6Source serves attestations and signatures per repository@digest.
type rt6Source struct {
	mu   sync.Mutex
	atts map[string][]sigstore.Signature
	sigs map[string][]sigstore.Signature
}

func (s *rt6Source) SignaturesUntil(_ context.Context, repo string, d v1.Hash, _ sigstore.Enough) ([]sigstore.Signature, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sigs[repo+"@"+d.String()], nil
}

func (s *rt6Source) Attestations(_ context.Context, repo string, d v1.Hash) ([]sigstore.Signature, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.atts[repo+"@"+d.String()], nil
}

func (s *rt6Source) Blob(context.Context, string, sigstore.Descriptor, int64) ([]byte, error) {
	return []byte(`{"payloadType":"x"}`), nil
}

// rt6Index is an OCI index of children (linux/amd64, linux/arm64 by
// default), parsed.
func rt6Index(t testing.TB, artifactType string, platform bool, children ...v1.Hash) (*sigstore.Manifest, v1.Hash) {
	t.Helper()
	var entries []map[string]any
	for i, c := range children {
		e := map[string]any{"mediaType": string(types.OCIManifestSchema1), "digest": c.String(), "size": 500}
		if platform {
			e["platform"] = map[string]string{"os": "linux", "architecture": []string{"amd64", "arm64"}[i%2]}
		}
		if artifactType != "" {
			e["artifactType"] = artifactType
		}
		entries = append(entries, e)
	}
	raw, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": string(types.OCIImageIndex), "manifests": entries})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sigstore.ParseManifest(raw, string(types.OCIImageIndex))
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m, d
}

// TestRedTeam6AttestationOnlyIndexPassesOnlyWhatItLists: under a policy
// that admits on attestations alone (signature: false), an index the
// trusted builder attested is admitted (ReasonVerified), and, children
// mode inherit, so are the manifests it lists, in its repository, as for
// a signed index: an attestation of the index is the builder's statement
// about the index, and multi-platform provenance names the index. The
// attacker, who holds no trusted key, tries to get their own child
// admitted: listed in an index they attested with mallory's certificate
// or their own key; in an index whose trusted attestation fails the
// predicate condition; in a referrers-shaped index (admitted unsigned as a
// signature artifact); through a copy of the trusted index in another
// repository; or by asking for a manifest the trusted index does not list.
//
// Safe: only the children of the index the trusted key attested, with the
// predicate holding, are admitted, and only in the repository it was
// decided in.
func TestRedTeam6AttestationOnlyIndexPassesOnlyWhatItLists(t *testing.T) {
	l := newRT4Lab(t)
	key, own := rt6Key(t), rt6Key(t)
	p := l.policy()
	p.Keys = []sigstore.PublicKey{key.Public()}
	p.Attestations = []verifier.AttestationRule{{PredicateType: rt4SLSA, Predicate: map[string]any{"buildDefinition.buildType": "trusted"}}}
	p.SignatureOptional = true
	v, err := verifier.New(verifier.Config{Policies: []*verifier.Policy{p}})
	if err != nil {
		t.Fatal(err)
	}
	src := &rt6Source{atts: map[string][]sigstore.Signature{}, sigs: map[string][]sigstore.Signature{}}
	attest := func(k sigstore.PrivateKey, repo string, d v1.Hash, buildType string) {
		env, _, err := sigstoretest.KeyAttestationEnvelope(k, d, rt4SLSA, map[string]any{"buildDefinition": map[string]any{"buildType": buildType}})
		if err != nil {
			t.Fatal(err)
		}
		src.atts[repo+"@"+d.String()] = append(src.atts[repo+"@"+d.String()], sigstore.SignatureFromEnvelope(env, ".att"))
	}
	decide := func(repo string, d v1.Hash, m *sigstore.Manifest) verifier.Decision {
		got, err := v.Decide(context.Background(), src, verifier.Image{Registry: rt4Reg, Repository: repo, Digest: d}, m)
		if err != nil {
			t.Fatalf("Decide %s@%s: %v", repo, d, err)
		}
		return got
	}

	good1, good2 := rt4Digest("trusted amd64"), rt4Digest("trusted arm64")
	trusted, ti := rt6Index(t, "", true, good1, good2)
	attest(key, "app", ti, "trusted")
	if got := decide("app", ti, trusted); !got.Admit || got.Reason != verifier.ReasonVerified {
		t.Fatalf("the trusted attested index is not admitted: %s", got.Message)
	}
	for _, c := range []v1.Hash{good1, good2} {
		if got := decide("app", c, nil); !got.Admit || got.Reason != verifier.ReasonParent {
			t.Errorf("child %s of the trusted attested index: %s, want admitted as %s", c, got.Message, verifier.ReasonParent)
		}
	}

	evil := rt4Digest("mallory's runnable image")
	tries := map[string]func() verifier.Decision{
		"index attested with the attacker's own key": func() verifier.Decision {
			m, d := rt6Index(t, "", true, evil)
			attest(own, "app", d, "trusted")
			decide("app", d, m)
			return decide("app", evil, nil)
		},
		"index attested by mallory's genuine certificate": func() verifier.Decision {
			m, d := rt6Index(t, "", true, evil, good1)
			raw, err := l.ss.AttestationBundle(d, rt4SLSA, map[string]any{"buildDefinition": map[string]any{"buildType": "trusted"}},
				sigstoretest.Options{Identity: rt4Mallory, Issuer: rt4Issuer})
			if err != nil {
				t.Fatal(err)
			}
			src.sigs["app@"+d.String()] = []sigstore.Signature{sigstore.SignatureFromBundle(raw, "mallory")}
			decide("app", d, m)
			return decide("app", evil, nil)
		},
		"index attested by the trusted key, predicate failing": func() verifier.Decision {
			m, d := rt6Index(t, "", true, evil)
			attest(key, "app", d, "untrusted")
			decide("app", d, m)
			return decide("app", evil, nil)
		},
		"referrers-shaped index (signature artifact)": func() verifier.Decision {
			m, d := rt6Index(t, sigstore.AttestationLayerMediaType, false, evil)
			if got := decide("app", d, m); !got.Admit || got.Reason != verifier.ReasonSignatureArtifact {
				t.Logf("referrers-shaped index: %s", got.Message)
			}
			return decide("app", evil, nil)
		},
		"the trusted index's child, asked for in another repository": func() verifier.Decision {
			return decide("other", good1, nil)
		},
		"a manifest the trusted index does not list, after it": func() verifier.Decision {
			decide("app", ti, trusted)
			return decide("app", evil, nil)
		},
	}
	for name, try := range tries {
		if got := try(); got.Admit {
			t.Errorf("%s: mallory's image %s admitted: %s (%s)", name, evil, got.Reason, got.Message)
		}
	}

}

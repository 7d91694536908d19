package verifier

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

const slsaV1 = "https://slsa.dev/provenance/v1"

const builderID = "https://github.com/actions/runner/github-hosted"

// attestation signs an in-toto statement about d with key, as a DSSE
// signature in format (FormatBundle for a referrer, FormatAttestation for
// a .att layer).
func attestation(t testing.TB, key sigstore.PrivateKey, format sigstore.Format, d v1.Hash, predicateType string, predicate any) sigstore.Signature {
	t.Helper()
	stmt, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "app", "digest": map[string]string{"sha256": d.Hex}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	if err != nil {
		t.Fatal(err)
	}
	signed := sigstore.PAE(sigstore.InTotoPayloadType, stmt)
	sig, err := key.Sign(signed)
	if err != nil {
		t.Fatal(err)
	}
	return sigstore.Signature{
		Format: format, Signed: signed, Sig: sig, Payload: stmt,
		PayloadType: sigstore.InTotoPayloadType, Where: "test " + string(format),
	}
}

func provenance(builder string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{"buildType": "https://actions.github.io/buildtypes/workflow/v1"},
		"runDetails": map[string]any{
			"builder":  map[string]any{"id": builder},
			"metadata": map[string]any{"invocationId": 42, "reproducible": false},
		},
		"byproducts": []any{map[string]any{"name": "log"}, nil},
	}
}

func provenancePolicy(keys ...sigstore.PrivateKey) *Policy {
	p := testPolicy(keys...)
	p.Attestations = []AttestationRule{{
		PredicateType: slsaV1,
		Predicate:     map[string]any{"runDetails.builder.id": builderID},
	}}
	return p
}

func TestAttestationRules(t *testing.T) {
	k1, k2 := newEd25519(t), newECDSA(t)
	img := testImage("image")
	sig := simpleSig(t, k1, testRef, img.Digest, nil)
	good := attestation(t, k1, sigstore.FormatBundle, img.Digest, slsaV1, provenance(builderID))
	for _, tc := range []struct {
		name   string
		policy *Policy
		sigs   []sigstore.Signature
		admit  bool
		reason Reason
		want   string // in the message
	}{
		{"signature and provenance", provenancePolicy(k1), []sigstore.Signature{sig, good}, true, ReasonVerified, "attestations: " + slsaV1},
		{"legacy .att provenance", provenancePolicy(k1), []sigstore.Signature{sig, attestation(t, k1, sigstore.FormatAttestation, img.Digest, slsaV1, provenance(builderID))}, true, ReasonVerified, ""},
		{"provenance missing", provenancePolicy(k1), []sigstore.Signature{sig}, false, ReasonAttestationMissing, "attestation missing: " + slsaV1},
		{"provenance of another type", provenancePolicy(k1), []sigstore.Signature{sig, attestation(t, k1, sigstore.FormatBundle, img.Digest, "https://slsa.dev/provenance/v0.2", provenance(builderID))}, false, ReasonAttestationMissing, "attestation missing: " + slsaV1},
		{"other builder", provenancePolicy(k1), []sigstore.Signature{sig, attestation(t, k1, sigstore.FormatBundle, img.Digest, slsaV1, provenance("https://evil.example/builder"))}, false, ReasonPredicate, "predicate condition failed: runDetails.builder.id"},
		{"no builder", provenancePolicy(k1), []sigstore.Signature{sig, attestation(t, k1, sigstore.FormatBundle, img.Digest, slsaV1, map[string]any{"runDetails": map[string]any{}})}, false, ReasonPredicate, "predicate condition failed: runDetails.builder.id"},
		{"provenance by an untrusted key", provenancePolicy(k1), []sigstore.Signature{sig, attestation(t, k2, sigstore.FormatBundle, img.Digest, slsaV1, provenance(builderID))}, false, ReasonAttestationMissing, "attestation missing: " + slsaV1},
		{"provenance for another digest", provenancePolicy(k1), []sigstore.Signature{sig, attestation(t, k1, sigstore.FormatBundle, digestOf("other"), slsaV1, provenance(builderID))}, false, ReasonAttestationMissing, "not this digest"},
		{"provenance without a signature", provenancePolicy(k1), []sigstore.Signature{good}, false, ReasonUntrusted, "1 attestation"},
		{"provenance alone, signature optional", func() *Policy { p := provenancePolicy(k1); p.SignatureOptional = true; return p }(), []sigstore.Signature{good}, true, ReasonVerified, "attestations: " + slsaV1},
		{"signature optional, provenance missing", func() *Policy { p := provenancePolicy(k1); p.SignatureOptional = true; return p }(), []sigstore.Signature{sig}, false, ReasonAttestationMissing, "attestation missing"},
		{"threshold 2, provenance by one", func() *Policy { p := provenancePolicy(k1, k2); p.Threshold = 2; return p }(),
			[]sigstore.Signature{sig, simpleSig(t, k2, testRef, img.Digest, nil), good}, false, ReasonAttestationMissing, "signed by 1 of 2 required signers"},
		{"threshold 2, provenance by both", func() *Policy { p := provenancePolicy(k1, k2); p.Threshold = 2; return p }(),
			[]sigstore.Signature{sig, simpleSig(t, k2, testRef, img.Digest, nil), good, attestation(t, k2, sigstore.FormatAttestation, img.Digest, slsaV1, provenance(builderID))}, true, ReasonVerified, ""},
		{"one key's provenance twice is one signer", func() *Policy { p := provenancePolicy(k1, k2); p.Threshold = 2; return p }(),
			[]sigstore.Signature{sig, simpleSig(t, k2, testRef, img.Digest, nil), good, attestation(t, k1, sigstore.FormatAttestation, img.Digest, slsaV1, provenance(builderID))}, false, ReasonAttestationMissing, "1 of 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Evaluate(tc.policy, img, tc.sigs)
			if d.Admit != tc.admit || d.Reason != tc.reason {
				t.Fatalf("got admit %v, reason %q (%s); want %v, %q", d.Admit, d.Reason, d.Message, tc.admit, tc.reason)
			}
			if !strings.Contains(d.Message, tc.want) {
				t.Errorf("message %q does not say %q", d.Message, tc.want)
			}
		})
	}
}

// An attestation by a trusted key is never a signature, whatever its
// format, and a signing statement in an attestation's place is not an
// attestation.
func TestAttestationIsNotASignature(t *testing.T) {
	k := newEd25519(t)
	img := testImage("image")
	for _, f := range []sigstore.Format{sigstore.FormatBundle, sigstore.FormatAttestation} {
		att := attestation(t, k, f, img.Digest, slsaV1, provenance(builderID))
		if d := Evaluate(testPolicy(k), img, []sigstore.Signature{att}); d.Admit || len(d.Keys) != 0 {
			t.Errorf("%s: an attestation admitted as a signature: %s", f, d.Message)
		}
	}
	// A signing statement is never an attestation (and a rule naming
	// its type is a configuration error, see TestPolicyValidationAttestations).
	signing := attestation(t, k, sigstore.FormatBundle, img.Digest, sigstore.CosignPredicateType, map[string]any{})
	p := provenancePolicy(k)
	p.Attestations[0].PredicateType = sigstore.CosignPredicateType
	p.Attestations[0].Predicate = nil
	p.SignatureOptional = true
	if d := Evaluate(p, img, []sigstore.Signature{signing}); d.Admit {
		t.Errorf("a signing statement counted as an attestation: %s", d.Message)
	}
}

func TestPredicateConditions(t *testing.T) {
	pred := map[string]any{
		"runDetails": map[string]any{"builder": map[string]any{"id": builderID}, "metadata": map[string]any{"invocationId": 42, "reproducible": false, "ratio": 0.5}},
		"list":       []any{"a", map[string]any{"b": nil}},
		"dotted.key": "x",
	}
	raw, err := json.Marshal(pred)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want any
		ok   bool
	}{
		{"runDetails.builder.id", builderID, true},
		{"runDetails.builder.id", builderID + "/", false},
		{"runDetails.metadata.invocationId", 42, true},
		{"runDetails.metadata.invocationId", int64(42), true},
		{"runDetails.metadata.invocationId", 42.0, true},
		{"runDetails.metadata.invocationId", "42", false},
		{"runDetails.metadata.invocationId", 43, false},
		{"runDetails.metadata.ratio", 0.5, true},
		{"runDetails.metadata.reproducible", false, true},
		{"runDetails.metadata.reproducible", nil, false},
		{"list.0", "a", true},
		{"list.1.b", nil, true},
		{"list.01", "a", false},
		{"list.2", "a", false},
		{"list.-1", "a", false},
		{"runDetails.builder", builderID, false}, // an object never equals a scalar
		{"runDetails.builder.id.more", builderID, false},
		{"dotted.key", "x", false}, // paths split on every dot
		{"missing", nil, false},
	} {
		r := AttestationRule{PredicateType: slsaV1, Predicate: map[string]any{tc.path: tc.want}}
		path, ok := r.predicateHolds(raw)
		if ok != tc.ok {
			t.Errorf("%s = %#v: holds %v, want %v", tc.path, tc.want, ok, tc.ok)
		}
		if !ok && path != tc.path {
			t.Errorf("%s: failing path %q", tc.path, path)
		}
	}
	r := AttestationRule{PredicateType: slsaV1, Predicate: map[string]any{"a": "x"}}
	if _, ok := r.predicateHolds([]byte("not json")); ok {
		t.Error("an unreadable predicate held")
	}
}

func TestPolicyValidationAttestations(t *testing.T) {
	k := newEd25519(t)
	for _, tc := range []struct {
		name string
		edit func(*Policy)
		want string
	}{
		{"signature false without attestations", func(p *Policy) { p.Attestations = nil; p.SignatureOptional = true }, "signature: false needs attestations"},
		{"empty predicate type", func(p *Policy) { p.Attestations[0].PredicateType = " " }, "without predicateType"},
		{"twice", func(p *Policy) { p.Attestations = append(p.Attestations, p.Attestations[0]) }, "listed twice"},
		{"empty path", func(p *Policy) { p.Attestations[0].Predicate = map[string]any{"": "x"} }, "empty"},
		{"empty segment", func(p *Policy) { p.Attestations[0].Predicate = map[string]any{"a..b": "x"} }, "empty segment"},
		{"object value", func(p *Policy) { p.Attestations[0].Predicate = map[string]any{"a": map[string]any{}} }, "not a string, number, boolean or null"},
		{"list value", func(p *Policy) { p.Attestations[0].Predicate = map[string]any{"a": []any{"x"}} }, "not a string"},
		{"no signers", func(p *Policy) { p.Keys = nil }, "no keys and no keyless identities"},
		{"cosign's signing predicate", func(p *Policy) { p.Attestations[0].PredicateType = sigstore.CosignPredicateType }, "a signature, which no attestation rule can require"},
		{"keyless without root", func(p *Policy) { p.Keyless = &Keyless{Identities: []Identity{{Issuer: "i", Subject: "s"}}} }, "no trusted root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := provenancePolicy(k)
			tc.edit(p)
			_, err := New(Config{Policies: []*Policy{p}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New(Config{Policies: []*Policy{provenancePolicy(k)}}); err != nil {
		t.Fatalf("a valid policy: %v", err)
	}
}

func TestFingerprintCoversAttestations(t *testing.T) {
	k := newEd25519(t)
	base := provenancePolicy(k)
	fp := base.Fingerprint()
	for name, edit := range map[string]func(*Policy){
		"predicate value":    func(p *Policy) { p.Attestations[0].Predicate["runDetails.builder.id"] = "other" },
		"predicate value ty": func(p *Policy) { p.Attestations[0].Predicate["runDetails.builder.id"] = 1 },
		"predicate type":     func(p *Policy) { p.Attestations[0].PredicateType = "x" },
		"no rules":           func(p *Policy) { p.Attestations = nil },
		"signature optional": func(p *Policy) { p.SignatureOptional = true },
		"keyless":            func(p *Policy) { p.Keyless = &Keyless{Identities: []Identity{{Issuer: "i", Subject: "s"}}} },
	} {
		p := provenancePolicy(k)
		edit(p)
		if p.Fingerprint() == fp {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
	if provenancePolicy(k).Fingerprint() != fp {
		t.Error("fingerprint not stable")
	}
}

// Decide reads the .att tag only for policies with attestation rules, and
// counts what it finds there.
func TestDecideReadsAttestations(t *testing.T) {
	k := newEd25519(t)
	img := testImage("image")
	src := newFakeSource()
	src.add(img.Repository, img.Digest, simpleSig(t, k, testRef, img.Digest, nil))
	v, _ := newVerifier(t, Config{Policies: []*Policy{provenancePolicy(k)}})
	if d := mustDecide(t, v, src, img, nil, ""); d.Admit || d.Reason != ReasonAttestationMissing {
		t.Fatalf("without provenance: %s", d.Message)
	}
	src.mu.Lock()
	src.sigs[img.Repository+"@"+img.Digest.String()+"/att"] = []sigstore.Signature{
		attestation(t, k, sigstore.FormatAttestation, img.Digest, slsaV1, provenance(builderID)),
	}
	src.mu.Unlock()
	v, _ = newVerifier(t, Config{Policies: []*Policy{provenancePolicy(k)}})
	d := mustDecide(t, v, src, img, nil, "")
	if !d.Admit || len(d.Attestations) != 1 || d.Attestations[0] != slsaV1 {
		t.Fatalf("with provenance on the .att tag: %+v", d)
	}
	// A policy without rules never asks for the .att tag: a source whose
	// Attestations panics is not called.
	v, _ = newVerifier(t, Config{Policies: []*Policy{testPolicy(k)}})
	if d, err := v.Decide(context.Background(), attPanics{src}, img, nil); err != nil || !d.Admit {
		t.Fatalf("plain policy: %+v, %v", d, err)
	}
}

type attPanics struct{ *fakeSource }

func (attPanics) Attestations(context.Context, string, v1.Hash) ([]sigstore.Signature, error) {
	panic("Attestations called for a policy without attestation rules")
}

package sigstoretest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/cosign-dev/cosign/sigstore"
)

const (
	testIdentity = "signer@example.com"
	testIssuer   = "https://issuer.example.com"
	testRef      = "registry.example/team/app"
	slsaType     = "https://slsa.dev/provenance/v1"
)

var (
	testOptions = Options{Identity: testIdentity, Issuer: testIssuer}
	testDigest  = hashOf("image manifest")
)

func hashOf(s string) v1.Hash {
	sum := sha256.Sum256([]byte(s))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// newSigstore makes a Sigstore and reads its trusted root back from JSON,
// as a verifier configured with the file would.
func newSigstore(t *testing.T) (*Sigstore, *root.TrustedRoot) {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return s, trustedRoot(t, s)
}

func trustedRoot(t *testing.T, s *Sigstore) *root.TrustedRoot {
	t.Helper()
	b, err := s.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		t.Fatalf("trusted root does not parse: %v\n%s", err, b)
	}
	return tr
}

// verifyOpts is what the project's verifier requires of keyless
// signatures: a transparency-log entry and an observer timestamp.
var verifyOpts = []verify.VerifierOption{verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1)}

func mustVerifier(t *testing.T, tm root.TrustedMaterial, opts ...verify.VerifierOption) *verify.Verifier {
	t.Helper()
	if len(opts) == 0 {
		opts = verifyOpts
	}
	v, err := verify.NewVerifier(tm, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func identityPolicy(t *testing.T, artifact verify.ArtifactPolicyOption, identity, issuer string) verify.PolicyBuilder {
	t.Helper()
	id, err := verify.NewShortCertificateIdentity(issuer, "", identity, "")
	if err != nil {
		t.Fatal(err)
	}
	return verify.NewPolicy(artifact, verify.WithCertificateIdentity(id))
}

// digestPolicy requires the statement to name d and the test identity.
func digestPolicy(t *testing.T, d v1.Hash) verify.PolicyBuilder {
	t.Helper()
	raw, err := hex.DecodeString(d.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return identityPolicy(t, verify.WithArtifactDigest("sha256", raw), testIdentity, testIssuer)
}

func parseBundle(t *testing.T, b []byte) *bundle.Bundle {
	t.Helper()
	var pb bundle.Bundle
	if err := pb.UnmarshalJSON(b); err != nil {
		t.Fatalf("bundle does not parse: %v\n%s", err, b)
	}
	return &pb
}

func TestTrustedRoot(t *testing.T) {
	s, tr := newSigstore(t)
	if n := len(tr.FulcioCertificateAuthorities()); n != 1 {
		t.Errorf("%d Fulcio CAs, want 1", n)
	}
	if n := len(tr.RekorLogs()); n != 1 {
		t.Errorf("%d Rekor logs, want 1", n)
	}
	if n := len(tr.TimestampingAuthorities()); n != 1 {
		t.Errorf("%d timestamp authorities, want 1", n)
	}
	if n := len(tr.CTLogs()); n != 0 {
		t.Errorf("%d CT logs, want none: the certificates carry no SCT", n)
	}
	// The timestamp authority outlives the Fulcio CA: every certificate
	// the instance issues gets a timestamp that verifies.
	fulcio := tr.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	tsa := tr.TimestampingAuthorities()[0].(*root.SigstoreTimestampingAuthority)
	if tsa.Leaf == nil || tsa.Leaf.NotAfter.Before(fulcio.ValidityPeriodEnd) || tsa.ValidityPeriodEnd.Before(fulcio.ValidityPeriodEnd) {
		t.Errorf("timestamp authority valid until %v, the Fulcio CA until %v", tsa.Leaf.NotAfter, fulcio.ValidityPeriodEnd)
	}
	b, err := s.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	// The project's own reader (strict JSON, a Fulcio CA and a Rekor log
	// required) takes it, and asks for no SCT.
	pr, err := sigstore.ParseTrustedRoot("sigstoretest", b)
	if err != nil {
		t.Fatal(err)
	}
	if pr.RequiresSCT() {
		t.Error("RequiresSCT: want false for a root without CT logs")
	}
}

func TestSignatureBundleVerifies(t *testing.T) {
	s, tr := newSigstore(t)
	o := testOptions
	o.Annotations = map[string]string{"env": "prod"}
	b, err := s.SignatureBundle(testDigest, o)
	if err != nil {
		t.Fatal(err)
	}
	pb := parseBundle(t, b)
	res, err := mustVerifier(t, tr).Verify(pb, digestPolicy(t, testDigest))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got := res.Statement.GetPredicateType(); got != sigstore.CosignPredicateType {
		t.Errorf("predicateType %q, want %q", got, sigstore.CosignPredicateType)
	}
	// Each observer on its own verifies: the log entry's integrated time,
	// and the RFC 3161 timestamp.
	for name, opts := range map[string][]verify.VerifierOption{
		"integrated time":  {verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1)},
		"signed timestamp": {verify.WithTransparencyLog(1), verify.WithSignedTimestamps(1)},
	} {
		if _, err := mustVerifier(t, tr, opts...).Verify(pb, digestPolicy(t, testDigest)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// The shape cosign v3 writes: v0.3, the leaf alone, one dsse entry
	// with promise and proof, one timestamp.
	var doc struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			Certificate          *struct{ RawBytes []byte } `json:"certificate"`
			X509CertificateChain json.RawMessage            `json:"x509CertificateChain"`
			TlogEntries          []struct {
				KindVersion      struct{ Kind, Version string } `json:"kindVersion"`
				InclusionPromise *struct{}                      `json:"inclusionPromise"`
				InclusionProof   *struct {
					Checkpoint struct{ Envelope string } `json:"checkpoint"`
				} `json:"inclusionProof"`
			} `json:"tlogEntries"`
			TimestampVerificationData struct {
				RFC3161Timestamps []json.RawMessage `json:"rfc3161Timestamps"`
			} `json:"timestampVerificationData"`
		} `json:"verificationMaterial"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	vm := doc.VerificationMaterial
	switch {
	case doc.MediaType != sigstore.BundleMediaType:
		t.Errorf("mediaType %q", doc.MediaType)
	case vm.Certificate == nil || vm.X509CertificateChain != nil:
		t.Error("want verificationMaterial.certificate and no chain")
	case len(vm.TlogEntries) != 1:
		t.Errorf("%d tlog entries, want 1", len(vm.TlogEntries))
	case vm.TlogEntries[0].KindVersion.Kind != "dsse" || vm.TlogEntries[0].InclusionPromise == nil ||
		vm.TlogEntries[0].InclusionProof == nil || vm.TlogEntries[0].InclusionProof.Checkpoint.Envelope == "":
		t.Errorf("tlog entry %+v: want kind dsse with promise and proof", vm.TlogEntries[0])
	case len(vm.TimestampVerificationData.RFC3161Timestamps) != 1:
		t.Errorf("%d timestamps, want 1", len(vm.TimestampVerificationData.RFC3161Timestamps))
	}

	// The project's reader takes it and finds the digest and annotations.
	sig := sigstore.SignatureFromBundle(b, "test")
	c, err := sig.Claims()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Digests, []v1.Hash{testDigest}) || c.PredicateType != sigstore.CosignPredicateType ||
		c.AnnotationsOf(testDigest)["env"] != "prod" {
		t.Errorf("claims %+v", c)
	}
	if cert, err := x509.ParseCertificate(sig.Certificate); err != nil || !slices.Equal(cert.EmailAddresses, []string{testIdentity}) {
		t.Errorf("certificate of the project's reader: %v", err)
	}
}

func TestSignatureStatementWithoutAnnotations(t *testing.T) {
	s, _ := newSigstore(t)
	b, err := s.SignatureBundle(testDigest, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	sig := sigstore.SignatureFromBundle(b, "test")
	if sig.Err != nil {
		t.Fatal(sig.Err)
	}
	want := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + testDigest.Hex +
		`"},"annotations":{}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`
	if string(sig.Payload) != want {
		t.Errorf("statement\n%s\nwant cosign's\n%s", sig.Payload, want)
	}
}

func TestBundleRefusals(t *testing.T) {
	s, tr := newSigstore(t)
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	otherRoot := trustedRoot(t, other)

	good, err := s.SignatureBundle(testDigest, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	noTlog, err := s.SignatureBundle(testDigest, Options{Identity: testIdentity, Issuer: testIssuer, NoTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	otherBytes, err := s.SignatureBundle(testDigest, Options{Identity: testIdentity, Issuer: testIssuer, OtherBytes: true})
	if err != nil {
		t.Fatal(err)
	}
	attNoTlog, err := s.AttestationBundle(testDigest, slsaType, map[string]any{"buildType": "x"}, Options{Identity: testIdentity, Issuer: testIssuer, NoTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	attOther, err := s.AttestationBundle(testDigest, slsaType, map[string]any{"buildType": "x"}, Options{Identity: testIdentity, Issuer: testIssuer, OtherBytes: true})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		bundle []byte
		tm     root.TrustedMaterial
		policy verify.PolicyBuilder
		want   string
	}{
		{"NoTlog", noTlog, tr, digestPolicy(t, testDigest), "transparency log"},
		{"OtherBytes", otherBytes, tr, digestPolicy(t, testDigest), "transparency log"},
		{"attestation NoTlog", attNoTlog, tr, digestPolicy(t, testDigest), "transparency log"},
		{"attestation OtherBytes", attOther, tr, digestPolicy(t, testDigest), "transparency log"},
		{"another instance's root", good, otherRoot, digestPolicy(t, testDigest), ""},
		{"other identity", good, tr, identityPolicy(t, verify.WithArtifactDigest("sha256", hexBytes(t, testDigest.Hex)), "mallory@example.com", testIssuer), "certificate identity"},
		{"other issuer", good, tr, identityPolicy(t, verify.WithArtifactDigest("sha256", hexBytes(t, testDigest.Hex)), testIdentity, "https://other.example"), "certificate identity"},
		{"other digest", good, tr, digestPolicy(t, hashOf("another image")), "digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustVerifier(t, tc.tm).Verify(parseBundle(t, tc.bundle), tc.policy)
			if err == nil {
				t.Fatal("verified, want a refusal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}

	// NoTlog and OtherBytes only touch the log entry: without requiring
	// one, the signature, certificate and timestamp verify.
	for name, b := range map[string][]byte{"NoTlog": noTlog, "OtherBytes": otherBytes, "attestation NoTlog": attNoTlog, "attestation OtherBytes": attOther} {
		if _, err := mustVerifier(t, tr, verify.WithSignedTimestamps(1)).Verify(parseBundle(t, b), digestPolicy(t, testDigest)); err != nil {
			t.Errorf("%s without a log requirement: %v", name, err)
		}
	}
	// The OtherBytes entry is genuine: the log signed it.
	entries, err := parseBundle(t, otherBytes).TlogEntries()
	if err != nil || len(entries) != 1 {
		t.Fatalf("OtherBytes: %d entries, %v", len(entries), err)
	}
	if err := tlog.VerifySET(entries[0], tr.RekorLogs()); err != nil {
		t.Errorf("OtherBytes entry's SET: %v", err)
	}
	if noTlogEntries, _ := parseBundle(t, noTlog).TlogEntries(); len(noTlogEntries) != 0 {
		t.Errorf("NoTlog: %d entries", len(noTlogEntries))
	}
}

func TestIntegratedTime(t *testing.T) {
	s, tr := newSigstore(t)
	v := mustVerifier(t, tr, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1))
	for _, tc := range []struct {
		name   string
		offset time.Duration // after now
		ok     bool
	}{
		{"within the certificate's validity", time.Minute, true},
		{"after the certificate expired", 20 * time.Minute, false},
		{"before it was issued", -10 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := time.Now().Add(tc.offset).Truncate(time.Second)
			b, err := s.SignatureBundle(testDigest, Options{Identity: testIdentity, Issuer: testIssuer, IntegratedTime: at})
			if err != nil {
				t.Fatal(err)
			}
			pb := parseBundle(t, b)
			entries, err := pb.TlogEntries()
			if err != nil || len(entries) != 1 {
				t.Fatalf("%d entries, %v", len(entries), err)
			}
			if got := entries[0].IntegratedTime(); !got.Equal(at) {
				t.Errorf("integrated time %v, want %v", got, at)
			}
			_, err = v.Verify(pb, digestPolicy(t, testDigest))
			if tc.ok && err != nil {
				t.Errorf("verify: %v", err)
			}
			if !tc.ok && err == nil {
				t.Error("verified with an integrated time outside the certificate's validity")
			}
		})
	}
	// The default: issue time plus 5 minutes.
	b, err := s.SignatureBundle(testDigest, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	pb := parseBundle(t, b)
	entries, _ := pb.TlogEntries()
	vc, err := pb.VerificationContent()
	if err != nil || len(entries) != 1 {
		t.Fatal(err)
	}
	if got, want := entries[0].IntegratedTime(), vc.Certificate().NotBefore.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("default integrated time %v, want %v", got, want)
	}
}

func TestAttestationBundleVerifies(t *testing.T) {
	s, tr := newSigstore(t)
	o := testOptions
	o.SubjectName = testRef
	predicate := map[string]any{"buildDefinition": map[string]any{"buildType": "https://example.com/build"}}
	b, err := s.AttestationBundle(testDigest, slsaType, predicate, o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mustVerifier(t, tr).Verify(parseBundle(t, b), digestPolicy(t, testDigest))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	st := res.Statement
	if st.GetPredicateType() != slsaType || st.GetType() != inTotoStatementV01 ||
		len(st.GetSubject()) != 1 || st.GetSubject()[0].GetName() != testRef {
		t.Errorf("statement %v", st)
	}
	got, err := st.GetPredicate().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, []byte(`{"buildDefinition":{"buildType":"https://example.com/build"}}`)) {
		t.Errorf("predicate %s", got)
	}
	c, err := sigstore.SignatureFromBundle(b, "test").Claims()
	if err != nil {
		t.Fatal(err)
	}
	if c.PredicateType != slsaType || !slices.Equal(c.Digests, []v1.Hash{testDigest}) {
		t.Errorf("claims %+v", c)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

func TestInputErrors(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	bad := v1.Hash{Algorithm: "sha256", Hex: strings.ToUpper(testDigest.Hex)}
	for name, f := range map[string]func() error{
		"no identity": func() error { _, err := s.SignatureBundle(testDigest, Options{Issuer: testIssuer}); return err },
		"no issuer": func() error {
			_, _, err := s.SimpleSigningLayer(testRef, testDigest, Options{Identity: testIdentity})
			return err
		},
		"uppercase digest": func() error { _, err := s.SignatureBundle(bad, testOptions); return err },
		"sha512 digest": func() error {
			_, err := s.SignatureBundle(v1.Hash{Algorithm: "sha512", Hex: testDigest.Hex + testDigest.Hex}, testOptions)
			return err
		},
		"empty reference": func() error { _, _, err := s.SimpleSigningLayer("", testDigest, testOptions); return err },
		"predicate not an object": func() error {
			_, err := s.AttestationBundle(testDigest, slsaType, []string{"a"}, testOptions)
			return err
		},
		"predicate not JSON": func() error {
			_, _, err := s.AttestationEnvelope(testDigest, slsaType, []byte("{"), testOptions)
			return err
		},
		"signature predicate type": func() error {
			_, err := s.AttestationBundle(testDigest, sigstore.CosignPredicateType, map[string]any{}, testOptions)
			return err
		},
		"empty predicate type": func() error {
			_, _, err := KeyAttestationEnvelope(key, testDigest, "", map[string]any{})
			return err
		},
		"attestation annotations": func() error {
			_, err := s.AttestationBundle(testDigest, slsaType, map[string]any{}, Options{Identity: testIdentity, Issuer: testIssuer, Annotations: map[string]string{"a": "b"}})
			return err
		},
		"no key": func() error {
			_, _, err := KeyAttestationEnvelope(nil, testDigest, slsaType, map[string]any{})
			return err
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Raw JSON predicates are taken as JSON, not as bytes to encode.
	for _, p := range []any{[]byte(`{"a": 1}`), json.RawMessage(`{"a":1}`), map[string]int{"a": 1}} {
		b, err := s.AttestationBundle(testDigest, slsaType, p, testOptions)
		if err != nil {
			t.Fatalf("%T: %v", p, err)
		}
		c, err := sigstore.SignatureFromBundle(b, "").Claims()
		if err != nil || string(c.Predicate) != `{"a":1}` {
			t.Errorf("%T: predicate %s, %v", p, c.Predicate, err)
		}
	}
}

func testKey(t *testing.T) sigstore.PrivateKey {
	t.Helper()
	privPEM, _, err := sigstore.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sigstore.ParsePrivateKey(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// --- legacy layers ---

// legacyEntity is a legacy .sig or .att layer as a sigstore-go entity: the
// leaf certificate, the signature, and the Rekor bundle annotation as a
// log entry with its SET. The project converts layers the same way in
// sigstore.Signature.Entity; this one lets these tests check the layers
// with sigstore-go alone.
type legacyEntity struct {
	cert    *x509.Certificate
	content verify.SignatureContent
	entries []*tlog.Entry
}

func (e *legacyEntity) HasInclusionPromise() bool { return len(e.entries) > 0 }
func (e *legacyEntity) HasInclusionProof() bool   { return false }
func (e *legacyEntity) SignatureContent() (verify.SignatureContent, error) {
	return e.content, nil
}
func (e *legacyEntity) Timestamps() ([][]byte, error)       { return nil, nil }
func (e *legacyEntity) TlogEntries() ([]*tlog.Entry, error) { return e.entries, nil }
func (e *legacyEntity) Version() (string, error)            { return "v0.1", nil }
func (e *legacyEntity) VerificationContent() (verify.VerificationContent, error) {
	return bundle.NewCertificate(e.cert), nil
}

// cosignRekorBundle is the dev.sigstore.cosign/bundle annotation.
type cosignRekorBundle struct {
	SignedEntryTimestamp []byte
	Payload              struct {
		Body           []byte `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	}
}

// checkKeylessAnnotations checks the certificate, chain and Rekor bundle
// annotations of a layer and returns the leaf and the log entry (nil
// without the bundle annotation).
func checkKeylessAnnotations(t *testing.T, tr *root.TrustedRoot, ann map[string]string) (*x509.Certificate, *tlog.Entry, models.ProposedEntry) {
	t.Helper()
	leaf := pemCertificates(t, ann[sigstore.CertificateAnnotation])
	if len(leaf) != 1 {
		t.Fatalf("certificate annotation holds %d certificates, want 1", len(leaf))
	}
	if !slices.Equal(leaf[0].EmailAddresses, []string{testIdentity}) || issuerOf(leaf[0]) != testIssuer {
		t.Errorf("certificate SAN %v, issuer %q", leaf[0].EmailAddresses, issuerOf(leaf[0]))
	}
	chain := pemCertificates(t, ann[sigstore.ChainAnnotation])
	fulcio := tr.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	if len(chain) != 2 || !chain[0].Equal(fulcio.Intermediates[0]) || !chain[1].Equal(fulcio.Root) {
		t.Errorf("chain annotation: %d certificates, want the Fulcio intermediate then root", len(chain))
	}
	raw, ok := ann[sigstore.RekorBundleAnnotation]
	if !ok {
		return leaf[0], nil, nil
	}
	var rb cosignRekorBundle
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rb); err != nil {
		t.Fatalf("Rekor bundle annotation: %v\n%s", err, raw)
	}
	for _, k := range []string{`"SignedEntryTimestamp":`, `"Payload":{"body":`, `"integratedTime":`, `"logIndex":`, `"logID":`} {
		if !strings.Contains(raw, k) {
			t.Errorf("Rekor bundle annotation lacks %s: %s", k, raw)
		}
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := tlog.NewEntry(rb.Payload.Body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil) //nolint:staticcheck // the legacy format is Rekor v1
	if err != nil {
		t.Fatalf("Rekor entry: %v", err)
	}
	if err := tlog.VerifySET(entry, tr.RekorLogs()); err != nil {
		t.Errorf("SET: %v", err)
	}
	pe, err := models.UnmarshalProposedEntry(bytes.NewReader(rb.Payload.Body), nil)
	if err != nil {
		t.Fatal(err)
	}
	return leaf[0], entry, pe
}

func pemCertificates(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("junk after the PEM blocks: %q", rest)
	}
	return out
}

func issuerOf(c *x509.Certificate) string {
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}) {
			return string(e.Value)
		}
	}
	return ""
}

func TestSimpleSigningLayer(t *testing.T) {
	s, tr := newSigstore(t)
	o := testOptions
	o.Annotations = map[string]string{"env": "prod"}

	layer := func(t *testing.T, o Options) ([]byte, []byte, *legacyEntity, models.ProposedEntry) {
		payload, ann, err := s.SimpleSigningLayer(testRef, testDigest, o)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := base64.StdEncoding.DecodeString(ann[sigstore.SignatureAnnotation])
		if err != nil || len(sig) == 0 {
			t.Fatalf("signature annotation %q: %v", ann[sigstore.SignatureAnnotation], err)
		}
		leaf, entry, pe := checkKeylessAnnotations(t, tr, ann)
		sum := sha256.Sum256(payload)
		e := &legacyEntity{cert: leaf, content: bundle.NewMessageSignature(sum[:], "SHA2_256", sig)}
		if entry != nil {
			e.entries = []*tlog.Entry{entry}
		}
		return payload, sig, e, pe
	}
	policy := func(payload []byte) verify.PolicyBuilder {
		return identityPolicy(t, verify.WithArtifact(bytes.NewReader(payload)), testIdentity, testIssuer)
	}

	payload, sig, e, pe := layer(t, o)
	p, err := sigstore.ParsePayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	if p.Reference != testRef || p.Digest != testDigest || p.Annotations["env"] != "prod" {
		t.Errorf("payload %+v", p)
	}
	hr, ok := pe.(*models.Hashedrekord)
	if !ok {
		t.Fatalf("Rekor entry %T, want a hashedrekord", pe)
	}
	sum := sha256.Sum256(payload)
	spec, _ := json.Marshal(hr.Spec)
	if !strings.Contains(string(spec), hex.EncodeToString(sum[:])) || !strings.Contains(string(spec), base64.StdEncoding.EncodeToString(sig)) {
		t.Errorf("hashedrekord does not bind the payload's digest and signature: %s", spec)
	}
	if _, err := mustVerifier(t, tr).Verify(e, policy(payload)); err != nil {
		t.Errorf("verify: %v", err)
	}

	t.Run("NoTlog", func(t *testing.T) {
		payload, _, e, _ := layer(t, Options{Identity: testIdentity, Issuer: testIssuer, NoTlog: true})
		if len(e.entries) != 0 {
			t.Fatal("a Rekor bundle annotation with NoTlog")
		}
		if _, err := mustVerifier(t, tr).Verify(e, policy(payload)); err == nil {
			t.Error("verified without a log entry")
		}
	})
	t.Run("OtherBytes", func(t *testing.T) {
		payload, _, e, pe := layer(t, Options{Identity: testIdentity, Issuer: testIssuer, OtherBytes: true})
		sum := sha256.Sum256(payload)
		spec, _ := json.Marshal(pe.(*models.Hashedrekord).Spec)
		if strings.Contains(string(spec), hex.EncodeToString(sum[:])) {
			t.Error("the OtherBytes entry binds the payload")
		}
		if _, err := mustVerifier(t, tr).Verify(e, policy(payload)); err == nil {
			t.Error("verified with a log entry for other bytes")
		}
	})
	t.Run("no annotations", func(t *testing.T) {
		payload, _, err := s.SimpleSigningLayer(testRef, testDigest, testOptions)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(payload), `"optional":null}`) {
			t.Errorf("payload %s: want \"optional\":null as cosign writes", payload)
		}
	})
}

func TestAttestationEnvelope(t *testing.T) {
	s, tr := newSigstore(t)
	o := testOptions
	o.SubjectName = testRef

	layer := func(t *testing.T, o Options) ([]byte, map[string]string, *legacyEntity, models.ProposedEntry) {
		envJSON, ann, err := s.AttestationEnvelope(testDigest, slsaType, map[string]any{"buildType": "x"}, o)
		if err != nil {
			t.Fatal(err)
		}
		var env dsse.Envelope
		dec := json.NewDecoder(bytes.NewReader(envJSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			t.Fatal(err)
		}
		leaf, entry, pe := checkKeylessAnnotations(t, tr, ann)
		e := &legacyEntity{cert: leaf, content: &bundle.Envelope{Envelope: &env}}
		if entry != nil {
			e.entries = []*tlog.Entry{entry}
		}
		return envJSON, ann, e, pe
	}

	envJSON, ann, e, pe := layer(t, o)
	if ann[sigstore.SignatureAnnotation] != "" || ann[sigstore.PredicateTypeAnnotation] != slsaType {
		t.Errorf("annotations %v: want an empty signature and the predicate type", ann)
	}
	if _, ok := ann[sigstore.SignatureAnnotation]; !ok {
		t.Error("no signature annotation: cosign writes an empty one")
	}
	if !bytes.HasPrefix(envJSON, []byte(`{"payload":"`)) || !bytes.Contains(envJSON, []byte(`,"payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"`)) {
		t.Errorf("envelope %s: want cosign v3's field order, no keyid", envJSON)
	}
	if _, ok := pe.(*models.DSSE); !ok {
		t.Errorf("Rekor entry %T, want dsse", pe)
	}
	res, err := mustVerifier(t, tr).Verify(e, digestPolicy(t, testDigest))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if res.Statement.GetPredicateType() != slsaType || res.Statement.GetSubject()[0].GetName() != testRef {
		t.Errorf("statement %v", res.Statement)
	}
	// The project's claims parser reads the statement.
	var raw struct {
		Payload     []byte `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig []byte `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(envJSON, &raw); err != nil {
		t.Fatal(err)
	}
	c, err := sigstore.Signature{Format: sigstore.FormatAttestation, Payload: raw.Payload, PayloadType: raw.PayloadType,
		Signed: sigstore.PAE(raw.PayloadType, raw.Payload), Sig: raw.Signatures[0].Sig}.Claims()
	if err != nil || c.PredicateType != slsaType || !slices.Equal(c.Digests, []v1.Hash{testDigest}) {
		t.Errorf("claims %+v, %v", c, err)
	}

	for name, o := range map[string]Options{
		"NoTlog":     {Identity: testIdentity, Issuer: testIssuer, NoTlog: true},
		"OtherBytes": {Identity: testIdentity, Issuer: testIssuer, OtherBytes: true},
	} {
		t.Run(name, func(t *testing.T) {
			_, ann, e, _ := layer(t, o)
			if _, ok := ann[sigstore.RekorBundleAnnotation]; ok == o.NoTlog {
				t.Errorf("Rekor bundle annotation present: %v, want %v", ok, !o.NoTlog)
			}
			if _, err := mustVerifier(t, tr).Verify(e, digestPolicy(t, testDigest)); err == nil {
				t.Error("verified")
			}
		})
	}
}

func TestKeyAttestationEnvelope(t *testing.T) {
	key := testKey(t)
	envJSON, ann, err := KeyAttestationEnvelope(key, testDigest, slsaType, map[string]any{"buildType": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ann) != 2 || ann[sigstore.PredicateTypeAnnotation] != slsaType {
		t.Errorf("annotations %v", ann)
	}
	if v, ok := ann[sigstore.SignatureAnnotation]; !ok || v != "" {
		t.Errorf("signature annotation %q, %v: want present and empty", v, ok)
	}
	var env struct {
		Payload     []byte `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig []byte `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(envJSON, &env); err != nil {
		t.Fatal(err)
	}
	if len(env.Signatures) != 1 {
		t.Fatalf("%d signatures", len(env.Signatures))
	}
	signed := sigstore.PAE(env.PayloadType, env.Payload)
	if err := key.Public().Verify(signed, env.Signatures[0].Sig); err != nil {
		t.Errorf("signature: %v", err)
	}
	other := testKey(t)
	if err := other.Public().Verify(signed, env.Signatures[0].Sig); err == nil {
		t.Error("another key verifies the signature")
	}
	c, err := sigstore.Signature{Format: sigstore.FormatAttestation, Payload: env.Payload, PayloadType: env.PayloadType,
		Signed: signed, Sig: env.Signatures[0].Sig}.Claims()
	if err != nil || c.PredicateType != slsaType || !slices.Equal(c.Digests, []v1.Hash{testDigest}) || string(c.Predicate) != `{"buildType":"x"}` {
		t.Errorf("claims %+v, %v", c, err)
	}
}

// TestNotImportedByBinary checks that no command of the module links this
// package or sigstore-go's test CA.
func TestNotImportedByBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goBin, "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, "github.com/cosign-dev/cosign/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", exitErr(err))
	}
	mains := strings.Fields(string(out))
	if len(mains) == 0 {
		t.Fatal("no main package in the module")
	}
	deps, err := exec.Command(goBin, append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, mains...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", exitErr(err))
	}
	for _, p := range strings.Fields(string(deps)) {
		if p == "github.com/cosign-dev/cosign/sigstore/sigstoretest" || p == "github.com/sigstore/sigstore-go/pkg/testing/ca" {
			t.Errorf("%s is linked into %v", p, mains)
		}
	}
}

func exitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errors.New(err.Error() + ": " + string(ee.Stderr))
	}
	return err
}

func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrentUse signs from several goroutines at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	s, tr := newSigstore(t)
	v := mustVerifier(t, tr)
	errs := make(chan error, 8)
	for i := range 8 {
		d := hashOf(strings.Repeat("x", i))
		policy := digestPolicy(t, d)
		go func() {
			b, err := s.SignatureBundle(d, testOptions)
			if err == nil {
				var pb bundle.Bundle
				if err = pb.UnmarshalJSON(b); err == nil {
					_, err = v.Verify(&pb, policy)
				}
			}
			if err == nil {
				_, _, err = s.SimpleSigningLayer(testRef, d, testOptions)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
)

// The public-good vectors: a trusted root and a keyless bundle made by the
// real public Fulcio, Rekor and CT log (sigstore-go's test data). The
// certificate expired in 2022; the log entry proves it was valid when used.
const (
	publicGoodRoot   = "../sigstore/testdata/public-good/trusted_root.json"
	publicGoodBundle = "../sigstore/testdata/public-good/slsa-provenance-npm.sigstore.json"
	publicGoodSAN    = "brian@dehamer.com"
	publicGoodIssuer = "https://github.com/login/oauth"
)

func publicGood(t testing.TB) (*sigstore.TrustedRoot, sigstore.Signature) {
	t.Helper()
	rootJSON, err := os.ReadFile(publicGoodRoot)
	if err != nil {
		t.Fatal(err)
	}
	root, err := sigstore.ParseTrustedRoot("public-good", rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(publicGoodBundle)
	if err != nil {
		t.Fatal(err)
	}
	sig := sigstore.SignatureFromBundle(b, "public-good bundle")
	if sig.Err != nil {
		t.Fatalf("SignatureFromBundle: %v", sig.Err)
	}
	if !sig.Keyless() {
		t.Fatal("the public-good bundle has no certificate")
	}
	return root, sig
}

func keylessPolicy(root *sigstore.TrustedRoot, ids ...Identity) *Policy {
	return &Policy{Name: "keyless", Match: []string{testRegistry + "/prod/**"}, Keyless: &Keyless{TrustedRoot: root, Identities: ids}}
}

// TestPublicGoodKeyless verifies a real public-good certificate, SCT and
// Rekor entry offline, and matches its identity.
func TestPublicGoodKeyless(t *testing.T) {
	root, sig := publicGood(t)
	for _, tc := range []struct {
		name     string
		ids      []Identity
		identity int
		reason   Reason
		want     string
	}{
		{"exact", []Identity{{Issuer: publicGoodIssuer, Subject: publicGoodSAN}}, 0, "", ""},
		{"regexp", []Identity{{IssuerRegExp: `^https://github\.com/login/oauth$`, SubjectRegExp: `^[a-z]+@dehamer\.com$`}}, 0, "", ""},
		{"second entry", []Identity{{Issuer: publicGoodIssuer, Subject: "mallory@dehamer.com"}, {Issuer: publicGoodIssuer, Subject: publicGoodSAN}}, 1, "", ""},
		{"other subject", []Identity{{Issuer: publicGoodIssuer, Subject: "mallory@dehamer.com"}}, -1, ReasonCertificateIdentity,
			"certificate identity mismatch (issuer " + publicGoodIssuer + ", subject " + publicGoodSAN + ")"},
		{"other issuer", []Identity{{Issuer: "https://accounts.google.com", Subject: publicGoodSAN}}, -1, ReasonCertificateIdentity, "certificate identity mismatch"},
		{"subject regexp too narrow", []Identity{{Issuer: publicGoodIssuer, SubjectRegExp: `^brian@example\.com$`}}, -1, ReasonCertificateIdentity, "certificate identity mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := compileKeyless(&Keyless{TrustedRoot: root, Identities: tc.ids})
			if err != nil {
				t.Fatal(err)
			}
			r := kc.verifyKeyless(&sig, nil)
			if r.identity != tc.identity || r.reason != tc.reason {
				t.Fatalf("got identity %d, reason %q (%s); want %d, %q", r.identity, r.reason, r.detail, tc.identity, tc.reason)
			}
			if !strings.Contains(r.detail, tc.want) {
				t.Errorf("detail %q does not say %q", r.detail, tc.want)
			}
		})
	}
}

// TestPublicGoodKeylessTampered: each part of the bundle is checked
// against the trusted root: the CT log key (SCT), the Rekor key (log entry),
// the Fulcio CA (chain), and the DSSE signature itself.
func TestPublicGoodKeylessTampered(t *testing.T) {
	rootJSON, err := os.ReadFile(publicGoodRoot)
	if err != nil {
		t.Fatal(err)
	}
	_, sig := publicGood(t)
	ids := []Identity{{Issuer: publicGoodIssuer, Subject: publicGoodSAN}}

	// A root whose CT logs or Rekor log keep their IDs but carry another
	// key must refuse it.
	for _, tc := range []struct{ name, field, want string }{
		{"CT log", "ctlogs", "signed certificate timestamp"},
		{"Rekor log", "tlogs", "transparency log"},
	} {
		t.Run("other "+tc.name+" key", func(t *testing.T) {
			doc := rootDoc(t, rootJSON)
			for _, e := range doc[tc.field].([]any) {
				e.(map[string]any)["publicKey"].(map[string]any)["rawBytes"] = freshKeyDER(t)
			}
			r := verifyWithRoot(t, doc, ids, sig)
			if r.identity >= 0 || r.reason != ReasonKeyless || !strings.Contains(r.detail, tc.want) {
				t.Fatalf("got identity %d, reason %q: %s; want a refusal naming %q", r.identity, r.reason, r.detail, tc.want)
			}
		})
	}

	// Of the root's Fulcio CAs, exactly one issued the certificate: a root
	// with only another one refuses it.
	t.Run("other Fulcio CA", func(t *testing.T) {
		cas := rootDoc(t, rootJSON)["certificateAuthorities"].([]any)
		verified, refused := 0, 0
		for i := range cas {
			doc := rootDoc(t, rootJSON)
			doc["certificateAuthorities"] = []any{doc["certificateAuthorities"].([]any)[i]}
			r := verifyWithRoot(t, doc, ids, sig)
			switch {
			case r.identity == 0:
				verified++
			case r.reason == ReasonKeyless && strings.Contains(r.detail, "Fulcio CA"):
				refused++
			default:
				t.Errorf("CA %d: identity %d, reason %q: %s", i, r.identity, r.reason, r.detail)
			}
		}
		if verified != 1 || refused != len(cas)-1 {
			t.Fatalf("%d CAs verified, %d refused; want 1 and %d", verified, refused, len(cas)-1)
		}
	})
}

func rootDoc(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func verifyWithRoot(t *testing.T, doc map[string]any, ids []Identity, sig sigstore.Signature) keylessResult {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	root, err := sigstore.ParseTrustedRoot("tampered", b)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := compileKeyless(&Keyless{TrustedRoot: root, Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	return kc.verifyKeyless(&sig, nil)
}

// freshKeyDER is the base64 PKIX DER of a new P-256 key.
func freshKeyDER(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestPublicGoodBindsItsSubject: the public-good bundle is an npm
// provenance, not an image signature: a policy that trusts its signer still
// refuses it for an image, because its statement binds no sha256 image
// digest.
func TestPublicGoodBindsItsSubject(t *testing.T) {
	root, sig := publicGood(t)
	p := keylessPolicy(root, Identity{Issuer: publicGoodIssuer, Subject: publicGoodSAN})
	d := Evaluate(p, testImage("image"), []sigstore.Signature{sig})
	if d.Admit || len(d.Identities) != 0 {
		t.Fatalf("admitted an npm provenance for an image: %s", d.Message)
	}
	if d.Reason != ReasonInvalid || !strings.Contains(d.Message, "no sha256 digest") {
		t.Errorf("reason %q: %s", d.Reason, d.Message)
	}
}

// TestKeySignatureWithCertificate: a signature made with a key the policy
// names counts for that key even when it carries a certificate (cosign sign
// --key K --certificate C), whether or not the policy has keyless signers;
// one made by another key does not, whatever certificate it carries.
func TestKeySignatureWithCertificate(t *testing.T) {
	root, pg := publicGood(t)
	k, other := newEd25519(t), newEd25519(t)
	img := testImage("image")
	withCert := func(s sigstore.Signature) sigstore.Signature {
		s.Certificate, s.Chain = pg.Certificate, pg.Chain
		return s
	}
	mine := withCert(simpleSig(t, k, testRef, img.Digest, nil))
	theirs := withCert(simpleSig(t, other, testRef, img.Digest, nil))
	keyless := keylessPolicy(root, Identity{Issuer: publicGoodIssuer, Subject: publicGoodSAN})
	keyless.Keys = []sigstore.PublicKey{k.Public()}
	for _, p := range []*Policy{testPolicy(k), keyless} {
		if d := Evaluate(p, img, []sigstore.Signature{mine}); !d.Admit || len(d.Keys) != 1 {
			t.Errorf("policy %q, key signature with a certificate: %s", p.Name, d.Message)
		}
		if d := Evaluate(p, img, []sigstore.Signature{theirs}); d.Admit {
			t.Errorf("policy %q, another key's signature with a certificate admitted: %s", p.Name, d.Message)
		}
	}
}

package verifier

import (
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
)

// TestKeylessMemoIsCanonical: copies of one keyless bundle that differ only
// in JSON spelling are verified once per lookup, so that an attacker who
// respaces one bundle into a thousand referrers pays for a thousand reads,
// not a thousand verifications; a bundle that differs in substance is
// verified on its own.
func TestKeylessMemoIsCanonical(t *testing.T) {
	ss, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	rootJSON, err := ss.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	root, err := sigstore.ParseTrustedRoot("private", rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage("image")
	o := sigstoretest.Options{Identity: "ci@acme.example", Issuer: "https://issuer.example"}
	raw, err := ss.SignatureBundle(img.Digest, o)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ss.SignatureBundle(img.Digest, o)
	if err != nil {
		t.Fatal(err)
	}
	var sigs []sigstore.Signature
	for i := range 50 {
		b := append([]byte("{"+strings.Repeat(" ", i)), raw[1:]...)
		sigs = append(sigs, sigstore.SignatureFromBundle(b, "copy"))
	}
	sigs = append(sigs, sigstore.SignatureFromBundle(other, "other"))
	p := &Policy{Name: "k", Match: []string{"**"}, Keyless: &Keyless{TrustedRoot: root,
		Identities: []Identity{{Issuer: o.Issuer, Subject: o.Identity}}}}
	memo := keylessMemo{}
	tl, err := newTally(p, img, memo)
	if err != nil {
		t.Fatal(err)
	}
	tl.considerAll(sigs)
	if len(memo) != 2 {
		t.Fatalf("%d keyless verifications for 50 spellings of one bundle and one other bundle; want 2", len(memo))
	}
	if d := tl.decision(sigs); !d.Admit {
		t.Fatalf("refused: %s", d.Message)
	}
}

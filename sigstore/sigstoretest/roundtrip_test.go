package sigstoretest

import (
	"context"
	"crypto/sha256"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/cosign-dev/cosign/sigstore"
)

// TestRoundTripThroughFetcher writes every artifact into a registry
// without the referrers API (as CNCF distribution 2.8), reads it back with
// the project's reader (sigstore.Fetcher), turns each keyless one into a
// sigstore-go entity (sigstore.Signature.Entity) and verifies that with
// sigstore-go against the trusted root: what this package writes is what
// the project reads, and the broken variants stay broken on the way.
func TestRoundTripThroughFetcher(t *testing.T) {
	ctx := context.Background()
	s, tr := newSigstore(t)
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	otherRoot := trustedRoot(t, other)
	r := newRegistry(t, false)
	good := r.pushImage(t, "good")
	bad := r.pushImage(t, "bad")
	ref := r.repo.String()
	predicate := map[string]any{"buildType": "https://example.com/build"}
	key := testKey(t)

	write := func(d v1.Hash, o Options) {
		t.Helper()
		b, err := s.SignatureBundle(d, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSignatureBundle(ctx, r.repo, d, b); err != nil {
			t.Fatal(err)
		}
		payload, ann, err := s.SimpleSigningLayer(ref, d, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSimpleSigning(ctx, r.repo, d, payload, ann); err != nil {
			t.Fatal(err)
		}
		ao := o
		ao.Annotations, ao.SubjectName = nil, ref
		env, ann, err := s.AttestationEnvelope(d, slsaType, predicate, ao)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteAttestation(ctx, r.repo, d, env, ann); err != nil {
			t.Fatal(err)
		}
		ab, err := s.AttestationBundle(d, slsaType, predicate, ao)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteAttestationBundle(ctx, r.repo, d, ab); err != nil {
			t.Fatal(err)
		}
	}
	withAnnotations := testOptions
	withAnnotations.Annotations = map[string]string{"env": "prod"}
	write(good, withAnnotations)
	write(good, Options{Identity: testIdentity, Issuer: testIssuer, EmptyChain: true})
	env, ann, err := KeyAttestationEnvelope(key, good, slsaType, predicate)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteAttestation(ctx, r.repo, good, env, ann); err != nil {
		t.Fatal(err)
	}
	write(bad, Options{Identity: testIdentity, Issuer: testIssuer, NoTlog: true})
	write(bad, Options{Identity: testIdentity, Issuer: testIssuer, OtherBytes: true})

	f := sigstore.NewFetcher(r.url, nil)
	read := func(d v1.Hash) []sigstore.Signature {
		t.Helper()
		sigs, err := f.Signatures(ctx, r.repo.RepositoryStr(), d)
		if err != nil {
			t.Fatal(err)
		}
		atts, err := f.Attestations(ctx, r.repo.RepositoryStr(), d)
		if err != nil {
			t.Fatal(err)
		}
		all := append(sigs, atts...)
		for _, s := range all {
			if s.Err != nil {
				t.Fatalf("%s: %v", s.Where, s.Err)
			}
		}
		return all
	}
	count := func(sigs []sigstore.Signature) map[sigstore.Format]int {
		n := map[sigstore.Format]int{}
		for _, s := range sigs {
			n[s.Format]++
		}
		return n
	}

	goodSigs := read(good)
	// Per write: a signature bundle and an attestation bundle (referrers),
	// a .sig layer, a .att layer; and the key-signed .att layer.
	if n := count(goodSigs); n[sigstore.FormatBundle] != 4 || n[sigstore.FormatSimpleSigning] != 2 || n[sigstore.FormatAttestation] != 3 {
		t.Fatalf("read %v", n)
	}
	keyless := 0
	for _, sig := range goodSigs {
		if !sig.Keyless() {
			if _, err := sig.Entity(); err == nil {
				t.Errorf("%s: an entity for a key signature", sig.Where)
			}
			if err := key.Public().Verify(sig.Signed, sig.Sig); err != nil {
				t.Errorf("%s: key signature: %v", sig.Where, err)
			}
			continue
		}
		keyless++
		e, err := sig.Entity()
		if err != nil {
			t.Fatalf("%s: %v", sig.Where, err)
		}
		policy := entityPolicy(t, sig, good)
		res, err := mustVerifier(t, tr).Verify(e, policy)
		if err != nil {
			t.Errorf("%s (%s): %v", sig.Where, sig.Format, err)
			continue
		}
		if _, err := mustVerifier(t, otherRoot).Verify(e, policy); err == nil {
			t.Errorf("%s: verified with another instance's root", sig.Where)
		}
		c, err := sig.Claims()
		if err != nil {
			t.Fatalf("%s: %v", sig.Where, err)
		}
		if c.PredicateType == slsaType && (res.Statement == nil || res.Statement.GetPredicateType() != slsaType) {
			t.Errorf("%s: sigstore-go's statement %v", sig.Where, res.Statement)
		}
	}
	if keyless != 8 {
		t.Errorf("%d keyless signatures, want 8", keyless)
	}

	badSigs := read(bad)
	if n := count(badSigs); n[sigstore.FormatBundle] != 4 || n[sigstore.FormatSimpleSigning] != 2 || n[sigstore.FormatAttestation] != 2 {
		t.Fatalf("read %v", n)
	}
	for _, sig := range badSigs {
		e, err := sig.Entity()
		if err != nil {
			continue // refused already
		}
		if _, err := mustVerifier(t, tr).Verify(e, entityPolicy(t, sig, bad)); err == nil {
			t.Errorf("%s (%s): a NoTlog or OtherBytes artifact verified", sig.Where, sig.Format)
		}
	}
}

// entityPolicy is the sigstore-go policy for sig about image d and the
// test identity: the payload itself for simple signing, the image digest
// in the statement otherwise.
func entityPolicy(t *testing.T, sig sigstore.Signature, d v1.Hash) verify.PolicyBuilder {
	t.Helper()
	if sig.Format == sigstore.FormatSimpleSigning {
		sum := sha256.Sum256(sig.Payload)
		return identityPolicy(t, verify.WithArtifactDigest("sha256", sum[:]), testIdentity, testIssuer)
	}
	return digestPolicy(t, d)
}

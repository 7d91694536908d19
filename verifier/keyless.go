package verifier

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/proto"

	"github.com/cosign-dev/cosign/sigstore"
)

// Keyless signatures.
//
// A signature with a certificate counts for a policy's keyless block when
// sigstore-go's verifier, given the block's trusted root, accepts it: the
// transparency-log entry verifies against a Rekor key of the root and binds
// exactly this signature, payload and certificate; the certificate chains
// to a Fulcio CA of the root at the time the log (or a timestamp authority
// of the root) observed it; its SCT verifies against a CT log of the root
// when the root names one; and the signature verifies with the
// certificate's key. The certificate's issuer and subject must then match
// an identity entry, and the signed document must bind the digest, as for
// keys. None of those checks is written here: this file only chooses the
// options and words the refusals.

// keylessCheck is a policy's keyless block, ready to verify.
type keylessCheck struct {
	root       *sigstore.TrustedRoot
	verifier   *verify.Verifier
	identities []verify.CertificateIdentity
	names      []string // Identity.String of each entry
}

// compileKeyless builds the sigstore-go verifier and identity matchers of k.
func compileKeyless(k *Keyless) (*keylessCheck, error) {
	if k == nil {
		return nil, nil
	}
	if k.TrustedRoot == nil || k.TrustedRoot.Material == nil {
		return nil, errors.New("keyless: no trusted root")
	}
	if len(k.Identities) == 0 {
		return nil, errors.New("keyless: no identities")
	}
	opts := []verify.VerifierOption{verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1)}
	if k.TrustedRoot.RequiresSCT() {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	v, err := verify.NewVerifier(k.TrustedRoot.Material, opts...)
	if err != nil {
		return nil, fmt.Errorf("keyless: trusted root %q: %w", k.TrustedRoot.Name, err)
	}
	c := &keylessCheck{root: k.TrustedRoot, verifier: v}
	for i, id := range k.Identities {
		if err := id.validate(); err != nil {
			return nil, fmt.Errorf("keyless: identity %d: %w", i+1, err)
		}
		ci, err := verify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
		if err != nil {
			return nil, fmt.Errorf("keyless: identity %d (%s): %w", i+1, id, err)
		}
		c.identities = append(c.identities, ci)
		c.names = append(c.names, id.String())
	}
	return c, nil
}

// validate checks that exactly one of each pair is set.
func (id Identity) validate() error {
	if (id.Issuer == "") == (id.IssuerRegExp == "") {
		return errors.New("set exactly one of issuer and issuerRegExp")
	}
	if (id.Subject == "") == (id.SubjectRegExp == "") {
		return errors.New("set exactly one of subject and subjectRegExp")
	}
	return nil
}

// keylessOf returns the policy's compiled keyless block: the one made when
// the policy was normalized, or a fresh one for a policy used directly.
func keylessOf(p *Policy) (*keylessCheck, error) {
	if p.Keyless == nil {
		return nil, nil
	}
	if p.Keyless.compiled != nil {
		return p.Keyless.compiled, nil
	}
	return compileKeyless(p.Keyless)
}

// keylessResult is what verifying one keyless signature found.
type keylessResult struct {
	// identity is the index of the first identity entry the certificate
	// matches; -1 when verification failed or none matched.
	identity int
	// entries are all the entries it matches, who its issuer and subject.
	entries []int
	who     string
	// reason and detail say why it does not count.
	reason Reason
	detail string
}

// verifyKeyless verifies sig against the keyless block and matches its
// identity, once per canonical form in memo (nil: no memo). A panic in the
// libraries is a failure, never a crash.
func (c *keylessCheck) verifyKeyless(sig *sigstore.Signature, memo keylessMemo) (r keylessResult) {
	defer func() {
		if p := recover(); p != nil {
			r = keylessResult{identity: -1, reason: ReasonKeyless, detail: fmt.Sprintf("verification panicked: %v", p)}
		}
	}()
	fail := func(reason Reason, format string, args ...any) keylessResult {
		return keylessResult{identity: -1, reason: reason, detail: fmt.Sprintf(format, args...)}
	}
	entity, err := sig.Entity()
	if err != nil {
		return fail(ReasonInvalid, "its keyless material is invalid: %v", err)
	}
	key, err := canonicalKey(sig, entity)
	if err != nil {
		return fail(ReasonInvalid, "its keyless material is invalid: %v", err)
	}
	if r, ok := memo[key]; ok {
		return r
	}
	defer func() {
		if memo != nil {
			memo[key] = r
		}
	}()
	entries, err := entity.TlogEntries()
	if err != nil {
		return fail(ReasonInvalid, "its transparency log entries are invalid: %v", err)
	}
	if len(entries) == 0 {
		return fail(ReasonNoTransparencyLog, "no transparency log entry: the certificate's validity cannot be placed in time")
	}
	artifact := verify.WithoutArtifactUnsafe() // DSSE: the statement binds the digest, checked by the caller
	if sig.Format == sigstore.FormatSimpleSigning {
		artifact = verify.WithArtifact(bytes.NewReader(sig.Payload))
	}
	res, err := c.verifier.Verify(entity, verify.NewPolicy(artifact, verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		reason, detail := classifyKeyless(err, c.root.Name)
		return fail(reason, "%s", detail)
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return fail(ReasonKeyless, "keyless verification failed: no certificate was verified")
	}
	if err := sameEnvelope(sig, entity); err != nil {
		return fail(ReasonInvalid, "%v", err)
	}
	summary := *res.Signature.Certificate
	r = keylessResult{identity: -1, who: summary.Extensions.Issuer + "\x00" + summary.SubjectAlternativeName}
	for i, id := range c.identities {
		if id.Verify(summary) == nil {
			r.entries = append(r.entries, i)
		}
	}
	if len(r.entries) > 0 {
		r.identity = r.entries[0]
		return r
	}
	return fail(ReasonCertificateIdentity, "certificate identity mismatch (issuer %s, subject %s)",
		summary.Extensions.Issuer, summary.SubjectAlternativeName)
}

// canonicalKey is a hash of what verification reads: the entity as
// deterministic protobuf (two bundles that differ only in JSON spelling
// are one), and for simple signing the payload given as the artifact.
func canonicalKey(sig *sigstore.Signature, entity verify.SignedEntity) ([sha256.Size]byte, error) {
	b, ok := entity.(*bundle.Bundle)
	if !ok || b.Bundle == nil {
		return [sha256.Size]byte{}, fmt.Errorf("keyless: entity is a %T, want a Sigstore bundle", entity)
	}
	pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(b.Bundle)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("keyless: %w", err)
	}
	h := sha256.New()
	for _, f := range [][]byte{[]byte(sig.Format), pb, sig.Payload} {
		writeField(h, string(f))
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k, nil
}

// sameEnvelope checks that the DSSE envelope sigstore-go verified is the
// one the claims are read from: a parser differential fails closed.
func sameEnvelope(sig *sigstore.Signature, entity verify.SignedEntity) error {
	if sig.Format == sigstore.FormatSimpleSigning {
		return nil // the artifact given to Verify is sig.Payload itself
	}
	content, err := entity.SignatureContent()
	if err != nil {
		return fmt.Errorf("keyless: signature content: %w", err)
	}
	env := content.EnvelopeContent()
	if env == nil {
		return errors.New("keyless: a DSSE signature verified as something else")
	}
	raw := env.RawEnvelope()
	if raw == nil {
		return errors.New("keyless: no envelope was verified")
	}
	payload, err := raw.DecodeB64Payload()
	if err != nil || raw.PayloadType != sig.PayloadType || !bytes.Equal(payload, sig.Payload) ||
		!bytes.Equal(sig.Signed, sigstore.PAE(sig.PayloadType, sig.Payload)) {
		return errors.New("keyless: the verified envelope differs from the one read")
	}
	return nil
}

// classifyKeyless words a sigstore-go verification error as one of the
// refusals a person can act on.
func classifyKeyless(err error, root string) (Reason, string) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "integrated time outside certificate validity"),
		strings.Contains(msg, "x509: certificate has expired or is not yet valid"):
		return ReasonCertificateTime, "certificate not valid at log time: " + msg
	case strings.Contains(msg, "not enough verified log entries"):
		// sigstore-go passes over entries of logs the root does not name.
		return ReasonKeyless, "its transparency log entry is from a log that trusted root " + quote(root) + " does not name: " + msg
	case strings.Contains(msg, "failed to verify log inclusion"):
		return ReasonKeyless, "transparency log entry does not verify against trusted root " + quote(root) + " or does not bind this signature: " + msg
	case strings.Contains(msg, "failed to verify leaf certificate"):
		return ReasonKeyless, "certificate does not chain to a Fulcio CA of trusted root " + quote(root) + " at log time: " + msg
	case strings.Contains(msg, "signed certificate timestamp"), strings.Contains(msg, "SCT"):
		return ReasonKeyless, "signed certificate timestamp does not verify against a CT log of trusted root " + quote(root) + ": " + msg
	case strings.Contains(msg, "failed to verify timestamps"):
		return ReasonKeyless, "no verified observer timestamp from trusted root " + quote(root) + ": " + msg
	}
	return ReasonKeyless, "keyless verification failed: " + msg
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

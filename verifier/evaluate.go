package verifier

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// Decision is the verdict on one digest.
type Decision struct {
	// Admit says whether the digest may be served.
	Admit bool
	// Warn is set when the digest is admitted only because the policy's
	// mode is warn; Reason then says why it would have been refused.
	Warn bool
	// Reason says how the digest was admitted or why it was refused.
	Reason Reason
	// Message is one line for a person: image, digest, policy, reason,
	// detail.
	Message string
	// Detail is what Message says after the reason, for callers that word
	// their own message: "annotation "env" is missing (required: "prod")".
	Detail string
	// Policy is the name of the policy that decided ("" if none matched).
	Policy string
	// Keys are the distinct IDs of the trusted keys whose signatures
	// counted, in the order they were found.
	Keys []string
	// Identities are the policy's keyless identity entries whose
	// certificates counted, as Identity.String gives them.
	Identities []string
	// Attestations are the predicate types of the policy's attestation
	// rules that held.
	Attestations []string
	// Verified are the signatures that counted: verified by a trusted key
	// and with claims that hold.
	Verified []sigstore.Signature
	// Found is how many signatures were found, Malformed how many of them
	// could not be read.
	Found, Malformed int
	// SignedDigests are the digests that signatures made by a trusted key
	// bind instead of this one (ReasonDigestMismatch).
	SignedDigests []v1.Hash
	// Cached says that Decide answered from its cache.
	Cached bool
}

// Evaluate decides whether img may be served under p, given the signatures
// and attestations found for its digest. It does no I/O.
//
// A signature without Err is checked against the policy's signers: one with
// a certificate against its keyless block (see keyless.go), any other
// against each distinct key. The first key that verifies it, or the first
// identity entry its verified certificate matches, is its signer; its
// claims must then hold (they parse, bind img.Digest, name the repository
// per the identity rule, carry the required annotations), or it is
// rejected. A signer counts once however many signatures it made, and a
// signature counts for at most one signer. A signed in-toto statement whose
// predicate type is not cosign's signing predicate is an attestation: it
// never counts as a signature, and counts for the policy's rule of its
// predicate type when its predicate conditions hold.
//
// The digest is admitted when at least Threshold signers signed it (unless
// SignatureOptional) and, for each attestation rule, at least Threshold
// signers attested it; zero signatures never pass.
//
// When it refuses, the Reason is the most specific one: no signatures;
// else the first failure on a signature whose signer verified it (a claim,
// a certificate identity, the log entry); else below threshold; else
// invalid artifacts (all were malformed); else untrusted; and, when the
// signatures suffice, the first attestation rule that does not hold.
func Evaluate(p *Policy, img Image, sigs []sigstore.Signature) Decision {
	if p == nil {
		return Decision{Reason: ReasonNoPolicy, Message: oneLine(fmt.Sprintf("%s: refused: no policy matches", img))}
	}
	if p.mode() == ModeAllow {
		return allowed(p, img)
	}
	t, err := newTally(p, img, nil)
	if err != nil {
		return refuse(p, img, ReasonInvalid, err.Error())
	}
	t.considerAll(sigs)
	return t.decision(sigs)
}

// trustedKeys returns keys without nil keys and repeats of a key ID. It
// returns keys itself, without allocating, when there is nothing to drop,
// as in almost every policy. Key IDs are computed when a key is parsed.
func trustedKeys(keys []sigstore.PublicKey) []sigstore.PublicKey {
	for i, k := range keys {
		if k == nil || seenKey(keys[:i], k.ID()) {
			return distinctKeys(keys)
		}
	}
	return keys
}

// seenKey reports whether a key among keys, none nil, has the ID id.
func seenKey(keys []sigstore.PublicKey, id string) bool {
	for _, k := range keys {
		if k.ID() == id {
			return true
		}
	}
	return false
}

// keylessMemo remembers keyless verifications within one lookup, by the
// canonical form of what is verified (see keylessCheck.verifyKeyless): the
// signatures of a batch are tallied once to decide whether to read on, and
// again for the decision; copies of one artifact that differ only in their
// JSON spelling are verified once; and certificate verification is the
// costly part.
type keylessMemo map[[sha256.Size]byte]keylessResult

// tally accumulates what the signatures of one digest proved.
type tally struct {
	p       *Policy
	img     Image
	keys    []sigstore.PublicKey
	keyless *keylessCheck
	memo    keylessMemo

	signed     signerSet            // the signers of image signatures
	verified   []sigstore.Signature // signatures that counted
	found      int                  // signatures considered
	malformed  int                  // signatures with Err set
	firstBad   string               // detail of the first malformed one
	claimFail  Reason               // reason of the first failure on a verified signature
	claimWhy   string               // its detail
	claimFails int
	// otherDigests are the digests bound by trusted signatures for
	// another digest.
	otherDigests []v1.Hash
	// attested holds, per predicate type of a rule, the signers of
	// attestations that hold; predicateFail the first path that failed
	// for it.
	attested      map[string]*signerSet
	predicateFail map[string]string
	// attestations counts the attestations trusted signers made for this
	// digest, held or not, for a refusal to say that they are no
	// signatures.
	attestations int
}

func newTally(p *Policy, img Image, memo keylessMemo) (*tally, error) {
	kc, err := keylessOf(p)
	if err != nil {
		return nil, err
	}
	if memo == nil {
		memo = keylessMemo{}
	}
	return &tally{p: p, img: img, keys: trustedKeys(p.Keys), keyless: kc, memo: memo}, nil
}

func (t *tally) considerAll(sigs []sigstore.Signature) {
	for i := range sigs {
		t.consider(t.found, &sigs[i])
		t.found++
	}
}

// signers is how many distinct signers signed the digest.
func (t *tally) signers() int { return t.signed.count() }

// attestedBy is how many distinct signers attested predicateType.
func (t *tally) attestedBy(predicateType string) int {
	if s := t.attested[predicateType]; s != nil {
		return s.count()
	}
	return 0
}

// signaturesHold reports whether the signatures suffice.
func (t *tally) signaturesHold() bool {
	return t.p.SignatureOptional || t.signers() >= t.p.threshold() // threshold() >= 1
}

// unmetRule returns the first attestation rule that does not hold.
func (t *tally) unmetRule() (AttestationRule, bool) {
	for _, r := range t.p.Attestations {
		if t.attestedBy(r.PredicateType) < t.p.threshold() {
			return r, true
		}
	}
	return AttestationRule{}, false
}

func (t *tally) admits() bool {
	if !t.signaturesHold() {
		return false
	}
	_, unmet := t.unmetRule()
	return !unmet
}

// decision makes the verdict from what was tallied.
func (t *tally) decision(sigs []sigstore.Signature) Decision {
	p, img := t.p, t.img
	if t.admits() {
		return Decision{
			Admit:        true,
			Reason:       ReasonVerified,
			Message:      verifiedMessage(p, img, t.signed.keys, t.identityNames(), t.keyless != nil),
			Policy:       p.Name,
			Keys:         t.signed.keys,
			Identities:   t.identityNames(),
			Attestations: t.heldRules(),
			Verified:     t.verified,
		}
	}
	var reason Reason
	var detail string
	if !t.signaturesHold() {
		reason, detail = t.refusal(len(sigs))
	} else {
		reason, detail = t.attestationRefusal()
	}
	d := refuse(p, img, reason, detail)
	d.Keys, d.Identities, d.Attestations, d.Verified = t.signed.keys, t.identityNames(), t.heldRules(), t.verified
	d.Found, d.Malformed, d.SignedDigests = len(sigs), t.malformed, t.otherDigests
	return d
}

func (t *tally) identityNames() []string {
	entries := t.signed.matched()
	if len(entries) == 0 {
		return nil
	}
	names := make([]string, len(entries))
	for i, n := range entries {
		names[i] = t.keyless.names[n]
	}
	return names
}

func (t *tally) heldRules() []string {
	var held []string
	for _, r := range t.p.Attestations {
		if t.attestedBy(r.PredicateType) >= t.p.threshold() {
			held = append(held, r.PredicateType)
		}
	}
	return held
}

// attestationRefusal words the first rule that does not hold.
func (t *tally) attestationRefusal() (Reason, string) {
	r, _ := t.unmetRule()
	if path, ok := t.predicateFail[r.PredicateType]; ok {
		return ReasonPredicate, fmt.Sprintf("predicate condition failed: %s (attestation %s; required: %v)", path, r.PredicateType, r.Predicate[path])
	}
	detail := "attestation missing: " + r.PredicateType
	if n := t.attestedBy(r.PredicateType); n > 0 {
		detail += fmt.Sprintf(" (signed by %d of %d required signers)", n, t.p.threshold())
	}
	if t.claimFails > 0 {
		detail += "; first rejected: " + t.claimWhy
	}
	return ReasonAttestationMissing, detail
}

// fail records a failure on a signature whose signer verified it; only the
// first one's detail is kept.
func (t *tally) fail(reason Reason, detail string) {
	if t.claimFails == 0 {
		t.claimFail, t.claimWhy = reason, detail
	}
	t.claimFails++
}

// consider checks signature number i. The details of a refusal are only
// written for the first failure of each kind.
func (t *tally) consider(i int, sig *sigstore.Signature) {
	if sig.Err != nil {
		if t.malformed == 0 {
			t.firstBad = sigName(i, sig) + ": " + sig.Err.Error()
		}
		t.malformed++
		return
	}
	var by string
	var signer func(*signerSet)
	var keylessFailed func()
	if sig.Keyless() && t.keyless != nil {
		r := t.verifyKeyless(sig)
		if r.identity >= 0 {
			by = "identity " + t.keyless.names[r.identity]
			signer = func(s *signerSet) { s.addPerson(r.who, r.entries) }
		} else {
			keylessFailed = func() {
				if r.reason == ReasonInvalid {
					t.fail(r.reason, "signature "+sigName(i, sig)+": "+r.detail)
				} else {
					t.fail(r.reason, r.detail+"; signature "+sigName(i, sig))
				}
			}
		}
	}
	if signer == nil {
		// A signature with a certificate may also be made with a key the
		// policy names (cosign sign --key K --certificate C): the key
		// verifies it, and the certificate adds nothing.
		key := t.keyFor(sig)
		if key == nil {
			if keylessFailed != nil {
				keylessFailed()
			}
			return
		}
		by = "key " + shortKeyID(key.ID())
		signer = func(s *signerSet) { s.addKey(key.ID()) }
	}
	claims, err := claimsOf(sig)
	if err != nil {
		t.fail(ReasonInvalid, "signature "+sigName(i, sig)+" by "+by+" verified, but its signed document is invalid: "+err.Error())
		return
	}
	attestation := isAttestation(sig, claims)
	var reason Reason
	var detail string
	if attestation {
		reason, detail = checkDigest(t.img, claims)
	} else {
		reason, detail = checkClaims(t.p, t.img, sig, claims)
	}
	if reason == ReasonDigestMismatch {
		for _, d := range claims.Digests {
			if !slices.Contains(t.otherDigests, d) {
				t.otherDigests = append(t.otherDigests, d)
			}
		}
	}
	if reason != "" {
		t.fail(reason, "signature "+sigName(i, sig)+" by "+by+" verified, but "+detail)
		return
	}
	if attestation {
		t.attest(sig, claims, signer)
		return
	}
	t.verified = append(t.verified, *sig)
	signer(&t.signed)
}

// isAttestation reports whether a signed in-toto statement is an
// attestation rather than a cosign image signature.
func isAttestation(sig *sigstore.Signature, c sigstore.Claims) bool {
	return sig.Format != sigstore.FormatSimpleSigning && c.PredicateType != sigstore.CosignPredicateType
}

// attest counts a verified attestation for the rule of its predicate type.
// Attestations of types no rule names are ignored.
func (t *tally) attest(sig *sigstore.Signature, c sigstore.Claims, signer func(*signerSet)) {
	t.attestations++
	var rule *AttestationRule
	for k := range t.p.Attestations {
		if t.p.Attestations[k].PredicateType == c.PredicateType {
			rule = &t.p.Attestations[k]
			break
		}
	}
	if rule == nil {
		return
	}
	if path, ok := rule.predicateHolds(c.Predicate); !ok {
		if t.predicateFail == nil {
			t.predicateFail = make(map[string]string)
		}
		if _, seen := t.predicateFail[c.PredicateType]; !seen {
			t.predicateFail[c.PredicateType] = path
		}
		return
	}
	if t.attested == nil {
		t.attested = make(map[string]*signerSet)
	}
	s := t.attested[c.PredicateType]
	if s == nil {
		s = &signerSet{}
		t.attested[c.PredicateType] = s
	}
	signer(s)
	t.verified = append(t.verified, *sig)
}

// keyFor returns the first trusted key that verifies sig, or nil.
func (t *tally) keyFor(sig *sigstore.Signature) sigstore.PublicKey {
	for _, key := range t.keys {
		if verifies(key, sig) {
			return key
		}
	}
	return nil
}

// verifyKeyless verifies a keyless signature once per lookup.
func (t *tally) verifyKeyless(sig *sigstore.Signature) keylessResult {
	return t.keyless.verifyKeyless(sig, t.memo)
}

// refusal picks the most specific reason for a refusal of the signatures
// and its detail.
func (t *tally) refusal(found int) (Reason, string) {
	p := t.p
	switch {
	case found == 0:
		return ReasonNoSignatures, "none found for this digest"
	case t.claimFails > 0:
		return t.claimFail, t.claimWhy
	case t.signers() > 0:
		return ReasonBelowThreshold, fmt.Sprintf("%d of %d required %s", t.signers(), p.threshold(), signerWord(p))
	case t.malformed == found:
		return ReasonInvalid, fmt.Sprintf("%s malformed; first: %s", plural(found, "signature artifact"), t.firstBad)
	}
	var detail string
	if p.Keyless == nil {
		detail = fmt.Sprintf("%s found, none verified with the policy's %s", plural(found, "signature"), plural(len(t.keys), "key"))
	} else {
		detail = fmt.Sprintf("%s found, none verified with the policy's %s or its %s", plural(found, "signature"),
			plural(len(t.keys), "key"), plural(len(p.Keyless.Identities), "keyless identity"))
	}
	if t.attestations > 0 {
		detail += fmt.Sprintf("; %s by trusted signers, which are no image signatures", plural(t.attestations, "attestation"))
	}
	if t.malformed > 0 {
		detail += fmt.Sprintf("; %d malformed, first: %s", t.malformed, t.firstBad)
	}
	return ReasonUntrusted, detail
}

func signerWord(p *Policy) string {
	if p.Keyless == nil {
		return "keys"
	}
	return "signers"
}

// verifies reports whether key verifies sig; a key that panics does not.
func verifies(key sigstore.PublicKey, sig *sigstore.Signature) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return key.Verify(sig.Signed, sig.Sig) == nil
}

// claimsOf parses the signed document; a panic is a parse error.
func claimsOf(sig *sigstore.Signature) (c sigstore.Claims, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parsing claims: %v", r)
		}
	}()
	return sig.Claims()
}

// checkClaims checks what a verified signature's document asserts. It
// returns "" when every claim holds, else the reason and a detail.
func checkClaims(p *Policy, img Image, sig *sigstore.Signature, claims sigstore.Claims) (Reason, string) {
	if reason, detail := checkDigest(img, claims); reason != "" {
		return reason, detail
	}
	if detail, ok := checkIdentity(p, img, *sig, claims); !ok {
		return ReasonIdentityMismatch, detail
	}
	if got := claims.AnnotationsOf(img.Digest); !annotationsHold(p.Annotations, got) {
		return ReasonAnnotations, annotationMismatch(p.Annotations, got)
	}
	return "", ""
}

// checkDigest checks that the signed document binds img.Digest.
func checkDigest(img Image, claims sigstore.Claims) (Reason, string) {
	if !slices.Contains(claims.Digests, img.Digest) {
		return ReasonDigestMismatch, fmt.Sprintf("it is for %s, not this digest", digestList(claims))
	}
	return "", ""
}

// annotationsHold reports whether got has every annotation of want, with
// the same value.
func annotationsHold(want, got map[string]string) bool {
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			return false
		}
	}
	return true
}

// annotationMismatch describes the first required annotation, in key
// order, that got lacks or has with another value.
func annotationMismatch(want, got map[string]string) string {
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		if !ok {
			return fmt.Sprintf("annotation %q is missing (required: %q)", k, want[k])
		}
		if g != want[k] {
			return fmt.Sprintf("annotation %q is %q (required: %q)", k, g, want[k])
		}
	}
	return "annotations hold"
}

func digestList(c sigstore.Claims) string {
	if len(c.Digests) == 0 {
		return "no digest"
	}
	s := make([]string, len(c.Digests))
	for i, d := range c.Digests {
		s[i] = d.String()
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// refuse builds a refusal, or in warn mode an admission flagged Warn.
func refuse(p *Policy, img Image, reason Reason, detail string) Decision {
	d := Decision{Reason: reason, Policy: p.Name, Detail: oneLine(detail)}
	if p.mode() == ModeWarn {
		d.Admit, d.Warn = true, true
		d.Message = oneLine(fmt.Sprintf("%s: admitted with a warning by policy %q (mode warn): %s (%s)", img, p.Name, reason, detail))
		return d
	}
	if strings.HasPrefix(detail, string(reason)) {
		d.Message = oneLine(fmt.Sprintf("%s: refused by policy %q: %s", img, p.Name, detail))
		return d
	}
	d.Message = oneLine(fmt.Sprintf("%s: refused by policy %q: %s (%s)", img, p.Name, reason, detail))
	return d
}

func allowed(p *Policy, img Image) Decision {
	return Decision{
		Admit:   true,
		Reason:  ReasonAllowed,
		Policy:  p.Name,
		Message: oneLine(fmt.Sprintf("%s: allowed by policy %q (mode allow, no signature check)", img, p.Name)),
	}
}

// verifiedMessage is "<image>: verified by policy "<name>" (<n> of <m>
// required keys: <short IDs>)", or "signers" with the identity entries
// after the keys when the policy has keyless signers. It is written on
// every admission, so it is appended to one buffer rather than formatted.
func verifiedMessage(p *Policy, img Image, keys, identities []string, keyless bool) string {
	var room [256]byte
	b := append(room[:0], img.Registry...)
	b = append(b, '/')
	b = append(b, img.Repository...)
	b = append(b, '@')
	b = append(b, img.Digest.Algorithm...)
	b = append(b, ':')
	b = append(b, img.Digest.Hex...)
	b = append(b, ": verified by policy "...)
	b = strconv.AppendQuote(b, p.Name)
	b = append(b, " ("...)
	if p.SignatureOptional {
		b = append(b, "attestations: "...)
		b = append(b, strings.Join(attestationTypes(p), ", ")...)
		b = append(b, ')')
		return oneLine(string(b))
	}
	b = strconv.AppendInt(b, int64(len(keys)+len(identities)), 10)
	b = append(b, " of "...)
	b = strconv.AppendInt(b, int64(p.threshold()), 10)
	if keyless {
		b = append(b, " required signers: "...)
	} else {
		b = append(b, " required keys: "...)
	}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, shortKeyID(k)...)
	}
	for i, id := range identities {
		if i > 0 || len(keys) > 0 {
			b = append(b, "; "...)
		}
		b = append(b, id...)
	}
	if len(p.Attestations) > 0 {
		b = append(b, "; attestations: "...)
		b = append(b, strings.Join(attestationTypes(p), ", ")...)
	}
	b = append(b, ')')
	return oneLine(string(b))
}

func attestationTypes(p *Policy) []string {
	types := make([]string, len(p.Attestations))
	for i, r := range p.Attestations {
		types[i] = r.PredicateType
	}
	return types
}

// sigName names a signature for messages.
func sigName(i int, sig *sigstore.Signature) string {
	if sig.Where != "" {
		return strconv.Quote(sig.Where)
	}
	return "#" + strconv.Itoa(i+1)
}

// shortKeyID keeps "sha256:" and 12 hex digits.
func shortKeyID(id string) string {
	const n = len("sha256:") + 12
	if len(id) > n {
		return id[:n]
	}
	return id
}

// isClean reports whether s is valid UTF-8 with no control character, so
// that oneLine would leave it as it is. (strings.Map replaces invalid
// UTF-8 with U+FFFD; a U+FFFD already there just takes the slow path.)
func isClean(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// maxMessageLen caps a Message: details quote untrusted text.
const maxMessageLen = 2048

// oneLine replaces control characters, which untrusted details may carry,
// so that a message stays one line, and cuts it to maxMessageLen bytes.
func oneLine(s string) string {
	if len(s) <= maxMessageLen && isClean(s) {
		return s
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= maxMessageLen {
		return s
	}
	cut := maxMessageLen - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

package verifier

import (
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
// found for its digest. It does no I/O.
//
// Each signature without Err is checked against each distinct key of the
// policy; the first key that verifies it must also find its claims valid
// (they parse, bind img.Digest, name the repository per the identity rule,
// carry the required annotations), or the signature is rejected. A key
// counts once however many signatures it made, and a signature counts for
// at most one key. The digest is admitted when at least Threshold keys
// count; zero signatures never pass.
//
// When it refuses, the Reason is the most specific one: no signatures;
// else the first claim that failed on a verified signature; else below
// threshold; else invalid artifacts (all were malformed); else untrusted.
func Evaluate(p *Policy, img Image, sigs []sigstore.Signature) Decision {
	if p == nil {
		return Decision{Reason: ReasonNoPolicy, Message: oneLine(fmt.Sprintf("%s: refused: no policy matches", img))}
	}
	if p.mode() == ModeAllow {
		return allowed(p, img)
	}
	var t tally
	keys := trustedKeys(p.Keys)
	for i := range sigs {
		t.consider(p, img, keys, i, &sigs[i])
	}
	if len(t.keys) >= p.threshold() { // threshold() >= 1: zero signatures never pass
		return Decision{
			Admit:    true,
			Reason:   ReasonVerified,
			Message:  verifiedMessage(p, img, t.keys),
			Policy:   p.Name,
			Keys:     t.keys,
			Verified: t.verified,
		}
	}
	reason, detail := t.refusal(p, len(sigs), len(keys))
	d := refuse(p, img, reason, detail)
	d.Keys, d.Verified = t.keys, t.verified
	d.Found, d.Malformed, d.SignedDigests = len(sigs), t.malformed, t.otherDigests
	return d
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

// tally accumulates what the signatures of one digest proved.
type tally struct {
	keys       []string             // distinct key IDs that counted
	verified   []sigstore.Signature // signatures that counted
	malformed  int                  // signatures with Err set
	firstBad   string               // detail of the first malformed one
	claimFail  Reason               // reason of the first claim failure
	claimWhy   string               // its detail
	claimFails int
	// otherDigests are the digests bound by trusted signatures for
	// another digest.
	otherDigests []v1.Hash
}

// consider checks signature number i against the keys. The details of a
// refusal are only written for the first failure of each kind.
func (t *tally) consider(p *Policy, img Image, keys []sigstore.PublicKey, i int, sig *sigstore.Signature) {
	if sig.Err != nil {
		if t.malformed == 0 {
			t.firstBad = sigName(i, sig) + ": " + sig.Err.Error()
		}
		t.malformed++
		return
	}
	for _, key := range keys {
		if !verifies(key, sig) {
			continue
		}
		reason, detail, claims := checkClaims(p, img, sig)
		if reason == ReasonDigestMismatch {
			for _, d := range claims.Digests {
				if !slices.Contains(t.otherDigests, d) {
					t.otherDigests = append(t.otherDigests, d)
				}
			}
		}
		if reason != "" {
			if t.claimFails == 0 {
				t.claimFail = reason
				t.claimWhy = "signature " + sigName(i, sig) + " by key " + shortKeyID(key.ID()) + " verified, but " + detail
			}
			t.claimFails++
			return
		}
		t.verified = append(t.verified, *sig)
		if id := key.ID(); !slices.Contains(t.keys, id) {
			t.keys = append(t.keys, id)
		}
		return
	}
}

// refusal picks the most specific reason for a refusal and its detail.
func (t *tally) refusal(p *Policy, found, keys int) (Reason, string) {
	switch {
	case found == 0:
		return ReasonNoSignatures, "none found for this digest"
	case t.claimFails > 0:
		return t.claimFail, t.claimWhy
	case len(t.keys) > 0:
		return ReasonBelowThreshold, fmt.Sprintf("%d of %d required keys", len(t.keys), p.threshold())
	case t.malformed == found:
		return ReasonInvalid, fmt.Sprintf("%s malformed; first: %s", plural(found, "signature artifact"), t.firstBad)
	}
	detail := fmt.Sprintf("%s found, none verified with the policy's %s", plural(found, "signature"), plural(keys, "key"))
	if t.malformed > 0 {
		detail += fmt.Sprintf("; %d malformed, first: %s", t.malformed, t.firstBad)
	}
	return ReasonUntrusted, detail
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
func checkClaims(p *Policy, img Image, sig *sigstore.Signature) (Reason, string, sigstore.Claims) {
	claims, err := claimsOf(sig)
	if err != nil {
		return ReasonInvalid, fmt.Sprintf("its signed document is invalid: %v", err), claims
	}
	if !slices.Contains(claims.Digests, img.Digest) {
		return ReasonDigestMismatch, fmt.Sprintf("it is for %s, not this digest", digestList(claims)), claims
	}
	if detail, ok := checkIdentity(p, img, *sig, claims); !ok {
		return ReasonIdentityMismatch, detail, claims
	}
	if got := claims.AnnotationsOf(img.Digest); !annotationsHold(p.Annotations, got) {
		return ReasonAnnotations, annotationMismatch(p.Annotations, got), claims
	}
	return "", "", claims
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
// required keys: <short IDs>)". It is written on every admission, so it is
// appended to one buffer rather than formatted.
func verifiedMessage(p *Policy, img Image, keys []string) string {
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
	b = strconv.AppendInt(b, int64(len(keys)), 10)
	b = append(b, " of "...)
	b = strconv.AppendInt(b, int64(p.threshold()), 10)
	b = append(b, " required keys: "...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, shortKeyID(k)...)
	}
	b = append(b, ')')
	return oneLine(string(b))
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

package verifier

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/cosign-dev/cosign/sigstore"
)

// Mode says what a policy does with a digest that fails verification.
type Mode string

const (
	// ModeEnforce refuses digests that fail verification. It is the default.
	ModeEnforce Mode = "enforce"
	// ModeWarn admits digests that fail verification, flagged Warn.
	ModeWarn Mode = "warn"
	// ModeAllow admits every digest without reading signatures.
	ModeAllow Mode = "allow"
)

// IdentityMode says how a signed docker-reference must relate to the
// repository the image is pulled from.
type IdentityMode string

const (
	// IdentityRepository requires a simple-signing docker-reference to name
	// the pulled repository (after Remap). It is the default.
	IdentityRepository IdentityMode = "repository"
	// IdentityAny ignores the docker-reference; the digest binding alone
	// counts, as in cosign itself.
	IdentityAny IdentityMode = "any"
)

// Remap rewrites the pulled name before the identity check, like
// containers/image's remapIdentity: a pulled name that starts with Prefix
// on a path-segment boundary has that prefix replaced by SignedPrefix. It
// lets a mirror at "mirror.local:5050" serve images signed as
// "127.0.0.1:5000/...".
type Remap struct {
	// Prefix is a registry, or registry/namespace, as clients pull it.
	Prefix string
	// SignedPrefix is what the signatures name instead.
	SignedPrefix string
}

// ChildrenMode says how the children of a verified index are admitted.
type ChildrenMode string

const (
	// ChildrenInherit admits the manifests a verified index lists, in the
	// same repository, for as long as the index's decision is cached. It is
	// the default: cosign signs the index of a multi-platform image, and
	// clients then pull a child by digest.
	ChildrenInherit ChildrenMode = "inherit"
	// ChildrenRequireSigned makes every child carry its own signatures.
	ChildrenRequireSigned ChildrenMode = "require-signed"
)

// Policy says which keys must have signed the images of the repositories it
// matches, and what the signed documents must claim.
type Policy struct {
	// Name identifies the policy in decisions and messages; unique in a
	// Config.
	Name string
	// Match holds globs on "<registry>/<repository>": "**" matches any run
	// of characters including '/', "*" any run without '/', "?" one
	// character other than '/'; every other character is literal.
	Match []string
	// Keys are the trusted public keys.
	Keys []sigstore.PublicKey
	// Threshold is how many distinct signers (keys and keyless identity
	// entries) must have signed; 0 means 1.
	Threshold int
	// Mode is enforce (default), warn or allow.
	Mode Mode
	// Identity is repository (default) or any.
	Identity IdentityMode
	// Remap, when set, rewrites the pulled name before the identity check.
	Remap *Remap
	// Annotations must all be present, with these values, in the signed
	// document's annotations.
	Annotations map[string]string
	// Children is inherit (default) or require-signed.
	Children ChildrenMode
	// Keyless, when set, admits certificate signers: signatures whose
	// Fulcio certificate chains to the trusted root, with a transparency-log
	// entry, and whose identity matches one of its identities.
	Keyless *Keyless
	// Attestations are the in-toto attestations that must be present for
	// the digest, each signed by Threshold distinct signers of the policy.
	Attestations []AttestationRule
	// SignatureOptional (YAML "signature: false") admits on the
	// attestations alone; it needs Attestations.
	SignatureOptional bool
}

// Keyless configures certificate signers.
type Keyless struct {
	// TrustedRoot holds the Fulcio CAs, Rekor logs, CT logs and timestamp
	// authorities to verify against.
	TrustedRoot *sigstore.TrustedRoot
	// Identities are the accepted certificate identities; each one that
	// matches counts as one signer, however many certificates match it.
	Identities []Identity

	// compiled is set on a Verifier's normalized copy.
	compiled *keylessCheck
}

// Identity is an accepted certificate identity: the OIDC issuer (the
// certificate's Fulcio issuer extension) and the subject (its SAN: an
// e-mail, a URI or an othername), each exactly or by regular expression.
// Exactly one of Issuer and IssuerRegExp is set, and of Subject and
// SubjectRegExp. Regular expressions are Go RE2 syntax, matched unanchored
// unless they anchor themselves, as sigstore cosign does.
type Identity struct {
	Issuer, IssuerRegExp   string
	Subject, SubjectRegExp string
}

// String is "issuer X, subject Y", with "~" before a regular expression.
func (id Identity) String() string {
	issuer, subject := id.Issuer, id.Subject
	if id.IssuerRegExp != "" {
		issuer = "~" + id.IssuerRegExp
	}
	if id.SubjectRegExp != "" {
		subject = "~" + id.SubjectRegExp
	}
	return "issuer " + issuer + ", subject " + subject
}

// AttestationRule requires an in-toto attestation of one predicate type.
type AttestationRule struct {
	// PredicateType is the statement's predicateType, exactly.
	PredicateType string
	// Predicate maps dotted paths into the predicate ("runDetails.builder.id",
	// a number segment indexes an array) to the exact value that must be
	// there: a string, a number, a boolean or nil (JSON null).
	Predicate map[string]any
}

// Matches reports whether one of the policy's globs matches
// "<registry>/<repository>".
func (p *Policy) Matches(registry, repository string) bool {
	name := registry + "/" + repository
	for _, m := range p.Match {
		if compileGlob(m).match(name) {
			return true
		}
	}
	return false
}

// Fingerprint is a SHA-256 over everything that decides a verification: the
// name, mode, threshold, identity rule, remap, required annotations,
// children mode, the sorted IDs of the keys, the keyless block (its trusted
// root's name and digest, its identities), the attestation rules and
// whether a signature is optional. Any change, a rotated key
// included, gives a new fingerprint and so new cache keys. Match globs are
// left out: they choose the policy, and the cache key names the repository.
func (p *Policy) Fingerprint() string {
	h := sha256.New()
	field := func(s string) { writeField(h, s) }
	field("cosign-policy-v1")
	field(p.Name)
	field(string(p.mode()))
	field(strconv.Itoa(p.threshold()))
	field(string(p.identity()))
	if p.Remap != nil {
		field("remap")
		field(p.Remap.Prefix)
		field(p.Remap.SignedPrefix)
	} else {
		field("no-remap")
	}
	keys := slices.Sorted(maps.Keys(p.Annotations))
	field(strconv.Itoa(len(keys)))
	for _, k := range keys {
		field(k)
		field(p.Annotations[k])
	}
	field(string(p.children()))
	ids := distinctKeyIDs(p.Keys)
	slices.Sort(ids)
	field(strconv.Itoa(len(ids)))
	for _, id := range ids {
		field(id)
	}
	if k := p.Keyless; k != nil {
		field("keyless")
		if k.TrustedRoot != nil {
			field(k.TrustedRoot.Name)
			field(k.TrustedRoot.Digest)
		}
		field(strconv.Itoa(len(k.Identities)))
		for _, id := range k.Identities {
			field(id.Issuer)
			field(id.IssuerRegExp)
			field(id.Subject)
			field(id.SubjectRegExp)
		}
	} else {
		field("no-keyless")
	}
	field(strconv.Itoa(len(p.Attestations)))
	for _, r := range p.Attestations {
		field(r.PredicateType)
		paths := sortedAnyKeys(r.Predicate)
		field(strconv.Itoa(len(paths)))
		for _, path := range paths {
			field(path)
			field(fmt.Sprintf("%T:%v", r.Predicate[path], r.Predicate[path]))
		}
	}
	field(strconv.FormatBool(p.SignatureOptional))
	return hex.EncodeToString(h.Sum(nil))
}

// writeField writes s length-prefixed, so that no two field lists hash alike.
func writeField(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	h.Write([]byte(s))
}

func (p *Policy) threshold() int {
	if p.Threshold <= 0 {
		return 1
	}
	return p.Threshold
}

func (p *Policy) mode() Mode {
	if p.Mode == "" {
		return ModeEnforce
	}
	return p.Mode
}

func (p *Policy) identity() IdentityMode {
	if p.Identity == "" {
		return IdentityRepository
	}
	return p.Identity
}

func (p *Policy) children() ChildrenMode {
	if p.Children == "" {
		return ChildrenInherit
	}
	return p.Children
}

// distinctKeys drops nil keys and keys whose ID was already seen.
func distinctKeys(keys []sigstore.PublicKey) []sigstore.PublicKey {
	out := make([]sigstore.PublicKey, 0, len(keys))
	seen := make([]string, 0, len(keys))
	for _, k := range keys {
		if k == nil {
			continue
		}
		id := k.ID()
		if slices.Contains(seen, id) {
			continue
		}
		seen = append(seen, id)
		out = append(out, k)
	}
	return out
}

func distinctKeyIDs(keys []sigstore.PublicKey) []string {
	ks := distinctKeys(keys)
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = k.ID()
	}
	return ids
}

// normalized returns a copy of p with defaults filled in, so that the
// caller's later changes cannot reach a running Verifier.
func (p *Policy) normalized() *Policy {
	c := *p
	c.Match = slices.Clone(p.Match)
	c.Keys = slices.Clone(p.Keys)
	c.Annotations = maps.Clone(p.Annotations)
	if p.Remap != nil {
		r := *p.Remap
		c.Remap = &r
	}
	if p.Keyless != nil {
		k := *p.Keyless
		k.Identities = slices.Clone(p.Keyless.Identities)
		k.compiled, _ = compileKeyless(&k) // validate reports its error
		c.Keyless = &k
	}
	c.Attestations = make([]AttestationRule, len(p.Attestations))
	for i, r := range p.Attestations {
		c.Attestations[i] = AttestationRule{PredicateType: r.PredicateType, Predicate: maps.Clone(r.Predicate)}
	}
	c.Threshold = p.threshold()
	c.Mode = p.mode()
	c.Identity = p.identity()
	c.Children = p.children()
	return &c
}

// validate checks one policy; it reports every problem it finds.
func (p *Policy) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Name == "" {
		bad("name is empty")
	}
	if len(p.Match) == 0 {
		bad("no match patterns")
	}
	for _, m := range p.Match {
		if m == "" || strings.ContainsFunc(m, isSpaceOrControl) {
			bad("match pattern %q is empty or contains spaces", m)
		}
	}
	switch p.mode() {
	case ModeEnforce, ModeWarn, ModeAllow:
	default:
		bad("unknown mode %q (want enforce, warn or allow)", p.Mode)
	}
	switch p.identity() {
	case IdentityRepository, IdentityAny:
	default:
		bad("unknown identity %q (want repository or any)", p.Identity)
	}
	switch p.children() {
	case ChildrenInherit, ChildrenRequireSigned:
	default:
		bad("unknown children mode %q (want inherit or require-signed)", p.Children)
	}
	if err := p.validateRemap(); err != nil {
		errs = append(errs, err)
	}
	if p.Threshold < 0 {
		bad("threshold %d is negative", p.Threshold)
	}
	for i, k := range p.Keys {
		if k == nil {
			bad("key %d is nil", i+1)
		}
	}
	if p.Keyless != nil {
		if _, err := compileKeyless(p.Keyless); err != nil {
			errs = append(errs, err)
		}
	}
	seenTypes := make(map[string]bool, len(p.Attestations))
	for _, r := range p.Attestations {
		if err := r.validate(); err != nil {
			errs = append(errs, err)
		}
		if seenTypes[r.PredicateType] {
			bad("attestation %s is listed twice", r.PredicateType)
		}
		seenTypes[r.PredicateType] = true
	}
	if p.SignatureOptional && len(p.Attestations) == 0 {
		bad("signature: false needs attestations")
	}
	if p.mode() != ModeAllow {
		n := len(distinctKeys(p.Keys))
		if p.Keyless != nil {
			n += len(p.Keyless.Identities)
		}
		switch {
		case n == 0:
			bad("no keys and no keyless identities (only mode allow may have none)")
		case p.threshold() > n && p.Keyless == nil:
			bad("threshold %d exceeds the %d distinct keys", p.threshold(), n)
		case p.threshold() > n:
			bad("threshold %d exceeds the %d signers (distinct keys and keyless identities)", p.threshold(), n)
		}
	}
	return errors.Join(errs...)
}

func (p *Policy) validateRemap() error {
	if p.Remap == nil {
		return nil
	}
	if p.identity() != IdentityRepository {
		return errors.New("remap needs identity repository")
	}
	for _, s := range []string{p.Remap.Prefix, p.Remap.SignedPrefix} {
		if s == "" || strings.HasSuffix(s, "/") || strings.ContainsAny(s, "@") ||
			strings.ContainsFunc(s, isSpaceOrControl) {
			return fmt.Errorf("remap prefix %q must be a registry or registry/namespace", s)
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// validatePolicies checks a policy list and returns normalized copies.
func validatePolicies(ps []*Policy) ([]*Policy, error) {
	out := make([]*Policy, 0, len(ps))
	names := make(map[string]bool, len(ps))
	var errs []error
	for i, p := range ps {
		if p == nil {
			errs = append(errs, fmt.Errorf("policy %d is nil", i+1))
			continue
		}
		if err := p.validate(); err != nil {
			errs = append(errs, fmt.Errorf("policy %d (%q): %w", i+1, p.Name, err))
		}
		if p.Name != "" && names[p.Name] {
			errs = append(errs, fmt.Errorf("policy %d: name %q is used twice", i+1, p.Name))
		}
		names[p.Name] = true
		out = append(out, p.normalized())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// glob is a compiled Match pattern: no regular expressions, so a pattern
// can never inject one. The literal prefix every pattern starts with is
// compared directly; the rest runs as a small NFA.
type glob struct {
	prefix string      // literal bytes before the first wildcard
	rest   []globToken // the pattern from the first wildcard on
}

type globKind uint8

const (
	globLiteral  globKind = iota // one literal byte
	globOne                      // '?': one byte other than '/'
	globStar                     // '*': any run of bytes without '/'
	globStarStar                 // "**": any run of bytes
)

type globToken struct {
	kind globKind
	c    byte
}

func compileGlob(pattern string) glob {
	i := strings.IndexAny(pattern, "*?")
	if i < 0 {
		return glob{prefix: pattern}
	}
	g := glob{prefix: pattern[:i], rest: make([]globToken, 0, len(pattern)-i)}
	for ; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '*' && i+1 < len(pattern) && pattern[i+1] == '*':
			g.rest = append(g.rest, globToken{kind: globStarStar})
			i++
		case c == '*':
			g.rest = append(g.rest, globToken{kind: globStar})
		case c == '?':
			g.rest = append(g.rest, globToken{kind: globOne})
		default:
			g.rest = append(g.rest, globToken{kind: globLiteral, c: c})
		}
	}
	return g
}

// match reports whether the pattern matches all of s.
func (g glob) match(s string) bool {
	rest, ok := strings.CutPrefix(s, g.prefix)
	switch {
	case !ok:
		return false
	case len(g.rest) == 0:
		return rest == ""
	case len(g.rest) == 1 && g.rest[0].kind == globStarStar:
		return true
	}
	return nfa(g.rest).match(rest)
}

// nfa runs glob tokens over a string: time O(len(n)*len(s)), whatever the
// pattern, so no input backtracks exponentially.
type nfa []globToken

func (g nfa) match(s string) bool {
	n := len(g) + 1
	var bufs [2][64]bool
	cur, next := bufs[0][:0], bufs[1][:0]
	if n > len(bufs[0]) {
		cur, next = make([]bool, 0, n), make([]bool, 0, n)
	}
	cur, next = cur[:n], next[:n]
	cur[0] = true
	g.closure(cur)
	for i := 0; i < len(s); i++ {
		clear(next)
		live := false
		for j, t := range g {
			if !cur[j] {
				continue
			}
			if to, ok := t.step(s[i], j); ok {
				next[to] = true
				live = true
			}
		}
		if !live {
			return false
		}
		g.closure(next)
		cur, next = next, cur
	}
	return cur[len(g)]
}

// step is the transition from state j on byte c.
func (t globToken) step(c byte, j int) (int, bool) {
	switch t.kind {
	case globLiteral:
		return j + 1, c == t.c
	case globOne:
		return j + 1, c != '/'
	case globStar:
		return j, c != '/'
	default:
		return j, true
	}
}

// closure adds the states reachable without input: a star may match nothing.
func (g nfa) closure(states []bool) {
	for j, t := range g {
		if states[j] && (t.kind == globStar || t.kind == globStarStar) {
			states[j+1] = true
		}
	}
}

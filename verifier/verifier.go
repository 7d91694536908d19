package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/cosign-dev/cosign/sigstore"
)

// Defaults for the zero values of Config.
const (
	DefaultCacheSize     = 10000
	DefaultTTL           = time.Hour
	DefaultNegativeTTL   = 30 * time.Second
	DefaultLookupTimeout = 30 * time.Second
)

// maxInheritedChildren caps how many children of one index are admitted by
// inheritance; children past it must be verified on their own.
const maxInheritedChildren = 1000

// Config configures a Verifier.
type Config struct {
	// Policies are tried in order; the first whose Match fits decides.
	Policies []*Policy
	// DefaultAllow admits, unchecked, repositories no policy matches;
	// by default they are refused (ReasonNoPolicy).
	DefaultAllow bool
	// CacheSize bounds the decision cache (entries); 0 means 10000.
	CacheSize int
	// TTL is how long an admission is cached; 0 means 1h, negative
	// disables caching of admissions.
	TTL time.Duration
	// NegativeTTL is how long a refusal (or a warn-mode admission) is
	// cached; 0 means 30s, negative disables caching of refusals.
	NegativeTTL time.Duration
	// LookupTimeout bounds one shared signature lookup, which outlives
	// the callers that wait on it; 0 means 30s.
	LookupTimeout time.Duration
	// OnDecision, if set, is called with every decision Decide returns
	// (not with errors). It runs on the caller's goroutine, concurrently
	// with other calls: keep it fast.
	OnDecision func(Image, Decision)
}

// Stats counts what a Verifier did since it was made.
type Stats struct {
	// Hits and Misses count cache lookups (policies in mode allow and
	// repositories without a policy are not looked up).
	Hits, Misses uint64
	// Lookups counts calls to Source.Signatures.
	Lookups uint64
	// Admitted counts admissions, warned ones included; Refused counts
	// refusals; Warned counts admissions made only because of mode warn.
	Admitted, Refused, Warned uint64
	// Errors counts Decide calls that returned an error.
	Errors uint64
}

// Verifier decides, with a cache, whether digests may be served. It is safe
// for concurrent use.
type Verifier struct {
	policies      atomic.Pointer[[]compiledPolicy]
	defaultAllow  bool
	ttl, negTTL   time.Duration
	lookupTimeout time.Duration
	onDecision    func(Image, Decision)
	cache         *lru.Cache[cacheKey, entry]
	group         singleflight.Group
	now           func() time.Time // replaced in tests

	hits, misses, lookups               atomic.Uint64
	admitted, refused, warned, failures atomic.Uint64
}

// compiledPolicy is a validated policy with its globs and fingerprint
// computed once.
type compiledPolicy struct {
	policy *Policy
	globs  []glob
	fp     string
}

func (c *compiledPolicy) matches(name string) bool {
	for _, g := range c.globs {
		if g.match(name) {
			return true
		}
	}
	return false
}

// cacheKey is a SHA-256 over registry, repository, digest and policy
// fingerprint: entries are never shared across upstreams, repositories or
// policies.
type cacheKey [sha256.Size]byte

func keyFor(img Image, fp string) cacheKey {
	var stack [512]byte
	buf := stack[:0]
	for _, s := range [...]string{img.Registry, img.Repository, img.Digest.Algorithm, img.Digest.Hex, fp} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return sha256.Sum256(buf)
}

// entry is a cached decision and when it stops counting.
type entry struct {
	d       Decision
	expires time.Time
}

// New validates cfg and returns a Verifier. Policies are copied with their
// defaults filled in; later changes to cfg do not reach the Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.CacheSize < 0 {
		return nil, fmt.Errorf("verifier: cache size %d is negative", cfg.CacheSize)
	}
	size := orDefault(cfg.CacheSize, DefaultCacheSize)
	cache, err := lru.New[cacheKey, entry](size)
	if err != nil {
		return nil, fmt.Errorf("verifier: making cache: %w", err)
	}
	v := &Verifier{
		defaultAllow:  cfg.DefaultAllow,
		ttl:           orDefault(cfg.TTL, DefaultTTL),
		negTTL:        orDefault(cfg.NegativeTTL, DefaultNegativeTTL),
		lookupTimeout: orDefault(cfg.LookupTimeout, DefaultLookupTimeout),
		onDecision:    cfg.OnDecision,
		cache:         cache,
		now:           time.Now,
	}
	if v.lookupTimeout < 0 {
		return nil, fmt.Errorf("verifier: lookup timeout %v is negative", cfg.LookupTimeout)
	}
	if err := v.SetPolicies(cfg.Policies); err != nil {
		return nil, err
	}
	return v, nil
}

func orDefault[T ~int | ~int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// SetPolicies validates and installs a new policy list, for a
// configuration reload. The cache is kept: a changed policy has a new
// fingerprint, so its decisions are made afresh.
func (v *Verifier) SetPolicies(ps []*Policy) error {
	norm, err := validatePolicies(ps)
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	compiled := make([]compiledPolicy, len(norm))
	for i, p := range norm {
		c := compiledPolicy{policy: p, fp: p.Fingerprint()}
		for _, m := range p.Match {
			c.globs = append(c.globs, compileGlob(m))
		}
		compiled[i] = c
	}
	v.policies.Store(&compiled)
	return nil
}

// Policy returns the first policy that matches registry/repository, or nil.
// The result is the Verifier's own copy: do not modify it.
func (v *Verifier) Policy(registry, repository string) *Policy {
	if c := v.policyFor(registry, repository); c != nil {
		return c.policy
	}
	return nil
}

func (v *Verifier) policyFor(registry, repository string) *compiledPolicy {
	name := registry + "/" + repository
	ps := *v.policies.Load()
	for i := range ps {
		if ps[i].matches(name) {
			return &ps[i]
		}
	}
	return nil
}

// Stats returns the counters.
func (v *Verifier) Stats() Stats {
	return Stats{
		Hits:     v.hits.Load(),
		Misses:   v.misses.Load(),
		Lookups:  v.lookups.Load(),
		Admitted: v.admitted.Load(),
		Refused:  v.refused.Load(),
		Warned:   v.warned.Load(),
		Errors:   v.failures.Load(),
	}
}

// CacheLen is the number of cached decisions, expired ones included until
// they are evicted or replaced.
func (v *Verifier) CacheLen() int {
	return v.cache.Len()
}

// Decide decides whether img, whose manifest is m, may be served. m may
// be nil when the manifest is not at hand (the decision then rests on
// signatures alone).
//
// The policy is chosen by img's registry and repository. Decisions are
// cached per registry, repository, digest and policy fingerprint, for TTL
// (admissions) or NegativeTTL (refusals and warn-mode admissions).
// Concurrent calls for one key share one lookup, which runs with its own
// timeout and is not cancelled by the caller that started it; each caller
// returns when its own ctx is done.
//
// A signature artifact (see artifact.go) in a repository a policy covers
// is admitted without signatures (ReasonSignatureArtifact). Anything else
// needs signatures. When the Source fails on some of them, the digest is
// still admitted if the others suffice; otherwise the error is returned
// and nothing is cached, except for an error that wraps only
// sigstore.ErrInvalidArtifact: that is a refusal (ReasonInvalid). When an
// admitted digest is an index and the policy's children mode is inherit,
// the manifests it lists are cached as admitted (ReasonParent) in the same
// repository until the index's own decision expires.
//
// Decisions carry the Where and Format of their Verified signatures, not
// the signed bytes, which are not cached.
func (v *Verifier) Decide(ctx context.Context, src Source, img Image, m *sigstore.Manifest) (Decision, error) {
	d, err := v.decide(ctx, src, img, m)
	if err != nil {
		v.failures.Add(1)
		return Decision{}, err
	}
	v.record(img, d)
	return d, nil
}

func (v *Verifier) decide(ctx context.Context, src Source, img Image, m *sigstore.Manifest) (Decision, error) {
	if err := checkImage(img); err != nil {
		return Decision{}, err
	}
	cp := v.policyFor(img.Registry, img.Repository)
	if cp == nil {
		return v.noPolicy(img), nil
	}
	if cp.policy.mode() == ModeAllow {
		return allowed(cp.policy, img), nil
	}
	key := keyFor(img, cp.fp)
	e, ok := v.cached(key)
	if ok {
		v.hits.Add(1)
	} else {
		v.misses.Add(1)
		var err error
		if e, err = v.shared(ctx, src, cp, img, m, key); err != nil {
			return Decision{}, err
		}
	}
	v.inheritChildren(cp, img, e, m)
	d := cloneDecision(e.d)
	d.Cached = ok
	return d, nil
}

func checkImage(img Image) error {
	if img.Registry == "" || img.Repository == "" {
		return fmt.Errorf("verifier: image %q has no registry or repository", img)
	}
	if img.Digest.Algorithm == "" || img.Digest.Hex == "" {
		return fmt.Errorf("verifier: image %q has no digest", img)
	}
	return nil
}

func (v *Verifier) noPolicy(img Image) Decision {
	if v.defaultAllow {
		return Decision{
			Admit:   true,
			Reason:  ReasonAllowed,
			Message: oneLine(fmt.Sprintf("%s: allowed: no policy matches and the default is allow", img)),
		}
	}
	return Decision{
		Reason:  ReasonNoPolicy,
		Message: oneLine(fmt.Sprintf("%s: refused: no policy matches %s/%s", img, img.Registry, img.Repository)),
	}
}

// cached returns the unexpired entry for key.
func (v *Verifier) cached(key cacheKey) (entry, bool) {
	e, ok := v.cache.Get(key)
	if !ok || !v.now().Before(e.expires) {
		return entry{}, false
	}
	return e, true
}

// shared runs one lookup per key however many callers want it, and waits
// for it or for ctx.
func (v *Verifier) shared(ctx context.Context, src Source, cp *compiledPolicy, img Image, m *sigstore.Manifest, key cacheKey) (entry, error) {
	if src == nil {
		return entry{}, errors.New("verifier: no signature source")
	}
	if err := ctx.Err(); err != nil {
		return entry{}, fmt.Errorf("verifier: deciding %s: %w", img, err)
	}
	ch := v.group.DoChan(string(key[:]), func() (any, error) {
		return v.lookup(ctx, src, cp, img, m, key)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return entry{}, r.Err
		}
		return r.Val.(entry), nil
	case <-ctx.Done():
		return entry{}, fmt.Errorf("verifier: deciding %s: %w", img, context.Cause(ctx))
	}
}

// lookup decides img afresh and caches the result. It runs detached from
// the caller's cancellation, bounded by lookupTimeout.
func (v *Verifier) lookup(ctx context.Context, src Source, cp *compiledPolicy, img Image, m *sigstore.Manifest, key cacheKey) (e entry, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, err = entry{}, fmt.Errorf("verifier: reading signatures for %s: source panicked: %v", img, r)
		}
	}()
	if e, ok := v.cached(key); ok { // a flight that just ended stored it
		return e, nil
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.lookupTimeout)
	defer cancel()
	d, err := v.evaluate(lctx, src, cp.policy, img, m)
	if err != nil {
		return entry{}, err
	}
	ttl := v.negTTL
	if d.Admit && !d.Warn {
		ttl = v.ttl
	}
	e = entry{d: trimDecision(d), expires: v.now().Add(ttl)}
	if ttl > 0 {
		v.cache.Add(key, e)
	}
	return e, nil
}

// evaluate reads what the decision on img needs and makes it.
func (v *Verifier) evaluate(ctx context.Context, src Source, p *Policy, img Image, m *sigstore.Manifest) (Decision, error) {
	if _, ok := artifactLayers(m); ok {
		isArtifact, err := signatureArtifact(ctx, src, img.Repository, m)
		if err != nil {
			return Decision{}, fmt.Errorf("verifier: reading the payloads of %s: %w", img, err)
		}
		if isArtifact {
			return Decision{
				Admit:   true,
				Reason:  ReasonSignatureArtifact,
				Policy:  p.Name,
				Message: oneLine(fmt.Sprintf("%s: admitted by policy %q: a signature artifact (no runnable content)", img, p.Name)),
			}, nil
		}
	}
	v.lookups.Add(1)
	memo := keylessMemo{}
	enough, err := sufficient(p, img, memo)
	if err != nil {
		return Decision{}, fmt.Errorf("verifier: %w", err)
	}
	var atts []sigstore.Signature
	var attErr error
	if len(p.Attestations) > 0 {
		atts, attErr = src.Attestations(ctx, img.Repository, img.Digest)
		enough(atts)
	}
	sigs, err := src.SignaturesUntil(ctx, img.Repository, img.Digest, enough)
	sigs = append(sigs, atts...)
	err = errors.Join(err, attErr)
	t, terr := newTally(p, img, memo)
	if terr != nil {
		return Decision{}, fmt.Errorf("verifier: %w", terr)
	}
	t.considerAll(sigs)
	d := t.decision(sigs)
	switch {
	case err == nil:
		return d, nil
	case d.Admit && !d.Warn:
		// The signatures that were read suffice; the ones that could not
		// be read could only add to them.
		return d, nil
	case onlyInvalid(err):
		return refuse(p, img, ReasonInvalid, err.Error()), nil
	default:
		return Decision{}, fmt.Errorf("verifier: reading signatures for %s: %w", img, err)
	}
}

// sufficient is the sigstore.Enough of a lookup under p: true once the
// batches seen hold signatures of threshold distinct trusted signers whose
// claims hold, and the attestations the policy requires, so that the
// source stops reading (past junk it would otherwise have to read).
// Keyless verifications are remembered in memo for the decision.
func sufficient(p *Policy, img Image, memo keylessMemo) (sigstore.Enough, error) {
	t, err := newTally(p, img, memo)
	if err != nil {
		return nil, err
	}
	return func(batch []sigstore.Signature) bool {
		t.considerAll(batch)
		return t.admits()
	}, nil
}

// onlyInvalid reports whether err is an invalid artifact and no outage.
func onlyInvalid(err error) bool {
	var re *sigstore.RegistryError
	return errors.Is(err, sigstore.ErrInvalidArtifact) && !errors.As(err, &re)
}

// trimDecision drops the signed bytes from Verified: a cache entry must
// not hold up to MaxSignatures payloads.
func trimDecision(d Decision) Decision {
	if d.Verified != nil {
		t := make([]sigstore.Signature, len(d.Verified))
		for i, s := range d.Verified {
			t[i] = sigstore.Signature{Format: s.Format, Where: s.Where, PayloadType: s.PayloadType}
		}
		d.Verified = t
	}
	return d
}

// cloneDecision copies the slices a cached decision shares.
func cloneDecision(d Decision) Decision {
	d.Keys = slices.Clone(d.Keys)
	d.Verified = slices.Clone(d.Verified)
	return d
}

func (v *Verifier) record(img Image, d Decision) {
	switch {
	case !d.Admit:
		v.refused.Add(1)
	case d.Warn:
		v.admitted.Add(1)
		v.warned.Add(1)
	default:
		v.admitted.Add(1)
	}
	if v.onDecision != nil {
		v.onDecision(img, cloneDecision(d))
	}
}

// inheritChildren caches the children of an admitted index as admitted, in
// the same repository, with the index's expiry. It runs on every admitted
// decision of an index, cached or not, so that a child index admitted by
// inheritance passes its own children on. Only a verified index passes
// admission on: a signature artifact or a warn-mode admission does not.
func (v *Verifier) inheritChildren(cp *compiledPolicy, img Image, parent entry, m *sigstore.Manifest) {
	d := parent.d
	if !d.Admit || d.Warn || (d.Reason != ReasonVerified && d.Reason != ReasonParent) {
		return
	}
	if cp.policy.children() != ChildrenInherit || !v.now().Before(parent.expires) || m == nil {
		return
	}
	children := m.Children()
	if len(children) > maxInheritedChildren {
		children = children[:maxInheritedChildren]
	}
	for _, child := range children {
		childImg := Image{Registry: img.Registry, Repository: img.Repository, Digest: child}
		key := keyFor(childImg, cp.fp)
		if old, ok := v.cache.Peek(key); ok && old.d.Admit && !old.d.Warn && !old.expires.Before(parent.expires) {
			continue
		}
		v.cache.Add(key, entry{d: Decision{
			Admit:   true,
			Reason:  ReasonParent,
			Policy:  d.Policy,
			Keys:    d.Keys,
			Message: oneLine(fmt.Sprintf("%s: admitted by policy %q: listed in verified index %s", childImg, d.Policy, img.Digest)),
		}, expires: parent.expires})
	}
}

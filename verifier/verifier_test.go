package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// fakeSource is a Source that serves fixed signatures, counts calls and can
// block until released.
type fakeSource struct {
	mu    sync.Mutex
	sigs  map[string][]sigstore.Signature // repository@digest
	blobs map[v1.Hash][]byte              // served by Blob; others are not found
	errs  []error                         // returned by successive calls, then nil

	calls    atomic.Int64
	started  chan struct{} // closed on the first call, if set
	once     sync.Once
	release  chan struct{} // calls wait for it to close, if set
	ctxAlive atomic.Bool   // the last call's ctx was still live when it returned
}

func newFakeSource() *fakeSource {
	return &fakeSource{sigs: map[string][]sigstore.Signature{}}
}

func (f *fakeSource) add(repo string, d v1.Hash, sigs ...sigstore.Signature) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := repo + "@" + d.String()
	f.sigs[k] = append(f.sigs[k], sigs...)
}

func (f *fakeSource) SignaturesUntil(ctx context.Context, repo string, d v1.Hash, _ sigstore.Enough) ([]sigstore.Signature, error) {
	f.calls.Add(1)
	if f.started != nil {
		f.once.Do(func() { close(f.started) })
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, &sigstore.RegistryError{Op: "fake", Err: ctx.Err()}
		}
	}
	f.ctxAlive.Store(ctx.Err() == nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return nil, err
		}
	}
	return f.sigs[repo+"@"+d.String()], nil
}

// Attestations returns the signatures added under repo@digest/att.
func (f *fakeSource) Attestations(_ context.Context, repo string, d v1.Hash) ([]sigstore.Signature, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sigs[repo+"@"+d.String()+"/att"], nil
}

func (f *fakeSource) Blob(_ context.Context, _ string, d sigstore.Descriptor, limit int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[d.Digest]
	if !ok || int64(len(b)) != d.Size || int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: blob %s not found or not as described", sigstore.ErrInvalidArtifact, d.Digest)
	}
	return b, nil
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newVerifier(t testing.TB, cfg Config) (*Verifier, *fakeClock) {
	t.Helper()
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	v.now = clock.Now
	return v, clock
}

func mustDecide(t testing.TB, v *Verifier, src Source, img Image, manifest []byte, mediaType string) Decision {
	t.Helper()
	d, err := v.Decide(context.Background(), src, img, parseManifest(t, manifest, mediaType))
	if err != nil {
		t.Fatalf("Decide(%s): %v", img, err)
	}
	return d
}

// parseManifest parses manifest as the proxy does before it asks the
// verifier. A document the parser refuses is never served, so it reaches
// the verifier as no manifest at all: nil, as for no bytes.
func parseManifest(t testing.TB, manifest []byte, mediaType string) *sigstore.Manifest {
	t.Helper()
	if manifest == nil {
		return nil
	}
	m, err := sigstore.ParseManifest(manifest, mediaType)
	if err != nil {
		t.Logf("ParseManifest refuses it: %v", err)
		return nil
	}
	return m
}

// Media types the tests serve.
const (
	manifestType        = "application/vnd.oci.image.manifest.v1+json"
	ociIndexMediaType   = "application/vnd.oci.image.index.v1+json"
	dockerListMediaType = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func TestDecideCachesAdmission(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	src := newFakeSource()
	img := testImage("app")
	src.add(testRepo, img.Digest, simpleSig(t, key, testRef, img.Digest, nil))

	for i := range 3 {
		d := mustDecide(t, v, src, img, nil, manifestType)
		if !d.Admit || d.Reason != ReasonVerified {
			t.Fatalf("call %d: %v %q: %s", i, d.Admit, d.Reason, d.Message)
		}
	}
	want := Stats{Hits: 2, Misses: 1, Lookups: 1, Admitted: 3}
	if got := v.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if v.CacheLen() != 1 {
		t.Errorf("CacheLen = %d, want 1", v.CacheLen())
	}
}

func TestDecideExpiry(t *testing.T) {
	key, other := newEd25519(t), newEd25519(t)
	good, bad := testImage("good"), testImage("bad")
	src := newFakeSource()
	src.add(testRepo, good.Digest, simpleSig(t, key, testRef, good.Digest, nil))
	src.add(testRepo, bad.Digest, simpleSig(t, other, testRef, bad.Digest, nil))
	warnPolicy := testPolicy(key)
	warnPolicy.Mode = ModeWarn

	tests := []struct {
		name   string
		policy *Policy
		img    Image
		ttl    time.Duration // how long the decision must stay cached
	}{
		{"admission lives for TTL", testPolicy(key), good, 10 * time.Minute},
		{"refusal lives for NegativeTTL", testPolicy(key), bad, 20 * time.Second},
		{"warn admission lives for NegativeTTL", warnPolicy, bad, 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, clock := newVerifier(t, Config{Policies: []*Policy{tt.policy}, TTL: 10 * time.Minute, NegativeTTL: 20 * time.Second})
			first := mustDecide(t, v, src, tt.img, nil, manifestType)
			clock.Advance(tt.ttl - time.Second)
			mustDecide(t, v, src, tt.img, nil, manifestType)
			if got := v.Stats().Lookups; got != 1 {
				t.Fatalf("lookups before expiry = %d, want 1", got)
			}
			clock.Advance(time.Second)
			again := mustDecide(t, v, src, tt.img, nil, manifestType)
			if got := v.Stats().Lookups; got != 2 {
				t.Fatalf("lookups after expiry = %d, want 2", got)
			}
			if again.Admit != first.Admit || again.Reason != first.Reason {
				t.Errorf("decision changed: %v %q then %v %q", first.Admit, first.Reason, again.Admit, again.Reason)
			}
		})
	}
}

func TestDecideNegativeCachingDisabled(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}, NegativeTTL: -1})
	src := newFakeSource()
	img := testImage("unsigned")
	for range 2 {
		if d := mustDecide(t, v, src, img, nil, manifestType); d.Admit || d.Reason != ReasonNoSignatures {
			t.Fatalf("got %v %q", d.Admit, d.Reason)
		}
	}
	if got := v.Stats().Lookups; got != 2 {
		t.Errorf("Lookups = %d, want 2", got)
	}
	if v.CacheLen() != 0 {
		t.Errorf("CacheLen = %d, want 0", v.CacheLen())
	}
}

func TestDecideWithoutPolicy(t *testing.T) {
	key := newEd25519(t)
	img := Image{Registry: "other.example", Repository: "x", Digest: digestOf("x")}
	tests := []struct {
		name         string
		defaultAllow bool
		admit        bool
		reason       Reason
	}{
		{"refused by default", false, false, ReasonNoPolicy},
		{"admitted with DefaultAllow", true, true, ReasonAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}, DefaultAllow: tt.defaultAllow})
			src := newFakeSource()
			d := mustDecide(t, v, src, img, nil, manifestType)
			if d.Admit != tt.admit || d.Reason != tt.reason || d.Policy != "" {
				t.Fatalf("got %v %q policy %q", d.Admit, d.Reason, d.Policy)
			}
			if !strings.Contains(d.Message, img.String()) || !strings.Contains(d.Message, "no policy matches") {
				t.Errorf("Message = %q", d.Message)
			}
			if src.calls.Load() != 0 || v.CacheLen() != 0 {
				t.Errorf("looked up %d times, cached %d", src.calls.Load(), v.CacheLen())
			}
		})
	}
}

func TestDecideAllowModeSkipsLookup(t *testing.T) {
	v, _ := newVerifier(t, Config{Policies: []*Policy{{Name: "open", Match: []string{"**"}, Mode: ModeAllow}}})
	src := newFakeSource()
	d := mustDecide(t, v, src, testImage("x"), nil, manifestType)
	if !d.Admit || d.Reason != ReasonAllowed || d.Policy != "open" {
		t.Fatalf("got %v %q %q", d.Admit, d.Reason, d.Policy)
	}
	if src.calls.Load() != 0 || v.Stats().Misses != 0 {
		t.Errorf("allow mode looked up signatures: %+v", v.Stats())
	}
}

func TestDecideSourceErrors(t *testing.T) {
	key := newEd25519(t)
	img := testImage("app")
	good := simpleSig(t, key, testRef, img.Digest, nil)
	unavailable := &sigstore.RegistryError{StatusCode: 503, Message: "unavailable"}
	tooMany := &sigstore.RegistryError{StatusCode: 429, Code: "TOOMANYREQUESTS"}
	timeout := &sigstore.RegistryError{Err: context.DeadlineExceeded}
	invalid := fmt.Errorf("sha256-x.sig: 5000 layers: %w", sigstore.ErrInvalidArtifact)

	tests := []struct {
		name    string
		mode    Mode
		err     error
		wantErr bool   // Decide returns the error, and it is not cached
		reason  Reason // else the decision's reason, cached
		admit   bool
	}{
		{"5xx is an error", ModeEnforce, unavailable, true, "", false},
		{"429 is an error", ModeEnforce, tooMany, true, "", false},
		{"timeout is an error", ModeEnforce, timeout, true, "", false},
		{"plain error is an error", ModeEnforce, errors.New("connection reset"), true, "", false},
		{"invalid artifact is a refusal", ModeEnforce, invalid, false, ReasonInvalid, false},
		{"invalid artifact in warn mode", ModeWarn, invalid, false, ReasonInvalid, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy(key)
			p.Mode = tt.mode
			v, _ := newVerifier(t, Config{Policies: []*Policy{p}})
			src := newFakeSource()
			src.add(testRepo, img.Digest, good)
			src.errs = []error{tt.err}
			d, err := v.Decide(context.Background(), src, img, nil)
			if tt.wantErr {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Decide error = %v, want it to wrap %v", err, tt.err)
				}
				if v.CacheLen() != 0 || v.Stats().Errors != 1 {
					t.Fatalf("error cached or not counted: len %d, %+v", v.CacheLen(), v.Stats())
				}
				// Next time the source answers: the error was not remembered.
				if d := mustDecide(t, v, src, img, nil, manifestType); !d.Admit || d.Reason != ReasonVerified {
					t.Fatalf("after recovery: %v %q", d.Admit, d.Reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Admit != tt.admit || d.Reason != tt.reason || !strings.Contains(d.Message, "5000 layers") {
				t.Fatalf("got %v %q %q", d.Admit, d.Reason, d.Message)
			}
			mustDecide(t, v, src, img, nil, manifestType)
			if got := src.calls.Load(); got != 1 {
				t.Errorf("lookups = %d, want 1 (refusal cached)", got)
			}
		})
	}
}

func TestDecideCallerCancelDoesNotCancelLookup(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	img := testImage("app")
	src := newFakeSource()
	src.add(testRepo, img.Digest, simpleSig(t, key, testRef, img.Digest, nil))
	src.started, src.release = make(chan struct{}), make(chan struct{})

	ctx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := v.Decide(ctx, src, img, nil)
		firstErr <- err
	}()
	<-src.started
	type result struct {
		d   Decision
		err error
	}
	second := make(chan result, 1)
	go func() {
		d, err := v.Decide(context.Background(), src, img, nil)
		second <- result{d, err}
	}()

	cancel()
	select {
	case err := <-firstErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled caller did not return")
	}
	close(src.release)
	r := <-second
	if r.err != nil || !r.d.Admit || r.d.Reason != ReasonVerified {
		t.Fatalf("waiting caller got %v %q %v", r.d.Admit, r.d.Reason, r.err)
	}
	if !src.ctxAlive.Load() {
		t.Error("the shared lookup's context was cancelled with the first caller")
	}
	if got := src.calls.Load(); got != 1 {
		t.Errorf("lookups = %d, want 1", got)
	}
}

func TestDecideLookupTimeout(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}, LookupTimeout: 20 * time.Millisecond})
	src := newFakeSource()
	src.release = make(chan struct{}) // never closed: only the timeout ends the call
	_, err := v.Decide(context.Background(), src, testImage("app"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Decide error = %v, want DeadlineExceeded", err)
	}
	if v.CacheLen() != 0 {
		t.Error("timeout was cached")
	}
}

type panicSource struct{}

func (panicSource) SignaturesUntil(context.Context, string, v1.Hash, sigstore.Enough) ([]sigstore.Signature, error) {
	panic("source bug")
}

func (panicSource) Attestations(context.Context, string, v1.Hash) ([]sigstore.Signature, error) {
	panic("source bug")
}

func (panicSource) Blob(context.Context, string, sigstore.Descriptor, int64) ([]byte, error) {
	panic("source bug")
}

func TestDecideBadInput(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	tests := []struct {
		name string
		src  Source
		img  Image
		want string
	}{
		{"no digest", newFakeSource(), Image{Registry: testRegistry, Repository: testRepo}, "no digest"},
		{"no registry", newFakeSource(), Image{Repository: testRepo, Digest: digestOf("x")}, "no registry"},
		{"no repository", newFakeSource(), Image{Registry: testRegistry, Digest: digestOf("x")}, "no registry or repository"},
		{"nil source", nil, testImage("x"), "no signature source"},
		{"panicking source", panicSource{}, testImage("x"), "source panicked: source bug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Decide(context.Background(), tt.src, tt.img, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decide error = %v, want %q", err, tt.want)
			}
		})
	}
	if v.CacheLen() != 0 {
		t.Error("bad input was cached")
	}
}

func TestDecideStatsAndHook(t *testing.T) {
	key, other := newEd25519(t), newEd25519(t)
	warn := testPolicy(key)
	warn.Name, warn.Mode, warn.Match = "warn", ModeWarn, []string{testRegistry + "/warn/**"}
	var mu sync.Mutex
	var seen []string
	v, _ := newVerifier(t, Config{
		Policies: []*Policy{testPolicy(key), warn},
		OnDecision: func(img Image, d Decision) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %v %s", img.Repository, d.Admit, d.Reason))
		},
	})
	src := newFakeSource()
	good, bad := testImage("good"), testImage("bad")
	warned := Image{Registry: testRegistry, Repository: "warn/app", Digest: bad.Digest}
	src.add(testRepo, good.Digest, simpleSig(t, key, testRef, good.Digest, nil))
	src.add("warn/app", bad.Digest, simpleSig(t, other, testRegistry+"/warn/app", bad.Digest, nil))

	mustDecide(t, v, src, good, nil, manifestType)
	mustDecide(t, v, src, bad, nil, manifestType)
	mustDecide(t, v, src, warned, nil, manifestType)
	mustDecide(t, v, src, good, nil, manifestType)

	want := Stats{Hits: 1, Misses: 3, Lookups: 3, Admitted: 3, Refused: 1, Warned: 1}
	if got := v.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	wantSeen := []string{
		"prod/app true verified",
		"prod/app false no signatures",
		"warn/app true no signature by a trusted key",
		"prod/app true verified",
	}
	if strings.Join(seen, "|") != strings.Join(wantSeen, "|") {
		t.Errorf("hook saw %q, want %q", seen, wantSeen)
	}
}

func TestDecideLRUEviction(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}, CacheSize: 2})
	src := newFakeSource()
	a, b, c := testImage("a"), testImage("b"), testImage("c")
	for _, img := range []Image{a, b, c} {
		mustDecide(t, v, src, img, nil, manifestType)
	}
	if v.CacheLen() != 2 {
		t.Fatalf("CacheLen = %d, want 2", v.CacheLen())
	}
	mustDecide(t, v, src, c, nil, manifestType) // still cached
	mustDecide(t, v, src, a, nil, manifestType) // evicted: looked up again
	if got := src.calls.Load(); got != 4 {
		t.Errorf("lookups = %d, want 4", got)
	}
}

func TestDecideReturnsCopies(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	src := newFakeSource()
	img := testImage("app")
	sig := simpleSig(t, key, testRef, img.Digest, nil)
	sig.Where = "sha256-x.sig layer 1"
	src.add(testRepo, img.Digest, sig)

	d := mustDecide(t, v, src, img, nil, manifestType)
	if len(d.Verified) != 1 || d.Verified[0].Where != sig.Where || d.Verified[0].Signed != nil || d.Verified[0].Payload != nil {
		t.Fatalf("Verified = %+v, want Where kept and signed bytes dropped", d.Verified)
	}
	d.Keys[0] = "tampered"
	d.Verified[0].Where = "tampered"
	again := mustDecide(t, v, src, img, nil, manifestType)
	if again.Keys[0] != key.Public().ID() || again.Verified[0].Where != sig.Where {
		t.Errorf("changing a returned decision changed the cache: %+v", again)
	}
}

func TestSetPoliciesKeepsOldOnError(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	if err := v.SetPolicies([]*Policy{{Name: "bad", Match: []string{"**"}}}); err == nil {
		t.Fatal("SetPolicies accepted a policy without keys")
	}
	if p := v.Policy(testRegistry, testRepo); p == nil || p.Name != "prod" {
		t.Errorf("policy after failed SetPolicies = %v", p)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative cache size":     {CacheSize: -1},
		"negative lookup timeout": {LookupTimeout: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// index builds an index document listing children.
func index(mediaType string, children ...v1.Hash) []byte {
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	doc := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Manifests     []desc `json:"manifests"`
	}{SchemaVersion: 2, MediaType: mediaType}
	for _, c := range children {
		doc.Manifests = append(doc.Manifests, desc{MediaType: manifestType, Digest: c.String(), Size: 1})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

func TestInheritChildren(t *testing.T) {
	key := newEd25519(t)
	child := testImage("child")
	ambiguous := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"digest":%q}],"layers":[]}`,
		ociIndexMediaType, child.Digest)
	tests := []struct {
		name      string
		mode      Mode
		children  ChildrenMode
		body      []byte
		mediaType string
		inherit   bool
	}{
		{"oci index", ModeEnforce, ChildrenInherit, index(ociIndexMediaType, child.Digest), ociIndexMediaType, true},
		{"docker manifest list", ModeEnforce, ChildrenInherit, index(dockerListMediaType, child.Digest), dockerListMediaType, true},
		{"default children mode inherits", ModeEnforce, "", index(ociIndexMediaType, child.Digest), ociIndexMediaType, true},
		{"media type with parameters", ModeEnforce, ChildrenInherit, index(ociIndexMediaType, child.Digest), ociIndexMediaType + "; charset=utf-8", true},
		{"media type from the body", ModeEnforce, ChildrenInherit, index(ociIndexMediaType, child.Digest), "", true},
		{"require-signed", ModeEnforce, ChildrenRequireSigned, index(ociIndexMediaType, child.Digest), ociIndexMediaType, false},
		{"warn-mode admission passes nothing on", ModeWarn, ChildrenInherit, index(ociIndexMediaType, child.Digest), ociIndexMediaType, false},
		{"served as a manifest", ModeEnforce, ChildrenInherit, index(ociIndexMediaType, child.Digest), manifestType, false},
		{"body disagrees with media type", ModeEnforce, ChildrenInherit, index(dockerListMediaType, child.Digest), ociIndexMediaType, false},
		{"index that is also a manifest", ModeEnforce, ChildrenInherit, []byte(ambiguous), ociIndexMediaType, false},
		{"bad JSON", ModeEnforce, ChildrenInherit, []byte(`{"manifests":[`), ociIndexMediaType, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy(key)
			p.Mode, p.Children = tt.mode, tt.children
			v, _ := newVerifier(t, Config{Policies: []*Policy{p}})
			parent := testImage(string(tt.body))
			src := newFakeSource()
			// The parent is signed, unless the mode is warn (then it is admitted anyway).
			if tt.mode != ModeWarn {
				src.add(testRepo, parent.Digest, simpleSig(t, key, testRef, parent.Digest, nil))
			}
			if d := mustDecide(t, v, src, parent, tt.body, tt.mediaType); !d.Admit {
				t.Fatalf("parent refused: %s", d.Message)
			}
			d := mustDecide(t, v, src, child, nil, manifestType)
			if tt.inherit {
				if !d.Admit || d.Reason != ReasonParent || !strings.Contains(d.Message, "listed in verified index "+parent.Digest.String()) {
					t.Fatalf("child: %v %q %q", d.Admit, d.Reason, d.Message)
				}
				if len(d.Keys) != 1 || d.Keys[0] != key.Public().ID() {
					t.Errorf("child Keys = %v, want the parent's", d.Keys)
				}
				return
			}
			if d.Reason == ReasonParent {
				t.Fatalf("child admitted by parent: %s", d.Message)
			}
		})
	}
}

func TestInheritedChildExpiresWithParent(t *testing.T) {
	key := newEd25519(t)
	v, clock := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}, TTL: time.Hour})
	child := testImage("child")
	body := index(ociIndexMediaType, child.Digest)
	parent := testImage(string(body))
	src := newFakeSource()
	src.add(testRepo, parent.Digest, simpleSig(t, key, testRef, parent.Digest, nil))

	// The child was refused before the index was pulled; the index's
	// admission overrides that refusal.
	if d := mustDecide(t, v, src, child, nil, manifestType); d.Admit {
		t.Fatalf("child admitted alone: %s", d.Message)
	}
	mustDecide(t, v, src, parent, body, ociIndexMediaType)
	clock.Advance(30 * time.Minute)
	// A cached hit on the index passes its children on again, without
	// extending their life past the index's.
	mustDecide(t, v, src, parent, body, ociIndexMediaType)
	if d := mustDecide(t, v, src, child, nil, manifestType); d.Reason != ReasonParent {
		t.Fatalf("child not inherited: %q", d.Reason)
	}
	clock.Advance(30 * time.Minute)
	if d := mustDecide(t, v, src, child, nil, manifestType); d.Admit {
		t.Fatalf("child outlived its parent: %q", d.Reason)
	}
}

// TestIndexChildrenCap: an index passes admission on to at most
// maxInheritedChildren children, each listed once.
func TestIndexChildrenCap(t *testing.T) {
	key := newEd25519(t)
	v, _ := newVerifier(t, Config{Policies: []*Policy{testPolicy(key)}})
	children := make([]v1.Hash, maxInheritedChildren+10)
	for i := range children {
		children[i] = digestOf(fmt.Sprint(i))
	}
	body := index(ociIndexMediaType, append(children, children[0])...)
	parent := Image{Registry: testRegistry, Repository: testRepo, Digest: digestOf(string(body))}
	src := newFakeSource()
	src.add(testRepo, parent.Digest, simpleSig(t, key, testRef, parent.Digest, nil))
	mustAdmit(t, v, src, parent, body, ociIndexMediaType)
	at := func(i int) Image { return Image{Registry: testRegistry, Repository: testRepo, Digest: children[i]} }
	if d := mustDecide(t, v, src, at(0), nil, manifestType); d.Reason != ReasonParent {
		t.Errorf("first child: %s, want inherited", d.Reason)
	}
	if d := mustDecide(t, v, src, at(maxInheritedChildren-1), nil, manifestType); d.Reason != ReasonParent {
		t.Errorf("last child under the cap: %s, want inherited", d.Reason)
	}
	if d := mustDecide(t, v, src, at(maxInheritedChildren), nil, manifestType); d.Admit {
		t.Errorf("child past the cap admitted: %s", d.Message)
	}
}

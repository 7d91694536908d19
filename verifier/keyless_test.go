package verifier_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
	"github.com/cosign-dev/cosign/verifier"
)

const (
	ghIssuer   = "https://token.actions.githubusercontent.com"
	ciIdentity = "release@acme.example"
	slsa1      = "https://slsa.dev/provenance/v1"
	builder    = "https://github.com/actions/runner/github-hosted"
)

// keylessLab is an in-memory registry, a private Sigstore whose trusted
// root the policies use, and the fetcher the proxy would use.
type keylessLab struct {
	t     *testing.T
	ss    *sigstoretest.Sigstore
	root  *sigstore.TrustedRoot
	host  string
	fetch *sigstore.Fetcher
}

func newKeylessLab(t *testing.T) *keylessLab {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
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
	host := strings.TrimPrefix(srv.URL, "http://")
	return &keylessLab{t: t, ss: ss, root: root, host: host, fetch: sigstore.NewFetcher(srv.URL, nil)}
}

// push pushes a random image to repo and returns its digest.
func (l *keylessLab) push(repo string) (name.Repository, v1.Hash) {
	l.t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		l.t.Fatal(err)
	}
	r, err := name.NewRepository(l.host+"/"+repo, name.Insecure)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := remote.Write(r.Tag("v1"), img); err != nil {
		l.t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		l.t.Fatal(err)
	}
	return r, d
}

func (l *keylessLab) policy(ids ...verifier.Identity) *verifier.Policy {
	return &verifier.Policy{
		Name:     "keyless",
		Match:    []string{l.host + "/**"},
		Keyless:  &verifier.Keyless{TrustedRoot: l.root, Identities: ids},
		Identity: verifier.IdentityAny,
	}
}

func (l *keylessLab) decide(p *verifier.Policy, repo string, d v1.Hash) verifier.Decision {
	l.t.Helper()
	v, err := verifier.New(verifier.Config{Policies: []*verifier.Policy{p}})
	if err != nil {
		l.t.Fatal(err)
	}
	dec, err := v.Decide(context.Background(), l.fetch, verifier.Image{Registry: l.host, Repository: repo, Digest: d}, nil)
	if err != nil {
		l.t.Fatalf("Decide: %v", err)
	}
	return dec
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var workflow = verifier.Identity{Issuer: ghIssuer, Subject: ciIdentity}

// TestKeylessFormats: a keyless signature in each format cosign writes is
// admitted for the identity that made it, through the fetcher that reads
// the registry and the verifier that decides.
func TestKeylessFormats(t *testing.T) {
	l := newKeylessLab(t)
	ctx := context.Background()
	o := sigstoretest.Options{Identity: ciIdentity, Issuer: ghIssuer}

	repo, d := l.push("bundle")
	b, err := l.ss.SignatureBundle(d, o)
	ok(t, err)
	ok(t, sigstoretest.WriteSignatureBundle(ctx, repo, d, b))

	legacyRepo, ld := l.push("legacy")
	payload, ann, err := l.ss.SimpleSigningLayer(legacyRepo.Name(), ld, o)
	ok(t, err)
	ok(t, sigstoretest.WriteSimpleSigning(ctx, legacyRepo, ld, payload, ann))

	v3Repo, vd := l.push("legacy-v3")
	o3 := o
	o3.EmptyChain = true
	payload, ann, err = l.ss.SimpleSigningLayer(v3Repo.Name(), vd, o3)
	ok(t, err)
	ok(t, sigstoretest.WriteSimpleSigning(ctx, v3Repo, vd, payload, ann))

	for _, tc := range []struct {
		repo string
		d    v1.Hash
	}{{"bundle", d}, {"legacy", ld}, {"legacy-v3", vd}} {
		dec := l.decide(l.policy(workflow), tc.repo, tc.d)
		if !dec.Admit || len(dec.Identities) != 1 || dec.Identities[0] != workflow.String() {
			t.Errorf("%s: %+v", tc.repo, dec)
		}
		if !strings.Contains(dec.Message, "required signers: issuer "+ghIssuer) {
			t.Errorf("%s: message %q", tc.repo, dec.Message)
		}
	}
}

// TestKeylessGitHubWorkflowIdentity: a policy naming a GitHub Actions
// workflow (a URI SAN and the Actions issuer) admits what that workflow
// signed, and not what another workflow, branch or issuer signed.
func TestKeylessGitHubWorkflowIdentity(t *testing.T) {
	l := newKeylessLab(t)
	ctx := context.Background()
	const release = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
	p := l.policy(verifier.Identity{Issuer: ghIssuer, Subject: release})
	for i, tc := range []struct {
		subject, issuer string
		admit           bool
	}{
		{release, ghIssuer, true},
		{"https://github.com/acme/app/.github/workflows/release.yml@refs/heads/dev", ghIssuer, false},
		{"https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main", ghIssuer, false},
		{release, "https://token.actions.githubusercontent.com.evil.example", false},
	} {
		r, d := l.push("gh" + strconv.Itoa(i))
		b, err := l.ss.SignatureBundle(d, sigstoretest.Options{Identity: tc.subject, Issuer: tc.issuer})
		ok(t, err)
		ok(t, sigstoretest.WriteSignatureBundle(ctx, r, d, b))
		dec := l.decide(p, strings.TrimPrefix(r.Name(), l.host+"/"), d)
		if dec.Admit != tc.admit {
			t.Errorf("%s from %s: admit %v: %s", tc.subject, tc.issuer, dec.Admit, dec.Message)
		}
		if !tc.admit && !strings.Contains(dec.Message, "certificate identity mismatch (issuer "+tc.issuer+", subject "+tc.subject+")") {
			t.Errorf("refusal does not name the identity: %s", dec.Message)
		}
	}
}

// TestKeylessRefusals: each way a keyless signature can fail to count is
// refused with a message that names it.
func TestKeylessRefusals(t *testing.T) {
	l := newKeylessLab(t)
	ctx := context.Background()
	other, err := sigstoretest.New()
	ok(t, err)
	o := sigstoretest.Options{Identity: ciIdentity, Issuer: ghIssuer}
	bundleWith := func(ss *sigstoretest.Sigstore, o sigstoretest.Options) func(name.Repository, v1.Hash) error {
		return func(r name.Repository, d v1.Hash) error {
			b, err := ss.SignatureBundle(d, o)
			if err != nil {
				return err
			}
			return sigstoretest.WriteSignatureBundle(ctx, r, d, b)
		}
	}
	legacyWith := func(o sigstoretest.Options) func(name.Repository, v1.Hash) error {
		return func(r name.Repository, d v1.Hash) error {
			payload, ann, err := l.ss.SimpleSigningLayer(r.Name(), d, o)
			if err != nil {
				return err
			}
			return sigstoretest.WriteSimpleSigning(ctx, r, d, payload, ann)
		}
	}
	with := func(f func(*sigstoretest.Options)) sigstoretest.Options { c := o; f(&c); return c }
	late := time.Now().Add(30 * time.Minute) // past the certificate's 10 minutes
	for _, tc := range []struct {
		name   string
		write  func(name.Repository, v1.Hash) error
		reason verifier.Reason
		want   string
	}{
		{"other subject", bundleWith(l.ss, with(func(o *sigstoretest.Options) { o.Identity = "mallory@evil.example" })),
			verifier.ReasonCertificateIdentity, "certificate identity mismatch (issuer " + ghIssuer + ", subject mallory@evil.example)"},
		{"other issuer", bundleWith(l.ss, with(func(o *sigstoretest.Options) { o.Issuer = "https://accounts.evil.example" })),
			verifier.ReasonCertificateIdentity, "certificate identity mismatch (issuer https://accounts.evil.example, subject " + ciIdentity + ")"},
		{"other Sigstore", bundleWith(other, o), verifier.ReasonKeyless, "from a log that trusted root \"private\" does not name"},
		{"no log entry", bundleWith(l.ss, with(func(o *sigstoretest.Options) { o.NoTlog = true })),
			verifier.ReasonNoTransparencyLog, "no transparency log entry"},
		{"legacy, no log entry", legacyWith(with(func(o *sigstoretest.Options) { o.NoTlog = true })),
			verifier.ReasonNoTransparencyLog, "no transparency log entry"},
		{"log entry for other bytes", bundleWith(l.ss, with(func(o *sigstoretest.Options) { o.OtherBytes = true })),
			verifier.ReasonKeyless, "does not bind this signature"},
		{"legacy, log entry for other bytes", legacyWith(with(func(o *sigstoretest.Options) { o.OtherBytes = true })),
			verifier.ReasonKeyless, "does not bind this signature"},
		{"logged after the certificate expired", legacyWith(with(func(o *sigstoretest.Options) { o.IntegratedTime = late })),
			verifier.ReasonCertificateTime, "certificate not valid at log time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := strings.ToLower(strings.NewReplacer(" ", "-", ",", "").Replace(tc.name))
			r, d := l.push(repo)
			ok(t, tc.write(r, d))
			dec := l.decide(l.policy(workflow), repo, d)
			if dec.Admit || dec.Reason != tc.reason {
				t.Fatalf("admit %v, reason %q, want refused for %q: %s", dec.Admit, dec.Reason, tc.reason, dec.Message)
			}
			if !strings.Contains(dec.Message, tc.want) {
				t.Errorf("message %q does not say %q", dec.Message, tc.want)
			}
		})
	}
}

// TestKeylessThresholdCountsIdentities: a person counts once, however
// many certificates they used and however many entries they match; an
// entry counts once; of two people matching a broad entry, the one who
// also matches a narrow one takes that, so that both count.
func TestKeylessThresholdCountsIdentities(t *testing.T) {
	l := newKeylessLab(t)
	ctx := context.Background()
	alice := verifier.Identity{Issuer: ghIssuer, Subject: "alice@acme.example"}
	bob := verifier.Identity{Issuer: ghIssuer, Subject: "bob@acme.example"}
	anyone := verifier.Identity{Issuer: ghIssuer, SubjectRegExp: `^[a-z]+@acme\.example$`}
	sign := func(r name.Repository, d v1.Hash, who string) {
		b, err := l.ss.SignatureBundle(d, sigstoretest.Options{Identity: who, Issuer: ghIssuer})
		ok(t, err)
		ok(t, sigstoretest.WriteSignatureBundle(ctx, r, d, b))
	}
	r, d := l.push("threshold")
	for range 3 { // three certificates, one person
		sign(r, d, "alice@acme.example")
	}
	r2, d2 := l.push("threshold-alice")
	sign(r2, d2, "alice@acme.example")
	sign(r2, d2, "alice@acme.example")

	p := l.policy(alice, bob)
	p.Threshold = 2
	if dec := l.decide(p, "threshold", d); dec.Admit || dec.Reason != verifier.ReasonBelowThreshold || !strings.Contains(dec.Message, "1 of 2 required signers") {
		t.Fatalf("three certificates of one person: %s", dec.Message)
	}
	broad := l.policy(anyone, alice)
	broad.Threshold = 2
	if dec := l.decide(broad, "threshold-alice", d2); dec.Admit {
		t.Fatalf("one person matching two entries counted twice: %s", dec.Message)
	}
	sign(r, d, "bob@acme.example")
	if dec := l.decide(p, "threshold", d); !dec.Admit || len(dec.Identities) != 2 {
		t.Fatalf("alice and bob: %s", dec.Message)
	}
	// Bob matches only the broad entry; alice matches both and must take
	// the narrow one.
	dec := l.decide(broad, "threshold", d)
	if !dec.Admit || len(dec.Identities) != 2 {
		t.Fatalf("alice and bob under a broad and a narrow entry: %s", dec.Message)
	}
}

// TestKeylessAttestations: SLSA provenance made keylessly, as a bundle
// referrer or a legacy .att layer, admits only from the named builder.
func TestKeylessAttestations(t *testing.T) {
	l := newKeylessLab(t)
	ctx := context.Background()
	o := sigstoretest.Options{Identity: ciIdentity, Issuer: ghIssuer, SubjectName: "app"}
	prov := func(id string) any {
		return map[string]any{"buildDefinition": map[string]any{}, "runDetails": map[string]any{"builder": map[string]any{"id": id}}}
	}
	p := l.policy(workflow)
	p.Attestations = []verifier.AttestationRule{{PredicateType: slsa1, Predicate: map[string]any{"runDetails.builder.id": builder}}}
	sign := func(r name.Repository, d v1.Hash) {
		b, err := l.ss.SignatureBundle(d, sigstoretest.Options{Identity: ciIdentity, Issuer: ghIssuer})
		ok(t, err)
		ok(t, sigstoretest.WriteSignatureBundle(ctx, r, d, b))
	}
	attestBundle := func(id string) func(name.Repository, v1.Hash) {
		return func(r name.Repository, d v1.Hash) {
			b, err := l.ss.AttestationBundle(d, slsa1, prov(id), o)
			ok(t, err)
			ok(t, sigstoretest.WriteAttestationBundle(ctx, r, d, b))
		}
	}
	attestLegacy := func(id string) func(name.Repository, v1.Hash) {
		return func(r name.Repository, d v1.Hash) {
			env, ann, err := l.ss.AttestationEnvelope(d, slsa1, prov(id), o)
			ok(t, err)
			ok(t, sigstoretest.WriteAttestation(ctx, r, d, env, ann))
		}
	}
	for _, tc := range []struct {
		name   string
		attest func(name.Repository, v1.Hash)
		admit  bool
		want   string
	}{
		{"bundle provenance", attestBundle(builder), true, "attestations: " + slsa1},
		{"legacy provenance", attestLegacy(builder), true, "attestations: " + slsa1},
		{"no provenance", func(name.Repository, v1.Hash) {}, false, "attestation missing: " + slsa1},
		{"bundle provenance, other builder", attestBundle("https://evil.example/builder"), false, "predicate condition failed: runDetails.builder.id"},
		{"legacy provenance, other builder", attestLegacy("https://evil.example/builder"), false, "predicate condition failed: runDetails.builder.id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := strings.ToLower(strings.NewReplacer(" ", "-", ",", "").Replace(tc.name))
			r, d := l.push(repo)
			sign(r, d)
			tc.attest(r, d)
			dec := l.decide(p, repo, d)
			if dec.Admit != tc.admit || !strings.Contains(dec.Message, tc.want) {
				t.Fatalf("admit %v: %s; want admit %v and %q", dec.Admit, dec.Message, tc.admit, tc.want)
			}
		})
	}
}

// TestKeylessConcurrentDecisions: one Verifier, so one sigstore-go
// verifier per policy, decides many digests at once (run with -race).
func TestKeylessConcurrentDecisions(t *testing.T) {
	l := newKeylessLab(t)
	ctx := context.Background()
	type target struct {
		repo string
		d    v1.Hash
	}
	var targets []target
	for i := range 6 {
		repo := "concurrent" + strconv.Itoa(i)
		r, d := l.push(repo)
		b, err := l.ss.SignatureBundle(d, sigstoretest.Options{Identity: ciIdentity, Issuer: ghIssuer})
		ok(t, err)
		ok(t, sigstoretest.WriteSignatureBundle(ctx, r, d, b))
		targets = append(targets, target{repo, d})
	}
	v, err := verifier.New(verifier.Config{Policies: []*verifier.Policy{l.policy(workflow)}, TTL: -1})
	ok(t, err)
	errs := make(chan string, 4*len(targets))
	var wg sync.WaitGroup
	for range 4 {
		for _, tg := range targets {
			wg.Go(func() {
				dec, err := v.Decide(ctx, l.fetch, verifier.Image{Registry: l.host, Repository: tg.repo, Digest: tg.d}, nil)
				if err != nil || !dec.Admit {
					errs <- fmt.Sprintf("%s: %v %s", tg.repo, err, dec.Message)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
)

// benchKey is one key in both forms: the raw crypto key for the bare
// baseline and the sigstore key the verifier uses.
type benchKey struct {
	name   string
	signer sigstore.PrivateKey
	bare   func(payload, sig []byte) bool
}

func benchKeys(b *testing.B) []benchKey {
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return []benchKey{
		{"ed25519", toSigner(b, edPriv), func(p, s []byte) bool { return ed25519.Verify(edPub, p, s) }},
		{"ecdsa-p256", toSigner(b, ecPriv), func(p, s []byte) bool {
			h := sha256.Sum256(p)
			return ecdsa.VerifyASN1(&ecPriv.PublicKey, h[:], s)
		}},
	}
}

func toSigner(b *testing.B, k any) sigstore.PrivateKey {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		b.Fatal(err)
	}
	s, err := sigstore.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkEvaluate is the whole decision on one signature: key check,
// strict payload parse, digest, identity.
func BenchmarkEvaluate(b *testing.B) {
	img := testImage("app")
	for _, k := range benchKeys(b) {
		b.Run(k.name, func(b *testing.B) {
			p := testPolicy(k.signer)
			sigs := []sigstore.Signature{simpleSig(b, k.signer, testRef, img.Digest, nil)}
			b.ReportAllocs()
			for b.Loop() {
				if d := Evaluate(p, img, sigs); !d.Admit {
					b.Fatal(d.Message)
				}
			}
		})
	}
}

// BenchmarkBareVerify is the floor: the standard library's verification
// of the same payload, nothing else.
func BenchmarkBareVerify(b *testing.B) {
	img := testImage("app")
	for _, k := range benchKeys(b) {
		b.Run(k.name, func(b *testing.B) {
			s := simpleSig(b, k.signer, testRef, img.Digest, nil)
			b.ReportAllocs()
			for b.Loop() {
				if !k.bare(s.Signed, s.Sig) {
					b.Fatal("does not verify")
				}
			}
		})
	}
}

// acceptKey verifies everything: it fills big caches fast. The cached
// decisions have the same shape as with a real key.
type acceptKey struct{ id string }

func (k acceptKey) Verify(msg, sig []byte) error { return nil }
func (k acceptKey) ID() string                   { return k.id }
func (k acceptKey) Algorithm() string            { return "test" }
func (k acceptKey) PEM() []byte                  { return nil }

// payloadSource signs nothing: it returns a fresh cosign payload for any
// digest, with a dummy signature.
type payloadSource struct{}

func (payloadSource) Blob(context.Context, string, sigstore.Descriptor, int64) ([]byte, error) {
	return nil, errors.New("payloadSource serves no blobs")
}

func (payloadSource) Attestations(context.Context, string, v1.Hash) ([]sigstore.Signature, error) {
	return nil, nil
}

func (payloadSource) SignaturesUntil(_ context.Context, repo string, d v1.Hash, _ sigstore.Enough) ([]sigstore.Signature, error) {
	p, err := sigstore.NewPayload(testRegistry+"/"+repo, d, nil)
	if err != nil {
		return nil, err
	}
	return []sigstore.Signature{{
		Format: sigstore.FormatSimpleSigning, Signed: p, Payload: p,
		Sig: make([]byte, 64), Where: sigstore.SignatureTag(d) + " layer 1",
	}}, nil
}

// BenchmarkDecideCached measures a cache hit with n entries cached, and
// the heap each entry costs.
func BenchmarkDecideCached(b *testing.B) {
	key := acceptKey{id: "sha256:" + digestOf("bench key").Hex}
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("entries=%dk", n/1000), func(b *testing.B) {
			p := &Policy{Name: "prod", Match: []string{testRegistry + "/prod/**"}, Keys: []sigstore.PublicKey{key}}
			imgs := make([]Image, n)
			for i := range imgs {
				imgs[i] = testImage(fmt.Sprint(i))
			}
			ctx := context.Background()

			before := heapInUse()
			v, err := New(Config{Policies: []*Policy{p}, CacheSize: n})
			if err != nil {
				b.Fatal(err)
			}
			for _, img := range imgs {
				if d, err := v.Decide(ctx, payloadSource{}, img, nil); err != nil || !d.Admit {
					b.Fatalf("filling: %v %s", err, d.Message)
				}
			}
			perEntry := float64(heapInUse()-before) / float64(n)
			if v.CacheLen() != n {
				b.Fatalf("CacheLen = %d, want %d", v.CacheLen(), n)
			}

			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := v.Decide(ctx, payloadSource{}, imgs[i%n], nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if got := v.Stats().Lookups; got != uint64(n) {
				b.Fatalf("lookups = %d, want %d: the loop missed the cache", got, n)
			}
			b.ReportMetric(perEntry, "B/entry")
			runtime.KeepAlive(v)
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// keylessBenchCase is one kind of signature a cold decision is measured on.
type keylessBenchCase struct {
	name string
	// base names the key case of the same format this one is compared
	// with; "" for a key case.
	base   string
	policy *Policy // the Verifier's compiled copy, as the proxy uses it
	img    Image
	sigs   []sigstore.Signature
	// check says whether the decision is the one this kind must get.
	check func(Decision) error
}

const (
	benchIssuer   = "https://token.actions.githubusercontent.com"
	benchIdentity = "release@acme.example"
)

// admitted checks that d admits on the signer it names: a key ID or an
// identity entry.
func admitted(keyID, identity string) func(Decision) error {
	return func(d Decision) error {
		switch {
		case !d.Admit:
			return fmt.Errorf("refused: %s", d.Message)
		case keyID != "" && (len(d.Keys) != 1 || d.Keys[0] != keyID):
			return fmt.Errorf("admitted by keys %v, want %s", d.Keys, keyID)
		case identity != "" && (len(d.Identities) != 1 || d.Identities[0] != identity):
			return fmt.Errorf("admitted by identities %v, want %s", d.Identities, identity)
		}
		return nil
	}
}

// compiledPolicyFor returns the Verifier's normalized copy of p, whose
// keyless block (sigstore-go verifier, identity matchers) is built once, as
// in the proxy: Evaluate on the caller's own policy would build it on every
// call.
func compiledPolicyFor(b *testing.B, p *Policy, img Image) *Policy {
	b.Helper()
	v, err := New(Config{Policies: []*Policy{p}})
	if err != nil {
		b.Fatal(err)
	}
	cp := v.Policy(img.Registry, img.Repository)
	if cp == nil {
		b.Fatalf("policy %q does not match %s/%s", p.Name, img.Registry, img.Repository)
	}
	if p.Keyless != nil && cp.Keyless.compiled == nil {
		b.Fatal("the Verifier's copy of the policy has no compiled keyless block")
	}
	return cp
}

// Names of the key baselines: an ECDSA P-256 signature in each format
// cosign writes, a bundle (cosign v3's default) and a legacy .sig layer.
const (
	keyBundle = "key-ecdsa-p256-bundle"
	keySig    = "key-ecdsa-p256-sig"
)

// keylessBenchCases makes the signatures: the key baselines first, then
// keyless ones of a private Sigstore (sigstoretest) in both formats, each
// compared with the key signature of its format, then the real
// public-good vector, a bundle.
func keylessBenchCases(b *testing.B) []keylessBenchCase {
	b.Helper()
	img := testImage("app")
	ec := newECDSA(b)
	keyPolicy := compiledPolicyFor(b, testPolicy(ec), img)

	ss, root := benchSigstore(b)
	id := Identity{Issuer: benchIssuer, Subject: benchIdentity}
	keylessP := compiledPolicyFor(b, &Policy{
		Name: "prod", Match: []string{testRegistry + "/prod/**"},
		Keyless: &Keyless{TrustedRoot: root, Identities: []Identity{id}},
	}, img)
	o := sigstoretest.Options{Identity: benchIdentity, Issuer: benchIssuer}

	raw, err := ss.SignatureBundle(img.Digest, o)
	if err != nil {
		b.Fatal(err)
	}
	bundle := sigstore.SignatureFromBundle(raw, "referrer 1")
	if bundle.Err != nil || !bundle.Keyless() {
		b.Fatalf("keyless bundle: keyless %v, %v", bundle.Keyless(), bundle.Err)
	}

	pg, pgSig := publicGood(b)
	pgID := Identity{Issuer: publicGoodIssuer, Subject: publicGoodSAN}
	pgPolicy := compiledPolicyFor(b, &Policy{
		Name: "public-good", Match: []string{testRegistry + "/prod/**"},
		Keyless: &Keyless{TrustedRoot: pg, Identities: []Identity{pgID}},
	}, img)

	return []keylessBenchCase{
		{keyBundle, "", keyPolicy, img, []sigstore.Signature{bundleSig(b, ec, img.Digest, nil)},
			admitted(ec.Public().ID(), "")},
		{keySig, "", keyPolicy, img, []sigstore.Signature{simpleSig(b, ec, testRef, img.Digest, nil)},
			admitted(ec.Public().ID(), "")},
		{"keyless-bundle", keyBundle, keylessP, img, []sigstore.Signature{bundle}, admitted("", id.String())},
		{"keyless-legacy-sig", keySig, keylessP, img, []sigstore.Signature{legacyKeylessSig(b, ss, img.Digest, o)},
			admitted("", id.String())},
		// The public-good bundle is an npm provenance: its certificate,
		// SCT and Rekor entry verify, and its identity matches, but it
		// binds no image digest, so the decision is a refusal made after
		// the whole keyless verification.
		{"keyless-public-good", keyBundle, pgPolicy, img, []sigstore.Signature{pgSig}, func(d Decision) error {
			if d.Admit || d.Reason != ReasonInvalid ||
				!strings.Contains(d.Detail, "by identity "+pgID.String()+" verified, but") {
				return fmt.Errorf("want a refusal after the certificate verified, got admit %v, %s: %s", d.Admit, d.Reason, d.Message)
			}
			return nil
		}},
	}
}

// legacyKeylessSig stores a keyless .sig layer (certificate, chain and
// Rekor bundle annotations) in an in-memory registry and reads it back
// with the Fetcher, so that the Signature is exactly what the proxy gets.
func legacyKeylessSig(b *testing.B, ss *sigstoretest.Sigstore, d v1.Hash, o sigstoretest.Options) sigstore.Signature {
	b.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://")+"/"+testRepo, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	payload, ann, err := ss.SimpleSigningLayer(testRef, d, o)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := sigstoretest.WriteSimpleSigning(ctx, repo, d, payload, ann); err != nil {
		b.Fatal(err)
	}
	sigs, err := sigstore.NewFetcher(srv.URL, nil).Signatures(ctx, testRepo, d)
	if err != nil {
		b.Fatal(err)
	}
	if len(sigs) != 1 || sigs[0].Err != nil || sigs[0].Format != sigstore.FormatSimpleSigning ||
		!sigs[0].Keyless() || len(sigs[0].RekorBundle) == 0 {
		b.Fatalf("read back %d signatures, want one keyless .sig layer with a Rekor bundle: %+v", len(sigs), sigs)
	}
	return sigs[0]
}

// baselines holds the ns/op of each key sub-benchmark's last run, for the
// keyless ones run after it in the same process to report keyless/key.
type baselines map[string]float64

// record notes the ns/op of the run that just ended: a key baseline's
// (base == ""), or a keyless one's as keyless/key against base.
func (r baselines) record(b *testing.B, name, base string) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	switch {
	case base == "":
		r[name] = ns
	case r[base] == 0:
		// testing.Benchmark cannot measure it here: it would wait on
		// the lock the running benchmark holds.
		b.Logf("no keyless/key ratio: the baseline %s was filtered out by -bench", base)
	default:
		b.ReportMetric(ns/r[base], "keyless/key")
	}
}

// BenchmarkKeylessEvaluate is a cold decision (Evaluate: no cache, no memo
// across calls, no I/O) on one signature of each kind: ECDSA P-256 key
// signatures, the baselines, then keyless ones. Each keyless sub-benchmark
// reports keyless/key, its ns/op over that of the key signature of its
// format (bundle or .sig layer) in the same process.
// The name keeps it out of "^BenchmarkEvaluate", which e2e/bench's case 6
// pairs with BenchmarkBareVerify.
//
// What a keyless decision checks, through sigstore-go, beyond the key
// path's one signature verification and the claims: the certificate chain
// to the root's Fulcio CA, the signature with the certificate's key, the
// Rekor entry (its signed entry timestamp, and for bundles its inclusion
// proof and signed checkpoint), the RFC 3161 timestamp when the bundle has
// one, an SCT when the root names CT logs (the public-good root does, the
// private one does not), and the identity.
func BenchmarkKeylessEvaluate(b *testing.B) {
	cases := keylessBenchCases(b)
	base := baselines{}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.check(Evaluate(c.policy, c.img, c.sigs)); err != nil {
					b.Fatal(err)
				}
			}
			base.record(b, c.name, c.base)
		})
	}
}

// benchRegistry lets e2e/bench point BenchmarkKeylessDecide at a real
// registry.
var benchRegistry = flag.String("bench.registry", "",
	"host:port of a plain-HTTP registry BenchmarkKeylessDecide pushes its images to (default: an in-memory one)")

// decideBenchImage is a signed image in the benchmark's registry.
type decideBenchImage struct {
	kind  string
	base  string // as keylessBenchCase.base
	img   Image
	check func(Decision) error
}

// BenchmarkKeylessDecide is Decide as the proxy runs it on a manifest pull:
// cold, the signature lookup through the Fetcher (the .sig tag and the
// referrers, then the artifacts) and the decision, every call (caching
// off); warm, a cache hit. Images are signed with an ECDSA P-256 key or
// keylessly, each as a bundle and as a legacy .sig layer (the lookups of
// the two formats differ: a keyless signature is compared with the key
// one of its format), and stored in an in-memory registry or, with
// -bench.registry, a real one.
// Cold, keyless/key says how much of a first pull's decision the keyless
// checks add once the registry round trips are counted; warm it should be
// about 1, the cache hiding them.
func BenchmarkKeylessDecide(b *testing.B) {
	host := *benchRegistry
	if host == "" {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		b.Cleanup(srv.Close)
		host = strings.TrimPrefix(srv.URL, "http://")
	}
	ctx := context.Background()
	ss, root := benchSigstore(b)
	ec := newECDSA(b)
	id := Identity{Issuer: benchIssuer, Subject: benchIdentity}
	o := sigstoretest.Options{Identity: benchIdentity, Issuer: benchIssuer}
	// A fresh namespace per run: a rerun against the same registry reads
	// only what it wrote.
	ns := "bench/decide-" + digestOf(fmt.Sprint(mathrand.Uint64())).Hex[:12]

	push := func(kind string) (name.Repository, Image) {
		repo, err := name.NewRepository(host+"/"+ns+"/"+kind, name.Insecure)
		if err != nil {
			b.Fatal(err)
		}
		img, err := random.Image(512, 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := remote.Write(repo.Tag("v1"), img, remote.WithContext(ctx)); err != nil {
			b.Fatalf("push %s: %v", repo, err)
		}
		d, err := img.Digest()
		if err != nil {
			b.Fatal(err)
		}
		return repo, Image{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr(), Digest: d}
	}
	var images []decideBenchImage

	repo, img := push(keyBundle)
	kb, err := sigstore.NewBundle(ec, img.Digest, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(ctx, repo, img.Digest, kb); err != nil {
		b.Fatal(err)
	}
	images = append(images, decideBenchImage{keyBundle, "", img, admitted(ec.Public().ID(), "")})

	repo, img = push(keySig)
	payload, err := sigstore.NewPayload(repo.Name(), img.Digest, nil)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := ec.Sign(payload)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sigstore.AppendSignature(ctx, repo.Digest(img.Digest.String()), payload, sig); err != nil {
		b.Fatal(err)
	}
	images = append(images, decideBenchImage{keySig, "", img, admitted(ec.Public().ID(), "")})

	repo, img = push("keyless-bundle")
	lb, err := ss.SignatureBundle(img.Digest, o)
	if err != nil {
		b.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(ctx, repo, img.Digest, lb); err != nil {
		b.Fatal(err)
	}
	images = append(images, decideBenchImage{"keyless-bundle", keyBundle, img, admitted("", id.String())})

	repo, img = push("keyless-legacy-sig")
	payload, ann, err := ss.SimpleSigningLayer(repo.Name(), img.Digest, o)
	if err != nil {
		b.Fatal(err)
	}
	if err := sigstoretest.WriteSimpleSigning(ctx, repo, img.Digest, payload, ann); err != nil {
		b.Fatal(err)
	}
	images = append(images, decideBenchImage{"keyless-legacy-sig", keySig, img, admitted("", id.String())})

	policies := []*Policy{
		{Name: "key", Match: []string{host + "/" + ns + "/key-*"}, Keys: []sigstore.PublicKey{ec.Public()}},
		{Name: "keyless", Match: []string{host + "/" + ns + "/keyless-*"},
			Keyless: &Keyless{TrustedRoot: root, Identities: []Identity{id}}},
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	b.Cleanup(tr.CloseIdleConnections)
	fetch := sigstore.NewFetcher("http://"+host, tr)

	for _, mode := range []struct {
		name string
		cfg  Config
	}{
		// Negative TTLs turn the cache off: every Decide looks up.
		{"cold", Config{Policies: policies, TTL: -1, NegativeTTL: -1}},
		{"warm", Config{Policies: policies}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			base := baselines{}
			for _, im := range images {
				b.Run(im.kind, func(b *testing.B) {
					v, err := New(mode.cfg)
					if err != nil {
						b.Fatal(err)
					}
					cached := mode.name == "warm"
					if cached { // fill the cache
						d, err := v.Decide(ctx, fetch, im.img, nil)
						if err == nil {
							err = im.check(d)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					b.ReportAllocs()
					calls := uint64(0)
					for b.Loop() {
						calls++
						d, err := v.Decide(ctx, fetch, im.img, nil)
						if err == nil {
							err = im.check(d)
						}
						if err == nil && d.Cached != cached {
							err = fmt.Errorf("Cached = %v, want %v", d.Cached, cached)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					want := calls // cold: every call looked up
					if cached {
						want = 1 // warm: only the call that filled the cache
					}
					if got := v.Stats().Lookups; got != want {
						b.Fatalf("%d signature lookups for %d calls, want %d", got, calls, want)
					}
					base.record(b, im.kind, im.base)
				})
			}
		})
	}
}

// benchSigstore is a private Sigstore and its parsed trusted root.
func benchSigstore(b *testing.B) (*sigstoretest.Sigstore, *sigstore.TrustedRoot) {
	b.Helper()
	ss, err := sigstoretest.New()
	if err != nil {
		b.Fatal(err)
	}
	rootJSON, err := ss.TrustedRootJSON()
	if err != nil {
		b.Fatal(err)
	}
	root, err := sigstore.ParseTrustedRoot("private", rootJSON)
	if err != nil {
		b.Fatal(err)
	}
	return ss, root
}

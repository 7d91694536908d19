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
	"fmt"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
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

package verifier_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// Negative cases built from what the real cosign v3.1.2 wrote: its bundle
// for interop/app:v2 is edited as JSON and, where the case needs it,
// re-signed with the real key (keys/ecdsa.key), so that every refusal below
// is of a realistic artifact and differs from an admitted one by one edit.

// interopDir holds the vectors; see its README in /work/shared/interop.
const interopDir = "../sigstore/testdata/cosign-v3.1.2"

// The vectors' digests.
var (
	vecAppV1    = mustParseHash("sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c")
	vecAppV2    = mustParseHash("sha256:28eb0959570ca76b3c9adf3ed8cad7c0426a3bd07dbb589a9415282fcacefdc2")
	vecMulti    = mustParseHash("sha256:d059ce8dbdcaa84448f253dc63854eb5329d98906a5e18d26b51d9617f83ce76")
	vecMultiArm = mustParseHash("sha256:e4ac569418239de6c21eb06e3c60a696360417f793137f159c1fe1b45097a13a")
	vecDigests  = []v1.Hash{vecAppV1, vecAppV2, vecMulti, vecMultiArm}
)

// The artifacts cosign wrote.
const (
	vecBundleBlob   = "sha256-d89a90b5486b5fa72474ac96440d0691515a29b5bb636e9039ee7f862f23993b"
	vecAppV1SigTag  = "sha256-4e8657b6bbc927c8544e0c1ebd2549e476f68259307b39d7cb2c6a3f7d0be9f8"
	vecMultiSigTag  = "sha256-b708757eeb6138d149167d65c56b7437a0a3df12b5655272e45c2ad0792f3175"
	vecSignedAt     = "127.0.0.1:5000"
	vecKeyPassword  = "interop"
	vecOtherPayload = "https://slsa.dev/provenance/v1"
)

func mustParseHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

func readInterop(t *testing.T, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{interopDir}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func interopPublicKey(t *testing.T, file string) sigstore.PublicKey {
	t.Helper()
	k, err := sigstore.LoadPublicKey(filepath.Join(interopDir, "keys", file))
	if err != nil {
		t.Fatalf("LoadPublicKey(%s): %v", file, err)
	}
	return k
}

// realSigner decrypts cosign's encrypted ecdsa.key: the key that signed
// interop/app:v2.
func realSigner(t *testing.T) sigstore.PrivateKey {
	t.Helper()
	k, err := sigstore.ParsePrivateKey(readInterop(t, "keys", "ecdsa.key"), func() ([]byte, error) {
		return []byte(vecKeyPassword), nil
	})
	if err != nil {
		t.Fatalf("ParsePrivateKey(ecdsa.key): %v", err)
	}
	if want := interopPublicKey(t, "ecdsa.pub").ID(); k.Public().ID() != want {
		t.Fatalf("ecdsa.key is %s, ecdsa.pub is %s", k.Public().ID(), want)
	}
	return k
}

// otherECDSASigner is a fresh ECDSA P-256 key no policy trusts.
func otherECDSASigner(t *testing.T) sigstore.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := sigstore.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return pk
}

// bundleJSON is a bundle decoded as generic JSON, to be edited.
type bundleJSON map[string]any

// vectorBundle returns the bundle cosign wrote for interop/app:v2.
func vectorBundle(t *testing.T) bundleJSON {
	t.Helper()
	raw := readInterop(t, "blobs", vecBundleBlob)
	if sum := sha256.Sum256(raw); "sha256-"+hex.EncodeToString(sum[:]) != vecBundleBlob {
		t.Fatalf("%s does not hash to its name", vecBundleBlob)
	}
	var b bundleJSON
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("the vector bundle: %v", err)
	}
	return b
}

func (b bundleJSON) envelope() map[string]any { return b["dsseEnvelope"].(map[string]any) }

func (b bundleJSON) firstSignature() map[string]any {
	return b.envelope()["signatures"].([]any)[0].(map[string]any)
}

func (b bundleJSON) hint() string {
	return b["verificationMaterial"].(map[string]any)["publicKey"].(map[string]any)["hint"].(string)
}

// payload is the envelope's decoded statement bytes.
func (b bundleJSON) payload(t *testing.T) []byte {
	t.Helper()
	p, err := base64.StdEncoding.DecodeString(b.envelope()["payload"].(string))
	if err != nil {
		t.Fatalf("payload: %v", err)
	}
	return p
}

// statement is the envelope's statement decoded as generic JSON.
func (b bundleJSON) statement(t *testing.T) map[string]any {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal(b.payload(t), &s); err != nil {
		t.Fatalf("statement: %v", err)
	}
	return s
}

// setPayload replaces the envelope's payload and type, keeping its signature.
func (b bundleJSON) setPayload(payloadType string, payload []byte) {
	b.envelope()["payloadType"] = payloadType
	b.envelope()["payload"] = base64.StdEncoding.EncodeToString(payload)
}

// sign sets payload and type and signs their PAE with key, as cosign does.
func (b bundleJSON) sign(t *testing.T, key sigstore.PrivateKey, payloadType string, payload []byte) {
	t.Helper()
	b.setPayload(payloadType, payload)
	sig, err := key.Sign(sigstore.PAE(payloadType, payload))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	b.firstSignature()["sig"] = base64.StdEncoding.EncodeToString(sig)
}

// signature reads the bundle back the way the registry fetcher does. It
// must parse: each case tests a decision, not the bundle parser.
func (b bundleJSON) signature(t *testing.T) sigstore.Signature {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	s := sigstore.SignatureFromBundle(raw, "referrer (edited)")
	if s.Err != nil {
		t.Fatalf("SignatureFromBundle: %v", s.Err)
	}
	return s
}

func marshalStatement(t *testing.T, s map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// subjectOf is the first subject of a statement.
func subjectOf(s map[string]any) map[string]any {
	return s["subject"].([]any)[0].(map[string]any)
}

func interopPolicy(keys ...sigstore.PublicKey) *verifier.Policy {
	return &verifier.Policy{Name: "interop", Match: []string{"**"}, Keys: keys}
}

func interopImage(repo string, d v1.Hash) verifier.Image {
	return verifier.Image{Registry: vecSignedAt, Repository: repo, Digest: d}
}

func TestEvaluateRefusesEditedCosignBundles(t *testing.T) {
	real := realSigner(t)
	trusted := interopPublicKey(t, "ecdsa.pub")
	otherDigest := vecAppV1

	tests := []struct {
		name   string
		build  func(t *testing.T) sigstore.Signature
		digest v1.Hash // the image evaluated; vecAppV2 when zero
		admit  bool
		reason verifier.Reason
		detail string // in the Message
	}{{
		name:   "control: the vector as cosign wrote it",
		build:  func(t *testing.T) sigstore.Signature { return vectorBundle(t).signature(t) },
		admit:  true,
		reason: verifier.ReasonVerified,
	}, {
		name: "control: re-encoded and re-signed with the real key, unedited",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.sign(t, real, sigstore.InTotoPayloadType, marshalStatement(t, b.statement(t)))
			return b.signature(t)
		},
		admit:  true,
		reason: verifier.ReasonVerified,
	}, {
		name:   "the vector presented for another digest",
		build:  func(t *testing.T) sigstore.Signature { return vectorBundle(t).signature(t) },
		digest: otherDigest,
		reason: verifier.ReasonDigestMismatch,
		detail: vecAppV2.String(),
	}, {
		name: "subject is another digest, re-signed with the real key",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			s := b.statement(t)
			subjectOf(s)["digest"] = map[string]any{"sha256": otherDigest.Hex}
			b.sign(t, real, sigstore.InTotoPayloadType, marshalStatement(t, s))
			return b.signature(t)
		},
		reason: verifier.ReasonDigestMismatch,
		detail: "it is for " + otherDigest.String(),
	}, {
		name: "control: that re-signed statement admits its own digest",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			s := b.statement(t)
			subjectOf(s)["digest"] = map[string]any{"sha256": otherDigest.Hex}
			b.sign(t, real, sigstore.InTotoPayloadType, marshalStatement(t, s))
			return b.signature(t)
		},
		digest: otherDigest,
		admit:  true,
		reason: verifier.ReasonVerified,
	}, {
		name: "payloadType application/json, re-signed over its PAE",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.sign(t, real, "application/json", b.payload(t))
			return b.signature(t)
		},
		reason: verifier.ReasonInvalid,
		detail: `DSSE payloadType "application/json"`,
	}, {
		name: "payloadType in-toto in other case, re-signed over its PAE",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.sign(t, real, "application/vnd.in-toto+JSON", b.payload(t))
			return b.signature(t)
		},
		reason: verifier.ReasonInvalid,
		detail: "payloadType",
	}, {
		name: "predicateType SLSA provenance, re-signed",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			s := b.statement(t)
			s["predicateType"] = vecOtherPayload
			b.sign(t, real, sigstore.InTotoPayloadType, marshalStatement(t, s))
			return b.signature(t)
		},
		// A statement with another predicate type is an attestation:
		// never a signature, whoever signed it.
		reason: verifier.ReasonUntrusted,
		detail: "1 attestation by trusted signers, which are no image signatures",
	}, {
		name: "_type not an in-toto statement, re-signed",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			s := b.statement(t)
			s["_type"] = "https://example.com/Statement/v1"
			b.sign(t, real, sigstore.InTotoPayloadType, marshalStatement(t, s))
			return b.signature(t)
		},
		reason: verifier.ReasonInvalid,
		detail: "_type",
	}, {
		name: "the real signature on a statement with an added annotation",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			s := b.statement(t)
			subjectOf(s)["annotations"] = map[string]any{"env": "prod"}
			b.setPayload(sigstore.InTotoPayloadType, marshalStatement(t, s))
			return b.signature(t)
		},
		reason: verifier.ReasonUntrusted,
		detail: "none verified",
	}, {
		name: "the real signature on the same statement re-encoded (other bytes, same JSON)",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.setPayload(sigstore.InTotoPayloadType, marshalStatement(t, b.statement(t)))
			return b.signature(t)
		},
		reason: verifier.ReasonUntrusted,
		detail: "none verified",
	}, {
		name: "the real signature on the same statement under another payloadType",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.setPayload("application/json", b.payload(t))
			return b.signature(t)
		},
		reason: verifier.ReasonUntrusted,
		detail: "none verified",
	}, {
		name: "the trusted key's hint, signed by another ECDSA key",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.sign(t, otherECDSASigner(t), sigstore.InTotoPayloadType, b.payload(t))
			return b.signature(t)
		},
		reason: verifier.ReasonUntrusted,
		detail: "none verified",
	}, {
		name: "the trusted key's hint also as DSSE keyid, signed by another ECDSA key",
		build: func(t *testing.T) sigstore.Signature {
			b := vectorBundle(t)
			b.sign(t, otherECDSASigner(t), sigstore.InTotoPayloadType, b.payload(t))
			b.firstSignature()["keyid"] = b.hint()
			return b.signature(t)
		},
		reason: verifier.ReasonUntrusted,
		detail: "none verified",
	}}
	wantHint := vectorBundle(t).hint()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := tt.build(t)
			if hint := hintOf(t, sig); hint != wantHint {
				t.Fatalf("the case changed the key hint to %q", hint)
			}
			digest := tt.digest
			if digest.Hex == "" {
				digest = vecAppV2
			}
			got := verifier.Evaluate(interopPolicy(trusted), interopImage("interop/app", digest), []sigstore.Signature{sig})
			if got.Admit != tt.admit || got.Reason != tt.reason || got.Warn {
				t.Fatalf("got admit %v reason %q warn %v, want admit %v reason %q\nmessage: %s",
					got.Admit, got.Reason, got.Warn, tt.admit, tt.reason, got.Message)
			}
			if !strings.Contains(got.Message, tt.detail) {
				t.Errorf("message %q does not say %q", got.Message, tt.detail)
			}
			switch {
			case tt.admit && !slices.Equal(got.Keys, []string{trusted.ID()}):
				t.Errorf("Keys = %v, want [%s]", got.Keys, trusted.ID())
			case !tt.admit && (len(got.Keys) != 0 || len(got.Verified) != 0):
				t.Errorf("a refusal counted keys %v, signatures %d", got.Keys, len(got.Verified))
			}
		})
	}
}

// hintOf is the key hint of a bundle signature.
func hintOf(t *testing.T, s sigstore.Signature) string {
	t.Helper()
	var b bundleJSON
	if err := json.Unmarshal(s.Bundle, &b); err != nil {
		t.Fatal(err)
	}
	return b.hint()
}

// TestEvaluateGrantsNothingToTheKeyHint: a bundle that names the trusted
// key by its hint but is signed by another key is refused even when the
// policy also trusts unrelated keys, and is admitted only by a policy that
// trusts the key that really signed it.
func TestEvaluateGrantsNothingToTheKeyHint(t *testing.T) {
	trusted := interopPublicKey(t, "ecdsa.pub")
	attacker := otherECDSASigner(t)
	b := vectorBundle(t)
	b.sign(t, attacker, sigstore.InTotoPayloadType, b.payload(t))
	sig := b.signature(t)
	img := interopImage("interop/app", vecAppV2)

	policies := []struct {
		name   string
		keys   []sigstore.PublicKey
		admit  bool
		reason verifier.Reason
	}{
		{"policy with the hinted key", []sigstore.PublicKey{trusted}, false, verifier.ReasonUntrusted},
		{"policy with the hinted key and the Ed25519 vector key", []sigstore.PublicKey{trusted, interopPublicKey(t, "ed25519.pub")}, false, verifier.ReasonUntrusted},
		{"policy with the key that signed", []sigstore.PublicKey{attacker.Public()}, true, verifier.ReasonVerified},
	}
	for _, p := range policies {
		t.Run(p.name, func(t *testing.T) {
			got := verifier.Evaluate(interopPolicy(p.keys...), img, []sigstore.Signature{sig})
			if got.Admit != p.admit || got.Reason != p.reason {
				t.Fatalf("got admit %v reason %q, want %v %q: %s", got.Admit, got.Reason, p.admit, p.reason, got.Message)
			}
		})
	}
}

// legacySignatures reads the simple-signing layers of a .sig manifest the
// way the registry fetcher does.
func legacySignatures(t *testing.T, manifest string) []sigstore.Signature {
	t.Helper()
	var m struct {
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Digest      v1.Hash           `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(readInterop(t, "manifests", manifest), &m); err != nil {
		t.Fatalf("%s: %v", manifest, err)
	}
	var out []sigstore.Signature
	for i, l := range m.Layers {
		if l.MediaType != sigstore.SimpleSigningMediaType {
			t.Fatalf("%s layer %d: media type %q", manifest, i, l.MediaType)
		}
		payload := readInterop(t, "blobs", l.Digest.Algorithm+"-"+l.Digest.Hex)
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[sigstore.SignatureAnnotation])
		if err != nil {
			t.Fatalf("%s layer %d: %v", manifest, i, err)
		}
		out = append(out, sigstore.Signature{Format: sigstore.FormatSimpleSigning, Signed: payload, Payload: payload, Sig: sig,
			Where: manifest + " layer " + l.Digest.String()})
	}
	return out
}

// TestEvaluateAdmitsVectorsOnlyForTheirOwnDigest presents each signature
// cosign wrote, alone, for every digest of the dump: only the digest it
// signed is admitted, every other is a digest mismatch.
func TestEvaluateAdmitsVectorsOnlyForTheirOwnDigest(t *testing.T) {
	ecdsaKey, edKey := interopPublicKey(t, "ecdsa.pub"), interopPublicKey(t, "ed25519.pub")
	appV1 := legacySignatures(t, vecAppV1SigTag)
	multi := legacySignatures(t, vecMultiSigTag)
	if len(appV1) != 2 || len(multi) != 1 {
		t.Fatalf("app:v1 has %d legacy signatures, multi:v1 %d; the README says 2 and 1", len(appV1), len(multi))
	}
	vectors := []struct {
		name string
		sig  sigstore.Signature
		key  sigstore.PublicKey
		repo string
		own  v1.Hash
	}{
		{"app:v1 ECDSA (.sig)", appV1[0], ecdsaKey, "interop/app", vecAppV1},
		{"app:v1 Ed25519ph (.sig)", appV1[1], edKey, "interop/app", vecAppV1},
		{"multi:v1 index ECDSA (.sig)", multi[0], ecdsaKey, "interop/multi", vecMulti},
		{"app:v2 bundle", vectorBundle(t).signature(t), ecdsaKey, "interop/app", vecAppV2},
	}
	for _, v := range vectors {
		for _, d := range vecDigests {
			admit, reason := d == v.own, verifier.ReasonDigestMismatch
			if admit {
				reason = verifier.ReasonVerified
			}
			t.Run(v.name+" for "+d.Hex[:12], func(t *testing.T) {
				got := verifier.Evaluate(interopPolicy(v.key), interopImage(v.repo, d), []sigstore.Signature{v.sig})
				if got.Admit != admit || got.Reason != reason {
					t.Fatalf("got admit %v reason %q, want %v %q: %s", got.Admit, got.Reason, admit, reason, got.Message)
				}
			})
		}
	}
}

package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// Helpers shared by the package's tests.

const (
	testRegistry = "127.0.0.1:5000"
	testRepo     = "prod/app"
	testRef      = testRegistry + "/" + testRepo
)

// digestOf is the sha256 digest of s.
func digestOf(s string) v1.Hash {
	sum := sha256.Sum256([]byte(s))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func testImage(content string) Image {
	return Image{Registry: testRegistry, Repository: testRepo, Digest: digestOf(content)}
}

// newEd25519 makes a fresh Ed25519 signer through sigstore's own key code.
func newEd25519(t testing.TB) sigstore.PrivateKey {
	t.Helper()
	privPEM, _, err := sigstore.GenerateKeyPair(nil)
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	k, err := sigstore.ParsePrivateKey(privPEM, nil)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return k
}

// newECDSA makes a fresh ECDSA P-256 signer.
func newECDSA(t testing.TB) sigstore.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("ecdsa.GenerateKey: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("MarshalPKCS8PrivateKey: %v", err)
	}
	pk, err := sigstore.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return pk
}

// signPayload signs arbitrary payload bytes as a simple-signing layer.
func signPayload(t testing.TB, key sigstore.PrivateKey, payload []byte) sigstore.Signature {
	t.Helper()
	sig, err := key.Sign(payload)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sigstore.Signature{
		Format:  sigstore.FormatSimpleSigning,
		Signed:  payload,
		Payload: payload,
		Sig:     sig,
		Where:   "test layer",
	}
}

// simpleSig signs a cosign payload naming ref and d.
func simpleSig(t testing.TB, key sigstore.PrivateKey, ref string, d v1.Hash, ann map[string]string) sigstore.Signature {
	t.Helper()
	payload, err := sigstore.NewPayload(ref, d, ann)
	if err != nil {
		t.Fatalf("NewPayload: %v", err)
	}
	return signPayload(t, key, payload)
}

// bundleSig signs d in cosign v3's bundle format.
func bundleSig(t testing.TB, key sigstore.PrivateKey, d v1.Hash, ann map[string]string) sigstore.Signature {
	t.Helper()
	b, err := sigstore.NewBundle(key, d, ann)
	if err != nil {
		t.Fatalf("NewBundle: %v", err)
	}
	s := sigstore.SignatureFromBundle(b, "test referrer")
	if s.Err != nil {
		t.Fatalf("SignatureFromBundle: %v", s.Err)
	}
	return s
}

// testPolicy is an enforcing policy on 127.0.0.1:5000/prod/**.
func testPolicy(keys ...sigstore.PrivateKey) *Policy {
	p := &Policy{Name: "prod", Match: []string{testRegistry + "/prod/**"}}
	for _, k := range keys {
		p.Keys = append(p.Keys, k.Public())
	}
	return p
}

func malformed(where string) sigstore.Signature {
	return sigstore.Signature{Format: sigstore.FormatSimpleSigning, Where: where, Err: errors.New("bad base64 in annotation")}
}

func TestEvaluate(t *testing.T) {
	ed, ec, other := newEd25519(t), newECDSA(t), newEd25519(t)
	img := testImage("app")
	d := img.Digest
	prodOnly := map[string]string{"env": "prod"}

	tests := []struct {
		name    string
		policy  *Policy
		sigs    []sigstore.Signature
		admit   bool
		warn    bool
		reason  Reason
		keys    int
		message string // substring the message must contain
	}{
		{
			name:   "ed25519 simple signing admitted",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
			message: `verified by policy "prod" (1 of 1 required keys: ` + shortKeyID(ed.Public().ID()),
		},
		{
			name:   "ecdsa simple signing admitted",
			policy: testPolicy(ec),
			sigs:   []sigstore.Signature{simpleSig(t, ec, testRef, d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "bundle admitted",
			policy: testPolicy(ec),
			sigs:   []sigstore.Signature{bundleSig(t, ec, d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "zero signatures refused",
			policy: testPolicy(ed),
			admit:  false, reason: ReasonNoSignatures,
			message: "no signatures (none found for this digest)",
		},
		{
			name:   "unknown keys only refused as untrusted",
			policy: testPolicy(ed),
			sigs: []sigstore.Signature{
				simpleSig(t, other, testRef, d, nil),
				bundleSig(t, other, d, nil),
			},
			admit: false, reason: ReasonUntrusted,
			message: testRef + "@" + d.String() + `: refused by policy "prod": no signature by a trusted key (2 signatures found, none verified with the policy's 1 key)`,
		},
		{
			name:   "all malformed refused as invalid",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{malformed("layer 1"), malformed("layer 2")},
			admit:  false, reason: ReasonInvalid,
			message: `2 signature artifacts malformed; first: "layer 1": bad base64`,
		},
		{
			name:   "malformed beside untrusted refused as untrusted",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{malformed("layer 1"), simpleSig(t, other, testRef, d, nil)},
			admit:  false, reason: ReasonUntrusted,
			message: "1 malformed",
		},
		{
			name:   "malformed beside a good one admitted",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{malformed("layer 1"), simpleSig(t, ed, testRef, d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "signature of another digest refused",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, digestOf("other"), nil)},
			admit:  false, reason: ReasonDigestMismatch,
			message: "it is for " + digestOf("other").String() + ", not this digest",
		},
		{
			name:   "bundle of another digest refused",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{bundleSig(t, ed, digestOf("other"), nil)},
			admit:  false, reason: ReasonDigestMismatch,
		},
		{
			name:   "reference naming another repository refused",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRegistry+"/dev/app", d, nil)},
			admit:  false, reason: ReasonIdentityMismatch,
			message: `it names "127.0.0.1:5000/dev/app", not "127.0.0.1:5000/prod/app"`,
		},
		{
			name:   "reference with tag normalized and admitted",
			policy: testPolicy(ed),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef+":v1", d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "identity any ignores the reference",
			policy: func() *Policy { p := testPolicy(ed); p.Identity = IdentityAny; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, "elsewhere.example/x/y", d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "required annotation present admitted",
			policy: func() *Policy { p := testPolicy(ed); p.Annotations = prodOnly; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, map[string]string{"env": "prod", "x": "y"})},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "required annotation different refused",
			policy: func() *Policy { p := testPolicy(ed); p.Annotations = prodOnly; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, map[string]string{"env": "dev"})},
			admit:  false, reason: ReasonAnnotations,
			message: `annotation "env" is "dev" (required: "prod")`,
		},
		{
			name:   "required annotation missing refused",
			policy: func() *Policy { p := testPolicy(ed); p.Annotations = prodOnly; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil)},
			admit:  false, reason: ReasonAnnotations,
			message: `annotation "env" is missing`,
		},
		{
			name:   "bundle annotations checked",
			policy: func() *Policy { p := testPolicy(ed); p.Annotations = prodOnly; return p }(),
			sigs:   []sigstore.Signature{bundleSig(t, ed, d, prodOnly)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "threshold two met by two keys",
			policy: func() *Policy { p := testPolicy(ed, ec); p.Threshold = 2; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil), simpleSig(t, ec, testRef, d, nil)},
			admit:  true, reason: ReasonVerified, keys: 2,
			message: "2 of 2 required keys",
		},
		{
			name:   "one key signing twice counts once",
			policy: func() *Policy { p := testPolicy(ed, ec); p.Threshold = 2; return p }(),
			sigs: []sigstore.Signature{
				simpleSig(t, ed, testRef, d, nil),
				simpleSig(t, ed, testRef, d, map[string]string{"again": "yes"}),
				bundleSig(t, ed, d, nil),
			},
			admit: false, reason: ReasonBelowThreshold, keys: 1,
			message: "below threshold (1 of 2 required keys)",
		},
		{
			name:   "duplicate policy keys count once",
			policy: func() *Policy { p := testPolicy(ed, ed); p.Threshold = 2; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil)},
			admit:  false, reason: ReasonBelowThreshold, keys: 1,
		},
		{
			name:   "claim failure outranks below threshold",
			policy: func() *Policy { p := testPolicy(ed, ec); p.Threshold = 2; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil), simpleSig(t, ec, testRef, digestOf("x"), nil)},
			admit:  false, reason: ReasonDigestMismatch, keys: 1,
		},
		{
			name:   "policy without keys never admits",
			policy: &Policy{Name: "empty", Match: []string{"**"}},
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil)},
			admit:  false, reason: ReasonUntrusted,
		},
		{
			name:   "warn mode admits with the refusal reason",
			policy: func() *Policy { p := testPolicy(ed); p.Mode = ModeWarn; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, other, testRef, d, nil)},
			admit:  true, warn: true, reason: ReasonUntrusted,
			message: `admitted with a warning by policy "prod" (mode warn): no signature by a trusted key`,
		},
		{
			name:   "warn mode with a good signature is a plain admission",
			policy: func() *Policy { p := testPolicy(ed); p.Mode = ModeWarn; return p }(),
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil)},
			admit:  true, reason: ReasonVerified, keys: 1,
		},
		{
			name:   "allow mode admits without signatures",
			policy: &Policy{Name: "open", Match: []string{"**"}, Mode: ModeAllow},
			admit:  true, reason: ReasonAllowed,
			message: "mode allow, no signature check",
		},
		{
			name:   "nil policy refused",
			policy: nil,
			sigs:   []sigstore.Signature{simpleSig(t, ed, testRef, d, nil)},
			admit:  false, reason: ReasonNoPolicy,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.policy, img, tt.sigs)
			if got.Admit != tt.admit || got.Warn != tt.warn || got.Reason != tt.reason {
				t.Fatalf("Evaluate = admit %v warn %v reason %q, want %v %v %q\nmessage: %s",
					got.Admit, got.Warn, got.Reason, tt.admit, tt.warn, tt.reason, got.Message)
			}
			if len(got.Keys) != tt.keys {
				t.Errorf("Keys = %v, want %d", got.Keys, tt.keys)
			}
			if !strings.Contains(got.Message, tt.message) {
				t.Errorf("Message = %q, want it to contain %q", got.Message, tt.message)
			}
			if !strings.Contains(got.Message, d.String()) {
				t.Errorf("Message = %q does not name the full digest", got.Message)
			}
			if tt.policy != nil && got.Policy != tt.policy.Name {
				t.Errorf("Policy = %q, want %q", got.Policy, tt.policy.Name)
			}
		})
	}
}

func TestEvaluateVerifiedListsCountingSignatures(t *testing.T) {
	ed, other := newEd25519(t), newEd25519(t)
	img := testImage("app")
	good := simpleSig(t, ed, testRef, img.Digest, nil)
	good.Where = "layer 2"
	sigs := []sigstore.Signature{simpleSig(t, other, testRef, img.Digest, nil), good, bundleSig(t, ed, img.Digest, nil)}
	got := Evaluate(testPolicy(ed), img, sigs)
	if !got.Admit {
		t.Fatalf("not admitted: %s", got.Message)
	}
	wheres := make([]string, len(got.Verified))
	for i, s := range got.Verified {
		wheres[i] = s.Where
	}
	if want := []string{"layer 2", "test referrer"}; !slices.Equal(wheres, want) {
		t.Errorf("Verified = %v, want %v", wheres, want)
	}
	if want := []string{ed.Public().ID()}; !slices.Equal(got.Keys, want) {
		t.Errorf("Keys = %v, want %v", got.Keys, want)
	}
}

func TestEvaluateMessageIsOneLine(t *testing.T) {
	ed := newEd25519(t)
	img := testImage("app")
	bad := malformed("layer\n1\r\x1b[31m")
	bad.Err = errors.New("line one\nline two")
	got := Evaluate(testPolicy(ed), img, []sigstore.Signature{bad})
	if got.Admit || got.Reason != ReasonInvalid {
		t.Fatalf("got admit %v reason %q", got.Admit, got.Reason)
	}
	if strings.ContainsAny(got.Message, "\n\r\x1b") {
		t.Errorf("Message has control characters: %q", got.Message)
	}

	huge := malformed("layer 1")
	huge.Err = errors.New(strings.Repeat("é", 1<<16))
	got = Evaluate(testPolicy(ed), img, []sigstore.Signature{huge})
	if len(got.Message) > maxMessageLen || !utf8.ValidString(got.Message) || !strings.HasSuffix(got.Message, "...") {
		t.Errorf("huge detail gave a %d-byte message (valid UTF-8: %v)", len(got.Message), utf8.ValidString(got.Message))
	}
}

// panicKey is a broken PublicKey implementation.
type panicKey struct{ sigstore.PublicKey }

func (panicKey) Verify(msg, sig []byte) error { panic("boom") }
func (panicKey) ID() string                   { return "sha256:panic" }

func TestEvaluatePanickingKeyFailsClosed(t *testing.T) {
	ed := newEd25519(t)
	img := testImage("app")
	p := &Policy{Name: "p", Match: []string{"**"}, Keys: []sigstore.PublicKey{panicKey{}}}
	got := Evaluate(p, img, []sigstore.Signature{simpleSig(t, ed, testRef, img.Digest, nil)})
	if got.Admit || got.Reason != ReasonUntrusted {
		t.Fatalf("got admit %v reason %q, want refusal %q", got.Admit, got.Reason, ReasonUntrusted)
	}
}

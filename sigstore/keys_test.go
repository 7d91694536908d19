package sigstore_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
)

// The vectors the real sigstore cosign v3.1.2 wrote (see testdata README in
// /work/shared/interop): keys, and the registry dump's blobs and manifests.
const interopDir = "testdata/cosign-v3.1.2"

const (
	// interopAppSig is the .sig manifest of interop/app:v1: layer 0 is
	// ECDSA (optional env=prod), layer 1 Ed25519ph.
	interopAppSig = "sha256-4e8657b6bbc927c8544e0c1ebd2549e476f68259307b39d7cb2c6a3f7d0be9f8"
	// interopMultiSig is the .sig manifest of the interop/multi:v1 index (ECDSA).
	interopMultiSig = "sha256-b708757eeb6138d149167d65c56b7437a0a3df12b5655272e45c2ad0792f3175"
	// interopBundle is the Sigstore bundle blob signing interop/app:v2 (ECDSA).
	interopBundle = "sha256-d89a90b5486b5fa72474ac96440d0691515a29b5bb636e9039ee7f862f23993b"

	interopAppDigest   = "sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"
	interopAppV2Digest = "sha256:28eb0959570ca76b3c9adf3ed8cad7c0426a3bd07dbb589a9415282fcacefdc2"
	interopMultiDigest = "sha256:d059ce8dbdcaa84448f253dc63854eb5329d98906a5e18d26b51d9617f83ce76"
	interopPassword    = "interop"
)

func interopFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(interopDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func interopPublicKey(t testing.TB, name string) sigstore.PublicKey {
	t.Helper()
	k, err := sigstore.LoadPublicKey(filepath.Join(interopDir, "keys", name))
	if err != nil {
		t.Fatalf("LoadPublicKey(%s): %v", name, err)
	}
	return k
}

// interopLayers reduces a .sig manifest of the dump to signatures, the way a
// registry reader does: payload = layer blob, sig = base64 annotation.
func interopLayers(t testing.TB, manifest string) []sigstore.Signature {
	t.Helper()
	var m struct {
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(interopFile(t, "manifests/"+manifest), &m); err != nil {
		t.Fatal(err)
	}
	var out []sigstore.Signature
	for i, l := range m.Layers {
		if l.MediaType != sigstore.SimpleSigningMediaType {
			t.Fatalf("layer %d media type %q", i, l.MediaType)
		}
		payload := interopFile(t, "blobs/"+strings.Replace(l.Digest, ":", "-", 1))
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[sigstore.SignatureAnnotation])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sigstore.Signature{
			Format: sigstore.FormatSimpleSigning, Signed: payload, Payload: payload, Sig: sig,
			Where: manifest,
		})
	}
	return out
}

func interopBundleSignature(t testing.TB) sigstore.Signature {
	t.Helper()
	s := sigstore.SignatureFromBundle(interopFile(t, "blobs/"+interopBundle), "referrer")
	if s.Err != nil {
		t.Fatalf("SignatureFromBundle(vector): %v", s.Err)
	}
	return s
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func publicPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PUBLIC KEY", der)
}

func pkcs8PEM(t testing.TB, priv crypto.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

// noPassword fails the test if a password is asked for.
func noPassword(t *testing.T) func() ([]byte, error) {
	return func() ([]byte, error) {
		t.Helper()
		t.Fatal("password asked for a key that is not encrypted")
		return nil, nil
	}
}

func TestParsePublicKeyInterop(t *testing.T) {
	for _, tc := range []struct {
		file, alg string
	}{
		{"ecdsa.pub", "ecdsa-p256"},
		{"ed25519.pub", "ed25519"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			k := interopPublicKey(t, tc.file)
			if k.Algorithm() != tc.alg {
				t.Errorf("Algorithm() = %q, want %q", k.Algorithm(), tc.alg)
			}
			block, _ := pem.Decode(interopFile(t, "keys/"+tc.file))
			sum := sha256.Sum256(block.Bytes)
			if want := "sha256:" + hexOf(sum[:]); k.ID() != want {
				t.Errorf("ID() = %q, want %q", k.ID(), want)
			}
			if !bytes.Equal(k.PEM(), interopFile(t, "keys/"+tc.file)) {
				t.Errorf("PEM() = %q, want the file's bytes", k.PEM())
			}
		})
	}
}

// The ID is the one cosign's bundle carries as its key hint (base64 of the
// same SHA-256), so both name the key alike.
func TestPublicKeyIDMatchesCosignHint(t *testing.T) {
	var b struct {
		VerificationMaterial struct {
			PublicKey struct{ Hint string } `json:"publicKey"`
		} `json:"verificationMaterial"`
	}
	if err := json.Unmarshal(interopFile(t, "blobs/"+interopBundle), &b); err != nil {
		t.Fatal(err)
	}
	hint, err := base64.StdEncoding.DecodeString(b.VerificationMaterial.PublicKey.Hint)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := interopPublicKey(t, "ecdsa.pub").ID(), "sha256:"+hexOf(hint); got != want {
		t.Errorf("ID() = %q, cosign's hint says %q", got, want)
	}
}

// Every interop signature verifies with exactly the key that made it: each
// key refuses the others' signatures.
func TestInteropSignaturesVerifyWithTheirKeyOnly(t *testing.T) {
	app := interopLayers(t, interopAppSig)
	multi := interopLayers(t, interopMultiSig)
	sigs := []struct {
		name   string
		sig    sigstore.Signature
		signer string
	}{
		{"app layer 0 ECDSA", app[0], "ecdsa.pub"},
		{"app layer 1 Ed25519ph", app[1], "ed25519.pub"},
		{"multi index ECDSA", multi[0], "ecdsa.pub"},
		{"app v2 bundle ECDSA over PAE", interopBundleSignature(t), "ecdsa.pub"},
	}
	for _, s := range sigs {
		for _, key := range []string{"ecdsa.pub", "ed25519.pub"} {
			t.Run(s.name+"/"+key, func(t *testing.T) {
				err := interopPublicKey(t, key).Verify(s.sig.Signed, s.sig.Sig)
				if key == s.signer && err != nil {
					t.Errorf("Verify by its signer: %v", err)
				}
				if key != s.signer && err == nil {
					t.Error("Verify by another key succeeded")
				}
			})
		}
	}
}

func TestInteropSignatureRefusesOtherMessage(t *testing.T) {
	app := interopLayers(t, interopAppSig)
	for i, key := range []string{"ecdsa.pub", "ed25519.pub"} {
		other := append([]byte(nil), app[i].Signed...)
		other[len(other)-2] ^= 1
		if err := interopPublicKey(t, key).Verify(other, app[i].Sig); err == nil {
			t.Errorf("%s: signature verified a modified payload", key)
		}
		if err := interopPublicKey(t, key).Verify(app[1-i].Signed, app[i].Sig); err == nil {
			t.Errorf("%s: signature verified the other layer's payload", key)
		}
	}
}

func TestEd25519VerifiesPureAndPrehashed(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := sigstore.ParsePublicKey(publicPEM(t, pub))
	if err != nil {
		t.Fatal(err)
	}
	msg, other := []byte("message"), []byte("massage")
	digest := sha512.Sum512(msg)
	ph, err := priv.Sign(rand.Reader, digest[:], &ed25519.Options{Hash: crypto.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	for name, sig := range map[string][]byte{"pure": ed25519.Sign(priv, msg), "prehashed": ph} {
		if err := k.Verify(msg, sig); err != nil {
			t.Errorf("%s: Verify(msg) = %v", name, err)
		}
		if err := k.Verify(other, sig); err == nil {
			t.Errorf("%s: Verify(other message) succeeded", name)
		}
	}
	// A prehashed signature does not verify as a pure one over the digest
	// itself: the two modes are domain-separated.
	if ed25519.Verify(pub, digest[:], ph) {
		t.Error("Ed25519ph signature verified as pure Ed25519 over the digest")
	}
}

func TestRSAVerifiesPKCS1v15AndPSS(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := sigstore.ParsePublicKey(publicPEM(t, &priv.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm() != "rsa-2048" {
		t.Errorf("Algorithm() = %q", k.Algorithm())
	}
	msg := []byte("message")
	digest := sha256.Sum256(msg)
	v15, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	pss, err := rsa.SignPSS(rand.Reader, priv, crypto.SHA256, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, sig := range map[string][]byte{"PKCS#1 v1.5": v15, "PSS": pss} {
		if err := k.Verify(msg, sig); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := k.Verify([]byte("other"), sig); err == nil {
			t.Errorf("%s: verified another message", name)
		}
	}
	// The private key side signs PKCS#1 v1.5 that the public side accepts.
	pk, err := sigstore.ParsePrivateKey(pkcs8PEM(t, priv), noPassword(t))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := pk.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("Sign is not PKCS#1 v1.5 SHA-256: %v", err)
	}
}

func TestParsePublicKeyRejects(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKIXPublicKey(edPub)
	if err != nil {
		t.Fatal(err)
	}
	// A PKIX Ed25519 key with 31 key bytes: shorten the BIT STRING.
	short := append([]byte(nil), edDER[:len(edDER)-1]...)
	short[1]--  // SEQUENCE length
	short[10]-- // BIT STRING length
	ecdsaPub := interopFile(t, "keys/ecdsa.pub")
	block, _ := pem.Decode(ecdsaPub)
	withHeaders := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes})

	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty input", "no PEM block", nil},
		{"not PEM", "no PEM block", []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")},
		{"private key type", `PEM type "PRIVATE KEY"`, interopFile(t, "keys/ed25519-plain.pem")},
		{"certificate type", `PEM type "CERTIFICATE"`, pemOf("CERTIFICATE", block.Bytes)},
		{"encrypted private key", `PEM type "ENCRYPTED SIGSTORE PRIVATE KEY"`, interopFile(t, "keys/ecdsa.key")},
		{"garbage DER", "parsing public key", pemOf("PUBLIC KEY", []byte("not DER"))},
		{"P-384 key", "only P-256", publicPEM(t, &p384.PublicKey)},
		{"P-521 key", "only P-256", publicPEM(t, &p521.PublicKey)},
		{"short Ed25519 key", "parsing public key", pemOf("PUBLIC KEY", short)},
		{"two keys in one file", "data after the PEM block", append(append([]byte(nil), ecdsaPub...), interopFile(t, "keys/ed25519.pub")...)},
		{"trailing garbage", "data after the PEM block", append(append([]byte(nil), ecdsaPub...), "junk"...)},
		{"PEM headers", "headers", withHeaders},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := sigstore.ParsePublicKey(tc.in)
			if err == nil {
				t.Fatalf("ParsePublicKey accepted it: %s", k.Algorithm())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestParsePublicKeyRejectsWeakRSA(t *testing.T) {
	// Go refuses to generate RSA keys under 1024 bits; 1024 is enough to
	// show the floor is enforced.
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Skipf("cannot generate a 1024-bit RSA key here: %v", err)
	}
	if _, err := sigstore.ParsePublicKey(publicPEM(t, &priv.PublicKey)); err == nil || !strings.Contains(err.Error(), "1024 bits") {
		t.Errorf("ParsePublicKey(RSA-1024) error = %v, want a size refusal", err)
	}
}

func TestLoadPublicKeyErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pub")
	if err := os.WriteFile(big, bytes.Repeat([]byte("A"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"missing file": filepath.Join(dir, "nope.pub"),
		"huge file":    big,
		"private key":  filepath.Join(interopDir, "keys", "ecdsa.key"),
	} {
		if _, err := sigstore.LoadPublicKey(path); err == nil {
			t.Errorf("%s: LoadPublicKey succeeded", name)
		}
	}
}

// Garbage signatures of every length up to 600 bytes are refused, never
// panic, for every key type.
func TestVerifyGarbageSignatures(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := sigstore.ParsePublicKey(publicPEM(t, &rsaKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]sigstore.PublicKey{
		"ecdsa":   interopPublicKey(t, "ecdsa.pub"),
		"ed25519": interopPublicKey(t, "ed25519.pub"),
		"rsa":     rsaPub,
	}
	msg := []byte("message")
	for name, k := range keys {
		for n := 0; n <= 600; n++ {
			for _, fill := range []byte{0x00, 0xff, 0x30} {
				sig := bytes.Repeat([]byte{fill}, n)
				if err := k.Verify(msg, sig); err == nil {
					t.Fatalf("%s: %d bytes of %#x verified", name, n, fill)
				}
			}
			sig := make([]byte, n)
			if _, err := rand.Read(sig); err != nil {
				t.Fatal(err)
			}
			if err := k.Verify(msg, sig); err == nil {
				t.Fatalf("%s: %d random bytes verified", name, n)
			}
		}
		if err := k.Verify(nil, nil); err == nil {
			t.Errorf("%s: nil signature over nil verified", name)
		}
	}
}

func TestParsePrivateKeyFormats(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, alg string
		pem       []byte
	}{
		{"PKCS#8 ECDSA", "ecdsa-p256", pkcs8PEM(t, ec)},
		{"SEC 1 EC PRIVATE KEY", "ecdsa-p256", pemOf("EC PRIVATE KEY", sec1)},
		{"PKCS#8 Ed25519", "ed25519", pkcs8PEM(t, ed)},
		{"openssl Ed25519 (interop)", "ed25519", interopFile(t, "keys/ed25519-plain.pem")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := sigstore.ParsePrivateKey(tc.pem, noPassword(t))
			if err != nil {
				t.Fatal(err)
			}
			if k.Public().Algorithm() != tc.alg {
				t.Errorf("Algorithm() = %q, want %q", k.Public().Algorithm(), tc.alg)
			}
			msg := []byte("signed by " + tc.name)
			sig, err := k.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Public().Verify(msg, sig); err != nil {
				t.Errorf("own signature does not verify: %v", err)
			}
		})
	}
}

func TestEd25519PlainMatchesPublicKey(t *testing.T) {
	k, err := sigstore.ParsePrivateKey(interopFile(t, "keys/ed25519-plain.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Public().ID(), interopPublicKey(t, "ed25519.pub").ID(); got != want {
		t.Errorf("ed25519-plain.pem public ID %s, ed25519.pub %s", got, want)
	}
	sig, err := k.Sign([]byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(publicKeyBytes(t, interopPublicKey(t, "ed25519.pub")), []byte("m"), sig) {
		t.Error("Sign is not pure Ed25519")
	}
}

func publicKeyBytes(t *testing.T, k sigstore.PublicKey) ed25519.PublicKey {
	t.Helper()
	block, _ := pem.Decode(k.PEM())
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(ed25519.PublicKey)
}

func TestParsePrivateKeyRejects(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "no PEM block", nil},
		{"public key", `unsupported PEM type "PUBLIC KEY"`, interopFile(t, "keys/ecdsa.pub")},
		{"PKCS#1 RSA", `unsupported PEM type "RSA PRIVATE KEY"`, pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"P-384 PKCS#8", "only P-256", pkcs8PEM(t, p384)},
		{"P-384 SEC 1", "only P-256", pemOf("EC PRIVATE KEY", sec1)},
		{"garbage PKCS#8", "parsing PKCS#8", pemOf("PRIVATE KEY", []byte("junk"))},
		{"garbage SEC 1", "parsing EC private key", pemOf("EC PRIVATE KEY", []byte("junk"))},
		{"two keys", "data after the PEM block", append(interopFile(t, "keys/ed25519-plain.pem"), interopFile(t, "keys/ed25519-plain.pem")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sigstore.ParsePrivateKey(tc.in, noPassword(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// BenchmarkVerifyEd25519 compares Signature verification through the
// package with bare crypto/ed25519, for a pure signature and for cosign's
// Ed25519ph (which costs a failed pure attempt first).
func BenchmarkVerifyEd25519(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	k, err := sigstore.ParsePublicKey(publicPEM(b, pub))
	if err != nil {
		b.Fatal(err)
	}
	payload := interopLayers(b, interopAppSig)[1]
	sig := ed25519.Sign(priv, payload.Signed)
	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, payload.Signed, sig) {
				b.Fatal("no")
			}
		}
	})
	b.Run("pure", func(b *testing.B) {
		for b.Loop() {
			if err := k.Verify(payload.Signed, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	ph := interopPublicKey(b, "ed25519.pub")
	b.Run("prehashed-interop", func(b *testing.B) {
		for b.Loop() {
			if err := ph.Verify(payload.Signed, payload.Sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyECDSA compares the package with bare crypto/ecdsa on the
// interop ECDSA layer.
func BenchmarkVerifyECDSA(b *testing.B) {
	s := interopLayers(b, interopAppSig)[0]
	k := interopPublicKey(b, "ecdsa.pub")
	block, _ := pem.Decode(k.PEM())
	raw, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	pub := raw.(*ecdsa.PublicKey)
	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			d := sha256.Sum256(s.Signed)
			if !ecdsa.VerifyASN1(pub, d[:], s.Sig) {
				b.Fatal("no")
			}
		}
	})
	b.Run("signature", func(b *testing.B) {
		for b.Loop() {
			if err := k.Verify(s.Signed, s.Sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

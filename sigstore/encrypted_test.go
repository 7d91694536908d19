package sigstore_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"

	"github.com/cosign-dev/cosign/sigstore"
)

func password(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

var interopPrivateKeys sync.Map // file name -> sigstore.PrivateKey

// interopPrivateKey decrypts a vector key once per test binary: scrypt with
// cosign's N=65536 is slow, more so under the race detector.
func interopPrivateKey(t testing.TB, name string) sigstore.PrivateKey {
	t.Helper()
	if k, ok := interopPrivateKeys.Load(name); ok {
		return k.(sigstore.PrivateKey)
	}
	k, err := sigstore.ParsePrivateKey(interopFile(t, "keys/"+name), password(interopPassword))
	if err != nil {
		t.Fatalf("decrypting %s: %v", name, err)
	}
	interopPrivateKeys.Store(name, k)
	return k
}

// cheapEncrypted builds cosign's envelope by hand with a small scrypt N,
// for fast tests; it also shows the reader honours the file's parameters.
func cheapEncrypted(t *testing.T, pw string) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	salt := make([]byte, 32)
	var nonce [24]byte
	rand.Read(salt)
	rand.Read(nonce[:])
	k, err := scrypt.Key([]byte(pw), salt, 1024, 8, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], k)
	body, err := json.Marshal(map[string]any{
		"kdf":        map[string]any{"name": "scrypt", "params": map[string]int{"N": 1024, "r": 8, "p": 1}, "salt": salt},
		"cipher":     map[string]any{"name": "nacl/secretbox", "nonce": nonce[:]},
		"ciphertext": secretbox.Seal(nil, der, &nonce, &key),
	})
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("ENCRYPTED SIGSTORE PRIVATE KEY", body)
}

func TestDecryptInteropKeys(t *testing.T) {
	for _, tc := range []struct {
		key, pub, alg string
	}{
		{"ecdsa.key", "ecdsa.pub", "ecdsa-p256"},
		{"ed25519.key", "ed25519.pub", "ed25519"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			k := interopPrivateKey(t, tc.key)
			pub := interopPublicKey(t, tc.pub)
			if k.Public().ID() != pub.ID() || k.Public().Algorithm() != tc.alg {
				t.Fatalf("decrypted %s %s, want %s %s", k.Public().Algorithm(), k.Public().ID(), tc.alg, pub.ID())
			}
			msg := []byte("signed with the decrypted " + tc.key)
			sig, err := k.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Verify(msg, sig); err != nil {
				t.Errorf("%s does not verify the decrypted key's signature: %v", tc.pub, err)
			}
		})
	}
}

func TestDecryptedEd25519MatchesPlainPEM(t *testing.T) {
	enc := interopPrivateKey(t, "ed25519.key")
	plain, err := sigstore.ParsePrivateKey(interopFile(t, "keys/ed25519-plain.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Public().ID() != plain.Public().ID() {
		t.Errorf("ed25519.key is %s, ed25519-plain.pem %s", enc.Public().ID(), plain.Public().ID())
	}
}

func TestDecryptInteropKeyWrongPassword(t *testing.T) {
	_, err := sigstore.ParsePrivateKey(interopFile(t, "keys/ecdsa.key"), password("Interop"))
	if !errors.Is(err, sigstore.ErrWrongPassword) {
		t.Errorf("error = %v, want ErrWrongPassword", err)
	}
}

func TestDecryptPasswordErrors(t *testing.T) {
	errPrompt := errors.New("no terminal")
	key := cheapEncrypted(t, "pw")
	if _, err := sigstore.ParsePrivateKey(key, password("pw")); err != nil {
		t.Fatalf("right password: %v", err)
	}
	for _, tc := range []struct {
		name     string
		password func() ([]byte, error)
		want     error
	}{
		{"wrong password", password("PW"), sigstore.ErrWrongPassword},
		{"nil password func", nil, sigstore.ErrPasswordRequired},
		{"empty password", password(""), sigstore.ErrPasswordRequired},
		{"nil password", func() ([]byte, error) { return nil, nil }, sigstore.ErrPasswordRequired},
		{"prompt fails", func() ([]byte, error) { return nil, errPrompt }, errPrompt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sigstore.ParsePrivateKey(key, tc.password)
			if !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
		})
	}
}

// The older PEM type of cosign's encrypted keys reads the same.
func TestDecryptOldCosignPEMType(t *testing.T) {
	block, _ := pem.Decode(interopFile(t, "keys/ed25519.key"))
	old := pemOf("ENCRYPTED COSIGN PRIVATE KEY", block.Bytes)
	k, err := sigstore.ParsePrivateKey(old, password(interopPassword))
	if err != nil {
		t.Fatal(err)
	}
	if k.Public().ID() != interopPublicKey(t, "ed25519.pub").ID() {
		t.Error("wrong key")
	}
}

// A generated, encrypted key is read back and signs what its public key
// verifies; the envelope has the exact shape cosign writes.
func TestGenerateKeyPairEncryptedRoundTrip(t *testing.T) {
	priv, pub, err := sigstore.GenerateKeyPair([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(priv)
	if block.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" {
		t.Fatalf("PEM type %q", block.Type)
	}
	assertCosignEnvelopeShape(t, block.Bytes)

	k, err := sigstore.ParsePrivateKey(priv, password("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := sigstore.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if k.Public().ID() != pk.ID() || pk.Algorithm() != "ed25519" {
		t.Fatalf("private key %s, public key %s %s", k.Public().ID(), pk.Algorithm(), pk.ID())
	}
	sig, err := k.Sign([]byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify([]byte("m"), sig); err != nil {
		t.Error(err)
	}
	if _, err := sigstore.ParsePrivateKey(priv, password("S3cret")); !errors.Is(err, sigstore.ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
}

// assertCosignEnvelopeShape compares the JSON envelope with the one cosign
// wrote for the interop key: same keys at every level, same kdf and cipher,
// N=65536 r=8 p=1, 32-byte salt, 24-byte nonce.
func assertCosignEnvelopeShape(t *testing.T, body []byte) {
	t.Helper()
	cosignBlock, _ := pem.Decode(interopFile(t, "keys/ed25519.key"))
	if got, want := jsonShape(t, body), jsonShape(t, cosignBlock.Bytes); got != want {
		t.Errorf("envelope shape %s, cosign's %s", got, want)
	}
	var env struct {
		KDF struct {
			Name   string
			Params struct{ N, R, P int }
			Salt   []byte
		}
		Cipher struct {
			Name  string
			Nonce []byte
		}
		Ciphertext []byte
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if env.KDF.Name != "scrypt" || env.KDF.Params.N != 65536 || env.KDF.Params.R != 8 || env.KDF.Params.P != 1 || len(env.KDF.Salt) != 32 {
		t.Errorf("kdf %+v", env.KDF)
	}
	if env.Cipher.Name != "nacl/secretbox" || len(env.Cipher.Nonce) != 24 {
		t.Errorf("cipher %+v", env.Cipher)
	}
}

// jsonShape renders the object keys of a JSON document, recursively sorted.
func jsonShape(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(v any) string
	walk = func(v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			return "_"
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + walk(m[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	return walk(v)
}

func TestGenerateKeyPairPlain(t *testing.T) {
	priv, pub, err := sigstore.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(priv); block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("private PEM %q", priv)
	}
	k, err := sigstore.ParsePrivateKey(priv, noPassword(t))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := sigstore.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if k.Public().ID() != pk.ID() {
		t.Error("public key does not match the private key")
	}
}

// cosign allows an empty password; such a key opens without one.
func TestEncryptedWithEmptyPassword(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := sigstore.EncryptPrivateKey(der, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sigstore.ParsePrivateKey(enc, nil); err != nil {
		t.Errorf("empty-password key: %v", err)
	}
	if _, err := sigstore.ParsePrivateKey(cheapEncrypted(t, ""), password("x")); !errors.Is(err, sigstore.ErrWrongPassword) {
		t.Errorf("non-empty password on an empty-password key: %v", err)
	}
}

func TestEncryptPrivateKeyRejectsNonPKCS8(t *testing.T) {
	if _, err := sigstore.EncryptPrivateKey([]byte("not a key"), []byte("pw")); err == nil {
		t.Error("EncryptPrivateKey accepted garbage")
	}
}

// Hostile or malformed envelopes are refused before the password is asked
// for and before any scrypt work.
func TestEncryptedEnvelopeRejects(t *testing.T) {
	const (
		salt  = `"t502vDpTvPeVp/cjHpUFymYhBUMCUkok2MU+Bv9pH2M="`
		nonce = `"LCx8BqHBQn42oYzq1jiJXgtkpn2gIvED"`
		ct    = `"+fdNG12jvrHLoCM/0HSJ7TX+h+qjAx+V/4zTm4Gny2DJ6T7Z8fxRHthqSbn+k8tSrOvdqGmFMx3+hxxbjcCbBg=="`
	)
	env := func(kdf, params, cipher string) string {
		return `{"kdf":{"name":` + kdf + `,"params":` + params + `,"salt":` + salt + `},"cipher":{"name":` + cipher + `,"nonce":` + nonce + `},"ciphertext":` + ct + `}`
	}
	good := `{"N":65536,"r":8,"p":1}`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"N too large", env(`"scrypt"`, `{"N":2097152,"r":8,"p":1}`, `"nacl/secretbox"`), "scrypt N=2097152"},
		{"N not a power of two", env(`"scrypt"`, `{"N":65535,"r":8,"p":1}`, `"nacl/secretbox"`), "power of two"},
		{"N zero", env(`"scrypt"`, `{"N":0,"r":8,"p":1}`, `"nacl/secretbox"`), "power of two"},
		{"N negative", env(`"scrypt"`, `{"N":-65536,"r":8,"p":1}`, `"nacl/secretbox"`), "power of two"},
		{"r zero", env(`"scrypt"`, `{"N":65536,"r":0,"p":1}`, `"nacl/secretbox"`), "r=0"},
		{"p huge", env(`"scrypt"`, `{"N":65536,"r":8,"p":1000000}`, `"nacl/secretbox"`), "p=1000000"},
		{"r*p too large", env(`"scrypt"`, `{"N":1024,"r":8,"p":4}`, `"nacl/secretbox"`), "r*p"},
		{"memory too large", env(`"scrypt"`, `{"N":1048576,"r":16,"p":1}`, `"nacl/secretbox"`), "needs more than"},
		{"other kdf", env(`"argon2id"`, good, `"nacl/secretbox"`), `kdf "argon2id"`},
		{"other cipher", env(`"scrypt"`, good, `"aes-gcm"`), `cipher "aes-gcm"`},
		{"short nonce", strings.Replace(env(`"scrypt"`, good, `"nacl/secretbox"`), nonce, `"AAAA"`, 1), "nonce is 3 bytes"},
		{"short salt", strings.Replace(env(`"scrypt"`, good, `"nacl/secretbox"`), salt, `"AAAA"`, 1), "salt is 3 bytes"},
		{"empty ciphertext", strings.Replace(env(`"scrypt"`, good, `"nacl/secretbox"`), ct, `""`, 1), "ciphertext of 0 bytes"},
		{"duplicate key", strings.Replace(env(`"scrypt"`, good, `"nacl/secretbox"`), `"ciphertext"`, `"ciphertext":"",  "ciphertext"`, 1), "duplicate key"},
		{"unknown key", strings.Replace(env(`"scrypt"`, good, `"nacl/secretbox"`), `"ciphertext"`, `"extra":1,"ciphertext"`, 1), "unknown field"},
		{"trailing data", env(`"scrypt"`, good, `"nacl/secretbox"`) + "{}", "data after the JSON value"},
		{"not JSON", "MIIB", "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := pemOf("ENCRYPTED SIGSTORE PRIVATE KEY", []byte(tc.body))
			_, err := sigstore.ParsePrivateKey(in, func() ([]byte, error) {
				t.Fatal("password asked for a malformed envelope")
				return nil, nil
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// A flipped ciphertext bit fails authentication like a wrong password.
func TestEncryptedEnvelopeTamperedCiphertext(t *testing.T) {
	block, _ := pem.Decode(cheapEncrypted(t, "pw"))
	var env map[string]any
	if err := json.Unmarshal(block.Bytes, &env); err != nil {
		t.Fatal(err)
	}
	ct, err := base64.StdEncoding.DecodeString(env["ciphertext"].(string))
	if err != nil {
		t.Fatal(err)
	}
	ct[len(ct)-1] ^= 1
	env["ciphertext"] = base64.StdEncoding.EncodeToString(ct)
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sigstore.ParsePrivateKey(pemOf("ENCRYPTED SIGSTORE PRIVATE KEY", body), password("pw"))
	if !errors.Is(err, sigstore.ErrWrongPassword) {
		t.Fatalf("tampered ciphertext: %v", err)
	}
}

package sigstore

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

// certWithKey is a certificate for pub, signed by a fresh P-256 key.
func certWithKey(t *testing.T, pub any) []byte {
	t.Helper()
	issuer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "k"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, issuer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// rsaKey is an RSA public key of the given size; only its size matters
// here, so its modulus is any odd number of that many bits.
func rsaKey(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

// TestKeylessCertificateKeyBounds: certificates a keyless signature carries
// must have keys of the kinds and sizes Fulcio and timestamp authorities
// issue; a huge RSA key (seconds of CPU for every signature checked with
// it) is refused before anything uses it.
func TestKeylessCertificateKeyBounds(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pub  any
		want string // "" to pass
	}{
		{"P-256", &p256.PublicKey, ""},
		{"Ed25519", edPub, ""},
		{"RSA 2048", rsaKey(2048), ""},
		{"RSA 8192", rsaKey(8192), ""},
		{"RSA 1024", rsaKey(1024), "1024-bit RSA key"},
		{"RSA 65536", rsaKey(65536), "65536-bit RSA key"},
		{"RSA 8192, exponent 2^31-1", &rsa.PublicKey{N: rsaKey(8192).N, E: 1<<31 - 1}, "exponent 2147483647"},
		{"P-224", &p224.PublicKey, "unsupported curve"},
	} {
		err := checkCertificateDER(certWithKey(t, tc.pub))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestKeylessTimestampDataBounds(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"none", `{}`, ""},
		{"empty list", `{"rfc3161Timestamps":[]}`, ""},
		{"not a response", `{"rfc3161Timestamps":[{"signedTimestamp":"AQID"}]}`, "not an RFC 3161 response"},
		{"unknown key", `{"rfc3161Timestamps":[],"other":1}`, `unknown key "other"`},
		{"not a list", `{"rfc3161Timestamps":{}}`, "not a JSON array"},
		{"too big", `{"rfc3161Timestamps":[{"signedTimestamp":"` + strings.Repeat("A", 48<<10) + `"}]}`, "bytes, want 1 to"},
	} {
		err := checkTimestampData([]byte(tc.json), "tv")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

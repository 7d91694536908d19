package sigstore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

func TestCheckSignatureEncoding(t *testing.T) {
	digest := sha256.Sum256([]byte("payload"))
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSig, err := ecdsa.SignASN1(rand.Reader, ec, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	edSig, err := newKey(t).Sign([]byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sig  []byte
		ok   bool
	}{
		{"Ed25519", edSig, true},
		{"ECDSA P-256 ASN.1", ecSig, true},
		{"RSA 2048", rsaSig, true},
		{"junk text", []byte("not a signature\n"), false},
		{"one byte", []byte{0}, false},
		{"ECDSA with trailing data", append(bytes.Clone(ecSig), 0), false},
		{"63 bytes", make([]byte, 63), false},
		{"300 bytes", make([]byte, 300), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckSignatureEncoding(tc.sig); (err == nil) != tc.ok {
				t.Errorf("CheckSignatureEncoding(%d bytes) = %v, want ok %t", len(tc.sig), err, tc.ok)
			}
		})
	}
}

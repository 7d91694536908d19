package sigstore

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// cosign's encrypted private key format: the PEM body is the JSON envelope
//
//	{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<b64>"},
//	 "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}
//
// with key = scrypt(password, salt, N, r, p, 32) and ciphertext =
// secretbox.Seal(PKCS#8 DER, nonce, key). It is go-securesystemslib's
// "encrypted" format, which sigstore/sigstore's cryptoutils uses.
const (
	kdfScrypt       = "scrypt"
	cipherSecretbox = "nacl/secretbox"

	// Parameters EncryptPrivateKey writes (cosign's defaults).
	scryptN       = 1 << 16
	scryptR       = 8
	scryptP       = 1
	saltSize      = 32
	nonceSize     = 24
	secretboxKey  = 32
	maxScryptN    = 1 << 20
	maxScryptRP   = 16
	maxScryptMem  = 1 << 30 // 128*N*r bytes
	minSaltSize   = 16
	maxSaltSize   = 1024
	maxCiphertext = 64 << 10
)

type encryptedKey struct {
	KDF        kdfSpec    `json:"kdf"`
	Cipher     cipherSpec `json:"cipher"`
	Ciphertext []byte     `json:"ciphertext"`
}

type kdfSpec struct {
	Name   string       `json:"name"`
	Params scryptParams `json:"params"`
	Salt   []byte       `json:"salt"`
}

type scryptParams struct {
	N int `json:"N"`
	R int `json:"r"`
	P int `json:"p"`
}

type cipherSpec struct {
	Name  string `json:"name"`
	Nonce []byte `json:"nonce"`
}

// EncryptPrivateKey encrypts a PKCS#8 DER private key into cosign's
// "ENCRYPTED SIGSTORE PRIVATE KEY" PEM: scrypt (N=65536, r=8, p=1, random
// 32-byte salt) and nacl/secretbox (random 24-byte nonce). cosign reads it
// with the same password.
func EncryptPrivateKey(pkcs8DER, password []byte) ([]byte, error) {
	if _, err := x509.ParsePKCS8PrivateKey(pkcs8DER); err != nil {
		return nil, fmt.Errorf("encrypting private key: not a PKCS#8 key: %w", err)
	}
	salt := make([]byte, saltSize)
	var nonce [nonceSize]byte
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("encrypting private key: %w", err)
	}
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("encrypting private key: %w", err)
	}
	params := scryptParams{N: scryptN, R: scryptR, P: scryptP}
	key, err := deriveKey(password, salt, params)
	if err != nil {
		return nil, fmt.Errorf("encrypting private key: %w", err)
	}
	defer clear(key[:])
	env := encryptedKey{
		KDF:        kdfSpec{Name: kdfScrypt, Params: params, Salt: salt},
		Cipher:     cipherSpec{Name: cipherSecretbox, Nonce: nonce[:]},
		Ciphertext: secretbox.Seal(nil, pkcs8DER, &nonce, key),
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encrypting private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemEncryptedSigstore, Bytes: body}), nil
}

// decryptPEMBody opens the JSON envelope of an encrypted private key PEM and
// returns the PKCS#8 DER inside. The envelope is validated (including the
// scrypt cost) before the password is asked for.
func decryptPEMBody(body []byte, password func() ([]byte, error)) ([]byte, error) {
	env, err := parseEncryptedKey(body)
	if err != nil {
		return nil, fmt.Errorf("parsing encrypted private key: %w", err)
	}
	var pw []byte
	if password != nil {
		if pw, err = password(); err != nil {
			return nil, fmt.Errorf("reading password for encrypted private key: %w", err)
		}
	}
	der, err := env.open(pw)
	if errors.Is(err, ErrWrongPassword) && len(pw) == 0 {
		return nil, ErrPasswordRequired
	}
	return der, err
}

// parseEncryptedKey decodes and validates the envelope strictly: no
// duplicate or unknown keys, scrypt and nacl/secretbox only, bounded cost.
func parseEncryptedKey(body []byte) (*encryptedKey, error) {
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var env encryptedKey
	if err := dec.Decode(&env); err != nil {
		return nil, err
	}
	if env.KDF.Name != kdfScrypt {
		return nil, fmt.Errorf("kdf %q is not supported: want %q", env.KDF.Name, kdfScrypt)
	}
	if err := env.KDF.Params.validate(); err != nil {
		return nil, err
	}
	if n := len(env.KDF.Salt); n < minSaltSize || n > maxSaltSize {
		return nil, fmt.Errorf("scrypt salt is %d bytes: want %d to %d", n, minSaltSize, maxSaltSize)
	}
	if env.Cipher.Name != cipherSecretbox {
		return nil, fmt.Errorf("cipher %q is not supported: want %q", env.Cipher.Name, cipherSecretbox)
	}
	if len(env.Cipher.Nonce) != nonceSize {
		return nil, fmt.Errorf("secretbox nonce is %d bytes, want %d", len(env.Cipher.Nonce), nonceSize)
	}
	if n := len(env.Ciphertext); n <= secretbox.Overhead || n > maxCiphertext {
		return nil, fmt.Errorf("ciphertext of %d bytes is out of range", n)
	}
	return &env, nil
}

// validate bounds the scrypt cost so that a hostile key file cannot make
// the reader spend gigabytes or minutes: N a power of two up to 2^20, r and
// p at least 1 with r*p at most 16, and 128*N*r bytes of memory at most 1 GiB.
func (p scryptParams) validate() error {
	if p.N < 2 || p.N > maxScryptN || p.N&(p.N-1) != 0 {
		return fmt.Errorf("scrypt N=%d: want a power of two from 2 to %d", p.N, maxScryptN)
	}
	if p.R < 1 || p.P < 1 || p.R > maxScryptRP || p.P > maxScryptRP || p.R*p.P > maxScryptRP {
		return fmt.Errorf("scrypt r=%d p=%d: want r, p >= 1 and r*p <= %d", p.R, p.P, maxScryptRP)
	}
	if 128*int64(p.N)*int64(p.R) > maxScryptMem {
		return fmt.Errorf("scrypt N=%d r=%d needs more than %d bytes", p.N, p.R, maxScryptMem)
	}
	return nil
}

func deriveKey(password, salt []byte, p scryptParams) (*[secretboxKey]byte, error) {
	k, err := scrypt.Key(password, salt, p.N, p.R, p.P, secretboxKey)
	if err != nil {
		return nil, fmt.Errorf("scrypt: %w", err)
	}
	var key [secretboxKey]byte
	copy(key[:], k)
	clear(k)
	return &key, nil
}

// open decrypts the envelope; a failed authentication is ErrWrongPassword.
func (e *encryptedKey) open(password []byte) ([]byte, error) {
	key, err := deriveKey(password, e.KDF.Salt, e.KDF.Params)
	if err != nil {
		return nil, err
	}
	defer clear(key[:])
	var nonce [nonceSize]byte
	copy(nonce[:], e.Cipher.Nonce)
	der, ok := secretbox.Open(nil, e.Ciphertext, &nonce, key)
	if !ok {
		return nil, ErrWrongPassword
	}
	return der, nil
}

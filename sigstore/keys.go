package sigstore

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
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// PublicKey verifies signatures. Implementations cover Ed25519, ECDSA P-256
// and RSA; every one is safe to call with any input (wrong lengths, garbage)
// and never panics.
type PublicKey interface {
	// Verify returns nil when sig is a valid signature over msg.
	Verify(msg, sig []byte) error
	// ID identifies the key across formats: "sha256:" + hex SHA-256 of its
	// PKIX DER encoding.
	ID() string
	// Algorithm names the key type: "ed25519", "ecdsa-p256", "rsa-2048", ...
	Algorithm() string
	// PEM is the PKIX "PUBLIC KEY" PEM encoding.
	PEM() []byte
}

// PrivateKey signs messages.
type PrivateKey interface {
	// Sign signs msg: pure Ed25519, or ECDSA/RSA over SHA-256 (ASN.1 for ECDSA).
	Sign(msg []byte) ([]byte, error)
	// Public returns the matching public key.
	Public() PublicKey
}

// Key size limits. RSA keys below minRSABits are refused as weak; keys above
// maxRSABits are refused because verifying with them costs a caller-chosen
// amount of CPU.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// PEM block types this package reads and writes.
const (
	pemPublicKey          = "PUBLIC KEY"
	pemPrivateKey         = "PRIVATE KEY"
	pemECPrivateKey       = "EC PRIVATE KEY"
	pemEncryptedSigstore  = "ENCRYPTED SIGSTORE PRIVATE KEY"
	pemEncryptedCosignOld = "ENCRYPTED COSIGN PRIVATE KEY"
)

var (
	// ErrPasswordRequired is returned by ParsePrivateKey when the key is
	// encrypted and no password was given (or the empty password did not
	// open it).
	ErrPasswordRequired = errors.New("private key is encrypted: a password is required")
	// ErrWrongPassword is returned by ParsePrivateKey when the password does
	// not decrypt an encrypted key.
	ErrWrongPassword = errors.New("wrong password for encrypted private key")
)

// ParsePublicKey parses one PKIX "PUBLIC KEY" PEM block holding an Ed25519,
// ECDSA P-256 or RSA (2048 to 8192 bits) key. Other key types, other curves,
// PEM headers and data after the block are refused.
func ParsePublicKey(pemBytes []byte) (PublicKey, error) {
	block, err := decodeSinglePEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	if block.Type != pemPublicKey {
		return nil, fmt.Errorf("parsing public key: PEM type %q, want %q", block.Type, pemPublicKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	return newPublicKey(pub)
}

// LoadPublicKey reads and parses a PKIX "PUBLIC KEY" PEM file.
func LoadPublicKey(path string) (PublicKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// maxKeyFileSize caps what LoadPublicKey reads: key files are a few KiB.
const maxKeyFileSize = 64 << 10

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("reading key %s: larger than %d bytes", path, maxKeyFileSize)
	}
	return b, nil
}

// decodeSinglePEM decodes exactly one PEM block without headers; only
// whitespace may follow it.
func decodeSinglePEM(b []byte) (*pem.Block, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("PEM block %q has headers, which are not supported", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM block (one key per file)")
	}
	return block, nil
}

// newPublicKey wraps a parsed crypto public key after checking its type and
// size.
func newPublicKey(pub crypto.PublicKey) (PublicKey, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return newKeyCommon(&ed25519PublicKey{key: k}, k)
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA curve %s is not supported: only P-256", k.Curve.Params().Name)
		}
		return newKeyCommon(&ecdsaPublicKey{key: k}, k)
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is not supported: %d to %d bits", bits, minRSABits, maxRSABits)
		}
		return newKeyCommon(&rsaPublicKey{key: k}, k)
	default:
		return nil, fmt.Errorf("public key type %T is not supported: Ed25519, ECDSA P-256 or RSA", pub)
	}
}

// keyCommon holds what every public key computes from its PKIX encoding.
type keyCommon struct {
	der []byte
	id  string
}

// ID implements PublicKey.
func (c *keyCommon) ID() string { return c.id }

// PEM implements PublicKey.
func (c *keyCommon) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: c.der})
}

// withCommon is implemented by the concrete public keys so that
// newKeyCommon can fill their shared part.
type withCommon interface {
	PublicKey
	common() *keyCommon
}

// newKeyCommon re-encodes pub to canonical PKIX DER, so that the same key
// has the same ID whatever encoding it was read from.
func newKeyCommon(k withCommon, pub crypto.PublicKey) (PublicKey, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	c := k.common()
	c.der = der
	c.id = "sha256:" + hex.EncodeToString(sum[:])
	return k, nil
}

// ed25519PublicKey verifies pure Ed25519 and Ed25519ph (SHA-512 prehash)
// signatures: cosign signs with imported Ed25519 keys in Ed25519ph mode.
type ed25519PublicKey struct {
	keyCommon
	key ed25519.PublicKey
}

func (k *ed25519PublicKey) common() *keyCommon { return &k.keyCommon }

// Algorithm implements PublicKey.
func (k *ed25519PublicKey) Algorithm() string { return "ed25519" }

// Verify implements PublicKey. The two modes are domain-separated by the
// Ed25519ph context prefix, so accepting both does not let a signature made
// for one message verify for another.
func (k *ed25519PublicKey) Verify(msg, sig []byte) error {
	if len(k.key) != ed25519.PublicKeySize {
		return fmt.Errorf("ed25519 public key is %d bytes, want %d", len(k.key), ed25519.PublicKeySize)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("ed25519 signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	if ed25519.Verify(k.key, msg, sig) {
		return nil
	}
	digest := sha512.Sum512(msg)
	if err := ed25519.VerifyWithOptions(k.key, digest[:], sig, &ed25519.Options{Hash: crypto.SHA512}); err == nil {
		return nil
	}
	return errors.New("ed25519 signature does not verify (pure or prehashed)")
}

// ecdsaPublicKey verifies ASN.1 ECDSA P-256 signatures over SHA-256.
type ecdsaPublicKey struct {
	keyCommon
	key *ecdsa.PublicKey
}

func (k *ecdsaPublicKey) common() *keyCommon { return &k.keyCommon }

// Algorithm implements PublicKey.
func (k *ecdsaPublicKey) Algorithm() string { return "ecdsa-p256" }

// Verify implements PublicKey.
func (k *ecdsaPublicKey) Verify(msg, sig []byte) error {
	digest := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(k.key, digest[:], sig) {
		return errors.New("ecdsa signature does not verify")
	}
	return nil
}

// rsaPublicKey verifies RSA PKCS#1 v1.5 and PSS signatures over SHA-256.
type rsaPublicKey struct {
	keyCommon
	key *rsa.PublicKey
}

func (k *rsaPublicKey) common() *keyCommon { return &k.keyCommon }

// Algorithm implements PublicKey.
func (k *rsaPublicKey) Algorithm() string { return fmt.Sprintf("rsa-%d", k.key.N.BitLen()) }

// Verify implements PublicKey.
func (k *rsaPublicKey) Verify(msg, sig []byte) error {
	digest := sha256.Sum256(msg)
	if rsa.VerifyPKCS1v15(k.key, crypto.SHA256, digest[:], sig) == nil {
		return nil
	}
	if rsa.VerifyPSS(k.key, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil {
		return nil
	}
	return errors.New("rsa signature does not verify (PKCS#1 v1.5 or PSS)")
}

// ParsePrivateKey parses a PEM private key: "PRIVATE KEY" (PKCS#8 Ed25519,
// ECDSA P-256 or RSA), "EC PRIVATE KEY" (SEC 1), or cosign's encrypted
// "ENCRYPTED SIGSTORE PRIVATE KEY" / "ENCRYPTED COSIGN PRIVATE KEY".
//
// password is called only for encrypted keys (it may be nil otherwise). When
// it returns an empty password, the key is tried with the empty password
// (cosign allows it) and ErrPasswordRequired is returned if that fails. A
// password that does not open the key gives ErrWrongPassword.
func ParsePrivateKey(pemBytes []byte, password func() ([]byte, error)) (PrivateKey, error) {
	block, err := decodeSinglePEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	switch block.Type {
	case pemPrivateKey:
		return parsePKCS8(block.Bytes)
	case pemECPrivateKey:
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing EC private key: %w", err)
		}
		return newPrivateKey(k)
	case pemEncryptedSigstore, pemEncryptedCosignOld:
		der, err := decryptPEMBody(block.Bytes, password)
		if err != nil {
			return nil, err
		}
		return parsePKCS8(der)
	default:
		return nil, fmt.Errorf("parsing private key: unsupported PEM type %q", block.Type)
	}
}

func parsePKCS8(der []byte) (PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#8 private key: %w", err)
	}
	return newPrivateKey(k)
}

// newPrivateKey wraps a parsed private key after checking that its public
// half is a key this package verifies with.
func newPrivateKey(k any) (PrivateKey, error) {
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key type %T is not supported", k)
	}
	pub, err := newPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	switch key := k.(type) {
	case ed25519.PrivateKey:
		return &ed25519PrivateKey{key: key, pub: pub}, nil
	case *ecdsa.PrivateKey:
		return &ecdsaPrivateKey{key: key, pub: pub}, nil
	case *rsa.PrivateKey:
		return &rsaPrivateKey{key: key, pub: pub}, nil
	default:
		return nil, fmt.Errorf("private key type %T is not supported", k)
	}
}

// ed25519PrivateKey signs pure Ed25519.
type ed25519PrivateKey struct {
	key ed25519.PrivateKey
	pub PublicKey
}

// Sign implements PrivateKey.
func (k *ed25519PrivateKey) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(k.key, msg), nil }

// Public implements PrivateKey.
func (k *ed25519PrivateKey) Public() PublicKey { return k.pub }

// ecdsaPrivateKey signs ASN.1 ECDSA over SHA-256.
type ecdsaPrivateKey struct {
	key *ecdsa.PrivateKey
	pub PublicKey
}

// Sign implements PrivateKey.
func (k *ecdsaPrivateKey) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("ecdsa signing: %w", err)
	}
	return sig, nil
}

// Public implements PrivateKey.
func (k *ecdsaPrivateKey) Public() PublicKey { return k.pub }

// rsaPrivateKey signs RSA PKCS#1 v1.5 over SHA-256.
type rsaPrivateKey struct {
	key *rsa.PrivateKey
	pub PublicKey
}

// Sign implements PrivateKey.
func (k *rsaPrivateKey) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.key, crypto.SHA256, digest[:])
	if err != nil {
		return nil, fmt.Errorf("rsa signing: %w", err)
	}
	return sig, nil
}

// Public implements PrivateKey.
func (k *rsaPrivateKey) Public() PublicKey { return k.pub }

// GenerateKeyPair makes an Ed25519 key pair. With an empty password the
// private key is a plain PKCS#8 "PRIVATE KEY" PEM; otherwise it is cosign's
// encrypted "ENCRYPTED SIGSTORE PRIVATE KEY" PEM (see EncryptPrivateKey). The
// public key is a PKIX "PUBLIC KEY" PEM.
func GenerateKeyPair(password []byte) (privatePEM, publicPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating ed25519 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding public key: %w", err)
	}
	publicPEM = pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: pubDER})
	if len(password) == 0 {
		return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), publicPEM, nil
	}
	privatePEM, err = EncryptPrivateKey(der, password)
	if err != nil {
		return nil, nil, err
	}
	return privatePEM, publicPEM, nil
}

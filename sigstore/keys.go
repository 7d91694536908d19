package sigstore

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

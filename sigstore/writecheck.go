package sigstore

import (
	"crypto/ed25519"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// CheckSignatureEncoding refuses a signature that no supported key could
// have made, whatever it signed: one that is not 64 bytes (Ed25519), an
// ASN.1 ECDSA P-256 signature, or as long as the modulus of an RSA key of
// 2048 to 8192 bits (a multiple of 64 bytes). It catches junk before it is
// stored where it can never verify; only a public key can tell more.
func CheckSignatureEncoding(sig []byte) error {
	switch {
	case len(sig) == ed25519.SignatureSize:
		return nil
	case isECDSAP256Signature(sig):
		return nil
	case len(sig) >= minRSABits/8 && len(sig) <= maxRSABits/8 && len(sig)%64 == 0:
		return nil
	}
	return fmt.Errorf("%d bytes are not a signature by any supported key: not 64 bytes (Ed25519), "+
		"not an ASN.1 ECDSA P-256 signature, not 256 to 1024 bytes (RSA)", len(sig))
}

// isECDSAP256Signature reports whether sig is a DER SEQUENCE of two positive
// INTEGERs of at most 32 bytes each (33 with a leading zero), and nothing
// after it.
func isECDSAP256Signature(sig []byte) bool {
	input := cryptobyte.String(sig)
	var inner cryptobyte.String
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() {
		return false
	}
	for range 2 {
		var n cryptobyte.String
		if !inner.ReadASN1(&n, asn1.INTEGER) || len(n) == 0 || len(n) > 33 || n[0]&0x80 != 0 {
			return false
		}
		if len(n) == 33 && n[0] != 0 {
			return false
		}
	}
	return inner.Empty()
}

package sigstore

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/digitorus/pkcs7"
)

// Bounds on what a keyless signature carries for sigstore-go to verify.
//
// sigstore-go checks a bundle's certificates and RFC 3161 timestamps against
// the trusted root, but it uses a key a certificate or timestamp carries
// (to check the timestamp token's signature, or a candidate issuer's
// signature while it builds a chain) before it knows that the key is
// trusted. Go verifies RSA signatures of any size, and one signature under a
// 65536-bit key costs about a tenth of a second: anyone who can push could
// make each bundle cost seconds of CPU. So every certificate a keyless
// signature carries, its own and those inside its timestamps, must have a
// key of a kind and size Fulcio and timestamp authorities issue (RSA of
// minRSABits to maxRSABits, as for keys a policy names, with exponent
// 65537; ECDSA on P-256, P-384 or P-521; Ed25519), a timestamp token has
// one signer, and a bundle holds
// at most maxTimestamps timestamps of at most maxTimestampSize bytes each.
// This is a bound on the input, not a trust decision: a certificate that
// passes it grants nothing.
const (
	maxTimestamps    = 4
	maxTimestampSize = 32 << 10
)

// checkCertificateDER checks that der is one X.509 certificate, the way
// sigstore-go will parse it, with a key within the bounds above.
func checkCertificateDER(der []byte) error {
	if len(der) == 0 {
		return errors.New("empty certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("not an X.509 certificate: %w", err)
	}
	return checkCertificateKey(cert)
}

// checkCertificateKey checks a certificate's key kind and size.
func checkCertificateKey(cert *x509.Certificate) error {
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Errorf("certificate %q has a %d-bit RSA key, outside %d to %d bits", cert.Subject, n, minRSABits, maxRSABits)
		}
		// A large public exponent makes each verification cost as much
		// as a larger key; CAs use 65537.
		if k.E != 65537 {
			return fmt.Errorf("certificate %q has an RSA key with exponent %d, want 65537", cert.Subject, k.E)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("certificate %q has an ECDSA key on an unsupported curve", cert.Subject)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("certificate %q has a %T key, want RSA, ECDSA or Ed25519", cert.Subject, cert.PublicKey)
	}
	return nil
}

// checkTimestampData checks a bundle's timestampVerificationData:
// {"rfc3161Timestamps":[{"signedTimestamp":"<b64 DER>"}...]}, at most
// maxTimestamps of them, each a TimeStampResp of at most maxTimestampSize
// bytes whose token's certificates pass checkCertificateKey. The
// timestamps are not verified here; sigstore-go does that.
func checkTimestampData(raw json.RawMessage, what string) error {
	obj, err := decodeObject(raw, what, nil, "rfc3161Timestamps")
	if err != nil {
		return err
	}
	list, ok := obj["rfc3161Timestamps"]
	if !ok {
		return nil
	}
	v, err := parseJSON(list)
	if err != nil {
		return fmt.Errorf("%s.rfc3161Timestamps: %w", what, err)
	}
	if v.kind() != jsonArray {
		return fmt.Errorf("%s.rfc3161Timestamps: not a JSON array", what)
	}
	n := 0
	for item := range v.elements() {
		w := fmt.Sprintf("%s.rfc3161Timestamps[%d]", what, n)
		if n++; n > maxTimestamps {
			return fmt.Errorf("%s.rfc3161Timestamps: more than %d timestamps", what, maxTimestamps)
		}
		ts, err := decodeObject(json.RawMessage(item), w, []string{"signedTimestamp"})
		if err != nil {
			return err
		}
		der, err := decodeBase64Field(ts["signedTimestamp"], w+".signedTimestamp")
		if err != nil {
			return err
		}
		if err := checkTimestampResponse(der); err != nil {
			return fmt.Errorf("%s.signedTimestamp: %w", w, err)
		}
	}
	return nil
}

// timeStampResp is RFC 3161's TimeStampResp, its token left as DER.
type timeStampResp struct {
	Status         asn1.RawValue
	TimeStampToken asn1.RawValue `asn1:"optional"`
}

// checkTimestampResponse parses an RFC 3161 response far enough to bound
// the certificates its token carries, without verifying anything.
func checkTimestampResponse(der []byte) error {
	if len(der) == 0 || len(der) > maxTimestampSize {
		return fmt.Errorf("%d bytes, want 1 to %d", len(der), maxTimestampSize)
	}
	var resp timeStampResp
	rest, err := asn1.Unmarshal(der, &resp)
	if err != nil {
		return fmt.Errorf("not an RFC 3161 response: %w", err)
	}
	if len(rest) > 0 {
		return errors.New("data after the RFC 3161 response")
	}
	if len(resp.TimeStampToken.FullBytes) == 0 {
		return errors.New("RFC 3161 response without a token")
	}
	p7, err := pkcs7.Parse(resp.TimeStampToken.FullBytes)
	if err != nil {
		return fmt.Errorf("RFC 3161 token: %w", err)
	}
	if len(p7.Signers) != 1 {
		return fmt.Errorf("RFC 3161 token has %d signers, want 1", len(p7.Signers))
	}
	if len(p7.Certificates) > maxChainCertificates {
		return fmt.Errorf("RFC 3161 token carries %d certificates, more than %d", len(p7.Certificates), maxChainCertificates)
	}
	for _, c := range p7.Certificates {
		if err := checkCertificateKey(c); err != nil {
			return fmt.Errorf("RFC 3161 token: %w", err)
		}
	}
	return nil
}

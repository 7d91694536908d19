package sigstore

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Format names how a signature artifact is stored in the registry.
type Format string

const (
	// FormatSimpleSigning is a layer of the "sha256-<hex>.sig" manifest: the
	// layer blob is a simple-signing payload, the signature is the base64
	// annotation dev.cosignproject.cosign/signature.
	FormatSimpleSigning Format = "simplesigning"
	// FormatBundle is a Sigstore bundle v0.3 whose DSSE envelope wraps an
	// in-toto statement, stored as an OCI 1.1 referrer of the image.
	FormatBundle Format = "bundle"
	// FormatAttestation is a layer of the "sha256-<hex>.att" manifest
	// (cosign's legacy attestations): the layer blob is a DSSE envelope
	// whose payload is an in-toto statement.
	FormatAttestation Format = "dsse"
)

// Signature is one signature found for an image digest, reduced to what a
// verifier needs. It is format-agnostic: a key verifies Sig over Signed, and
// Claims tells what the signed document asserts.
type Signature struct {
	Format Format
	// Signed is exactly the message the signature covers: the payload for
	// simple signing, the DSSE pre-authentication encoding for bundles.
	Signed []byte
	// Sig is the raw signature (ASN.1 for ECDSA, 64 bytes for Ed25519).
	Sig []byte
	// Payload is the signed document: a simple-signing payload or an in-toto
	// statement. For simple signing it equals Signed.
	Payload []byte
	// PayloadType is the DSSE payload type ("" for simple signing).
	PayloadType string
	// Bundle is the raw bundle JSON for FormatBundle, the raw DSSE envelope
	// JSON for FormatAttestation, nil otherwise.
	Bundle []byte
	// Certificate is the DER signing certificate of a keyless signature:
	// the dev.sigstore.cosign/certificate annotation of a .sig or .att
	// layer, or the certificate of a bundle's verificationMaterial. nil for
	// a signature made with a key. It grants nothing by itself: Entity
	// hands it to the verification of a trusted root.
	Certificate []byte
	// Chain holds the DER certificates of the dev.sigstore.cosign/chain
	// annotation (intermediates, then root), or of a bundle's
	// x509CertificateChain after its leaf.
	Chain [][]byte
	// RekorBundle is the raw dev.sigstore.cosign/bundle annotation of a
	// .sig or .att layer: a Rekor entry with its SignedEntryTimestamp.
	RekorBundle []byte
	// Where says where the signature was found, for messages
	// ("sha256-<hex>.sig layer 2", "referrer sha256:...").
	Where string
	// Err is set when the artifact was found but is malformed (bad base64,
	// payload not matching its descriptor, undecodable bundle). Such a
	// signature never verifies; it is kept so that a refusal can say why.
	Err error
}

// Claims is what a signed document asserts about an image.
type Claims struct {
	// Digests are the image digests the document binds: the simple-signing
	// docker-manifest-digest, or the in-toto statement's sha256 subjects.
	Digests []v1.Hash
	// Reference is the simple-signing docker-reference; "" for formats that
	// carry none (in-toto statements bind digests only).
	Reference string
	// Annotations are, for each digest of Digests that has any, the
	// annotations the document gives that digest: the simple-signing
	// "optional" values as strings, or the annotations of the in-toto
	// subjects that name it. One subject's annotations never count for
	// another subject's digest.
	Annotations map[v1.Hash]map[string]string
	// PredicateType is the in-toto statement's predicateType:
	// CosignPredicateType for a cosign signature, anything else for an
	// attestation; "" for simple signing.
	PredicateType string
	// Predicate is the statement's predicate, raw JSON (checked free of
	// duplicate keys); nil for simple signing.
	Predicate []byte
}

// Keyless reports whether the signature carries a certificate, and so is
// verified against a trusted root rather than a key.
func (s Signature) Keyless() bool { return len(s.Certificate) > 0 }

// AnnotationsOf returns the annotations the document gives digest d.
func (c Claims) AnnotationsOf(d v1.Hash) map[string]string {
	return c.Annotations[d]
}

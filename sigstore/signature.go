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
	// Bundle is the raw bundle JSON for FormatBundle, nil otherwise.
	Bundle []byte
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
}

// AnnotationsOf returns the annotations the document gives digest d.
func (c Claims) AnnotationsOf(d v1.Hash) map[string]string {
	return c.Annotations[d]
}

package sigstore

import (
	"context"
)

// cosign's legacy attestations.
//
// "cosign attest" without the bundle format stores an attestation as a
// layer of the "sha256-<hex>.att" manifest, an image manifest like the
// .sig one:
//
//	{"mediaType":"application/vnd.dsse.envelope.v1+json","digest":...,"size":...,
//	 "annotations":{"predicateType":"https://slsa.dev/provenance/v1",
//	                "dev.cosignproject.cosign/signature":"",
//	                "dev.sigstore.cosign/certificate":"<PEM>", (keyless)
//	                "dev.sigstore.cosign/chain":"<PEM>",
//	                "dev.sigstore.cosign/bundle":"<Rekor bundle JSON>"}}
//
// whose blob is a DSSE envelope over an in-toto statement:
//
//	{"payloadType":"application/vnd.in-toto+json","payload":"<b64>",
//	 "signatures":[{"keyid":"","sig":"<b64>"}]}
//
// The predicateType annotation is a hint nobody signed and is not read:
// the predicate type is the statement's. The empty signature annotation
// is ignored: the signature is the envelope's. AttestationTag and
// AttestationLayerMediaType (attest.go) name the tag and the layer type.

// SignatureFromEnvelope reduces a DSSE envelope (the blob of a .att layer)
// to a Signature of FormatAttestation: Sig is its signature, Payload the
// decoded payload, PayloadType its type, Signed = PAE(PayloadType,
// Payload), Bundle = raw. It never fails: a malformed envelope gives a
// Signature with Err set (wrapping ErrInvalidArtifact).
//
// Parsing is as strict as for a bundle's envelope: no duplicate or unknown
// keys, exactly one signature (its keyid is an unauthenticated hint and is
// ignored), base64 as protobuf JSON reads it.
func SignatureFromEnvelope(raw []byte, where string) Signature {
	s := Signature{Format: FormatAttestation, Bundle: raw, Where: where}
	env, err := parseEnvelope(raw)
	if err != nil {
		s.Err = invalidArtifact(err)
		return s
	}
	s.Payload = env.payload
	s.PayloadType = env.payloadType
	s.Sig = env.sig
	s.Signed = PAE(env.payloadType, env.payload)
	return s
}

// attestation reads one .att layer: its keyless annotations, if any, and
// its envelope blob, checked against the descriptor.
func (f *Fetcher) attestation(ctx context.Context, repo, where string, l Descriptor) (Signature, error) {
	s := Signature{Format: FormatAttestation, Where: where}
	if l.MediaType != AttestationLayerMediaType {
		s.Err = invalidf("layer media type %q, want %q", l.MediaType, AttestationLayerMediaType)
		return s, nil
	}
	k, err := parseKeylessAnnotations(l.Annotations)
	if err != nil {
		s.Err = err
		return s, nil
	}
	raw, err := f.verifiedBlob(ctx, repo, l, MaxAttestationSize)
	if err != nil {
		return abortOrKeep(s, err)
	}
	s = SignatureFromEnvelope(raw, where)
	if s.Err == nil {
		s.Certificate, s.Chain, s.RekorBundle = k.certificate, k.chain, k.rekorBundle
	}
	return s, nil
}

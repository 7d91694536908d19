// Package sigstore owns the signature format: keys, simple-signing payloads,
// Sigstore bundles (DSSE over in-toto statements), legacy attestations (DSSE
// envelopes under the .att tag), Sigstore trusted roots, the tag and
// referrer conventions that locate signatures in an OCI registry, and
// reading and writing those signature artifacts over the distribution API.
//
// It makes no trust decisions: it reduces every artifact it finds to a
// Signature (the exact bytes signed, the signature, the signed document,
// and for keyless signatures the certificate, chain and Rekor entry) and
// leaves to package verifier which keys, identities and claims are
// acceptable.
//
// A key hint in a bundle grants nothing: only the keys a caller configures
// count. A keyless signature's certificate, transparency-log entry and
// timestamps are handed, unjudged, to sigstore-go by Signature.Entity (a
// legacy .sig or .att layer's annotations are assembled into the bundle
// sigstore cosign would make of them); sigstore-go verifies them offline
// against a TrustedRoot, which the verifier package does.
package sigstore

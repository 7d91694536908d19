// Package sigstore owns the signature format: keys, simple-signing payloads,
// Sigstore bundles (DSSE over in-toto statements), the tag and referrer
// conventions that locate signatures in an OCI registry, and reading and
// writing those signature artifacts over the distribution API.
//
// It makes no trust decisions: it reduces every artifact it finds to a
// Signature (the exact bytes signed, the signature, the signed document) and
// leaves to package verifier which keys and claims are acceptable.
//
// What a bundle carries besides its DSSE envelope (the public key hint,
// certificates, transparency-log entries and timestamps) is kept as data and
// grants no trust: only the keys a caller configures count. Transparency-log
// inclusion proofs and signed entry timestamps are not checked, because the
// product works without network access beyond the registry.
package sigstore

// Package verifier decides whether an image digest may be served: it matches
// the repository to a policy, verifies the digest's signatures against the
// policy's keys, checks what the signed documents claim (digest, identity,
// annotations), applies the threshold, and caches the decision.
//
// It reads signatures through the small Source interface and knows nothing
// of HTTP; the proxy and the CLI both call it.
package verifier

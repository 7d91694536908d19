// Package verifier decides whether an image digest may be served: it matches
// the repository to a policy, verifies the digest's signatures against the
// policy's keys and keyless identities (certificates verified offline by
// sigstore-go against a Sigstore trusted root), checks what the signed
// documents claim (digest, identity, annotations), applies the threshold,
// checks the in-toto attestations the policy requires, and caches the
// decision.
//
// It reads signatures through the small Source interface and knows nothing
// of HTTP; the proxy and the CLI both call it.
//
// # Identity
//
// Under the default identity rule (IdentityRepository) a simple-signing
// payload's docker-reference must name the repository the image is pulled
// from, both normalized (NormalizeReference), after an optional Remap with
// the semantics of containers/image's remapIdentity. An empty or malformed
// reference fails. Sigstore bundles carry no reference: they bind the digest
// only, and pass the identity rule. Their scope is the repository they are
// found in, since signatures are looked up and decisions cached per registry
// and repository; but a bundle copied, with its image, into another
// repository under the same keys verifies there too. Where that matters, use
// the simple-signing format or separate keys per repository.
//
// # Indexes
//
// With ChildrenInherit (the default), an admitted index admits the manifests
// it lists, in the same repository, until the index's own decision expires;
// a child index admitted that way passes admission on to its own children
// when it is pulled. ChildrenRequireSigned makes every child carry its own
// signatures. A signed child never admits its index.
package verifier

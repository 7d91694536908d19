// Package proxy is a registry proxy that speaks the OCI distribution API
// and serves only manifests whose digest a trusted key signed.
//
// Docker, containerd, podman and skopeo pull through it as a mirror. Every
// manifest GET and HEAD, by tag or by digest, is fetched upstream with GET,
// hashed, decided on by package verifier for that digest, and served as
// exactly the bytes that were hashed. A tag that moves upstream after the
// check cannot change the response; a digest request whose upstream bytes
// hash differently is refused (502); upstream's Docker-Content-Digest is
// never trusted. Blobs, tags lists, referrers and the /v2/ ping are
// streamed through unchanged (Range requests, redirects and 401 challenges
// included); writes are refused with 405 UNSUPPORTED.
//
// # Choosing the upstream
//
// A request names its upstream with ?ns=<registry> (containerd's mirror
// parameter), or with a first path component equal to a configured
// upstream's registry (/v2/127.0.0.1:5000/prod/app/manifests/v1), which is
// stripped before forwarding; otherwise the default upstream serves it. An
// ns that is not configured is refused (404 NAME_UNKNOWN), never sent to
// another upstream. Repository names are checked as sent, still
// percent-encoded: %2F, "..", "//" and upper case are 400 NAME_INVALID.
//
// # Answers
//
//   - 403 DENIED: the verifier refused the digest; the message names the
//     image, the digest and the reason.
//   - 404 MANIFEST_UNKNOWN (or upstream's own 404 body): upstream has no such
//     manifest; no signature lookup is made.
//   - 401 with upstream's WWW-Authenticate, 429 with Retry-After, other 4xx:
//     upstream's answer, passed back.
//   - 502 MANIFEST_INVALID: upstream sent something the proxy will not vouch
//     for: content whose hash is not the digest asked for, a manifest over
//     4 MiB, invalid JSON, a document whose mediaType differs from its
//     Content-Type, a document that is both manifest and index
//     (GHSA-qq97-vm5h-rrhg), duplicate or case-variant keys.
//   - 502 / 504 UNAVAILABLE: upstream unreachable, 5xx or truncated / did not
//     answer in time; 503 TOOMANYREQUESTS: a signature lookup was rate
//     limited. None of these is cached.
//
// # Signature artifacts
//
// Clients such as cosign read signature manifests through the proxy, so it
// must serve them, yet every manifest it serves is checked. The rule is by
// content, never by tag name: an OCI or Docker schema 2 image manifest
// (never schema 1, whose clients run fsLayers) whose layers are all
// simple-signing payloads (application/vnd.dev.cosign.simplesigning.v1+json)
// or Sigstore bundles (application/vnd.dev.sigstore.bundle.v0.3+json), and
// whose layer blobs, read once when the manifest is first served, are each
// a JSON object of at most 64 KiB matching its descriptor, holds nothing a
// runtime can run; so does an OCI index or Docker manifest list (the
// referrers tag schema) whose entries all declare a signature artifactType,
// since each entry is gated on its own when pulled. Either is admitted
// without signatures of its own, in repositories that a policy covers (or
// with defaultPolicy allow). A media
// type is only a label, so a tar layer labelled as a payload fails the
// read; that manifest, like any other (a runnable image tagged
// "sha256-<hex>.sig" included), is verified like every image.
//
// # Credentials and caching
//
// A client's Authorization header goes to its own upstream only: manifest
// fetches that are redirected to another origin (scheme, host and port)
// lose it, and the signature lookups made on the client's behalf carry it
// only to that upstream. Decisions are cached by package verifier (per
// upstream, repository, digest and policy fingerprint). Verified manifest
// bytes are kept in a small LRU, bounded by total size, keyed also by a
// SHA-256 of the client's Authorization header, and served from memory on
// a request by digest: bytes fetched with one client's credentials never
// reach another client.
//
// Metrics (Prometheus) are served at /metrics on the listen address.
package proxy

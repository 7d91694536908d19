package verifier

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// Source finds the signatures stored for a digest in one repository.
//
// An error means the signatures could not be read (upstream unreachable,
// 5xx, timeout) and no decision can be made; it is never cached. An error
// that wraps sigstore.ErrInvalidArtifact is a malformed or oversized
// signature artifact: a reason to refuse, not an outage.
type Source interface {
	Signatures(ctx context.Context, repository string, digest v1.Hash) ([]sigstore.Signature, error)
}

// Image names the digest a decision is about.
type Image struct {
	// Registry is the registry name clients use, e.g. "127.0.0.1:5000" or
	// "index.docker.io".
	Registry string
	// Repository is the repository within it, e.g. "library/alpine".
	Repository string
	// Digest is the hash of the manifest bytes that will be served.
	Digest v1.Hash
}

// String is "<registry>/<repository>@<digest>".
func (i Image) String() string {
	return i.Registry + "/" + i.Repository + "@" + i.Digest.String()
}

// Reason says why a digest was refused or how it was admitted.
type Reason string

const (
	ReasonVerified         Reason = "verified"
	ReasonParent           Reason = "admitted by a verified index"
	ReasonAllowed          Reason = "allowed by policy without a check"
	ReasonNoSignatures     Reason = "no signatures"
	ReasonUntrusted        Reason = "no signature by a trusted key"
	ReasonDigestMismatch   Reason = "digest mismatch"
	ReasonIdentityMismatch Reason = "identity mismatch"
	ReasonAnnotations      Reason = "annotation mismatch"
	ReasonBelowThreshold   Reason = "below threshold"
	ReasonInvalid          Reason = "invalid signature artifact"
	ReasonNoPolicy         Reason = "no policy matches"
)

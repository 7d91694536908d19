package verifier

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// Source reads what a decision needs from the registry an image is in.
// *sigstore.Fetcher implements it.
type Source interface {
	// Signatures finds the signatures stored for a digest in one
	// repository. A source or artifact that is malformed comes back as a
	// Signature with Err set. An error means some signatures could not be
	// read (upstream unreachable, 5xx, timeout); the signatures returned
	// with it were read from the other sources. The verifier then admits on
	// those if they suffice and otherwise makes no decision; it caches
	// nothing on an error. An error that wraps sigstore.ErrInvalidArtifact
	// alone is a refusal (ReasonInvalid), not an outage. The source may
	// stop reading once enough says the signatures read so far suffice.
	SignaturesUntil(ctx context.Context, repository string, digest v1.Hash, enough sigstore.Enough) ([]sigstore.Signature, error)
	// Attestations finds the legacy attestations (the .att tag) stored
	// for a digest in one repository; bundle attestations come with
	// SignaturesUntil. Errors are as for SignaturesUntil. It is only
	// called for policies that require attestations.
	Attestations(ctx context.Context, repository string, digest v1.Hash) ([]sigstore.Signature, error)
	// Blob returns the blob d describes in repository, at most limit
	// bytes, checked against d. Errors are as for Signatures.
	Blob(ctx context.Context, repository string, d sigstore.Descriptor, limit int64) ([]byte, error)
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
	ReasonVerified          Reason = "verified"
	ReasonSignatureArtifact Reason = "signature artifact (no runnable content)"
	ReasonParent            Reason = "admitted by a verified index"
	ReasonAllowed           Reason = "allowed by policy without a check"
	ReasonNoSignatures      Reason = "no signatures"
	ReasonUntrusted         Reason = "no signature by a trusted key"
	ReasonDigestMismatch    Reason = "digest mismatch"
	ReasonIdentityMismatch  Reason = "identity mismatch"
	ReasonAnnotations       Reason = "annotation mismatch"
	ReasonBelowThreshold    Reason = "below threshold"
	ReasonInvalid           Reason = "invalid signature artifact"
	ReasonNoPolicy          Reason = "no policy matches"
	// Keyless refusals. Their Detail starts with the reason.
	ReasonCertificateIdentity Reason = "certificate identity mismatch"
	ReasonNoTransparencyLog   Reason = "no transparency log entry"
	ReasonCertificateTime     Reason = "certificate not valid at log time"
	ReasonKeyless             Reason = "keyless verification failed"
	// Attestation refusals. Their Detail starts with the reason.
	ReasonAttestationMissing Reason = "attestation missing"
	ReasonPredicate          Reason = "predicate condition failed"
)

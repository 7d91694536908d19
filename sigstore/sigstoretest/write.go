package sigstoretest

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/sigstore"
)

// WriteSignatureBundle stores a signature bundle (SignatureBundle) for the
// image digest in repo as cosign v3 does, with sigstore.WriteBundle: an OCI
// 1.1 referrer manifest (artifactType sigstore.BundleMediaType, the OCI
// empty config, one bundle layer, subject the image's descriptor as the
// registry reports it, annotations dev.sigstore.bundle.content=dsse-envelope
// and dev.sigstore.bundle.predicateType=https://sigstore.dev/cosign/sign/v1)
// pushed by digest, and, when the registry has no referrers API
// (CNCF distribution 2.8 has none), its entry in the OCI index at the
// referrers tag "sha256-<hex>". The image must be in repo. The bundle is
// written as given, so that tests can store broken ones.
func WriteSignatureBundle(ctx context.Context, repo name.Repository, digest v1.Hash, bundle []byte, opts ...remote.Option) error {
	return writeReferrer(ctx, repo, digest, bundle, sigstore.WriteBundle, opts)
}

// WriteAttestationBundle stores an attestation bundle (AttestationBundle)
// for the image digest in repo, as WriteSignatureBundle stores a signature
// bundle but with the attestation's predicate type in the manifest's
// dev.sigstore.bundle.predicateType annotation, as cosign v3's attest
// does, with sigstore.WriteAttestationBundle. The bundle must hold an
// attestation of digest.
func WriteAttestationBundle(ctx context.Context, repo name.Repository, digest v1.Hash, bundle []byte, opts ...remote.Option) error {
	return writeReferrer(ctx, repo, digest, bundle, sigstore.WriteAttestationBundle, opts)
}

// writeReferrer reads the descriptor of the image digest in repo and
// stores bundle as its referrer with write (sigstore.WriteBundle or
// sigstore.WriteAttestationBundle).
func writeReferrer(ctx context.Context, repo name.Repository, digest v1.Hash, bundle []byte,
	write func(context.Context, name.Digest, v1.Descriptor, []byte, ...remote.Option) error, opts []remote.Option) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	d := repo.Digest(digest.String())
	subject, err := remote.Head(d, append(slices.Clip(opts), remote.WithContext(ctx))...)
	if err != nil {
		return fmt.Errorf("sigstoretest: reading the descriptor of %s: %w", d, err)
	}
	if err := write(ctx, d, *subject, bundle, opts...); err != nil {
		return fmt.Errorf("sigstoretest: %w", err)
	}
	return nil
}

// WriteSimpleSigning appends one layer to the "sha256-<hex>.sig" manifest
// of the image digest in repo, as cosign's legacy sign does: media type
// sigstore.SimpleSigningMediaType, blob payload, the annotations given
// (SimpleSigningLayer's), written as given. Earlier layers are kept; none
// yet starts an OCI image manifest with an OCI config, as cosign does.
//
// It reads the manifest and writes it back: two writers of the same tag at
// once may drop one of the layers, so tests write one at a time (the
// sigstore package's AppendSignature keeps layers against concurrent
// writers, but writes no keyless annotations).
func WriteSimpleSigning(ctx context.Context, repo name.Repository, digest v1.Hash, payload []byte, annotations map[string]string, opts ...remote.Option) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	return appendLayer(ctx, repo.Tag(sigstore.SignatureTag(digest)), sigstore.SimpleSigningMediaType, payload, annotations, opts)
}

// WriteAttestation appends one layer to the "sha256-<hex>.att" manifest of
// the image digest in repo, as cosign's legacy attest does: media type
// sigstore.AttestationLayerMediaType, blob envelope, the annotations given
// (AttestationEnvelope's or KeyAttestationEnvelope's), written as given.
// As WriteSimpleSigning, it is not for concurrent writers of one tag.
func WriteAttestation(ctx context.Context, repo name.Repository, digest v1.Hash, envelope []byte, annotations map[string]string, opts ...remote.Option) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	return appendLayer(ctx, repo.Tag(sigstore.AttestationTag(digest)), sigstore.AttestationLayerMediaType, envelope, annotations, opts)
}

// appendLayer reads the image manifest at tag (none: an empty OCI image),
// appends a layer of blob with annotations and pushes the result.
func appendLayer(ctx context.Context, tag name.Tag, mediaType types.MediaType, blob []byte, annotations map[string]string, opts []remote.Option) error {
	if len(blob) == 0 {
		return fmt.Errorf("sigstoretest: appending to %s: empty blob", tag)
	}
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	desc, err := remote.Get(tag, opts...)
	switch {
	case err == nil:
		if !desc.MediaType.IsImage() {
			return fmt.Errorf("sigstoretest: %s holds a %s, want an image manifest", tag, desc.MediaType)
		}
		if base, err = desc.Image(); err != nil {
			return fmt.Errorf("sigstoretest: reading %s: %w", tag, err)
		}
	case !sigstore.IsNotFound(err):
		return fmt.Errorf("sigstoretest: reading %s: %w", tag, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(blob, mediaType),
		Annotations: annotations,
	})
	if err != nil {
		return fmt.Errorf("sigstoretest: appending to %s: %w", tag, err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return fmt.Errorf("sigstoretest: pushing %s: %w", tag, err)
	}
	return nil
}

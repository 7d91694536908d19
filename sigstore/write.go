package sigstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations cosign puts on a bundle artifact manifest.
const (
	bundleContentAnnotation       = "dev.sigstore.bundle.content"
	bundlePredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
)

// AppendSignature adds a simple-signing signature of the image d to the
// "sha256-<hex>.sig" tag of d's repository: it reads the manifest there
// (none yet starts an empty OCI image manifest), appends one layer whose
// blob is payload and whose annotation is the base64 sig, and pushes the new
// manifest after its blobs, so a failed push leaves the old one in place.
// Earlier layers are kept as they were. A layer with the same payload and
// signature already there is not added again: added is false. The image's
// own manifest and tags are never written.
//
// The context given wins over any remote.WithContext in opts.
func AppendSignature(ctx context.Context, d name.Digest, payload, sig []byte, opts ...remote.Option) (added bool, err error) {
	h, err := parseDigest(d.DigestStr())
	if err != nil {
		return false, fmt.Errorf("signing %s: %w", d, err)
	}
	if len(payload) == 0 || len(payload) > MaxPayloadSize {
		return false, fmt.Errorf("signing %s: payload is %d bytes, want 1 to %d", d, len(payload), MaxPayloadSize)
	}
	if len(sig) == 0 {
		return false, fmt.Errorf("signing %s: empty signature", d)
	}
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	tag := d.Context().Tag(SignatureTag(h))

	base, err := signatureImage(tag, opts)
	if err != nil {
		return false, err
	}
	m, err := base.Manifest()
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", tag, err)
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	payloadDigest, _, err := v1.SHA256(bytes.NewReader(payload))
	if err != nil {
		return false, err
	}
	for _, l := range m.Layers {
		if l.Digest == payloadDigest && l.Annotations[SignatureAnnotation] == b64 {
			return false, nil
		}
	}
	if len(m.Layers) >= MaxSignatures {
		return false, fmt.Errorf("%s already holds %d signatures, the most a verifier reads (MaxSignatures)", tag, len(m.Layers))
	}

	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: b64},
	})
	if err != nil {
		return false, fmt.Errorf("appending to %s: %w", tag, err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return false, fmt.Errorf("pushing %s: %w", tag, err)
	}
	return true, nil
}

// signatureImage reads the .sig manifest at tag, or returns an empty OCI
// image manifest when there is none.
func signatureImage(tag name.Tag, opts []remote.Option) (v1.Image, error) {
	desc, err := remote.Get(tag, opts...)
	if isNotFound(err) {
		return emptySignatureImage(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", tag, err)
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%s holds %s, want an image manifest: %w", tag, desc.MediaType, ErrInvalidArtifact)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", tag, err)
	}
	return img, nil
}

// emptySignatureImage is an OCI image manifest with an OCI image config and
// no layers, the start of a new .sig manifest.
func emptySignatureImage() v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

// isNotFound reports whether err says that the manifest or the repository
// does not exist.
func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, e := range terr.Errors {
		if e.Code == transport.NameUnknownErrorCode || e.Code == transport.ManifestUnknownErrorCode {
			return true
		}
	}
	return false
}

// WriteBundle stores a Sigstore bundle for the image d as an OCI 1.1
// referrer: an artifact manifest (artifactType BundleMediaType, the OCI
// empty config, one bundle layer) whose subject is the image's descriptor,
// pushed by digest. When the registry has no referrers API,
// go-containerregistry adds it to the referrers tag's index
// ("sha256-<hex>"). The image's own manifest and tags are never written.
//
// The context given wins over any remote.WithContext in opts.
func WriteBundle(ctx context.Context, d name.Digest, subject v1.Descriptor, bundle []byte, opts ...remote.Option) error {
	h, err := parseDigest(d.DigestStr())
	if err != nil {
		return fmt.Errorf("attaching bundle to %s: %w", d, err)
	}
	if subject.Digest != h || subject.Size <= 0 || subject.MediaType == "" {
		return fmt.Errorf("attaching bundle to %s: subject %s (%d bytes, %q) does not describe it", d, subject.Digest, subject.Size, subject.MediaType)
	}
	if len(bundle) == 0 || len(bundle) > MaxPayloadSize {
		return fmt.Errorf("attaching bundle to %s: bundle is %d bytes, want 1 to %d", d, len(bundle), MaxPayloadSize)
	}
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	repo := d.Context()

	config := static.NewLayer([]byte("{}"), emptyMediaType)
	layer := static.NewLayer(bundle, BundleMediaType)
	for _, blob := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, blob, opts...); err != nil {
			return fmt.Errorf("pushing bundle blobs to %s: %w", repo, err)
		}
	}
	raw, err := bundleManifest(config, layer, subject)
	if err != nil {
		return err
	}
	md, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if err := remote.Put(repo.Digest(md.String()), rawManifest(raw), opts...); err != nil {
		return fmt.Errorf("pushing bundle manifest for %s: %w", d, err)
	}
	return nil
}

// bundleManifest serializes the artifact manifest of a bundle.
func bundleManifest(config, layer v1.Layer, subject v1.Descriptor) ([]byte, error) {
	configDesc, err := blobDescriptor(config)
	if err != nil {
		return nil, err
	}
	layerDesc, err := blobDescriptor(layer)
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  BundleMediaType,
		Config:        configDesc,
		Layers:        []v1.Descriptor{layerDesc},
		Annotations: map[string]string{
			bundleContentAnnotation:       "dsse-envelope",
			bundlePredicateTypeAnnotation: CosignPredicateType,
		},
		Subject: &v1.Descriptor{MediaType: subject.MediaType, Size: subject.Size, Digest: subject.Digest},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding bundle manifest: %w", err)
	}
	return raw, nil
}

// blobDescriptor is the media type, size and digest of a static blob.
func blobDescriptor(l v1.Layer) (v1.Descriptor, error) {
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	digest, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: digest}, nil
}

// rawManifest is an OCI image manifest pushed as the exact bytes given.
type rawManifest []byte

// RawManifest implements remote.Taggable.
func (r rawManifest) RawManifest() ([]byte, error) { return r, nil }

// MediaType is the Content-Type of the push.
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

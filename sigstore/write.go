package sigstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

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

// Bounds of the read-back loop that keeps a signature in a manifest other
// writers may replace at the same time (the .sig manifest, the referrers
// tag's index). Registries offer no conditional write, so a read-modify-write
// can be undone by a writer that read before it and writes after it.
const (
	// keepAttempts bounds how often one signature is (re)written.
	keepAttempts = 12
	// minSettle is the least time between a write and the read that
	// confirms it: long enough for a writer that read the old manifest
	// just before the write to have written its own.
	minSettle = 200 * time.Millisecond
	// maxSettle caps the settle time, however slow the registry.
	maxSettle = 5 * time.Second
)

// ErrNotKept says that a signature was written but concurrent writers kept
// replacing the manifest that holds it, so it could not be kept there.
var ErrNotKept = errors.New("signature could not be kept")

// AppendSignature adds a simple-signing signature of the image d to the
// "sha256-<hex>.sig" tag of d's repository: it reads the manifest there
// (none yet starts an empty OCI image manifest), appends one layer whose
// blob is payload and whose annotation is the base64 sig, and pushes the new
// manifest after its blobs, so a failed push leaves the old one in place.
// Earlier layers are kept as they were. A layer with the same payload and
// signature already there is not added again: added is false. The image's
// own manifest and tags are never written.
//
// Several signers may append at once. Registries have no conditional write,
// so each append is checked: between its blobs and its manifest push the tag
// must still be the manifest the append was based on (else it is based again
// on the new one),
// and after the push the manifest is read back after a settle time (twice
// the time the append took, at least minSettle, with jitter); a signature
// another writer's push dropped is appended again. After keepAttempts pushes
// that did not keep it, the error wraps ErrNotKept. With added true the
// signature was in the manifest at the read-back.
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
	layer := static.NewLayer(payload, SimpleSigningMediaType)
	b64 := base64.StdEncoding.EncodeToString(sig)
	payloadDigest, err := layer.Digest()
	if err != nil {
		return false, err
	}

	has := func(m *v1.Manifest) bool { return hasLayer(m, payloadDigest, b64) }
	return appendLayer(ctx, tag, layer, map[string]string{SignatureAnnotation: b64}, has, "signatures", opts)
}

// appendLayer adds layer, with annotations, to the image manifest at tag
// (none yet starts an empty OCI image manifest) with keep, since other
// writers may replace that manifest at the same time: the .sig and .att
// manifests, which AppendSignature and AppendAttestation write. has reports
// whether a manifest already holds the entry, which is then not added
// again (appended false). A manifest that holds MaxSignatures layers
// already is not added to: what names its entries in that error. opts must
// carry the context.
func appendLayer(ctx context.Context, tag name.Tag, layer v1.Layer, annotations map[string]string,
	has func(*v1.Manifest) bool, what string, opts []remote.Option) (appended bool, err error) {
	return keep(ctx, tag, func() (v1.Hash, *push, error) {
		base, baseDigest, err := signatureImage(tag, opts)
		if err != nil {
			return v1.Hash{}, nil, err
		}
		m, err := base.Manifest()
		if err != nil {
			return v1.Hash{}, nil, fmt.Errorf("reading %s: %w", tag, err)
		}
		if has(m) {
			return baseDigest, nil, nil
		}
		if len(m.Layers) >= MaxSignatures {
			return v1.Hash{}, nil, fmt.Errorf("%s already holds %d %s, the most a verifier reads (MaxSignatures)", tag, len(m.Layers), what)
		}
		img, err := mutate.Append(base, mutate.Addendum{Layer: layer, Annotations: annotations})
		if err != nil {
			return v1.Hash{}, nil, fmt.Errorf("appending to %s: %w", tag, err)
		}
		config, err := configLayer(img)
		if err != nil {
			return v1.Hash{}, nil, fmt.Errorf("appending to %s: %w", tag, err)
		}
		return baseDigest, &push{
			// The blobs go first, so that a failed push leaves the old
			// manifest in place; they are pushed again on each attempt, as
			// a concurrent upload of the same blob may have failed.
			blobs: func() error {
				for _, l := range []v1.Layer{layer, config} {
					if err := remote.WriteLayer(tag.Context(), l, opts...); err != nil {
						return err
					}
				}
				return nil
			},
			manifest: func() error { return remote.Put(tag, img, opts...) },
		}, nil
	}, func() (v1.Hash, error) {
		_, h, err := signatureImage(tag, opts)
		return h, err
	})
}

// push is one write of a manifest that keep makes: its blobs (may be nil),
// then the manifest.
type push struct {
	blobs, manifest func() error
}

// keep adds one entry to the manifest at tag, which other writers may
// replace at the same time, by read-modify-write until a read finds it
// there. next reads the manifest and returns its digest (zero when there is
// none) and a push of it with the entry added, or no push when the entry is
// already there. current returns the digest at tag now. Between the blobs
// and the manifest of each push, the tag must still be the manifest the push
// was based on (else the entry is added again to the new one); after each
// push, the manifest is read again after settleTime. Registry errors that
// concurrent uploads of the same blobs cause are retried. It gives up with
// ErrNotKept after keepAttempts pushes that did not keep the entry. pushed
// reports whether this call pushed what the final read found (false: the
// entry was there already).
func keep(ctx context.Context, tag name.Tag, next func() (v1.Hash, *push, error), current func() (v1.Hash, error)) (pushed bool, err error) {
	pushes, conflicts := 0, 0
	retry := func(err error, step time.Duration) error {
		if err != nil && (!isUploadRace(err) || conflicts >= keepAttempts) {
			return fmt.Errorf("pushing %s: %w", tag, err)
		}
		conflicts++
		return sleepCtx(ctx, jitter(time.Duration(conflicts)*step))
	}
	for {
		start := time.Now()
		base, p, err := next()
		if err != nil {
			return false, err
		}
		if p == nil {
			return pushes > 0, nil
		}
		if pushes >= keepAttempts || conflicts >= keepAttempts {
			return false, fmt.Errorf("%w in %s: concurrent writers replaced it after each of %d pushes, and moved the tag %d times before a push",
				ErrNotKept, tag, pushes, conflicts)
		}
		if p.blobs != nil {
			if err := p.blobs(); err != nil {
				if err := retry(err, 50*time.Millisecond); err != nil {
					return false, err
				}
				continue
			}
		}
		// Narrow the window in which a concurrent writer can be
		// overwritten: from a read just before the manifest push.
		now, err := current()
		if err != nil {
			return false, err
		}
		if now != base {
			if err := retry(nil, 10*time.Millisecond); err != nil {
				return false, err
			}
			continue
		}
		if err := p.manifest(); err != nil {
			if err := retry(err, 50*time.Millisecond); err != nil {
				return false, err
			}
			continue
		}
		pushes++
		if err := sleepCtx(ctx, settleTime(time.Since(start))); err != nil {
			return false, err
		}
	}
}

// isUploadRace reports whether a push failed with an error that a concurrent
// upload of the same blob causes in CNCF distribution: the blob is reported
// unknown or its digest invalid while the other upload commits it.
func isUploadRace(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	for _, e := range te.Errors {
		switch e.Code {
		case transport.ManifestBlobUnknownErrorCode, transport.BlobUnknownErrorCode, transport.DigestInvalidErrorCode,
			transport.BlobUploadUnknownErrorCode, transport.BlobUploadInvalidErrorCode:
			return true
		}
	}
	return false
}

// configLayer is img's config blob, to push it.
func configLayer(img v1.Image) (v1.Layer, error) {
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	return static.NewLayer(raw, m.Config.MediaType), nil
}

// hasLayer reports whether m has a layer with this blob and signature.
func hasLayer(m *v1.Manifest, blob v1.Hash, b64 string) bool {
	for _, l := range m.Layers {
		if l.Digest == blob && l.Annotations[SignatureAnnotation] == b64 {
			return true
		}
	}
	return false
}

// settleTime is how long to wait after a push before reading it back:
// twice what the read-modify-write took (a concurrent writer's takes about
// as long), within [minSettle, maxSettle], plus up to 50% jitter so that
// writers that collided do not collide again.
func settleTime(took time.Duration) time.Duration {
	return jitter(min(max(2*took, minSettle), maxSettle))
}

// jitter returns d plus a random fraction of up to half of it.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/2+1)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// signatureImage reads the .sig manifest at tag and its digest, or returns an
// empty OCI image manifest and the zero digest when there is none.
func signatureImage(tag name.Tag, opts []remote.Option) (v1.Image, v1.Hash, error) {
	desc, err := remote.Get(tag, opts...)
	if IsNotFound(err) {
		return emptySignatureImage(), v1.Hash{}, nil
	}
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading %s: %w", tag, err)
	}
	if !desc.MediaType.IsImage() {
		return nil, v1.Hash{}, fmt.Errorf("%s holds %s, want an image manifest: %w", tag, desc.MediaType, ErrInvalidArtifact)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading %s: %w", tag, err)
	}
	return img, desc.Digest, nil
}

// emptySignatureImage is an OCI image manifest with an OCI image config and
// no layers, the start of a new .sig manifest.
func emptySignatureImage() v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

// IsNotFound reports whether err, from a go-containerregistry remote call,
// says that the manifest or the repository does not exist: a 404, or the
// registry's MANIFEST_UNKNOWN or NAME_UNKNOWN error code.
func IsNotFound(err error) bool {
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
	if _, err := subjectDigest(d, subject); err != nil {
		return fmt.Errorf("attaching bundle to %s: %w", d, err)
	}
	if len(bundle) == 0 || len(bundle) > MaxPayloadSize {
		return fmt.Errorf("attaching bundle to %s: bundle is %d bytes, want 1 to %d", d, len(bundle), MaxPayloadSize)
	}
	return writeBundleReferrer(ctx, d, subject, bundle, CosignPredicateType, "bundle", opts)
}

// subjectDigest is the digest of the image d, checked to be the one
// subject, d's descriptor, describes.
func subjectDigest(d name.Digest, subject v1.Descriptor) (v1.Hash, error) {
	h, err := parseDigest(d.DigestStr())
	if err != nil {
		return v1.Hash{}, err
	}
	if subject.Digest != h || subject.Size <= 0 || subject.MediaType == "" {
		return v1.Hash{}, fmt.Errorf("subject %s (%d bytes, %q) does not describe it", subject.Digest, subject.Size, subject.MediaType)
	}
	return h, nil
}

// writeBundleReferrer pushes bundle as a Sigstore bundle artifact that
// refers to the image d (whose descriptor is subject): the OCI empty config
// and the bundle layer, then the artifact manifest (bundleManifest, whose
// predicate type annotation is predicateType), which keepReferrer lists as
// d's referrer. what names the bundle's kind in the error of a blob push.
// The context given wins over any remote.WithContext in opts.
func writeBundleReferrer(ctx context.Context, d name.Digest, subject v1.Descriptor, bundle []byte, predicateType, what string, opts []remote.Option) error {
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	repo := d.Context()
	config := static.NewLayer([]byte("{}"), emptyMediaType)
	layer := static.NewLayer(bundle, BundleMediaType)
	for _, blob := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, blob, opts...); err != nil {
			return fmt.Errorf("pushing %s blobs to %s: %w", what, repo, err)
		}
	}
	raw, err := bundleManifest(config, layer, subject, predicateType)
	if err != nil {
		return err
	}
	md, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	return keepReferrer(ctx, d, repo.Digest(md.String()), rawManifest(raw), opts)
}

// keepReferrer pushes the referrer manifest m (by its digest ref) and makes
// sure the registry lists it as a referrer of d. With the referrers API the
// registry keeps that list: one push is all. Without it, m is added to the
// OCI index at the referrers tag ("sha256-<hex>") with keep, since other
// writers may be replacing that index at the same time.
func keepReferrer(ctx context.Context, d name.Digest, ref name.Digest, m rawManifest, opts []remote.Option) error {
	err := remote.Put(ref, m, append(slices.Clip(opts), remote.WithReferrersTagFallback(false))...)
	var te *transport.Error
	var ue *url.Error
	if err == nil || errors.As(err, &te) || errors.As(err, &ue) || ctx.Err() != nil {
		// Stored, and listed by the registry's referrers API; or a
		// registry or network failure.
		if err != nil {
			return fmt.Errorf("pushing bundle manifest for %s: %w", d, err)
		}
		return nil
	}
	// go-containerregistry stored m and found no referrers API (with the
	// tag fallback off, that is its only error that is neither a registry's
	// nor the network's).
	desc, err := referrerDescriptor(m)
	if err != nil {
		return err
	}
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1))
	_, err = keep(ctx, tag, func() (v1.Hash, *push, error) {
		im, base, err := referrersIndex(tag, opts)
		if err != nil {
			return v1.Hash{}, nil, err
		}
		if slices.ContainsFunc(im.Manifests, func(x v1.Descriptor) bool { return x.Digest == desc.Digest }) {
			return base, nil, nil
		}
		im.Manifests = append(im.Manifests, desc)
		slices.SortFunc(im.Manifests, func(a, b v1.Descriptor) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
		raw, err := json.Marshal(im)
		if err != nil {
			return v1.Hash{}, nil, err
		}
		return base, &push{manifest: func() error { return remote.Put(tag, rawIndex(raw), opts...) }}, nil
	}, func() (v1.Hash, error) {
		_, h, err := referrersIndex(tag, opts)
		return h, err
	})
	return err
}

// referrerDescriptor is the descriptor of the artifact manifest m in a
// referrers index: its media type, digest, size, artifact type and
// annotations, as go-containerregistry and cosign write it.
func referrerDescriptor(m rawManifest) (v1.Descriptor, error) {
	var doc v1.Manifest
	if err := json.Unmarshal(m, &doc); err != nil {
		return v1.Descriptor{}, err
	}
	h, size, err := v1.SHA256(bytes.NewReader(m))
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{
		MediaType:    doc.MediaType,
		Digest:       h,
		Size:         size,
		ArtifactType: doc.ArtifactType,
		Annotations:  doc.Annotations,
	}, nil
}

// referrersIndex reads the OCI index at the referrers tag and its digest; a
// tag that does not exist is an empty index and the zero digest.
func referrersIndex(tag name.Tag, opts []remote.Option) (*v1.IndexManifest, v1.Hash, error) {
	desc, err := remote.Get(tag, opts...)
	if IsNotFound(err) {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, v1.Hash{}, nil
	}
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading %s: %w", tag, err)
	}
	if desc.MediaType != types.OCIImageIndex {
		return nil, v1.Hash{}, fmt.Errorf("%s holds %s, want an OCI index of referrers: %w", tag, desc.MediaType, ErrInvalidArtifact)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(desc.Manifest, &im); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("reading %s: %w", tag, err)
	}
	return &im, desc.Digest, nil
}

// rawIndex is an OCI index pushed as the exact bytes given.
type rawIndex []byte

// RawManifest implements remote.Taggable.
func (r rawIndex) RawManifest() ([]byte, error) { return r, nil }

// MediaType is the Content-Type of the push.
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

// bundleManifest serializes the artifact manifest of a bundle, as cosign
// writes it: its dev.sigstore.bundle.predicateType annotation is
// predicateType (CosignPredicateType for a signature, the statement's for
// an attestation).
func bundleManifest(config, layer v1.Layer, subject v1.Descriptor, predicateType string) ([]byte, error) {
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
			bundlePredicateTypeAnnotation: predicateType,
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

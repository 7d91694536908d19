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
// so each append is checked: just before its push the tag must still be the
// manifest the append was based on (else it is based again on the new one),
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

	pushes, lost := 0, 0
	blobPushed := false
	for {
		start := time.Now()
		base, baseDigest, err := signatureImage(tag, opts)
		if err != nil {
			return false, err
		}
		m, err := base.Manifest()
		if err != nil {
			return false, fmt.Errorf("reading %s: %w", tag, err)
		}
		if hasLayer(m, payloadDigest, b64) {
			// Already there before we pushed (added false), or our push
			// survived its settle time.
			return pushes > 0, nil
		}
		if pushes > 0 {
			lost++
		}
		if pushes >= keepAttempts {
			return false, fmt.Errorf("%w in %s: pushed %d times, replaced by concurrent writers each time", ErrNotKept, tag, pushes)
		}
		if len(m.Layers) >= MaxSignatures {
			return false, fmt.Errorf("%s already holds %d signatures, the most a verifier reads (MaxSignatures)", tag, len(m.Layers))
		}
		img, err := mutate.Append(base, mutate.Addendum{
			Layer:       layer,
			Annotations: map[string]string{SignatureAnnotation: b64},
		})
		if err != nil {
			return false, fmt.Errorf("appending to %s: %w", tag, err)
		}
		if !blobPushed {
			if err := remote.WriteLayer(d.Context(), layer, opts...); err != nil {
				return false, fmt.Errorf("pushing %s: %w", tag, err)
			}
			blobPushed = true
		}
		if err := writeConfig(d.Context(), img, opts); err != nil {
			return false, fmt.Errorf("pushing %s: %w", tag, err)
		}
		// Narrow the race: if another writer pushed since we read, base
		// the append on its manifest instead of overwriting it.
		_, now, err := signatureImage(tag, opts)
		if err != nil {
			return false, err
		}
		if now != baseDigest {
			if err := sleepCtx(ctx, jitter(10*time.Millisecond*time.Duration(1+lost))); err != nil {
				return false, err
			}
			continue
		}
		if err := remote.Put(tag, img, opts...); err != nil {
			return false, fmt.Errorf("pushing %s: %w", tag, err)
		}
		pushes++
		if err := sleepCtx(ctx, settleTime(time.Since(start))); err != nil {
			return false, err
		}
	}
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

// writeConfig pushes img's config blob.
func writeConfig(repo name.Repository, img v1.Image, opts []remote.Option) error {
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	return remote.WriteLayer(repo, static.NewLayer(raw, m.Config.MediaType), opts...)
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
	if isNotFound(err) {
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
	return keepReferrer(ctx, d, repo.Digest(md.String()), rawManifest(raw), opts)
}

// keepReferrer pushes the referrer manifest m (by its digest ref) and makes
// sure the registry lists it as a referrer of d. With the referrers API the
// registry keeps that list and one push is enough. Without it,
// go-containerregistry adds m to the index at the referrers tag
// ("sha256-<hex>") by read-modify-write, which a concurrent writer can undo:
// the index is read back after a settle time and, when m is missing, m is
// pushed again (go-containerregistry merges it into the index as it is then),
// at most keepAttempts times.
func keepReferrer(ctx context.Context, d name.Digest, ref name.Digest, m rawManifest, opts []remote.Option) error {
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return err
	}
	fallback := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1))
	for pushes := 0; ; {
		if pushes >= keepAttempts {
			return fmt.Errorf("%w in %s: pushed %d times, replaced by concurrent writers each time", ErrNotKept, fallback, pushes)
		}
		start := time.Now()
		if err := remote.Put(ref, m, opts...); err != nil {
			return fmt.Errorf("pushing bundle manifest for %s: %w", d, err)
		}
		pushes++
		listed, err := indexLists(fallback, h, opts)
		if err != nil {
			return err
		}
		if !listed {
			// Not in the referrers tag right after the push: the registry
			// has the referrers API (go-containerregistry then writes no
			// tag), or a concurrent writer already replaced the index.
			idx, err := remote.Referrers(d, opts...)
			if err != nil {
				return fmt.Errorf("reading the referrers of %s: %w", d, err)
			}
			if im, err := idx.IndexManifest(); err == nil && slices.ContainsFunc(im.Manifests, func(x v1.Descriptor) bool { return x.Digest == h }) {
				return nil
			}
			continue
		}
		if err := sleepCtx(ctx, settleTime(time.Since(start))); err != nil {
			return err
		}
		if listed, err = indexLists(fallback, h, opts); err != nil || listed {
			return err
		}
	}
}

// indexLists reports whether the index at tag lists the manifest h; a tag
// that does not exist lists nothing.
func indexLists(tag name.Tag, h v1.Hash, opts []remote.Option) (bool, error) {
	desc, err := remote.Get(tag, opts...)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", tag, err)
	}
	if !desc.MediaType.IsIndex() {
		return false, fmt.Errorf("%s holds %s, want an OCI index of referrers: %w", tag, desc.MediaType, ErrInvalidArtifact)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", tag, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", tag, err)
	}
	return slices.ContainsFunc(im.Manifests, func(x v1.Descriptor) bool { return x.Digest == h }), nil
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

package verifier

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/sigstore"
)

// Signature artifacts: the .sig manifests, bundle referrers and referrers
// indexes that carry signatures are pulled through the proxy too (cosign
// verify does), and nobody signs them. They are admitted without
// signatures of their own only when no client could be led from them to
// runnable content:
//
//   - no descriptor in them carries urls (a client may fetch the content
//     from there, around the proxy) or data (a client may take the content
//     embedded there instead of fetching it);
//   - an index is an OCI index whose entries are all OCI image manifests
//     declaring a signature artifactType, with no platform (a client picks
//     children to run by platform);
//   - an image manifest is an OCI or Docker schema 2 manifest whose layers
//     (1 to sigstore.MaxSignatures, sigstore.MaxLookupBytes in all) all
//     declare a signature media type (simple signing, bundle, DSSE
//     envelope), each within the size its reader accepts, and
//     whose blobs, read and checked against their descriptors, are JSON
//     objects that are not also tar archives: a media type is only a
//     label, and containers/image and go-containerregistry unpack a layer
//     by its bytes (an uncompressed tar can be written that is valid JSON
//     too).
//
// A child of an index admitted this way inherits nothing: it is decided on
// its own when pulled.

// signatureMediaTypes are the layer media types and artifact types of
// signature artifacts (.sig layers, bundles, .att layers), with the largest
// blob of each that the readers accept.
var signatureMediaTypes = map[string]int64{
	sigstore.SimpleSigningMediaType:    sigstore.MaxPayloadSize,
	sigstore.BundleMediaType:           sigstore.MaxAttestationSize,
	sigstore.AttestationLayerMediaType: sigstore.MaxAttestationSize,
}

// maxArtifactFetches bounds the concurrent blob reads of one check.
const maxArtifactFetches = 8

// artifactLayers reports whether m has the shape of a signature artifact,
// and returns the layers whose blobs must still be read.
func artifactLayers(m *sigstore.Manifest) ([]sigstore.Descriptor, bool) {
	if m == nil {
		return nil, false
	}
	for _, d := range m.Descriptors() {
		if d.URLs != nil || d.Data {
			return nil, false
		}
	}
	switch m.Kind {
	case sigstore.KindIndex:
		if m.MediaType != string(types.OCIImageIndex) || len(m.Manifests) == 0 {
			return nil, false
		}
		for _, d := range m.Manifests {
			if _, ok := signatureMediaTypes[d.ArtifactType]; d.MediaType != string(types.OCIManifestSchema1) || !ok || d.Platform != nil {
				return nil, false
			}
		}
		return nil, true
	case sigstore.KindImage:
		if m.MediaType != string(types.OCIManifestSchema1) && m.MediaType != string(types.DockerManifestSchema2) {
			return nil, false
		}
		if len(m.Layers) == 0 || len(m.Layers) > sigstore.MaxSignatures {
			return nil, false
		}
		var total int64
		for _, l := range m.Layers {
			limit, ok := signatureMediaTypes[l.MediaType]
			if !ok || l.Size > limit {
				return nil, false
			}
			total += l.Size
		}
		if total > sigstore.MaxLookupBytes {
			return nil, false
		}
		return m.Layers, true
	}
	return nil, false
}

// signatureArtifact reports whether m is a signature artifact, reading its
// layer blobs through src. An error means a blob could not be read
// (upstream failure): no decision can be made.
func signatureArtifact(ctx context.Context, src Source, repo string, m *sigstore.Manifest) (bool, error) {
	layers, ok := artifactLayers(m)
	if !ok || len(layers) == 0 {
		return ok, nil
	}
	errs := make([]error, len(layers))
	sem := make(chan struct{}, maxArtifactFetches)
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("verifier: reading layer %d panicked: %v", i, r)
				}
			}()
			b, err := src.Blob(ctx, repo, l, signatureMediaTypes[l.MediaType])
			if err == nil && (!isJSONObject(b) || isTar(b)) {
				err = fmt.Errorf("%w: layer %d is not a JSON object, or is a tar archive too", sigstore.ErrInvalidArtifact, i)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	ok = true
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, sigstore.ErrInvalidArtifact):
			ok = false
		default:
			return false, err
		}
	}
	return ok, nil
}

// isTar reports whether b starts with a tar header a reader accepts.
func isTar(b []byte) bool {
	_, err := tar.NewReader(bytes.NewReader(b)).Next()
	return err == nil
}

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

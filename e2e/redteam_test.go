package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Red-team regression tests: attacks by someone who can push anything to
// the upstream registry but holds no trusted key. Each test fails while
// the attack works and passes once the proxy stops it.

// rtDescriptor is a descriptor with the OCI "data" field (the content,
// embedded, base64), which craftedDescriptor cannot write.
type rtDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Data         []byte            `json:"data,omitempty"`
}

// rtIndex is an OCI index made of rtDescriptors.
type rtIndex struct {
	SchemaVersion int            `json:"schemaVersion"`
	MediaType     string         `json:"mediaType"`
	Manifests     []rtDescriptor `json:"manifests"`
}

// TestRedTeamEmbeddedDataInSignatureIndex: an index shaped exactly like a
// referrers index (one OCI image manifest entry, signature artifactType, no
// platform, no urls) is admitted as a signature artifact without
// signatures. But its entry may carry the OCI descriptor field "data": the
// child manifest's bytes, embedded. go-containerregistry (crane, ko, and
// everything built on it) takes an index child from "data" instead of
// fetching it, and treats an entry without a platform as linux/amd64; so
// it never asks the proxy for the unsigned child manifest and fetches the
// child's config and layers as plain blobs, which the blob gate passes.
// The unsigned runnable image is pulled whole through the proxy.
//
// Fails until the proxy refuses (or does not treat as a signature
// artifact) a manifest with a descriptor that carries "data".
func TestRedTeamEmbeddedDataInSignatureIndex(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	p := l.proxy(t, l.registry, l.registry)
	m := Mirror{Proxy: p.addr, Upstream: l.registry}

	// The defender's signed image still pulls (control).
	goodRef := l.registry + "/prod/good:v1"
	PushRandomImage(t, goodRef)
	sign(t, l.sh, l.trusted, goodRef)

	evil := pushRunnableImage(t, l.registry, "prod/app")
	idx := rtIndex{SchemaVersion: 2, MediaType: string(types.OCIImageIndex), Manifests: []rtDescriptor{{
		MediaType:    string(types.OCIManifestSchema1),
		Digest:       evil.digest.String(),
		Size:         int64(len(evil.raw)),
		ArtifactType: simpleSigningType,
		Data:         evil.raw,
	}}}
	body, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	l.raw.manifest("prod/app", "v1", string(types.OCIImageIndex), body)

	// The unsigned child itself is refused when asked for.
	wantDenied(t, "GET prod/app@"+evil.digest.String(),
		send(t, http.MethodGet, manifestURL(p.addr, "prod/app", evil.digest.String()), "Accept", manifestAccept))

	c := NewCraneClient(m)
	if res, err := c.Pull(context.Background(), "prod/good:v1"); err != nil {
		t.Fatalf("crane pull prod/good:v1 (signed) failed: %v\n%s", err, res.Output)
	}
	res, err := c.Pull(context.Background(), "prod/app:v1")
	if err == nil {
		t.Errorf("crane pulled prod/app:v1 through the proxy (index %s, children %v): the unsigned runnable image %s "+
			"(config and layers %v) was taken from the entry's data field; want refused", res.Digest, res.Children, evil.digest, evil.blobs)
	} else {
		t.Logf("crane failed to pull prod/app:v1, as it must: %v", err)
	}
}

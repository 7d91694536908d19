package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// interopDir holds a registry dump made by sigstore cosign v3.1.2 (see
// /work/shared/interop/README.md): images signed as 127.0.0.1:5000/interop/...
const interopDir = "../sigstore/testdata/cosign-v3.1.2"

// loadInterop pushes the dump into u: every blob and manifest into every
// repository of tags.json, then the tags.
func loadInterop(t testing.TB, u *fakeUpstream) map[string]map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(interopDir, "tags.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tags map[string]map[string]struct{ Digest, MediaType string }
	if err := json.Unmarshal(raw, &tags); err != nil {
		t.Fatal(err)
	}
	blobs, _ := filepath.Glob(filepath.Join(interopDir, "blobs", "sha256-*"))
	manifests, _ := filepath.Glob(filepath.Join(interopDir, "manifests", "sha256-*"))
	out := map[string]map[string]string{}
	for repo, byTag := range tags {
		r, err := name.NewRepository(u.host + "/" + repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blobs {
			data, err := os.ReadFile(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteLayer(r, static.NewLayer(data, types.OCILayer)); err != nil {
				t.Fatal(err)
			}
		}
		// Manifests by digest, indexes last (their children must exist).
		slices.SortFunc(manifests, func(a, b string) int { return isIndexFile(t, a) - isIndexFile(t, b) })
		for _, m := range manifests {
			data, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct{ MediaType string }
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			putManifest(t, u, repo, strings.Replace(filepath.Base(m), "sha256-", "sha256:", 1), doc.MediaType, data)
		}
		out[repo] = map[string]string{}
		for tag, d := range byTag {
			data, err := os.ReadFile(filepath.Join(interopDir, "manifests", strings.Replace(d.Digest, ":", "-", 1)))
			if err != nil {
				t.Fatal(err)
			}
			putManifest(t, u, repo, tag, d.MediaType, data)
			out[repo][tag] = d.Digest
		}
	}
	return out
}

func isIndexFile(t testing.TB, path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(`"manifests"`)) {
		return 1
	}
	return 0
}

func putManifest(t testing.TB, u *fakeUpstream, repo, ref, mediaType string, data []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s:%s: %d", repo, ref, resp.StatusCode)
	}
}

func interopKey(t testing.TB, file string) sigstore.PublicKey {
	t.Helper()
	k, err := sigstore.LoadPublicKey(filepath.Join(interopDir, "keys", file))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCosignInterop pulls images signed by the real cosign through the
// proxy. The upstream is named 127.0.0.1:5000, the registry the signatures
// name, wherever the test registry listens.
func TestCosignInterop(t *testing.T) {
	up := newFakeUpstream(t)
	digests := loadInterop(t, up)
	ecdsa, ed := interopKey(t, "ecdsa.pub"), interopKey(t, "ed25519.pub")
	e := &env{t: t, up: up, cfg: &Config{
		Upstreams: []Upstream{{Registry: "127.0.0.1:5000", URL: up.URL}},
		Policies: []*verifier.Policy{
			{Name: "ed25519-only", Match: []string{"127.0.0.1:5000/interop/app"}, Keys: []sigstore.PublicKey{ed}},
			{Name: "ecdsa", Match: []string{"127.0.0.1:5000/interop/**"}, Keys: []sigstore.PublicKey{ecdsa}},
		},
	}}
	e.start()

	for _, tc := range []struct {
		name, repo, tag string
		status          int
	}{
		{"legacy .sig, Ed25519ph signature by cosign", "interop/app", "v1", 200},
		{"bundle in the referrers tag, ECDSA key not in the ed25519 policy", "interop/app", "v2", 403},
		{"signed index", "interop/multi", "v1", 200},
		{"child of the signed index, after it", "interop/multi", "arm64", 200},
		{"unsigned (same digest as a signed image elsewhere)", "interop/unsigned", "v1", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/v2/"+tc.repo+"/manifests/"+tc.tag)
			wantStatus(t, resp, tc.status, "")
			if tc.status == 200 && resp.Header.Get("Docker-Content-Digest") != digests[tc.repo][tc.tag] {
				t.Fatalf("digest %s, want %s", resp.Header.Get("Docker-Content-Digest"), digests[tc.repo][tc.tag])
			}
		})
	}
	t.Run("bundle signature verifies with the ECDSA key", func(t *testing.T) {
		e.cfg.Policies = e.cfg.Policies[1:]
		e.restart()
		img, err := remote.Image(e.ref("interop/app", "v2"))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a full multi-platform pull", func(t *testing.T) {
		idx, err := remote.Index(e.ref("interop/multi", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cosign reads its signature artifacts through the proxy", func(t *testing.T) {
		for _, tag := range []string{
			strings.Replace(digests["interop/app"]["v1"], "sha256:", "sha256-", 1) + ".sig",
			strings.Replace(digests["interop/app"]["v2"], "sha256:", "sha256-", 1),
		} {
			wantStatus(t, e.do(http.MethodGet, "/v2/interop/app/manifests/"+tag), 200, "")
		}
	})
}

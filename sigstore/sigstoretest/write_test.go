package sigstoretest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/sigstore"
)

// testRegistry is go-containerregistry's in-memory registry, with or
// without the referrers API.
type testRegistry struct {
	url  string // http://127.0.0.1:port
	repo name.Repository
}

func newRegistry(t *testing.T, referrersAPI bool) *testRegistry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrersAPI)))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://")+"/team/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return &testRegistry{url: srv.URL, repo: repo}
}

// pushImage pushes a random image under tag and returns its digest.
func (r *testRegistry) pushImage(t *testing.T, tag string) v1.Hash {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r.repo.Tag(tag), img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// get fetches a manifest's raw bytes; ok is false when it does not exist.
func (r *testRegistry) get(t *testing.T, ref, accept string) (raw []byte, ok bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.url+"/v2/"+r.repo.RepositoryStr()+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, true
	case http.StatusNotFound:
		return nil, false
	default:
		t.Fatalf("GET %s: %d %s", ref, resp.StatusCode, b)
		return nil, false
	}
}

func readTestdata(t *testing.T, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLegacyWritersMatchCosign writes the layers real cosign v3.1.2 wrote
// (testdata/cosign-v3.1.2, and ../testdata/cosign-v3.1.2, the interop
// dump) and checks that the .sig and .att manifests come out byte for byte
// as cosign's.
func TestLegacyWritersMatchCosign(t *testing.T) {
	const dump = "../testdata/cosign-v3.1.2/"
	for _, tc := range []struct {
		name     string
		manifest []byte
		blobs    func(v1.Manifest) [][]byte
		write    func(ctx context.Context, repo name.Repository, d v1.Hash, blob []byte, ann map[string]string, opts ...remote.Option) error
		suffix   string
	}{
		{"keyless .sig", readTestdata(t, "testdata/cosign-v3.1.2/cert-sig.manifest.json"),
			func(v1.Manifest) [][]byte {
				return [][]byte{readTestdata(t, "testdata/cosign-v3.1.2/cert-sig.layer.json")}
			},
			WriteSimpleSigning, ".sig"},
		{"keyless .att", readTestdata(t, "testdata/cosign-v3.1.2/cert-att.manifest.json"),
			func(v1.Manifest) [][]byte {
				return [][]byte{readTestdata(t, "testdata/cosign-v3.1.2/cert-att.layer.json")}
			},
			WriteAttestation, ".att"},
		{"key .att", readTestdata(t, "testdata/cosign-v3.1.2/key-att.manifest.json"),
			func(v1.Manifest) [][]byte {
				return [][]byte{readTestdata(t, "testdata/cosign-v3.1.2/key-att.layer.json")}
			},
			WriteAttestation, ".att"},
		{"two .sig layers", readTestdata(t, dump+"manifests/sha256-4e8657b6bbc927c8544e0c1ebd2549e476f68259307b39d7cb2c6a3f7d0be9f8"),
			func(m v1.Manifest) [][]byte {
				var out [][]byte
				for _, l := range m.Layers {
					out = append(out, readTestdata(t, dump+"blobs/sha256-"+l.Digest.Hex))
				}
				return out
			},
			WriteSimpleSigning, ".sig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegistry(t, false)
			d := r.pushImage(t, "v1")
			var m v1.Manifest
			if err := json.Unmarshal(tc.manifest, &m); err != nil {
				t.Fatal(err)
			}
			for i, blob := range tc.blobs(m) {
				if err := tc.write(context.Background(), r.repo, d, blob, m.Layers[i].Annotations); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := r.get(t, d.Algorithm+"-"+d.Hex+tc.suffix, string(types.OCIManifestSchema1))
			if !ok {
				t.Fatal("no manifest written")
			}
			if !bytes.Equal(got, tc.manifest) {
				t.Errorf("manifest\n%s\nwant cosign's\n%s", got, tc.manifest)
			}
		})
	}
}

// referrer is the part of a bundle referrer manifest cosign's readers use.
type referrer struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       v1.Descriptor     `json:"config"`
	Layers       []v1.Descriptor   `json:"layers"`
	Annotations  map[string]string `json:"annotations"`
	Subject      *v1.Descriptor    `json:"subject"`
}

func TestWriteBundles(t *testing.T) {
	s, _ := newSigstore(t)
	for _, api := range []bool{false, true} {
		t.Run(map[bool]string{false: "referrers tag", true: "referrers API"}[api], func(t *testing.T) {
			ctx := context.Background()
			r := newRegistry(t, api)
			d := r.pushImage(t, "v1")
			sb, err := s.SignatureBundle(d, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteSignatureBundle(ctx, r.repo, d, sb); err != nil {
				t.Fatal(err)
			}
			ab, err := s.AttestationBundle(d, slsaType, map[string]any{"buildType": "x"}, Options{Identity: testIdentity, Issuer: testIssuer, SubjectName: r.repo.String()})
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteAttestationBundle(ctx, r.repo, d, ab); err != nil {
				t.Fatal(err)
			}

			tag := d.Algorithm + "-" + d.Hex
			indexRaw, hasTag := r.get(t, tag, string(types.OCIImageIndex))
			if api {
				if hasTag {
					t.Fatalf("referrers tag %s written although the registry has the referrers API", tag)
				}
				resp, err := http.Get(r.url + "/v2/" + r.repo.RepositoryStr() + "/referrers/" + d.String())
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if indexRaw, err = io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("referrers API: %d, %v", resp.StatusCode, err)
				}
			} else if !hasTag {
				t.Fatalf("no referrers tag %s", tag)
			}
			var index v1.IndexManifest
			if err := json.Unmarshal(indexRaw, &index); err != nil {
				t.Fatal(err)
			}
			if index.MediaType != types.OCIImageIndex || len(index.Manifests) != 2 {
				t.Fatalf("referrers index %s: want an OCI index of 2", indexRaw)
			}
			// Against the referrer cosign v3.1.2 wrote for an attestation.
			var cosignRef referrer
			if err := json.Unmarshal(readTestdata(t, "testdata/cosign-v3.1.2/key-att-bundle.manifest.json"), &cosignRef); err != nil {
				t.Fatal(err)
			}
			var cosignIndex v1.IndexManifest
			if err := json.Unmarshal(readTestdata(t, "testdata/cosign-v3.1.2/key-att-bundle.index.json"), &cosignIndex); err != nil {
				t.Fatal(err)
			}
			predicateTypes := map[string][]byte{}
			for _, e := range index.Manifests {
				// go-containerregistry's registry lists the config's media
				// type as a referrer's artifactType, not the manifest's
				// artifactType as the OCI distribution spec says, so the
				// entries its referrers API lists are not the writer's.
				if e.MediaType != cosignIndex.Manifests[0].MediaType || (!api && e.ArtifactType != cosignIndex.Manifests[0].ArtifactType) {
					t.Errorf("index entry %s %q, cosign's %s %q", e.MediaType, e.ArtifactType, cosignIndex.Manifests[0].MediaType, cosignIndex.Manifests[0].ArtifactType)
				}
				raw, ok := r.get(t, e.Digest.String(), string(types.OCIManifestSchema1))
				if !ok {
					t.Fatalf("referrer %s missing", e.Digest)
				}
				var m referrer
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				switch {
				case m.MediaType != cosignRef.MediaType || m.ArtifactType != cosignRef.ArtifactType:
					t.Errorf("referrer %s: mediaType %q artifactType %q, cosign's %q %q", raw, m.MediaType, m.ArtifactType, cosignRef.MediaType, cosignRef.ArtifactType)
				case m.Config.MediaType != cosignRef.Config.MediaType || m.Config.Digest != cosignRef.Config.Digest:
					t.Errorf("referrer config %+v, cosign's %+v", m.Config, cosignRef.Config)
				case len(m.Layers) != 1 || m.Layers[0].MediaType != cosignRef.Layers[0].MediaType:
					t.Errorf("referrer layers %+v", m.Layers)
				case m.Subject == nil || m.Subject.Digest != d || m.Subject.MediaType == "" || m.Subject.Size == 0:
					t.Errorf("referrer subject %+v, want the image %s", m.Subject, d)
				case m.Annotations["dev.sigstore.bundle.content"] != cosignRef.Annotations["dev.sigstore.bundle.content"]:
					t.Errorf("referrer annotations %v, cosign's %v", m.Annotations, cosignRef.Annotations)
				}
				blob := readBlob(t, r, m.Layers[0])
				predicateTypes[m.Annotations["dev.sigstore.bundle.predicateType"]] = blob
			}
			if !bytes.Equal(predicateTypes[sigstore.CosignPredicateType], sb) || !bytes.Equal(predicateTypes[slsaType], ab) {
				t.Errorf("referrers by predicate type: %v, want the signature and the attestation bundle", slices.Collect(mapKeys(predicateTypes)))
			}
			if cosignRef.Annotations["dev.sigstore.bundle.predicateType"] != slsaType {
				t.Fatalf("testdata: cosign's referrer is for %q", cosignRef.Annotations["dev.sigstore.bundle.predicateType"])
			}
		})
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func readBlob(t *testing.T, r *testRegistry, d v1.Descriptor) []byte {
	t.Helper()
	resp, err := http.Get(r.url + "/v2/" + r.repo.RepositoryStr() + "/blobs/" + d.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("blob %s: %d, %v", d.Digest, resp.StatusCode, err)
	}
	return b
}

func TestWriteErrors(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t, false)
	d := r.pushImage(t, "v1")
	missing := hashOf("not pushed")
	s, _ := newSigstore(t)
	sb, err := s.SignatureBundle(missing, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"bundle for an image not in the repository": func() error { return WriteSignatureBundle(ctx, r.repo, missing, sb) },
		"bad digest": func() error {
			return WriteSimpleSigning(ctx, r.repo, v1.Hash{Algorithm: "sha256", Hex: "00"}, []byte("{}"), nil)
		},
		"empty payload":  func() error { return WriteSimpleSigning(ctx, r.repo, d, nil, nil) },
		"empty envelope": func() error { return WriteAttestation(ctx, r.repo, d, nil, nil) },
		"signature bundle as an attestation": func() error {
			b, err := s.SignatureBundle(d, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			return WriteAttestationBundle(ctx, r.repo, d, b)
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A tag that holds an index is not a signature manifest to append to.
	idx, err := random.Index(64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r.repo.Tag(sigstore.SignatureTag(d)), idx); err != nil {
		t.Fatal(err)
	}
	if err := WriteSimpleSigning(ctx, r.repo, d, []byte("{}"), nil); err == nil || !strings.Contains(err.Error(), "want an image manifest") {
		t.Errorf("appending to an index: %v", err)
	}
}

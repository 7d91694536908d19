package sigstore

import (
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	tOCIManifest = string(types.OCIManifestSchema1)
	tOCIIndex    = string(types.OCIImageIndex)
	tDockerList  = string(types.DockerManifestList)
)

var zeroDigest = "sha256:" + strings.Repeat("0", 64)

func descJSON(extra string) string {
	return `{"mediaType":"a","digest":"` + zeroDigest + `","size":1` + extra + `}`
}

func TestParseManifestAccepts(t *testing.T) {
	cfg := descJSON("")
	for _, tc := range []struct {
		name, contentType, body string
		kind                    Kind
		check                   func(t *testing.T, m *Manifest)
	}{
		{"OCI manifest", tOCIManifest, `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + descJSON("") + `]}`, KindImage,
			func(t *testing.T, m *Manifest) {
				if m.Config == nil || len(m.Layers) != 1 || m.Layers[0].Digest.String() != zeroDigest || m.Layers[0].Size != 1 {
					t.Errorf("%+v", m)
				}
			}},
		{"media type from the document", "", `{"schemaVersion":2,"mediaType":"` + tOCIIndex + `","manifests":[]}`, KindIndex, nil},
		{"Content-Type parameters dropped", tOCIIndex + "; charset=utf-8", `{"schemaVersion":2,"manifests":[]}`, KindIndex, nil},
		{"descriptor fields a client acts on", tOCIIndex, `{"schemaVersion":2,"manifests":[` +
			descJSON(`,"urls":["http://x/y"],"platform":{"architecture":"amd64","os":"linux","os.features":["a"]},"artifactType":"t","annotations":{"k":"v"}`) + `]}`, KindIndex,
			func(t *testing.T, m *Manifest) {
				d := m.Manifests[0]
				if len(d.URLs) != 1 || d.Platform == nil || d.Platform.OS != "linux" || d.ArtifactType != "t" || d.Annotations["k"] != "v" {
					t.Errorf("%+v", d)
				}
			}},
		{"empty urls are still urls", tOCIIndex, `{"schemaVersion":2,"manifests":[` + descJSON(`,"urls":[]`) + `]}`, KindIndex,
			func(t *testing.T, m *Manifest) {
				if m.Manifests[0].URLs == nil {
					t.Error("urls: [] read as absent")
				}
			}},
		{"unknown keys are kept out", tOCIManifest, `{"schemaVersion":2,"config":` + cfg + `,"layers":[],"extra":{"a":1}}`, KindImage, nil},
		{"sha512 digest", tOCIIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"sha512:` + strings.Repeat("a", 128) + `","size":0}]}`, KindIndex, nil},
		{"Docker schema 1 is not read further", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1,"fsLayers":[]}`, KindOther, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tc.body), tc.contentType)
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			if m.Kind != tc.kind {
				t.Fatalf("Kind %v, want %v", m.Kind, tc.kind)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func TestParseManifestRefuses(t *testing.T) {
	cfg := descJSON("")
	for _, tc := range []struct{ name, contentType, body, want string }{
		{"not JSON", tOCIManifest, `{"schemaVersion":2,`, "JSON"},
		{"not an object", tOCIManifest, `[]`, "not a JSON object"},
		{"trailing data", tOCIManifest, `{"schemaVersion":2} {}`, "after"},
		{"repeated key", tOCIManifest, `{"schemaVersion":2,"schemaVersion":2}`, "duplicate"},
		{"repeated key deep down", tOCIIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"a","mediaType":"b"}]}`, "duplicate"},
		{"case-variant top-level key", tOCIManifest, `{"schemaVersion":2,"Layers":[]}`, "spec's key"},
		{"case-variant descriptor key", tOCIIndex, `{"schemaVersion":2,"manifests":[` + descJSON(`,"URLS":["x"]`) + `]}`, "spec's key"},
		{"case-variant platform key", tOCIIndex, `{"schemaVersion":2,"manifests":[` + descJSON(`,"platform":{"OS":"linux"}`) + `]}`, "spec's key"},
		{"index and manifest at once", tOCIManifest, `{"schemaVersion":2,"manifests":[],"layers":[]}`, "both"},
		{"index and manifest at once by fsLayers", tOCIIndex, `{"schemaVersion":2,"manifests":[],"fsLayers":[]}`, "both"},
		{"mediaType differs from Content-Type", tOCIManifest, `{"schemaVersion":2,"mediaType":"` + tOCIIndex + `","manifests":[]}`, "differs"},
		{"no media type", "", `{"schemaVersion":2}`, "no media type"},
		{"index with config", tOCIIndex, `{"schemaVersion":2,"config":` + cfg + `}`, "layers or config"},
		{"index without manifests", tDockerList, `{"schemaVersion":2}`, "no manifests"},
		{"manifest with manifests", tOCIManifest, `{"schemaVersion":2,"manifests":[]}`, "has manifests"},
		{"manifest without config", tOCIManifest, `{"schemaVersion":2,"layers":[]}`, "no config"},
		{"schemaVersion 1 as OCI", tOCIManifest, `{"schemaVersion":1,"config":` + cfg + `}`, "schemaVersion"},
		{"schemaVersion as a string", tOCIManifest, `{"schemaVersion":"2","config":` + cfg + `}`, "schemaVersion"},
		{"upper-case digest", tOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:` + strings.Repeat("A", 64) + `","size":1}}`, "lowercase"},
		{"short digest", tOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:abc","size":1}}`, "64"},
		{"digest with a newline", tOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + zeroDigest + `\n","size":1}}`, "algorithm:encoded"},
		{"negative size", tOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + zeroDigest + `","size":-1}}`, "non-negative"},
		{"fractional size", tOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + zeroDigest + `","size":1.5}}`, "non-negative"},
		{"urls not an array", tOCIIndex, `{"schemaVersion":2,"manifests":[` + descJSON(`,"urls":"http://x"`) + `]}`, "urls"},
		{"annotation not a string", tOCIManifest, `{"schemaVersion":2,"config":` + cfg + `,"annotations":{"a":1}}`, "annotations.a"},
		{"invalid UTF-8", tOCIManifest, "{\"schemaVersion\":2,\"x\":\"\xff\"}", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tc.body), tc.contentType)
			if err == nil {
				t.Fatalf("accepted as %+v", m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestLooksLikeManifest(t *testing.T) {
	for body, want := range map[string]bool{
		`{"schemaVersion":2,"layers":[]}`:      true,
		`{"MANIFESTS":[]}`:                     true,
		`{"fsLayers":[]}`:                      true,
		`{"mediaType":"` + tOCIManifest + `"}`: true,
		`{"MediaType":"application/vnd.docker.distribution.manifest.v1+json"}`: true,
		`{"architecture":"amd64","config":{},"rootfs":{}}`:                     false,
		`{"critical":{},"optional":null}`:                                      false,
		`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`:        false,
		`{"layerſ":[]}`:    true,
		`{"manifeſts":[]}`: true,
		`[{"layers":[]}]`:  false,
		`not json`:         false,
	} {
		if got := LooksLikeManifest([]byte(body)); got != want {
			t.Errorf("LooksLikeManifest(%s) = %v, want %v", body, got, want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"` + tOCIManifest + `","config":` + descJSON("") + `,"layers":[` + descJSON(`,"urls":["x"]`) + `]}`,
		`{"schemaVersion":2,"manifests":[` + descJSON(`,"platform":{"os":"linux"},"artifactType":"a"`) + `]}`,
		`{"manifests":[],"layers":[]}`, `{"a":1,"A":2}`, `[]`, `{"Layers":[{"MediaType":"x"}]}`,
	} {
		f.Add([]byte(s), tOCIManifest)
		f.Add([]byte(s), tOCIIndex)
		f.Add([]byte(s), "")
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		m, err := ParseManifest(body, contentType)
		if err != nil {
			return
		}
		if m.MediaType == "" {
			t.Fatal("accepted without a media type")
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(body, &top) != nil {
			t.Fatalf("accepted what encoding/json refuses: %q", body)
		}
		if m.Kind == KindIndex && (m.Config != nil || len(m.Layers) > 0) || m.Kind == KindImage && len(m.Manifests) > 0 {
			t.Fatalf("ambiguous document accepted as %v: %q", m.Kind, body)
		}
		// What the model says of descriptors, Go's own decoding (the
		// decoding containerd and Docker use) says too.
		var goView struct {
			Manifests []v1.Descriptor `json:"manifests"`
			Layers    []v1.Descriptor `json:"layers"`
		}
		if json.Unmarshal(body, &goView) != nil {
			return
		}
		if m.Kind == KindIndex {
			for i, d := range m.Manifests {
				if g := goView.Manifests[i]; len(g.URLs) != len(d.URLs) || (g.Platform == nil) != (d.Platform == nil) || g.ArtifactType != d.ArtifactType {
					t.Fatalf("manifests[%d]: model %+v, encoding/json %+v", i, d, g)
				}
			}
		}
		if m.Kind == KindImage {
			for i, d := range m.Layers {
				if g := goView.Layers[i]; len(g.URLs) != len(d.URLs) || string(g.MediaType) != d.MediaType {
					t.Fatalf("layers[%d]: model %+v, encoding/json %+v", i, d, g)
				}
			}
		}
	})
}

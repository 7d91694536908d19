package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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

	// `crane pull PROXY/prod/app:v1 out.tar` resolves the index for
	// linux/amd64, which an entry without a platform is taken to be.
	img, err := crane.Pull(p.addr+"/prod/app:v1", crane.Insecure, crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err == nil {
		err = readImage(img)
	}
	if err == nil {
		d, _ := img.Digest()
		t.Errorf("crane.Pull (as `crane pull`) got image %s from prod/app:v1 through the proxy, config and layers included; want refused", d)
	}
}

// jsonTarLayer is a layer that is at once one valid JSON object and a valid
// uncompressed tar archive: a V7 tar header whose every field is printable
// (numbers are space-terminated octal), opening with `{"a":"` in the file
// name, and closing with `"}` in the padding after the file's data. The
// one file it holds, name (cleaned to /name on extraction: the header's
// name is `{"a":"/../././...//name`), has mode 0755 and contents content,
// which must be printable ASCII without '"' or '\'.
func jsonTarLayer(t testing.TB, name, content string) []byte {
	t.Helper()
	for _, c := range []byte(name + content) {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			t.Fatalf("jsonTarLayer: %q is not plain printable ASCII", name+content)
		}
	}
	hdr := bytes.Repeat([]byte("x"), 512)
	n := `{"a":"/..`
	n += strings.Repeat("/.", (100-len(n)-len(name)-1)/2)
	n += strings.Repeat("/", 100-len(n)-len(name)) + name
	copy(hdr[0:100], n)
	copy(hdr[100:108], "0000755 ")
	copy(hdr[108:116], "0000000 ")
	copy(hdr[116:124], "0000000 ")
	copy(hdr[124:136], fmt.Sprintf("%011o ", len(content)))
	copy(hdr[136:148], "00000000000 ")
	copy(hdr[148:156], "        ")
	hdr[156] = '0'
	sum := 0
	for _, b := range hdr {
		sum += int(b)
	}
	copy(hdr[148:156], fmt.Sprintf("%07o ", sum))
	pad := (512 - len(content)%512) % 512
	if pad < 2 {
		pad += 512
	}
	tail := bytes.Repeat([]byte("x"), pad)
	copy(tail[pad-2:], `"}`)
	out := append(append(hdr, content...), tail...)
	if !json.Valid(out) {
		t.Fatal("jsonTarLayer: not valid JSON")
	}
	return out
}

// pushJSONTarImage pushes to repo:tag an OCI image manifest shaped like a
// cosign signature manifest (its one layer declares the simple-signing
// media type and its blob is a JSON object of under 64 KiB), whose layer is
// also a tar holding /pwned, and whose config is a real image config that
// lists that tar as its one diff and runs /pwned. It returns the layer's
// digest.
func pushJSONTarImage(t *testing.T, r *rawRegistry, repo, tag, marker string) (manifest craftedDescriptor, layer craftedDescriptor) {
	t.Helper()
	layerBytes := jsonTarLayer(t, "pwned", "#!/bin/sh echo "+marker)
	layer = r.blob(repo, simpleSigningType, layerBytes)
	cfg, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/pwned"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layer.Digest}},
	})
	if err != nil {
		t.Fatal(err)
	}
	config := r.blob(repo, string(types.OCIConfigJSON), cfg)
	manifest, _ = r.manifestJSON(repo, tag, craftedManifest{
		SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		Config: &config, Layers: &[]craftedDescriptor{layer},
	})
	return manifest, layer
}

// TestRedTeamJSONTarLayerInSignatureManifest: an image manifest whose
// layers all declare a signature media type and whose layer blobs are JSON
// objects is admitted as a signature artifact, without signatures, on the
// ground that "a media type is only a label" and JSON is not runnable. But
// a JSON object can also be a valid tar archive (jsonTarLayer), and the
// config of such a manifest is not looked at. containers/image (skopeo,
// podman, buildah, CRI-O) detects a layer's compression from its bytes,
// not its media type, and applies it: `skopeo copy` from the proxy into
// containers-storage stores an unsigned image whose layer put the
// attacker's /pwned (mode 0755) into its root filesystem, with the
// attacker's config (Cmd /pwned). go-containerregistry's mutate.Extract
// (`crane export`; kaniko and ko unpack base images the same way) also
// yields /pwned. containerd and Docker refuse the layer's media type.
//
// Fails until the proxy stops admitting, as a signature artifact, an image
// manifest whose layers a client could unpack (for instance by requiring
// the config to be the empty or a cosign config, and the layer blobs not
// to parse as tar).
func TestRedTeamJSONTarLayerInSignatureManifest(t *testing.T) {
	t.Parallel()
	Require(t, "skopeo")
	l := newGateLab(t)
	p := l.proxy(t, l.registry, l.registry)
	marker := "unsigned-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	evil, layer := pushJSONTarImage(t, l.raw, "prod/app", "v1", marker)

	a := send(t, http.MethodGet, manifestURL(p.addr, "prod/app", "v1"), "Accept", manifestAccept)
	if a.status == http.StatusOK {
		t.Errorf("proxy served prod/app:v1 (%s), an unsigned image manifest whose layer is a tar, with 200: %s", evil.Digest, a.header.Get("Docker-Content-Digest"))
	}

	// go-containerregistry (`crane export`, kaniko and ko base images)
	// flattens the layers by their bytes too.
	if img, err := crane.Pull(p.addr+"/prod/app:v1", crane.Insecure); err == nil {
		rc := mutate.Extract(img)
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.TrimPrefix(h.Name, "/") == "pwned" {
				b, _ := io.ReadAll(tr)
				t.Errorf("crane export of the unsigned prod/app:v1 through the proxy yields %s (mode %o): %q", h.Name, h.Mode, b)
			}
		}
		rc.Close()
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	store := filepath.Join(dir, "storage")
	dest := "containers-storage:[vfs@" + store + "+" + filepath.Join(dir, "run") + "]localhost/app:v1"
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	out, err := runTool(ctx, nil, "skopeo", "--policy", filepath.Join(dir, "policy.json"),
		"copy", "--retry-times", "0", "--src-tls-verify=false", "--src-no-creds",
		"docker://"+p.addr+"/prod/app:v1", dest)
	if err != nil {
		t.Logf("skopeo copy into containers-storage failed: %v\n%s", err, out)
		return
	}
	// The layer was unpacked: find /pwned in the vfs layer directories.
	found, _ := filepath.Glob(filepath.Join(store, "vfs", "dir", "*", "pwned"))
	for _, f := range found {
		b, _ := os.ReadFile(f)
		st, _ := os.Stat(f)
		t.Errorf("skopeo copied the unsigned prod/app:v1 through the proxy into containers-storage and unpacked its layer %s: %s (mode %v) holds %q", layer.Digest, f, st.Mode(), b)
	}
	if len(found) == 0 {
		t.Errorf("skopeo copied the unsigned prod/app:v1 (%s) through the proxy into containers-storage:\n%s", evil.Digest, out)
	}
}

// TestRedTeamJunkReferrersHideBundleSignature: cosign v3 signs with a
// Sigstore bundle stored as an OCI 1.1 referrer. On a registry with the
// referrers API (distribution 3, Harbor, zot, the cloud registries) anyone
// who can push to the repository can add referrers to any digest: no tag
// is overwritten, so immutable tags do not stop it. The proxy reads at
// most 100 bundle referrers, the referrers API's first, and reports the
// rest as "not read". So 100 junk bundle-typed referrers whose digests
// sort before the real bundle's (cheap to grind: a nonce annotation) push
// the real signature out of what is read, and the correctly signed image
// is refused: containerd can no longer pull it. (docker-registry 2.8 has
// no referrers API: a front in front of it answers the API as
// distribution 3 does, listing every manifest whose subject is the digest,
// in digest order.)
//
// Fails until junk referrers can no longer hide a valid bundle signature.
func TestRedTeamJunkReferrersHideBundleSignature(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	const repo = "prod/app"
	d := PushRandomImage(t, l.registry+"/"+repo+":v1")
	l.signBundle(t, l.registry+"/"+repo+":v1")

	// The real bundle referrer, as cosign sign --bundle listed it under
	// the referrers tag.
	var tagIndex struct {
		Manifests []craftedDescriptor `json:"manifests"`
	}
	a := send(t, http.MethodGet, "http://"+l.registry+"/v2/"+repo+"/manifests/sha256-"+d.Hex, "Accept", string(types.OCIImageIndex))
	if err := json.Unmarshal(a.body, &tagIndex); err != nil || len(tagIndex.Manifests) != 1 {
		t.Fatalf("referrers tag of %s: %s (%v), want one bundle entry", repo, a, err)
	}
	real := tagIndex.Manifests[0]
	realHex := strings.TrimPrefix(real.Digest, "sha256:")

	// The attacker's referrers: bundle-shaped, subject the signed image,
	// each ground until its digest sorts before the real bundle's.
	self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(),
		Size: int64(len(manifestBytes(t, l.registry+"/"+repo+"@"+d.String())))}
	empty := l.raw.emptyConfig(repo)
	layer := empty
	layer.MediaType = bundleType
	var junk []craftedDescriptor
	for i, tries := 0, 0; len(junk) < 100 && tries < 200000; i++ {
		tries++
		m := craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), ArtifactType: bundleType,
			Config: &empty, Layers: &[]craftedDescriptor{layer}, Subject: &self,
			Annotations: map[string]string{"nonce": strconv.Itoa(i)}}
		body, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		h, _, _ := v1.SHA256(bytes.NewReader(body))
		if h.Hex >= realHex {
			continue
		}
		e := l.raw.manifest(repo, "", m.MediaType, body)
		e.ArtifactType = bundleType
		junk = append(junk, e)
	}
	if len(junk) < 100 {
		t.Skipf("could only grind %d junk referrers below %s", len(junk), real.Digest)
	}

	var attacked atomic.Bool
	apiPath := "/v2/" + repo + "/referrers/" + d.String()
	front := newUpstreamFront(t, l.registry, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != apiPath {
			return false
		}
		entries := []craftedDescriptor{real}
		if attacked.Load() {
			entries = append(entries, junk...)
		}
		slices.SortFunc(entries, func(a, b craftedDescriptor) int { return strings.Compare(a.Digest, b.Digest) })
		body, _ := json.Marshal(referrersIndex(entries))
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		_, _ = w.Write(body)
		return true
	})

	before := l.proxy(t, l.registry, front.host())
	if a := send(t, http.MethodGet, manifestURL(before.addr, repo, "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
		t.Fatalf("before the attack, %s:v1 (bundle-signed) was answered %s, want 200", repo, a)
	}

	attacked.Store(true)
	after := l.proxy(t, l.registry, front.host())
	if a := send(t, http.MethodGet, manifestURL(after.addr, repo, "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
		t.Errorf("after 100 junk referrers were added, %s:v1 (bundle-signed, signature untouched) was answered %s, want 200", repo, a)
	}
	c := NewContainerdClient(t, Mirror{Proxy: after.addr, Upstream: l.registry})
	if res, err := c.Pull(context.Background(), repo+":v1"); err != nil {
		t.Errorf("ctr pull %s:v1 (bundle-signed) failed after junk referrers were added: %v\n%s", repo, err, lastLines(res.Output, 3))
	}
}

// TestRedTeamPrefilledReferrersTagHidesNewBundle: on a registry without
// the referrers API (docker-registry 2.8 here), cosign sign --bundle adds
// its referrer to the OCI index under the referrers tag sha256-<hex>,
// keeping what is there and sorting the entries by digest, with no bound
// (the .sig writer refuses past 100 layers; this one does not). An
// attacker who fills that tag first, with 100 junk bundle referrers whose
// digests start with "000", makes every later bundle signature sort past
// the 100 entries the proxy reads: cosign sign --bundle succeeds, and the
// proxy refuses the correctly signed image.
//
// Fails until a bundle signature added after junk referrers is still
// read (or cosign sign --bundle refuses to write one that will not be).
func TestRedTeamPrefilledReferrersTagHidesNewBundle(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	const repo = "prod/app"
	ref := l.registry + "/" + repo + ":v1"
	d := PushRandomImage(t, ref)
	self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(),
		Size: int64(len(manifestBytes(t, l.registry+"/"+repo+"@"+d.String())))}
	empty := l.raw.emptyConfig(repo)
	layer := empty
	layer.MediaType = bundleType
	var junk []craftedDescriptor
	for i := 0; len(junk) < 100 && i < 5_000_000; i++ {
		m := craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), ArtifactType: bundleType,
			Config: &empty, Layers: &[]craftedDescriptor{layer}, Subject: &self,
			Annotations: map[string]string{"nonce": strconv.Itoa(i)}}
		body, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if h, _, _ := v1.SHA256(bytes.NewReader(body)); !strings.HasPrefix(h.Hex, "000") {
			continue
		}
		e := l.raw.manifest(repo, "", m.MediaType, body)
		e.ArtifactType = bundleType
		junk = append(junk, e)
	}
	if len(junk) < 100 {
		t.Fatalf("ground only %d junk referrers", len(junk))
	}
	l.raw.manifestJSON(repo, "sha256-"+d.Hex, referrersIndex(junk))

	l.signBundle(t, ref) // the defender signs, after the attacker
	p := l.proxy(t, l.registry, l.registry)
	if a := send(t, http.MethodGet, manifestURL(p.addr, repo, "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
		t.Errorf("%s:v1, signed with cosign sign --bundle after the referrers tag was filled with junk, was answered %s, want 200", repo, a)
	}
}

// TestRedTeamBlobGateGaps: the blob gate must not hand out, as a blob,
// bytes a client could take for a manifest that is not admitted (README,
// "Blobs"). Two ways past it, each shown on the bytes of an unsigned
// runnable image manifest uploaded as a blob (no real client was led to
// fetch a manifest as a blob here: this is the gate's own promise):
//
//   - a multi-range request whose first range starts at byte 0
//     ("bytes=0-0,1-") is not classified first, and its 206
//     multipart/byteranges body does not start like JSON, so every byte
//     of the manifest is served;
//   - LooksLikeManifest lower-cases keys with strings.ToLower, but Go's
//     encoding/json (containerd, Docker, skopeo) matches keys with Unicode
//     simple folding, where "ſ" (U+017F) is "s": a manifest whose key is
//     "layerſ" (and without mediaType) has layers for every Go client and
//     none for the gate.
//
// Fails until both are refused with 403 like the plain manifest bytes.
func TestRedTeamBlobGateGaps(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	p := l.proxy(t, l.registry, l.registry)
	const repo = "prod/app"
	img := pushRunnableImage(t, l.registry, repo)
	l.raw.blob(repo, "application/octet-stream", img.raw)
	u := "http://" + p.addr + "/v2/" + repo + "/blobs/" + img.digest.String()
	wantDenied(t, "GET the unadmitted manifest's bytes as a blob", send(t, http.MethodGet, u))
	if a := send(t, http.MethodGet, u, "Range", "bytes=0-0,1-"); a.status/100 == 2 && bytes.Contains(a.body, img.raw[1:]) {
		t.Errorf("GET %s with Range bytes=0-0,1-: proxy answered %d with the unadmitted manifest's bytes in a multipart body; want 403", u, a.status)
	}

	var doc map[string]any
	if err := json.Unmarshal(img.raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["layerſ"] = doc["layers"]
	delete(doc, "layers")
	delete(doc, "mediaType")
	folded, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var asGo struct {
		Layers []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(folded, &asGo); err != nil || len(asGo.Layers) == 0 {
		t.Fatalf("encoding/json does not read %q as layers: %v", "layerſ", err)
	}
	d := l.raw.blob(repo, "application/octet-stream", folded)
	fu := "http://" + p.addr + "/v2/" + repo + "/blobs/" + d.Digest
	if a := send(t, http.MethodGet, fu); a.status != http.StatusForbidden {
		t.Errorf("GET %s (an unadmitted manifest whose layers key is %q, which encoding/json reads as layers): proxy answered %s; want 403", fu, "layerſ", a)
	}
}

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// The gate's regression tests: attacks by someone who can push anything to
// the upstream registry but holds no trusted key (issue 8), each run against
// the real docker-registry and, where a client decides the outcome, the real
// clients behind the proxy. Every test names the finding it proves.

// gateLab is a real upstream registry, a shell with the built cosign and a
// trusted key pair.
type gateLab struct {
	bin      string
	sh       *Shell
	registry string // host:port of the real docker-registry
	raw      *rawRegistry
	trusted  keyPair
}

func newGateLab(t *testing.T) *gateLab {
	t.Helper()
	l := &gateLab{bin: BuildBinary(t), sh: NewShell(t), registry: StartRegistry(t)}
	l.sh.Set("COSIGN_PASSWORD", "")
	l.raw = newRawRegistry(t, l.registry)
	l.trusted = generateKeyPair(t, l.sh, "trusted")
	return l
}

// proxy starts a proxy in front of one upstream, called registry by
// clients and signatures and reached at addr, with policy prod enforcing
// the trusted key on registry/prod/** and everything else denied.
func (l *gateLab) proxy(t *testing.T, registry, addr string) *runningProxy {
	t.Helper()
	return startProxy(t, l.bin, l.sh.Dir, fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[2]s
defaultUpstream: %[1]s
policies:
  - name: prod
    match: ["%[1]s/prod/**"]
    keys: [%[3]s]
defaultPolicy: deny
`, registry, addr, l.trusted.pub))
}

// signBundle signs ref with the trusted key as a Sigstore bundle referrer.
func (l *gateLab) signBundle(t *testing.T, ref string) {
	t.Helper()
	l.sh.MustRun(t, "", "sign", "--bundle", "-key", l.trusted.priv, ref)
}

// manifestURL is the proxy URL of repo's manifest ref.
func manifestURL(proxy, repo, ref string) string {
	return "http://" + proxy + "/v2/" + repo + "/manifests/" + ref
}

// wantDenied checks a proxy answer is 403 with the OCI code DENIED.
func wantDenied(t *testing.T, what string, a httpAnswer) {
	t.Helper()
	if a.status != http.StatusForbidden || a.code != "DENIED" {
		t.Errorf("%s: proxy answered %s, want 403 DENIED", what, a)
	}
}

// signatureIndexOf is the attack of finding 1: an OCI index whose one
// entry declares a signature artifactType, so that it looks like a
// signature artifact that needs no signatures of its own, but names the
// unsigned runnable image img, with a platform (the host's, so that a
// client pulling for this machine picks it) and urls for img's manifest.
func signatureIndexOf(img runnableImage, urls ...string) craftedManifest {
	d := img.descriptor()
	d.ArtifactType = simpleSigningType
	d.URLs = urls
	d.Platform = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	return craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIImageIndex), Manifests: &[]craftedDescriptor{d}}
}

// withoutPlatforms drops the platform of every entry of an index.
func (m craftedManifest) withoutPlatforms() craftedManifest {
	entries := slices.Clone(*m.Manifests)
	for i := range entries {
		entries[i].Platform = nil
	}
	m.Manifests = &entries
	return m
}

// refused reports whether a client's output shows that the proxy refused
// (403 / DENIED) rather than some other failure.
func refused(output string) bool {
	o := strings.ToLower(output)
	return strings.Contains(o, "denied") || strings.Contains(o, "403")
}

// TestGateRunnableContentBehindSignatureArtifactType proves issue 8's
// finding 1 (critical) closed: an index that declares a signature
// artifactType on an entry that is an unsigned runnable image, with urls
// and a platform, is no signature artifact. The proxy must refuse it like
// any unsigned image, containerd must not get the image's config or layers
// (containerd 1.6 fetches the child manifest from the descriptor's urls,
// past the proxy, then its blobs through the proxy), and a blob whose
// bytes are that unadmitted manifest must not be handed out by /blobs/.
// An index shaped exactly like a referrers index may be served, but its
// runnable child inherits nothing. A signed image stays pullable, its
// admitted manifest stays readable as a blob, and its real signature
// artifacts are still served (cosign verify works through the proxy).
func TestGateRunnableContentBehindSignatureArtifactType(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	p := l.proxy(t, l.registry, l.registry)
	m := Mirror{Proxy: p.addr, Upstream: l.registry}

	goodRef := l.registry + "/prod/good:v1"
	good := PushRandomImage(t, goodRef)
	sign(t, l.sh, l.trusted, goodRef)
	l.signBundle(t, goodRef)

	// Variant 1: the child manifest is fetched from the upstream itself.
	evil := pushRunnableImage(t, l.registry, "prod/evil")
	l.raw.manifestJSON("prod/evil", "evil",
		signatureIndexOf(evil, "http://"+l.registry+"/v2/prod/evil/manifests/"+evil.digest.String()))
	// Variant 2: the child manifest's bytes are uploaded as a blob, and
	// urls points at the proxy's own blob pass-through. (docker-registry
	// only accepts an index whose children are manifests of the repository,
	// so the child is pushed as a manifest too.)
	evilBlob := pushRunnableImage(t, l.registry, "prod/evilblob")
	l.raw.blob("prod/evilblob", "application/octet-stream", evilBlob.raw)
	evilBlobURL := "http://" + p.addr + "/v2/prod/evilblob/blobs/" + evilBlob.digest.String()
	l.raw.manifestJSON("prod/evilblob", "evil", signatureIndexOf(evilBlob, evilBlobURL))
	// Variant 3: an index shaped exactly like a referrers index (no urls,
	// no platform), whose child is an unsigned runnable image.
	plain := pushRunnableImage(t, l.registry, "prod/evilplain")
	l.raw.manifestJSON("prod/evilplain", "evil", signatureIndexOf(plain).withoutPlatforms())

	attacks := []struct {
		repo string
		img  runnableImage
		// harmless: the index leads no client to runnable content by
		// itself, so the proxy may serve it; its child must be refused.
		harmless bool
	}{{"prod/evil", evil, false}, {"prod/evilblob", evilBlob, false}, {"prod/evilplain", plain, true}}

	// Indexes that break one condition each of a signature artifact: a
	// platform without urls, urls without a platform, a Docker manifest
	// entry. Each must need signatures like any image.
	oneFlaw := map[string]craftedManifest{}
	onlyPlatform := pushRunnableImage(t, l.registry, "prod/flaw-platform")
	oneFlaw["prod/flaw-platform"] = signatureIndexOf(onlyPlatform)
	onlyURLs := pushRunnableImage(t, l.registry, "prod/flaw-urls")
	oneFlaw["prod/flaw-urls"] = signatureIndexOf(onlyURLs,
		"http://"+l.registry+"/v2/prod/flaw-urls/manifests/"+onlyURLs.digest.String()).withoutPlatforms()
	dockerChild := PushRandomImage(t, l.registry+"/prod/flaw-docker:child")
	oneFlaw["prod/flaw-docker"] = craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIImageIndex),
		Manifests: &[]craftedDescriptor{{
			MediaType: string(types.DockerManifestSchema2), Digest: dockerChild.String(), ArtifactType: simpleSigningType,
			Size: int64(len(manifestBytes(t, l.registry+"/prod/flaw-docker@"+dockerChild.String()))),
		}}}
	for repo, idx := range oneFlaw {
		l.raw.manifestJSON(repo, "evil", idx)
	}

	t.Run("proxy refuses the index", func(t *testing.T) {
		repos := []string{"prod/flaw-platform", "prod/flaw-urls", "prod/flaw-docker"}
		for _, a := range attacks {
			if !a.harmless {
				repos = append(repos, a.repo)
			}
		}
		for _, repo := range repos {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				for _, q := range []string{"", "?ns=" + l.registry} {
					ans := send(t, method, manifestURL(p.addr, repo, "evil")+q, "Accept", manifestAccept)
					if method == http.MethodHead {
						if ans.status != http.StatusForbidden {
							t.Errorf("HEAD %s:evil%s: proxy answered %d, want 403", repo, q, ans.status)
						}
						continue
					}
					wantDenied(t, "GET "+repo+":evil"+q, ans)
				}
			}
		}
	})

	t.Run("proxy refuses the unsigned children", func(t *testing.T) {
		for _, a := range attacks {
			wantDenied(t, "GET "+a.repo+"@"+a.img.digest.String(),
				send(t, http.MethodGet, manifestURL(p.addr, a.repo, a.img.digest.String()), "Accept", manifestAccept))
		}
	})

	t.Run("proxy refuses an unadmitted manifest as a blob", func(t *testing.T) {
		for _, q := range []string{"", "?ns=" + l.registry} {
			wantDenied(t, "GET "+evilBlobURL+q, send(t, http.MethodGet, evilBlobURL+q))
		}
	})

	t.Run("proxy serves an admitted manifest as a blob", func(t *testing.T) {
		if a := send(t, http.MethodGet, manifestURL(p.addr, "prod/good", "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
			t.Fatalf("GET prod/good:v1 (signed): proxy answered %s, want 200", a)
		}
		// docker-registry does not serve a manifest under /blobs/ (404
		// BLOB_UNKNOWN): upload its bytes as a blob, as a registry that
		// does would hold them.
		raw := manifestBytes(t, l.registry+"/prod/good@"+good.String())
		l.raw.blob("prod/good", "application/octet-stream", raw)
		u := "http://" + p.addr + "/v2/prod/good/blobs/" + good.String()
		a := send(t, http.MethodGet, u)
		if a.status != http.StatusOK || !bytes.Equal(a.body, raw) {
			t.Errorf("GET %s (an admitted manifest's bytes): proxy answered %s, want 200 with the manifest", u, a)
		}
	})

	t.Run("proxy serves real signature artifacts", func(t *testing.T) {
		for _, tag := range []string{"sha256-" + good.Hex + ".sig", "sha256-" + good.Hex} {
			if a := send(t, http.MethodGet, manifestURL(p.addr, "prod/good", tag), "Accept", manifestAccept); a.status != http.StatusOK {
				t.Errorf("GET prod/good:%s (written by cosign sign): proxy answered %s, want 200", tag, a)
			}
		}
		var idx v1.IndexManifest
		a := send(t, http.MethodGet, "http://"+l.registry+"/v2/prod/good/manifests/sha256-"+good.Hex, "Accept", string(types.OCIImageIndex))
		if err := json.Unmarshal(a.body, &idx); err != nil || len(idx.Manifests) != 1 {
			t.Fatalf("the referrers tag of prod/good upstream: %s (%v), want an index of the bundle", a, err)
		}
		ref := idx.Manifests[0].Digest.String()
		if a := send(t, http.MethodGet, manifestURL(p.addr, "prod/good", ref), "Accept", manifestAccept); a.status != http.StatusOK {
			t.Errorf("GET prod/good@%s (the bundle referrer cosign sign --bundle wrote): proxy answered %s, want 200", ref, a)
		}
	})

	t.Run("containerd", func(t *testing.T) {
		t.Parallel()
		c := containerdOf(t, NewContainerdClient(t, m))
		ctx := context.Background()
		for i, a := range attacks {
			ns := "evil" + strconv.Itoa(i)
			out, err := ctrPull(ctx, c, ns, a.repo+":evil")
			if err == nil {
				t.Errorf("ctr pulled %s/%s:evil, an unsigned runnable image behind a signature artifactType; want refused\n%s", l.registry, a.repo, lastLines(out, 12))
			} else if !refused(out) {
				t.Errorf("ctr failed to pull %s:evil, but not with the proxy's 403: %v\n%s", a.repo, err, lastLines(out, 12))
			}
			if imgs := ctrImages(ctx, t, c, ns); len(imgs) > 0 {
				t.Errorf("after pulling %s:evil containerd lists images %v, want none", a.repo, imgs)
			}
			held := ctrContent(ctx, t, c)
			for _, d := range append([]string{a.img.digest.String()}, a.img.blobs...) {
				if ns, ok := held[d]; ok {
					t.Errorf("containerd's content store (namespace %s) holds %s of the unsigned image behind %s:evil", ns, d, a.repo)
				}
			}
		}
		// Control: a signed image still pulls.
		res, err := c.Pull(ctx, "prod/good:v1")
		if err != nil {
			t.Fatalf("ctr pull prod/good:v1 (signed) failed: %v\n%s", err, res.Output)
		}
		if res.Digest != good.String() {
			t.Errorf("ctr pulled prod/good:v1 as %s, want %s", res.Digest, good)
		}
	})

	for _, cm := range clientsNamed(t, "crane", "skopeo-mirror", "skopeo-direct", "docker") {
		t.Run(cm.name, func(t *testing.T) {
			t.Parallel()
			c := cm.make(t, m)
			for _, a := range attacks {
				res, err := c.Pull(context.Background(), a.repo+":evil")
				if err == nil {
					t.Errorf("%s pulled %s:evil (digest %s children %v), want refused\n%s", c.Name(), a.repo, res.Digest, res.Children, res.Output)
				} else if !refused(res.Output) && !(a.harmless && c.Name() == "docker") {
					t.Errorf("%s failed to pull %s:evil, but not with the proxy's refusal: %v\n%s", c.Name(), a.repo, err, res.Output)
				} else {
					t.Logf("%s failed to pull %s:evil, as it must: %s", c.Name(), a.repo, lastLines(res.Output, 3))
				}
			}
		})
	}
}

// lastLines is the last n lines of a client's output (ctr repeats its
// progress table).
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// manifestBytes reads the exact bytes of a manifest from the registry.
func manifestBytes(t *testing.T, ref string) []byte {
	t.Helper()
	repo, digest, _ := strings.Cut(ref, "@")
	host, path, _ := strings.Cut(repo, "/")
	a := send(t, http.MethodGet, "http://"+host+"/v2/"+path+"/manifests/"+digest, "Accept", manifestAccept)
	if a.status != http.StatusOK {
		t.Fatalf("reading %s: %s", ref, a)
	}
	return a.body
}

// TestGateCredentialsStayWithTheirUpstream proves issue 8's finding 3
// closed: with two upstreams, a client's Authorization (issued for the
// default upstream, whose challenge the /v2/ ping returns) is never
// forwarded to the other upstream when a request names it, by
// /v2/<registry>/<repository>/ prefix or by ?ns=<registry>: not on
// manifests, not on the signature lookups and payload reads the proxy
// makes for them, not on blobs, tags, referrers or the ping, and not when
// that upstream challenges with 401. Nor does it follow a redirect off the
// default upstream. Each upstream is a recording front in front of a real
// docker-registry.
func TestGateCredentialsStayWithTheirUpstream(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	otherRegistry := StartRegistry(t)
	elsewhere := newUpstreamFront(t, l.registry, nil)
	def := newUpstreamFront(t, l.registry, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/v2/prod/redirected/manifests/") {
			http.Redirect(w, r, "http://"+elsewhere.host()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return true
		}
		return false
	})
	other := newUpstreamFront(t, otherRegistry, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/v2/private/") {
			w.Header().Set("WWW-Authenticate", `Basic realm="other"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return true
		}
		return false
	})
	A, B := def.host(), other.host()

	// Images are pushed to the registries and signed through the fronts, so
	// that signatures name the registry as clients of the proxy do.
	type image struct {
		repo   string
		digest v1.Hash
		layer  string
	}
	push := func(registry, front, repo string) image {
		d := PushRandomImage(t, registry+"/"+repo+":v1")
		sign(t, l.sh, l.trusted, front+"/"+repo+":v1")
		return image{repo: repo, digest: d, layer: firstLayer(t, registry+"/"+repo+"@"+d.String())}
	}
	app := push(l.registry, A, "prod/app")
	redirected := push(l.registry, A, "prod/redirected")
	byPrefix := push(otherRegistry, B, "prod/one")
	byNS := push(otherRegistry, B, "prod/two")

	// extraA and extraB are added to the upstreams' entries.
	config := func(extraA, extraB string) string {
		return fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s%[4]s
  - registry: %[2]s
    url: http://%[2]s%[5]s
defaultUpstream: %[1]s
policies:
  - name: prod-default
    match: ["%[1]s/prod/**"]
    keys: [%[3]s]
  - name: prod-other
    match: ["%[2]s/prod/**", "%[2]s/private/**"]
    keys: [%[3]s]
defaultPolicy: deny
`, A, B, l.trusted.pub, extraA, extraB)
	}
	p := startProxy(t, l.bin, l.sh.Dir, config("", ""))
	for _, f := range []*upstreamFront{def, other, elsewhere} {
		f.reset()
	}

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:issued-for-"+A))
	ask := func(t *testing.T, method, u string, want int) {
		t.Helper()
		a := send(t, method, u, "Authorization", auth, "Accept", manifestAccept)
		if want != 0 && a.status != want {
			t.Errorf("%s %s: proxy answered %s, want %d", method, u, a, want)
		}
	}
	// Every request a client can send for the other upstream, in both ways
	// of naming it.
	forms := []struct {
		name   string
		img    image
		prefix string // /v2/<prefix><repository>/...
		query  string
	}{
		{"registry prefix", byPrefix, B + "/", ""},
		{"ns parameter", byNS, "", "?ns=" + B},
	}
	for _, f := range forms {
		base := "http://" + p.addr + "/v2/" + f.prefix
		ask(t, http.MethodGet, base+f.img.repo+"/manifests/v1"+f.query, http.StatusOK)
		ask(t, http.MethodHead, base+f.img.repo+"/manifests/v1"+f.query, http.StatusOK)
		ask(t, http.MethodGet, base+f.img.repo+"/manifests/"+f.img.digest.String()+f.query, http.StatusOK)
		ask(t, http.MethodGet, base+f.img.repo+"/blobs/"+f.img.layer+f.query, http.StatusOK)
		ask(t, http.MethodGet, base+f.img.repo+"/tags/list"+f.query, http.StatusOK)
		ask(t, http.MethodGet, base+f.img.repo+"/referrers/"+f.img.digest.String()+f.query, 0)
		ask(t, http.MethodGet, base+"private/app/manifests/v1"+f.query, http.StatusUnauthorized)
		ask(t, http.MethodGet, base+"private/app/blobs/"+f.img.layer+f.query, http.StatusUnauthorized)
	}
	ask(t, http.MethodGet, "http://"+p.addr+"/v2/?ns="+B, 0)

	t.Run("other upstream never sees the credentials", func(t *testing.T) {
		seen := other.requests()
		if leaks := withAuthorization(seen); len(leaks) > 0 {
			t.Errorf("upstream %s (not the default) received the client's credentials on %d of its %d requests:\n%s",
				B, len(leaks), len(seen), listRequests(leaks))
		}
		// The requests above must really have reached it, signature
		// lookups included, or this test proves nothing.
		for _, f := range forms {
			for _, want := range []string{
				"/v2/" + f.img.repo + "/manifests/v1",
				"/v2/" + f.img.repo + "/manifests/sha256-" + f.img.digest.Hex + ".sig",
				"/v2/" + f.img.repo + "/blobs/" + f.img.layer,
			} {
				if !sawPath(seen, want) {
					t.Errorf("upstream %s never received %s (%s); it saw:\n%s", B, want, f.name, listRequests(seen))
				}
			}
		}
	})

	t.Run("redirect target never sees the credentials", func(t *testing.T) {
		ask(t, http.MethodGet, "http://"+p.addr+"/v2/"+redirected.repo+"/manifests/v1", http.StatusOK)
		seen := elsewhere.requests()
		if !sawPath(seen, "/v2/"+redirected.repo+"/manifests/v1") {
			t.Fatalf("the redirect target never received the manifest request; it saw:\n%s", listRequests(seen))
		}
		if leaks := withAuthorization(seen); len(leaks) > 0 {
			t.Errorf("redirect target %s received the client's credentials:\n%s", elsewhere.host(), listRequests(leaks))
		}
	})

	// Control: the default upstream, for which the client holds these
	// credentials, still gets them (an upstream that needs them works).
	t.Run("default upstream gets the credentials", func(t *testing.T) {
		ask(t, http.MethodGet, "http://"+p.addr+"/v2/"+app.repo+"/manifests/v1", http.StatusOK)
		want := "/v2/" + app.repo + "/manifests/v1"
		if sawWithAuth(def.requests(), want, auth) {
			return
		}
		t.Errorf("default upstream %s never received GET %s with the client's credentials; it saw:\n%s", A, want, listRequests(def.requests()))
	})

	// The per-upstream switch turns both around.
	t.Run("forwardCredentials decides per upstream", func(t *testing.T) {
		p := startProxy(t, l.bin, l.sh.Dir, config("\n    forwardCredentials: false", "\n    forwardCredentials: true"))
		def.reset()
		other.reset()
		ask(t, http.MethodGet, "http://"+p.addr+"/v2/"+B+"/"+byPrefix.repo+"/manifests/v1", http.StatusOK)
		ask(t, http.MethodGet, "http://"+p.addr+"/v2/"+app.repo+"/manifests/v1", http.StatusOK)
		want := "/v2/" + byPrefix.repo + "/manifests/v1"
		if !sawWithAuth(other.requests(), want, auth) {
			t.Errorf("upstream %s (forwardCredentials: true) never received GET %s with the client's credentials; it saw:\n%s",
				B, want, listRequests(other.requests()))
		}
		if leaks := withAuthorization(def.requests()); len(leaks) > 0 {
			t.Errorf("default upstream %s (forwardCredentials: false) received the client's credentials:\n%s", A, listRequests(leaks))
		}
	})
}

// sawWithAuth reports whether a request for exactly uri carried auth.
func sawWithAuth(seen []recordedRequest, uri, auth string) bool {
	for _, r := range seen {
		if r.URI == uri && r.Authorization == auth {
			return true
		}
	}
	return false
}

// firstLayer returns the digest of the first layer of an image manifest.
func firstLayer(t *testing.T, ref string) string {
	t.Helper()
	m, err := v1.ParseManifest(bytes.NewReader(manifestBytes(t, ref)))
	if err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %s: no layers (%v)", ref, err)
	}
	return m.Layers[0].Digest.String()
}

// sawPath reports whether a request for exactly path (without query) was
// seen.
func sawPath(seen []recordedRequest, path string) bool {
	for _, r := range seen {
		if p, _, _ := strings.Cut(r.URI, "?"); p == path {
			return true
		}
	}
	return false
}

// withAuthorization returns the requests that carried an Authorization
// header.
func withAuthorization(seen []recordedRequest) []recordedRequest {
	var out []recordedRequest
	for _, r := range seen {
		if r.Authorization != "" {
			out = append(out, r)
		}
	}
	return out
}

func listRequests(seen []recordedRequest) string {
	var b strings.Builder
	for _, r := range seen {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}

// junkReferrers pushes n distinct bundle-shaped referrer manifests of
// subject to repo (their bundle layer is "{}", no bundle at all; pad adds
// that many bytes of annotation to each) and returns their index entries,
// artifactType set. Large ones are pushed a few at a time: docker-registry
// spends a third of a second on each 4 MiB manifest.
func junkReferrers(t *testing.T, r *rawRegistry, repo string, subject craftedDescriptor, n, pad int) []craftedDescriptor {
	t.Helper()
	empty := r.emptyConfig(repo)
	layer := empty
	layer.MediaType = bundleType
	padding := strings.Repeat("0", pad)
	entries := make([]craftedDescriptor, n)
	var g errgroup.Group
	g.SetLimit(4)
	for i := range n {
		g.Go(func() error {
			m := craftedManifest{
				SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), ArtifactType: bundleType,
				Config: &empty, Layers: &[]craftedDescriptor{layer}, Subject: &subject,
				Annotations: map[string]string{"junk": strconv.Itoa(i)},
			}
			if pad > 0 {
				m.Annotations["padding"] = padding
			}
			body, err := json.Marshal(m)
			if err != nil {
				return err
			}
			d, err := r.putManifest(repo, "", m.MediaType, body)
			d.ArtifactType = bundleType
			entries[i] = d
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("pushing junk referrers: %v", err)
	}
	return entries
}

// referrersIndex is an OCI index of referrer entries (the referrers tag
// schema).
func referrersIndex(entries []craftedDescriptor) craftedManifest {
	return craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIImageIndex), Manifests: &entries}
}

// TestGateBadSignatureContainerIsNoVeto proves issue 8's finding 4 closed:
// one broken signature container, pushed by someone without a key, does
// not get a correctly signed digest refused. Each case is its own signed
// image; the proxy that checks it before the attack and the one that
// checks it after are different processes, so no cached decision hides
// the attack. After it, the HTTP answer must still be 200 and containerd
// must still pull the image.
func TestGateBadSignatureContainerIsNoVeto(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	type vetoCase struct {
		name   string
		repo   string
		bundle bool // signed with --bundle rather than a .sig layer
		attack func(t *testing.T, repo string, d v1.Hash, self craftedDescriptor)
	}
	cases := []vetoCase{
		{
			name: "docker manifest list under the referrers tag", repo: "prod/veto-list",
			attack: func(t *testing.T, repo string, d v1.Hash, self craftedDescriptor) {
				self.Platform = &v1.Platform{OS: "linux", Architecture: "amd64"}
				l.raw.manifestJSON(repo, "sha256-"+d.Hex, craftedManifest{
					SchemaVersion: 2, MediaType: string(types.DockerManifestList), Manifests: &[]craftedDescriptor{self}})
			},
		},
		{
			name: "101 junk bundle referrers under the referrers tag", repo: "prod/veto-referrers",
			attack: func(t *testing.T, repo string, d v1.Hash, self craftedDescriptor) {
				l.raw.manifestJSON(repo, "sha256-"+d.Hex, referrersIndex(junkReferrers(t, l.raw, repo, self, 101, 0)))
			},
		},
		{
			name: "101 junk layers under the .sig tag of a bundle-signed image", repo: "prod/veto-sig", bundle: true,
			attack: func(t *testing.T, repo string, d v1.Hash, _ craftedDescriptor) {
				empty := l.raw.emptyConfig(repo)
				layer := empty
				layer.MediaType = simpleSigningType
				layers := make([]craftedDescriptor, 101)
				for i := range layers {
					layers[i] = layer
				}
				l.raw.manifestJSON(repo, "sha256-"+d.Hex+".sig", craftedManifest{
					SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: &empty, Layers: &layers})
			},
		},
	}

	digests := make([]v1.Hash, len(cases))
	for i, tc := range cases {
		ref := l.registry + "/" + tc.repo + ":v1"
		digests[i] = PushRandomImage(t, ref)
		if tc.bundle {
			l.signBundle(t, ref)
		} else {
			sign(t, l.sh, l.trusted, ref)
		}
	}
	unsigned := "prod/veto-unsigned"
	PushRandomImage(t, l.registry+"/"+unsigned+":v1")

	before := l.proxy(t, l.registry, l.registry)
	for _, tc := range cases {
		if a := send(t, http.MethodGet, manifestURL(before.addr, tc.repo, "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
			t.Fatalf("before any attack, %s:v1 (signed) was answered %s, want 200", tc.repo, a)
		}
	}
	wantDenied(t, "before any attack, unsigned "+unsigned+":v1", send(t, http.MethodGet, manifestURL(before.addr, unsigned, "v1"), "Accept", manifestAccept))

	for i, tc := range cases {
		self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: digests[i].String(),
			Size: int64(len(manifestBytes(t, l.registry+"/"+tc.repo+"@"+digests[i].String())))}
		tc.attack(t, tc.repo, digests[i], self)
	}

	after := l.proxy(t, l.registry, l.registry)
	m := Mirror{Proxy: after.addr, Upstream: l.registry}
	c := NewContainerdClient(t, m)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if a := send(t, http.MethodGet, manifestURL(after.addr, tc.repo, "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
				t.Errorf("after the attack, %s:v1 (signed) was answered %s, want 200 as before", tc.repo, a)
			}
			res, err := c.Pull(context.Background(), tc.repo+":v1")
			if err != nil {
				t.Errorf("ctr pull %s:v1 (signed) failed after the attack: %v\n%s", tc.repo, err, res.Output)
			} else if res.Digest != digests[i].String() {
				t.Errorf("ctr pulled %s:v1 as %s, want %s", tc.repo, res.Digest, digests[i])
			}
		})
	}
	t.Run("unsigned still refused", func(t *testing.T) {
		wantDenied(t, "after the attacks, unsigned "+unsigned+":v1", send(t, http.MethodGet, manifestURL(after.addr, unsigned, "v1"), "Accept", manifestAccept))
	})
}

// TestGateReferrerManifestReadIsBounded proves issue 8's finding 5 closed:
// a referrer manifest is read like a payload, at most 64 KiB, not up to
// the 4 MiB manifest limit. A signed image gets 100 bundle-shaped
// referrers of 4 MiB each (padding) under its referrers tag; one cold
// pull through the proxy must still be admitted (by the .sig signature)
// and must read less than 1 MiB from upstream, counted by a front that
// sits between the proxy and the real registry.
func TestGateReferrerManifestReadIsBounded(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	front := newUpstreamFront(t, l.registry, nil)
	U := front.host()
	const repo = "prod/amplified"
	d := PushRandomImage(t, l.registry+"/"+repo+":v1")
	sign(t, l.sh, l.trusted, U+"/"+repo+":v1")
	self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(),
		Size: int64(len(manifestBytes(t, l.registry+"/"+repo+"@"+d.String())))}
	// Each referrer manifest just under the 4 MiB manifest limit.
	const padding = 4<<20 - 4<<10
	entries := junkReferrers(t, l.raw, repo, self, 100, padding)
	for _, e := range entries {
		if e.Size <= 4<<20-8<<10 || e.Size > 4<<20 {
			t.Fatalf("referrer manifest %s is %d bytes, want just under 4 MiB", e.Digest, e.Size)
		}
	}
	l.raw.manifestJSON(repo, "sha256-"+d.Hex, referrersIndex(entries))

	p := l.proxy(t, U, U)
	front.reset()
	// One cold pull's decision: the manifest by tag, as a client resolves
	// it (no client retries that would multiply the reads).
	a := send(t, http.MethodGet, manifestURL(p.addr, repo, "v1"), "Accept", manifestAccept)
	if a.status != http.StatusOK {
		t.Errorf("GET %s:v1 (signed with a .sig signature) through the proxy: %s, want 200", repo, a)
	} else if got := a.header.Get("Docker-Content-Digest"); got != d.String() {
		t.Errorf("GET %s:v1 served digest %q, want %s", repo, got, d)
	}
	n := front.bytesServed()
	referrerGets := 0
	for _, r := range front.requests() {
		for _, e := range entries {
			if strings.HasSuffix(strings.SplitN(r.URI, "?", 2)[0], "/manifests/"+e.Digest) {
				referrerGets++
			}
		}
	}
	t.Logf("one cold pull read %d bytes from upstream; %d GETs of the 4 MiB referrer manifests", n, referrerGets)
	if n >= 1<<20 {
		t.Errorf("one cold pull of %s:v1 made the proxy read %d bytes (%.1f MiB) from upstream, want < 1 MiB: "+
			"it fetched %d of the 100 referrer manifests of 4 MiB instead of refusing them past 64 KiB",
			repo, n, float64(n)/(1<<20), referrerGets)
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/verifier"
)

// manifestAccept is what clients send when they resolve a reference: every
// manifest and index media type.
var manifestAccept = strings.Join([]string{
	string(types.OCIManifestSchema1), string(types.OCIImageIndex),
	string(types.DockerManifestSchema2), string(types.DockerManifestList),
}, ", ")

// runningProxy is a `cosign proxy --config FILE` subprocess.
type runningProxy struct {
	addr string // 127.0.0.1:port
	proc *Process
}

// startProxy writes config (a YAML with %[1]s standing for the listen
// address) into dir and starts the built cosign binary on it. It waits until
// /v2/ answers; the proxy is stopped when the test ends and its log is shown
// if the test failed.
func startProxy(t *testing.T, bin, dir, config string) *runningProxy {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	path := filepath.Join(dir, "proxy-"+strings.ReplaceAll(addr, ":", "-")+".yaml")
	writeFile(t, path, fmt.Sprintf(config, addr))
	p := StartProcess(t, exec.Command(bin, "proxy", "--config", path))
	if err := WaitHTTP("http://"+addr+"/healthz", 30*time.Second, p.Exited()); err != nil {
		t.Fatalf("cosign proxy did not start: %v\n%s", err, p.Output())
	}
	return &runningProxy{addr: addr, proc: p}
}

// denial is what the proxy answered for a refused manifest.
type denial struct {
	status  int
	code    string
	message string
}

// askProxy sends a manifest GET or HEAD to the proxy with a plain HTTP
// client, the way a client resolves a reference, and returns the OCI error
// of a GET it refused.
func askProxy(t *testing.T, proxy, method, path string) denial {
	t.Helper()
	repo, ref := splitPath(path)
	req, err := http.NewRequest(method, "http://"+proxy+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestAccept)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("asking the proxy for %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("reading the proxy's answer for %s: %v", path, err)
	}
	d := denial{status: resp.StatusCode}
	if resp.StatusCode/100 == 2 || method == http.MethodHead {
		return d
	}
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("proxy answered %s for %s with no OCI error body: %q", resp.Status, path, body)
	}
	d.code, d.message = e.Errors[0].Code, e.Errors[0].Message
	return d
}

// expectDenied asks the proxy for path and checks it refuses it with 403
// DENIED and a message that names the digest and the reason, and that a
// HEAD is refused too. It returns the message, which the clients must show.
func expectDenied(t *testing.T, proxy, path string, digest v1.Hash, reason verifier.Reason) string {
	t.Helper()
	d := askProxy(t, proxy, http.MethodGet, path)
	if d.status != http.StatusForbidden || d.code != "DENIED" {
		t.Fatalf("proxy answered GET %s with %d %s %q, want 403 DENIED", path, d.status, d.code, d.message)
	}
	if !strings.Contains(d.message, digest.Hex) {
		t.Errorf("DENIED message for %s does not name the digest %s: %q", path, digest, d.message)
	}
	if !strings.Contains(d.message, string(reason)) {
		t.Errorf("DENIED message for %s does not give the reason %q: %q", path, reason, d.message)
	}
	if h := askProxy(t, proxy, http.MethodHead, path); h.status != http.StatusForbidden {
		t.Errorf("proxy answered HEAD %s with %d, want 403 as for GET", path, h.status)
	}
	return d.message
}

// splitPath splits "repo:tag" or "repo@sha256:..." into repository and
// reference.
func splitPath(path string) (repo, ref string) {
	if i := strings.Index(path, "@"); i >= 0 {
		return path[:i], path[i+1:]
	}
	i := strings.LastIndex(path, ":")
	return path[:i], path[i+1:]
}

// keyPair is a key pair written by `cosign generate-key-pair`.
type keyPair struct{ priv, pub string }

// generateKeyPair runs the built cosign with COSIGN_PASSWORD empty: a plain
// PKCS#8 private key.
func generateKeyPair(t *testing.T, sh *Shell, name string) keyPair {
	t.Helper()
	sh.MustRun(t, "", "generate-key-pair", "--output-key-prefix", name)
	return keyPair{priv: sh.Path(name + ".key"), pub: sh.Path(name + ".pub")}
}

// sign signs ref with the key through the built cosign.
func sign(t *testing.T, sh *Shell, key keyPair, ref string) {
	t.Helper()
	sh.MustRun(t, "", "sign", "-key", key.priv, ref)
}

// pushIndex pushes an OCI index of a linux/amd64 and a linux/arm64 random
// image to ref and returns the index digest and its children's digests.
func pushIndex(t *testing.T, ref string) (v1.Hash, []string) {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, crane.GetOptions(crane.Insecure).Remote...); err != nil {
		t.Fatalf("pushing index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, m := range im.Manifests {
		children = append(children, m.Digest.String())
	}
	return d, children
}

// gateFixture is an upstream registry holding one image per gate case, and
// the proxy in front of it.
type gateFixture struct {
	bin           string
	sh            *Shell
	upstream      string
	proxy         *runningProxy
	trusted       keyPair
	wrong         keyPair
	digests       map[string]v1.Hash // repository path with tag -> digest
	children      []string           // children of prod/multi:v1
	unsignedChild v1.Hash            // a child of prod/multi-unsigned:v1
}

// ref is the upstream reference of a repository path.
func (f *gateFixture) ref(path string) string { return f.upstream + "/" + path }

// gateCase is one pull every client makes through the proxy.
type gateCase struct {
	name string
	path string // what the client pulls
	// digest is what path resolves to upstream: the digest an admitted pull
	// must hold and a refusal must name.
	digest v1.Hash
	admit  bool
	// reason, for a refusal: what the DENIED message must give as the cause.
	reason verifier.Reason
	// children, for an admitted index: the child digests.
	children []string
}

// newGateFixture starts the upstream, makes the keys, pushes and signs the
// images of every case, and starts the proxy with the prod policy.
func newGateFixture(t *testing.T, clients []string) *gateFixture {
	t.Helper()
	f := &gateFixture{bin: BuildBinary(t), sh: NewShell(t), upstream: StartRegistry(t), digests: map[string]v1.Hash{}}
	f.sh.Set("COSIGN_PASSWORD", "")
	f.trusted = generateKeyPair(t, f.sh, "trusted")
	f.wrong = generateKeyPair(t, f.sh, "wrong")

	push := func(path string) v1.Hash {
		d := PushRandomImage(t, f.ref(path))
		f.digests[path] = d
		return d
	}
	push("prod/signed:v1")
	sign(t, f.sh, f.trusted, f.ref("prod/signed:v1"))
	push("prod/unsigned:v1")
	push("prod/wrongkey:v1")
	sign(t, f.sh, f.wrong, f.ref("prod/wrongkey:v1"))
	push("other/app:v1") // signed, but no policy matches: defaultPolicy deny
	sign(t, f.sh, f.trusted, f.ref("other/app:v1"))

	// Replay: the signature of prod/replay:signed copied under the
	// signature tag of the unsigned prod/replay:v1 in the same repository.
	signed := push("prod/replay:signed")
	sign(t, f.sh, f.trusted, f.ref("prod/replay:signed"))
	unsigned := push("prod/replay:v1")
	copyRef(t, f.ref("prod/replay:"+sigTag(signed)), f.ref("prod/replay:"+sigTag(unsigned)))

	// Identity: the image of prod/signed and its signature copied to
	// prod/copied; the payload names prod/signed.
	copyRef(t, f.ref("prod/signed:v1"), f.ref("prod/copied:v1"))
	copyRef(t, f.ref("prod/signed:"+sigTag(f.digests["prod/signed:v1"])), f.ref("prod/copied:"+sigTag(f.digests["prod/signed:v1"])))
	f.digests["prod/copied:v1"] = f.digests["prod/signed:v1"]

	idx, children := pushIndex(t, f.ref("prod/multi:v1"))
	sign(t, f.sh, f.trusted, f.ref("prod/multi:v1"))
	f.digests["prod/multi:v1"], f.children = idx, children
	uidx, uchildren := pushIndex(t, f.ref("prod/multi-unsigned:v1"))
	f.digests["prod/multi-unsigned:v1"] = uidx
	f.unsignedChild = parseHash(t, uchildren[0])

	// One moved-tag repository per client: signed now, moved later.
	for _, c := range clients {
		p := "prod/moved-" + c + ":v1"
		push(p)
		sign(t, f.sh, f.trusted, f.ref(p))
	}

	f.proxy = startProxy(t, f.bin, f.sh.Dir, fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
defaultUpstream: %[1]s
policies:
  - name: prod
    match: ["%[1]s/prod/**"]
    keys: [%[2]s]
defaultPolicy: deny
`, f.upstream, f.trusted.pub))
	return f
}

// sigTag is the legacy signature tag of a digest.
func sigTag(d v1.Hash) string { return d.Algorithm + "-" + d.Hex + ".sig" }

// copyRef copies a manifest and its blobs from src to dst upstream.
func copyRef(t *testing.T, src, dst string) {
	t.Helper()
	if err := crane.Copy(src, dst, crane.Insecure); err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

// cases are the pulls every client makes, in order, before the moved-tag
// case.
func (f *gateFixture) cases() []gateCase {
	signed := f.digests["prod/signed:v1"]
	return []gateCase{
		{name: "signed tag admitted", path: "prod/signed:v1", digest: signed, admit: true},
		{name: "signed digest admitted", path: "prod/signed@" + signed.String(), digest: signed, admit: true},
		{name: "unsigned refused", path: "prod/unsigned:v1", digest: f.digests["prod/unsigned:v1"], reason: verifier.ReasonNoSignatures},
		{name: "unsigned digest refused", path: "prod/unsigned@" + f.digests["prod/unsigned:v1"].String(), digest: f.digests["prod/unsigned:v1"], reason: verifier.ReasonNoSignatures},
		{name: "wrong key refused", path: "prod/wrongkey:v1", digest: f.digests["prod/wrongkey:v1"], reason: verifier.ReasonUntrusted},
		{name: "replayed signature refused", path: "prod/replay:v1", digest: f.digests["prod/replay:v1"], reason: verifier.ReasonDigestMismatch},
		{name: "signature of another repository refused", path: "prod/copied:v1", digest: signed, reason: verifier.ReasonIdentityMismatch},
		{name: "no policy matches refused", path: "other/app:v1", digest: f.digests["other/app:v1"], reason: verifier.ReasonNoPolicy},
		{name: "signed index admitted with children", path: "prod/multi:v1", digest: f.digests["prod/multi:v1"], admit: true, children: f.children},
		{name: "unsigned index refused", path: "prod/multi-unsigned:v1", digest: f.digests["prod/multi-unsigned:v1"], reason: verifier.ReasonNoSignatures},
		{name: "child of unsigned index refused", path: "prod/multi-unsigned@" + f.unsignedChild.String(), digest: f.unsignedChild, reason: verifier.ReasonNoSignatures},
	}
}

// checkPull runs one case with one client: an admitted pull must succeed
// and hold the expected digest; a refused one must fail and show the
// proxy's DENIED message.
func checkPull(t *testing.T, c Client, tc gateCase, message string) {
	t.Helper()
	res, err := c.Pull(context.Background(), tc.path)
	if tc.admit {
		if err != nil {
			t.Fatalf("%s pull %s failed, want admitted: %v\n%s", c.Name(), tc.path, err, res.Output)
		}
		checkHeld(t, c, tc, res)
		return
	}
	if err == nil {
		t.Fatalf("%s pulled %s (digest %s), want refused\n%s", c.Name(), tc.path, res.Digest, res.Output)
	}
	if !showsMessage(res.Output, message) {
		t.Errorf("%s refused %s but its output does not show the DENIED message %q:\n%s%s", c.Name(), tc.path, message, res.Output, hint(c))
	}
}

// hint explains where a client takes the refusal text from.
func hint(c Client) string {
	if c.Name() == "containerd" {
		return "\n(ctr resolves with HEAD and prints only the status line: the proxy must put the DENIED message in the reason phrase of a HEAD refusal)"
	}
	return ""
}

// showsMessage reports whether a client's output shows message, as is or
// escaped the way logrus quotes a fatal error (skopeo: msg="... \"prod\" ...").
func showsMessage(output, message string) bool {
	quoted := strconv.Quote(message)
	return strings.Contains(output, message) || strings.Contains(output, quoted[1:len(quoted)-1])
}

// checkHeld checks an admitted pull holds the expected manifest (and, for an
// index, children).
func checkHeld(t *testing.T, c Client, tc gateCase, res PullResult) {
	t.Helper()
	if res.Digest == "" && res.Children == nil {
		t.Fatalf("%s pulled %s but reported neither digest nor children:\n%s", c.Name(), tc.path, res.Output)
	}
	if res.Digest != "" && res.Digest != tc.digest.String() {
		t.Errorf("%s pulled %s as %s, want %s", c.Name(), tc.path, res.Digest, tc.digest)
	}
	if res.Children != nil && !slices.Equal(sorted(res.Children), sorted(tc.children)) {
		t.Errorf("%s pulled children %v of %s, want %v", c.Name(), res.Children, tc.path, tc.children)
	}
}

// parseHash parses a digest or fails the test.
func parseHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatalf("digest %q: %v", s, err)
	}
	return h
}

// sorted returns a sorted copy of s.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// clientMaker makes a Client for a test; it skips the test (or fails it in
// CI) when the client's tools are missing.
type clientMaker struct {
	name string
	make func(t *testing.T, m Mirror) Client
}

// gateClients are the clients of the gate test, crane first.
var gateClients = []clientMaker{
	{"crane", func(_ *testing.T, m Mirror) Client { return NewCraneClient(m) }},
	{"skopeo-mirror", func(t *testing.T, m Mirror) Client { return NewSkopeoClient(t, m, SkopeoMirror) }},
	{"skopeo-direct", func(t *testing.T, m Mirror) Client { return NewSkopeoClient(t, m, SkopeoDirect) }},
	{"containerd", NewContainerdClient},
	{"docker", NewDockerClient},
}

// clientsNamed returns the gateClients of those names, in that order.
func clientsNamed(t *testing.T, names ...string) []clientMaker {
	t.Helper()
	var out []clientMaker
	for _, n := range names {
		i := slices.IndexFunc(gateClients, func(c clientMaker) bool { return c.name == n })
		if i < 0 {
			t.Fatalf("no client named %q", n)
		}
		out = append(out, gateClients[i])
	}
	return out
}

// TestProxyGatesRealClients pulls through `cosign proxy` with every real
// client: signed images are admitted, unsigned, wrong-key, replayed,
// foreign-identity and moved-tag pulls are refused, and each client shows
// the proxy's DENIED message.
func TestProxyGatesRealClients(t *testing.T) {
	t.Parallel()
	names := make([]string, len(gateClients))
	for i, gc := range gateClients {
		names[i] = gc.name
	}
	f := newGateFixture(t, names)
	m := Mirror{Proxy: f.proxy.addr, Upstream: f.upstream}
	cases := f.cases()
	messages := make(map[string]string, len(cases))
	for _, tc := range cases {
		if !tc.admit {
			messages[tc.path] = expectDenied(t, f.proxy.addr, tc.path, tc.digest, tc.reason)
		}
	}
	for _, gc := range gateClients {
		t.Run(gc.name, func(t *testing.T) {
			t.Parallel()
			c := gc.make(t, m)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { checkPull(t, c, tc, messages[tc.path]) })
			}
			t.Run("moved tag refused", func(t *testing.T) { f.checkMovedTag(t, c, gc.name) })
		})
	}
	t.Run("skopeo plain mirror falls back", func(t *testing.T) {
		t.Parallel()
		f.checkSkopeoFallback(t, m)
	})
}

// checkMovedTag pulls a signed tag, re-points the tag upstream to a new
// unsigned image, and pulls again: the second pull must be refused.
func (f *gateFixture) checkMovedTag(t *testing.T, c Client, name string) {
	path := "prod/moved-" + name + ":v1"
	checkPull(t, c, gateCase{path: path, digest: f.digests[path], admit: true}, "")
	moved := PushRandomImage(t, f.ref(path))
	message := expectDenied(t, f.proxy.addr, path, moved, verifier.ReasonNoSignatures)
	checkPull(t, c, gateCase{path: path, digest: moved}, message)
}

// checkSkopeoFallback shows why the README configures skopeo and podman
// with blocked = true on the upstream: with the proxy as a plain
// registries.conf mirror, the proxy refuses the unsigned image, skopeo falls
// back to the upstream and copies it anyway.
func (f *gateFixture) checkSkopeoFallback(t *testing.T, m Mirror) {
	c := NewSkopeoClient(t, m, SkopeoMirrorFallback)
	path := "prod/unsigned:v1"
	expectDenied(t, f.proxy.addr, path, f.digests[path], verifier.ReasonNoSignatures)
	res, err := c.Pull(context.Background(), path)
	if err != nil {
		t.Fatalf("skopeo with a plain mirror refused %s (no fallback to the upstream any more?): %v\n%s", path, err, res.Output)
	}
	if res.Digest != f.digests[path].String() {
		t.Errorf("skopeo copied %s as %s, want %s from the upstream", path, res.Digest, f.digests[path])
	}
}

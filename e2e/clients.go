package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// How the real clients are put behind the proxy (what the README tells users):
//
//   - crane (go-containerregistry, in process) and docker pull the proxy's own
//     address: "PROXY/prod/app:v1". The proxy serves it from its
//     defaultUpstream. Docker treats 127.0.0.0/8 registries as insecure (plain
//     HTTP) without configuration; its registry-mirrors setting only applies
//     to Docker Hub. Docker resolves a tag with HEAD; on a 403 it retries with
//     GET and prints the body: "Error response from daemon: pull access denied
//     for PROXY/prod/app, ...: denied: <message>".
//
//   - containerd: ctr images pull --hosts-dir DIR UPSTREAM/prod/app:v1 with
//     DIR/UPSTREAM/hosts.toml whose server is the proxy. containerd falls back
//     from a [host] mirror to server on any status >= 400, so only server =
//     proxy makes a refusal stick. containerd adds ?ns=UPSTREAM to every
//     request it sends to a host other than the one the reference names, the
//     server included. It resolves with HEAD only, so no 403 body reaches
//     ctr; it prints "ctr: failed to resolve reference "UPSTREAM/prod/app:v1":
//     pulling from host PROXY failed with status code [manifests v1]: 403
//     <reason phrase>". The reason phrase of the status line is the only text
//     of the proxy's that ctr shows: a HEAD refusal must carry the DENIED
//     message there ("403 Forbidden (DENIED: <message>)" reaches ctr intact).
//
//   - skopeo/podman: registries.conf [[registry]] location = UPSTREAM with a
//     [[registry.mirror]] location = PROXY. containers/image falls back from a
//     failing mirror to the primary location, so a refusing mirror alone is no
//     gate (skopeo copies the unsigned image from UPSTREAM and exits 0).
//     blocked = true on the primary stops the fallback while the mirrors stay
//     in use; the refusal then reads "(Mirrors also failed: [PROXY/...:
//     reading manifest v1 in PROXY/prod/app: denied: <message>]): ...
//     registry UPSTREAM is blocked". Alternatives: pull the proxy address
//     directly, or prefix = UPSTREAM with location = PROXY (a rewrite, no
//     fallback). skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF; pass
//     --registries-conf.

// clientTimeout bounds one pull by a real client.
const clientTimeout = 2 * time.Minute

// Mirror names the proxy and the upstream registry it fronts.
type Mirror struct {
	// Proxy is the host:port the proxy listens on.
	Proxy string
	// Upstream is the host:port of the upstream registry: the name clients
	// configured with a mirror use in image references.
	Upstream string
}

// PullResult is what a real client reported for one pull.
type PullResult struct {
	// Output is what the client printed (stdout and stderr), or the error
	// text of an in-process client.
	Output string
	// Digest is the digest of the top-level manifest the client stored
	// ("sha256:<hex>"). Empty when the pull failed, or when the client
	// re-serialized an index (skopeo drops fields of an OCI index it copies).
	Digest string
	// Children are the digests of an index's child manifests the client
	// fetched, for clients that report them (crane, skopeo).
	Children []string
}

// Client pulls images through a Mirror with one real client.
type Client interface {
	// Name names the client in test names.
	Name() string
	// Pull pulls path ("prod/app:v1" or "prod/app@sha256:<hex>", a
	// repository path without registry) through the mirror. The error is
	// non-nil when the client reported a failed pull; the result always
	// carries the client's output.
	Pull(ctx context.Context, path string) (PullResult, error)
}

// craneClient pulls with go-containerregistry in process, from the proxy's
// address.
type craneClient struct{ m Mirror }

// NewCraneClient returns a Client that pulls with go-containerregistry's
// crane options (crane.Insecure: plain HTTP) from the proxy's address. It
// needs no external tool and always runs.
func NewCraneClient(m Mirror) Client { return craneClient{m: m} }

func (c craneClient) Name() string { return "crane" }

// Pull fetches the top-level manifest, and for an index every child
// manifest, and reads every layer and config blob.
func (c craneClient) Pull(ctx context.Context, path string) (PullResult, error) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	ref := c.m.Proxy + "/" + path
	o := crane.GetOptions(crane.Insecure, crane.WithContext(ctx))
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return PullResult{Output: err.Error()}, err
	}
	desc, err := remote.Get(parsed, o.Remote...)
	if err != nil {
		return PullResult{Output: err.Error()}, fmt.Errorf("crane pull %s: %w", ref, err)
	}
	children, err := readAll(desc)
	if err != nil {
		return PullResult{Output: err.Error()}, fmt.Errorf("crane pull %s: %w", ref, err)
	}
	return PullResult{Output: "pulled " + desc.Digest.String(), Digest: desc.Digest.String(), Children: children}, nil
}

// readAll pulls every manifest and blob an image or index descriptor names
// and returns the digests of an index's children.
func readAll(desc *remote.Descriptor) ([]string, error) {
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return nil, err
		}
		return nil, readImage(img)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var children []string
	for _, child := range im.Manifests {
		img, err := idx.Image(child.Digest)
		if err != nil {
			return nil, fmt.Errorf("child %s: %w", child.Digest, err)
		}
		if err := readImage(img); err != nil {
			return nil, fmt.Errorf("child %s: %w", child.Digest, err)
		}
		children = append(children, child.Digest.String())
	}
	return children, nil
}

// readImage reads an image's manifest, config and layers (go-containerregistry
// checks each blob against its digest as it reads).
func readImage(img v1.Image) error {
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	return nil
}

// SkopeoMode says how skopeo reaches the proxy.
type SkopeoMode string

const (
	// SkopeoMirror pulls UPSTREAM/path with the proxy as a registries.conf
	// mirror and the upstream blocked, so a refusal cannot fall back.
	SkopeoMirror SkopeoMode = "mirror"
	// SkopeoDirect pulls PROXY/path.
	SkopeoDirect SkopeoMode = "direct"
	// SkopeoMirrorFallback is the plain mirror configuration without
	// blocked = true: skopeo falls back to the upstream when the mirror
	// refuses. It exists to show why the README asks for blocked = true.
	SkopeoMirrorFallback SkopeoMode = "mirror-fallback"
)

// skopeoClient runs skopeo copy into a dir: destination.
type skopeoClient struct {
	m    Mirror
	mode SkopeoMode
	dir  string // registries.conf, policy.json, registries.d, copies
}

// NewSkopeoClient returns a Client that runs `skopeo copy` with its own
// registries.conf, an accept-anything signature policy and an empty
// registries.d, all in a temporary directory. It requires skopeo.
func NewSkopeoClient(t *testing.T, m Mirror, mode SkopeoMode) Client {
	t.Helper()
	Require(t, "skopeo")
	dir := t.TempDir()
	var conf string
	switch mode {
	case SkopeoMirror, SkopeoMirrorFallback:
		blocked := mode == SkopeoMirror
		conf = fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\nblocked = %t\n\n"+
			"[[registry.mirror]]\nlocation = %q\ninsecure = true\n", m.Upstream, blocked, m.Proxy)
	case SkopeoDirect:
		conf = fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", m.Proxy)
	default:
		t.Fatalf("unknown skopeo mode %q", mode)
	}
	writeFile(t, filepath.Join(dir, "registries.conf"), conf)
	writeFile(t, filepath.Join(dir, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	if err := os.Mkdir(filepath.Join(dir, "registries.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &skopeoClient{m: m, mode: mode, dir: dir}
}

func (c *skopeoClient) Name() string { return "skopeo-" + string(c.mode) }

// Pull copies every platform (--multi-arch all, so an index's children are
// fetched too) into a fresh dir: and reads back what it wrote: the digest of
// manifest.json, or for an index (which skopeo re-serializes) the children
// it stored.
func (c *skopeoClient) Pull(ctx context.Context, path string) (PullResult, error) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	host := c.m.Upstream
	if c.mode == SkopeoDirect {
		host = c.m.Proxy
	}
	dest, err := os.MkdirTemp(c.dir, "copy-")
	if err != nil {
		return PullResult{}, err
	}
	out, err := runTool(ctx, nil, "skopeo",
		"--registries-conf", filepath.Join(c.dir, "registries.conf"),
		"--registries.d", filepath.Join(c.dir, "registries.d"),
		"--policy", filepath.Join(c.dir, "policy.json"),
		"copy", "--retry-times", "0", "--src-no-creds", "--multi-arch", "all",
		"docker://"+host+"/"+path, "dir:"+dest)
	res := PullResult{Output: out}
	if err != nil {
		return res, err
	}
	raw, err := os.ReadFile(filepath.Join(dest, "manifest.json"))
	if err != nil {
		return res, fmt.Errorf("skopeo wrote no manifest: %w", err)
	}
	var m v1.IndexManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return res, fmt.Errorf("skopeo wrote a bad manifest: %w", err)
	}
	if !m.MediaType.IsIndex() && len(m.Manifests) == 0 {
		sum := sha256.Sum256(raw)
		res.Digest = "sha256:" + hex.EncodeToString(sum[:])
		return res, nil
	}
	for _, child := range m.Manifests {
		// dir: stores each instance as <hex>.manifest.json.
		if _, err := os.Stat(filepath.Join(dest, child.Digest.Hex+".manifest.json")); err != nil {
			return res, fmt.Errorf("skopeo did not store child %s: %w", child.Digest, err)
		}
		res.Children = append(res.Children, child.Digest.String())
	}
	return res, nil
}

// containerdClient pulls with ctr into a private containerd daemon.
type containerdClient struct {
	m        Mirror
	sock     string
	hostsDir string
	mu       sync.Mutex
	n        int // pulls so far: each gets its own namespace
}

// A namespace per pull keeps image names apart; content is shared between
// namespaces, so containerd may skip fetching a manifest or blob it already
// holds, but it always resolves the pulled reference with a HEAD through
// the proxy first.

// NewContainerdClient starts a private containerd (own root, state and
// socket in a temporary directory, no CRI plugin) and returns a Client that
// pulls with `ctr images pull --hosts-dir`, where DIR/UPSTREAM/hosts.toml
// names the proxy as server. It requires containerd and ctr; the daemon is
// stopped when the test ends.
func NewContainerdClient(t *testing.T, m Mirror) Client {
	t.Helper()
	Require(t, "containerd", "ctr")
	if os.Geteuid() != 0 {
		skipLoudly(t, "a private containerd daemon needs root")
	}
	// A unix socket path must stay under 108 bytes: t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "e2e-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	writeFile(t, filepath.Join(dir, "config.toml"), cfg)
	hostsDir := filepath.Join(dir, "hosts.d")
	WriteHostsToml(t, hostsDir, m)

	d := StartProcess(t, exec.Command("containerd", "--config", filepath.Join(dir, "config.toml")))
	if err := waitContainerd(sock, d.Exited()); err != nil {
		t.Fatalf("containerd did not start: %v\n%s", err, d.Output())
	}
	return &containerdClient{m: m, sock: sock, hostsDir: hostsDir}
}

// waitContainerd polls `ctr version` until the daemon at sock answers, it
// exits, or 30 seconds pass.
func waitContainerd(sock string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		out, err := runTool(ctx, nil, "ctr", "--address", sock, "version")
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd exited: %w\n%s", err, out)
		case <-ctx.Done():
			return fmt.Errorf("no answer within 30s: %w\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WriteHostsToml writes DIR/UPSTREAM/hosts.toml: server is the proxy, the
// only host containerd tries, so a refusal is final.
func WriteHostsToml(t *testing.T, dir string, m Mirror) {
	t.Helper()
	conf := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+m.Proxy, "http://"+m.Proxy)
	if err := os.MkdirAll(filepath.Join(dir, m.Upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, m.Upstream, "hosts.toml"), conf)
}

func (c *containerdClient) Name() string { return "containerd" }

// Pull runs ctr images pull for UPSTREAM/path in a namespace of its own
// (every platform, --all-platforms, so an index's children are fetched
// through the proxy too), then reads the stored image's target digest.
func (c *containerdClient) Pull(ctx context.Context, path string) (PullResult, error) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	c.mu.Lock()
	c.n++
	ns := fmt.Sprintf("e2e%d", c.n)
	c.mu.Unlock()
	ref := c.m.Upstream + "/" + path
	out, err := runTool(ctx, nil, "ctr", "--address", c.sock, "--namespace", ns,
		"images", "pull", "--snapshotter", "native", "--all-platforms", "--hosts-dir", c.hostsDir, ref)
	res := PullResult{Output: out}
	if err != nil {
		return res, err
	}
	list, err := runTool(ctx, nil, "ctr", "--address", c.sock, "--namespace", ns, "images", "ls")
	if err != nil {
		return res, fmt.Errorf("ctr images ls: %w", err)
	}
	// REF TYPE DIGEST SIZE PLATFORMS LABELS
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ref {
			res.Digest = f[2]
		}
	}
	if res.Digest == "" {
		return res, fmt.Errorf("ctr pulled %s but lists no such image:\n%s", ref, list)
	}
	return res, nil
}

// dockerClient pulls with the Docker engine of this machine.
type dockerClient struct {
	m      Mirror
	mu     sync.Mutex
	pulled []string
}

// NewDockerClient returns a Client that runs `docker pull PROXY/path` with
// the machine's Docker engine, and removes what it pulled when the test
// ends. It requires the docker CLI and a running engine (`docker info`).
func NewDockerClient(t *testing.T, m Mirror) Client {
	t.Helper()
	Require(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := runTool(ctx, nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		requireEngine(t, out)
	}
	c := &dockerClient{m: m}
	t.Cleanup(c.cleanup)
	return c
}

// requireEngine skips (or in CI fails) a test when no Docker engine answers.
func requireEngine(t *testing.T, out string) {
	t.Helper()
	skipLoudly(t, "no Docker engine answers `docker info`: "+strings.TrimSpace(out))
}

// skipLoudly skips t with a banner in the log, or fails it when CI=true, the
// way Require does for a missing program.
func skipLoudly(t *testing.T, msg string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	banner := strings.Repeat("!", 78)
	t.Logf("\n%s\n!! SKIPPING %s: %s\n%s", banner, t.Name(), msg, banner)
	t.Skip(msg)
}

func (c *dockerClient) Name() string { return "docker" }

// Pull runs docker pull, then reads the digest Docker recorded for the
// repository (RepoDigests).
func (c *dockerClient) Pull(ctx context.Context, path string) (PullResult, error) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	ref := c.m.Proxy + "/" + path
	out, err := runTool(ctx, nil, "docker", "pull", ref)
	res := PullResult{Output: out}
	if err != nil {
		return res, err
	}
	c.mu.Lock()
	c.pulled = append(c.pulled, ref)
	c.mu.Unlock()
	js, err := runTool(ctx, nil, "docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	if err != nil {
		return res, fmt.Errorf("docker image inspect: %w", err)
	}
	var digests []string
	if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &digests); err != nil {
		return res, fmt.Errorf("docker image inspect: %w: %s", err, js)
	}
	repo := c.m.Proxy + "/" + repoOf(path) + "@"
	var got []string
	for _, d := range digests {
		if strings.HasPrefix(d, repo) {
			got = append(got, strings.TrimPrefix(d, repo))
		}
	}
	res.Digest = strings.Join(got, " ")
	return res, nil
}

// cleanup removes the images this client pulled from the shared engine.
func (c *dockerClient) cleanup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pulled) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"rmi", "--force"}, c.pulled...)
	_, _ = runTool(ctx, nil, "docker", args...)
}

// repoOf strips the tag or digest from a repository path.
func repoOf(path string) string {
	if i := strings.Index(path, "@"); i >= 0 {
		path = path[:i]
	}
	if i := strings.LastIndex(path, ":"); i > strings.LastIndex(path, "/") {
		path = path[:i]
	}
	return path
}

// runTool runs an external tool and returns its combined output; the error
// names the command and its exit status.
func runTool(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	out := stripProgress(buf.String())
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

// stripProgress drops the carriage-return redraws of progress bars (ctr,
// docker) and keeps what each line finally showed.
func stripProgress(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if j := strings.LastIndex(strings.TrimRight(l, "\r"), "\r"); j >= 0 {
			l = l[j+1:]
		}
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

// writeFile writes a test fixture file or fails the test.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

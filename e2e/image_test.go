package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cosign-dev/cosign/verifier"
)

// hostCABundle is the host's CA bundle, put where the build stage's is.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// TestContainerImage builds the Dockerfile's final stage (FROM scratch)
// around the binary built here, since the build stage needs a golang
// base image that cannot be pulled offline, and runs it as the
// deployments do: non-root, read-only root filesystem, only the
// configuration and key mounted read-only, host network. A signed image
// pulls through it; an unsigned one is refused with 403 DENIED.
func TestContainerImage(t *testing.T) {
	Require(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := runTool(ctx, nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		requireEngine(t, out)
	}

	bin := BuildBinary(t)
	root := ModuleRoot(t)
	stage, copies := finalStage(t, filepath.Join(root, "Dockerfile"))

	// The build context: the final stage, its COPY --from=build sources
	// replaced by files of this machine.
	buildCtx := t.TempDir()
	sources := map[string]string{
		"/out/cosign": bin,
		hostCABundle:  hostCABundle,
	}
	for _, src := range copies {
		host, ok := sources[src]
		if !ok {
			t.Fatalf("the final stage copies %s from the build stage; tell TestContainerImage which local file stands for it", src)
		}
		data, err := os.ReadFile(host)
		if err != nil && host == hostCABundle {
			skipLoudly(t, "no CA bundle at "+hostCABundle+" to put in the image (Debian: apt-get install ca-certificates)")
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(buildCtx, "from-build", src)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(buildCtx, "Dockerfile"), stage)
	t.Logf("final stage as built:\n%s", stage)

	suffix := randomSuffix(t)
	image := "cosign-e2e-image:" + suffix
	// The legacy builder: Docker Engine 20.10 here, without buildx, and
	// BuildKit would fetch its Dockerfile frontend.
	if out, err := runTool(ctx, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "--pull=false", "-t", image, buildCtx); err != nil {
		t.Fatalf("docker build of the final stage: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := runTool(ctx, nil, "docker", "rmi", "--force", image); err != nil {
			t.Logf("removing %s: %v\n%s", image, err, out)
		}
	})
	checkImageConfig(t, ctx, image)

	// The upstream, a signed and an unsigned image.
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	upstream := StartRegistry(t)
	key := generateKeyPair(t, sh, "trusted")
	signed := PushRandomImage(t, upstream+"/prod/signed:v1")
	sign(t, sh, key, upstream+"/prod/signed:v1")
	unsigned := PushRandomImage(t, upstream+"/prod/unsigned:v1")

	// /etc/cosign: the configuration and the key, readable by 65532, no
	// more. The key path is relative, as in config.example.yaml.
	etc := t.TempDir()
	if err := os.Chmod(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(etc, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(key.pub)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(etc, "keys", "prod.pub"), string(pub))
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	writeFile(t, filepath.Join(etc, "config.yaml"), fmt.Sprintf(`listen: %[1]s
log: {format: json, level: info}
upstreams:
  - registry: %[2]s
    url: http://%[2]s
defaultUpstream: %[2]s
policies:
  - name: prod
    match: ["%[2]s/prod/**"]
    keys: [keys/prod.pub]
defaultPolicy: deny
`, addr, upstream))

	run := func(extra ...string) []string {
		args := []string{"run", "--network", "host", "--user", "65532:65532", "--read-only",
			"--cap-drop", "ALL", "--security-opt", "no-new-privileges",
			"-v", etc + ":/etc/cosign:ro"}
		return append(append(args, extra...), image, "proxy", "--config", "/etc/cosign/config.yaml")
	}

	// --check, as the node proxy's init container runs it.
	if out, err := runTool(ctx, nil, "docker", append(run("--rm"), "--check")...); err != nil {
		t.Fatalf("cosign proxy --check in the image: %v\n%s", err, out)
	}

	container := "cosign-e2e-proxy-" + suffix
	if out, err := runTool(ctx, nil, "docker", run("-d", "--name", container)...); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := runTool(ctx, nil, "docker", "logs", container)
			t.Logf("logs of the proxy container:\n%s", out)
		}
		if out, err := runTool(ctx, nil, "docker", "rm", "--force", container); err != nil {
			t.Logf("removing container %s: %v\n%s", container, err, out)
		}
	})
	if err := WaitHTTP("http://"+addr+"/healthz", 30*time.Second, nil); err != nil {
		t.Fatalf("the proxy in the container did not come up: %v", err)
	}
	if err := WaitHTTP("http://"+addr+"/readyz", 30*time.Second, nil); err != nil {
		t.Fatalf("the proxy in the container did not become ready: %v", err)
	}

	// Admitted: plain HTTP, then a full pull (manifest, config, layers).
	if d := askProxy(t, addr, http.MethodGet, "prod/signed:v1"); d.status != http.StatusOK {
		t.Fatalf("GET prod/signed:v1 through the image: %d %s %s, want 200", d.status, d.code, d.message)
	}
	crane := NewCraneClient(Mirror{Proxy: addr, Upstream: upstream})
	res, err := crane.Pull(ctx, "prod/signed:v1")
	if err != nil {
		t.Fatalf("pulling prod/signed:v1 through the image: %v\n%s", err, res.Output)
	}
	if res.Digest != signed.String() {
		t.Errorf("pulled %s, want %s", res.Digest, signed)
	}

	// Refused.
	expectDenied(t, addr, "prod/unsigned:v1", unsigned, verifier.ReasonNoSignatures)
	if res, err := crane.Pull(ctx, "prod/unsigned:v1"); err == nil || !strings.Contains(res.Output, "DENIED") {
		t.Errorf("pulling prod/unsigned:v1 through the image: err %v, output %q; want DENIED", err, res.Output)
	}

	// The node proxy's shape: a private containerd whose hosts.toml for the
	// upstream is the one deploy/kubernetes installs on every node, with
	// the container as its server.
	t.Run("containerd with the shipped hosts.toml", func(t *testing.T) {
		m := Mirror{Proxy: addr, Upstream: upstream}
		c := NewContainerdClient(t, m)
		writeFile(t, filepath.Join(c.(*containerdClient).hostsDir, upstream, "hosts.toml"), shippedHostsToml(t, root, addr))
		res, err := c.Pull(ctx, "prod/signed:v1")
		if err != nil {
			t.Fatalf("ctr pull of the signed image: %v\n%s", err, res.Output)
		}
		if res.Digest != signed.String() {
			t.Errorf("ctr pulled %s, want %s", res.Digest, signed)
		}
		res, err = c.Pull(ctx, "prod/unsigned:v1")
		if err == nil || !strings.Contains(res.Output, "403") {
			t.Errorf("ctr pull of the unsigned image: err %v, output %q; want a 403 refusal", err, res.Output)
		}
	})

	// SIGTERM (docker stop) ends it with status 0, as PID 1 of its
	// container.
	if out, err := runTool(ctx, nil, "docker", "stop", "--time", "20", container); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	out, err := runTool(ctx, nil, "docker", "inspect", "--format", "{{.State.ExitCode}}", container)
	if err != nil {
		t.Fatalf("docker inspect: %v\n%s", err, out)
	}
	if code := strings.TrimSpace(out); code != "0" {
		logs, _ := runTool(ctx, nil, "docker", "logs", container)
		t.Errorf("the proxy exited %s on SIGTERM, want 0; its log:\n%s", code, logs)
	}
}

var (
	fromLine = regexp.MustCompile(`(?i)^FROM\s`)
	copyFrom = regexp.MustCompile(`(?i)^COPY\s+--from=\S+\s+(\S+)\s+(\S+)\s*$`)
)

// finalStage returns the lines of the Dockerfile from its last FROM on,
// with each `COPY --from=STAGE SRC DST` rewritten to copy from-build/SRC
// of the build context, and the SRC paths it copies.
func finalStage(t *testing.T, dockerfile string) (string, []string) {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	last := -1
	for i, l := range lines {
		if fromLine.MatchString(strings.TrimSpace(l)) {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	if from := strings.Fields(lines[last]); len(from) < 2 || from[1] != "scratch" {
		t.Fatalf("Dockerfile: the final stage is %q; it must be FROM scratch (no base image can be pulled here)", lines[last])
	}
	var out, copies []string
	for _, l := range lines[last:] {
		trimmed := strings.TrimSpace(l)
		if strings.HasSuffix(trimmed, `\`) {
			t.Fatalf("Dockerfile: continued line %q in the final stage; keep its instructions on one line", l)
		}
		if m := copyFrom.FindStringSubmatch(trimmed); m != nil {
			copies = append(copies, m[1])
			l = fmt.Sprintf("COPY from-build%s %s", m[1], m[2])
		} else if strings.HasPrefix(strings.ToUpper(trimmed), "RUN ") {
			t.Fatalf("Dockerfile: RUN in the final stage: %q (a scratch image has nothing to run it with)", l)
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n"), copies
}

// checkImageConfig checks what deployments rely on: the entrypoint is
// /cosign and the user is 65532, not root.
func checkImageConfig(t *testing.T, ctx context.Context, image string) {
	t.Helper()
	out, err := runTool(ctx, nil, "docker", "image", "inspect", "--format", "{{json .Config}}", image)
	if err != nil {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	var cfg struct {
		User       string
		Entrypoint []string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &cfg); err != nil {
		t.Fatalf("docker image inspect: %v: %s", err, out)
	}
	if cfg.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/cosign"}) {
		t.Errorf("image entrypoint %q, want [/cosign]", cfg.Entrypoint)
	}
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// nodeProxyAddr is where the node proxy of deploy/kubernetes listens, as
// its hosts.toml files name it.
const nodeProxyAddr = "127.0.0.1:5050"

// shippedHostsToml returns the hosts.toml that deploy/kubernetes installs
// for docker.io, with the node proxy's address replaced by addr.
func shippedHostsToml(t *testing.T, root, addr string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "configmap-hosts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatalf("configmap-hosts.yaml: %v", err)
	}
	toml, ok := cm.Data["docker.io.hosts.toml"]
	if !ok || !strings.Contains(toml, "http://"+nodeProxyAddr) {
		t.Fatalf("configmap-hosts.yaml: no docker.io.hosts.toml naming http://%s:\n%s", nodeProxyAddr, data)
	}
	return strings.ReplaceAll(toml, nodeProxyAddr, addr)
}

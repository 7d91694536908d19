package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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

	t.Run("TLS from a projected volume, certificate rotated", func(t *testing.T) {
		testImageTLS(t, ctx, image, upstream, pub, signed, unsigned)
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

// testImageTLS runs the image as deploy/kubernetes's Deployment does: TLS,
// metrics on their own address, its files in a volume laid out as the
// kubelet lays out a projected volume (a timestamped directory, ..data and
// symlinks to it), then rotates the certificate as the kubelet does when
// cert-manager renews the Secret: a new directory and an atomic swap of
// ..data. The proxy must serve the new certificate without a restart.
func testImageTLS(t *testing.T, ctx context.Context, image, upstream string, pub []byte, signed, unsigned v1.Hash) {
	vol := t.TempDir()
	if err := os.Chmod(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	config := fmt.Sprintf(`listen: %[1]s
tls: {cert: /etc/cosign/tls/tls.crt, key: /etc/cosign/tls/tls.key}
metricsListen: %[2]s
log: {format: json, level: info}
upstreams:
  - registry: %[3]s
    url: http://%[3]s
defaultUpstream: %[3]s
policies:
  - name: prod
    match: ["%[3]s/prod/**"]
    keys: [/etc/cosign/keys/prod.pub]
defaultPolicy: deny
`, addr, metrics, upstream)
	cert1, key1 := selfSignedCert(t, 1)
	cert2, key2 := selfSignedCert(t, 2)
	files := map[string][]byte{
		"config.yaml":   []byte(config),
		"keys/prod.pub": pub,
		"tls/tls.crt":   cert1,
		"tls/tls.key":   key1,
	}
	layProjectedVolume(t, vol, 1, files)

	container := "cosign-e2e-tls-" + randomSuffix(t)
	if out, err := runTool(ctx, nil, "docker", "run", "-d", "--name", container,
		"--network", "host", "--user", "65532:65532", "--read-only", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "-v", vol+":/etc/cosign:ro",
		image, "proxy", "--config", "/etc/cosign/config.yaml"); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := runTool(ctx, nil, "docker", "logs", container)
			t.Logf("logs of the TLS proxy container:\n%s", out)
		}
		if out, err := runTool(ctx, nil, "docker", "rm", "--force", container); err != nil {
			t.Logf("removing container %s: %v\n%s", container, err, out)
		}
	})

	roots := x509.NewCertPool()
	for _, c := range [][]byte{cert1, cert2} {
		if !roots.AppendCertsFromPEM(c) {
			t.Fatal("test certificate does not parse")
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	get := func(path string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", manifestAccept)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET https://%s/readyz: %d %s after 30s", addr, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz over TLS: %d %s", code, body)
	}
	if code, body := get("/v2/prod/signed/manifests/v1"); code != http.StatusOK {
		t.Errorf("GET the signed manifest over TLS: %d %s, want 200", code, body)
	} else if d, _, _ := v1.SHA256(strings.NewReader(body)); d != signed {
		t.Errorf("GET the signed manifest over TLS: served %s, want %s", d, signed)
	}
	if code, body := get("/v2/prod/unsigned/manifests/v1"); code != http.StatusForbidden || !strings.Contains(body, "DENIED") || !strings.Contains(body, unsigned.Hex) {
		t.Errorf("GET the unsigned manifest over TLS: %d %s, want 403 DENIED naming %s", code, body, unsigned)
	}
	if resp, err := http.Get("http://" + metrics + "/metrics"); err != nil {
		t.Errorf("GET /metrics on metricsListen: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "cosign_proxy_") {
			t.Errorf("GET /metrics on metricsListen: %s, no cosign_proxy_ metrics", resp.Status)
		}
	}

	if got := servedSerial(t, addr, roots); got != 1 {
		t.Fatalf("served certificate serial %d, want 1", got)
	}
	files["tls/tls.crt"], files["tls/tls.key"] = cert2, key2
	layProjectedVolume(t, vol, 2, files)
	deadline = time.Now().Add(30 * time.Second)
	for servedSerial(t, addr, roots) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("30s after the volume's ..data moved to a new certificate, the proxy still serves the old one")
		}
		time.Sleep(250 * time.Millisecond)
	}
	if code, body := get("/v2/prod/signed/manifests/v1"); code != http.StatusOK {
		t.Errorf("GET the signed manifest after the rotation: %d %s, want 200", code, body)
	}
}

// servedSerial is the serial number of the certificate the proxy at addr
// presents (0 when the handshake fails).
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Logf("TLS handshake with %s: %v", addr, err)
		return 0
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// selfSignedCert returns a self-signed certificate for 127.0.0.1 with the
// given serial number, and its key, in PEM.
func selfSignedCert(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "cosign-proxy e2e"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// layProjectedVolume writes files into dir as the kubelet writes a
// projected volume: into a fresh ..<generation> directory, then ..data
// swapped to it atomically, each top-level name a symlink through ..data,
// and the previous generation removed.
func layProjectedVolume(t *testing.T, dir string, generation int, files map[string][]byte) {
	t.Helper()
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.000000001", generation)
	for name, data := range files {
		p := filepath.Join(dir, ts, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		top := strings.Split(name, "/")[0]
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" && old != ts {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

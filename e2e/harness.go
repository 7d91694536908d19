package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// CommandTimeout bounds every command Run and Script start; a command that
// outlives it is killed and fails the test.
const CommandTimeout = 2 * time.Minute

// InCI reports whether CI is set to a true value (CI=true, as CI systems
// set it). Missing parts then fail tests instead of skipping them.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Require checks that every named program is on PATH. When one is missing
// it fails the test under CI, and otherwise skips it with a banner that
// says what to install, so a skip is never silent.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s: install with scripts/install-test-deps.sh (Debian: apt-get install docker-registry openssl skopeo containerd nginx-light)",
		strings.Join(missing, ", "))
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	line := strings.Repeat("!", 78)
	banner := fmt.Sprintf("\n%s\n!! SKIPPING %s: %s\n%s\n", line, t.Name(), msg, line)
	t.Log(banner)
	shout(banner)
	t.Skip(msg)
}

// shout writes to the controlling terminal, if there is one: go test hides
// the log of passing packages unless -v, and a skip must not go unnoticed.
// SigstoreCosign returns the path of the real sigstore cosign v3.1.2 that
// the interoperability tests run: $SIGSTORE_COSIGN, else where
// scripts/install-sigstore-cosign.sh puts it. When it is missing it fails
// the test under CI and otherwise skips it loudly.
func SigstoreCosign(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("SIGSTORE_COSIGN")
	if bin == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err == nil {
			bin = filepath.Join(strings.TrimSpace(string(out)), "sigstore-cosign", "v3.1.2", "cosign")
		}
	}
	if st, err := os.Stat(bin); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return bin
	}
	msg := fmt.Sprintf("sigstore cosign v3.1.2 not found at %q: build it with scripts/install-sigstore-cosign.sh (make test-deps does)", bin)
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	line := strings.Repeat("!", 78)
	banner := fmt.Sprintf("\n%s\n!! SKIPPING %s: %s\n%s\n", line, t.Name(), msg, line)
	t.Log(banner)
	shout(banner)
	t.Skip(msg)
	return ""
}

func shout(s string) {
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer tty.Close()
	_, _ = io.WriteString(tty, s)
}

// ModuleRoot returns the directory of the cosign module's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	moduleRootOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			moduleRootErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			moduleRootErr = errors.New("not inside the cosign module")
			return
		}
		moduleRoot = filepath.Dir(gomod)
	})
	if moduleRootErr != nil {
		t.Fatal(moduleRootErr)
	}
	return moduleRoot
}

var (
	moduleRootOnce sync.Once
	moduleRoot     string
	moduleRootErr  error
)

// build is the cosign binary built once per test binary.
var build struct {
	once sync.Once
	dir  string
	err  error
}

// BuildBinary builds ./cmd/cosign once per test binary (CGO_ENABLED=0, as
// released) into a temporary directory that also holds a "cosine" symlink,
// the name the seed README uses once, and returns the binary's path. Call
// Cleanup from TestMain to remove the directory.
func BuildBinary(t testing.TB) string {
	t.Helper()
	root := ModuleRoot(t)
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "cosign-e2e-bin-")
		if build.err != nil {
			return
		}
		bin := filepath.Join(build.dir, "cosign")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/cosign")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/cosign: %w\n%s", err, out)
			return
		}
		build.err = os.Symlink("cosign", filepath.Join(build.dir, "cosine"))
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return filepath.Join(build.dir, "cosign")
}

// Cleanup removes what the harness left outside test temp dirs (the built
// binary). Call it from TestMain after m.Run.
func Cleanup() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// registryConfig is the docker-registry configuration StartRegistry writes.
const registryConfig = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`

// StartRegistry starts a CNCF distribution registry (docker-registry serve)
// with its own configuration and storage in t.TempDir(), on a free loopback
// port, waits until GET /v2/ answers, stops it when the test ends, and
// returns its host:port. It retries on another port if the first is taken.
func StartRegistry(t testing.TB) string {
	t.Helper()
	Require(t, "docker-registry")
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		cfg := filepath.Join(dir, fmt.Sprintf("config-%d.yml", attempt))
		storage := filepath.Join(dir, "storage")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, registryConfig, storage, addr), 0o644); err != nil {
			t.Fatal(err)
		}
		p := StartProcess(t, exec.Command("docker-registry", "serve", cfg))
		if lastErr = WaitHTTP("http://"+addr+"/v2/", 15*time.Second, p.Exited()); lastErr == nil {
			return addr
		}
		p.Stop()
		lastErr = fmt.Errorf("%w; output:\n%s", lastErr, p.Output())
	}
	t.Fatalf("docker-registry did not start: %v", lastErr)
	return ""
}

// Process is a background process started by StartProcess.
type Process struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error
	stop   sync.Once
}

// StartProcess starts cmd in the background with its stdout and stderr
// captured, and stops it (SIGTERM, then SIGKILL after 5s) when the test
// ends; a test that fails logs the output.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(cmd.Args, " "), p.Output())
		}
	})
	return p
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Output is what the process wrote so far, stdout and stderr interleaved.
func (p *Process) Output() string { return p.out.String() }

// Stop terminates the process and waits for it; it is safe to call twice.
func (p *Process) Stop() {
	p.stop.Do(func() {
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(os.Interrupt)
		}
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitHTTP polls url until it answers 200, the timeout passes, or exited
// (may be nil) is closed because the server died.
func WaitHTTP(url string, timeout time.Duration, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("process exited while waiting for %s (last: %v)", url, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within %s: %v", url, timeout, last)
}

// Shell runs the cosign binary and shell scripts as a user would: in Dir,
// with Env. Its environment is hermetic: COSIGN_PASSWORD unset unless Set,
// DOCKER_CONFIG an empty directory (no credential helpers of the machine),
// PATH led by the directory of the built cosign (and cosine) binaries.
type Shell struct {
	// Dir is the working directory.
	Dir string
	// Env is the full environment, KEY=VALUE.
	Env []string
	bin string
}

// NewShell builds the binary if needed and returns a Shell working in a
// fresh t.TempDir().
func NewShell(t testing.TB) *Shell {
	t.Helper()
	bin := BuildBinary(t)
	s := &Shell{Dir: t.TempDir(), bin: bin}
	dockerConfig := t.TempDir()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "COSIGN_PASSWORD", "DOCKER_CONFIG", "PATH":
			continue
		}
		s.Env = append(s.Env, kv)
	}
	s.Env = append(s.Env,
		"DOCKER_CONFIG="+dockerConfig,
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	return s
}

// Set sets an environment variable for later commands (replacing it).
func (s *Shell) Set(key, value string) {
	s.Unset(key)
	s.Env = append(s.Env, key+"="+value)
}

// Unset removes an environment variable.
func (s *Shell) Unset(key string) {
	kept := s.Env[:0]
	for _, kv := range s.Env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			kept = append(kept, kv)
		}
	}
	s.Env = kept
}

// Path returns name resolved against the shell's directory.
func (s *Shell) Path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(s.Dir, name)
}

// Run runs the cosign binary with args and stdin, and returns its stdout,
// stderr and exit code. The command is logged.
func (s *Shell) Run(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Logf("$ cosign %s", strings.Join(args, " "))
	return s.exec(t, stdin, s.bin, args...)
}

// Script runs a bash script (errexit and pipefail on) in the shell's
// directory and returns its stdout, stderr and exit code.
func (s *Shell) Script(t testing.TB, script string) (stdout, stderr string, code int) {
	t.Helper()
	t.Logf("$ %s", script)
	return s.exec(t, "", "bash", "-e", "-o", "pipefail", "-c", script)
}

// MustScript runs a script that must exit 0 and returns its stdout.
func (s *Shell) MustScript(t testing.TB, script string) string {
	t.Helper()
	stdout, stderr, code := s.Script(t, script)
	if code != 0 {
		t.Fatalf("script exited %d:\n%s\nstderr:\n%s", code, script, stderr)
	}
	return stdout
}

// MustRun runs cosign with args; it must exit 0. It returns stdout.
func (s *Shell) MustRun(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, code := s.Run(t, stdin, args...)
	if code != 0 {
		t.Fatalf("cosign %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

func (s *Shell) exec(t testing.TB, stdin, prog string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir, cmd.Env = s.Dir, s.Env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: killed after %s\nstderr:\n%s", prog, strings.Join(args, " "), CommandTimeout, stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("running %s: %v", prog, err)
	return "", "", -1
}

// Run runs the cosign binary in a fresh Shell (see Shell.Run).
func Run(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return NewShell(t).Run(t, stdin, args...)
}

// RunShell runs a bash script in a fresh Shell (see Shell.Script).
func RunShell(t testing.TB, script string) (stdout, stderr string, code int) {
	t.Helper()
	return NewShell(t).Script(t, script)
}

// PushRandomImage pushes a small random image to ref ("host:port/repo:tag")
// and returns its manifest digest.
func PushRandomImage(t testing.TB, ref string) v1.Hash {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, ref, crane.Insecure); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Tag adds the tag newTag ("v1") in src's repository to the manifest src
// ("host:port/repo:tag" or "...@sha256:...") names, without changing it.
func Tag(t testing.TB, src, newTag string) {
	t.Helper()
	if err := crane.Tag(src, newTag, crane.Insecure); err != nil {
		t.Fatalf("tagging %s as %s: %v", src, newTag, err)
	}
}

// Digest returns the digest ref resolves to (the hash of the manifest bytes).
func Digest(t testing.TB, ref string) v1.Hash {
	t.Helper()
	raw, err := crane.Manifest(ref, crane.Insecure)
	if err != nil {
		t.Fatalf("reading manifest %s: %v", ref, err)
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// SignatureLayers counts the layers (signatures) of the "sha256-<hex>.sig"
// manifest of digest d in repo ("host:port/repo"); 0 when there is none.
func SignatureLayers(t testing.TB, repo string, d v1.Hash) int {
	t.Helper()
	tag := fmt.Sprintf("%s:%s-%s.sig", repo, d.Algorithm, d.Hex)
	ref, err := name.NewTag(tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return 0
	}
	if err != nil {
		t.Fatalf("reading %s: %v", tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

// Vectors describes the interop vectors made by sigstore cosign v3.1.2.
type Vectors struct {
	// Dir is the vectors directory (tags.json, manifests/, blobs/, keys/).
	Dir string
	// Tags maps repository -> tag -> digest, as loaded.
	Tags map[string]map[string]v1.Hash
}

// Key returns the path of a key file of the vectors ("ecdsa.pub", ...).
func (v *Vectors) Key(name string) string { return filepath.Join(v.Dir, "keys", name) }

// VectorsDir is the interop vectors' directory, relative to the module root.
const VectorsDir = "sigstore/testdata/cosign-v3.1.2"

// LoadVectors pushes the interop vectors into the registry at registryHost
// ("127.0.0.1:port") over the distribution API: per repository, blobs
// before the manifests that reference them, children before indexes, image
// tags before signature tags ("sha256-..."), every manifest as its exact
// bytes and media type.
func LoadVectors(t testing.TB, registryHost string) *Vectors {
	t.Helper()
	v := &Vectors{Dir: filepath.Join(ModuleRoot(t), VectorsDir), Tags: map[string]map[string]v1.Hash{}}
	raw, err := os.ReadFile(filepath.Join(v.Dir, "tags.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tags map[string]map[string]struct {
		Digest    v1.Hash `json:"digest"`
		MediaType string  `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &tags); err != nil {
		t.Fatalf("tags.json: %v", err)
	}
	l := &loader{dir: v.Dir, base: "http://" + registryHost, client: &http.Client{Timeout: 30 * time.Second}}
	for _, repo := range sortedKeys(tags) {
		v.Tags[repo] = map[string]v1.Hash{}
		names := sortedKeys(tags[repo])
		sort.SliceStable(names, func(i, j int) bool {
			return !strings.HasPrefix(names[i], "sha256-") && strings.HasPrefix(names[j], "sha256-")
		})
		for _, tag := range names {
			e := tags[repo][tag]
			if err := l.putManifest(repo, e.Digest, tag, e.MediaType); err != nil {
				t.Fatalf("loading %s:%s: %v", repo, tag, err)
			}
			v.Tags[repo][tag] = e.Digest
		}
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// loader pushes a registry dump over the distribution API.
type loader struct {
	dir    string
	base   string
	client *http.Client
}

// putManifest pushes the manifest d of the dump, after its blobs and child
// manifests, under ref (a tag or its digest).
func (l *loader) putManifest(repo string, d v1.Hash, ref, mediaType string) error {
	raw, err := os.ReadFile(filepath.Join(l.dir, "manifests", d.Algorithm+"-"+d.Hex))
	if err != nil {
		return err
	}
	var m struct {
		MediaType string          `json:"mediaType"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	for _, c := range m.Manifests {
		if err := l.putManifest(repo, c.Digest, c.Digest.String(), string(c.MediaType)); err != nil {
			return err
		}
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append([]v1.Descriptor{*m.Config}, blobs...)
	}
	for _, b := range blobs {
		if err := l.putBlob(repo, b.Digest); err != nil {
			return err
		}
	}
	if m.MediaType != "" {
		mediaType = m.MediaType
	}
	return l.do(http.MethodPut, l.base+"/v2/"+repo+"/manifests/"+ref, raw, mediaType, http.StatusCreated)
}

// putBlob uploads one blob of the dump monolithically (POST, then PUT with
// the digest).
func (l *loader) putBlob(repo string, d v1.Hash) error {
	data, err := os.ReadFile(filepath.Join(l.dir, "blobs", d.Algorithm+"-"+d.Hex))
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, l.base+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil {
		return err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting upload of %s: %s", d, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("upload of %s: %w", d, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	return l.do(http.MethodPut, loc.String(), data, "application/octet-stream", http.StatusCreated)
}

func (l *loader) do(method, u string, body []byte, contentType string, want int) error {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, redactQuery(u), resp.Status, msg)
	}
	return nil
}

// redactQuery drops the query (upload state) from a URL for messages.
func redactQuery(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.RawQuery = ""
	return p.String()
}

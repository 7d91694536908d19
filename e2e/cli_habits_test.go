package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// TestPipedPasswordEncryptsTheKey is the regression test for a password
// piped into generate-key-pair being ignored and the key written in plain
// text: the piped password encrypts the key, stderr says so, and the same
// pipe signs with it.
func TestPipedPasswordEncryptsTheKey(t *testing.T) {
	Require(t, "docker-registry", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	img := reg + "/passwords/app"
	PushRandomImage(t, img)

	_, stderr, code := sh.Script(t, "echo pw | cosign generate-key-pair")
	if code != 0 {
		t.Fatalf("echo pw | cosign generate-key-pair: exit %d: %s", code, stderr)
	}
	key, err := os.ReadFile(sh.Path("cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(key), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
		t.Fatalf("the piped password did not encrypt the key: it starts %q", strings.SplitN(string(key), "\n", 2)[0])
	}
	if !strings.Contains(stderr, "encrypted with the password") {
		t.Errorf("stderr %q does not say the key is encrypted", stderr)
	}
	sh.MustScript(t, "echo pw | cosign sign -key cosign.key "+img)
	sh.MustScript(t, "COSIGN_PASSWORD=pw cosign sign -key cosign.key "+img) // "pw", not "pw\n"
	sh.MustRun(t, "", "verify", "-key", "cosign.pub", img)

	t.Run("an empty password writes a plain key and says so", func(t *testing.T) {
		_, stderr := mustScriptStderr(t, sh, "COSIGN_PASSWORD= cosign generate-key-pair --output-key-prefix plain")
		if !strings.Contains(stderr, "NOT encrypted") {
			t.Errorf("stderr %q does not say the key is not encrypted", stderr)
		}
	})
	t.Run("no password at all is one clear sentence", func(t *testing.T) {
		for _, tt := range []struct{ script, want string }{
			{"cosign generate-key-pair --output-key-prefix none </dev/null", "COSIGN_PASSWORD= cosign generate-key-pair"},
			{"cosign sign -key cosign.key " + img + " </dev/null", "set to the empty string is the empty password"},
			{"COSIGN_PASSWORD= cosign sign -key cosign.key " + img, "COSIGN_PASSWORD is set but empty"},
			{"echo wrong | cosign sign -key cosign.key " + img, "wrong password"},
		} {
			stdout, stderr, code := sh.Script(t, tt.script)
			mustFail(t, tt.script, stdout, stderr, code, tt.want)
		}
		if _, err := os.Stat(sh.Path("none.key")); err == nil {
			t.Error("generate-key-pair without a password wrote a key")
		}
	})
}

// mustScriptStderr runs a script that must exit 0 and returns its stdout
// and stderr.
func mustScriptStderr(t *testing.T, sh *Shell, script string) (string, string) {
	t.Helper()
	stdout, stderr, code := sh.Script(t, script)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s", script, code, stderr)
	}
	return stdout, stderr
}

// TestUploadRefusesSignaturesThatCannotVerify is the regression test for
// upload storing junk, or a signature over another payload, with exit 0.
func TestUploadRefusesSignaturesThatCannotVerify(t *testing.T) {
	Require(t, "docker-registry", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	sh.MustRun(t, "", "generate-key-pair")
	img := reg + "/uploads/app"
	d := PushRandomImage(t, img)

	for _, script := range []string{
		"printf 'not a signature' | cosign upload -signature - " + img,
		"head -c 100 /dev/urandom | base64 | cosign upload -signature - " + img,
	} {
		stdout, stderr, code := sh.Script(t, script)
		mustFail(t, script, stdout, stderr, code, "could never verify")
	}
	script := "cosign sign --no-upload -a env=prod -key cosign.key " + img + " | cosign upload -key cosign.pub -signature - " + img
	stdout, stderr, code := sh.Script(t, script)
	mustFail(t, "upload -key without the -a it was signed with", stdout, stderr, code, "does not verify with the key cosign.pub")
	if n := SignatureLayers(t, img, d); n != 0 {
		t.Fatalf("refused uploads stored %d signatures", n)
	}

	// Without -key, upload cannot tell; verify then names what happened.
	sh.MustScript(t, "cosign sign --no-upload -a env=prod -key cosign.key "+img+" | cosign upload -signature - "+img)
	stdout, stderr, code = sh.Run(t, "", "verify", "-key", "cosign.pub", "-a", "env=prod", img)
	mustFail(t, "verify of a signature stored over the wrong payload", stdout, stderr, code,
		"a signature by this key covers a different payload")

	// With the same -a, upload -key accepts it and verify agrees.
	sh.MustScript(t, "cosign sign --no-upload -a env=prod -key cosign.key "+img+" | cosign upload -key cosign.pub -a env=prod -signature - "+img)
	sh.MustRun(t, "", "verify", "-key", "cosign.pub", "-a", "env=prod", img)
	stdout, stderr, code = sh.Run(t, "", "verify", "-key", "cosign.pub", "-a", "env=dev", img)
	mustFail(t, "verify -a env=dev", stdout, stderr, code, `(required by -a: "dev")`)
}

// TestHelpVersionAndUsageErrors: help on stdout, a wrong flag in one line and
// a hint, --version, and the commit a plain go build records.
func TestHelpVersionAndUsageErrors(t *testing.T) {
	Require(t, "bash", "grep")
	sh := NewShell(t)
	sh.MustScript(t, "cosign sign -h | grep -- -key >/dev/null")
	sh.MustScript(t, "cosign help verify | grep -- -recursive >/dev/null")
	sh.MustScript(t, "cosign --help | grep generate-key-pair >/dev/null")

	stdout, stderr, code := sh.Run(t, "", "sign", "--bogus", "x")
	if code != 2 || stdout != "" {
		t.Errorf("unknown flag: exit %d, stdout %q; want 2 and nothing", code, stdout)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "flag provided but not defined: -bogus") || !strings.Contains(lines[1], "cosign sign -h") {
		t.Errorf("unknown flag: stderr %q; want the error and a hint, two lines", stderr)
	}

	v := sh.MustRun(t, "", "--version")
	if !strings.HasPrefix(v, "cosign ") || !strings.Contains(v, "go1.") {
		t.Errorf("--version printed %q", v)
	}
	if v2 := sh.MustRun(t, "", "version"); v2 != v {
		t.Errorf("version printed %q, --version %q", v2, v)
	}

	// A plain go build in a git checkout records the commit (the harness's
	// build may not: GOFLAGS=-buildvcs=false is common in CI).
	root := ModuleRoot(t)
	if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err != nil || len(strings.TrimSpace(string(out))) != 40 {
		t.Skipf("the module is not a git checkout (%v): go build records no commit to show", err)
	}
	bin := sh.Path("plain-cosign")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/cosign")
	build.Dir = root
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cosign: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !regexp.MustCompile(`\(commit [0-9a-f]{40}[,)]`).Match(out) {
		t.Errorf("version of a plain go build printed %q (%v), want the commit it was built from", out, err)
	}
}

// TestSigstoreSpellings runs sigstore cosign's spellings of the same things.
func TestSigstoreSpellings(t *testing.T) {
	Require(t, "docker-registry", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	sh.MustRun(t, "", "generate-key-pair")
	img := reg + "/spellings/app"
	d := PushRandomImage(t, img)

	sh.MustScript(t, "cosign sign -y --key cosign.key "+img)
	sh.MustScript(t, "cosign sign --yes --key cosign.key "+img)
	if n := len(parseDownload(t, sh.MustScript(t, "cosign download signature "+img))); n != 1 {
		t.Errorf("download signature printed %d lines, want 1", n)
	}
	sh.MustScript(t, "cosign download signature "+img+" --output-file sigs.json && test -s sigs.json")
	sh.MustScript(t, "cosign public-key --key cosign.key > derived.pub && cmp derived.pub cosign.pub")
	sh.MustScript(t, "cosign public-key --key cosign.key --outfile out.pub && cmp out.pub cosign.pub")
	sh.MustScript(t, "cosign verify --key cosign.pub "+img+" --output-file verified.json && grep -q "+d.Hex+" verified.json")

	other := reg + "/spellings/other"
	od := PushRandomImage(t, other)
	sh.MustScript(t, "cosign sign --no-upload --key cosign.key "+other+" --output-file sig.b64")
	sh.MustScript(t, "cosign attach signature --signature sig.b64 "+other)
	if n := SignatureLayers(t, other, od); n != 1 {
		t.Errorf("attach signature stored %d signatures, want 1", n)
	}

	t.Run("env:// key references", func(t *testing.T) {
		sh.MustScript(t, `COSIGN_KEY="$(cat cosign.key)" cosign sign --key env://COSIGN_KEY `+img+` --no-upload > /dev/null`)
		sh.MustScript(t, `PUB="$(cat cosign.pub)" cosign verify --key env://PUB `+img+` > /dev/null`)
		stdout, stderr, code := sh.Script(t, "cosign verify --key env://UNSET_VARIABLE "+img)
		mustFail(t, "env:// of an unset variable", stdout, stderr, code, "UNSET_VARIABLE is not set")
	})
	t.Run("other key references are named as unsupported", func(t *testing.T) {
		for _, ref := range []string{"k8s://ns/secret", "awskms://alias/key", "hashivault://key", "gcpkms://projects/p/key"} {
			stdout, stderr, code := sh.Run(t, "", "sign", "--key", ref, img)
			mustFail(t, ref, stdout, stderr, code, "key references of this kind are not supported")
		}
	})
}

// TestImageReferenceMistakes: the error says what to write instead.
func TestImageReferenceMistakes(t *testing.T) {
	sh := NewShell(t)
	for _, tt := range []struct{ image, want string }{
		{"http://127.0.0.1:5000/team/app", "--allow-insecure-registry"},
		{"https://registry.example/team/app", `write registry.example/team/app`},
		{"127.0.0.1:5000/Team/App:v1", "repository names must be lower case (team/app)"},
	} {
		stdout, stderr, code := sh.Run(t, "", "generate", tt.image)
		mustFail(t, tt.image, stdout, stderr, code, tt.want)
	}
}

// TestInterruptedCommandsExit130 stops a command waiting on a registry that
// accepts connections and never answers: Ctrl-C ends it at once with
// "interrupted" and exit status 130.
func TestInterruptedCommandsExit130(t *testing.T) {
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	sh.MustRun(t, "", "generate-key-pair")
	for _, args := range [][]string{
		{"generate", "REGISTRY/stalled/app"},
		{"sign", "-key", "cosign.key", "REGISTRY/stalled/app"},
		{"download", "REGISTRY/stalled/app"},
	} {
		addr, accepted := stalledRegistry(t)
		args[len(args)-1] = strings.Replace(args[len(args)-1], "REGISTRY", addr, 1)
		ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
		cmd := exec.CommandContext(ctx, BuildBinary(t), args...)
		cmd.Dir, cmd.Env = sh.Dir, sh.Env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		<-accepted // the command now waits for the registry's answer
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Errorf("cosign %s, interrupted: %v, want exit 130; stderr %q", strings.Join(args, " "), err, stderr.String())
		}
		if got := strings.TrimSpace(stderr.String()); got != "cosign "+args[0]+": interrupted" {
			t.Errorf("cosign %s, interrupted: stderr %q, want just that it was interrupted", strings.Join(args, " "), got)
		}
	}
}

// stalledRegistry listens on loopback, accepts connections and never
// answers. It returns its address and the connections it accepts, which it
// closes when the test ends.
func stalledRegistry(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case accepted <- c:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), accepted
}

// TestRecursiveSignsEveryPlatform: sign --recursive signs a multi-platform
// index and each platform manifest; verify --recursive wants them all.
func TestRecursiveSignsEveryPlatform(t *testing.T) {
	Require(t, "docker-registry", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	sh.MustRun(t, "", "generate-key-pair")

	all := reg + "/recursive/all:v1"
	children := pushPlatformIndex(t, all)
	sh.MustRun(t, "", "sign", "--recursive", "-key", "cosign.key", all)
	for _, c := range children {
		sh.MustRun(t, "", "verify", "-key", "cosign.pub", reg+"/recursive/all@"+c.String())
	}
	out := sh.MustRun(t, "", "verify", "--recursive", "-key", "cosign.pub", all)
	if ds := verifiedDigests(t, out); len(ds) != 1+len(children) {
		t.Errorf("verify --recursive verified %d payloads, want %d", len(ds), 1+len(children))
	}

	top := reg + "/recursive/top:v1"
	children = pushPlatformIndex(t, top)
	sh.MustRun(t, "", "sign", "-key", "cosign.key", top)
	sh.MustRun(t, "", "verify", "-key", "cosign.pub", top)
	stdout, stderr, code := sh.Run(t, "", "verify", "--recursive", "-key", "cosign.pub", top)
	mustFail(t, "verify --recursive of an index signed alone", stdout, stderr, code, "platform manifest "+children[0].String()+" (linux/amd64): no signatures found")
}

// pushPlatformIndex pushes an index of two platform images to ref and
// returns the images' digests.
func pushPlatformIndex(t *testing.T, ref string) []v1.Hash {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	var digests []v1.Hash
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	return digests
}

// htpasswdConfig is a docker-registry configuration with basic auth.
const htpasswdConfig = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
auth:
  htpasswd:
    realm: cosign-e2e
    path: %s
http:
  addr: %s
`

// startAuthRegistry starts docker-registry with basic auth for user:password
// and returns its host:port once /v2/ asks for credentials.
func startAuthRegistry(t *testing.T, user, password string) string {
	t.Helper()
	Require(t, "docker-registry")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, htpasswdConfig, filepath.Join(dir, "storage"), htpasswd, addr), 0o644); err != nil {
		t.Fatal(err)
	}
	p := StartProcess(t, exec.Command("docker-registry", "serve", cfg))
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry with auth did not answer 401 on /v2/: %v\n%s", err, p.Output())
		}
		select {
		case <-p.Exited():
			t.Fatalf("docker-registry exited:\n%s", p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dockerConfig writes a Docker config.json with user:password for host and
// returns its directory, for DOCKER_CONFIG.
func dockerConfig(t *testing.T, host, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUnauthorizedNamesDockerLogin: against a registry with basic auth, a
// 401 says whether credentials were configured and names docker login;
// the right credentials from the Docker config sign and verify.
func TestUnauthorizedNamesDockerLogin(t *testing.T) {
	Require(t, "docker-registry")
	reg := startAuthRegistry(t, "signer", "s3cret")
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	sh.MustRun(t, "", "generate-key-pair")
	img := reg + "/private/app"

	stdout, stderr, code := sh.Run(t, "", "verify", "-key", "cosign.pub", img)
	mustFail(t, "no credentials", stdout, stderr, code, "none are configured for "+reg+": run 'docker login "+reg+"'")
	if strings.Contains(stderr, "map[") {
		t.Errorf("stderr %q shows a Go map", stderr)
	}
	sh.Set("DOCKER_CONFIG", dockerConfig(t, reg, "signer", "wrong"))
	stdout, stderr, code = sh.Run(t, "", "sign", "-key", "cosign.key", img)
	mustFail(t, "wrong credentials", stdout, stderr, code, "refused the credentials configured for "+reg+": run 'docker login "+reg+"' again")

	ref, err := name.ParseReference(img, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, pushed, remote.WithAuth(&authn.Basic{Username: "signer", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	sh.Set("DOCKER_CONFIG", dockerConfig(t, reg, "signer", "s3cret"))
	sh.MustRun(t, "", "sign", "-key", "cosign.key", img)
	sh.MustRun(t, "", "verify", "-key", "cosign.pub", img)
}

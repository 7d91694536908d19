package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/cosign-dev/cosign/sigstore"
)

// run runs one command line in process and returns stdout, stderr and the
// exit code. env replaces the environment (COSIGN_PASSWORD unset unless
// given); stdin is never a terminal.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		lookupEnv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		},
		stdinTerminal: func() bool { return false },
		readPassword:  func() ([]byte, error) { return nil, errors.New("no terminal in tests") },
	}
	code := c.main(context.Background(), args)
	return stdout.String(), stderr.String(), code
}

// testRegistry starts go-containerregistry's in-memory registry on loopback
// and returns its host:port. Like CNCF distribution 2.8 it has no referrers
// API, so bundles go to the referrers tag ("sha256-<hex>").
func testRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// pushImage pushes a random image to ref and returns its digest.
func pushImage(t *testing.T, ref string) v1.Hash {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// keyPair writes a fresh key pair (plain PKCS#8 when password is empty) to
// dir/prefix.key and dir/prefix.pub and returns their paths.
func keyPair(t *testing.T, dir, prefix, password string) (string, string) {
	t.Helper()
	priv, pub, err := sigstore.GenerateKeyPair([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := filepath.Join(dir, prefix+".key"), filepath.Join(dir, prefix+".pub")
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

// sigLayers counts the layers of the image's .sig manifest (0 if none).
func sigLayers(t *testing.T, repo string, d v1.Hash) int {
	t.Helper()
	return tagLayers(t, repo, sigstore.SignatureTag(d))
}

// tagLayers counts the layers of the image manifest at repo:tag (0 if
// none).
func tagLayers(t *testing.T, repo, tagName string) int {
	t.Helper()
	tag, err := name.NewTag(repo + ":" + tagName)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(tag)
	if err != nil {
		return 0
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

// mustRun runs a command line that must succeed and returns its stdout.
func mustRun(t *testing.T, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, code := run(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	return stdout
}

func TestSignThenVerifyWithEachKey(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/team/app"
	d := pushImage(t, repo+":v1")
	k1, p1 := keyPair(t, dir, "one", "")
	k2, p2 := keyPair(t, dir, "two", "secret")
	env2 := map[string]string{passwordEnv: "secret"}

	mustRun(t, nil, "", "sign", "-key", k1, repo+":v1")
	mustRun(t, env2, "", "sign", "--key", k2, repo+"@"+d.String())
	mustRun(t, nil, "", "sign", repo+":v1", "-key", k1) // identical: not added twice
	if n := sigLayers(t, repo, d); n != 2 {
		t.Fatalf("%d signature layers, want 2 (one per key, duplicate skipped)", n)
	}
	for _, pub := range []string{p1, p2} {
		out := mustRun(t, nil, "", "verify", "-key", pub, repo+":v1")
		var docs []json.RawMessage
		if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 {
			t.Fatalf("verify stdout %q: want a JSON array of one payload (%v)", out, err)
		}
		p, err := sigstore.ParsePayload(docs[0])
		if err != nil || p.Digest != d || p.Reference != repo {
			t.Errorf("verified payload %s: digest/reference do not match %s %s (%v)", docs[0], repo, d, err)
		}
	}
	img, err := remote.Head(mustRef(t, repo+":v1"))
	if err != nil || img.Digest != d {
		t.Errorf("after signing, %s:v1 is %v (%v), want the unchanged %s", repo, img.Digest, err, d)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyRefusalsAreTellable(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	key, pub := keyPair(t, dir, "key", "")
	_, otherPub := keyPair(t, dir, "other", "")
	signed := reg + "/signed"
	d := pushImage(t, signed+":v1")
	mustRun(t, nil, "", "sign", "-key", key, "-a", "env=prod", signed+":v1")

	// A signature over another image's payload, stored for this image.
	mismatched := reg + "/mismatched"
	pushImage(t, mismatched+":v1")
	otherDigest := pushImage(t, mismatched+":v2")
	payload := filepath.Join(dir, "payload.json")
	mustRun(t, nil, "", "generate", mismatched+":v2")
	out, _, _ := run(t, nil, "", "generate", mismatched+":v2")
	if err := os.WriteFile(payload, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	sigB64 := mustRun(t, nil, "", "sign", "-key", key, "--no-upload", mismatched+":v2")
	mustRun(t, nil, sigB64, "upload", "-signature", "-", "-payload", payload, mismatched+":v1")

	unsigned := reg + "/unsigned"
	pushImage(t, unsigned+":v1")
	closed := closedPort(t)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unsigned image", []string{"-key", pub, unsigned + ":v1"}, "no signatures found for " + unsigned + "@sha256:"},
		{"wrong key", []string{"-key", otherPub, signed + ":v1"}, "none of 1 signatures was made by this key"},
		{"payload for another digest", []string{"-key", pub, mismatched + ":v1"}, "digest mismatch: signature is for " + otherDigest.String() + ", image is sha256:"},
		{"missing annotation", []string{"-key", pub, "-a", "env=dev", signed + ":v1"}, `annotation mismatch (signature "sha256-`},
		{"missing annotation names value and image", []string{"-key", pub, "-a", "env=dev", signed + ":v1"}, `annotation "env" is "prod" (required by -a: "dev")) for ` + signed + "@sha256:"},
		{"unknown image", []string{"-key", pub, reg + "/nope:v1"}, "image not found: " + reg + "/nope:v1"},
		{"unknown tag", []string{"-key", pub, signed + ":v9"}, "image not found"},
		{"unreachable registry", []string{"-key", pub, closed + "/x:v1"}, "registry unreachable: " + closed},
		{"malformed public key", []string{"-key", key, signed + ":v1"}, "reading public key " + key},
		{"missing key file", []string{"-key", filepath.Join(dir, "absent.pub"), signed + ":v1"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, nil, "", append([]string{"verify"}, tt.args...)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			if !strings.HasPrefix(stderr, "cosign verify: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", stderr, tt.want)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q is not one line", stderr)
			}
			if strings.Contains(stderr, "refused by policy") {
				t.Errorf("stderr %q names verify's internal policy", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q on refusal, want nothing", stdout)
			}
		})
	}
	if _, stderr, code := run(t, nil, "", "verify", "-key", pub, "-a", "env=prod", signed+":v1"); code != 0 {
		t.Errorf("the required annotation present: exit %d: %s", code, stderr)
	}
	_ = d
}

// closedPort returns a loopback host:port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestNoUploadPrintsSignatureAndWritesNothing(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":latest")
	key, pub := keyPair(t, dir, "k", "")
	out := mustRun(t, nil, "", "sign", "-key", key, repo, "--no-upload")
	if n := sigLayers(t, repo, d); n != 0 {
		t.Fatalf("--no-upload wrote %d signature layers", n)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("stdout %q is not base64: %v", out, err)
	}
	payload := mustRun(t, nil, "", "generate", repo)
	pk, err := sigstore.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.Verify([]byte(payload), sig); err != nil {
		t.Errorf("the printed signature does not verify over generate's payload: %v", err)
	}
	// The detached signature verifies with -signature, from a file and stdin.
	sigFile := filepath.Join(dir, "sig")
	if err := os.WriteFile(sigFile, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "", "verify", "-key", pub, "-signature", sigFile, repo)
	mustRun(t, nil, out, "verify", "-key", pub, repo, "-signature", "-")
	tampered := append([]byte(nil), sig...)
	tampered[10] ^= 1
	_, stderr, code := run(t, nil, base64.StdEncoding.EncodeToString(tampered), "verify", "-key", pub, "-signature", "-", repo)
	if code != 1 || !strings.Contains(stderr, "none of 1 signatures was made by this key") {
		t.Errorf("tampered detached signature: exit %d, %q", code, stderr)
	}
}

func TestGeneratePrintsTheExactPayload(t *testing.T) {
	t.Parallel()
	reg := testRegistry(t)
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	a := mustRun(t, nil, "", "generate", repo+":v1", "-a", "k=v")
	b := mustRun(t, nil, "", "generate", "-a", "k=v", repo+"@"+d.String())
	want, err := sigstore.NewPayload(repo, d, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if a != string(want) || b != string(want) {
		t.Errorf("generate printed %q and %q, want %q (same bytes for tag and digest, no newline)", a, b, want)
	}
}

func TestUploadAcceptsRawAndBase64(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "pub.pem")
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin func(sig []byte) string
		flag  string
	}{
		{"raw bytes on stdin via --", func(sig []byte) string { return string(sig) }, "--"},
		{"base64 on stdin via -", func(sig []byte) string { return base64.StdEncoding.EncodeToString(sig) + "\n" }, "-"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := reg + "/up" + string(rune('a'+i))
			d := pushImage(t, repo+":v1")
			payload := mustRun(t, nil, "", "generate", repo+":v1")
			sig := ed25519.Sign(priv, []byte(payload))
			mustRun(t, nil, tt.stdin(sig), "upload", "-signature", tt.flag, repo+":v1")
			if n := sigLayers(t, repo, d); n != 1 {
				t.Fatalf("%d signature layers after upload, want 1", n)
			}
			mustRun(t, nil, "", "verify", "-key", pubPath, repo+":v1")
		})
	}
}

func TestSignRefusesBadKeys(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	enc, _ := keyPair(t, dir, "enc", "right")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		key  string
		want string
	}{
		{"wrong password", map[string]string{passwordEnv: "wrong"}, enc, "wrong password"},
		{"encrypted key, no password and no terminal", nil, enc, "set COSIGN_PASSWORD"},
		{"malformed key", nil, garbage, "reading private key " + garbage},
		{"missing key", nil, filepath.Join(dir, "absent.key"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, tt.env, "", "sign", "-key", tt.key, repo+":v1")
			if code != 1 || !strings.HasPrefix(stderr, "cosign sign: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
		})
	}
	if n := sigLayers(t, repo, d); n != 0 {
		t.Errorf("a failed sign wrote %d layers", n)
	}
}

func TestGenerateKeyPair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "cosign")
	mustRun(t, map[string]string{passwordEnv: ""}, "", "generate-key-pair", "--output-key-prefix", prefix)
	priv, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("empty password: key starts %q, want plain PKCS#8", priv[:30])
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	_, stderr, code := run(t, nil, "", "generate-key-pair", "--output-key-prefix", prefix)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("overwrite without --force: exit %d, %q", code, stderr)
	}
	if again, _ := os.ReadFile(prefix + ".key"); !bytes.Equal(again, priv) {
		t.Error("the refused run changed the existing key")
	}
	mustRun(t, map[string]string{passwordEnv: "pw"}, "", "generate-key-pair", "--output-key-prefix", prefix, "--force")
	priv2, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv2), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
		t.Errorf("password set: key starts %q, want cosign's encrypted format", priv2[:40])
	}
	if _, err := sigstore.ParsePrivateKey(priv2, func() ([]byte, error) { return []byte("pw"), nil }); err != nil {
		t.Errorf("the encrypted key does not open with its password: %v", err)
	}
}

func TestGenerateKeyPairPromptsOnTerminal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		answers   []string
		wantErr   string
		encrypted bool
	}{
		{"matching passwords encrypt", []string{"pw", "pw"}, "", true},
		{"empty answers give a plain key", []string{"", ""}, "", false},
		{"mismatch is refused", []string{"pw", "wp"}, "passwords do not match", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "k")
			answers := tt.answers
			var stderr bytes.Buffer
			c := &cli{
				stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr,
				lookupEnv:     func(string) (string, bool) { return "", false },
				stdinTerminal: func() bool { return true },
				readPassword: func() ([]byte, error) {
					a := answers[0]
					answers = answers[1:]
					return []byte(a), nil
				},
			}
			code := c.main(context.Background(), []string{"generate-key-pair", "--output-key-prefix", prefix})
			if tt.wantErr != "" {
				if code != 1 || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("exit %d, %q; want %q", code, stderr.String(), tt.wantErr)
				}
				if _, err := os.Stat(prefix + ".key"); err == nil {
					t.Error("a key was written despite the mismatch")
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			priv, err := os.ReadFile(prefix + ".key")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(priv), "ENCRYPTED"); got != tt.encrypted {
				t.Errorf("encrypted = %v, want %v", got, tt.encrypted)
			}
		})
	}
}

func TestDownloadPrintsOneLinePerSignature(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	k1, p1 := keyPair(t, dir, "one", "")
	k2, p2 := keyPair(t, dir, "two", "")
	mustRun(t, nil, "", "sign", "-key", k1, repo+":v1")
	mustRun(t, nil, "", "sign", "-key", k2, "-a", "team=x", repo+":v1")
	out := mustRun(t, nil, "", "download", repo+":v1")
	var pubs []sigstore.PublicKey
	for _, p := range []string{p1, p2} {
		k, err := sigstore.LoadPublicKey(p)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, k)
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var got downloaded
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		sig, err1 := base64.StdEncoding.DecodeString(got.Base64Signature)
		payload, err2 := base64.StdEncoding.DecodeString(got.Payload)
		if err1 != nil || err2 != nil {
			t.Fatalf("line %q: fields are not base64", sc.Text())
		}
		if pubs[lines].Verify(payload, sig) != nil {
			t.Errorf("line %d does not verify with key %d", lines+1, lines+1)
		}
		if p, err := sigstore.ParsePayload(payload); err != nil || p.Digest != d {
			t.Errorf("line %d: payload %s is not for %s", lines+1, payload, d)
		}
		lines++
	}
	if lines != 2 {
		t.Errorf("%d lines, want 2", lines)
	}
	unsigned := reg + "/unsigned"
	pushImage(t, unsigned+":v1")
	if _, stderr, code := run(t, nil, "", "download", unsigned+":v1"); code != 1 || !strings.Contains(stderr, "no signatures found") {
		t.Errorf("download of an unsigned image: exit %d, %q", code, stderr)
	}
}

func TestBundleSignatureVerifies(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	key, pub := keyPair(t, dir, "k", "")
	_, otherPub := keyPair(t, dir, "other", "")
	mustRun(t, nil, "", "sign", "--bundle", "-key", key, repo+":v1")
	if n := sigLayers(t, repo, d); n != 0 {
		t.Errorf("--bundle also wrote %d legacy layers", n)
	}
	out := mustRun(t, nil, "", "verify", "-key", pub, repo+":v1")
	if !strings.Contains(out, d.Hex) || !strings.Contains(out, sigstore.CosignPredicateType) {
		t.Errorf("verified bundle statement %q does not name the digest and cosign's predicate", out)
	}
	if _, stderr, code := run(t, nil, "", "verify", "-key", otherPub, repo+":v1"); code != 1 || !strings.Contains(stderr, "none of 1 signatures") {
		t.Errorf("bundle with another key: exit %d, %q", code, stderr)
	}
	dl := mustRun(t, nil, "", "download", repo+":v1")
	var got downloaded
	if err := json.Unmarshal([]byte(dl), &got); err != nil || len(got.Bundle) == 0 || got.PayloadType != sigstore.InTotoPayloadType {
		t.Errorf("download of a bundle = %q (%v), want the bundle and its payload type", dl, err)
	}
}

func TestCommandLineErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no command", nil, 2, "Usage: cosign COMMAND"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "generate-key-pair"},
		{"help for a command", []string{"help", "sign"}, 0, "Usage: cosign sign"},
		{"-h on a command", []string{"verify", "-h"}, 0, "-signature"},
		{"generate -h signs Ed25519 from a file", []string{"generate", "-h"}, 0, "openssl pkeyutl -sign -inkey key.pem -rawin -in payload.json |"},
		{"sign without -key", []string{"sign", "127.0.0.1:1/x"}, 2, "-key is required"},
		{"sign without an image", []string{"sign", "-key", "k"}, 2, "expected one image reference"},
		{"unknown flag", []string{"verify", "--bogus", "x"}, 2, "flag provided but not defined"},
		{"upload without -signature", []string{"upload", "127.0.0.1:1/x"}, 2, "-signature is required"},
		{"upload with -payload and -a", []string{"upload", "-signature", "s", "-payload", "p", "-a", "k=v", "127.0.0.1:1/x"}, 2, "-payload is used as given"},
		{"upload reading stdin twice", []string{"upload", "-signature", "-", "-payload", "-", "127.0.0.1:1/x"}, 2, "cannot both read stdin"},
		{"verify -payload without -signature", []string{"verify", "-key", "k", "-payload", "p", "127.0.0.1:1/x"}, 2, "-payload needs -signature"},
		{"bad reference", []string{"generate", "UPPER/Case:??"}, 1, "parsing image reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, nil, "", tt.args...)
			out := stderr
			if tt.wantCode == 0 {
				out = stdout // help goes to stdout
			}
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, tt.wantCode, tt.want)
			}
		})
	}
	out, _, code := run(t, nil, "", "version")
	if code != 0 || !strings.HasPrefix(out, "cosign ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for reg, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "127.0.0.2": true,
		"gcr.io": false, "10.0.0.1:5000": false, "example.com:5000": false,
	} {
		if got := isLoopback(reg); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", reg, got, want)
		}
	}
}

func TestRegistryFailuresAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"404 is a missing image", &transport.Error{StatusCode: http.StatusNotFound}, errNotFound},
		{"MANIFEST_UNKNOWN is a missing image", &transport.Error{StatusCode: http.StatusBadRequest,
			Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}, errNotFound},
		{"401 is denied", &transport.Error{StatusCode: http.StatusUnauthorized}, errDenied},
		{"403 from the signature reader is denied", &sigstore.RegistryError{StatusCode: http.StatusForbidden}, errDenied},
		{"503 is unreachable", &transport.Error{StatusCode: http.StatusServiceUnavailable}, errUnreachable},
		{"429 is unreachable", &transport.Error{StatusCode: http.StatusTooManyRequests}, errUnreachable},
		{"a signature reader outage is unreachable", &sigstore.RegistryError{StatusCode: http.StatusBadGateway}, errUnreachable},
		{"a refused connection is unreachable", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, errUnreachable},
		{"a deadline is unreachable", context.DeadlineExceeded, errUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := registryFailure("r/x", tt.err)
			if !errors.Is(got, tt.want) || !errors.Is(got, tt.err) {
				t.Errorf("registryFailure(%v) = %v, want it to wrap %v and the cause", tt.err, got, tt.want)
			}
		})
	}
	plain := registryFailure("r/x", errors.New("odd"))
	for _, e := range []error{errNotFound, errDenied, errUnreachable} {
		if errors.Is(plain, e) {
			t.Errorf("an unclassified error became %v", e)
		}
	}
}

func TestVerifyRefusesMalformedSignatureArtifact(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	_, pub := keyPair(t, dir, "k", "")
	// An index, not an image manifest, under the .sig tag.
	idx, err := random.Index(64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(mustRef(t, repo+":"+sigstore.SignatureTag(d)), idx); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, nil, "", "verify", "-key", pub, repo+":v1")
	if code != 1 || !strings.Contains(stderr, "invalid signature artifact") {
		t.Errorf("exit %d, %q; want 1 and an invalid artifact", code, stderr)
	}
}

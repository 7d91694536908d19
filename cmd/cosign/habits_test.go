package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unauthorizedRegistry answers every request 401 as CNCF distribution does,
// with the scope list as the error's detail.
func unauthorizedRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required",` +
			`"detail":[{"Type":"repository","Class":"","Name":"team/app","Action":"pull"}]}]}`))
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// Not parallel: it points DOCKER_CONFIG at its own directories.
func TestUnauthorizedSaysWhetherCredentialsWereSent(t *testing.T) {
	reg := unauthorizedRegistry(t)
	img := reg + "/team/app:v1"

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	_, stderr, code := run(t, nil, "", "generate", img)
	if code != 1 || !strings.Contains(stderr, "none are configured for "+reg) || !strings.Contains(stderr, "docker login "+reg) {
		t.Errorf("no credentials: exit %d, %q; want them said missing and docker login %s", code, stderr, reg)
	}
	if strings.Contains(stderr, "map[") {
		t.Errorf("stderr %q shows a Go map", stderr)
	}

	withCreds := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("user:wrong"))
	cfg := `{"auths":{"` + reg + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(withCreds, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", withCreds)
	_, stderr, code = run(t, nil, "", "generate", img)
	if code != 1 || !strings.Contains(stderr, "refused the credentials configured for "+reg) || !strings.Contains(stderr, "docker login "+reg) {
		t.Errorf("refused credentials: exit %d, %q; want them said refused and docker login %s", code, stderr, reg)
	}
	if strings.Contains(stderr, "map[") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q is not one line without Go values", stderr)
	}
}

func TestInterruptedPromptExits130(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := keyPair(t, dir, "enc", "pw")
	ctx, cancel := context.WithCancelCause(context.Background())
	var stderr bytes.Buffer
	c := &cli{
		stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr,
		lookupEnv:     func(string) (string, bool) { return "", false },
		stdinTerminal: func() bool { return true },
		readPassword: func() ([]byte, error) {
			cancel(errInterrupted) // Ctrl-C at the prompt
			<-ctx.Done()
			return nil, context.Cause(ctx)
		},
	}
	code := c.main(ctx, []string{"sign", "-key", key, "127.0.0.1:1/x"})
	if code != 130 || !strings.HasSuffix(stderr.String(), "cosign sign: interrupted\n") {
		t.Errorf("exit %d, stderr %q; want 130 and interrupted", code, stderr.String())
	}
}

func TestPasswordFromStdin(t *testing.T) {
	t.Parallel()
	prefix := filepath.Join(t.TempDir(), "k")
	_, stderr, code := run(t, nil, "s3cret\n", "generate-key-pair", "--output-key-prefix", prefix)
	if code != 0 || !strings.Contains(stderr, "encrypted with the password") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	priv, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(priv, []byte("ENCRYPTED SIGSTORE PRIVATE KEY")) {
		t.Fatalf("key written in plain text from a piped password")
	}
	out := mustRun(t, map[string]string{passwordEnv: "s3cret"}, "", "public-key", "--key", prefix+".key")
	if pub, _ := os.ReadFile(prefix + ".pub"); out != string(pub) {
		t.Errorf("public-key printed %q, want %q", out, pub)
	}
	out = mustRun(t, nil, "s3cret", "public-key", "--key", prefix+".key")
	if pub, _ := os.ReadFile(prefix + ".pub"); out != string(pub) {
		t.Errorf("public-key with the password on stdin printed %q", out)
	}
	if _, stderr, code := run(t, nil, "", "generate-key-pair", "--output-key-prefix", prefix+"2"); code != 1 || !strings.Contains(stderr, "COSIGN_PASSWORD") {
		t.Errorf("empty stdin: exit %d, %q; want a refusal naming COSIGN_PASSWORD", code, stderr)
	}
}

func TestSigstoreCommandSpellings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"attach", "sbom", "x"}, 2, "attach supports only 'attach signature'"},
		{[]string{"attach", "signature", "x"}, 2, "-signature is required"},
		{[]string{"attach", "-h"}, 0, ""},
		{[]string{"download", "signature", "a", "b"}, 2, "expected one image reference"},
		{[]string{"sign", "--key", "awskms:///alias/k", "127.0.0.1:1/x"}, 1, "key references of this kind are not supported"},
		{[]string{"verify", "--key", "env://COSIGN_TEST_UNSET", "127.0.0.1:1/x"}, 1, "COSIGN_TEST_UNSET is not set"},
	}
	for _, tt := range tests {
		_, stderr, code := run(t, nil, "", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("cosign %s: exit %d, %q; want %d and %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.want)
		}
	}
}

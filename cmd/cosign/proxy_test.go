package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a server goroutine and a test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningOn = regexp.MustCompile(`listening on http://(\S+)`)

func TestProxyDemoAdmitsSignedRefusesUnsigned(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr lockedBuffer
	c := &cli{
		stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr,
		lookupEnv:     func(string) (string, bool) { return "", false },
		stdinTerminal: func() bool { return false },
	}
	exit := make(chan int, 1)
	go func() { exit <- c.main(ctx, []string{"proxy", "--listen", "127.0.0.1:0"}) }()

	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); {
		select {
		case code := <-exit:
			t.Fatalf("proxy exited %d early:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if m := listeningOn.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("the demo proxy never said where it listens:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "demo/signed:v1") {
		t.Errorf("the demo printed no pull commands:\n%s", stderr.String())
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for path, want := range map[string]int{
		"/v2/demo/signed/manifests/v1":   http.StatusOK,
		"/v2/demo/unsigned/manifests/v1": http.StatusForbidden,
	} {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("proxy exited %d after SIGINT-like cancel, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not stop when its context ended")
	}
}

func TestProxyConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:0\nnot-a-field: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown field names file and line", []string{"proxy", "--config", bad}, 1, bad + ":"},
		{"missing file", []string{"proxy", "--config", filepath.Join(dir, "absent.yaml")}, 1, "no such file"},
		{"positional argument", []string{"proxy", "extra"}, 2, "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, nil, "", tt.args...)
			if code != tt.code || !strings.HasPrefix(stderr, "cosign proxy: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

package demo

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/cosign-dev/cosign/proxy"
)

func TestDemoAdmitsSignedAndRefusesUnsigned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := Start(ctx, "127.0.0.1:5050")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Signed != "127.0.0.1:5050/demo/signed:v1" || d.Unsigned != "127.0.0.1:5050/demo/unsigned:v1" ||
		len(d.Commands) != 2 || !strings.HasSuffix(d.Commands[0], d.Signed) || !strings.HasSuffix(d.Commands[1], d.Unsigned) {
		t.Fatalf("demo %+v", d)
	}
	if d.Config.Listen != "127.0.0.1:5050" {
		t.Fatalf("listen %q", d.Config.Listen)
	}
	srv, err := proxy.New(d.Config, proxy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	host := strings.TrimPrefix(ts.URL, "http://")

	signed, err := name.ParseReference(host + "/demo/signed:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(signed)
	if err != nil {
		t.Fatalf("signed demo image refused: %v", err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(ts.URL + "/v2/demo/unsigned/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(b, &body); err != nil || resp.StatusCode != http.StatusForbidden ||
		len(body.Errors) != 1 || body.Errors[0].Code != "DENIED" || !strings.Contains(body.Errors[0].Message, "demo/unsigned") {
		t.Fatalf("unsigned demo image: %d %s", resp.StatusCode, b)
	}
}

func TestDemoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d, err := Start(ctx, ":5050")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Signed, "127.0.0.1:5050/") {
		t.Fatalf("a wildcard listen address should print 127.0.0.1: %q", d.Signed)
	}
	cancel()
	<-d.done
	if _, err := http.Get("http://" + d.Upstream + "/v2/"); err == nil {
		t.Fatal("upstream still answers after the context ended")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDemoBadListen(t *testing.T) {
	if _, err := Start(context.Background(), "5050"); err == nil {
		t.Fatal("accepted a listen address without a port")
	}
}

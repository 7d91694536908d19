// Package demo runs the proxy's embedded default: an in-process upstream
// registry (go-containerregistry's) seeded with a signed and an unsigned
// image and a fresh demo key, and a proxy configuration that admits the
// first and refuses the second. It needs no network and no files.
package demo

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/proxy"
	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// Repositories and tag of the demo images.
const (
	SignedRepository   = "demo/signed"
	UnsignedRepository = "demo/unsigned"
	Tag                = "v1"
)

// Demo is a running demo upstream and the proxy configuration for it.
type Demo struct {
	// Config is the proxy configuration: listen address as given, the demo
	// upstream (named by its 127.0.0.1:PORT address, the name the signature
	// carries), one enforce policy for "<upstream>/demo/**" trusting the
	// demo key, and defaultPolicy deny.
	Config *proxy.Config
	// Upstream is the demo registry's address, 127.0.0.1:PORT.
	Upstream string
	// PublicKey is the demo key, PEM.
	PublicKey []byte
	// Signed and Unsigned are the demo images as pulled through the proxy,
	// e.g. "127.0.0.1:5050/demo/signed:v1".
	Signed, Unsigned string
	// Commands are pull commands to print: the first is admitted, the
	// second refused with 403 DENIED.
	Commands []string

	srv       *http.Server
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start starts the demo upstream on 127.0.0.1:0, seeds it and returns the
// configuration for a proxy listening on listen. The upstream stops when
// ctx is done or Close is called.
func Start(ctx context.Context, listen string) (*Demo, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("demo: listen address %q: %w", listen, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: starting the upstream registry: %w", err)
	}
	quiet := log.New(io.Discard, "", 0)
	d := &Demo{
		Upstream: ln.Addr().String(),
		srv:      &http.Server{Handler: registry.New(registry.Logger(quiet)), ReadHeaderTimeout: 10 * time.Second},
		done:     make(chan struct{}),
	}
	go func() {
		defer close(d.done)
		_ = d.srv.Serve(ln)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = d.Close()
		case <-d.done:
		}
	}()
	key, err := d.seed(ctx)
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	d.Config = &proxy.Config{
		Listen:          listen,
		Upstreams:       []proxy.Upstream{{Registry: d.Upstream, URL: "http://" + d.Upstream}},
		DefaultUpstream: d.Upstream,
		Policies: []*verifier.Policy{{
			Name:  "demo",
			Match: []string{d.Upstream + "/demo/**"},
			Keys:  []sigstore.PublicKey{key},
			Mode:  verifier.ModeEnforce,
		}},
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	at := net.JoinHostPort(host, port)
	d.Signed = at + "/" + SignedRepository + ":" + Tag
	d.Unsigned = at + "/" + UnsignedRepository + ":" + Tag
	d.Commands = []string{"docker pull " + d.Signed, "docker pull " + d.Unsigned}
	return d, nil
}

// seed pushes the two images, makes the demo key and signs demo/signed.
func (d *Demo) seed(ctx context.Context) (sigstore.PublicKey, error) {
	privPEM, pubPEM, err := sigstore.GenerateKeyPair(nil)
	if err != nil {
		return nil, fmt.Errorf("generating the demo key: %w", err)
	}
	priv, err := sigstore.ParsePrivateKey(privPEM, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the demo key: %w", err)
	}
	d.PublicKey = pubPEM
	for _, repo := range []string{SignedRepository, UnsignedRepository} {
		img, err := random.Image(1024, 2)
		if err != nil {
			return nil, fmt.Errorf("making %s: %w", repo, err)
		}
		tag, err := name.NewTag(d.Upstream + "/" + repo + ":" + Tag)
		if err != nil {
			return nil, err
		}
		if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("pushing %s: %w", tag, err)
		}
		if repo != SignedRepository {
			continue
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		payload, err := sigstore.NewPayload(d.Upstream+"/"+repo, digest, nil)
		if err != nil {
			return nil, err
		}
		sig, err := priv.Sign(payload)
		if err != nil {
			return nil, fmt.Errorf("signing %s: %w", tag, err)
		}
		if _, err := sigstore.AppendSignature(ctx, tag.Context().Digest(digest.String()), payload, sig); err != nil {
			return nil, err
		}
	}
	return priv.Public(), nil
}

// Close stops the demo upstream. It may be called more than once.
func (d *Demo) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = d.srv.Close()
		<-d.done
	})
	return d.closeErr
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/cosign-dev/cosign/sigstore"
)

// userAgent is sent to registries.
const userAgent = "cosign-dev/cosign"

// registryFlags are the options every command that talks to a registry
// shares. Credentials always come from the user's Docker configuration
// (authn.DefaultKeychain: ~/.docker/config.json and credential helpers).
type registryFlags struct {
	// insecure allows plain HTTP and skips TLS certificate verification.
	// Loopback registries (127.0.0.0/8, ::1, localhost) get plain HTTP
	// without it.
	insecure bool
}

// register adds --allow-insecure-registry to fs.
func (r *registryFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&r.insecure, "allow-insecure-registry", false,
		"allow plain HTTP and unverified TLS to the registry (automatic HTTP for loopback registries)")
}

// parseReference parses an image reference ("host/repo:tag", "host/repo@sha256:...").
func (r *registryFlags) parseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", s, err)
	}
	if r.insecure || isLoopback(ref.Context().RegistryStr()) {
		if ref, err = name.ParseReference(s, name.Insecure); err != nil {
			return nil, fmt.Errorf("parsing image reference %q: %w", s, err)
		}
	}
	return ref, nil
}

// isLoopback reports whether a registry host[:port] is on this machine.
func isLoopback(registry string) bool {
	host, _, err := net.SplitHostPort(registry)
	if err != nil {
		host = registry
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// transport is the HTTP transport for registry requests: go-containerregistry's
// defaults plus a response-header timeout, so a stalled registry fails the
// command instead of hanging it.
func (r *registryFlags) transport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	if r.insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it
	}
	return t
}

// remoteOptions are the go-containerregistry options for writes and reads.
func (r *registryFlags) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(r.transport()),
		remote.WithUserAgent(userAgent),
	}
}

// resolve returns the descriptor of the manifest ref names. The digest is the
// hash of the manifest bytes fetched, never a registry header; fetching by
// digest also proves the image exists.
func (r *registryFlags) resolve(ctx context.Context, ref name.Reference) (name.Digest, v1.Descriptor, error) {
	desc, err := remote.Get(ref, r.remoteOptions(ctx)...)
	if err != nil {
		return name.Digest{}, v1.Descriptor{}, registryFailure(ref.Name(), err)
	}
	return ref.Context().Digest(desc.Digest.String()), desc.Descriptor, nil
}

// resolveImage parses image and resolves it to the digest of its manifest.
func (r *registryFlags) resolveImage(ctx context.Context, image string) (name.Digest, v1.Descriptor, error) {
	ref, err := r.parseReference(image)
	if err != nil {
		return name.Digest{}, v1.Descriptor{}, err
	}
	return r.resolve(ctx, ref)
}

// signatures reads every signature stored for d, in both formats.
func (r *registryFlags) signatures(ctx context.Context, d name.Digest) ([]sigstore.Signature, error) {
	f, err := sigstore.FetcherFor(ctx, d.Context(), authn.DefaultKeychain, r.transport())
	if err != nil {
		return nil, registryFailure(d.Context().Name(), err)
	}
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, err
	}
	sigs, err := f.Signatures(ctx, d.Context().RepositoryStr(), h)
	if err != nil {
		if errors.Is(err, sigstore.ErrInvalidArtifact) {
			return nil, fmt.Errorf("reading signatures of %s: %w", d, err)
		}
		return nil, registryFailure(d.String(), err)
	}
	return sigs, nil
}

// Error categories a user must be able to tell apart.
var (
	errNotFound    = errors.New("image not found")
	errUnreachable = errors.New("registry unreachable")
	errDenied      = errors.New("access denied")
)

// registryFailure classifies an error from a registry call about what:
// a missing image, an unreachable or failing registry, refused credentials.
func registryFailure(what string, err error) error {
	var te *transport.Error
	var re *sigstore.RegistryError
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &te) && isNotFound(te):
		return fmt.Errorf("%w: %s: %w", errNotFound, what, err)
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%w: %s: %w", errDenied, what, err)
	case errors.As(err, &te) && (te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests):
		return fmt.Errorf("%w: %s: %w", errUnreachable, what, err)
	case errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%w: %s: %w", errDenied, what, err)
	case errors.As(err, &re), errors.As(err, &ne), errors.As(err, &ue),
		errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w", errUnreachable, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isNotFound(te *transport.Error) bool {
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

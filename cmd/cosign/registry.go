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
	"strings"
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
	if scheme, rest, ok := strings.Cut(s, "://"); ok && (scheme == "http" || scheme == "https") {
		hint := ""
		if scheme == "http" {
			hint = " and add --allow-insecure-registry for a registry over plain HTTP (loopback registries need none)"
		}
		return nil, fmt.Errorf("image reference %q has a URL scheme: write %s%s", s, rest, hint)
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		if repo := repositoryPart(s); repo != strings.ToLower(repo) {
			return nil, fmt.Errorf("parsing image reference %q: repository names must be lower case (%s)", s, strings.ToLower(repo))
		}
		return nil, fmt.Errorf("parsing image reference %q: %w", s, err)
	}
	if r.insecure || isLoopback(ref.Context().RegistryStr()) {
		if ref, err = name.ParseReference(s, name.Insecure); err != nil {
			return nil, fmt.Errorf("parsing image reference %q: %w", s, err)
		}
	}
	return ref, nil
}

// repositoryPart is the repository of an image reference as written: without
// the registry host (a first component with a dot or colon, or localhost),
// the tag and the digest.
func repositoryPart(s string) string {
	s, _, _ = strings.Cut(s, "@")
	if host, rest, ok := strings.Cut(s, "/"); ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		s = rest
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		s = s[:i]
	}
	return s
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

// platformManifests lists the manifests an index (desc, at d) holds, and
// those of the indexes it holds, for --recursive; an image has none.
func (r *registryFlags) platformManifests(ctx context.Context, d name.Digest, desc v1.Descriptor) ([]v1.Descriptor, error) {
	if !desc.MediaType.IsIndex() {
		return nil, nil
	}
	var out []v1.Descriptor
	seen := map[v1.Hash]bool{desc.Digest: true}
	var walk func(d name.Digest, depth int) error
	walk = func(d name.Digest, depth int) error {
		if depth > maxIndexDepth {
			return fmt.Errorf("%s: indexes nested more than %d deep", d, maxIndexDepth)
		}
		got, err := remote.Get(d, r.remoteOptions(ctx)...)
		if err != nil {
			return registryFailure(d.String(), err)
		}
		idx, err := got.ImageIndex()
		if err != nil {
			return fmt.Errorf("reading index %s: %w", d, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return fmt.Errorf("reading index %s: %w", d, err)
		}
		for _, m := range im.Manifests {
			if seen[m.Digest] || !(m.MediaType.IsImage() || m.MediaType.IsIndex()) {
				continue
			}
			seen[m.Digest] = true
			out = append(out, m)
			if m.MediaType.IsIndex() {
				if err := walk(d.Context().Digest(m.Digest.String()), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(d, 1); err != nil {
		return nil, err
	}
	return out, nil
}

// maxIndexDepth bounds how deep --recursive follows nested indexes.
const maxIndexDepth = 4

// platform names a manifest's platform ("linux/arm64/v8"), or "".
func platform(desc v1.Descriptor) string {
	if desc.Platform == nil {
		return ""
	}
	return desc.Platform.String()
}

// signatures reads every signature stored for d, in both formats.
func (r *registryFlags) signatures(ctx context.Context, d name.Digest) ([]sigstore.Signature, error) {
	return r.lookup(ctx, d, "signatures", func(f *sigstore.Fetcher, repo string, h v1.Hash) ([]sigstore.Signature, error) {
		return f.Signatures(ctx, repo, h)
	})
}

// lookup reads what read finds stored for d, with a Fetcher for d's
// repository, and turns its failure into the CLI's error: an invalid
// artifact names what was being read, a registry failure is classified
// (registryFailure).
func (r *registryFlags) lookup(ctx context.Context, d name.Digest, what string,
	read func(f *sigstore.Fetcher, repo string, h v1.Hash) ([]sigstore.Signature, error)) ([]sigstore.Signature, error) {
	f, err := sigstore.FetcherFor(ctx, d.Context(), authn.DefaultKeychain, r.transport())
	if err != nil {
		return nil, registryFailure(d.Context().Name(), err)
	}
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, err
	}
	sigs, err := read(f, d.Context().RepositoryStr(), h)
	if err != nil {
		if errors.Is(err, sigstore.ErrInvalidArtifact) {
			return nil, fmt.Errorf("reading %s of %s: %w", what, d, err)
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

// registryError is a registry failure as the user reads it: a category,
// what failed, and why in words (registry error details, which registries
// send as JSON, are left out rather than printed as Go values).
type registryError struct {
	kind  error
	msg   string
	cause error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.cause}
	}
	return []error{e.kind, e.cause}
}

// registryFailure classifies an error from a registry call about what
// ("host/repo", "host/repo:tag"): a missing image, an unreachable or failing
// registry, missing or refused credentials (naming docker login).
func registryFailure(what string, err error) error {
	var te *transport.Error
	var re *sigstore.RegistryError
	var ne net.Error
	var ue *url.Error
	isTE := errors.As(err, &te)
	text := err.Error()
	if isTE {
		text = strings.Replace(text, te.Error(), describeTransportError(te), 1)
	}
	wrap := func(kind error, detail string) error {
		msg := fmt.Sprintf("%v: %s: %s", kind, what, text)
		if detail != "" {
			msg = fmt.Sprintf("%v: %s: %s (%s)", kind, what, detail, text)
		}
		return &registryError{kind: kind, msg: msg, cause: err}
	}
	switch {
	case isTE && sigstore.IsNotFound(te):
		return wrap(errNotFound, "")
	case isTE && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return wrap(errDenied, credentialsHint(what, te.StatusCode))
	case isTE && (te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests):
		return wrap(errUnreachable, "")
	case errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden):
		return wrap(errDenied, credentialsHint(what, re.StatusCode))
	case errors.As(err, &re), errors.As(err, &ne), errors.As(err, &ue),
		errors.Is(err, context.DeadlineExceeded):
		return wrap(errUnreachable, "")
	}
	return &registryError{msg: what + ": " + text, cause: err}
}

// credentialsHint says whether credentials for what's registry were sent
// and what to do: docker login.
func credentialsHint(what string, status int) string {
	host := registryHost(what)
	auth, err := authn.DefaultKeychain.Resolve(hostResource(host))
	missing := err == nil && auth == authn.Anonymous
	switch {
	case missing && status == http.StatusUnauthorized:
		return fmt.Sprintf("the registry wants credentials and none are configured for %s: run 'docker login %s'", host, host)
	case missing:
		return fmt.Sprintf("anonymous access is refused and no credentials are configured for %s: run 'docker login %s'", host, host)
	case status == http.StatusUnauthorized:
		return fmt.Sprintf("the registry refused the credentials configured for %s: run 'docker login %s' again", host, host)
	default:
		return fmt.Sprintf("the credentials configured for %s are not allowed this: log in as another user with 'docker login %s'", host, host)
	}
}

// registryHost is the registry of "host/repo...", as docker login names it.
func registryHost(what string) string {
	if r, err := name.NewRepository(repositoryOf(what)); err == nil {
		return r.RegistryStr()
	}
	host, _, _ := strings.Cut(what, "/")
	return host
}

// repositoryOf drops a tag or digest from a reference.
func repositoryOf(s string) string {
	if ref, err := name.ParseReference(s); err == nil {
		return ref.Context().Name()
	}
	return s
}

// hostResource is a registry as authn.Keychain takes it.
type hostResource string

func (h hostResource) String() string      { return string(h) }
func (h hostResource) RegistryStr() string { return string(h) }

// describeTransportError renders a registry error response in words:
// "GET URL: 401 Unauthorized: UNAUTHORIZED: authentication required".
func describeTransportError(te *transport.Error) string {
	var b strings.Builder
	if te.Request != nil {
		fmt.Fprintf(&b, "%s %s: ", te.Request.Method, te.Request.URL.Redacted())
	}
	fmt.Fprintf(&b, "%d %s", te.StatusCode, http.StatusText(te.StatusCode))
	for _, d := range te.Errors {
		fmt.Fprintf(&b, ": %s", d.Code)
		if d.Message != "" {
			fmt.Fprintf(&b, ": %s", d.Message)
		}
		if s, ok := d.Detail.(string); ok && s != "" {
			fmt.Fprintf(&b, " (%s)", s)
		}
	}
	return b.String()
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/publicsuffix"
)

// maxSecretFile bounds the credential and certificate files read.
const maxSecretFile = 1 << 20

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSecretFile)
	}
	return b, nil
}

// loadCertPool reads PEM certificates into a pool.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := readSmallFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// --- the proxy's own credentials for an upstream ---

// loadDockerConfig reads a ~/.docker/config.json.
func loadDockerConfig(path string) (*configfile.ConfigFile, error) {
	b, err := readSmallFile(path)
	if err != nil {
		return nil, err
	}
	cf, err := config.LoadFromReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cf.Filename = path
	return cf, nil
}

// authenticator returns the credentials for registry (the name clients
// use, e.g. docker.io): username and the password file's first line, or
// what the Docker config (and its credential helpers) holds for it.
func (a *UpstreamAuth) authenticator(registry string) (authn.Authenticator, error) {
	if a.DockerConfig == "" {
		b, err := readSmallFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimRight(pw, "\r")
		if pw == "" {
			return nil, fmt.Errorf("password file %s is empty", a.PasswordFile)
		}
		return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: pw}), nil
	}
	cf, err := loadDockerConfig(a.DockerConfig)
	if err != nil {
		return nil, err
	}
	key := registry
	if registry == name.DefaultRegistry || registry == "docker.io" {
		key = authn.DefaultAuthKey
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("docker config %s: credentials for %s: %w", a.DockerConfig, registry, err)
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" && ac.Auth == "" {
		return nil, fmt.Errorf("docker config %s holds no credentials for %s", a.DockerConfig, key)
	}
	return authn.FromConfig(authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}), nil
}

// maxScopes bounds the per-repository token transports an upstream keeps.
const maxScopes = 1024

// ownedAuth does the token flow with the proxy's own credentials for one
// upstream, with go-containerregistry's transport: one transport per
// repository (pull scope), cached, its token refreshed on expiry.
type ownedAuth struct {
	up     *upstream
	auth   authn.Authenticator
	reg    name.Registry
	guard  http.RoundTripper
	scopes *lru.Cache[string, http.RoundTripper]
	// making shares the token exchange of concurrent first requests for
	// one repository.
	making flights[http.RoundTripper]
}

func newOwnedAuth(up *upstream, a *UpstreamAuth) (*ownedAuth, error) {
	authr, err := a.authenticator(up.registry)
	if err != nil {
		return nil, err
	}
	return newTokenAuth(up, authr)
}

// newTokenAuth is the token flow for up with authr: the proxy's own
// credentials, or authn.Anonymous for the anonymous tokens public
// registries hand out.
func newTokenAuth(up *upstream, authr authn.Authenticator) (*ownedAuth, error) {
	var opts []name.Option
	if up.base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(up.base.Host, opts...)
	if err != nil {
		return nil, err
	}
	cache, err := lru.New[string, http.RoundTripper](maxScopes)
	if err != nil {
		return nil, err
	}
	return &ownedAuth{up: up, auth: authr, reg: reg, scopes: cache,
		guard: &realmGuard{base: up.transport, origin: up.base}}, nil
}

// transport returns the authenticating transport for repo.
func (o *ownedAuth) transport(ctx context.Context, repo string) (http.RoundTripper, error) {
	if rt, ok := o.scopes.Get(repo); ok {
		return rt, nil
	}
	return o.making.do(ctx, repo, func(ctx context.Context) (http.RoundTripper, error) {
		scope := o.reg.Repo(repo).Scope(transport.PullScope)
		rt, err := transport.NewWithContext(ctx, o.reg, o.auth, o.guard, []string{scope})
		if err != nil {
			return nil, fmt.Errorf("authenticating to %s for %s: %w", o.up.registry, repo, err)
		}
		o.scopes.Add(repo, rt)
		return rt, nil
	})
}

// anonTransport reaches, for one repository, an upstream that clients'
// credentials do not go to: plainly, and once it answers 401 with a Bearer
// challenge (Docker Hub and ghcr.io serve public images that way) with an
// anonymous token got by go-containerregistry's token flow, cached per
// repository. The client never sees the challenge: it would answer one by
// sending what it holds for the proxy's host to the realm named.
type anonTransport struct {
	up   *upstream
	repo string
}

// RoundTrip implements http.RoundTripper.
func (t anonTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt, ok := t.up.anon.scopes.Get(t.repo); ok {
		return rt.RoundTrip(req)
	}
	resp, err := t.up.transport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || t.repo == "" ||
		!strings.HasPrefix(strings.ToLower(resp.Header.Get("WWW-Authenticate")), "bearer") ||
		(req.Body != nil && req.Body != http.NoBody) {
		return resp, err
	}
	rt, terr := t.up.anon.transport(req.Context(), t.repo)
	if terr != nil {
		return resp, nil // the 401 stands; the caller answers it
	}
	resp.Body.Close()
	return rt.RoundTrip(req)
}

// realmGuard keeps the proxy's credentials on the upstream's registrable
// domain. go-containerregistry sends them to whatever realm a challenge
// names (the class of leak of CVE-2026-33540): as an Authorization header,
// or, for an identity token, in the body of a POST. Off the domain, a
// request goes without an Authorization header, and one with a body (a
// token exchange: registry reads are GET and HEAD) is refused.
type realmGuard struct {
	base   http.RoundTripper
	origin *url.URL
}

func (g *realmGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if sameSite(g.origin, req.URL) {
		return g.base.RoundTrip(req)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("refusing to send the proxy's credentials for %s to %s: not on its domain", g.origin.Host, req.URL.Host)
	}
	if req.Header.Get("Authorization") != "" {
		req = req.Clone(req.Context())
		req.Header.Del("Authorization")
	}
	return g.base.RoundTrip(req)
}

// sameSite reports whether u is on a's registrable domain (eTLD+1), over
// https when a is: auth.docker.io for registry-1.docker.io. An IP address
// or a single-label host is its own domain. Ports do not count: a
// registry's token service often listens on another port of its host.
func sameSite(a, u *url.URL) bool {
	if strings.EqualFold(a.Scheme, "https") && !strings.EqualFold(u.Scheme, "https") {
		return false
	}
	ah, uh := strings.ToLower(a.Hostname()), strings.ToLower(u.Hostname())
	if ah == uh {
		return true
	}
	if net.ParseIP(ah) != nil || !strings.Contains(ah, ".") {
		return false
	}
	ad, err1 := publicsuffix.EffectiveTLDPlusOne(ah)
	ud, err2 := publicsuffix.EffectiveTLDPlusOne(uh)
	return err1 == nil && err2 == nil && ad == ud
}

// --- clients authenticating to the proxy ---

// htpasswd holds bcrypt hashes by user, and remembers credentials that
// passed: a bcrypt comparison costs tens of milliseconds, every pull
// sends its credentials several times.
type htpasswd struct {
	hashes map[string][]byte
	passed *lru.Cache[[sha256.Size]byte, string]
	// dummy is compared against for an unknown user, at the highest cost
	// of the file, so that the answer takes as long as for a known one.
	dummy []byte
}

// maxPassed bounds the remembered credentials.
const maxPassed = 1024

// loadHtpasswd reads an htpasswd file of bcrypt ("$2y$", "$2a$", "$2b$")
// entries; any other hash kind is refused.
func loadHtpasswd(path string) (*htpasswd, error) {
	b, err := readSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	passed, err := lru.New[[sha256.Size]byte, string](maxPassed)
	if err != nil {
		return nil, err
	}
	h := &htpasswd{hashes: map[string][]byte{}, passed: passed}
	maxCost := bcrypt.MinCost
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd %s:%d: want user:hash", path, n)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("htpasswd %s:%d: user %q: only bcrypt hashes are accepted (htpasswd -B)", path, n, user)
		}
		maxCost = max(maxCost, cost)
		h.hashes[user] = []byte(hash)
	}
	if len(h.hashes) == 0 {
		return nil, fmt.Errorf("htpasswd %s has no users", path)
	}
	if h.dummy, err = bcrypt.GenerateFromPassword([]byte("no such user"), maxCost); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	return h, nil
}

// check returns the user whose Basic credentials r carries, or "" and
// false.
func (h *htpasswd) check(r *http.Request) (string, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	fp := sha256.Sum256([]byte(user + "\x00" + pass))
	if u, ok := h.passed.Get(fp); ok {
		return u, true
	}
	hash, known := h.hashes[user]
	if !known {
		_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pass))
		return "", false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return "", false
	}
	h.passed.Add(fp, user)
	return user, true
}

package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/cosign-dev/cosign/sigstore"
)

// maxRedirects bounds the redirects a manifest fetch follows.
const maxRedirects = 5

// upstream is one registry behind the proxy.
type upstream struct {
	registry string
	base     *url.URL // scheme://host only
	baseStr  string   // base as a string, for sigstore.NewFetcher
	// client fetches manifests; it follows redirects but never carries the
	// client's credentials off this upstream's origin.
	client *http.Client
	// transport is shared by every upstream and every request kind.
	transport http.RoundTripper
	// proxy streams blobs, tags lists, referrers and the /v2/ ping.
	proxy *httputil.ReverseProxy
	// forwardAuth says whether clients' Authorization headers are for this
	// upstream (see Upstream.ForwardCredentials); when false, requests to
	// it carry none.
	forwardAuth bool
	// timeout bounds each manifest fetch and signature lookup.
	timeout time.Duration
	// owned is the proxy's own credentials for this upstream, or nil.
	owned *ownedAuth
	// anon is the anonymous token flow, for an upstream that clients'
	// credentials do not go to.
	anon *ownedAuth
	// needsClientAuth: clients must authenticate to the proxy to reach
	// this upstream (it has proxy-owned credentials and is not public).
	needsClientAuth bool
	// dockerHub: single names mean library/<name>.
	dockerHub bool
	// slots bound the manifest and signature requests sent upstream at
	// once; limited is client over them.
	slots   *slots
	limited *http.Client
}

func newUpstream(u Upstream, forwardAuth bool, tr http.RoundTripper) (*upstream, error) {
	base, err := parseUpstreamURL(u.URL)
	if err != nil {
		return nil, err
	}
	up := &upstream{registry: u.Registry, base: base, baseStr: base.String(), transport: tr, forwardAuth: forwardAuth}
	up.client = &http.Client{Transport: tr, CheckRedirect: up.checkRedirect}
	up.slots = newSlots()
	up.limited = &http.Client{Transport: slotTransport{base: tr, slots: up.slots}, CheckRedirect: up.checkRedirect}
	return up, nil
}

// newTransport returns the one tuned transport the proxy uses for every
// upstream request. It asks for no compression, so that bytes pass exactly
// as upstream stores them (blobs are compressed already) and manifest
// digests are computed over what upstream serves.
func newTransport(responseHeaderTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// sameOrigin reports whether u has this upstream's scheme and host:port.
// It is stricter than net/http's redirect rule, which keeps credentials
// for another port of the same host and for subdomains.
func (up *upstream) sameOrigin(u *url.URL) bool {
	return sameOrigin(up.base, u)
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(canonicalHost(a), canonicalHost(b))
}

// canonicalHost is host:port with the scheme's default port made explicit.
func canonicalHost(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return u.Host + ":443"
	case "http":
		return u.Host + ":80"
	}
	return u.Host
}

// checkRedirect drops credentials when a manifest fetch is redirected off
// the upstream's origin (CVE-2026-33540's class of leak).
func (up *upstream) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return errors.New("stopped after 5 redirects")
	}
	if !up.sameOrigin(req.URL) {
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

// manifestURL is the upstream URL of /v2/<repo>/manifests/<ref>.
func (up *upstream) manifestURL(repo, ref string) *url.URL {
	return &url.URL{Scheme: up.base.Scheme, Host: up.base.Host, Path: "/v2/" + repo + "/manifests/" + ref}
}

// blobURL is the upstream URL of /v2/<repo>/blobs/<digest>.
func (up *upstream) blobURL(repo, digest string) *url.URL {
	return &url.URL{Scheme: up.base.Scheme, Host: up.base.Host, Path: "/v2/" + repo + "/blobs/" + digest}
}

// clientAuth is the client's Authorization header when it is for this
// upstream, else "". A client (Docker above all) sends the credentials it
// got for the proxy's host on every request to it, whichever upstream the
// path names; they only go to the upstream they were issued for, and never
// to an upstream the proxy holds its own credentials for.
func (up *upstream) clientAuth(r *http.Request) string {
	if !up.forwardAuth || up.owned != nil {
		return ""
	}
	return r.Header.Get("Authorization")
}

// challengesClients says whether this upstream's authentication
// challenges may reach clients: only when the client's Authorization is
// forwarded to it. Otherwise what a client holds for the proxy's host (a
// proxy login, another upstream's credentials) would be sent to whatever
// realm the challenge names.
func (up *upstream) challengesClients() bool {
	return up.forwardAuth && up.owned == nil
}

// roundTripper is how the proxy reaches this upstream for repo on behalf
// of a client whose forwarded Authorization is auth: with the proxy's own
// credentials (token flow per repository), with auth, or anonymously.
func (up *upstream) roundTripper(ctx context.Context, repo, auth string) (http.RoundTripper, error) {
	switch {
	case up.owned != nil:
		return up.owned.transport(ctx, repo)
	case auth != "":
		return &credentialTransport{base: up.transport, origin: up.base, auth: auth}, nil
	case !up.forwardAuth:
		return anonTransport{up: up, repo: repo}, nil
	default:
		return up.transport, nil
	}
}

// clientFor is an http.Client over roundTripper, for blobs: it follows
// redirects and drops credentials off the upstream's origin.
func (up *upstream) clientFor(ctx context.Context, repo, auth string) (*http.Client, error) {
	if up.owned == nil && auth == "" && up.forwardAuth {
		return up.client, nil
	}
	rt, err := up.roundTripper(ctx, repo, auth)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, CheckRedirect: up.checkRedirect}, nil
}

// limitedClientFor is clientFor for manifest requests: each holds one of
// the upstream's slots until its body is closed.
func (up *upstream) limitedClientFor(ctx context.Context, repo, auth string) (*http.Client, error) {
	if up.owned == nil && auth == "" && up.forwardAuth {
		return up.limited, nil
	}
	rt, err := up.roundTripper(ctx, repo, auth)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: slotTransport{base: rt, slots: up.slots}, CheckRedirect: up.checkRedirect}, nil
}

// source reads signatures and payloads from this upstream for repo as
// roundTripper reaches it, each request in one of the upstream's slots.
func (up *upstream) source(ctx context.Context, repo, auth string) (*sigstore.Fetcher, error) {
	rt, err := up.roundTripper(ctx, repo, auth)
	if err != nil {
		return nil, err
	}
	return sigstore.NewFetcher(up.baseStr, slotTransport{base: rt, slots: up.slots}), nil
}

// credentialTransport adds a client's Authorization header to the
// requests the proxy makes for that client, on the upstream's own origin
// only.
type credentialTransport struct {
	base   http.RoundTripper
	origin *url.URL
	auth   string
}

// RoundTrip implements http.RoundTripper.
func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if sameOrigin(t.origin, req.URL) && req.Header.Get("Authorization") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", t.auth)
	}
	return t.base.RoundTrip(req)
}

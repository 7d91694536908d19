package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// maxManifestSize is the largest manifest the proxy reads (the
// distribution spec's 4 MiB).
const maxManifestSize = sigstore.MaxManifestSize

// maxErrorBody caps how much of an upstream error body is read.
const maxErrorBody = 64 << 10

// manifest is a verified, servable manifest: the exact bytes that were
// hashed, parsed once, with the response headers precomputed.
type manifest struct {
	body      []byte
	mediaType string
	doc       *sigstore.Manifest
	digest    v1.Hash
	// header values, shared read-only by every response.
	contentType, contentDigest, contentLength []string
}

func newManifest(body []byte, doc *sigstore.Manifest, sum [sha256.Size]byte) *manifest {
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	return &manifest{
		body:          body,
		mediaType:     doc.MediaType,
		doc:           doc,
		digest:        d,
		contentType:   []string{doc.MediaType},
		contentDigest: []string{d.String()},
		contentLength: []string{strconv.Itoa(len(body))},
	}
}

// handleManifest is the gate: GET and HEAD /v2/<name>/manifests/<ref>. It
// resolves, fetches, hashes, parses, decides and serves in one pass:
//
//  1. The reference must be a tag or a sha256 digest.
//  2. By digest, verified bytes already in memory for this upstream and
//     repository are served with no upstream GET, once upstream has said
//     (by a HEAD) that this client's credentials may read them.
//  3. By tag, when the proxy holds verified bytes of this repository, it
//     asks upstream with a HEAD which digest the tag names; bytes it holds
//     for that digest are served (Docker Hub counts GETs as pulls, not
//     HEADs).
//  4. Otherwise the manifest is fetched upstream with GET (for HEAD too: the
//     bytes must be hashed), Accept forwarded, at most 4 MiB, within the
//     proxy's budget of bytes in flight.
//  5. The bytes are hashed; by digest the hash must be the digest asked for.
//  6. sigstore.ParseManifest reads the document strictly.
//  7. The verifier decides on the digest; a refusal is 403 DENIED.
//  8. Exactly the hashed bytes are served.
func (s *Server) handleManifest(w http.ResponseWriter, r *http.Request) error {
	t, err := s.resolve(r)
	if err != nil {
		return err
	}
	raw, err := pathVar(r, "reference")
	if err != nil {
		return err
	}
	want, byDigest, err := parseReference(raw)
	if err != nil {
		return err
	}
	auth := t.up.clientAuth(r)
	cred := credentialOf(auth)
	if byDigest {
		key := cacheKey{registry: t.up.registry, repo: t.repo, digest: want}
		if m, allowed := t.mc.get(key, cred); m != nil {
			s.metrics.manifestCache(true)
			if !allowed {
				if _, err := s.headManifest(r.Context(), t, raw, m.mediaType, auth); err != nil {
					return err
				}
				t.mc.allow(key, cred)
			}
			return s.admitAndServe(w, r, t, raw, m, auth, cred)
		}
		s.metrics.manifestCache(false)
	} else if t.mc.holds(t.up.registry, t.repo) {
		if m := s.byTagFromMemory(r, t, raw, auth, cred); m != nil {
			return s.admitAndServe(w, r, t, raw, m, auth, cred)
		}
	}
	m, err := s.fetchShared(r.Context(), t, raw, r.Header, auth)
	if err != nil {
		return err
	}
	if byDigest && m.digest.Hex != hex.EncodeToString(want[:]) {
		s.metrics.upstreamError(t.up.registry, "digest")
		return &Error{Status: http.StatusBadGateway, Code: CodeManifestInvalid,
			Message: fmt.Sprintf("upstream %s sent content with digest %s for %s/%s@%s; refusing it",
				t.up.registry, m.digest, t.up.registry, t.repo, raw)}
	}
	return s.admitAndServe(w, r, t, raw, m, auth, cred)
}

// byTagFromMemory asks upstream with a HEAD which digest tag names, and
// returns the verified bytes held for it, or nil (then the manifest is
// fetched). The bytes were hashed when they were fetched; the HEAD only
// says which of them the tag names now, as a GET would. A HEAD that fails
// is no answer: the GET that follows reports upstream's own error.
func (s *Server) byTagFromMemory(r *http.Request, t target, tag, auth string, cred credential) *manifest {
	h, err := s.headManifest(r.Context(), t, tag, strings.Join(r.Header.Values("Accept"), ","), auth)
	if err != nil {
		return nil
	}
	d, err := sigstore.ParseDigest(h.Get("Docker-Content-Digest"))
	if err != nil {
		return nil
	}
	var sum [sha256.Size]byte
	_, _ = hex.Decode(sum[:], []byte(d.Hex))
	key := cacheKey{registry: t.up.registry, repo: t.repo, digest: sum}
	m, _ := t.mc.get(key, cred)
	if m == nil || m.mediaType != sigstore.BaseMediaType(h.Get("Content-Type")) {
		return nil
	}
	t.mc.allow(key, cred) // the HEAD with these credentials succeeded
	return m
}

// admitAndServe asks the verifier about m and serves it. An admitted m is
// kept (or the copy already kept for its digest is served instead). ref is
// the reference the client asked for, for the audit log.
func (s *Server) admitAndServe(w http.ResponseWriter, r *http.Request, t target, ref string, m *manifest, auth string, cred credential) error {
	img := verifier.Image{Registry: t.up.registry, Repository: t.repo, Digest: m.digest}
	src, err := t.up.source(r.Context(), t.repo, auth)
	if err != nil {
		return s.lookupError(r.Context(), img, err)
	}
	d, err := t.v.Decide(r.Context(), src, img, m.doc)
	s.audit(r, t, ref, img, d, err)
	if err != nil {
		return s.lookupError(r.Context(), img, err)
	}
	if !d.Admit {
		return &Error{Status: http.StatusForbidden, Code: CodeDenied, Message: d.Message}
	}
	if d.Warn {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "serving unverified manifest (mode warn)",
			slog.String("image", img.String()), slog.String("reason", d.Message))
	}
	var sum [sha256.Size]byte
	_, _ = hex.Decode(sum[:], []byte(m.digest.Hex))
	m = t.mc.add(cacheKey{registry: t.up.registry, repo: t.repo, digest: sum}, m, cred)
	serveManifest(w, r, m)
	return nil
}

// serveManifest writes exactly the verified bytes.
func serveManifest(w http.ResponseWriter, r *http.Request, m *manifest) {
	h := w.Header()
	h["Content-Type"] = m.contentType
	h["Docker-Content-Digest"] = m.contentDigest
	h["Content-Length"] = m.contentLength
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.body)
	}
}

// headManifest sends a HEAD for repo's manifest ref upstream, as the
// client reaches it, and returns the response's headers. Any answer but
// 200 is the error the client gets. Before bytes fetched with other
// credentials are served by digest, it says whether this client may read
// them: a HEAD costs no body and, on Docker Hub, no pull.
func (s *Server) headManifest(client context.Context, t target, ref, accept, auth string) (http.Header, error) {
	ctx, cancel := context.WithTimeout(client, t.up.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "", nil)
	if err != nil {
		return nil, fmt.Errorf("making request: %w", err)
	}
	req.URL = t.up.manifestURL(t.repo, ref)
	req.Host = req.URL.Host
	if accept != "" {
		req.Header["Accept"] = []string{accept}
	}
	c, err := t.up.limitedClientFor(ctx, t.repo, auth)
	if err != nil {
		return nil, s.fetchError(t, imageName(t, ref), err)
	}
	s.metrics.upstreamGets.WithLabelValues(t.up.registry, http.MethodHead).Inc()
	resp, err := c.Do(req)
	if err != nil {
		if client.Err() != nil {
			return nil, errClientGone
		}
		return nil, s.fetchError(t, imageName(t, ref), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, s.upstreamStatus(t, imageName(t, ref), resp)
	}
	return resp.Header, nil
}

// lookupError maps a failed decision: 504 on a timeout, 503 with
// Retry-After when upstream rate-limited it, 502 otherwise. It is never
// cached.
func (s *Server) lookupError(ctx context.Context, img verifier.Image, err error) error {
	if ctx.Err() != nil {
		return errClientGone
	}
	if errors.Is(err, errBusy) {
		s.metrics.upstreamError(img.Registry, "busy")
		return errBusy
	}
	msg := "cannot verify " + img.String() + ": signature lookup failed: " + err.Error()
	var re *sigstore.RegistryError
	isRE := errors.As(err, &re)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (isRE && re.Timeout()):
		s.metrics.upstreamError(img.Registry, "timeout")
		return &Error{Status: http.StatusGatewayTimeout, Code: CodeUnavailable, Message: msg, Err: err}
	case errors.Is(err, sigstore.ErrLookupsBusy):
		s.metrics.upstreamError(img.Registry, "busy")
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeTooManyRequests, Message: msg, Err: err,
			Header: http.Header{"Retry-After": {"1"}}}
	case isRE && re.StatusCode == http.StatusTooManyRequests:
		s.metrics.upstreamError(img.Registry, "ratelimited")
		e := &Error{Status: http.StatusServiceUnavailable, Code: CodeTooManyRequests, Message: msg, Err: err}
		if re.RetryAfter != "" {
			e.Header = http.Header{"Retry-After": {re.RetryAfter}}
		}
		return e
	default:
		s.metrics.upstreamError(img.Registry, "lookup")
		return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable, Message: msg, Err: err}
	}
}

// fetchShared fetches, hashes and parses a manifest once for concurrent
// identical requests: the same upstream, repository, reference, Accept and
// credentials get the same answer, so a stampede of pulls of one tag costs
// upstream one request. The shared fetch outlives a waiter that leaves
// while others wait, and stops when none is left (bounded by
// UpstreamTimeout); each waiter still decides and serves on its own.
func (s *Server) fetchShared(ctx context.Context, t target, ref string, in http.Header, auth string) (*manifest, error) {
	key := strings.Join([]string{t.up.registry, t.repo, ref, strings.Join(in.Values("Accept"), ","), auth}, "\x00")
	return s.fetches.do(ctx, key, func(ctx context.Context) (*manifest, error) {
		return s.fetchManifest(ctx, t, ref, in, auth)
	})
}

// fetchManifest GETs the manifest upstream with the client's Accept and
// the Authorization this upstream gets, then hashes and parses it. Upstream
// answers other than 200 become errors: 404 and other 4xx pass through
// (with upstream's OCI body), 401 with its challenge, 429 with Retry-After;
// 5xx is 502, a timeout 504, a truncated body 502, a document the parser
// refuses 502 MANIFEST_INVALID.
func (s *Server) fetchManifest(ctx context.Context, t target, ref string, in http.Header, auth string) (*manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, t.up.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return nil, fmt.Errorf("making request: %w", err)
	}
	req.URL = t.up.manifestURL(t.repo, ref)
	req.Host = req.URL.Host
	if accept := in["Accept"]; len(accept) > 0 {
		req.Header["Accept"] = accept
	}
	c, err := t.up.limitedClientFor(ctx, t.repo, auth)
	if err != nil {
		return nil, s.fetchError(t, imageName(t, ref), err)
	}
	s.metrics.upstreamGets.WithLabelValues(t.up.registry, http.MethodGet).Inc()
	resp, err := c.Do(req)
	if err != nil {
		return nil, s.fetchError(t, imageName(t, ref), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, s.upstreamStatus(t, imageName(t, ref), resp)
	}
	what := imageName(t, ref)
	body, lease, err := readBounded(resp, s.inflight)
	defer lease.release()
	if err != nil {
		if ctx.Err() != nil {
			return nil, s.fetchError(t, what, err)
		}
		var e *Error
		if errors.As(err, &e) {
			if e.Status == http.StatusBadGateway {
				s.metrics.upstreamError(t.up.registry, "invalid")
			}
			return nil, err
		}
		s.metrics.upstreamError(t.up.registry, "truncated")
		return nil, &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Message: "reading " + what + " from upstream: " + err.Error(), Err: err}
	}
	sum := sha256.Sum256(body)
	doc, err := sigstore.ParseManifest(body, resp.Header.Get("Content-Type"))
	if err != nil {
		s.metrics.upstreamError(t.up.registry, "invalid")
		return nil, &Error{Status: http.StatusBadGateway, Code: CodeManifestInvalid,
			Message: fmt.Sprintf("upstream %s sent an invalid manifest for %s (sha256:%x): %v", t.up.registry, t.repo, sum, err)}
	}
	return newManifest(body, doc, sum), nil
}

// imageName is registry/repository:tag or registry/repository@digest, for
// messages.
func imageName(t target, ref string) string {
	if strings.HasPrefix(ref, "sha256:") {
		return t.up.registry + "/" + t.repo + "@" + ref
	}
	return t.up.registry + "/" + t.repo + ":" + ref
}

// fetchError maps a failed upstream manifest request. The fetch runs
// detached from the client (fetchShared), so a client that leaves is
// handled there, not here.
func (s *Server) fetchError(t target, what string, err error) error {
	if errors.Is(err, errBusy) {
		s.metrics.upstreamError(t.up.registry, "busy")
		return errBusy
	}
	kind, e := transportError(t.up, what, err)
	s.metrics.upstreamError(t.up.registry, kind)
	return e
}

func tooLarge(n int64) *Error {
	size := "more than 4 MiB"
	if n > 0 {
		size = strconv.FormatInt(n, 10) + " bytes"
	}
	return &Error{Status: http.StatusBadGateway, Code: CodeManifestInvalid,
		Message: "upstream manifest is " + size + "; the limit is 4 MiB (4194304 bytes)"}
}

// upstreamStatus maps an upstream answer other than 200. Nothing here is
// cached.
func (s *Server) upstreamStatus(t target, what string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	passed := ociErrorBody(body)
	code := resp.StatusCode
	switch {
	case code == http.StatusNotFound:
		return &Error{Status: code, Code: CodeManifestUnknown, Body: passed,
			Message: what + ": manifest unknown upstream"}
	case (code == http.StatusUnauthorized || code == http.StatusForbidden) && !t.up.challengesClients():
		return ownedRefused(t.up, what, code)
	case code == http.StatusUnauthorized:
		e := &Error{Status: code, Code: CodeUnauthorized, Body: passed,
			Message: what + ": upstream " + t.up.registry + " requires authentication"}
		if ch := resp.Header.Values("WWW-Authenticate"); len(ch) > 0 {
			e.Header = http.Header{"Www-Authenticate": ch}
		}
		return e
	case code == http.StatusTooManyRequests:
		s.metrics.upstreamError(t.up.registry, "ratelimited")
		e := &Error{Status: code, Code: CodeTooManyRequests, Body: passed,
			Message: what + ": upstream " + t.up.registry + " is rate limiting"}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.Header = http.Header{"Retry-After": {ra}}
		}
		return e
	case code >= 400 && code < 500:
		return &Error{Status: code, Code: codeForStatus(code), Body: passed,
			Message: fmt.Sprintf("%s: upstream %s answered %d", what, t.up.registry, code)}
	case code >= 500:
		s.metrics.upstreamError(t.up.registry, "status")
		return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Message: fmt.Sprintf("%s: upstream %s answered %d", what, t.up.registry, code)}
	default:
		s.metrics.upstreamError(t.up.registry, "status")
		return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Message: fmt.Sprintf("%s: unexpected status %d from upstream %s", what, code, t.up.registry)}
	}
}

// ownedRefused answers a 401 or 403 of an upstream whose challenge must
// not reach the client (see upstream.challengesClients): the client can do
// nothing about it, and a client answers a Bearer challenge by sending the
// credentials it holds for the proxy's host to the realm named.
func ownedRefused(up *upstream, what string, code int) *Error {
	if up.owned == nil {
		// No challenge: the client has nothing this proxy would forward.
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
			Message: fmt.Sprintf("%s: upstream %s requires credentials, and this proxy forwards no client credentials to it (%d)", what, up.registry, code)}
	}
	return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
		Message: fmt.Sprintf("%s: upstream %s refused the proxy's own credentials (%d)", what, up.registry, code)}
}

func codeForStatus(code int) string {
	switch code {
	case http.StatusForbidden:
		return CodeDenied
	case http.StatusBadRequest:
		return CodeManifestInvalid
	default:
		return CodeUnknown
	}
}

// parseReference accepts a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}) or a
// sha256 digest (64 lower-case hex characters). It returns the digest's
// bytes and true for a digest. What is not a valid tag names no manifest:
// 404 MANIFEST_UNKNOWN, as the distribution spec's conformance suite
// requires; a malformed digest is 400 DIGEST_INVALID.
func parseReference(ref string) ([sha256.Size]byte, bool, error) {
	var sum [sha256.Size]byte
	if strings.Contains(ref, ":") {
		d, err := sigstore.ParseDigest(ref)
		if err != nil {
			return sum, true, newError(http.StatusBadRequest, CodeDigestInvalid,
				"invalid digest %q: this proxy serves manifests by sha256:<64 lower-case hex>", ref)
		}
		_, _ = hex.Decode(sum[:], []byte(d.Hex))
		return sum, true, nil
	}
	if !validTag(ref) {
		return sum, false, newError(http.StatusNotFound, CodeManifestUnknown,
			"manifest unknown: %q is not a tag (up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-')", ref)
	}
	return sum, false, nil
}

func validTag(t string) bool {
	if len(t) == 0 || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || ('A' <= c && c <= 'Z') || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

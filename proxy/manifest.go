package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// maxManifestSize is the largest manifest the proxy reads (the
// distribution spec's 4 MiB).
const maxManifestSize = sigstore.MaxManifestSize

// maxErrorBody caps how much of an upstream error body is read.
const maxErrorBody = 64 << 10

// ReasonSignatureArtifact is the reason a manifest that can only carry
// signatures (every layer a simple-signing payload or a Sigstore bundle, or
// an index of such artifacts) is served without signatures of its own.
const ReasonSignatureArtifact verifier.Reason = "signature artifact (no runnable content)"

// manifest is a verified, servable manifest: the exact bytes that were
// hashed, with the response headers precomputed.
type manifest struct {
	body      []byte
	mediaType string
	digest    v1.Hash
	// sigArtifact is true when m can only carry signatures (see
	// isSignatureArtifact): it is served without signatures of its own.
	sigArtifact bool
	// payloadsUnread is true for a new signature artifact with layers whose
	// blobs have not yet been read: a layer's media type is only a label, so
	// decide reads them once (signaturePayloads) before admitting it. It is
	// false on every manifest in the cache.
	payloadsUnread bool
	// header values, shared read-only by every response.
	contentType, contentDigest, contentLength []string
}

func newManifest(body []byte, mediaType string, sum [sha256.Size]byte, sigArtifact bool) *manifest {
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	return &manifest{
		body:          body,
		mediaType:     mediaType,
		digest:        d,
		sigArtifact:   sigArtifact,
		contentType:   []string{mediaType},
		contentDigest: []string{d.String()},
		contentLength: []string{strconv.Itoa(len(body))},
	}
}

// handleManifest is the gate: GET and HEAD /v2/<name>/manifests/<ref>.
//
//  1. The reference must be a tag or a sha256 digest.
//  2. By digest, verified bytes already in memory for this upstream,
//     repository and client credential are served after a (cached)
//     decision, with no upstream request.
//  3. Otherwise the manifest is fetched upstream with GET (for HEAD too: the
//     bytes must be hashed), Accept forwarded, at most 4 MiB.
//  4. The bytes are hashed; by digest the hash must be the digest asked for.
//  5. The document must be a plain manifest or index whose mediaType agrees
//     with Content-Type.
//  6. The verifier decides on the digest; a refusal is 403 DENIED.
//  7. Exactly the hashed bytes are served.
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
	auth := r.Header.Get("Authorization")
	key := cacheKey{registry: t.up.registry, repo: t.repo, digest: want, cred: credential(auth)}
	if byDigest {
		if m := s.manifests.get(key); m != nil {
			s.metrics.manifestCache(true)
			return s.admitAndServe(w, r, t, m, auth)
		}
		s.metrics.manifestCache(false)
	}
	body, contentType, err := s.fetchShared(r.Context(), t, raw, r.Header, auth)
	if err != nil {
		return err
	}
	key.digest = sha256.Sum256(body)
	if byDigest && key.digest != want {
		s.metrics.upstreamError(t.up.registry, "digest")
		return &Error{Status: http.StatusBadGateway, Code: CodeManifestInvalid,
			Message: fmt.Sprintf("upstream %s sent content with digest sha256:%x for %s/%s@%s; refusing it",
				t.up.registry, key.digest, t.up.registry, t.repo, raw)}
	}
	m := s.manifests.get(key)
	if m == nil || m.mediaType != baseMediaType(contentType) {
		if m, err = checkManifest(t, body, contentType, key.digest); err != nil {
			s.metrics.upstreamError(t.up.registry, "invalid")
			return err
		}
		return s.admitAndServe(w, r, t, m, auth, key)
	}
	return s.admitAndServe(w, r, t, m, auth)
}

// admitAndServe decides on m and serves it. A key is given when m is new:
// an admitted m is then remembered under it.
func (s *Server) admitAndServe(w http.ResponseWriter, r *http.Request, t target, m *manifest, auth string, key ...cacheKey) error {
	d, err := s.decide(r.Context(), t, m, auth)
	if err != nil {
		return err
	}
	if rec, ok := w.(*recorder); ok {
		rec.decision = string(d.Reason)
		if d.Warn {
			rec.decision = "warn: " + rec.decision
		}
	}
	if !d.Admit {
		return &Error{Status: http.StatusForbidden, Code: CodeDenied, Message: d.Message}
	}
	if d.Warn {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "serving unverified manifest (mode warn)",
			slog.String("image", t.up.registry+"/"+t.repo+"@"+m.digest.String()), slog.String("reason", d.Message))
	}
	if len(key) > 0 {
		s.manifests.add(key[0], m)
	}
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

// decide asks the verifier about m. A signature artifact in a repository
// that a policy (or defaultPolicy allow) covers is admitted without
// signatures of its own once its layer blobs are read as payloads.
func (s *Server) decide(ctx context.Context, t target, m *manifest, auth string) (verifier.Decision, error) {
	img := verifier.Image{Registry: t.up.registry, Repository: t.repo, Digest: m.digest}
	src := &signatureSource{up: t.up, auth: auth}
	if m.sigArtifact && (s.cfg.DefaultAllow || s.verifier.Policy(img.Registry, img.Repository) != nil) {
		if m.payloadsUnread { // m is new to this request: not shared yet
			ok, err := s.signaturePayloads(ctx, t, m, src)
			if err != nil {
				return verifier.Decision{}, s.lookupError(ctx, img, err, src)
			}
			m.sigArtifact, m.payloadsUnread = ok, false
		}
		if m.sigArtifact {
			d := verifier.Decision{Admit: true, Reason: ReasonSignatureArtifact,
				Message: img.String() + ": admitted: a signature artifact (every layer a signature payload)"}
			s.metrics.decision(img, d)
			return d, nil
		}
	}
	d, err := s.verifier.Decide(ctx, src, img, m.body, m.mediaType)
	if err != nil {
		return verifier.Decision{}, s.lookupError(ctx, img, err, src)
	}
	return d, nil
}

// lookupError maps a failed signature lookup: 504 on a timeout, 503 with
// Retry-After when upstream rate-limited it, 502 otherwise. It is never
// cached.
func (s *Server) lookupError(ctx context.Context, img verifier.Image, err error, src *signatureSource) error {
	if ctx.Err() != nil {
		return errClientGone
	}
	msg := "cannot verify " + img.String() + ": signature lookup failed: " + err.Error()
	var re *sigstore.RegistryError
	isRE := errors.As(err, &re)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (isRE && re.Timeout()):
		s.metrics.upstreamError(img.Registry, "timeout")
		return &Error{Status: http.StatusGatewayTimeout, Code: CodeUnavailable, Message: msg, Err: err}
	case isRE && re.StatusCode == http.StatusTooManyRequests:
		s.metrics.upstreamError(img.Registry, "ratelimited")
		e := &Error{Status: http.StatusServiceUnavailable, Code: CodeTooManyRequests, Message: msg, Err: err}
		if ra := src.retryAfter(); ra != "" {
			e.Header = http.Header{"Retry-After": {ra}}
		}
		return e
	default:
		s.metrics.upstreamError(img.Registry, "lookup")
		return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable, Message: msg, Err: err}
	}
}

// signatureSource reads signatures from the request's upstream with the
// client's credentials. The fetcher is made only when the verifier needs
// it: a cached decision costs no allocation beyond this struct.
type signatureSource struct {
	up   *upstream
	auth string
	rt   *credentialTransport
}

// Signatures implements verifier.Source.
func (s *signatureSource) Signatures(ctx context.Context, repo string, d v1.Hash) ([]sigstore.Signature, error) {
	return s.fetcher().Signatures(ctx, repo, d)
}

// fetcher reads the upstream with the client's credentials, remembering
// the transport for retryAfter.
func (s *signatureSource) fetcher() *sigstore.Fetcher {
	s.rt = &credentialTransport{base: s.up.transport, origin: s.up.base, auth: s.auth}
	return sigstore.NewFetcher(s.up.baseStr, s.rt)
}

func (s *signatureSource) retryAfter() string {
	if s.rt == nil {
		return ""
	}
	return s.rt.lastRetryAfter()
}

// fetched is a manifest as upstream sent it.
type fetched struct {
	body        []byte
	contentType string
}

// fetchShared fetches a manifest once for concurrent identical requests:
// the same upstream, repository, reference, Accept and credentials get the
// same answer, so a stampede of pulls of one tag costs upstream one
// request. The shared fetch outlives a waiter that leaves (it is bounded
// by UpstreamTimeout); each waiter still verifies and serves on its own.
func (s *Server) fetchShared(ctx context.Context, t target, ref string, in http.Header, auth string) ([]byte, string, error) {
	key := strings.Join([]string{t.up.registry, t.repo, ref, strings.Join(in.Values("Accept"), ","), auth}, "\x00")
	ch := s.fetches.DoChan(key, func() (any, error) {
		body, contentType, err := s.fetchManifest(context.WithoutCancel(ctx), t, ref, in, auth)
		return fetched{body, contentType}, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, "", res.Err
		}
		f := res.Val.(fetched)
		return f.body, f.contentType, nil
	case <-ctx.Done():
		return nil, "", errClientGone
	}
}

// fetchManifest GETs the manifest upstream with the client's Accept and
// Authorization and returns its bytes and Content-Type. Upstream answers
// other than 200 become errors: 404 and other 4xx pass through (with
// upstream's OCI body), 401 with its challenge, 429 with Retry-After; 5xx
// is 502, a timeout 504, a truncated body 502.
func (s *Server) fetchManifest(ctx context.Context, t target, ref string, in http.Header, auth string) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return nil, "", fmt.Errorf("making request: %w", err)
	}
	req.URL = t.up.manifestURL(t.repo, ref)
	req.Host = req.URL.Host
	if accept := in["Accept"]; len(accept) > 0 {
		req.Header["Accept"] = accept
	}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	resp, err := t.up.client.Do(req)
	if err != nil {
		return nil, "", s.fetchError(t, imageName(t, ref), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", s.upstreamStatus(t, imageName(t, ref), resp)
	}
	body, err := readManifest(resp)
	if err != nil {
		what := imageName(t, ref)
		if ctx.Err() != nil {
			return nil, "", s.fetchError(t, what, err)
		}
		var e *Error
		if errors.As(err, &e) {
			s.metrics.upstreamError(t.up.registry, "invalid")
			return nil, "", err
		}
		s.metrics.upstreamError(t.up.registry, "truncated")
		return nil, "", &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Message: "reading " + what + " from upstream: " + err.Error(), Err: err}
	}
	return body, resp.Header.Get("Content-Type"), nil
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
	kind, e := transportError(t.up, what, err)
	s.metrics.upstreamError(t.up.registry, kind)
	return e
}

// readManifest reads a 200 body of at most 4 MiB and detects truncation.
func readManifest(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > maxManifestSize {
		return nil, tooLarge(resp.ContentLength)
	}
	if resp.ContentLength >= 0 {
		body := make([]byte, resp.ContentLength)
		n, err := io.ReadFull(resp.Body, body)
		if err != nil {
			return nil, fmt.Errorf("truncated body: %d of %d bytes: %w", n, resp.ContentLength, err)
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("body after %d bytes: %w", len(body), err)
	}
	if len(body) > maxManifestSize {
		return nil, tooLarge(-1)
	}
	return body, nil
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
// bytes and true for a digest.
func parseReference(ref string) ([sha256.Size]byte, bool, error) {
	if strings.Contains(ref, ":") {
		sum, err := parseManifestDigest(ref)
		return sum, true, err
	}
	if !validTag(ref) {
		return [sha256.Size]byte{}, false, newError(http.StatusBadRequest, CodeManifestInvalid,
			"invalid reference %q: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", ref)
	}
	return [sha256.Size]byte{}, false, nil
}

func validTag(t string) bool {
	if len(t) == 0 || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(isLowerAlnum(c) || ('A' <= c && c <= 'Z') || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// parseManifestDigest accepts only sha256:<64 lower-case hex>: the proxy
// verifies sha256 digests, so another algorithm cannot be checked.
func parseManifestDigest(d string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	alg, hexPart, _ := strings.Cut(d, ":")
	if alg != "sha256" {
		return sum, newError(http.StatusBadRequest, CodeDigestInvalid,
			"invalid digest %q: unsupported algorithm %q (this proxy serves sha256 manifests)", d, alg)
	}
	if len(hexPart) != 2*sha256.Size {
		return sum, newError(http.StatusBadRequest, CodeDigestInvalid,
			"invalid digest %q: want 64 hex characters after sha256:, got %d", d, len(hexPart))
	}
	if !isLowerHex(hexPart) {
		return sum, newError(http.StatusBadRequest, CodeDigestInvalid,
			"invalid digest %q: hex must be lower case 0-9a-f", d)
	}
	_, _ = hex.Decode(sum[:], []byte(hexPart))
	return sum, nil
}

// checkBlobDigest accepts sha256 and sha512 digests in canonical form.
func checkBlobDigest(d string) error {
	alg, hexPart, _ := strings.Cut(d, ":")
	want := 0
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	default:
		return newError(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q: unsupported algorithm %q", d, alg)
	}
	if len(hexPart) != want || !isLowerHex(hexPart) {
		return newError(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q: want %d lower-case hex characters", d, want)
	}
	return nil
}

// isLowerHex reports whether s is only the digits 0-9a-f.
func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// credential fingerprints an Authorization header: bytes fetched with one
// client's credentials are only served to requests with the same header.
func credential(auth string) [sha256.Size]byte {
	if auth == "" {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256([]byte(auth))
}

// baseMediaType strips parameters from a Content-Type value.
func baseMediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(mt)
}

// Layer media types of signature artifacts.
var signatureLayerTypes = map[string]bool{
	sigstore.SimpleSigningMediaType: true,
	sigstore.BundleMediaType:        true,
}

// manifestDoc is what the gate reads of a manifest or index.
type manifestDoc struct {
	MediaType string
	Manifests json.RawMessage
	Layers    json.RawMessage
	Config    json.RawMessage
}

// checkManifest validates upstream's document and returns it ready to
// serve. Upstream serving something that is not a plain manifest is 502
// MANIFEST_INVALID: the proxy refuses to pass on what it cannot vouch for.
func checkManifest(t target, body []byte, contentType string, sum [sha256.Size]byte) (*manifest, error) {
	invalid := func(format string, args ...any) error {
		return &Error{Status: http.StatusBadGateway, Code: CodeManifestInvalid,
			Message: fmt.Sprintf("upstream %s sent an invalid manifest for %s (sha256:%x): ", t.up.registry, t.repo, sum) +
				fmt.Sprintf(format, args...)}
	}
	doc, err := parseManifestDoc(body)
	if err != nil {
		return nil, invalid("%v", err)
	}
	mt := baseMediaType(contentType)
	switch {
	case mt == "" && doc.MediaType == "":
		return nil, invalid("no media type in Content-Type or document")
	case mt == "":
		mt = doc.MediaType
	case doc.MediaType != "" && doc.MediaType != mt:
		return nil, invalid("document mediaType %q differs from Content-Type %q", doc.MediaType, mt)
	}
	if doc.Manifests != nil && (doc.Layers != nil || doc.Config != nil) {
		return nil, invalid("document is both an index (manifests) and a manifest (layers/config)")
	}
	sigArtifact, err := isSignatureArtifact(doc, mt)
	if err != nil {
		return nil, invalid("%v", err)
	}
	m := newManifest(body, mt, sum, sigArtifact)
	m.payloadsUnread = sigArtifact && doc.Layers != nil
	return m, nil
}

// manifestKeys are the top-level keys the gate reads.
var manifestKeys = []string{"mediaType", "manifests", "layers", "config"}

// parseManifestDoc reads the top level of a manifest strictly.
func parseManifestDoc(b []byte) (manifestDoc, error) {
	var doc manifestDoc
	obj, err := strictObject(b, manifestKeys)
	if err != nil {
		return doc, err
	}
	if raw, ok := obj["mediaType"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &doc.MediaType); err != nil {
			return doc, fmt.Errorf("mediaType: %w", err)
		}
	}
	doc.Manifests, doc.Layers, doc.Config = nonNull(obj["manifests"]), nonNull(obj["layers"]), nonNull(obj["config"])
	return doc, nil
}

// nonNull is raw, or nil when raw is absent or JSON null.
func nonNull(raw json.RawMessage) json.RawMessage {
	if string(raw) == "null" {
		return nil
	}
	return raw
}

// strictObject reads one JSON object and returns its members. A key that
// appears twice, even in another case, is refused; so is a key differing
// only in case from one of known (Go's encoding/json would read it as that
// key, parsers in other languages would not); so is trailing data.
func strictObject(b []byte, known []string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj := map[string]json.RawMessage{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("bad JSON: %w", err)
		}
		k, _ := tok.(string)
		lower := strings.ToLower(k)
		if seen[lower] {
			return nil, fmt.Errorf("key %q appears twice (or in two cases)", k)
		}
		seen[lower] = true
		for _, canon := range known {
			if lower == strings.ToLower(canon) && k != canon {
				return nil, fmt.Errorf("key %q: the spec's key is %q", k, canon)
			}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("bad JSON: %w", err)
		}
		obj[k] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return obj, nil
}

// isSignatureArtifact reports whether doc can only carry signatures, so
// nothing in it can run: an image manifest whose layers are all signature
// payloads (simple signing or Sigstore bundles), or an index (the OCI
// referrers tag schema) whose entries all declare a signature artifactType.
// An index entry only names a digest: the manifest behind it is gated on
// its own when pulled. It is decided by content, never by tag name, and
// only for the media types whose clients read "layers" or "manifests":
// Docker reads a schema 1 manifest (or application/json) by its fsLayers
// and would run them whatever "layers" declares. The media types a
// signature artifact may be served as are OCI and Docker schema 2 image
// manifests and indexes, compared exactly as served.
func isSignatureArtifact(doc manifestDoc, mediaType string) (bool, error) {
	if doc.Manifests != nil {
		if !types.MediaType(mediaType).IsIndex() {
			return false, nil
		}
		return allSignatureTypes(doc.Manifests, "manifests", "artifactType")
	}
	if doc.Layers == nil || !types.MediaType(mediaType).IsImage() {
		return false, nil
	}
	return allSignatureTypes(doc.Layers, "layers", "mediaType")
}

// allSignatureTypes reports whether raw is a non-empty array of objects
// whose field is a signature media type.
func allSignatureTypes(raw json.RawMessage, what, field string) (bool, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	if len(items) == 0 {
		return false, nil
	}
	for i, item := range items {
		obj, err := strictObject(item, []string{field})
		if err != nil {
			return false, fmt.Errorf("%s[%d]: %w", what, i, err)
		}
		var mt string
		if err := json.Unmarshal(obj[field], &mt); err != nil || !signatureLayerTypes[mt] {
			return false, nil
		}
	}
	return true, nil
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// The blob gate. A registry serves any content as a blob, manifests
// included, and a descriptor's urls may send a client to
// /v2/<repo>/blobs/<digest> for a manifest. So a blob whose bytes a client
// could take for a manifest (sigstore.LooksLikeManifest) is served only
// when that digest is admitted in that repository, as if it had been
// pulled as a manifest; otherwise 403 DENIED. Everything else streams
// untouched: the gate peeks at the first bytes and reads a blob whole only
// when it starts like a JSON object (configs, payloads: small), so a layer
// costs one buffered read of its first bytes.

// blobPeek is how many bytes of a blob are looked at for its first
// non-space byte.
const blobPeek = 512

// passRequest is what the pass-through needs of a request, carried on its
// context from the handler to the transport and to gateBlob.
type passRequest struct {
	t    target
	auth string // the client's Authorization, when it is for this upstream
	// gate is set on blob GETs whose body gateBlob must inspect: not
	// when the whole blob was classified before the request.
	gate   bool
	digest v1.Hash
}

type passRequestKey struct{}

// gateBlob is the pass-through's ModifyResponse. An upstream failure
// (5xx) becomes 502 with an OCI body naming the upstream, never upstream's
// own page; the body of a successful blob GET is inspected.
func (s *Server) gateBlob(resp *http.Response) error {
	bc, ok := resp.Request.Context().Value(passRequestKey{}).(*passRequest)
	if !ok {
		return nil
	}
	// A registry's session cookie is worth the credentials it was issued
	// for (the proxy's own, or another client's); no client needs one.
	resp.Header.Del("Set-Cookie")
	if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && !bc.t.up.challengesClients() {
		return ownedRefused(bc.t.up, resp.Request.URL.Path, resp.StatusCode)
	}
	if resp.StatusCode >= 500 {
		s.metrics.upstreamError(bc.t.up.registry, "status")
		return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Message: fmt.Sprintf("upstream %s answered %d for %s", bc.t.up.registry, resp.StatusCode, resp.Request.URL.Path)}
	}
	if bc.digest.Hex != "" && resp.Request.Method == http.MethodGet {
		if err := plainBody(bc, resp); err != nil {
			return err
		}
	}
	if !bc.gate || resp.Request.Method != http.MethodGet {
		return nil
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil
	}
	jsonLike, err := peekJSON(resp)
	if err != nil || !jsonLike {
		return err
	}
	ctx := resp.Request.Context()
	if resp.StatusCode == http.StatusPartialContent {
		// A part of a JSON blob: judge the whole.
		return s.checkWholeBlob(ctx, bc)
	}
	body, l, err := s.readJSONBlob(ctx, resp, bc)
	if err != nil {
		l.release()
		return err
	}
	// The bytes stay leased from the blob gate's budget until the client
	// has them: slow readers of JSON blobs cannot pin unbounded memory,
	// nor take from the budget manifest fetches need.
	resp.Body = leasedBody{Reader: bytes.NewReader(body), l: l}
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// plainBody refuses a blob body with a Content-Encoding: the proxy asks
// for none, and an encoded body would hide from the gate what it holds.
func plainBody(bc *passRequest, resp *http.Response) error {
	for _, line := range resp.Header.Values("Content-Encoding") {
		for ce := range strings.SplitSeq(line, ",") {
			if ce = strings.TrimSpace(ce); ce != "" && !strings.EqualFold(ce, "identity") {
				return &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
					Message: fmt.Sprintf("upstream %s sent %s with Content-Encoding %q, which the proxy did not ask for",
						bc.t.up.registry, resp.Request.URL.Path, ce)}
			}
		}
	}
	return nil
}

// leasedBody releases its lease when closed.
type leasedBody struct {
	*bytes.Reader
	l *lease
}

func (b leasedBody) Close() error {
	b.l.release()
	return nil
}

// peekJSON reports whether resp's body starts like a JSON object, leaving
// the body to be read from its start.
func peekJSON(resp *http.Response) (bool, error) {
	br := bufio.NewReaderSize(resp.Body, blobPeek)
	head, err := br.Peek(blobPeek)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return false, err
	}
	resp.Body = readCloser{br, resp.Body}
	return startsLikeJSON(head, len(head) < blobPeek), nil
}

// readJSONBlob reads a blob that starts like JSON whole, at most 4 MiB,
// and admits it (admitBlob). A larger one cannot be checked and is
// refused. The lease is the caller's to release.
func (s *Server) readJSONBlob(ctx context.Context, resp *http.Response, bc *passRequest) ([]byte, *lease, error) {
	body, l, err := readBounded(resp, s.blobBytes)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Code == CodeManifestInvalid {
			err = &Error{Status: http.StatusForbidden, Code: CodeDenied,
				Message: fmt.Sprintf("%s/%s@%s: refused: a blob that starts like JSON and is over 4 MiB cannot be checked for being a manifest",
					bc.t.up.registry, bc.t.repo, bc.digest)}
		}
		return nil, l, err
	}
	return body, l, s.admitBlob(ctx, bc, body)
}

// checkWholeBlob fetches a blob whole, at most 4 MiB, and admits it as
// admitBlob does; a blob that does not start like JSON is no manifest and
// passes (its range is then served as it comes).
func (s *Server) checkWholeBlob(ctx context.Context, bc *passRequest) error {
	ctx, cancel := context.WithTimeout(ctx, bc.t.up.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return err
	}
	req.URL = bc.t.up.blobURL(bc.t.repo, bc.digest.String())
	req.Host = req.URL.Host
	what := bc.t.up.registry + "/" + bc.t.repo + "@" + bc.digest.String()
	client, err := bc.t.up.clientFor(ctx, bc.t.repo, bc.auth)
	if err != nil {
		return s.fetchError(bc.t, what, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return s.fetchError(bc.t, what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil // the ranged request gets upstream's own answer
	}
	if err := plainBody(bc, resp); err != nil {
		return err
	}
	jsonLike, err := peekJSON(resp)
	if err != nil {
		return s.fetchError(bc.t, what, err)
	}
	if !jsonLike {
		return nil
	}
	_, l, err := s.readJSONBlob(ctx, resp, bc)
	l.release()
	return err
}

// admitBlob lets body through unless a client could take it for a
// manifest that is not admitted in the repository.
func (s *Server) admitBlob(ctx context.Context, bc *passRequest, body []byte) error {
	if !sigstore.LooksLikeManifest(body) {
		return nil
	}
	img := verifier.Image{Registry: bc.t.up.registry, Repository: bc.t.repo, Digest: bc.digest}
	sum := sha256.Sum256(body)
	if bc.digest.Algorithm != "sha256" || bc.digest.Hex != hex.EncodeToString(sum[:]) {
		return &Error{Status: http.StatusForbidden, Code: CodeDenied,
			Message: img.String() + ": refused: a blob whose bytes are a manifest must be sha256 and match its digest"}
	}
	doc, err := sigstore.ParseManifest(body, "")
	if err != nil {
		doc = nil // decided on signatures alone
	}
	src, err := bc.t.up.source(ctx, bc.t.repo, bc.auth)
	if err != nil {
		return s.lookupError(ctx, img, err)
	}
	d, err := bc.t.v.Decide(ctx, src, img, doc)
	if err != nil {
		return s.lookupError(ctx, img, err)
	}
	if !d.Admit {
		return &Error{Status: http.StatusForbidden, Code: CodeDenied,
			Message: d.Message + " (served as a blob, these bytes are a manifest)"}
	}
	return nil
}

// startsLikeJSON reports whether the first non-space byte of head is '{'.
// A head that is all space and not the whole blob starts like anything.
func startsLikeJSON(head []byte, whole bool) bool {
	t := bytes.TrimLeft(head, " \t\r\n")
	if len(t) == 0 {
		return !whole
	}
	return t[0] == '{'
}

// rangeStart is the first byte a Range header asks for: 0 for none, -1
// for a suffix range (the last N bytes), several ranges (a multipart body
// does not start with the blob's first bytes) or anything else it cannot
// read.
func rangeStart(h string) int64 {
	if h == "" {
		return 0
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return -1
	}
	from, _, _ := strings.Cut(strings.TrimSpace(spec), "-")
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

type readCloser struct {
	io.Reader
	io.Closer
}

// passTransport sends pass-through requests upstream as the request's
// upstream is reached for its repository (with the proxy's own
// credentials, the client's, or none: upstream.roundTripper). Blob
// requests follow upstream redirects themselves (dropping credentials off
// the upstream's origin), so that a blob reaches the client only through
// the gate; other requests are sent as they are.
type passTransport struct{ up *upstream }

// RoundTrip implements http.RoundTripper.
func (t passTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, ok := req.Context().Value(passRequestKey{}).(*passRequest)
	if !ok {
		return t.up.transport.RoundTrip(req)
	}
	if pr.digest.Hex != "" { // a blob
		client, err := t.up.clientFor(req.Context(), pr.t.repo, pr.auth)
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.RequestURI = ""
		return client.Do(req)
	}
	rt, err := t.up.roundTripper(req.Context(), pr.t.repo, pr.auth)
	if err != nil {
		return nil, err
	}
	return rt.RoundTrip(req)
}

package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"

	"github.com/cosign-dev/cosign/sigstore"
)

// copyBufferSize is the size of the buffers blobs are streamed through.
const copyBufferSize = 256 << 10

// bufferPool recycles the ReverseProxy copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}}}
}

// Get implements httputil.BufferPool.
func (b *bufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

// Put implements httputil.BufferPool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.p.Put(&buf)
}

// newReverseProxy returns the streaming pass-through to up. The request it
// is given already carries the upstream path (prefix stripped) and query
// (ns removed); Rewrite only points it at the upstream. Redirects are
// returned to the client as they come: the transport does not follow them.
func (s *Server) newReverseProxy(up *upstream) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up.base)
			pr.Out.URL.Path = pr.In.URL.Path
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			// The client's credentials go on only when they are for
			// this upstream; passTransport adds them, or the proxy's own.
			pr.Out.Header.Del("Authorization")
			// Bytes the gate inspects must come as they are stored: an
			// encoded body would hide what it holds.
			pr.Out.Header.Del("Accept-Encoding")
		},
		Transport:      passTransport{up: up},
		ModifyResponse: s.gateBlob,
		BufferPool:     s.buffers,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandler:   s.passthroughError(up),
	}
}

// passthroughError answers a pass-through whose upstream did not respond
// with an OCI error: 504 on a timeout, 502 otherwise. A refusal of the blob
// gate is rendered as it is.
func (s *Server) passthroughError(up *upstream) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		var e *Error
		if errors.As(err, &e) {
			writeError(w, r, e)
			return
		}
		if r.Context().Err() != nil {
			writeError(w, r, errClientGone)
			return
		}
		kind, e := transportError(up, r.URL.Path, err)
		s.metrics.upstreamError(up.registry, kind)
		writeError(w, r, e)
	}
}

// transportError turns a failed upstream round trip into 504 (timeout) or
// 502 (anything else), naming the upstream.
func transportError(up *upstream, what string, err error) (string, *Error) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout", &Error{Status: http.StatusGatewayTimeout, Code: CodeUnavailable,
			Message: "upstream " + up.registry + " did not answer in time for " + what, Err: err}
	}
	return "network", &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
		Message: "upstream " + up.registry + " is unreachable for " + what, Err: err}
}

// forward streams r to pr's upstream at path, without the ns parameter.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, pr *passRequest, path string) {
	out := r.WithContext(context.WithValue(r.Context(), passRequestKey{}, pr))
	u := *r.URL
	u.Path, u.RawPath = path, ""
	u.RawQuery = withoutNS(r.URL.RawQuery)
	out.URL = &u
	pr.t.up.proxy.ServeHTTP(w, out)
}

// withoutNS removes the ns parameter from a raw query.
func withoutNS(raw string) string {
	if raw == "" || !strings.Contains(raw, "ns") {
		return raw
	}
	var kept []string
	for part := range strings.SplitSeq(raw, "&") {
		if part == "ns" || strings.HasPrefix(part, "ns=") {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

// handleBlob streams GET and HEAD /v2/<name>/blobs/<digest>, Range
// requests included. It never hands out, as a blob, a manifest that was not
// admitted (see gateBlob); upstream redirects to storage are followed by
// the proxy, so that what the client gets passed the gate.
func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request) error {
	t, err := s.resolve(r)
	if err != nil {
		return err
	}
	d, err := pathVar(r, "digest")
	if err != nil {
		return err
	}
	h, err := sigstore.ParseContentDigest(d)
	if err != nil || (h.Algorithm != "sha256" && h.Algorithm != "sha512") {
		return newError(http.StatusBadRequest, CodeDigestInvalid,
			"invalid digest %q: want sha256:<64> or sha512:<128> lower-case hex", d)
	}
	pr := &passRequest{t: t, digest: h, auth: t.up.clientAuth(r), gate: r.Method == http.MethodGet}
	if r.Method == http.MethodGet && rangeStart(r.Header.Get("Range")) != 0 {
		// A range past the start shows none of what the blob begins with:
		// classify the whole blob first.
		if err := s.checkWholeBlob(r.Context(), pr); err != nil {
			return err
		}
		pr.gate = false
	}
	s.forward(w, r, pr, "/v2/"+t.repo+"/blobs/"+d)
	return nil
}

// maxTagsPage is the largest page of tags a client may ask for, as in
// distribution since CVE-2023-2253 (an unbounded n made the registry
// allocate for it).
const maxTagsPage = 1000

// handleTags streams GET /v2/<name>/tags/list with its n and last
// parameters; n must be a number from 0 to maxTagsPage.
func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) error {
	t, err := s.resolve(r)
	if err != nil {
		return err
	}
	if q := r.URL.Query(); q.Has("n") {
		if n, err := strconv.Atoi(q.Get("n")); err != nil || n < 0 || n > maxTagsPage {
			return newError(http.StatusBadRequest, CodePaginationInvalid,
				"invalid page size n=%q: a number from 0 to %d", q.Get("n"), maxTagsPage)
		}
	}
	s.forward(w, r, &passRequest{t: t, auth: t.up.clientAuth(r)}, "/v2/"+t.repo+"/tags/list")
	return nil
}

// handleReferrers streams GET /v2/<name>/referrers/<digest>. The index it
// returns only lists descriptors; each manifest it names is gated when
// pulled.
func (s *Server) handleReferrers(w http.ResponseWriter, r *http.Request) error {
	t, err := s.resolve(r)
	if err != nil {
		return err
	}
	d, err := pathVar(r, "digest")
	if err != nil {
		return err
	}
	if _, err := sigstore.ParseDigest(d); err != nil {
		return newError(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q: want sha256:<64 lower-case hex>", d)
	}
	s.forward(w, r, &passRequest{t: t, auth: t.up.clientAuth(r)}, "/v2/"+t.repo+"/referrers/"+d)
	return nil
}

// handlePing passes GET /v2/ to the upstream the request names, so that
// its 401 challenge reaches the client. With no upstream to ask it answers
// 200 itself.
func (s *Server) handlePing(w http.ResponseWriter, r *http.Request) error {
	up, err := s.upstreamFor(r)
	if err != nil {
		return err
	}
	if up == nil || !up.challengesClients() {
		// Nothing to ask upstream, or its challenge must not reach the
		// client: the challenge, if any, is the proxy's own.
		if err := authenticatePing(r, stateOf(r), up); err != nil {
			return err
		}
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte("{}\n"))
		}
		return nil
	}
	s.forward(w, r, &passRequest{t: target{up: up}, auth: up.clientAuth(r)}, "/v2/")
	return nil
}

// authenticatePing checks the login of a ping the proxy answers itself.
// With clientAuth, a client without a valid login gets the proxy's Basic
// challenge, whatever the upstream: docker login checks its password here,
// and Docker learns to send it (a public upstream still serves a client
// that never logs in). Without it, only an upstream that needs a login
// challenges.
func authenticatePing(r *http.Request, st *state, up *upstream) error {
	if st.users != nil {
		if _, ok := st.users.check(r); !ok {
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "authentication required: log in to this proxy",
				Header:  http.Header{"Www-Authenticate": {`Basic realm="cosign proxy"`}}}
		}
		return nil
	}
	if up == nil {
		return nil
	}
	_, err := authenticate(r, st, up)
	return err
}

// authenticate checks the client's Basic credentials against clientAuth
// when up needs them, and returns the user ("" when not needed). A client
// without valid credentials gets 401 with a Basic challenge.
func authenticate(r *http.Request, st *state, up *upstream) (string, error) {
	if !up.needsClientAuth {
		return "", nil
	}
	if st.users != nil {
		if user, ok := st.users.check(r); ok {
			return user, nil
		}
	}
	return "", &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
		Message: "authentication required: log in to this proxy (its upstream " + up.registry + " is not public)",
		Header:  http.Header{"Www-Authenticate": {`Basic realm="cosign proxy"`}}}
}

package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// OCI distribution error codes the proxy answers with.
const (
	CodeDenied          = "DENIED"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeManifestInvalid = "MANIFEST_INVALID"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeUnauthorized    = "UNAUTHORIZED"
	CodeUnsupported     = "UNSUPPORTED"
	CodeTooManyRequests = "TOOMANYREQUESTS"
	CodeUnavailable     = "UNAVAILABLE"
	CodeUnknown         = "UNKNOWN"
	// CodePaginationInvalid is the spec's code for a bad page size n.
	CodePaginationInvalid = "PAGINATION_NUMBER_INVALID"
)

// Error is an error response of the distribution API. Handlers return it;
// writeError is the one place that renders it as
// {"errors":[{"code":...,"message":...}]}.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the OCI error code, e.g. DENIED.
	Code string
	// Message is one line for the person at the client.
	Message string
	// Header holds extra response headers: WWW-Authenticate, Retry-After.
	Header http.Header
	// Body, when set, is an upstream's own OCI error body, served as is
	// instead of Code and Message (a 401 challenge's explanation, a 404's
	// MANIFEST_UNKNOWN or NAME_UNKNOWN).
	Body []byte
	// Err is the cause, for logs; it is never shown to the client.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	s := strconv.Itoa(e.Status) + " " + e.Code + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// errClientGone is returned by handlers when the client went away; nothing
// is written.
var errClientGone = errors.New("client closed the request")

func newError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

type ociErrors struct {
	Errors []ociError `json:"errors"`
}

// writeError renders err as an OCI error response. Errors that are not an
// *Error become 500 UNKNOWN without their text (it may name internals).
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if errors.Is(err, errClientGone) {
		// The client may still be reading (a half-closed connection
		// cancels the context too): answer an error, never nothing,
		// which net/http would send as an empty 200.
		if rec, ok := w.(*recorder); ok {
			rec.status = statusClientClosed
		}
		e = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "the request was cancelled before an answer"}
	} else if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: CodeUnknown, Message: "internal error", Err: err}
	}
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	body := e.Body
	if body == nil {
		body = marshalError(e.Code, e.Message)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Docker-Content-Digest")
	if r.Method == http.MethodHead && e.Code == CodeDenied && writeHeadRefusal(w, r, e) {
		return
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// writeHeadRefusal answers a refused HEAD with the refusal in the status
// line's reason phrase ("403 Forbidden (DENIED: ...)"). A HEAD response has
// no body, and containerd resolves tags with HEAD alone and prints only the
// status line, so without this the person at `ctr images pull` would never
// learn why. It needs HTTP/1.x and a hijackable connection, and reports
// whether it answered; the connection is closed afterwards.
func writeHeadRefusal(w http.ResponseWriter, r *http.Request, e *Error) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	if rec, ok := w.(*recorder); ok {
		rec.status = e.Status
	}
	fmt.Fprintf(buf, "HTTP/1.1 %d %s (%s: %s)\r\n", e.Status, http.StatusText(e.Status), e.Code, reasonPhrase(e.Message))
	for k, vs := range w.Header() {
		for _, v := range vs {
			fmt.Fprintf(buf, "%s: %s\r\n", k, reasonPhrase(v))
		}
	}
	fmt.Fprintf(buf, "Connection: close\r\n\r\n")
	_ = buf.Flush()
	return true
}

// reasonPhrase makes s safe for a status line or header value: printable
// ASCII only, at most 1 KiB.
func reasonPhrase(s string) string {
	const max = 1 << 10
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(b) < max; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}

func marshalError(code, message string) []byte {
	b, err := json.Marshal(ociErrors{Errors: []ociError{{Code: code, Message: message}}})
	if err != nil { // cannot happen for two strings; keep a valid body anyway
		return []byte(`{"errors":[{"code":"UNKNOWN","message":"internal error"}]}`)
	}
	return append(b, '\n')
}

// ociErrorBody returns b when it is a well-formed OCI error body with at
// least one error, nil otherwise, so that only such bodies pass through.
func ociErrorBody(b []byte) []byte {
	var e ociErrors
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil || len(e.Errors) == 0 {
		return nil
	}
	for _, x := range e.Errors {
		if x.Code == "" {
			return nil
		}
	}
	return b
}

// statusClientClosed is logged when the client went away before an answer
// (nginx's convention); it is never sent.
const statusClientClosed = 499

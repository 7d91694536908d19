package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// budget bounds the manifest bytes being read from upstreams at once, so
// that many clients asking at once for large manifests (each with other
// credentials, so that no fetch is shared) cannot pin unbounded memory.
// Past it, clients get 503 with Retry-After.
type budget struct {
	max  int64
	used atomic.Int64
}

// lease is bytes taken from a budget; release gives them back once.
type lease struct {
	b    *budget
	n    int64
	once sync.Once
}

func (l *lease) release() {
	if l == nil || l.b == nil {
		return
	}
	l.once.Do(func() { l.b.used.Add(-l.n) })
}

// take adds n bytes to l, or reports false when the budget has no room.
func (l *lease) take(n int64) bool {
	if l.b.used.Add(n) > l.b.max {
		l.b.used.Add(-n)
		return false
	}
	l.n += n
	return true
}

// inUse is the bytes leased now.
func (b *budget) inUse() int64 { return b.used.Load() }

// errBusy answers a manifest fetch the budget has no room for.
var errBusy = &Error{Status: http.StatusServiceUnavailable, Code: CodeTooManyRequests,
	Message: "the proxy is reading too many manifests at once; retry shortly",
	Header:  http.Header{"Retry-After": {"1"}}}

// readChunk is the step in which a manifest body is read and leased.
const readChunk = 64 << 10

// readBounded reads a 200 body of at most 4 MiB, leasing from budget b
// as it reads: the buffer doubles as bytes arrive (from one chunk, up to
// what Content-Length announces plus one byte, to see a longer body), so a
// Content-Length is a promise, not memory taken up front. It detects
// truncation. The caller releases the lease when the bytes are dropped or
// handed to the cache.
func readBounded(resp *http.Response, b *budget) ([]byte, *lease, error) {
	l := &lease{b: b}
	if resp.ContentLength > maxManifestSize {
		return nil, l, tooLarge(resp.ContentLength)
	}
	var body []byte
	for {
		if len(body) == cap(body) {
			if len(body) > maxManifestSize {
				return nil, l, tooLarge(-1)
			}
			limit := int64(maxManifestSize + 1)
			if resp.ContentLength >= 0 {
				limit = resp.ContentLength + 1
			}
			grow := min(max(int64(cap(body)), readChunk), limit-int64(cap(body)))
			if grow <= 0 {
				return nil, l, fmt.Errorf("body longer than the %d bytes announced", resp.ContentLength)
			}
			if !l.take(grow) {
				return nil, l, errBusy
			}
			body = append(body[:cap(body)], make([]byte, grow)...)[:len(body)]
		}
		n, err := resp.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, l, fmt.Errorf("body after %d bytes: %w", len(body), err)
		}
	}
	if len(body) > maxManifestSize {
		return nil, l, tooLarge(-1)
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, l, fmt.Errorf("truncated body: %d of %d bytes: %w", len(body), resp.ContentLength, io.ErrUnexpectedEOF)
	}
	return body, l, nil
}

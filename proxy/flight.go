package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// flights shares one call per key among concurrent callers, like
// singleflight, and cancels the call when the last caller has left: a
// fetch nobody waits for any more stops instead of holding an upstream
// connection (and one of the upstream's request slots) until its timeout.
type flights[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do runs fn once for key among concurrent callers and returns its result
// to each, or errClientGone to a caller whose ctx ends first. fn runs with
// a context detached from any one caller and cancelled when none is left.
// A panic in fn is the callers' error, not the process's end.
func (f *flights[T]) do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flight[T]{}
	}
	c, ok := f.calls[key]
	if !ok {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flight[T]{done: make(chan struct{}), cancel: cancel}
		f.calls[key] = c
		go func() {
			defer close(c.done)
			defer cancel()
			defer func() {
				if r := recover(); r != nil {
					c.err = fmt.Errorf("proxy: shared fetch panicked: %v", r)
				}
				f.mu.Lock()
				if f.calls[key] == c {
					delete(f.calls, key)
				}
				f.mu.Unlock()
			}()
			c.val, c.err = fn(cctx)
		}()
	}
	c.waiters++
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		f.mu.Lock()
		if c.waiters--; c.waiters == 0 {
			c.cancel()
			if f.calls[key] == c { // later callers start afresh
				delete(f.calls, key)
			}
		}
		f.mu.Unlock()
		var zero T
		return zero, errClientGone
	}
}

// Upstream request slots. The manifest GETs and HEADs and the signature
// lookups the proxy sends one upstream are bounded, so that many clients
// at once (each with its own credentials, so that nothing is shared)
// cannot swamp the upstream and keep it swamped after they leave. A
// request waits up to slotWait for a slot, then the client gets 503 with
// Retry-After. Blob streams do not take slots.
const (
	upstreamSlots = 64
	slotWait      = 2 * time.Second
)

// slots is one upstream's request slots.
type slots chan struct{}

// acquire takes a slot, waiting up to slotWait or until ctx ends.
func (s slots) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case s <- struct{}{}:
		return nil
	case <-t.C:
		return errBusy
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s slots) release() { <-s }

// slotTransport holds a slot from each request until its response body is
// closed.
type slotTransport struct {
	base  http.RoundTripper
	slots slots
}

// RoundTrip implements http.RoundTripper.
func (t slotTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.slots.acquire(req.Context()); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.slots.release()
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: t.slots.release}
	return resp, nil
}

type slotBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

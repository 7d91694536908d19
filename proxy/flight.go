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
// cannot swamp the upstream and keep it swamped after they leave; and one
// client address takes at most half of them, so that one client cannot
// starve the others. A request waits up to slotWait for a slot, then the
// client gets 503 with Retry-After. Blob streams do not take slots.
const (
	upstreamSlots  = 64
	perClientSlots = upstreamSlots / 2
	slotWait       = 2 * time.Second
)

// clientKey holds, on a request's context (and on the detached work it
// starts), the address of the client it is for.
type clientKey struct{}

// clientOf is the client address a context was started for, "" if none.
func clientOf(ctx context.Context) string {
	c, _ := ctx.Value(clientKey{}).(string)
	return c
}

// slots is one upstream's request slots, with each client's share.
type slots struct {
	all chan struct{}

	mu      sync.Mutex
	clients map[string]*clientShare
}

type clientShare struct {
	held chan struct{}
	refs int
}

func newSlots() *slots {
	return &slots{all: make(chan struct{}, upstreamSlots), clients: map[string]*clientShare{}}
}

// acquire takes one of the client's share and one of the upstream's
// slots, waiting up to slotWait in all or until ctx ends.
func (s *slots) acquire(ctx context.Context) (release func(), err error) {
	client := clientOf(ctx)
	s.mu.Lock()
	share := s.clients[client]
	if share == nil {
		share = &clientShare{held: make(chan struct{}, perClientSlots)}
		s.clients[client] = share
	}
	share.refs++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		if share.refs--; share.refs == 0 {
			delete(s.clients, client)
		}
		s.mu.Unlock()
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	if err := take(ctx, share.held, t.C); err != nil {
		done()
		return nil, err
	}
	if err := take(ctx, s.all, t.C); err != nil {
		<-share.held
		done()
		return nil, err
	}
	return func() {
		<-s.all
		<-share.held
		done()
	}, nil
}

// take puts a token in c, waiting until timeout delivers or ctx ends.
func take(ctx context.Context, c chan struct{}, timeout <-chan time.Time) error {
	select {
	case c <- struct{}{}:
		return nil
	default:
	}
	select {
	case c <- struct{}{}:
		return nil
	case <-timeout:
		return errBusy
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// slotTransport holds a slot from each request until its response body is
// closed.
type slotTransport struct {
	base  http.RoundTripper
	slots *slots
}

// RoundTrip implements http.RoundTripper.
func (t slotTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	release, err := t.slots.acquire(req.Context())
	if err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: release}
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

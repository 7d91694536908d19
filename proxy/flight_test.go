package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFlightsShareAndStopWhenNobodyWaits: concurrent callers share one
// call; when the last of them leaves, the call's context is cancelled, and
// a caller arriving after that starts afresh.
func TestFlightsShareAndStopWhenNobodyWaits(t *testing.T) {
	var f flights[int]
	started, release := make(chan struct{}), make(chan struct{})
	stopped := make(chan error, 1)
	calls := 0
	fn := func(ctx context.Context) (int, error) {
		calls++
		close(started)
		select {
		case <-release:
			return 7, nil
		case <-ctx.Done():
			stopped <- ctx.Err()
			return 0, ctx.Err()
		}
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := f.do(ctx1, "k", fn); errs <- err }()
	<-started
	go func() { _, err := f.do(ctx2, "k", fn); errs <- err }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		f.mu.Lock()
		joined := f.calls["k"].waiters == 2
		f.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second caller never joined the call")
		}
		time.Sleep(time.Millisecond)
	}
	cancel1()
	if err := <-errs; !errors.Is(err, errClientGone) {
		t.Fatalf("first caller: %v", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("call stopped while a caller still waits: %v", err)
	default:
	}
	cancel2()
	if err := <-errs; !errors.Is(err, errClientGone) {
		t.Fatalf("second caller: %v", err)
	}
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("call not cancelled when nobody waited: %v", err)
	}
	v, err := f.do(context.Background(), "k", func(context.Context) (int, error) { return 9, nil })
	if v != 9 || err != nil || calls != 1 {
		t.Fatalf("a later caller got %d, %v after %d calls; want a fresh call", v, err, calls)
	}
	close(release)
}

func TestFlightsPanicIsAnError(t *testing.T) {
	var f flights[int]
	_, err := f.do(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
}

// TestUpstreamSlotsAnswerBusy: with every slot of an upstream held, a
// manifest request gets 503 with Retry-After after slotWait, and is served
// once a slot is free again.
func TestUpstreamSlotsAnswerBusy(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	up := stateOfServer(e.srv).upstreams[e.up.host]
	for range upstreamSlots {
		up.slots.all <- struct{}{}
	}
	start := time.Now()
	resp := e.do(http.MethodGet, "/v2/prod/app/manifests/v1")
	wantStatus(t, resp, http.StatusServiceUnavailable, CodeTooManyRequests)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if waited := time.Since(start); waited < slotWait {
		t.Errorf("answered busy after %v, before waiting %v for a slot", waited, slotWait)
	}
	for range upstreamSlots {
		<-up.slots.all
	}
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), http.StatusOK, "")
}

func stateOfServer(s *Server) *state { return s.state.Load() }

// TestOneClientTakesHalfTheSlots: a client address holding half of an
// upstream's slots waits (then gets 503) for more, while another client
// is still served.
func TestOneClientTakesHalfTheSlots(t *testing.T) {
	s := newSlots()
	greedy := context.WithValue(context.Background(), clientKey{}, "10.0.0.1")
	var releases []func()
	for range perClientSlots {
		release, err := s.acquire(greedy)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	if _, err := s.acquire(greedy); !errors.Is(err, errBusy) {
		t.Fatalf("a client past its share: %v, want busy", err)
	}
	other := context.WithValue(context.Background(), clientKey{}, "10.0.0.2")
	release, err := s.acquire(other)
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	release()
	for _, r := range releases {
		r()
	}
	if n := len(s.clients); n != 0 || len(s.all) != 0 {
		t.Fatalf("%d client shares and %d slots left after every release", n, len(s.all))
	}
}

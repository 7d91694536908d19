package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Readiness: every upstream is pinged (GET /v2/) every pingInterval; any
// answer below 500, 401 included, counts as an answer. The proxy is ready
// when its configuration is loaded and every upstream answered within
// readyWindow.
const (
	pingInterval = 10 * time.Second
	readyWindow  = 3 * pingInterval
)

// health remembers when each upstream last answered its ping.
type health struct {
	mu       sync.Mutex
	answered map[string]time.Time // by registry
	errs     map[string]string    // last failure, by registry
	now      func() time.Time
}

func newHealth() *health {
	return &health{answered: map[string]time.Time{}, errs: map[string]string{}, now: time.Now}
}

// pingAll pings every upstream of the state in force once, at once.
func (s *Server) pingAll(ctx context.Context) {
	st := s.state.Load()
	var wg sync.WaitGroup
	for _, name := range st.order {
		up := st.upstreams[name]
		wg.Go(func() {
			err := up.ping(ctx)
			s.health.mu.Lock()
			defer s.health.mu.Unlock()
			if err != nil {
				s.health.errs[name] = err.Error()
				return
			}
			s.health.answered[name] = s.health.now()
			delete(s.health.errs, name)
		})
	}
	wg.Wait()
}

// pingLoop pings the upstreams now and every pingInterval until ctx ends.
func (s *Server) pingLoop(ctx context.Context) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		s.pingAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ping asks the upstream's /v2/ without credentials.
func (up *upstream) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(up.timeout, pingInterval))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, up.baseStr+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := up.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return &Error{Status: resp.StatusCode, Message: "upstream answered " + resp.Status}
	}
	return nil
}

// handleHealthz answers 200 while the process serves.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 when every upstream of the configuration in
// force answered its ping within readyWindow, else 503 naming the ones
// that did not.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	st := stateOf(r)
	s.health.mu.Lock()
	now := s.health.now()
	notReady := map[string]string{}
	for _, name := range st.order {
		at, ok := s.health.answered[name]
		if !ok || now.Sub(at) > readyWindow {
			why := s.health.errs[name]
			if why == "" {
				why = "no answer to its /v2/ ping yet"
			}
			notReady[name] = why
		}
	}
	s.health.mu.Unlock()
	if len(notReady) > 0 {
		names := make([]string, 0, len(notReady))
		for n := range notReady {
			names = append(names, n)
		}
		sort.Strings(names)
		writeJSON(w, r, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "upstreams": notReady, "waiting": names})
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(b, '\n'))
	}
}

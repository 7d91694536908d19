package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestAnonymousTokensForAnUpstreamClientsCredentialsDoNotGoTo: a public
// registry that serves images with anonymous Bearer tokens (Docker Hub,
// ghcr.io) as a second upstream. Clients' credentials do not go to it, so
// the proxy gets the anonymous token itself; the client never sees the
// challenge (it would answer it with what it holds for the proxy's host),
// and the token server never sees any credentials.
func TestAnonymousTokensForAnUpstreamClientsCredentialsDoNotGoTo(t *testing.T) {
	var mu sync.Mutex
	var tokenAuths []string
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tokenAuths = append(tokenAuths, r.Header.Get("Authorization"))
		mu.Unlock()
		scope := r.URL.Query().Get("scope")
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "anon " + scope, "expires_in": 300})
	}))
	t.Cleanup(tokens.Close)
	second := newFakeUpstream(t)
	e := newEnv(t, func(e *env, c *Config) {
		c.Upstreams = append(c.Upstreams, Upstream{Registry: "public.example", URL: localhostURL(t, second.URL)})
		c.DefaultUpstream = e.up.host
		c.Policies[0].Match = append(c.Policies[0].Match, "public.example/**")
	})
	other := &env{t: t, up: second, host: e.host}
	_, d := other.pushRandom("team/app", "v1")
	other.signAs("public.example/team/app", "team/app", d, e.key)
	// Like Docker Hub: the ping and every request without a token get
	// the challenge.
	second.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/v2/") || r.Header.Get("Authorization") == "Bearer anon repository:team/app:pull" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+localhostURL(t, tokens.URL)+`/token",service="public.example",scope="repository:team/app:pull"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	for _, path := range []string{"/v2/public.example/team/app/manifests/v1", "/v2/team/app/manifests/v1?ns=public.example"} {
		resp := e.do(http.MethodGet, path, "Authorization", "Basic ZGVmYXVsdDpzZWNyZXQ=")
		if ch := resp.Header.Values("Www-Authenticate"); len(ch) > 0 {
			t.Errorf("%s: the client got upstream's challenge %q", path, ch)
		}
		wantStatus(t, resp, http.StatusOK, "")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tokenAuths) == 0 {
		t.Fatal("the token server was never asked")
	}
	for _, a := range tokenAuths {
		if a != "" {
			t.Errorf("the token server got Authorization %q, want anonymous requests", a)
		}
	}
}

package proxy

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cosign-dev/cosign/verifier"
)

// audit writes one line per decision, at level info, message "decision":
// who asked (client address, user), for what (upstream, repository, the
// reference asked for and the digest decided on, also on a refusal by
// tag), under which policy, the result and reason, the keys, keyless
// identities and attestation types that counted,
// whether the decision came from the cache, and the time since the request
// arrived. A decision that could not be made (upstream failure) is logged
// with result "error".
func (s *Server) audit(r *http.Request, t target, ref string, img verifier.Image, d verifier.Decision, err error) {
	rec := recorderOf(r)
	result := "deny"
	switch {
	case err != nil:
		result = "error"
	case d.Warn:
		result = "warn"
	case d.Admit:
		result = "admit"
	}
	if rec != nil {
		rec.decision = result + ": " + string(d.Reason)
	}
	ctx := r.Context()
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var user string
	var latency time.Duration
	if rec != nil {
		user, latency = rec.user, time.Since(rec.start)
	}
	reason, policy := string(d.Reason), d.Policy
	if err != nil {
		reason = err.Error()
		if p := t.v.Policy(t.up.registry, t.repo); p != nil {
			policy = p.Name
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "decision",
		slog.String("client", r.RemoteAddr),
		slog.String("user", user),
		slog.String("upstream", t.up.registry),
		slog.String("repository", t.repo),
		slog.String("reference", ref),
		slog.String("digest", img.Digest.String()),
		slog.String("policy", policy),
		slog.String("result", result),
		slog.String("reason", reason),
		slog.String("keys", strings.Join(d.Keys, ",")),
		slog.String("identities", strings.Join(d.Identities, ";")),
		slog.String("attestations", strings.Join(d.Attestations, ",")),
		slog.Bool("cached", d.Cached),
		slog.Duration("latency", latency))
}

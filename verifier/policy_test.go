package verifier

import (
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"127.0.0.1:5000/prod/app", "127.0.0.1:5000/prod/app", true},
		{"127.0.0.1:5000/prod/app", "127.0.0.1:5000/prod/app2", false},
		{"127.0.0.1:5000/prod/*", "127.0.0.1:5000/prod/app", true},
		{"127.0.0.1:5000/prod/*", "127.0.0.1:5000/prod/team/app", false},
		{"127.0.0.1:5000/prod/*", "127.0.0.1:5000/prod/", true},
		{"127.0.0.1:5000/prod/**", "127.0.0.1:5000/prod/team/app", true},
		{"127.0.0.1:5000/prod/**", "127.0.0.1:5000/production/app", false},
		{"127.0.0.1:5000/**", "127.0.0.1:5000/a/b/c", true},
		{"**", "anything/at/all", true},
		{"**", "", true},
		{"*", "a/b", false},
		{"*/app", "reg/app", true},
		{"*/app", "reg/x/app", false},
		{"**/app", "reg/x/app", true},
		{"**/app", "reg/x/app/y", false},
		{"reg/**/app", "reg/app", false},
		{"reg/**/app", "reg/a/b/app", true},
		{"reg/app?", "reg/app1", true},
		{"reg/app?", "reg/app", false},
		{"reg/app?", "reg/app/", false},
		{"reg/a?c", "reg/a/c", false},
		{"*.example.com/**", "registry.example.com/x", true},
		{"*.example.com/**", "evil.com/x.example.com/y", false},
		// Every other character is literal: no regular expression leaks in.
		{"reg/a.b", "reg/axb", false},
		{"reg/a.b", "reg/a.b", true},
		{"reg/[ab]", "reg/a", false},
		{"reg/[ab]", "reg/[ab]", true},
		{"reg/a+", "reg/aa", false},
		{"reg/(x|y)", "reg/x", false},
		{"^reg/x$", "reg/x", false},
		{"reg\\/x", "reg/x", false},
		{"***", "a/b", true},
		{"", "", true},
		{"", "a", false},
		{"a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"**a**a**a**a**a**b", strings.Repeat("a/", 200), false},
	}
	for _, tt := range tests {
		if got := compileGlob(tt.pattern).match(tt.name); got != tt.want {
			t.Errorf("glob %q match %q = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestGlobLongPattern(t *testing.T) {
	// Over the 64-state stack buffer.
	pattern := strings.Repeat("a/", 50) + "**"
	if !compileGlob(pattern).match(strings.Repeat("a/", 50) + "x/y") {
		t.Error("long pattern did not match")
	}
	if compileGlob(pattern).match(strings.Repeat("a/", 49) + "b/x") {
		t.Error("long pattern matched a different name")
	}
}

func TestPolicyMatches(t *testing.T) {
	p := &Policy{Match: []string{"127.0.0.1:5000/prod/**", "mirror.local:5050/team/*"}}
	tests := []struct {
		registry, repository string
		want                 bool
	}{
		{"127.0.0.1:5000", "prod/app", true},
		{"127.0.0.1:5000", "prod/a/b", true},
		{"127.0.0.1:5000", "dev/app", false},
		{"127.0.0.2:5000", "prod/app", false},
		{"mirror.local:5050", "team/app", true},
		{"mirror.local:5050", "team/sub/app", false},
	}
	for _, tt := range tests {
		if got := p.Matches(tt.registry, tt.repository); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.registry, tt.repository, got, tt.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	k1, k2 := newEd25519(t).Public(), newECDSA(t).Public()
	base := func() *Policy {
		return &Policy{
			Name: "prod", Match: []string{"**"}, Keys: []sigstore.PublicKey{k1, k2},
			Annotations: map[string]string{"env": "prod", "team": "a"},
		}
	}
	fp := base().Fingerprint()
	if len(fp) != 64 {
		t.Fatalf("Fingerprint = %q, want 64 hex digits", fp)
	}

	same := map[string]func(*Policy){
		"keys reordered":             func(p *Policy) { p.Keys = []sigstore.PublicKey{k2, k1} },
		"key repeated":               func(p *Policy) { p.Keys = append(p.Keys, k1) },
		"match changed":              func(p *Policy) { p.Match = []string{"other/**"} },
		"threshold 0 is 1":           func(p *Policy) { p.Threshold = 1 },
		"empty mode is enforce":      func(p *Policy) { p.Mode = ModeEnforce },
		"empty identity is repo":     func(p *Policy) { p.Identity = IdentityRepository },
		"empty children is inherit":  func(p *Policy) { p.Children = ChildrenInherit },
		"annotations rebuilt":        func(p *Policy) { p.Annotations = map[string]string{"team": "a", "env": "prod"} },
		"normalized copy same as in": func(p *Policy) { *p = *p.normalized() },
	}
	for name, change := range same {
		p := base()
		change(p)
		if got := p.Fingerprint(); got != fp {
			t.Errorf("%s: fingerprint changed", name)
		}
	}

	differ := map[string]func(*Policy){
		"name":              func(p *Policy) { p.Name = "prod2" },
		"mode":              func(p *Policy) { p.Mode = ModeWarn },
		"threshold":         func(p *Policy) { p.Threshold = 2 },
		"identity":          func(p *Policy) { p.Identity = IdentityAny },
		"remap":             func(p *Policy) { p.Remap = &Remap{Prefix: "a", SignedPrefix: "b"} },
		"annotation value":  func(p *Policy) { p.Annotations["env"] = "dev" },
		"annotation added":  func(p *Policy) { p.Annotations["x"] = "" },
		"annotation key":    func(p *Policy) { p.Annotations = map[string]string{"envprod": "", "team": "a"} },
		"children":          func(p *Policy) { p.Children = ChildrenRequireSigned },
		"key rotated":       func(p *Policy) { p.Keys = []sigstore.PublicKey{k1, newEd25519(t).Public()} },
		"key removed":       func(p *Policy) { p.Keys = []sigstore.PublicKey{k1} },
		"annotations moved": func(p *Policy) { p.Annotations = map[string]string{"env": "prodteam", "": "a"} },
	}
	seen := map[string]string{fp: "base"}
	for name, change := range differ {
		p := base()
		change(p)
		got := p.Fingerprint()
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: fingerprint equals that of %s", name, prev)
		}
		seen[got] = name
	}
}

func TestNewValidatesPolicies(t *testing.T) {
	k1, k2 := newEd25519(t).Public(), newEd25519(t).Public()
	ok := func() *Policy { return &Policy{Name: "p", Match: []string{"**"}, Keys: []sigstore.PublicKey{k1}} }
	tests := []struct {
		name     string
		policies func() []*Policy
		wantErr  string // "" = valid
	}{
		{"valid", func() []*Policy { return []*Policy{ok()} }, ""},
		{"no policies", func() []*Policy { return nil }, ""},
		{"allow without keys", func() []*Policy {
			return []*Policy{{Name: "a", Match: []string{"**"}, Mode: ModeAllow}}
		}, ""},
		{"threshold equal to keys", func() []*Policy {
			p := ok()
			p.Keys, p.Threshold = []sigstore.PublicKey{k1, k2}, 2
			return []*Policy{p}
		}, ""},
		{"nil policy", func() []*Policy { return []*Policy{nil} }, "policy 1 is nil"},
		{"no keys", func() []*Policy { p := ok(); p.Keys = nil; return []*Policy{p} }, "no keys"},
		{"warn without keys", func() []*Policy {
			p := ok()
			p.Keys, p.Mode = nil, ModeWarn
			return []*Policy{p}
		}, "no keys"},
		{"threshold above keys", func() []*Policy { p := ok(); p.Threshold = 2; return []*Policy{p} }, "threshold 2 exceeds the 1 distinct keys"},
		{"threshold above distinct keys", func() []*Policy {
			p := ok()
			p.Keys, p.Threshold = []sigstore.PublicKey{k1, k1}, 2
			return []*Policy{p}
		}, "exceeds the 1 distinct keys"},
		{"negative threshold", func() []*Policy { p := ok(); p.Threshold = -1; return []*Policy{p} }, "negative"},
		{"nil key", func() []*Policy { p := ok(); p.Keys = append(p.Keys, nil); return []*Policy{p} }, "key 2 is nil"},
		{"duplicate names", func() []*Policy { return []*Policy{ok(), ok()} }, `name "p" is used twice`},
		{"empty name", func() []*Policy { p := ok(); p.Name = ""; return []*Policy{p} }, "name is empty"},
		{"no match", func() []*Policy { p := ok(); p.Match = nil; return []*Policy{p} }, "no match patterns"},
		{"blank match", func() []*Policy { p := ok(); p.Match = []string{"a b"}; return []*Policy{p} }, "contains spaces"},
		{"unknown mode", func() []*Policy { p := ok(); p.Mode = "audit"; return []*Policy{p} }, `unknown mode "audit"`},
		{"unknown identity", func() []*Policy { p := ok(); p.Identity = "exact"; return []*Policy{p} }, `unknown identity "exact"`},
		{"unknown children", func() []*Policy { p := ok(); p.Children = "skip"; return []*Policy{p} }, `unknown children mode "skip"`},
		{"remap with identity any", func() []*Policy {
			p := ok()
			p.Identity, p.Remap = IdentityAny, &Remap{Prefix: "a", SignedPrefix: "b"}
			return []*Policy{p}
		}, "remap needs identity repository"},
		{"remap empty prefix", func() []*Policy {
			p := ok()
			p.Remap = &Remap{SignedPrefix: "b"}
			return []*Policy{p}
		}, "must be a registry"},
		{"remap trailing slash", func() []*Policy {
			p := ok()
			p.Remap = &Remap{Prefix: "a/", SignedPrefix: "b"}
			return []*Policy{p}
		}, "must be a registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Config{Policies: tt.policies()})
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewCopiesPolicies(t *testing.T) {
	k1 := newEd25519(t).Public()
	p := &Policy{Name: "p", Match: []string{"127.0.0.1:5000/**"}, Keys: []sigstore.PublicKey{k1},
		Annotations: map[string]string{"env": "prod"}}
	v, err := New(Config{Policies: []*Policy{p}})
	if err != nil {
		t.Fatal(err)
	}
	before := v.Policy("127.0.0.1:5000", "x").Fingerprint()
	p.Match[0] = "nothing"
	p.Keys[0] = newEd25519(t).Public()
	p.Annotations["env"] = "dev"
	p.Mode = ModeAllow
	got := v.Policy("127.0.0.1:5000", "x")
	if got == nil {
		t.Fatal("changing the caller's Match changed the Verifier")
	}
	if got.Fingerprint() != before || got.Mode != ModeEnforce || got.Threshold != 1 {
		t.Errorf("Verifier's policy changed or was not normalized: %+v", got)
	}
}

func TestVerifierPolicyFirstMatch(t *testing.T) {
	k := newEd25519(t).Public()
	v, err := New(Config{Policies: []*Policy{
		{Name: "team", Match: []string{"reg.example/team/**"}, Keys: []sigstore.PublicKey{k}},
		{Name: "all", Match: []string{"reg.example/**"}, Keys: []sigstore.PublicKey{k}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ repo, want string }{
		{"team/app", "team"}, {"other/app", "all"}, {"teams/app", "all"},
	} {
		if got := v.Policy("reg.example", tt.repo); got == nil || got.Name != tt.want {
			t.Errorf("Policy(%q) = %v, want %q", tt.repo, got, tt.want)
		}
	}
	if got := v.Policy("other.example", "team/app"); got != nil {
		t.Errorf("Policy(other registry) = %q, want nil", got.Name)
	}
}

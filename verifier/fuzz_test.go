package verifier

import (
	"strings"
	"testing"
)

// refMatch is a plain recursive glob matcher, memoized on the suffixes it
// reaches: slow and obviously right, the oracle for the NFA.
func refMatch(p, s string) bool {
	memo := map[[2]int]bool{}
	var m func(p, s string) bool
	m = func(p, s string) bool {
		k := [2]int{len(p), len(s)}
		if r, ok := memo[k]; ok {
			return r
		}
		var r bool
		switch {
		case p == "":
			r = s == ""
		case strings.HasPrefix(p, "**"):
			for i := 0; i <= len(s) && !r; i++ {
				r = m(p[2:], s[i:])
			}
		case p[0] == '*':
			for i := 0; i <= len(s) && !r; i++ {
				r = m(p[1:], s[i:])
				if i < len(s) && s[i] == '/' {
					break
				}
			}
		case s == "":
			r = false
		case p[0] == '?':
			r = s[0] != '/' && m(p[1:], s[1:])
		default:
			r = p[0] == s[0] && m(p[1:], s[1:])
		}
		memo[k] = r
		return r
	}
	return m(p, s)
}

func FuzzGlob(f *testing.F) {
	for _, seed := range [][2]string{
		{"127.0.0.1:5000/prod/**", "127.0.0.1:5000/prod/a/b"},
		{"*/app", "reg/app"},
		{"reg/a?c", "reg/a/c"},
		{"***", "a/b"},
		{"**/x*", "a/b/xy"},
		{"a*a*a*b", "aaaaaaaaaaaa"},
		{"reg/[ab].+", "reg/[ab].+"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 64 || len(name) > 128 {
			return
		}
		got := compileGlob(pattern).match(name)
		if want := refMatch(pattern, name); got != want {
			t.Fatalf("glob %q match %q = %v, reference says %v", pattern, name, got, want)
		}
		// A pattern without wildcards matches only itself.
		if !strings.ContainsAny(pattern, "*?") && got != (pattern == name) {
			t.Fatalf("literal pattern %q match %q = %v", pattern, name, got)
		}
	})
}

func FuzzNormalizeReference(f *testing.F) {
	for _, seed := range []string{
		"alpine", "docker.io/x", "127.0.0.1:5000/interop/app:v1",
		"reg.example/a/b@sha256:" + digestOf("x").Hex, "[::1]:5000/app", "UPPER/x",
		"reg.example/../x", "http://reg/x", "reg.example:/x", "a..b/c", "doCKer.io/0",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		got, err := NormalizeReference(ref)
		if err != nil {
			return
		}
		if strings.ContainsAny(got, "@ \t\n") || !strings.Contains(got, "/") {
			t.Fatalf("NormalizeReference(%q) = %q: not a bare repository", ref, got)
		}
		again, err := NormalizeReference(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeReference(%q) = %q, then %q, %v: not idempotent", ref, got, again, err)
		}
		tagged, err := NormalizeReference(got + ":v1")
		if err != nil || tagged != got {
			t.Fatalf("NormalizeReference(%q) = %q, %v: tag not stripped", got+":v1", tagged, err)
		}
	})
}

package verifier

import (
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
)

func TestNormalizeReference(t *testing.T) {
	tests := []struct {
		ref, want string
	}{
		{"alpine", "index.docker.io/library/alpine"},
		{"alpine:3.20", "index.docker.io/library/alpine"},
		{"docker.io/alpine", "index.docker.io/library/alpine"},
		{"docker.io/library/alpine", "index.docker.io/library/alpine"},
		{"index.docker.io/library/alpine", "index.docker.io/library/alpine"},
		{"docker.io/x", "index.docker.io/library/x"},
		{"user/app", "index.docker.io/user/app"},
		{"127.0.0.1:5000/interop/app", "127.0.0.1:5000/interop/app"},
		{"127.0.0.1:5000/interop/app:v1", "127.0.0.1:5000/interop/app"},
		{"127.0.0.1:5000/interop/app@sha256:" + digestOf("x").Hex, "127.0.0.1:5000/interop/app"},
		{"127.0.0.1:5000/interop/app:v1@sha256:" + digestOf("x").Hex, "127.0.0.1:5000/interop/app"},
		{"localhost/app", "localhost/app"},
		{"localhost:5000/a/b/c", "localhost:5000/a/b/c"},
		{"Registry.Example.com/team/app", "registry.example.com/team/app"},
		{"doCKer.io/0", "index.docker.io/library/0"},
		{"INDEX.docker.io/x", "index.docker.io/library/x"},
		{"[::1]:5000/app", "[::1]:5000/app"},
		{"reg.example/a.b/c_d/e__f/g--h", "reg.example/a.b/c_d/e__f/g--h"},
	}
	for _, tt := range tests {
		got, err := NormalizeReference(tt.ref)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeReference(%q) = %q, %v; want %q", tt.ref, got, err, tt.want)
		}
	}
}

func TestNormalizeReferenceRejectsJunk(t *testing.T) {
	for _, ref := range []string{
		"",
		"http://127.0.0.1:5000/app",
		"https://reg.example/app",
		"UPPER/app",
		"reg.example/App",
		"reg.example//app",
		"reg.example/app/",
		"reg.example/../app",
		"reg.example/a/./b",
		"reg.example/.app",
		"reg.example/app-",
		"reg.example/a___b",
		"reg.example/a..b",
		"user@reg.example/app",
		"reg.example:/app",
		"reg.example:99999999/app",
		"reg.example:50a/app",
		"-reg.example/app",
		"reg..example/app",
		"reg_example.com/app",
		"reg.example/app@sha256:abc",
		"reg.example/app@md5:00",
		"reg.example/app:",
		"reg.example/app\n",
		"reg.example/a pp",
		"[::1/app",
		"[zz]:5000/app",
		string(make([]byte, 2000)),
	} {
		if got, err := NormalizeReference(ref); err == nil {
			t.Errorf("NormalizeReference(%q) = %q, want an error", ref, got)
		}
	}
}

func TestCheckIdentity(t *testing.T) {
	img := Image{Registry: "mirror.local:5050", Repository: "interop/app", Digest: digestOf("x")}
	hub := Image{Registry: "index.docker.io", Repository: "library/alpine", Digest: digestOf("x")}
	remap := func(prefix, signed string) *Policy {
		return &Policy{Remap: &Remap{Prefix: prefix, SignedPrefix: signed}}
	}
	simple := sigstore.Signature{Format: sigstore.FormatSimpleSigning}
	bundle := sigstore.Signature{Format: sigstore.FormatBundle}
	tests := []struct {
		name   string
		policy *Policy
		img    Image
		sig    sigstore.Signature
		ref    string
		want   bool
		hint   bool // the refusal suggests a remap
	}{
		{"same repository", &Policy{}, img, simple, "mirror.local:5050/interop/app", true, false},
		{"with tag", &Policy{}, img, simple, "mirror.local:5050/interop/app:v1", true, false},
		{"other repository", &Policy{}, img, simple, "mirror.local:5050/interop/other", false, false},
		{"repository prefix is not enough", &Policy{}, img, simple, "mirror.local:5050/interop/app2", false, false},
		{"other registry", &Policy{}, img, simple, "127.0.0.1:5000/interop/app", false, true},
		{"remapped registry", remap("mirror.local:5050", "127.0.0.1:5000"), img, simple, "127.0.0.1:5000/interop/app", true, false},
		{"remap replaces the pulled name", remap("mirror.local:5050", "127.0.0.1:5000"), img, simple, "mirror.local:5050/interop/app", false, false},
		{"remap on a segment boundary only", remap("mirror.local:505", "127.0.0.1:5000"), img, simple, "127.0.0.1:5000/interop/app", false, false},
		{"remap with namespace", remap("mirror.local:5050/interop", "127.0.0.1:5000/signed"), img, simple, "127.0.0.1:5000/signed/app", true, false},
		{"remap not matching keeps the name", remap("other.local", "127.0.0.1:5000"), img, simple, "mirror.local:5050/interop/app", true, false},
		{"remap still checks the repository", remap("mirror.local:5050", "127.0.0.1:5000"), img, simple, "127.0.0.1:5000/interop/other", false, false},
		{"hub short name", &Policy{}, hub, simple, "alpine", true, false},
		{"hub docker.io", &Policy{}, hub, simple, "docker.io/library/alpine:3", true, false},
		{"hub remapped from a mirror", remap("docker.io/library", "quay.io/mirror"),
			hub, simple, "quay.io/mirror/alpine", true, false},
		{"empty reference in simple signing", &Policy{}, img, simple, "", false, false},
		{"malformed reference", &Policy{}, img, simple, "not a reference", false, false},
		{"bundle without reference", &Policy{}, img, bundle, "", true, false},
		{"bundle with reference still checked", &Policy{}, img, bundle, "127.0.0.1:5000/x/y", false, false},
		{"identity any", &Policy{Identity: IdentityAny}, img, simple, "elsewhere.example/a", true, false},
		{"pulled name malformed", &Policy{}, Image{Registry: "Bad Host", Repository: "x"}, simple, "x", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			detail, ok := checkIdentity(tt.policy, tt.img, tt.sig, sigstore.Claims{Reference: tt.ref})
			if ok != tt.want {
				t.Fatalf("checkIdentity = %v (%s), want %v", ok, detail, tt.want)
			}
			if !ok && detail == "" {
				t.Error("refusal without a detail")
			}
			if hint := strings.Contains(detail, "remap prefix"); hint != tt.hint {
				t.Errorf("detail %q: remap hint %v, want %v", detail, hint, tt.hint)
			}
		})
	}
}

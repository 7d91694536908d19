package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosign-dev/cosign/verifier"
)

// keyDir writes a generated public key as keys/prod.pub under a new
// directory and returns the directory and the PEM.
func keyDir(t testing.TB) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	k := newTestKey(t)
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "prod.pub"), k.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, k.pem
}

func TestExampleConfigParses(t *testing.T) {
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := rootDir(t)
	optional := strings.NewReplacer("#remap:", "remap:", "#annotations:", "annotations:").Replace(string(example))
	for _, block := range []string{"#trustedRoots:", "#keyless:", "#attestations:", "#signature:"} {
		optional = uncomment(t, optional, block)
	}
	for _, tc := range []struct {
		name string
		yaml string
	}{
		{"as shipped", string(example)},
		{"with the optional lines uncommented", optional},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != "127.0.0.1:5050" || len(cfg.Upstreams) != 1 || cfg.DefaultUpstream != "127.0.0.1:5000" ||
				len(cfg.Policies) != 2 || cfg.DefaultAllow || cfg.Cache.Size != 10000 || cfg.Cache.TTL != time.Hour ||
				cfg.Cache.NegativeTTL != 30*time.Second || cfg.Cache.ManifestBytes != 64<<20 || cfg.UpstreamTimeout != 30*time.Second {
				t.Fatalf("parsed %+v", cfg)
			}
			prod := cfg.Policies[0]
			if prod.Name != "prod" || len(prod.Keys) != 1 || prod.Threshold != 1 || prod.Mode != verifier.ModeEnforce ||
				prod.Identity != verifier.IdentityRepository || prod.Children != verifier.ChildrenInherit {
				t.Fatalf("policy %+v", prod)
			}
			if strings.Contains(tc.name, "uncommented") &&
				(prod.Remap == nil || prod.Remap.SignedPrefix != "registry.example.com/prod" || prod.Annotations["env"] != "prod" ||
					prod.Keyless == nil || prod.Keyless.TrustedRoot == nil || prod.Keyless.TrustedRoot.Name != "public-good" ||
					len(prod.Keyless.Identities) != 2 || prod.Keyless.Identities[1].SubjectRegExp != `^[a-z]+@acme\.com$` ||
					len(prod.Attestations) != 1 ||
					prod.Attestations[0].Predicate["runDetails.builder.id"] != "https://github.com/actions/runner/github-hosted" ||
					prod.SignatureOptional) {
				t.Fatalf("optional fields not parsed: %+v", prod)
			}
			if !strings.Contains(tc.name, "uncommented") && (prod.Keyless != nil || prod.Attestations != nil) {
				t.Fatalf("the example as shipped has keyless or attestations on: %+v", prod)
			}
			if cfg.Policies[1].Mode != verifier.ModeWarn || len(cfg.Policies[1].Match) != 2 {
				t.Fatalf("policy %+v", cfg.Policies[1])
			}
			if _, err := New(cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// uncomment removes the '#' of the commented-out YAML block of text that
// starts with the line first (after its indentation): that line and the
// lines after it, at the same indentation, that are YAML ("#key:" or
// "#  nested") rather than prose ("# words").
func uncomment(t testing.TB, text, first string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		if strings.TrimLeft(line, " ") != first && !strings.HasPrefix(strings.TrimLeft(line, " "), first+" ") {
			continue
		}
		for j := i; j < len(lines); j++ {
			rest, ok := strings.CutPrefix(lines[j], indent+"#")
			if !ok || rest == "" || (j > i && strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "  ")) {
				break
			}
			lines[j] = indent + rest
		}
		return strings.Join(lines, "\n")
	}
	t.Fatalf("no line %q to uncomment", first)
	return ""
}

// a minimal valid configuration; bad-config cases edit it.
const baseConfig = `listen: 127.0.0.1:5050
upstreams:
  - registry: 127.0.0.1:5000
    url: http://127.0.0.1:5000
policies:
  - name: prod
    match: ["127.0.0.1:5000/prod/**"]
    keys: [keys/prod.pub]
`

func TestConfigDefaults(t *testing.T) {
	dir, pem := keyDir(t)
	inline := strings.Replace(baseConfig, "keys: [keys/prod.pub]", "keys:\n      - |\n"+indent(string(pem), "        "), 1)
	for name, yaml := range map[string]string{"key file": baseConfig, "inline PEM": inline} {
		t.Run(name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(yaml), "c.yaml", dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Policies[0].Keys) != 1 || cfg.Policies[0].Mode != verifier.ModeEnforce || cfg.DefaultAllow {
				t.Fatalf("parsed %+v", cfg.Policies[0])
			}
			full := cfg.withDefaults()
			if full.DefaultUpstream != "127.0.0.1:5000" || full.Cache.Size != DefaultCacheSize || full.Cache.ManifestBytes != DefaultManifestBytes {
				t.Fatalf("defaults %+v", full)
			}
		})
	}
	t.Run("manifestBytes 0 keeps none", func(t *testing.T) {
		cfg, err := ParseConfig([]byte(baseConfig+"cache: {manifestBytes: 0}\n"), "c.yaml", dir)
		if err != nil {
			t.Fatal(err)
		}
		if full := cfg.withDefaults(); full.Cache.ManifestBytes >= 0 {
			t.Fatalf("manifestBytes %d", full.Cache.ManifestBytes)
		}
	})
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

func TestBadConfigsReportFileAndLine(t *testing.T) {
	dir, _ := keyDir(t)
	if err := os.WriteFile(filepath.Join(dir, "keys", "junk.pub"), []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) string {
		if !strings.Contains(baseConfig, old) {
			t.Fatalf("base config lacks %q", old)
		}
		return strings.Replace(baseConfig, old, new, 1)
	}
	for _, tc := range []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"empty file", "", 0, "empty configuration"},
		{"syntax error", "listen: [\n", 1, "YAML"},
		{"not a mapping", "- a\n", 1, "must be a mapping"},
		{"unknown top-level key", baseConfig + "lisen: x\n", 9, `unknown key "lisen"`},
		{"unknown policy key", baseConfig + "    treshold: 1\n", 9, `unknown key "treshold"`},
		{"unknown upstream key", replace("    url: http://127.0.0.1:5000\n", "    url: http://127.0.0.1:5000\n    insecure: true\n"), 5, `unknown key "insecure"`},
		{"duplicate key", baseConfig + "listen: 127.0.0.1:1\n", 9, "appears twice"},
		{"alias", replace("listen: 127.0.0.1:5050", "listen: &l 127.0.0.1:5050") + "defaultUpstream: *l\n", 9, "aliases"},
		{"second document", baseConfig + "---\nlisten: x\n", 9, "second YAML document"},
		{"bad listen", replace("listen: 127.0.0.1:5050", "listen: nonsense"), 1, "listen address"},
		{"no upstreams", "listen: 127.0.0.1:5050\n", 1, "no upstreams"},
		{"empty upstreams", replace("upstreams:\n  - registry: 127.0.0.1:5000\n    url: http://127.0.0.1:5000\n", "upstreams: []\n"), 2, "non-empty list"},
		{"upstream without url", replace("    url: http://127.0.0.1:5000\n", ""), 3, "url is missing"},
		{"upstream url with a path", replace("url: http://127.0.0.1:5000", "url: http://127.0.0.1:5000/v2"), 4, "no path"},
		{"upstream url ftp", replace("url: http://127.0.0.1:5000", "url: ftp://127.0.0.1:5000"), 4, "scheme"},
		{"upstream url with credentials", replace("url: http://127.0.0.1:5000", "url: http://u:p@127.0.0.1:5000"), 4, "credentials"},
		{"registry without dot or port", replace("registry: 127.0.0.1:5000", "registry: prod"), 3, "needs a '.'"},
		{"upper-case registry", replace("registry: 127.0.0.1:5000", "registry: Reg.example"), 3, "lower-case"},
		{"duplicate upstream", replace("upstreams:\n", "upstreams:\n  - {registry: 127.0.0.1:5000, url: http://127.0.0.1:5001}\n"), 4, "listed twice"},
		{"defaultUpstream names nothing", baseConfig + "defaultUpstream: 127.0.0.1:6000\n", 9, "names no upstream"},
		{"policy without name", replace("  - name: prod\n", "  -\n"), 7, "name is missing"},
		{"duplicate policy name", baseConfig + "  - name: prod\n    match: [x]\n    mode: allow\n", 9, "used twice"},
		{"policy without match", replace(`    match: ["127.0.0.1:5000/prod/**"]`+"\n", ""), 6, "match needs at least one"},
		{"empty match list", replace(`["127.0.0.1:5000/prod/**"]`, "[]"), 6, "match needs at least one"},
		{"empty pattern", replace(`["127.0.0.1:5000/prod/**"]`, `[""]`), 7, "is empty"},
		{"match not a list", replace(`["127.0.0.1:5000/prod/**"]`, `{a: b}`), 7, "must be a list"},
		{"bad mode", baseConfig + "    mode: enforcing\n", 9, `mode "enforcing": want enforce or warn or allow`},
		{"enforce without keys", replace("    keys: [keys/prod.pub]\n", ""), 6, "needs at least one key"},
		{"missing key file", replace("keys/prod.pub", "keys/none.pub"), 8, "key file"},
		{"junk key file", replace("keys/prod.pub", "keys/junk.pub"), 8, "junk.pub"},
		{"junk inline PEM", replace("keys: [keys/prod.pub]", `keys: ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]`), 8, "inline PEM"},
		{"same key twice", replace("keys: [keys/prod.pub]", "keys: [keys/prod.pub, ./keys/prod.pub]"), 8, "the same key"},
		{"threshold above keys", baseConfig + "    threshold: 2\n", 9, "threshold 2"},
		{"threshold zero", baseConfig + "    threshold: 0\n", 9, "threshold 0"},
		{"threshold not a number", baseConfig + "    threshold: one\n", 9, "must be an integer"},
		{"bad identity mode", baseConfig + "    identity: {mode: repo}\n", 9, `identity.mode "repo"`},
		{"remap without signedPrefix", baseConfig + "    identity: {remap: {prefix: a.example}}\n", 9, "both prefix and signedPrefix"},
		{"remap with identity any", baseConfig + "    identity: {mode: any, remap: {prefix: a.example, signedPrefix: b.example}}\n", 9, "only applies"},
		{"remap the verifier refuses", baseConfig + "    identity: {remap: {prefix: a.example/, signedPrefix: b.example}}\n", 6, "remap prefix"},
		{"bad children", baseConfig + "    children: all\n", 9, `children "all"`},
		{"annotations not a mapping", baseConfig + "    annotations: [a]\n", 9, "mapping of strings"},
		{"annotation value not a string", baseConfig + "    annotations: {a: [b]}\n", 9, "must be a string"},
		{"bad defaultPolicy", baseConfig + "defaultPolicy: maybe\n", 9, `defaultPolicy "maybe"`},
		{"bad ttl", baseConfig + "cache: {ttl: 1 hour}\n", 9, "not a duration"},
		{"negative ttl", baseConfig + "cache:\n  negativeTTL: -5s\n", 10, "must be positive"},
		{"cache size zero", baseConfig + "cache: {size: 0}\n", 9, "cache.size 0"},
		{"unknown cache key", baseConfig + "cache: {sise: 5}\n", 9, `unknown key "sise"`},
		{"negative manifestBytes", baseConfig + "cache: {manifestBytes: -1}\n", 9, "manifestBytes -1"},
		{"bad upstreamTimeout", baseConfig + "upstreamTimeout: soon\n", 9, "upstreamTimeout"},
		{"null value", baseConfig + "defaultUpstream: ~\n", 9, "must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "proxy.yaml", dir)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *ConfigError", err, err)
			}
			prefix := "proxy.yaml: "
			if tc.line > 0 {
				prefix = "proxy.yaml:" + strconv.Itoa(tc.line) + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix %q and %q", err, prefix, tc.want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
	dir, _ := keyDir(t)
	path := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(path, []byte(baseConfig+"#"+strings.Repeat("x", maxConfigSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized config: %v", err)
	}
}

func TestNewValidatesConfigBuiltInCode(t *testing.T) {
	k := newTestKey(t)
	good := func() *Config {
		return &Config{
			Upstreams: []Upstream{{Registry: "127.0.0.1:5000", URL: "http://127.0.0.1:5000"}},
			Policies:  []*verifier.Policy{{Name: "p", Match: []string{"**"}, Keys: nil, Mode: verifier.ModeAllow}},
		}
	}
	if _, err := New(good()); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Config){
		"nil policies keys in enforce": func(c *Config) { c.Policies[0].Mode = verifier.ModeEnforce },
		"no upstreams":                 func(c *Config) { c.Upstreams = nil },
		"bad url":                      func(c *Config) { c.Upstreams[0].URL = "127.0.0.1:5000" },
		"bad default":                  func(c *Config) { c.DefaultUpstream = "x.example" },
		"bad listen":                   func(c *Config) { c.Listen = "5050" },
		"duplicate upstream": func(c *Config) {
			c.Upstreams = append(c.Upstreams, c.Upstreams[0])
		},
		"threshold above keys": func(c *Config) {
			c.Policies[0].Mode, c.Policies[0].Keys, c.Policies[0].Threshold = verifier.ModeEnforce, append(c.Policies[0].Keys, k.pub), 2
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := good()
			edit(c)
			if _, err := New(c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	dir, _ := rootDir(f)
	f.Add([]byte(baseConfig))
	f.Add([]byte(keylessConfig))
	f.Add([]byte(keylessBase))
	if example, err := os.ReadFile("../config.example.yaml"); err == nil {
		f.Add(example)
	}
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("upstreams: [{registry: a.b, url: 'http://a.b'}]\npolicies: [{name: n, match: ['**'], mode: allow}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "fuzz.yaml", dir)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		if _, err := New(cfg); err != nil {
			t.Fatalf("ParseConfig accepted a config New refuses: %v", err)
		}
	})
}

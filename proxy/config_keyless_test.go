package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosign-dev/cosign/verifier"
)

const publicGoodRoot = "../sigstore/testdata/public-good/trusted_root.json"

// rootDir is keyDir with the public-good trusted root copied to
// roots/public-good.json; it returns the directory and the root's bytes.
func rootDir(t testing.TB) (string, []byte) {
	t.Helper()
	dir, _ := keyDir(t)
	b, err := os.ReadFile(publicGoodRoot)
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, filepath.Join(dir, "roots", "public-good.json"), b)
	return dir, b
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// keylessConfig has a policy with keys and two identity entries requiring
// two attestations, and one admitting on an attestation alone; the trusted
// root is defined after the policies that name it.
const keylessConfig = `upstreams:
  - registry: 127.0.0.1:5000
    url: http://127.0.0.1:5000
policies:
  - name: prod
    match: ["127.0.0.1:5000/prod/**"]
    keys: [keys/prod.pub]
    keyless:
      trustedRoot: public-good
      identities:
        - issuer: https://token.actions.githubusercontent.com
          subject: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main
        - issuerRegExp: '^https://accounts\.google\.com$'
          subjectRegExp: '^[a-z]+@acme\.com$'
    threshold: 3
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        predicate:
          runDetails.builder.id: https://github.com/actions/runner/github-hosted
          buildDefinition.resolvedDependencies.0.digest.gitCommit: "0123abcd"
      - predicateType: https://example.com/test-result/v1
        predicate:
          passed: true
          failures: 0
          coverage: 0.85
          retries: -2
          build: "12"
          waiver: null
          day: 2024-01-02
  - name: attested
    match: ["127.0.0.1:5000/attested/**"]
    keyless:
      trustedRoot: public-good
      identities:
        - {issuer: https://token.actions.githubusercontent.com, subjectRegExp: '^https://github\.com/acme/'}
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
    signature: false
trustedRoots:
  public-good: roots/public-good.json
`

func TestConfigKeylessAndAttestationsLoad(t *testing.T) {
	dir, rootJSON := rootDir(t)
	path := filepath.Join(dir, "proxy.yaml")
	writeFileAtomic(t, path, []byte(keylessConfig))
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Policies) != 2 {
		t.Fatalf("%d policies", len(cfg.Policies))
	}
	prod, attested := cfg.Policies[0], cfg.Policies[1]

	if prod.Keyless == nil || attested.Keyless == nil {
		t.Fatalf("keyless not parsed: %+v, %+v", prod, attested)
	}
	root := prod.Keyless.TrustedRoot
	if root == nil || root.Name != "public-good" || root.Digest != sha256Digest(rootJSON) || root.Material == nil || !root.RequiresSCT() {
		t.Fatalf("trusted root %+v, want public-good with digest %s", root, sha256Digest(rootJSON))
	}
	if attested.Keyless.TrustedRoot != root {
		t.Error("two policies naming one trusted root got two parses of it")
	}
	if want := []verifier.Identity{
		{Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"},
		{IssuerRegExp: `^https://accounts\.google\.com$`, SubjectRegExp: `^[a-z]+@acme\.com$`},
	}; !reflect.DeepEqual(prod.Keyless.Identities, want) {
		t.Errorf("identities %#v, want %#v", prod.Keyless.Identities, want)
	}
	if len(prod.Keys) != 1 || prod.Threshold != 3 || prod.SignatureOptional || prod.Mode != verifier.ModeEnforce {
		t.Errorf("prod: keys %d, threshold %d, signature optional %v, mode %s", len(prod.Keys), prod.Threshold, prod.SignatureOptional, prod.Mode)
	}
	wantAtt := []verifier.AttestationRule{
		{PredicateType: "https://slsa.dev/provenance/v1", Predicate: map[string]any{
			"runDetails.builder.id":                                   "https://github.com/actions/runner/github-hosted",
			"buildDefinition.resolvedDependencies.0.digest.gitCommit": "0123abcd",
		}},
		{PredicateType: "https://example.com/test-result/v1", Predicate: map[string]any{
			"passed":   true,
			"failures": int64(0),
			"coverage": 0.85,
			"retries":  int64(-2),
			"build":    "12",
			"waiver":   nil,
			"day":      "2024-01-02",
		}},
	}
	if !reflect.DeepEqual(prod.Attestations, wantAtt) {
		t.Errorf("attestations %#v,\nwant %#v", prod.Attestations, wantAtt)
	}

	if len(attested.Keys) != 0 || !attested.SignatureOptional || attested.Threshold != 0 {
		t.Errorf("attested: keys %d, signature optional %v, threshold %d", len(attested.Keys), attested.SignatureOptional, attested.Threshold)
	}
	if want := []verifier.AttestationRule{{PredicateType: "https://slsa.dev/provenance/v1"}}; !reflect.DeepEqual(attested.Attestations, want) {
		t.Errorf("attested attestations %#v", attested.Attestations)
	}
	if want := []verifier.Identity{{Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: `^https://github\.com/acme/`}}; !reflect.DeepEqual(attested.Keyless.Identities, want) {
		t.Errorf("attested identities %#v", attested.Keyless.Identities)
	}

	rootPath := filepath.Join(dir, "roots", "public-good.json")
	if files := cfg.Files(); !slices.Contains(files, rootPath) || !slices.Contains(files, filepath.Join(dir, "keys", "prod.pub")) {
		t.Errorf("files %v lack the trusted root or the key: a change of them would not reload", files)
	}
	if _, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		t.Fatalf("New refuses what LoadConfig accepted: %v", err)
	}
}

func TestConfigPredicateValuesKeepTheirYAMLType(t *testing.T) {
	dir, _ := rootDir(t)
	for _, tc := range []struct {
		yaml string
		want any
	}{
		{"7", int64(7)},
		{"-0", int64(0)},
		{"0x10", int64(16)},
		{"9223372036854775807", int64(9223372036854775807)},
		{"1.5", 1.5},
		{"1e3", 1000.0},
		{"-0.25", -0.25},
		{"true", true},
		{"false", false},
		{"null", nil},
		{"~", nil},
		{`"7"`, "7"},
		{"'true'", "true"},
		{"yes", "yes"}, // YAML 1.2: a string, as in JSON
		{"v1.2.3", "v1.2.3"},
		{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			yaml := baseConfig + "    attestations:\n      - predicateType: t\n        predicate: {a.b: " + tc.yaml + "}\n"
			cfg, err := ParseConfig([]byte(yaml), "c.yaml", dir)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := cfg.Policies[0].Attestations[0].Predicate["a.b"]
			if !ok || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("%s parsed as %#v (%T), want %#v (%T)", tc.yaml, got, got, tc.want, tc.want)
			}
		})
	}
}

// keylessBase is a valid configuration whose one policy has a keyless
// signer and no key; bad-config cases edit it.
const keylessBase = `upstreams:
  - registry: 127.0.0.1:5000
    url: http://127.0.0.1:5000
trustedRoots:
  public-good: roots/public-good.json
policies:
  - name: prod
    match: ["127.0.0.1:5000/prod/**"]
    keyless:
      trustedRoot: public-good
      identities:
        - issuer: https://token.actions.githubusercontent.com
          subject: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main
`

func TestConfigKeylessBase(t *testing.T) {
	dir, _ := rootDir(t)
	cfg, err := ParseConfig([]byte(keylessBase), "c.yaml", dir)
	if err != nil {
		t.Fatalf("keys are optional with keyless: %v", err)
	}
	if p := cfg.Policies[0]; len(p.Keys) != 0 || p.Keyless == nil || len(p.Keyless.Identities) != 1 || p.Keyless.TrustedRoot == nil {
		t.Fatalf("policy %+v", p)
	}
}

func TestBadKeylessConfigsReportFileAndLine(t *testing.T) {
	dir, rootJSON := rootDir(t)
	writeFileAtomic(t, filepath.Join(dir, "roots", "empty.json"), []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	writeFileAtomic(t, filepath.Join(dir, "roots", "junk.json"), []byte("not json"))
	writeFileAtomic(t, filepath.Join(dir, "roots", "big.json"), append(bytes.Repeat([]byte(" "), 4<<20), rootJSON...))
	replace := func(old, new string) string {
		if !strings.Contains(keylessBase, old) {
			t.Fatalf("base config lacks %q", old)
		}
		return strings.Replace(keylessBase, old, new, 1)
	}
	const (
		issuer  = "        - issuer: https://token.actions.githubusercontent.com\n"
		subject = "          subject: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\n"
	)
	// identity replaces the one identity entry (line 12).
	identity := func(fields string) string { return replace(issuer+subject, "        - "+fields+"\n") }
	// policy appends lines to the policy (from line 14).
	policy := func(lines string) string { return keylessBase + lines }
	att := func(lines string) string { return policy("    attestations:\n" + lines) }
	for _, tc := range []struct {
		name, yaml string
		line       int
		want       string
	}{
		// trusted roots
		{"unknown trusted root", replace("trustedRoot: public-good", "trustedRoot: staging"), 10, `keyless.trustedRoot "staging" names no trusted root (have public-good)`},
		{"no trustedRoots at all", replace("trustedRoots:\n  public-good: roots/public-good.json\n", ""), 8, `names no trusted root (none is defined`},
		{"missing root file", replace("roots/public-good.json", "roots/none.json"), 5, "trustedRoots.public-good"},
		{"root file not JSON", replace("roots/public-good.json", "roots/junk.json"), 5, "junk.json"},
		{"root without Fulcio CA", replace("roots/public-good.json", "roots/empty.json"), 5, "Fulcio"},
		{"root file too large", replace("roots/public-good.json", "roots/big.json"), 5, "the limit is"},
		{"root is a directory", replace("roots/public-good.json", "roots"), 5, "trustedRoots.public-good"},
		{"trustedRoots not a mapping", replace("  public-good: roots/public-good.json\n", "  - roots/public-good.json\n"), 5, "must be a mapping"},
		{"root name twice", replace("  public-good: roots/public-good.json\n", "  public-good: roots/public-good.json\n  public-good: roots/public-good.json\n"), 6, "appears twice"},
		{"root name with a space", replace("  public-good: roots/public-good.json\n", "  public-good: roots/public-good.json\n  'a b': roots/public-good.json\n"), 6, "contains spaces"},
		{"root path null", replace("public-good: roots/public-good.json", "public-good: ~"), 5, "must be a string"},
		{"alias in trustedRoots", replace("  public-good: roots/public-good.json\n", "  public-good: &r roots/public-good.json\n  other: *r\n"), 6, "aliases"},

		// keyless
		{"keyless without trustedRoot", replace("      trustedRoot: public-good\n", ""), 10, "trustedRoot is missing"},
		{"keyless without identities", replace("      identities:\n"+issuer+subject, ""), 10, "identities needs at least one"},
		{"empty identities", replace("      identities:\n"+issuer+subject, "      identities: []\n"), 11, "identities needs at least one"},
		{"identities not a list", replace("      identities:\n"+issuer+subject, "      identities: {issuer: a, subject: b}\n"), 11, "must be a list"},
		{"keyless not a mapping", replace("    keyless:\n      trustedRoot: public-good\n      identities:\n"+issuer+subject, "    keyless: public-good\n"), 9, "must be a mapping"},
		{"unknown keyless key", policy("      rekor: https://rekor.sigstore.dev\n"), 14, `unknown key "rekor" in policies[0].keyless`},
		{"unknown identity key", policy("          email: a@b.c\n"), 14, `unknown key "email" in policies[0].keyless.identities[0]`},
		{"issuer and issuerRegExp", identity("{issuer: a, issuerRegExp: b, subject: c}"), 12, "issuer or issuerRegExp, not both"},
		{"neither issuer", identity("{subject: c}"), 12, "needs issuer"},
		{"subject and subjectRegExp", identity("{issuer: a, subject: c, subjectRegExp: d}"), 12, "subject or subjectRegExp, not both"},
		{"neither subject", identity("{issuer: a}"), 12, "needs subject"},
		{"empty issuer", identity("{issuer: '', subject: c}"), 12, "issuer is empty"},
		{"bad issuerRegExp", identity("{issuerRegExp: '(', subject: c}"), 12, "issuerRegExp: not a Go (RE2) regular expression"},
		{"lookbehind is not RE2", identity("\n          issuer: a\n          subjectRegExp: '(?<=x)y'"), 14, "subjectRegExp: not a Go (RE2) regular expression"},
		{"same identity twice", replace(subject, subject+issuer+subject), 14, "the same identity as at line 12"},
		{"identity not a mapping", identity("https://token.actions.githubusercontent.com"), 12, "must be a mapping"},

		// signers and threshold
		{"neither keys nor keyless", replace("    keyless:\n      trustedRoot: public-good\n      identities:\n"+issuer+subject, ""), 7, "needs at least one key (keys) or certificate identity (keyless)"},
		{"threshold above signers", policy("    threshold: 2\n"), 14, "threshold 2: want 1 to the number of signers, 1 (0 keys and 1 keyless identities)"},
		{"threshold above keys and identities", policy("    keys: [keys/prod.pub]\n    threshold: 3\n"), 15, "threshold 3: want 1 to the number of signers, 2"},

		// attestations
		{"signature false without attestations", policy("    signature: false\n"), 14, "signature: false admits on attestations alone"},
		{"signature not a boolean", policy("    signature: no\n"), 14, "signature must be true or false"},
		{"attestations empty", policy("    attestations: []\n"), 14, "non-empty list"},
		{"attestations not a list", policy("    attestations: {predicateType: x}\n"), 14, "non-empty list"},
		{"attestation without predicateType", att("      - predicate: {a: b}\n"), 15, "predicateType is missing"},
		{"empty predicateType", att("      - predicateType: ''\n"), 15, "predicateType is empty"},
		{"duplicate predicateType", att("      - predicateType: https://slsa.dev/provenance/v1\n      - predicateType: https://slsa.dev/provenance/v1\n"), 16, `predicateType "https://slsa.dev/provenance/v1" is listed twice (first at line 15)`},
		{"unknown attestation key", att("      - predicateType: t\n        type: t\n"), 16, `unknown key "type" in policies[0].attestations[0]`},
		{"predicate not a mapping", att("      - predicateType: t\n        predicate: [a]\n"), 16, "mapping of dotted paths"},
		{"predicate empty", att("      - predicateType: t\n        predicate: {}\n"), 16, "non-empty mapping"},
		{"predicate value a list", att("      - predicateType: t\n        predicate:\n          a: [b]\n"), 17, "must be a string, a number, true, false or null"},
		{"predicate value a mapping", att("      - predicateType: t\n        predicate:\n          a: {b: c}\n"), 17, "not a list or a mapping"},
		{"predicate value NaN", att("      - predicateType: t\n        predicate:\n          a: .nan\n"), 17, "not a JSON number"},
		{"predicate value infinite", att("      - predicateType: t\n        predicate:\n          a: -.inf\n"), 17, "not a JSON number"},
		{"predicate integer past int64", att("      - predicateType: t\n        predicate:\n          a: 9223372036854775808\n"), 17, "does not fit a 64-bit integer"},
		{"predicate value binary", att("      - predicateType: t\n        predicate:\n          a: !!binary aGk=\n"), 17, "!!binary"},
		{"predicate value alias", att("      - predicateType: &t t\n        predicate:\n          a: *t\n"), 17, "aliases"},
		{"empty path", att("      - predicateType: t\n        predicate:\n          '': x\n"), 17, "path is empty"},
		{"null path", att("      - predicateType: t\n        predicate:\n          ~: x\n"), 17, "must be a string"},
		{"path with an empty segment", att("      - predicateType: t\n        predicate:\n          runDetails..id: x\n"), 17, `path "runDetails..id" has an empty segment`},
		{"path starting with a dot", att("      - predicateType: t\n        predicate:\n          .id: x\n"), 17, "empty segment"},
		{"path ending with a dot", att("      - predicateType: t\n        predicate:\n          id.: x\n"), 17, "empty segment"},
		{"path twice", att("      - predicateType: t\n        predicate:\n          a.b: x\n          a.b: y\n"), 18, `path "a.b" appears twice (first at line 17)`},
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
			prefix := "proxy.yaml:" + strconv.Itoa(tc.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q,\nwant prefix %q and %q", err, prefix, tc.want)
			}
		})
	}
}

func TestCheckValidatesKeylessAndAttestations(t *testing.T) {
	dir, _ := rootDir(t)
	writeFileAtomic(t, filepath.Join(dir, "roots", "junk.json"), []byte("{}"))
	cfgPath := filepath.Join(dir, "proxy.yaml")
	for _, tc := range []struct {
		name, yaml string
		want       string // "" for a configuration that loads
	}{
		{"good", keylessConfig, ""},
		{"keyless only", keylessBase, ""},
		{"unknown root", strings.Replace(keylessBase, "trustedRoot: public-good", "trustedRoot: staging", 1), "proxy.yaml:10:"},
		{"junk root", strings.Replace(keylessBase, "roots/public-good.json", "roots/junk.json", 1), "proxy.yaml:5:"},
		{"bad regexp", strings.Replace(keylessConfig, `'^[a-z]+@acme\.com$'`, `'[a-z'`, 1), "proxy.yaml:14:"},
		{"signature false alone", strings.Replace(keylessConfig, "    attestations:\n      - predicateType: https://slsa.dev/provenance/v1\n    signature: false\n", "    signature: false\n", 1), "proxy.yaml:36:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFileAtomic(t, cfgPath, []byte(tc.yaml))
			err := Check(cfgPath)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error at %s", err, tc.want)
			}
		})
	}
}

// TestReloadPicksUpAChangedTrustedRoot runs the watcher Run runs: a new
// trusted root file is put in force, with a new policy fingerprint, and a
// broken one is refused while the one in force stays.
func TestReloadPicksUpAChangedTrustedRoot(t *testing.T) {
	dir, rootJSON := rootDir(t)
	cfgPath, rootPath := filepath.Join(dir, "proxy.yaml"), filepath.Join(dir, "roots", "public-good.json")
	writeFileAtomic(t, cfgPath, []byte(keylessBase))
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	reload := make(chan struct{})
	go func() {
		defer close(done)
		srv.watch(ctx, RunOptions{ConfigPath: cfgPath, Reload: reload, PollInterval: 20 * time.Millisecond}, cfg.Files())
	}()
	t.Cleanup(func() { cancel(); <-done })
	// A reload on signal first: once it is logged, the watcher has taken
	// the files' stamps, and the change below cannot slip in before.
	reload <- struct{}{}
	eventually(t, "the reload on signal", func() bool { return strings.Contains(logText(logs), "trigger=signal") })

	inForce := func() *verifier.Policy { return srv.state.Load().cfg.Policies[0] }
	before := inForce()
	if !before.Keyless.TrustedRoot.RequiresSCT() || before.Keyless.TrustedRoot.Digest != sha256Digest(rootJSON) {
		t.Fatalf("root in force %+v", before.Keyless.TrustedRoot)
	}

	// The same root without its CT logs: a private Sigstore's.
	var doc map[string]any
	if err := json.Unmarshal(rootJSON, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "ctlogs")
	noCT, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, rootPath, noCT)
	eventually(t, "the changed trusted root in force", func() bool {
		return inForce().Keyless.TrustedRoot.Digest == sha256Digest(noCT)
	})
	after := inForce()
	if after.Keyless.TrustedRoot.RequiresSCT() {
		t.Error("the root without CT logs still requires SCTs")
	}
	if !strings.Contains(logText(logs), rootPath+" changed") {
		t.Errorf("the reload does not name the root file:\n%s", logText(logs))
	}
	if before.Fingerprint() == after.Fingerprint() {
		t.Error("the policy fingerprint did not change with the trusted root: cached decisions made with the old root would stand")
	}

	// A broken root file: refused, logged, the root in force stays.
	writeFileAtomic(t, rootPath, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	eventually(t, "the broken root refused", func() bool {
		return strings.Contains(logText(logs), "configuration not reloaded")
	})
	if got := inForce().Keyless.TrustedRoot.Digest; got != sha256Digest(noCT) {
		t.Errorf("after a broken root file the root in force is %s, want the previous %s", got, sha256Digest(noCT))
	}
	if !strings.Contains(logText(logs), "proxy.yaml:5:") {
		t.Errorf("the refused reload does not point at the trustedRoots line:\n%s", logText(logs))
	}
}

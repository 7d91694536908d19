package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// slsaPredicate is a small SLSA v1 provenance predicate.
const slsaPredicate = `{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{"repo":"x"}},` +
	`"runDetails":{"builder":{"id":"https://example.com/builder"}}}`

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// printedStatement is one line verify-attestation prints: a DSSE envelope,
// with its statement decoded.
type printedStatement struct {
	PayloadType string
	Statement   struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
}

// parseEnvelopes reads verify-attestation's stdout: one DSSE envelope per
// line, {"payload","payloadType","signatures":[{"sig"}]}.
func parseEnvelopes(t *testing.T, out string) []printedStatement {
	t.Helper()
	var got []printedStatement
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var env struct {
			Payload     string `json:"payload"`
			PayloadType string `json:"payloadType"`
			Signatures  []struct {
				Sig string `json:"sig"`
			} `json:"signatures"`
		}
		if err := json.Unmarshal(sc.Bytes(), &env); err != nil || len(env.Signatures) != 1 || env.Signatures[0].Sig == "" {
			t.Fatalf("line %q is not a DSSE envelope with one signature (%v)", sc.Text(), err)
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		p := printedStatement{PayloadType: env.PayloadType}
		if err := json.Unmarshal(payload, &p.Statement); err != nil {
			t.Fatalf("payload %s: %v", payload, err)
		}
		got = append(got, p)
	}
	return got
}

// attLayerCount counts the layers of the image's .att manifest (0 if none).
func attLayerCount(t *testing.T, repo string, d v1.Hash) int {
	t.Helper()
	return tagLayers(t, repo, sigstore.AttestationTag(d))
}

func TestAttestThenVerifyAttestation(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"legacy", "bundle"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			reg, dir := testRegistry(t), t.TempDir()
			repo := reg + "/team/app"
			d := pushImage(t, repo+":v1")
			key, pub := keyPair(t, dir, "k", "pw")
			_, otherPub := keyPair(t, dir, "other", "")
			pred := writeFile(t, dir, "provenance.json", slsaPredicate)
			env := map[string]string{passwordEnv: "pw"}
			args := []string{"attest", "--key", key, "--type", "slsaprovenance1", "--predicate", pred, repo + ":v1"}
			if format == "bundle" {
				args = append(args, "--bundle")
			}
			mustRun(t, env, "", args...)
			wantLayers := 1
			if format == "bundle" {
				wantLayers = 0
			}
			if n := attLayerCount(t, repo, d); n != wantLayers {
				t.Errorf("%d .att layers, want %d", n, wantLayers)
			}
			if n := sigLayers(t, repo, d); n != 0 {
				t.Errorf("attest wrote %d .sig layers", n)
			}

			out := mustRun(t, nil, "", "verify-attestation", "--key", pub, "--type", "slsaprovenance1", repo+":v1")
			got := parseEnvelopes(t, out)
			if len(got) != 1 {
				t.Fatalf("verify-attestation printed %d attestations, want 1:\n%s", len(got), out)
			}
			st := got[0].Statement
			if got[0].PayloadType != sigstore.InTotoPayloadType || st.Type != "https://in-toto.io/Statement/v1" ||
				st.PredicateType != "https://slsa.dev/provenance/v1" || len(st.Subject) != 1 ||
				st.Subject[0].Name != repo || st.Subject[0].Digest["sha256"] != d.Hex || string(st.Predicate) != slsaPredicate {
				t.Errorf("verified statement %+v: want Statement/v1 about %s@%s with the predicate file", st, repo, d)
			}
			// By URI, as by short name.
			mustRun(t, nil, "", "verify-attestation", "--key", pub, "--type", "https://slsa.dev/provenance/v1", repo+"@"+d.String())

			stdout, stderr, code := run(t, nil, "", "verify-attestation", "--key", pub, "--type", "spdxjson", repo+":v1")
			if code != 1 || stdout != "" || !strings.Contains(stderr, "attestation missing: https://spdx.dev/Document") {
				t.Errorf("another type: exit %d, stdout %q, stderr %q; want 1 and attestation missing", code, stdout, stderr)
			}
			stdout, stderr, code = run(t, nil, "", "verify-attestation", "--key", otherPub, "--type", "slsaprovenance1", repo+":v1")
			if code != 1 || stdout != "" || !strings.Contains(stderr, "attestation missing: https://slsa.dev/provenance/v1") ||
				!strings.Contains(stderr, "1 attestation of this type found, none verified with the given key") {
				t.Errorf("another key: exit %d, stdout %q, stderr %q; want 1, nothing printed, the one found named", code, stdout, stderr)
			}
			// An attestation is no signature.
			if _, stderr, code := run(t, nil, "", "verify", "--key", pub, repo+":v1"); code != 1 {
				t.Errorf("verify on an image with only an attestation: exit %d, %q; want 1", code, stderr)
			}
		})
	}
}

func TestAttestWithoutTypeIsCosignsCustom(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	pushImage(t, repo+":v1")
	key, pub := keyPair(t, dir, "k", "")
	pred := writeFile(t, dir, "p.json", `{"note": "hello"}`)
	mustRun(t, nil, "", "attest", "--key", key, "--predicate", pred, repo+":v1")
	got := parseEnvelopes(t, mustRun(t, nil, "", "verify-attestation", "--key", pub, repo+":v1"))
	if len(got) != 1 {
		t.Fatalf("%d attestations, want 1", len(got))
	}
	var p struct {
		Data      string
		Timestamp string
	}
	if err := json.Unmarshal(got[0].Statement.Predicate, &p); err != nil || p.Data != `{"note": "hello"}` || p.Timestamp == "" ||
		got[0].Statement.PredicateType != sigstore.PredicateCustom {
		t.Errorf("custom statement %+v (%v): want cosign's {Data, Timestamp} of type %s", got[0].Statement, err, sigstore.PredicateCustom)
	}
}

func TestAttestConcurrentlyKeepsEveryAttestation(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	pred := writeFile(t, dir, "p.json", slsaPredicate)
	const n = 8
	pubs := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		key, pub := keyPair(t, dir, fmt.Sprintf("k%d", i), "")
		pubs[i] = pub
		wg.Go(func() {
			if _, stderr, code := run(t, nil, "", "attest", "--key", key, "--type", "slsaprovenance1", "--predicate", pred, repo+":v1"); code != 0 {
				errs <- fmt.Sprintf("attest %d: exit %d, %s", i, code, stderr)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := attLayerCount(t, repo, d); got != n {
		t.Errorf("%d .att layers after %d concurrent attests, want all %d", got, n, n)
	}
	for i, pub := range pubs {
		if _, stderr, code := run(t, nil, "", "verify-attestation", "--key", pub, "--type", "slsaprovenance1", repo+":v1"); code != 0 {
			t.Errorf("attestation %d lost: %s", i, stderr)
		}
	}
}

func TestAttestRefusesBadPredicates(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	key, _ := keyPair(t, dir, "k", "")
	for _, tc := range []struct{ name, content, want string }{
		{"an array", `[1]`, "not a JSON object"},
		{"not JSON", `hello`, "predicate"},
		{"duplicate keys", `{"a":1,"a":2}`, `"a"`},
		{"empty", ``, "empty"},
		{"too large", `{"x":"` + strings.Repeat("a", maxPredicateSize) + `"}`, "larger than"},
		// Within the file limit, but its envelope (base64) would be larger
		// than verifiers read.
		{"envelope too large", `{"x":"` + strings.Repeat("a", 900<<10) + `"}`, "more than the 1048576 verifiers read"},
	} {
		pred := writeFile(t, dir, "bad.json", tc.content)
		_, stderr, code := run(t, nil, "", "attest", "--key", key, "--type", "spdxjson", "--predicate", pred, repo+":v1")
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, %q; want 1 and %q", tc.name, code, stderr, tc.want)
		}
	}
	big := writeFile(t, dir, "big.json", `{"x":"`+strings.Repeat("a", 900<<10)+`"}`)
	if _, stderr, code := run(t, nil, "", "attest", "--key", key, "--bundle", "--predicate", big, repo+":v1"); code != 1 ||
		!strings.Contains(stderr, "its signed bundle would be") {
		t.Errorf("--bundle with a predicate too large for verifiers: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, nil, "", "attest", "--key", key, "--predicate", filepath.Join(dir, "missing.json"), repo+":v1"); code != 1 ||
		!strings.Contains(stderr, "no such file") {
		t.Errorf("missing predicate file: exit %d, %q", code, stderr)
	}
	if n := attLayerCount(t, repo, d); n != 0 {
		t.Errorf("refused predicates still wrote %d .att layers", n)
	}
	if sigs, err := (&registryFlags{}).signatures(t.Context(), mustDigest(t, repo, d)); err != nil || len(sigs) != 0 {
		t.Errorf("refused predicates still wrote %d referrers (%v)", len(sigs), err)
	}
}

func TestAttestNoUploadPrintsAndWritesNothing(t *testing.T) {
	t.Parallel()
	reg, dir := testRegistry(t), t.TempDir()
	repo := reg + "/app"
	d := pushImage(t, repo+":v1")
	key, _ := keyPair(t, dir, "k", "")
	pred := writeFile(t, dir, "p.json", slsaPredicate)
	out := mustRun(t, nil, "", "attest", "--key", key, "--type", "slsaprovenance1", "--predicate", pred, "--no-upload", repo+":v1")
	if got := parseEnvelopes(t, out); len(got) != 1 || got[0].Statement.Subject[0].Digest["sha256"] != d.Hex {
		t.Errorf("--no-upload printed %q, want the envelope of a statement about %s", out, d)
	}
	out = mustRun(t, nil, slsaPredicate, "attest", "--key", key, "--type", "slsaprovenance1", "--predicate", "-", "--no-upload", "--bundle", repo+":v1")
	s := sigstore.SignatureFromBundle([]byte(strings.TrimSpace(out)), "stdout")
	if s.Err != nil || !strings.Contains(string(s.Payload), d.Hex) {
		t.Errorf("--no-upload --bundle printed %q (%v), want a bundle about %s", out, s.Err, d)
	}
	if n := attLayerCount(t, repo, d); n != 0 {
		t.Errorf("--no-upload wrote %d .att layers", n)
	}
	if sigs, err := (&registryFlags{}).signatures(t.Context(), mustDigest(t, repo, d)); err != nil || len(sigs) != 0 {
		t.Errorf("--no-upload --bundle wrote %d referrers (%v)", len(sigs), err)
	}
}

func mustDigest(t *testing.T, repo string, d v1.Hash) name.Digest {
	t.Helper()
	nd, err := name.NewDigest(repo + "@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	return nd
}

func TestAttestAndVerifyFlagMisuse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := writeFile(t, dir, "trusted_root.json", "{}")
	const img = "127.0.0.1:1/x"
	id := []string{"--certificate-identity", "ci@example.com", "--certificate-oidc-issuer", "https://issuer.example"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"attest without --predicate", []string{"attest", "--key", "k", img}, "--predicate is required"},
		{"attest with an unknown type", []string{"attest", "--key", "k", "--predicate", "p", "--type", "slsa", img}, "--type"},
		{"attest without an image", []string{"attest", "--key", "k", "--predicate", "p"}, "expected one image reference"},
		{"verify-attestation without a signer", []string{"verify-attestation", "--type", "spdxjson", img}, "give --key PUB, or --certificate-identity"},
		{"verify-attestation with an unknown type", []string{"verify-attestation", "--key", "k", "--type", "nonsense", img}, "--type"},
		{"verify without a signer", []string{"verify", img}, "give --key PUB"},
		{"verify with key and identity", append([]string{"verify", "--key", "k", "--trusted-root", root, img}, id...), "alternatives"},
		{"verify with identity and its regexp", append([]string{"verify", "--certificate-identity-regexp", ".*", "--trusted-root", root, img}, id...),
			"one of --certificate-identity and --certificate-identity-regexp"},
		{"verify with issuer and its regexp", append([]string{"verify", "--certificate-oidc-issuer-regexp", ".*", "--trusted-root", root, img}, id...),
			"one of --certificate-oidc-issuer and --certificate-oidc-issuer-regexp"},
		{"verify without a subject", []string{"verify", "--certificate-oidc-issuer", "https://i", "--trusted-root", root, img},
			"needs --certificate-identity or --certificate-identity-regexp"},
		{"verify without an issuer", []string{"verify", "--certificate-identity", "a@b", "--trusted-root", root, img},
			"needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp"},
		{"verify without a trusted root", append([]string{"verify", img}, id...), "needs --trusted-root"},
		{"verify with a bad regexp", []string{"verify", "--certificate-identity-regexp", "a(", "--certificate-oidc-issuer", "https://i",
			"--trusted-root", root, img}, "--certificate-identity-regexp"},
		{"verify keyless with -signature", append([]string{"verify", "--trusted-root", root, "-signature", "s", img}, id...), "-signature"},
		{"verify-attestation without a trusted root", append([]string{"verify-attestation", "--type", "spdxjson", img}, id...), "needs --trusted-root"},
	}
	for _, tt := range tests {
		stdout, stderr, code := run(t, nil, "", tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", tt.name, code, stdout, stderr, tt.want)
		}
	}
	// Well-formed flags, bad files: exit 1 with what is wrong.
	_, stderr, code := run(t, nil, "", append([]string{"verify", "--trusted-root", root, img}, id...)...)
	if code != 1 || !strings.Contains(stderr, "trusted root") {
		t.Errorf("verify with an empty trusted root: exit %d, %q; want 1 naming the trusted root", code, stderr)
	}
	_, stderr, code = run(t, nil, "", append([]string{"verify", "--trusted-root", filepath.Join(dir, "none.json"), img}, id...)...)
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("verify with a missing trusted root: exit %d, %q", code, stderr)
	}
	for _, cmd := range []string{"attest", "verify-attestation"} {
		stdout, _, code := run(t, nil, "", cmd, "-h")
		if code != 0 || !strings.Contains(stdout, "Usage: cosign "+cmd) || !strings.Contains(stdout, "slsaprovenance1") {
			t.Errorf("%s -h: exit %d, %q", cmd, code, stdout)
		}
	}
}

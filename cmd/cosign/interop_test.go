package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/sigstore"
)

// Interoperability with the real sigstore cosign v3.1.2: what our attest
// writes must verify with its verify-attestation, and what its attest
// writes (legacy .att layers and bundle referrers) with ours.

// sigstoreCosign returns the path of the real sigstore cosign: the
// SIGSTORE_COSIGN variable (make test-deps builds the binary and the
// Makefile sets it). Unset or not executable, the test fails under CI=true
// and is skipped loudly elsewhere.
func sigstoreCosign(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SIGSTORE_COSIGN")
	msg := "SIGSTORE_COSIGN is not set: run make test-deps, or set it to a sigstore cosign v3.1.2 binary"
	if bin != "" {
		st, err := os.Stat(bin)
		if err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return bin
		}
		msg = fmt.Sprintf("SIGSTORE_COSIGN=%q is not an executable file (%v)", bin, err)
	}
	if ci, err := strconv.ParseBool(os.Getenv("CI")); err == nil && ci {
		t.Fatalf("CI=true and %s", msg)
	}
	line := strings.Repeat("!", 78)
	t.Logf("\n%s\n!! SKIPPING %s: %s\n%s", line, t.Name(), msg, line)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(tty, "\n%s\n!! SKIPPING %s: %s\n%s\n", line, t.Name(), msg, line)
		tty.Close()
	}
	t.Skip(msg)
	return ""
}

// realCosign runs the real sigstore cosign in dir with an empty HOME and
// Docker configuration, and returns its stdout, stderr and exit code.
func realCosign(t *testing.T, bin, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append([]string{"HOME=" + home, "DOCKER_CONFIG=" + home, "PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running %s: %v", bin, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// layout is what a format stores for one attestation, with the parts that
// vary (digests, sizes, signatures, times) left out.
type layout struct {
	// Manifest is the .att manifest's media type and config media type,
	// or the referrer's media type, artifact type and config media type.
	Manifest []string
	// Layers are each layer's media type and annotation keys.
	Layers [][]string
	// Annotations are the referrer manifest's annotations (keys, with the
	// predicate type and content values).
	Annotations []string
}

// attLayout reads the .att manifest of d in repo.
func attLayout(t *testing.T, repo string, d v1.Hash) layout {
	t.Helper()
	img, err := remote.Image(mustTag(t, repo+":"+sigstore.AttestationTag(d)))
	if err != nil {
		t.Fatalf("reading the .att manifest: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var l layout
	l.Manifest = []string{string(m.MediaType), string(m.Config.MediaType)}
	for _, layer := range m.Layers {
		l.Layers = append(l.Layers, annotated(string(layer.MediaType), layer.Annotations))
	}
	return l
}

// referrerLayout reads the bundle referrers of d in repo, through the
// referrers tag (the in-memory registry has no referrers API).
func referrerLayout(t *testing.T, repo string, d v1.Hash) layout {
	t.Helper()
	idx, err := remote.Index(mustTag(t, repo+":"+sigstore.ReferrersTag(d)))
	if err != nil {
		t.Fatalf("reading the referrers tag: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%d referrers, want 1", len(im.Manifests))
	}
	dg, err := name.NewDigest(repo + "@" + im.Manifests[0].Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(dg)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest != d {
		t.Errorf("referrer subject %v, want %s", m.Subject, d)
	}
	var l layout
	l.Manifest = []string{string(m.MediaType), m.ArtifactType, string(m.Config.MediaType)}
	for _, layer := range m.Layers {
		l.Layers = append(l.Layers, annotated(string(layer.MediaType), layer.Annotations))
	}
	for k, v := range m.Annotations {
		switch k {
		case "org.opencontainers.image.created":
			continue // cosign stamps the time; this cosign leaves it out, so that a manifest is reproducible
		case "dev.sigstore.bundle.content", "dev.sigstore.bundle.predicateType":
			l.Annotations = append(l.Annotations, k+"="+v)
		default:
			l.Annotations = append(l.Annotations, k)
		}
	}
	slices.Sort(l.Annotations)
	return l
}

// annotated is a media type followed by sorted annotation keys, with the
// predicateType value.
func annotated(mediaType string, ann map[string]string) []string {
	var keys []string
	for k, v := range ann {
		if k == sigstore.PredicateTypeAnnotation {
			k += "=" + v
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return append([]string{mediaType}, keys...)
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func TestInteropAttestationsWithSigstoreCosign(t *testing.T) {
	bin := sigstoreCosign(t)
	reg, dir := testRegistry(t), t.TempDir()
	const password = "interop"
	pwEnv := []string{"COSIGN_PASSWORD=" + password}
	if _, stderr, code := realCosign(t, bin, dir, pwEnv, "generate-key-pair"); code != 0 {
		t.Fatalf("cosign generate-key-pair: exit %d: %s", code, stderr)
	}
	theirKey, theirPub := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	ourKey, ourPub := keyPair(t, dir, "ours", "")
	_, otherPub := keyPair(t, dir, "other", "")
	pred := writeFile(t, dir, "provenance.json", slsaPredicate)
	ourEnv := map[string]string{passwordEnv: password}

	formats := []struct {
		name      string
		ourFlag   []string // our attest
		theirFlag string   // their attest and verify-attestation
		layout    func(t *testing.T, repo string, d v1.Hash) layout
	}{
		{"legacy", nil, "--new-bundle-format=false", attLayout},
		{"bundle", []string{"--bundle"}, "--new-bundle-format=true", referrerLayout},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			// Ours, with cosign's ECDSA key and with our Ed25519 key, verified
			// by the real cosign.
			for _, k := range []struct{ name, key, pub string }{{"ecdsa", theirKey, theirPub}, {"ed25519", ourKey, ourPub}} {
				repo := fmt.Sprintf("%s/ours-%s-%s", reg, f.name, k.name)
				d := pushImage(t, repo+":v1")
				mustRun(t, ourEnv, "", append([]string{"attest", "--key", k.key, "--type", "slsaprovenance1", "--predicate", pred, repo + ":v1"}, f.ourFlag...)...)
				out, stderr, code := realCosign(t, bin, dir, nil, "verify-attestation", "--key", k.pub, "--insecure-ignore-tlog=true",
					"--type", "slsaprovenance1", f.theirFlag, "--allow-insecure-registry", repo+":v1")
				if code != 0 {
					t.Fatalf("sigstore cosign refuses our %s attestation (%s key): exit %d\n%s", f.name, k.name, code, stderr)
				}
				got := parseEnvelopes(t, out)
				if len(got) != 1 || got[0].Statement.Subject[0].Digest["sha256"] != d.Hex || got[0].Statement.PredicateType != sigstore.PredicateSLSA1 {
					t.Errorf("sigstore cosign printed %+v, want our statement about %s", got, d)
				}
				if _, _, code := realCosign(t, bin, dir, nil, "verify-attestation", "--key", k.pub, "--insecure-ignore-tlog=true",
					"--type", "spdxjson", f.theirFlag, "--allow-insecure-registry", repo+":v1"); code == 0 {
					t.Errorf("sigstore cosign verifies our %s SLSA attestation as spdxjson", f.name)
				}
			}

			// The real cosign's, verified by ours.
			repo := fmt.Sprintf("%s/theirs-%s", reg, f.name)
			d := pushImage(t, repo+":v1")
			if _, stderr, code := realCosign(t, bin, dir, pwEnv, "attest", "--key", "cosign.key", "--type", "slsaprovenance1",
				"--predicate", pred, "--tlog-upload=false", f.theirFlag, "--use-signing-config=false", "--yes",
				"--allow-insecure-registry", repo+":v1"); code != 0 {
				t.Fatalf("sigstore cosign attest: exit %d\n%s", code, stderr)
			}
			out, stderr, code := run(t, nil, "", "verify-attestation", "--key", theirPub, "--type", "slsaprovenance1", repo+":v1")
			if code != 0 {
				t.Fatalf("we refuse sigstore cosign's %s attestation: exit %d\n%s", f.name, code, stderr)
			}
			got := parseEnvelopes(t, out)
			if len(got) != 1 || got[0].Statement.Type != "https://in-toto.io/Statement/v0.1" ||
				got[0].Statement.Subject[0].Digest["sha256"] != d.Hex || got[0].Statement.PredicateType != sigstore.PredicateSLSA1 {
				t.Errorf("we printed %+v, want sigstore cosign's statement about %s", got, d)
			}
			if _, stderr, code := run(t, nil, "", "verify-attestation", "--key", otherPub, "--type", "slsaprovenance1", repo+":v1"); code != 1 {
				t.Errorf("another key verifies sigstore cosign's %s attestation: exit %d, %s", f.name, code, stderr)
			}
			if _, stderr, code := run(t, nil, "", "verify-attestation", "--key", theirPub, "--type", "spdxjson", repo+":v1"); code != 1 ||
				!strings.Contains(stderr, "attestation missing: https://spdx.dev/Document") {
				t.Errorf("sigstore cosign's SLSA attestation as spdxjson: exit %d, %s", code, stderr)
			}

			// Same layout, up to digests, sizes, signatures and cosign's
			// creation time.
			oursRepo := fmt.Sprintf("%s/ours-%s-ecdsa", reg, f.name)
			oursDigest, err := remote.Head(mustTag(t, oursRepo+":v1"))
			if err != nil {
				t.Fatal(err)
			}
			theirs, ours := f.layout(t, repo, d), f.layout(t, oursRepo, oursDigest.Digest)
			if len(theirs.Layers) != 1 || len(theirs.Manifest) < 2 {
				t.Fatalf("sigstore cosign's %s layout %v: want one layer", f.name, theirs)
			}
			t.Logf("%s layout: %v", f.name, theirs)
			if fmt.Sprint(theirs) != fmt.Sprint(ours) {
				t.Errorf("%s layout differs:\nsigstore cosign: %v\nours:            %v", f.name, theirs, ours)
			}
		})
	}
}

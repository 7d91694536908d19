package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyAdmitsSigstoreCosignAttestations: attestations written by the
// real sigstore cosign v3.1.2 with a key, in its legacy .att format and as
// a v3 bundle referrer, into a real docker-registry, gate pulls through the
// proxy: containerd and skopeo pull an image that carries SLSA provenance
// from the named builder, and not one without it or with another builder's.
func TestProxyAdmitsSigstoreCosignAttestations(t *testing.T) {
	Require(t, "docker-registry", "containerd", "ctr", "skopeo")
	real := SigstoreCosign(t)
	bin := BuildBinary(t)
	reg := StartRegistry(t)
	dir := t.TempDir()

	env := []string{"COSIGN_PASSWORD=interop", "HOME=" + dir}
	runReal := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(real, args...)
		cmd.Dir = dir
		cmd.Env = append(cmd.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sigstore cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	runReal("generate-key-pair")

	provenance := func(builder string) string {
		p := filepath.Join(dir, strings.NewReplacer(":", "_", "/", "_").Replace(builder)+".json")
		writeFile(t, p, fmt.Sprintf(`{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1","externalParameters":{}},"runDetails":{"builder":{"id":%q}}}`, builder))
		return p
	}
	const builder = "https://github.com/actions/runner/github-hosted"
	attest := func(image, predicate string, bundle bool) {
		t.Helper()
		runReal("attest", "--key", "cosign.key", "--type", "slsaprovenance1", "--predicate", predicate,
			"--tlog-upload=false", fmt.Sprintf("--new-bundle-format=%v", bundle), "--use-signing-config=false",
			"--allow-insecure-registry", "--yes", image)
	}
	images := map[string]string{}
	for _, name := range []string{"legacy", "bundle", "none", "other-builder"} {
		ref := reg + "/attest/" + name + ":v1"
		d := PushRandomImage(t, ref)
		images[name] = reg + "/attest/" + name + "@" + d.String()
	}
	attest(images["legacy"], provenance(builder), false)
	attest(images["bundle"], provenance(builder), true)
	attest(images["other-builder"], provenance("https://evil.example/builder"), false)

	config := fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
policies:
  - name: provenance
    match: ["%[1]s/attest/**"]
    keys: [%[2]s]
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        predicate:
          runDetails.builder.id: %[3]s
    signature: false
`, reg, filepath.Join(dir, "cosign.pub"), builder)
	p := startProxy(t, bin, dir, config)
	m := Mirror{Proxy: p.addr, Upstream: reg}
	clients := []Client{NewContainerdClient(t, m), NewSkopeoClient(t, m, SkopeoMirror)}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		admit bool
		want  string
	}{
		{"legacy", true, ""},
		{"bundle", true, ""},
		{"none", false, "attestation missing: https://slsa.dev/provenance/v1"},
		{"other-builder", false, "predicate condition failed: runDetails.builder.id"},
	} {
		for _, c := range clients {
			t.Run(tc.name+"/"+c.Name(), func(t *testing.T) {
				res, err := c.Pull(ctx, "attest/"+tc.name+":v1")
				if tc.admit && err != nil {
					t.Fatalf("refused an image with sigstore cosign's provenance: %v\n%s\nproxy log:\n%s", err, res.Output, p.proc.Output())
				}
				if !tc.admit && err == nil {
					t.Fatalf("admitted: %s", res.Output)
				}
				if !tc.admit {
					d := askProxy(t, p.addr, "GET", "attest/"+tc.name+":v1")
					if d.status != 403 || !strings.Contains(d.message, tc.want) {
						t.Errorf("proxy answered %d %s %q, want 403 naming %q", d.status, d.code, d.message, tc.want)
					}
				}
			})
		}
	}
	// sigstore cosign's verify-attestation reads the .att tag through the
	// proxy: the .att manifest is a signature artifact and passes unsigned.
	runReal("verify-attestation", "--key", "cosign.pub", "--type", "slsaprovenance1", "--insecure-ignore-tlog=true",
		"--allow-insecure-registry", p.addr+"/attest/legacy:v1")
}

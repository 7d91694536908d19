package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// concurrentSigners is how many cosign sign processes the concurrency tests
// start at once on one image.
const concurrentSigners = 16

// signConcurrently generates one key pair per signer, starts that many
// `cosign sign` processes at once on img (with extra flags), and fails the
// test unless every one exits 0. It returns the public key files.
func signConcurrently(t *testing.T, sh *Shell, img string, extra ...string) []string {
	t.Helper()
	sh.Set("COSIGN_PASSWORD", "")
	pubs := make([]string, concurrentSigners)
	for i := range pubs {
		prefix := fmt.Sprintf("signer%d", i)
		sh.MustRun(t, "", "generate-key-pair", "--output-key-prefix", prefix)
		pubs[i] = prefix + ".pub"
	}
	script := fmt.Sprintf(`
pids=()
for i in $(seq 0 %d); do
	cosign sign -key signer$i.key %s %s >out$i 2>err$i &
	pids+=($!)
done
failed=0
for i in $(seq 0 %d); do
	if ! wait ${pids[$i]}; then echo "signer $i: $(cat err$i)" >&2; failed=1; fi
done
exit $failed`, concurrentSigners-1, strings.Join(extra, " "), img, concurrentSigners-1)
	sh.MustScript(t, script)
	return pubs
}

// TestConcurrentSignersAllKept is the regression test for signatures lost
// when several signers append to one .sig manifest at once: every signer
// that exits 0 must find its signature there.
func TestConcurrentSignersAllKept(t *testing.T) {
	Require(t, "docker-registry", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	img := reg + "/concurrent/app:v1"
	d := PushRandomImage(t, img)

	pubs := signConcurrently(t, sh, img)
	if n := SignatureLayers(t, reg+"/concurrent/app", d); n != concurrentSigners {
		t.Errorf("%d signatures in the .sig manifest after %d concurrent signers, want all", n, concurrentSigners)
	}
	if n := len(parseDownload(t, sh.MustRun(t, "", "download", img))); n != concurrentSigners {
		t.Errorf("download printed %d signatures, want %d", n, concurrentSigners)
	}
	for _, pub := range pubs {
		sh.MustRun(t, "", "verify", "-key", pub, img)
	}
}

// TestConcurrentBundleSignersAllKept is the same with --bundle on a registry
// without the referrers API (distribution 2.8), where every bundle is listed
// in one index at the referrers tag.
func TestConcurrentBundleSignersAllKept(t *testing.T) {
	Require(t, "docker-registry", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	img := reg + "/concurrent/bundled:v1"
	PushRandomImage(t, img)

	pubs := signConcurrently(t, sh, img, "--bundle")
	if n := len(parseDownload(t, sh.MustRun(t, "", "download", img))); n != concurrentSigners {
		t.Errorf("download printed %d bundles, want %d", n, concurrentSigners)
	}
	for _, pub := range pubs {
		sh.MustRun(t, "", "verify", "-key", pub, img)
	}
}

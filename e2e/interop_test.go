package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/verifier"
)

// vectorRegistry is where sigstore cosign v3.1.2 signed the interop
// vectors (see /work/shared/interop/README.md): every payload names it.
const vectorRegistry = "127.0.0.1:5000"

// vectors are the digests of the interop dump.
type vectors struct {
	appV1, appV2, multi, unsigned v1.Hash
	children                      []string // of interop/multi:v1
}

// vectorDigests picks the digests out of what LoadVectors loaded, and the
// index's children from its manifest in the dump.
func vectorDigests(t *testing.T, lv *Vectors) vectors {
	t.Helper()
	hash := func(repo, tag string) v1.Hash {
		t.Helper()
		h, ok := lv.Tags[repo][tag]
		if !ok {
			t.Fatalf("the vectors have no %s:%s", repo, tag)
		}
		return h
	}
	v := vectors{
		appV1:    hash("interop/app", "v1"),
		appV2:    hash("interop/app", "v2"),
		multi:    hash("interop/multi", "v1"),
		unsigned: hash("interop/unsigned", "v1"),
	}
	raw, err := os.ReadFile(filepath.Join(lv.Dir, "manifests", v.multi.Algorithm+"-"+v.multi.Hex))
	if err != nil {
		t.Fatal(err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		t.Fatalf("interop/multi:v1 manifest: %v", err)
	}
	for _, m := range im.Manifests {
		v.children = append(v.children, m.Digest.String())
	}
	if len(v.children) == 0 {
		t.Fatal("interop/multi:v1 has no children")
	}
	return v
}

// interopProxyConfig is a proxy configuration for the vectors served from
// registry: one policy over interop/** with keys and threshold, identities
// remapped from the registry the vectors were signed against.
func interopProxyConfig(registry string, threshold int, keys ...string) string {
	keyList := ""
	for i, k := range keys {
		if i > 0 {
			keyList += ", "
		}
		keyList += k
	}
	identity := ""
	if registry != vectorRegistry {
		identity = fmt.Sprintf("    identity:\n      mode: repository\n      remap: {prefix: %q, signedPrefix: %q}\n", registry, vectorRegistry)
	}
	return fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
policies:
  - name: interop
    match: ["%[1]s/interop/**"]
    keys: [%[2]s]
    threshold: %[3]d
%[4]sdefaultPolicy: deny
`, registry, keyList, threshold, identity)
}

// interopRow is one pull of a vector through one proxy.
type interopRow struct {
	name     string
	path     string
	digest   v1.Hash
	admit    bool
	reason   verifier.Reason // a refusal's cause
	children []string        // an admitted index's children
	// craneOnly rows depend on what was pulled before (a child before its
	// index): crane, the first client, runs them.
	craneOnly bool
}

// TestProxyInteropVectors loads what the real sigstore cosign wrote into a
// real docker-registry and pulls it through `cosign proxy` with policies of
// the ECDSA key, of the Ed25519 key, and of both with threshold 2: each
// vector is admitted or refused as the interop README says.
func TestProxyInteropVectors(t *testing.T) {
	t.Parallel()
	bin := BuildBinary(t)
	registry := StartRegistry(t)
	lv := LoadVectors(t, registry)
	v := vectorDigests(t, lv)
	ecdsa, ed25519 := lv.Key("ecdsa.pub"), lv.Key("ed25519.pub")
	child := "interop/multi@" + v.children[0]
	childHash := parseHash(t, v.children[0])

	tests := []struct {
		name   string
		config string
		rows   []interopRow
		// real runs the rows with the external clients too.
		real bool
	}{
		{
			name:   "ecdsa",
			config: interopProxyConfig(registry, 1, ecdsa),
			real:   true,
			rows: []interopRow{
				{name: "child before its index refused", path: child, digest: childHash, reason: verifier.ReasonNoSignatures, craneOnly: true},
				{name: "app:v1 legacy ECDSA admitted", path: "interop/app:v1", digest: v.appV1, admit: true},
				{name: "app:v2 bundle admitted", path: "interop/app:v2", digest: v.appV2, admit: true},
				{name: "multi:v1 index admitted with children", path: "interop/multi:v1", digest: v.multi, admit: true, children: v.children},
				{name: "child after its index admitted", path: child, digest: childHash, admit: true},
				{name: "unsigned refused", path: "interop/unsigned:v1", digest: v.unsigned, reason: verifier.ReasonNoSignatures},
			},
		},
		{
			name:   "ed25519",
			config: interopProxyConfig(registry, 1, ed25519),
			rows: []interopRow{
				{name: "app:v1 legacy Ed25519ph admitted", path: "interop/app:v1", digest: v.appV1, admit: true},
				{name: "app:v2 ECDSA bundle refused", path: "interop/app:v2", digest: v.appV2, reason: verifier.ReasonUntrusted},
				{name: "multi:v1 ECDSA index refused", path: "interop/multi:v1", digest: v.multi, reason: verifier.ReasonUntrusted},
				{name: "child refused", path: child, digest: childHash, reason: verifier.ReasonNoSignatures},
				{name: "unsigned refused", path: "interop/unsigned:v1", digest: v.unsigned, reason: verifier.ReasonNoSignatures},
			},
		},
		{
			name:   "both keys threshold 2",
			config: interopProxyConfig(registry, 2, ecdsa, ed25519),
			rows: []interopRow{
				{name: "app:v1 signed by both admitted", path: "interop/app:v1", digest: v.appV1, admit: true},
				{name: "app:v2 one key refused", path: "interop/app:v2", digest: v.appV2, reason: verifier.ReasonBelowThreshold},
				{name: "multi:v1 one key refused", path: "interop/multi:v1", digest: v.multi, reason: verifier.ReasonBelowThreshold},
				{name: "unsigned refused", path: "interop/unsigned:v1", digest: v.unsigned, reason: verifier.ReasonNoSignatures},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, bin, t.TempDir(), tt.config)
			m := Mirror{Proxy: p.addr, Upstream: registry}
			clients := clientsNamed(t, "crane")
			if tt.real {
				clients = clientsNamed(t, "crane", "containerd", "skopeo-mirror")
			}
			for i, cm := range clients {
				// A client that cannot run here skips its own subtest only.
				t.Run(cm.name, func(t *testing.T) {
					c := cm.make(t, m)
					for _, row := range tt.rows {
						if i > 0 && row.craneOnly {
							continue
						}
						t.Run(row.name, func(t *testing.T) { checkInteropRow(t, c, p, row) })
					}
				})
			}
		})
	}
}

// checkInteropRow pulls one vector: admitted rows must hold the vector's
// digest, refused rows must show the proxy's DENIED message naming it.
func checkInteropRow(t *testing.T, c Client, p *runningProxy, row interopRow) {
	t.Helper()
	tc := gateCase{name: row.name, path: row.path, digest: row.digest, admit: row.admit, reason: row.reason, children: row.children}
	message := ""
	if !row.admit {
		message = expectDenied(t, p.addr, row.path, row.digest, row.reason)
	}
	checkPull(t, c, tc, message)
}

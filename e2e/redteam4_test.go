package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
)

// Red team 4: keyless signatures and attestations, attacked by someone who
// can push anything to the upstream registry and has an OIDC account of
// their own (genuine certificates, log entries and timestamps of the
// trusted Sigstore for an identity no policy names), but no trusted key and
// no certificate for a trusted identity. Each test fails while the attack
// works and passes once the proxy stops it. verifier/redteam_keyless_test.go
// has the same attacks without clients, and the ones that failed.

const (
	rt4Mallory = "mallory@evil.example"
	rt4Issuer  = "https://token.actions.githubusercontent.com"
	rt4Subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
)

// rt4Config is a proxy whose one policy trusts the GitHub workflow identity
// of the Sigstore whose root is root.json, on registry/prod/**. The
// upstream is reached at url (the registry itself, or a front).
const rt4Config = `listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[2]s
defaultUpstream: %[1]s
upstreamTimeout: 5s
trustedRoots:
  test: root.json
policies:
  - name: prod
    match: ["%[1]s/prod/**"]
    keyless:
      trustedRoot: test
      identities:
        - issuer: %[3]s
          subject: %[4]s
defaultPolicy: deny
`

// rt4JunkSigner "signs" for an RSA public key it has no private key for:
// random bytes below the modulus, which a verifier must exponentiate to
// reject.
type rt4JunkSigner struct{ pub *rsa.PublicKey }

func (j rt4JunkSigner) Public() crypto.PublicKey { return j.pub }

func (j rt4JunkSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	s := make([]byte, (j.pub.N.BitLen()+7)/8)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	s[0] = 0
	return s, nil
}

// rt4JunkTimestamp is a granted RFC 3161 response over sig made without any
// timestamp authority: its SignedData embeds a self-made certificate for a
// 65536-bit "RSA" key (any odd N) with exponent 2^31-1, and one signer
// whose signature fails, after about 120 ms of modular exponentiation.
func rt4JunkTimestamp(t testing.TB, sig []byte) []byte {
	t.Helper()
	const bits = 65536
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), bits))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	pub := &rsa.PublicKey{N: n, E: 1<<31 - 1}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not a timestamp authority"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sig)
	ts := timestamp.Timestamp{HashAlgorithm: crypto.SHA256, HashedMessage: h[:], Time: time.Now(), SerialNumber: big.NewInt(1),
		Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}, AddTSACertificate: true}
	resp, err := ts.CreateResponseWithOpts(cert, rt4JunkSigner{pub}, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// rt4JunkBundle is a genuine bundle of the attacker's own identity on the
// trusted Sigstore (for a digest of their own), with `junk` junk
// timestamps added to its genuine one.
func rt4JunkBundle(t testing.TB, s *sigstoretest.Sigstore, junk int) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte("mallory's own image"))
	raw, err := s.SignatureBundle(v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)},
		sigstoretest.Options{Identity: rt4Mallory, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		t.Fatal(err)
	}
	tok := rt4JunkTimestamp(t, pb.GetDsseEnvelope().GetSignatures()[0].GetSig())
	tv := pb.GetVerificationMaterial().GetTimestampVerificationData()
	for range junk {
		tv.Rfc3161Timestamps = append(tv.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: tok})
	}
	b, err := protojson.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// procCPU is the CPU time (user and system) process pid used so far.
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): state is field 3, utime 14, stime 15, in clock ticks.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// TestRedTeam4JunkKeylessReferrersStallASignedImage: an image signed
// correctly by the trusted identity (a Sigstore bundle referrer, cosign
// v3's default) gets 16 junk referrers from the attacker, listed before its
// own by the registry's referrers API (a front answers it here; on a real
// registry the attacker grinds referrer digests to sort first, and cannot
// be removed from the list). Each junk referrer is a genuine bundle of the
// attacker's own identity with 6 extra RFC 3161 timestamps that embed a
// self-made 65536-bit RSA certificate: sigstore-go verifies each
// timestamp's signature with the embedded key, ~120 ms apiece, before it
// looks at whose certificate it is. The proxy reads the first 16
// referrers, spends ~12 s of CPU on them, and when it asks for the next 16
// (the valid one among them) its lookup deadline has passed: the pull
// fails with 504, nothing is cached, and every pull of the image, by
// containerd here, fails the same way while burning the same CPU. 16
// referrers of 140 KiB are far within the documented bounds (1,000
// referrers, 32 MiB) up to which junk "costs reading, not a refusal".
//
// Safe: the signed image is served (its CPU cost is logged, not asserted).
func TestRedTeam4JunkKeylessReferrersStallASignedImage(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	const repo = "prod/app"
	ss, d, valid := rt4SignedImage(t, l, repo)

	// The junk: one bundle, respaced 16 ways (so 16 blobs, 16 referrers,
	// and no two alike for the verifier's per-lookup memo).
	base := rt4JunkBundle(t, ss, 6)
	self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(),
		Size: int64(len(manifestBytes(t, l.registry+"/"+repo+"@"+d.String())))}
	empty := l.raw.emptyConfig(repo)
	var junk []craftedDescriptor
	for i := range 16 {
		b := append([]byte("{"+strings.Repeat(" ", i)), base[1:]...)
		layer := l.raw.blob(repo, bundleType, b)
		e, _ := l.raw.manifestJSON(repo, "", craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
			ArtifactType: bundleType, Config: &empty, Layers: &[]craftedDescriptor{layer}, Subject: &self})
		e.ArtifactType = bundleType
		junk = append(junk, e)
	}
	apiPath := "/v2/" + repo + "/referrers/" + d.String()
	front := newUpstreamFront(t, l.registry, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != apiPath {
			return false
		}
		body, _ := json.Marshal(referrersIndex(append(append([]craftedDescriptor(nil), junk...), valid)))
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		_, _ = w.Write(body)
		return true
	})

	dir := rt4RootDir(t, ss)
	p := startProxy(t, l.bin, dir, fmt.Sprintf(rt4Config, l.registry, front.host(), rt4Issuer, rt4Subject))
	pid := p.proc.cmd.Process.Pid

	cpu0, start := procCPU(t, pid), time.Now()
	a := send(t, http.MethodGet, manifestURL(p.addr, repo, "v1"), "Accept", manifestAccept)
	cpu := procCPU(t, pid) - cpu0
	t.Logf("GET %s:v1 behind 16 junk referrers of %d bytes: %s after %v, proxy CPU %v",
		repo, len(base), a, time.Since(start).Round(time.Millisecond), cpu)
	if a.status != http.StatusOK {
		t.Errorf("GET %s:v1 (signed by the trusted identity, 16 junk keyless referrers ahead of its bundle) "+
			"was answered %s, want 200", repo, a)
	}
	// The CPU figure is logged, not asserted (a slow machine is no
	// finding): the junk is refused when parsed, before sigstore-go.
	if a.status == http.StatusOK {
		return // the rest shows what a client sees while the attack works
	}
	c := NewContainerdClient(t, Mirror{Proxy: p.addr, Upstream: l.registry})
	cpu0, start = procCPU(t, pid), time.Now()
	res, err := c.Pull(context.Background(), repo+":v1")
	t.Logf("ctr pull %s:v1: %v after %v, proxy CPU %v", repo, err, time.Since(start).Round(time.Millisecond), procCPU(t, pid)-cpu0)
	if err != nil {
		t.Errorf("ctr pull %s:v1 (correctly signed) failed through the proxy: %v\n%s", repo, err, lastLines(res.Output, 3))
	}
}

// procStatusKB is a "kB" line of /proc/<pid>/status (VmRSS, VmHWM), in
// bytes.
func procStatusKB(t testing.TB, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %q", pid, key, line)
			}
			return n << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

// TestRedTeam4ConcurrentLookupsHoldUnboundedMemory: each signature lookup
// may read 32 MiB of bundle referrers, and, when the policy requires
// attestations, another 32 MiB of .att envelopes (a budget of its own),
// and holds all of it, decoded once more (payload, and the PAE bytes a
// signature covers), until its decision: about 225 MB of the proxy's
// memory per lookup here. Nothing bounds how many lookups run at once:
// one client asking for 12 digests of its own at once (each with the same
// 33 one-MiB junk bundles as referrers and .att layers: 35 MB pushed once,
// then a few small manifests per digest) takes the proxy's resident
// memory to about 2.7 GB; a hundred such requests take more than this
// machine's 24 GiB.
//
// Safe: the memory held by concurrent lookups is bounded (requests past
// the bound wait, or get 503): here, 12 concurrent cold lookups raise the
// proxy's peak resident memory by at most 1 GiB.
func TestRedTeam4ConcurrentLookupsHoldUnboundedMemory(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	ss, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	const repo = "prod/app"
	// One genuine attestation of mallory's, 0.9 MiB: it parses, its log
	// entry and timestamp verify, its identity is refused.
	sum := sha256.Sum256([]byte("mallory's own image"))
	big, err := ss.AttestationBundle(v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}, "https://example.com/junk",
		map[string]any{"junk": strings.Repeat("A", 700<<10)}, sigstoretest.Options{Identity: rt4Mallory, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	const perDigest = 33 // 33 x 0.96 MB passes 32 MiB: each budget is used up
	empty := l.raw.emptyConfig(repo)
	layers := make([]craftedDescriptor, perDigest)
	for i := range layers {
		layers[i] = l.raw.blob(repo, bundleType, append([]byte("{"+strings.Repeat(" ", i)), big[1:]...))
	}
	var wg sync.WaitGroup
	const digests = 12
	for k := range digests {
		tag := "v" + strconv.Itoa(k)
		d := PushRandomImage(t, l.registry+"/"+repo+":"+tag)
		self := craftedDescriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(),
			Size: int64(len(manifestBytes(t, l.registry+"/"+repo+"@"+d.String())))}
		entries := make([]craftedDescriptor, perDigest)
		for i := range entries {
			wg.Go(func() {
				body, err := json.Marshal(craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
					ArtifactType: bundleType, Config: &empty, Layers: &[]craftedDescriptor{layers[i]}, Subject: &self})
				if err != nil {
					t.Error(err)
					return
				}
				e, err := l.raw.putManifest(repo, "", string(types.OCIManifestSchema1), body)
				if err != nil {
					t.Error(err)
					return
				}
				e.ArtifactType = bundleType
				entries[i] = e
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		ib, err := json.Marshal(referrersIndex(entries))
		if err != nil {
			t.Fatal(err)
		}
		l.raw.manifest(repo, "sha256-"+d.Hex, string(types.OCIImageIndex), ib)
		atts := make([]craftedDescriptor, perDigest)
		for i, b := range layers {
			atts[i] = craftedDescriptor{MediaType: "application/vnd.dsse.envelope.v1+json", Digest: b.Digest, Size: b.Size}
		}
		l.raw.manifestJSON(repo, "sha256-"+d.Hex+".att", craftedManifest{SchemaVersion: 2,
			MediaType: string(types.OCIManifestSchema1), Config: &empty, Layers: &atts})
	}

	dir := rt4RootDir(t, ss)
	cfg := strings.Replace(fmt.Sprintf(rt4Config, l.registry, l.registry, rt4Issuer, rt4Subject),
		"          subject: "+rt4Subject+"\n",
		"          subject: "+rt4Subject+"\n    attestations:\n      - predicateType: https://slsa.dev/provenance/v1\n", 1)
	cfg = strings.Replace(cfg, "upstreamTimeout: 5s", "upstreamTimeout: 60s", 1)
	p := startProxy(t, l.bin, dir, cfg)
	pid := p.proc.cmd.Process.Pid
	idle := procStatusKB(t, pid, "VmRSS")

	start := time.Now()
	answers := make([]httpAnswer, digests)
	for k := range digests {
		wg.Go(func() {
			answers[k] = send(t, http.MethodGet, manifestURL(p.addr, repo, "v"+strconv.Itoa(k)), "Accept", manifestAccept)
		})
	}
	wg.Wait()
	peak := procStatusKB(t, pid, "VmHWM")
	statuses := map[int]int{}
	for k, a := range answers {
		statuses[a.status]++
		if a.status == http.StatusOK {
			t.Errorf("%s:v%d (junk only) was admitted: %s", repo, k, a)
		}
	}
	t.Logf("%d concurrent cold GETs: answers %v in %v; proxy resident memory %d MiB idle, peak %d MiB",
		digests, statuses, time.Since(start).Round(time.Millisecond), idle>>20, peak>>20)
	if grew := peak - idle; grew > 1<<30 {
		t.Errorf("%d concurrent cold lookups (each digest with %d one-MiB junk referrers and .att layers) raised the proxy's "+
			"resident memory by %d MiB, to %d MiB; want at most 1024 MiB: nothing bounds the memory that concurrent lookups hold",
			digests, perDigest, grew>>20, peak>>20)
	}
}

// rt4SignedImage pushes a random image to repo, signs it keylessly as the
// policy's identity with a fresh private Sigstore (a v0.3 bundle in the
// referrers tag, as on a registry without the referrers API), and returns
// the Sigstore, the digest and the bundle's entry in the referrers tag.
func rt4SignedImage(t *testing.T, l *gateLab, repo string) (*sigstoretest.Sigstore, v1.Hash, craftedDescriptor) {
	t.Helper()
	ss, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	d := PushRandomImage(t, l.registry+"/"+repo+":v1")
	signed, err := ss.SignatureBundle(d, sigstoretest.Options{Identity: rt4Subject, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	target, err := name.NewRepository(l.registry+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(context.Background(), target, d, signed, crane.GetOptions(crane.Insecure).Remote...); err != nil {
		t.Fatal(err)
	}
	var tagIndex struct {
		Manifests []craftedDescriptor `json:"manifests"`
	}
	a := send(t, http.MethodGet, "http://"+l.registry+"/v2/"+repo+"/manifests/sha256-"+d.Hex, "Accept", string(types.OCIImageIndex))
	if err := json.Unmarshal(a.body, &tagIndex); err != nil || len(tagIndex.Manifests) != 1 {
		t.Fatalf("referrers tag of %s: %s (%v), want one bundle entry", repo, a, err)
	}
	valid := tagIndex.Manifests[0]
	return ss, d, valid
}

// rt4RootDir is a new directory holding ss's trusted root as root.json,
// where rt4Config names it.
func rt4RootDir(t *testing.T, ss *sigstoretest.Sigstore) string {
	t.Helper()
	dir := t.TempDir()
	rootJSON, err := ss.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), rootJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

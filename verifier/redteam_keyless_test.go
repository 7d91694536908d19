package verifier_test

import (
	"bytes"
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
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
	"github.com/cosign-dev/cosign/verifier"
)

// Red team 4: keyless signatures and attestations, attacked by someone who
// can push anything to the registry and who holds an OIDC account of their
// own (so genuine Fulcio certificates, Rekor entries and timestamps of the
// trusted Sigstore for an identity no policy names), but no trusted key
// and no certificate for a trusted identity. Each test asserts the safe
// behaviour: it fails while the attack works.
//
// The trusted Sigstore is a sigstoretest instance; "mallory" is the
// attacker's own identity on it.

const (
	rt4Issuer  = "https://token.actions.githubusercontent.com"
	rt4Trusted = "release@acme.example"
	rt4Mallory = "mallory@evil.example"
	rt4SLSA    = "https://slsa.dev/provenance/v1"
	rt4Reg     = "registry.example"
)

// rt4Lab is the trusted Sigstore, its root and a policy trusting one
// identity of it.
type rt4Lab struct {
	ss   *sigstoretest.Sigstore
	root *sigstore.TrustedRoot
}

func newRT4Lab(t testing.TB) *rt4Lab {
	t.Helper()
	ss, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	rootJSON, err := ss.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	root, err := sigstore.ParseTrustedRoot("trusted", rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	return &rt4Lab{ss: ss, root: root}
}

func (l *rt4Lab) policy() *verifier.Policy {
	return &verifier.Policy{
		Name:     "keyless",
		Match:    []string{rt4Reg + "/**"},
		Keyless:  &verifier.Keyless{TrustedRoot: l.root, Identities: []verifier.Identity{{Issuer: rt4Issuer, Subject: rt4Trusted}}},
		Identity: verifier.IdentityAny,
	}
}

func rt4Digest(s string) v1.Hash {
	sum := sha256.Sum256([]byte(s))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// bundle signs d on the trusted Sigstore as who (cosign v3's bundle).
func (l *rt4Lab) bundle(t testing.TB, d v1.Hash, who string) []byte {
	t.Helper()
	b, err := l.ss.SignatureBundle(d, sigstoretest.Options{Identity: who, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// junkSigner "signs" with an RSA public key it has no private key for:
// random bytes below the modulus, which no verifier accepts, but which a
// verifier has to raise to the power e modulo N to find out.
type junkSigner struct{ pub *rsa.PublicKey }

func (j junkSigner) Public() crypto.PublicKey { return j.pub }

func (j junkSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	s := make([]byte, (j.pub.N.BitLen()+7)/8)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	s[0] = 0 // below N, whose top bit is set
	return s, nil
}

// junkTimestamp is an RFC 3161 timestamp response over sig, as an attacker
// makes it without any timestamp authority: a granted response whose
// SignedData embeds a self-made certificate for an RSA key of bits bits
// with the public exponent 2^31-1 (N need not even be a real RSA modulus),
// and one SignerInfo with a signature of the modulus' length. Go's
// crypto/rsa verifies such keys (no size cap), at a cost that grows with
// bits² (about 120 ms at 65536 bits); the digitorus timestamp and pkcs7
// packages verify the embedded signature with the embedded key before
// anything compares that certificate with the trusted root's TSA.
func junkTimestamp(t testing.TB, bits int, sig []byte) []byte {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	pub := &rsa.PublicKey{N: n, E: 1<<31 - 1}
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "not a timestamp authority"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sig)
	ts := timestamp.Timestamp{
		HashAlgorithm:     crypto.SHA256,
		HashedMessage:     h[:],
		Time:              time.Now(),
		SerialNumber:      big.NewInt(1),
		Policy:            asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2},
		AddTSACertificate: true,
	}
	resp, err := ts.CreateResponseWithOpts(cert, junkSigner{pub}, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// withTimestamps returns raw (a bundle with one genuine timestamp) with
// extra appended to its RFC 3161 timestamps.
func withTimestamps(t testing.TB, raw []byte, extra ...[]byte) []byte {
	t.Helper()
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		t.Fatal(err)
	}
	tv := pb.GetVerificationMaterial().GetTimestampVerificationData()
	if tv == nil || len(tv.Rfc3161Timestamps) != 1 {
		t.Fatalf("bundle has no timestamp to add to")
	}
	for _, e := range extra {
		tv.Rfc3161Timestamps = append(tv.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: e})
	}
	b, err := protojson.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// genuineTimestamp is the RFC 3161 timestamp the trusted Sigstore put in
// raw.
func genuineTimestamp(t testing.TB, raw []byte) []byte {
	t.Helper()
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetVerificationMaterial().GetTimestampVerificationData().GetRfc3161Timestamps()[0].GetSignedTimestamp()
}

// envelopeSig is the DSSE signature of a bundle, what its timestamps
// cover.
func envelopeSig(t testing.TB, raw []byte) []byte {
	t.Helper()
	s := sigstore.SignatureFromBundle(raw, "bundle")
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	return s.Sig
}

// respaced is raw with n spaces after its first '{': the same bundle, other
// bytes (and so another blob digest, and another key in the verifier's
// per-lookup memo of keyless verifications).
func respaced(raw []byte, n int) []byte {
	return append([]byte("{"+strings.Repeat(" ", n)), raw[1:]...)
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// batchSource hands out signatures as the Fetcher does: in batches of 16,
// asking enough after each.
type batchSource struct{ sigs []sigstore.Signature }

func (s batchSource) SignaturesUntil(_ context.Context, _ string, _ v1.Hash, enough sigstore.Enough) ([]sigstore.Signature, error) {
	var out []sigstore.Signature
	for i := 0; i < len(s.sigs); i += 16 {
		b := s.sigs[i:min(i+16, len(s.sigs))]
		out = append(out, b...)
		if enough != nil && enough(b) {
			break
		}
	}
	return out, nil
}

func (batchSource) Attestations(context.Context, string, v1.Hash) ([]sigstore.Signature, error) {
	return nil, nil
}

func (batchSource) Blob(context.Context, string, sigstore.Descriptor, int64) ([]byte, error) {
	return nil, fmt.Errorf("%w: no blobs here", sigstore.ErrInvalidArtifact)
}

// TestRedTeam4KeylessTimestampWithHugeRSAKeyBurnsCPU: a keyless bundle is
// handed whole to sigstore-go, which, after the transparency log entry
// (the attacker's own, genuine), verifies every RFC 3161 timestamp in it
// (up to 32). Each is parsed by digitorus/timestamp, which verifies the
// token's SignedData with the certificate embedded in the token, and again
// in timestamp-authority's verifyTSRWithChain, before anything checks that
// certificate against the trusted root. An attacker embeds a certificate
// for a 65536-bit RSA key with exponent 2^31-1 (Go verifies any size):
// ~120 ms of CPU per timestamp, so one 200 KiB bundle costs about a
// second, and a lookup (32 MiB of bundles) minutes. The refusal is right;
// what it costs is not.
//
// Safe: such a bundle is an invalid artifact when parsed, before anything
// uses the keys it carries (the CPU it costs is logged, not asserted: a
// timing bound would fail on a slow machine, not on a regression).
func TestRedTeam4KeylessTimestampWithHugeRSAKeyBurnsCPU(t *testing.T) {
	l := newRT4Lab(t)
	d := rt4Digest("attacker image")
	raw := l.bundle(t, d, rt4Mallory)
	tok := junkTimestamp(t, 65536, envelopeSig(t, raw))
	junk := make([][]byte, 8)
	for i := range junk {
		junk[i] = tok
	}
	evil := withTimestamps(t, raw, junk...)
	sig := sigstore.SignatureFromBundle(evil, "referrer 1")
	if !errors.Is(sig.Err, sigstore.ErrInvalidArtifact) || !strings.Contains(sig.Err.Error(), "65536-bit RSA key") {
		t.Errorf("a bundle whose timestamps embed a 65536-bit RSA certificate parsed: %v; want an invalid artifact naming the key", sig.Err)
	}
	p := l.policy()
	img := verifier.Image{Registry: rt4Reg, Repository: "app", Digest: d}

	start, wall := cpuTime(t), time.Now()
	dec := verifier.Evaluate(p, img, []sigstore.Signature{sig})
	cpu := cpuTime(t) - start
	t.Logf("one %d-byte bundle with 8 junk timestamps: %v CPU, %v wall: %s", len(evil), cpu, time.Since(wall), dec.Message)
	if dec.Admit {
		t.Fatalf("admitted: %s", dec.Message)
	}
}

// rawManifest is a manifest pushed as its exact bytes.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// rt4Descriptor is an OCI descriptor as JSON.
type rt4Descriptor struct {
	MediaType    string `json:"mediaType"`
	Digest       string `json:"digest"`
	Size         int64  `json:"size"`
	ArtifactType string `json:"artifactType,omitempty"`
}

// TestRedTeam4JunkKeylessReferrersTimeOutAValidSignature: the same junk,
// as referrers of a correctly signed image (on a registry with the
// referrers API nobody can remove them; here they lead the referrers tag,
// as an attacker grinding their digests gets them to lead the API's list).
// The Fetcher reads 16 referrers, the verifier verifies them (seconds of
// CPU), and only then does the Fetcher ask for the next 16, where the valid
// bundle is: the lookup's deadline has passed, the lookup fails, nothing is
// cached, and every pull of the image fails the same way. 16 referrers and
// 3 MiB are far below the documented bounds (1,000 referrers, 32 MiB) up to
// which junk "costs reading, not a refusal".
//
// Safe: the image is admitted by its valid bundle.
func TestRedTeam4JunkKeylessReferrersTimeOutAValidSignature(t *testing.T) {
	l := newRT4Lab(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	repo, err := name.NewRepository(host+"/prod/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("v1"), img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The valid signature: the trusted identity's bundle.
	if err := sigstoretest.WriteSignatureBundle(ctx, repo, d, l.bundle(t, d, rt4Trusted)); err != nil {
		t.Fatal(err)
	}
	tagRef := repo.Tag(sigstore.ReferrersTag(d))
	desc, err := remote.Get(tagRef)
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     []rt4Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(desc.Manifest, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("referrers tag: %v, %d entries, want the valid bundle alone", err, len(index.Manifests))
	}
	valid := index.Manifests[0]

	// The junk: mallory's genuine bundle with 4 junk timestamps, 16
	// respaced copies, each pushed as a referrer of the signed image.
	base := l.bundle(t, rt4Digest("anything"), rt4Mallory)
	tok := junkTimestamp(t, 65536, envelopeSig(t, base))
	base = withTimestamps(t, base, tok, tok, tok, tok)
	config := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	if err := remote.WriteLayer(repo, config); err != nil {
		t.Fatal(err)
	}
	cd, _ := config.Digest()
	var junk []rt4Descriptor
	for i := range 16 {
		b := respaced(base, i)
		layer := static.NewLayer(b, sigstore.BundleMediaType)
		if err := remote.WriteLayer(repo, layer); err != nil {
			t.Fatal(err)
		}
		ld, _ := layer.Digest()
		m, err := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     types.OCIManifestSchema1,
			"artifactType":  sigstore.BundleMediaType,
			"config":        rt4Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd.String(), Size: 2},
			"layers":        []rt4Descriptor{{MediaType: sigstore.BundleMediaType, Digest: ld.String(), Size: int64(len(b))}},
			"subject":       rt4Descriptor{MediaType: string(types.DockerManifestSchema2), Digest: d.String(), Size: size},
		})
		if err != nil {
			t.Fatal(err)
		}
		md, _, _ := v1.SHA256(bytes.NewReader(m))
		if err := remote.Put(repo.Digest(md.String()), rawManifest{m, types.OCIManifestSchema1}); err != nil {
			t.Fatal(err)
		}
		junk = append(junk, rt4Descriptor{MediaType: string(types.OCIManifestSchema1), Digest: md.String(),
			Size: int64(len(m)), ArtifactType: sigstore.BundleMediaType})
	}
	index.Manifests = append(junk, valid)
	ib, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(tagRef, rawManifest{ib, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}

	p := l.policy()
	p.Match = []string{host + "/**"}
	v, err := verifier.New(verifier.Config{Policies: []*verifier.Policy{p}, LookupTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start, wall := cpuTime(t), time.Now()
	dec, err := v.Decide(ctx, sigstore.NewFetcher(srv.URL, nil), verifier.Image{Registry: host, Repository: "prod/app", Digest: d}, nil)
	t.Logf("cold decision: %v CPU, %v wall", cpuTime(t)-start, time.Since(wall))
	switch {
	case err != nil:
		t.Errorf("a correctly signed image behind 16 junk keyless referrers (%d bytes each): the decision failed: %v; want admitted", len(base), err)
	case !dec.Admit:
		t.Errorf("a correctly signed image behind 16 junk keyless referrers was refused: %s", dec.Message)
	}
}

// TestRedTeam4KeylessConfusions: what an attacker can make of genuine
// artifacts of the trusted identity (made for something else) and of the
// two JSON readers of a bundle (the project's strict one and sigstore-go's
// protojson). None may admit. Each case is checked against a control that
// the genuine artifact, used as made, does admit.
func TestRedTeam4KeylessConfusions(t *testing.T) {
	l := newRT4Lab(t)
	d := rt4Digest("the image")
	img := verifier.Image{Registry: rt4Reg, Repository: "prod/app", Digest: d}
	trusted := sigstoretest.Options{Identity: rt4Trusted, Issuer: rt4Issuer}
	genuine := l.bundle(t, d, rt4Trusted)
	pred := map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": "https://ci.acme.example"}}}
	att, err := l.ss.AttestationBundle(d, rt4SLSA, pred, trusted)
	if err != nil {
		t.Fatal(err)
	}
	attRule := []verifier.AttestationRule{{PredicateType: rt4SLSA, Predicate: map[string]any{"runDetails.builder.id": "https://ci.acme.example"}}}

	sigOnly := l.policy()
	attOnly := l.policy()
	attOnly.Attestations, attOnly.SignatureOptional = attRule, true
	repoPolicy := l.policy()
	repoPolicy.Identity = verifier.IdentityRepository

	// Controls: each artifact admits where it should.
	for _, c := range []struct {
		name string
		p    *verifier.Policy
		raw  []byte
	}{{"signature bundle, signature policy", sigOnly, genuine}, {"attestation bundle, attestation-only policy", attOnly, att}} {
		if dec := verifier.Evaluate(c.p, img, []sigstore.Signature{sigstore.SignatureFromBundle(c.raw, "referrer")}); !dec.Admit {
			t.Fatalf("control %s: refused: %s", c.name, dec.Message)
		}
	}
	legacy := func(repo string) sigstore.Signature {
		payload, ann, err := l.ss.SimpleSigningLayer(rt4Reg+"/"+repo, d, trusted)
		if err != nil {
			t.Fatal(err)
		}
		s := sigstore.Signature{Format: sigstore.FormatSimpleSigning, Signed: payload, Payload: payload, Where: repo + " .sig layer 0"}
		if s.Sig, err = base64Std(ann[sigstore.SignatureAnnotation]); err != nil {
			t.Fatal(err)
		}
		s.Certificate = pemDER(t, ann[sigstore.CertificateAnnotation])
		s.RekorBundle = []byte(ann[sigstore.RekorBundleAnnotation])
		return s
	}
	if dec := verifier.Evaluate(repoPolicy, img, []sigstore.Signature{legacy("prod/app")}); !dec.Admit {
		t.Fatalf("control legacy .sig for prod/app: refused: %s", dec.Message)
	}

	// JSON-level edits of the genuine signature bundle.
	edit := func(from, to string) []byte {
		if !bytes.Contains(genuine, []byte(from)) {
			t.Fatalf("bundle has no %q", from)
		}
		return bytes.Replace(genuine, []byte(from), []byte(to), 1)
	}
	var envelope json.RawMessage
	var top map[string]json.RawMessage
	if err := json.Unmarshal(genuine, &top); err != nil {
		t.Fatal(err)
	}
	envelope = top["dsseEnvelope"]
	otherBundle := l.bundle(t, rt4Digest("another image"), rt4Trusted)
	var other map[string]json.RawMessage
	if err := json.Unmarshal(otherBundle, &other); err != nil {
		t.Fatal(err)
	}
	otherEnvelope := other["dsseEnvelope"]

	for _, tc := range []struct {
		name string
		p    *verifier.Policy
		sigs []sigstore.Signature
	}{
		{"the trusted identity's attestation passed off as a signature", sigOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(att, "referrer")}},
		{"the trusted identity's signature passed off as an attestation", attOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(genuine, "referrer")}},
		{"protojson's proto name dsse_envelope", sigOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(edit(`"dsseEnvelope"`, `"dsse_envelope"`), "referrer")}},
		{"protojson's proto name verification_material", sigOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(edit(`"verificationMaterial"`, `"verification_material"`), "referrer")}},
		{"a second envelope under an escaped key (another image's, first)", sigOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(
				[]byte(`{"dsse\u0045nvelope":`+string(otherEnvelope)+`,`+string(genuine[1:])), "referrer")}},
		{"a second envelope under an escaped key (another image's, last)", sigOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(
				[]byte(string(genuine[:len(genuine)-1])+`,"dsse\u0045nvelope":`+string(otherEnvelope)+`}`), "referrer")}},
		{"the envelope of another image's genuine bundle with this image's log entry", sigOnly,
			[]sigstore.Signature{sigstore.SignatureFromBundle(bytes.Replace(genuine, envelope, otherEnvelope, 1), "referrer")}},
		{"a genuine keyless .sig layer of another repository (identity: repository)", repoPolicy,
			[]sigstore.Signature{legacy("prod/other")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := verifier.Evaluate(tc.p, img, tc.sigs)
			if dec.Admit {
				t.Errorf("admitted: %s", dec.Message)
			} else {
				t.Logf("refused: %s", dec.Message)
			}
		})
	}
}

func base64Std(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// pemDER is the DER of the one certificate in PEM text.
func pemDER(t testing.TB, text string) []byte {
	t.Helper()
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

// rt4VirtualRoot is a trusted root made of a sigstore-go VirtualSigstore's
// Fulcio CA and Rekor log, described as sigstoretest describes its own. The
// test can have its log log any certificate, as the public Rekor v1 logs
// hashedrekord and dsse entries for any certificate (it checks the
// signature with the certificate's key, not who issued the certificate).
func rt4VirtualRoot(t testing.TB) (*ca.VirtualSigstore, *root.FulcioCertificateAuthority, *sigstore.TrustedRoot) {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	fulcio := vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	hexID, err := vs.RekorLogID()
	if err != nil {
		t.Fatal(err)
	}
	logID, err := hex.DecodeString(hexID)
	if err != nil {
		t.Fatal(err)
	}
	tl := &root.TransparencyLog{BaseURL: "https://rekor.localhost", ID: logID, ValidityPeriodStart: time.Now().Add(-24 * time.Hour),
		HashFunc: crypto.SHA256, PublicKey: vs.RekorLogs()[hexID].PublicKey, SignatureHashFunc: crypto.SHA256}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{fulcio}, nil, nil,
		map[string]*root.TransparencyLog{hexID: tl})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := sigstore.ParseTrustedRoot("trusted", b)
	if err != nil {
		t.Fatal(err)
	}
	return vs, fulcio, parsed
}

// withSignatureBytes re-encodes a certificate with another signatureValue.
func withSignatureBytes(t testing.TB, der, sig []byte) []byte {
	t.Helper()
	var c struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		t.Fatal(err)
	}
	c.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	out, err := asn1.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// chainLeaf is the attacker's self-made leaf and its genuine log entry on
// vs: mallory's own ECDSA key, "issued" under the Fulcio intermediate's
// name with an RSA signature algorithm and a signature of junk of a
// bits-bit modulus' length, so that Go's path validation tries every
// same-named RSA certificate of that size as its parent.
type chainLeaf struct {
	der   []byte
	stmt  []byte
	sig   []byte
	entry *protorekor.TransparencyLogEntry
}

func newChainLeaf(t testing.TB, vs *ca.VirtualSigstore, fulcio *root.FulcioCertificateAuthority, bits int, d v1.Hash) *chainLeaf {
	t.Helper()
	inter := fulcio.Intermediates[0]
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	issuerExt, err := asn1.MarshalWithParams(rt4Issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		EmailAddresses: []string{rt4Mallory}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: issuerExt}}}
	parent := &x509.Certificate{RawSubject: inter.RawSubject, SubjectKeyId: inter.SubjectKeyId}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &leafKey.PublicKey, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, bits/8)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	junk[0] = 0
	der = withSignatureBytes(t, der, junk)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	stmt, err := json.Marshal(map[string]any{"_type": "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": d.Hex}}},
		"predicateType": sigstore.CosignPredicateType, "predicate": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sigstore.PAE(sigstore.InTotoPayloadType, stmt))
	sig, err := ecdsa.SignASN1(rand.Reader, leafKey, h[:])
	if err != nil {
		t.Fatal(err)
	}
	env := &dsse.Envelope{PayloadType: sigstore.InTotoPayloadType, Payload: base64.StdEncoding.EncodeToString(stmt),
		Signatures: []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}}}
	entry, err := vs.GenerateTlogEntry(leaf, env, sig, time.Now().Unix(), false)
	if err != nil {
		t.Fatalf("the log would not log the self-made certificate: %v", err)
	}
	return &chainLeaf{der: der, stmt: stmt, sig: sig, entry: entry.TransparencyLogEntry()}
}

// bundle is a keyless bundle v0.1 of the leaf whose x509CertificateChain
// holds 9 fresh junk "intermediates" under the Fulcio intermediate's name
// with bits-bit RSA keys of exponent 2^31-1.
func (c *chainLeaf) bundle(t testing.TB, fulcio *root.FulcioCertificateAuthority, bits int) []byte {
	t.Helper()
	certs := []*protocommon.X509Certificate{{RawBytes: c.der}}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		if err != nil {
			t.Fatal(err)
		}
		n.SetBit(n, bits-1, 1)
		n.SetBit(n, 0, 1)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(100 + i)), RawSubject: fulcio.Intermediates[0].RawSubject,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsa.PublicKey{N: n, E: 1<<31 - 1}, k)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, &protocommon.X509Certificate{RawBytes: der})
	}
	raw, err := protojson.Marshal(&protobundle.Bundle{
		MediaType: sigstore.BundleMediaTypeV01,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{Certificates: certs}},
			TlogEntries: []*protorekor.TransparencyLogEntry{c.entry},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: c.stmt, PayloadType: sigstore.InTotoPayloadType, Signatures: []*protodsse.Signature{{Sig: c.sig}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestRedTeam4KeylessChainWithHugeRSAIntermediatesBurnsCPU: a bundle's
// x509CertificateChain (bundles v0.1 and v0.2; and cosign's chain
// annotation of .sig and .att layers) adds intermediates to the trusted
// Fulcio CA's for the certificate path validation, which Go's x509 runs
// once per verified observer timestamp. With 9 junk intermediates of
// 65536-bit keys (see chainLeaf), ~120 ms each: one 110 KiB bundle costs a
// second of CPU; with 131072-bit keys, 4 s.
//
// Safe: such a bundle is an invalid artifact when parsed, before Go's
// path validation tries its intermediates (CPU logged, not asserted).
func TestRedTeam4KeylessChainWithHugeRSAIntermediatesBurnsCPU(t *testing.T) {
	vs, fulcio, trusted := rt4VirtualRoot(t)
	d := rt4Digest("attacker image")
	raw := newChainLeaf(t, vs, fulcio, 65536, d).bundle(t, fulcio, 65536)
	s := sigstore.SignatureFromBundle(raw, "referrer 1")
	if !errors.Is(s.Err, sigstore.ErrInvalidArtifact) || !strings.Contains(s.Err.Error(), "65536-bit RSA key") {
		t.Errorf("a bundle whose chain holds 65536-bit RSA intermediates parsed: %v; want an invalid artifact naming the key", s.Err)
	}
	p := &verifier.Policy{Name: "keyless", Match: []string{rt4Reg + "/**"}, Identity: verifier.IdentityAny,
		Keyless: &verifier.Keyless{TrustedRoot: trusted, Identities: []verifier.Identity{{Issuer: rt4Issuer, Subject: rt4Trusted}}}}
	start := cpuTime(t)
	dec := verifier.Evaluate(p, verifier.Image{Registry: rt4Reg, Repository: "app", Digest: d}, []sigstore.Signature{s})
	cpu := cpuTime(t) - start
	t.Logf("one %d-byte bundle, 9 junk intermediates: %v CPU: %s", len(raw), cpu, dec.Message)
	if dec.Admit {
		t.Fatalf("admitted: %s", dec.Message)
	}
}

// TestRedTeam4JunkKeylessBundlesCostPerLookup: what one cold decision
// costs when the attacker fills a lookup (up to 1,000 referrers, 32 MiB)
// with junk keyless bundles that all differ in what is verified (so that
// no memo of verifications, whether keyed by bytes or by a canonical
// form, makes them one), each within what bounds on key sizes (RSA of at
// most 8192 bits) and on timestamps (at most 4) let through. The same
// blobs can be referrers of any number of digests, each pull of which is a
// cold decision.
//
//   - 3 junk timestamps (fresh each bundle) whose token embeds a self-made
//     8192-bit RSA certificate of exponent 2^31-1 beside the attacker's
//     genuine one: Go verifies any exponent below 2^31, 2.5 ms a
//     signature, 3 times one of exponent 65537;
//   - the attacker's self-made leaf (one genuine log entry) with 9 fresh
//     junk 8192-bit intermediates of exponent 2^31-1 per bundle.
//
// Safe: every such bundle is an invalid artifact when parsed (RSA keys
// must have exponent 65537, as CAs issue them), so none reaches
// sigstore-go. The CPU a decision costs is logged, not asserted. (1,000
// genuine bundles of untrusted identities cost about 0.7 s.)
func TestRedTeam4JunkKeylessBundlesCostPerLookup(t *testing.T) {
	l := newRT4Lab(t)
	d := rt4Digest("attacker image")
	raw := l.bundle(t, d, rt4Mallory)
	esig := envelopeSig(t, raw)
	vs, fulcio, virtualRoot := rt4VirtualRoot(t)
	virtualPolicy := &verifier.Policy{Name: "keyless", Match: []string{rt4Reg + "/**"}, Identity: verifier.IdentityAny,
		Keyless: &verifier.Keyless{TrustedRoot: virtualRoot, Identities: []verifier.Identity{{Issuer: rt4Issuer, Subject: rt4Trusted}}}}
	leaf := newChainLeaf(t, vs, fulcio, 8192, d)
	for _, tc := range []struct {
		name string
		p    *verifier.Policy
		make func() []byte
	}{
		{"3 junk timestamps, 8192-bit RSA, exponent 2^31-1", l.policy(), func() []byte {
			return withTimestamps(t, raw, junkTimestamp(t, 8192, esig), junkTimestamp(t, 8192, esig), junkTimestamp(t, 8192, esig))
		}},
		{"9 junk intermediates, 8192-bit RSA, exponent 2^31-1", virtualPolicy, func() []byte { return leaf.bundle(t, fulcio, 8192) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := tc.make()
			n := min(sigstore.MaxReferrers, int(sigstore.MaxLookupBytes/int64(len(first)+1000)))
			sigs := make([]sigstore.Signature, n)
			malformed := 0
			for i := range sigs {
				b := first
				if i > 0 {
					b = tc.make()
				}
				sigs[i] = sigstore.SignatureFromBundle(b, fmt.Sprintf("referrer %d", i))
				if sigs[i].Err != nil {
					malformed++
				}
			}
			if malformed != n || !strings.Contains(sigs[0].Err.Error(), "exponent 2147483647") {
				t.Errorf("%d of %d junk bundles refused when parsed (first: %v); want all, naming the RSA exponent", malformed, n, sigs[0].Err)
			}
			v, err := verifier.New(verifier.Config{Policies: []*verifier.Policy{tc.p}})
			if err != nil {
				t.Fatal(err)
			}
			start, wall := cpuTime(t), time.Now()
			dec, err := v.Decide(context.Background(), batchSource{sigs}, verifier.Image{Registry: rt4Reg, Repository: "app", Digest: d}, nil)
			cpu := cpuTime(t) - start
			t.Logf("%d junk bundles of about %d bytes: %v CPU, %v wall", n, len(first), cpu, time.Since(wall))
			if err != nil || dec.Admit {
				t.Fatalf("want a refusal: %v %s", err, dec.Message)
			}
		})
	}
}

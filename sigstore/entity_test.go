package sigstore

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The identity the virtual Fulcio certifies.
const (
	testIdentity = "signer@example.com"
	testIssuer   = "https://issuer.example.com"
	slsaV1       = "https://slsa.dev/provenance/v1"
)

// virtualSigstore is sigstore-go's in-memory Fulcio, Rekor and timestamp
// authority, with a trusted root naming them (no CT log: its certificates
// carry no SCT).
type virtualSigstore struct {
	*ca.VirtualSigstore
	trusted *root.TrustedRoot
}

func newVirtualSigstore(t testing.TB) *virtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil,
		vs.TimestampingAuthorities(), vs.RekorLogs())
	if err != nil {
		t.Fatal(err)
	}
	return &virtualSigstore{VirtualSigstore: vs, trusted: tr}
}

// verify verifies s's entity as the verifier package does, with the given
// artifact option, and returns the SAN of the verified certificate.
func (vs *virtualSigstore) verify(t testing.TB, s Signature, artifact verify.ArtifactPolicyOption) (string, error) {
	t.Helper()
	e, err := s.Entity()
	if err != nil {
		t.Fatalf("Entity: %v", err)
	}
	v, err := verify.NewVerifier(vs.trusted, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Verify(e, verify.NewPolicy(artifact, verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		return "", err
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		t.Fatalf("verified without a certificate: %+v", res)
	}
	return res.Signature.Certificate.SubjectAlternativeName, nil
}

// chainPEM is the virtual Fulcio's chain above its leaves, as cosign's
// chain annotation holds it: intermediates, then root.
func (vs *virtualSigstore) chainPEM(t testing.TB) string {
	t.Helper()
	fulcio := vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	var b strings.Builder
	for _, c := range append(fulcio.Intermediates, fulcio.Root) {
		b.WriteString(certPEM(c.Raw))
	}
	return b.String()
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// cosignRekorBundle is sigstore cosign's bundle.RekorBundle, which it
// marshals into the dev.sigstore.cosign/bundle annotation.
type cosignRekorBundle struct {
	SignedEntryTimestamp []byte
	Payload              struct {
		Body           any    `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	}
}

// rekorAnnotation is cosign's Rekor bundle annotation for entry e, with a
// signed entry timestamp by the virtual log.
func (vs *virtualSigstore) rekorAnnotation(t testing.TB, e *tlog.Entry) string {
	t.Helper()
	tle := e.TransparencyLogEntry()
	var rb cosignRekorBundle
	rb.Payload.Body = base64.StdEncoding.EncodeToString(tle.CanonicalizedBody)
	rb.Payload.IntegratedTime, rb.Payload.LogIndex = tle.IntegratedTime, tle.LogIndex
	rb.Payload.LogID = hex.EncodeToString(tle.LogId.KeyId)
	set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: rb.Payload.Body, IntegratedTime: rb.Payload.IntegratedTime,
		LogIndex: rb.Payload.LogIndex, LogID: rb.Payload.LogID})
	if err != nil {
		t.Fatal(err)
	}
	rb.SignedEntryTimestamp = set
	b, err := json.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keylessSig is a keyless simple signature as cosign lays it out in a .sig
// layer: the payload and the layer's annotations.
type keylessSig struct {
	payload     []byte
	annotations map[string]string
}

// signSimple signs payload with a fresh Fulcio certificate and logs it
// in the virtual Rekor as a hashedrekord entry, as "cosign sign" with
// --new-bundle-format=false does.
func (vs *virtualSigstore) signSimple(t testing.TB, payload []byte) keylessSig {
	t.Helper()
	te, err := vs.Sign(testIdentity, testIssuer, payload)
	if err != nil {
		t.Fatal(err)
	}
	vc, sc, entry := entityParts(t, te)
	return keylessSig{payload: payload, annotations: map[string]string{
		SignatureAnnotation:   b64(sc.Signature()),
		CertificateAnnotation: certPEM(vc.Certificate().Raw),
		ChainAnnotation:       vs.chainPEM(t),
		RekorBundleAnnotation: vs.rekorAnnotation(t, entry),
	}}
}

// entityParts is what the virtual Sigstore made for te: its certificate,
// its signature and its one Rekor entry.
func entityParts(t testing.TB, te *ca.TestEntity) (verify.VerificationContent, verify.SignatureContent, *tlog.Entry) {
	t.Helper()
	vc, err := te.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := te.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := te.TlogEntries()
	if err != nil || len(entries) != 1 {
		t.Fatalf("tlog entries: %v, %d", err, len(entries))
	}
	return vc, sc, entries[0]
}

// keylessAtt is a keyless attestation as cosign lays it out in a .att
// layer: the envelope blob and the layer's annotations.
type keylessAtt struct {
	envelope    []byte
	annotations map[string]string
}

// attest signs statement as a DSSE envelope with a fresh Fulcio
// certificate and logs it in the virtual Rekor, as "cosign attest" with
// --new-bundle-format=false does.
func (vs *virtualSigstore) attest(t testing.TB, statement []byte) keylessAtt {
	t.Helper()
	te, err := vs.AttestAtTime(testIdentity, testIssuer, statement, time.Now().Add(5*time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	vc, sc, entry := entityParts(t, te)
	env, err := json.Marshal(sc.EnvelopeContent().RawEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	return keylessAtt{envelope: env, annotations: map[string]string{
		PredicateTypeAnnotation: slsaV1,
		SignatureAnnotation:     "",
		CertificateAnnotation:   certPEM(vc.Certificate().Raw),
		ChainAnnotation:         vs.chainPEM(t),
		RekorBundleAnnotation:   vs.rekorAnnotation(t, entry),
	}}
}

// bundleV03 signs statement as cosign v3 does by default: a bundle v0.3
// with the leaf certificate, one Rekor entry with inclusion proof and
// promise, and an RFC 3161 timestamp.
func (vs *virtualSigstore) bundleV03(t testing.TB, statement []byte) []byte {
	t.Helper()
	te, err := vs.AttestAtTime(testIdentity, testIssuer, statement, time.Now().Add(5*time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, sc, entry := entityParts(t, te)
	timestamps, err := te.Timestamps()
	if err != nil || len(timestamps) != 1 {
		t.Fatalf("timestamps: %v, %d", err, len(timestamps))
	}
	var rb cosignRekorBundle
	if err := json.Unmarshal([]byte(vs.rekorAnnotation(t, entry)), &rb); err != nil {
		t.Fatal(err)
	}
	tle := proto.Clone(entry.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: rb.SignedEntryTimestamp}
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := env.DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TlogEntries: []*protorekor.TransparencyLogEntry{tle},
			TimestampVerificationData: &protobundle.TimestampVerificationData{
				Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: timestamps[0]}},
			},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// statementFor is an in-toto statement about digest.
func statementFor(digest v1.Hash, predicateType string) []byte {
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"interop/app","digest":{"sha256":"` +
		digest.Hex + `"}}],"predicateType":"` + predicateType + `","predicate":{"buildDefinition":{"buildType":"https://example.com/build"}}}`)
}

// --- laying artifacts out in a registry as cosign does ---

// layerManifest is an image manifest with an OCI config and the layers,
// as cosign writes its .sig and .att manifests.
func layerManifest(t *testing.T, r *testRegistry, repo string, layers []v1.Descriptor) []byte {
	t.Helper()
	config := []byte(`{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(config)), Digest: mustHash(pushBlob(t, r, repo, config))},
		Layers:        layers,
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushLayer pushes blob and describes it as a layer of mediaType.
func pushLayer(t *testing.T, r *testRegistry, repo string, blob []byte, mediaType string, annotations map[string]string) v1.Descriptor {
	t.Helper()
	return v1.Descriptor{MediaType: types.MediaType(mediaType), Size: int64(len(blob)),
		Digest: mustHash(pushBlob(t, r, repo, blob)), Annotations: annotations}
}

// putSig stores the keyless simple signatures as the .sig manifest of digest.
func putSig(t *testing.T, r *testRegistry, repo string, digest v1.Hash, sigs ...keylessSig) {
	t.Helper()
	var layers []v1.Descriptor
	for _, s := range sigs {
		layers = append(layers, pushLayer(t, r, repo, s.payload, SimpleSigningMediaType, s.annotations))
	}
	putManifest(t, r, repo, SignatureTag(digest), layerManifest(t, r, repo, layers), string(types.OCIManifestSchema1))
	r.reset()
}

// putAtt stores the keyless attestations as the .att manifest of digest.
func putAtt(t *testing.T, r *testRegistry, repo string, digest v1.Hash, atts ...keylessAtt) {
	t.Helper()
	var layers []v1.Descriptor
	for _, a := range atts {
		layers = append(layers, pushLayer(t, r, repo, a.envelope, AttestationLayerMediaType, a.annotations))
	}
	putManifest(t, r, repo, AttestationTag(digest), layerManifest(t, r, repo, layers), string(types.OCIManifestSchema1))
	r.reset()
}

// putBundle stores bundle as a referrer of digest (an image of the
// vectors) with the project's writer, which lays it out as cosign does.
func putBundle(t *testing.T, r *testRegistry, repo string, digest v1.Hash, bundle []byte) {
	t.Helper()
	manifest := getManifest(t, r, repo, digest.String())
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(r.host() + "/" + repo + "@" + digest.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WriteBundle(ctx, d, v1.Descriptor{MediaType: m.MediaType, Size: int64(len(manifest)), Digest: digest}, bundle); err != nil {
		t.Fatalf("WriteBundle: %v", err)
	}
	r.reset()
}

// attestations reads the .att attestations of digest with a fresh Fetcher.
func (r *testRegistry) attestations(t *testing.T, repo string, digest v1.Hash) ([]Signature, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return NewFetcher(r.URL, nil).Attestations(ctx, repo, digest)
}

// only returns a function that returns the one signature a lookup
// found, failing the test otherwise.
func only(t *testing.T) func([]Signature, error) Signature {
	return func(sigs []Signature, err error) Signature {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(sigs) != 1 {
			t.Fatalf("got %d signatures, want 1: %s", len(sigs), describe(sigs...))
		}
		return sigs[0]
	}
}

// describe says briefly what signatures are, for messages.
func describe(sigs ...Signature) string {
	var b strings.Builder
	for _, s := range sigs {
		fmt.Fprintf(&b, "[%s at %q: keyless %v, %d chain certificates, payload %q, err %v] ",
			s.Format, s.Where, s.Keyless(), len(s.Chain), s.Payload, s.Err)
	}
	return b.String()
}

// --- the three formats, end to end ---

func TestKeylessSimpleSigningFromRegistryVerifies(t *testing.T) {
	vs := newVirtualSigstore(t)
	r := newTestRegistry(t, false)
	payload, err := NewPayload("127.0.0.1:5000/interop/app", appV1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := vs.signSimple(t, payload)
	putSig(t, r, attackRepo, appV1, ks)

	s := only(t)(r.signatures(t, attackRepo, appV1))
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if s.Format != FormatSimpleSigning || !s.Keyless() || len(s.Chain) != 2 || !bytes.Equal(s.Payload, payload) ||
		string(s.RekorBundle) != ks.annotations[RekorBundleAnnotation] || s.Where != SignatureTag(appV1)+" layer 0" {
		t.Fatalf("Signature = %s", describe(s))
	}
	c, err := s.Claims()
	if err != nil || c.Digests[0] != appV1 {
		t.Fatalf("Claims = %+v, %v", c, err)
	}
	san, err := vs.verify(t, s, verify.WithArtifact(bytes.NewReader(s.Payload)))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if san != testIdentity {
		t.Errorf("verified identity %q, want %q", san, testIdentity)
	}
	// The signature covers the payload, not any other artifact.
	if _, err := vs.verify(t, s, verify.WithArtifact(strings.NewReader(string(payload)+" "))); err == nil {
		t.Error("verified against another artifact")
	}
}

func TestKeylessAttestationFromRegistryVerifies(t *testing.T) {
	vs := newVirtualSigstore(t)
	r := newTestRegistry(t, false)
	statement := statementFor(appV1, slsaV1)
	ka := vs.attest(t, statement)
	putAtt(t, r, attackRepo, appV1, ka)

	s := only(t)(r.attestations(t, attackRepo, appV1))
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if s.Format != FormatAttestation || !s.Keyless() || len(s.Chain) != 2 || !bytes.Equal(s.Payload, statement) ||
		s.PayloadType != InTotoPayloadType || !bytes.Equal(s.Signed, PAE(InTotoPayloadType, statement)) ||
		!bytes.Equal(s.Bundle, ka.envelope) || s.Where != AttestationTag(appV1)+" layer 0" {
		t.Fatalf("Signature = %s", describe(s))
	}
	san, err := vs.verify(t, s, verify.WithoutArtifactUnsafe())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if san != testIdentity {
		t.Errorf("verified identity %q, want %q", san, testIdentity)
	}
	// The .sig lookup does not read attestations.
	if sigs, err := r.signatures(t, attackRepo, appV1); err != nil || len(sigs) != 0 {
		t.Errorf("Signatures = %+v, %v; want none", sigs, err)
	}
}

func TestKeylessBundleFromRegistryVerifies(t *testing.T) {
	for _, tc := range []struct {
		name, predicateType string
	}{
		{"signature", CosignPredicateType},
		{"attestation", slsaV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := newVirtualSigstore(t)
			r := newTestRegistry(t, false)
			loadVectors(t, r)
			statement := statementFor(appV2, tc.predicateType)
			raw := vs.bundleV03(t, statement)
			putBundle(t, r, attackRepo, appV2, raw)

			// Beside cosign's key-signed bundle of the vectors.
			sigs, err := r.signatures(t, attackRepo, appV2)
			if err != nil {
				t.Fatal(err)
			}
			var keyless []Signature
			for _, s := range sigs {
				if s.Err != nil {
					t.Fatalf("%s", describe(s))
				}
				if s.Keyless() {
					keyless = append(keyless, s)
				}
			}
			if len(sigs) != 2 || len(keyless) != 1 {
				t.Fatalf("got %s; want cosign's bundle and a keyless one", describe(sigs...))
			}
			s := keyless[0]
			if s.Format != FormatBundle || !s.Keyless() || len(s.Chain) != 0 || !bytes.Equal(s.Payload, statement) || !bytes.Equal(s.Bundle, raw) {
				t.Fatalf("Signature = %s", describe(s))
			}
			san, err := vs.verify(t, s, verify.WithoutArtifactUnsafe())
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if san != testIdentity {
				t.Errorf("verified identity %q, want %q", san, testIdentity)
			}
		})
	}
}

// --- what must not verify ---

// Keyless material that parses but is not what the log and the CA
// vouched for converts, and sigstore-go refuses it.
func TestKeylessLegacyTamperedDoesNotVerify(t *testing.T) {
	vs := newVirtualSigstore(t)
	other := newVirtualSigstore(t)
	payload := []byte(`{"critical":{"identity":{"docker-reference":"x/app"},"image":{"docker-manifest-digest":"` + appV1.String() + `"},"type":"cosign container image signature"},"optional":null}`)
	good := vs.signSimple(t, payload)
	otherPayload := vs.signSimple(t, []byte(strings.Replace(string(payload), "x/app", "x/other", 1)))
	foreign := other.signSimple(t, payload)

	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for key, val := range good.annotations {
			m[key] = val
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	var rb cosignRekorBundle
	if err := json.Unmarshal([]byte(good.annotations[RekorBundleAnnotation]), &rb); err != nil {
		t.Fatal(err)
	}
	rb.Payload.IntegratedTime++
	laterTime, _ := json.Marshal(rb)

	// An entry that names another certificate is refused when read
	// (rekorbody.go), before sigstore-go; the rest by sigstore-go.
	const otherCert = "the entry names another certificate than the signature's"
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string // in the read error, or else in sigstore-go's
	}{
		{"certificate of another signing", with(CertificateAnnotation, otherPayload.annotations[CertificateAnnotation]), otherCert},
		{"certificate of an untrusted CA, with its own log entry", foreign.annotations, "not enough verified log entries"},
		{"Rekor entry for other bytes", with(RekorBundleAnnotation, otherPayload.annotations[RekorBundleAnnotation]), otherCert},
		{"Rekor entry signed by an untrusted log", with(RekorBundleAnnotation, foreign.annotations[RekorBundleAnnotation]), otherCert},
		{"Rekor entry with a changed integrated time", with(RekorBundleAnnotation, string(laterTime)), "not enough verified log entries"},
		{"no Rekor entry", with(RekorBundleAnnotation, ""), "not enough verified log entries"},
		{"signature of other bytes", with(SignatureAnnotation, otherPayload.annotations[SignatureAnnotation]), "transparency log signature does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, false)
			putSig(t, r, attackRepo, appV1, keylessSig{payload: payload, annotations: tc.annotations})
			s := only(t)(r.signatures(t, attackRepo, appV1))
			if s.Err != nil {
				if !errors.Is(s.Err, ErrInvalidArtifact) || !strings.Contains(s.Err.Error(), tc.want) {
					t.Fatalf("read: %v; want well-formed annotations or a read error mentioning %q", s.Err, tc.want)
				}
				return
			}
			_, err := vs.verify(t, s, verify.WithArtifact(bytes.NewReader(s.Payload)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify: %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestKeylessAttestationTamperedDoesNotVerify(t *testing.T) {
	vs := newVirtualSigstore(t)
	other := newVirtualSigstore(t)
	ka := vs.attest(t, statementFor(appV1, slsaV1))
	otherAtt := vs.attest(t, statementFor(appV2, slsaV1))

	var env map[string]any
	if err := json.Unmarshal(ka.envelope, &env); err != nil {
		t.Fatal(err)
	}
	env["payload"] = base64.StdEncoding.EncodeToString(statementFor(appV2, slsaV1))
	swapped, _ := json.Marshal(env)

	// An attestation certified by an untrusted CA, logged in the trusted
	// log: only the certificate chain can refuse it.
	foreign := other.attest(t, statementFor(appV1, slsaV1))
	var foreignEnv dsse.Envelope
	if err := json.Unmarshal(foreign.envelope, &foreignEnv); err != nil {
		t.Fatal(err)
	}
	foreignSig, _ := base64.StdEncoding.DecodeString(foreignEnv.Signatures[0].Sig)
	foreignCert, err := decodeCertificatesPEM(foreign.annotations[CertificateAnnotation], CertificateAnnotation)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(foreignCert[0])
	if err != nil {
		t.Fatal(err)
	}
	entry, err := vs.GenerateTlogEntry(leaf, &foreignEnv, foreignSig, time.Now().Add(5*time.Minute).Unix(), false)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		att  keylessAtt
		want string // in sigstore-go's error
	}{
		{"payload changed after signing", keylessAtt{envelope: swapped, annotations: ka.annotations}, "payload hash"},
		{"Rekor entry of another attestation", keylessAtt{envelope: ka.envelope, annotations: map[string]string{
			CertificateAnnotation: ka.annotations[CertificateAnnotation],
			RekorBundleAnnotation: otherAtt.annotations[RekorBundleAnnotation]}}, "the entry names another certificate than the signature's"},
		{"no Rekor entry", keylessAtt{envelope: ka.envelope, annotations: map[string]string{
			CertificateAnnotation: ka.annotations[CertificateAnnotation]}}, "not enough verified log entries"},
		{"certificate of an untrusted CA in the trusted log", keylessAtt{envelope: foreign.envelope, annotations: map[string]string{
			CertificateAnnotation: foreign.annotations[CertificateAnnotation],
			ChainAnnotation:       foreign.annotations[ChainAnnotation],
			RekorBundleAnnotation: vs.rekorAnnotation(t, entry)}}, "leaf certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, false)
			putAtt(t, r, attackRepo, appV1, tc.att)
			s := only(t)(r.attestations(t, attackRepo, appV1))
			if s.Err != nil {
				if !errors.Is(s.Err, ErrInvalidArtifact) || !strings.Contains(s.Err.Error(), tc.want) {
					t.Fatalf("read: %v; want a read error mentioning %q, or one from sigstore-go", s.Err, tc.want)
				}
				return
			}
			_, err := vs.verify(t, s, verify.WithoutArtifactUnsafe())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify: %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// A bundle whose envelope or certificate differ from what this package
// read (a parser differential) has no entity.
func TestEntityRefusesADifferentBundle(t *testing.T) {
	vs := newVirtualSigstore(t)
	good := SignatureFromBundle(vs.bundleV03(t, statementFor(appV2, CosignPredicateType)), "referrer x")
	if good.Err != nil {
		t.Fatal(good.Err)
	}
	if _, err := good.Entity(); err != nil {
		t.Fatal(err)
	}
	otherCert := SignatureFromBundle(vs.bundleV03(t, statementFor(appV2, CosignPredicateType)), "").Certificate
	for _, tc := range []struct {
		name   string
		change func(*Signature)
		want   string
	}{
		{"payload", func(s *Signature) {
			s.Payload = statementFor(appV1, CosignPredicateType)
			s.Signed = PAE(s.PayloadType, s.Payload)
		}, "envelope sigstore-go read differs"},
		{"payload type", func(s *Signature) {
			s.PayloadType = "application/json"
			s.Signed = PAE(s.PayloadType, s.Payload)
		}, "envelope sigstore-go read differs"},
		{"signature", func(s *Signature) { s.Sig = append(bytes.Clone(s.Sig), 0) }, "envelope sigstore-go read differs"},
		{"signed bytes", func(s *Signature) { s.Signed = append(bytes.Clone(s.Signed), ' ') }, "differs from the signed bytes"},
		{"certificate", func(s *Signature) { s.Certificate = otherCert }, "certificate sigstore-go read differs"},
		{"bundle sigstore-go refuses", func(s *Signature) {
			s.Bundle = bytes.Replace(s.Bundle, []byte(BundleMediaType), []byte("application/vnd.dev.sigstore.bundle.v0.9+json"), 1)
		}, "sigstore bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.change(&s)
			e, err := s.Entity()
			if err == nil {
				t.Fatalf("Entity accepted it: %v", e)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "referrer x") {
				t.Errorf("error %q does not mention %q and where", err, tc.want)
			}
		})
	}
}

// A bundle v0.3 whose Rekor entry lacks the inclusion proof that version
// requires is refused by sigstore-go when it reads it, not verified.
func TestEntityBundleV03NeedsInclusionProof(t *testing.T) {
	vs := newVirtualSigstore(t)
	var doc map[string]any
	if err := json.Unmarshal(vs.bundleV03(t, statementFor(appV2, CosignPredicateType)), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc["verificationMaterial"].(map[string]any)["tlogEntries"].([]any)[0].(map[string]any), "inclusionProof")
	raw, _ := json.Marshal(doc)
	s := SignatureFromBundle(raw, "")
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if _, err := s.Entity(); err == nil || !strings.Contains(err.Error(), "inclusion proof") {
		t.Fatalf("Entity: %v, want an error about the inclusion proof", err)
	}
}

func TestEntityRefuses(t *testing.T) {
	vs := newVirtualSigstore(t)
	ks := vs.signSimple(t, []byte(`{"a":1}`))
	cert, err := decodeCertificatesPEM(ks.annotations[CertificateAnnotation], CertificateAnnotation)
	if err != nil {
		t.Fatal(err)
	}
	keyless := Signature{Format: FormatSimpleSigning, Payload: []byte(`{"a":1}`), Signed: []byte(`{"a":1}`),
		Sig: []byte("sig"), Certificate: cert[0], Where: "w"}
	for _, tc := range []struct {
		name string
		s    Signature
		want string
	}{
		{"key signature", Signature{Format: FormatSimpleSigning, Payload: []byte("p"), Signed: []byte("p"), Sig: []byte("s")}, "no certificate"},
		{"broken signature", Signature{Format: FormatBundle, Certificate: cert[0], Err: invalidf("bad")}, "bad"},
		{"unknown format", Signature{Format: "x", Certificate: cert[0]}, `format "x"`},
		{"payload not the signed bytes", func() Signature { s := keyless; s.Signed = []byte("other"); return s }(), "differs from the signed bytes"},
		{"attestation payload not the signed bytes", func() Signature {
			s := keyless
			s.Format, s.PayloadType = FormatAttestation, InTotoPayloadType
			return s
		}(), "differs from the signed bytes"},
		{"malformed Rekor bundle", func() Signature { s := keyless; s.RekorBundle = []byte(`{}`); return s }(), "SignedEntryTimestamp"},
		{"Rekor body of an unknown kind", func() Signature {
			s := keyless
			s.RekorBundle = []byte(`{"SignedEntryTimestamp":"c2V0","Payload":{"body":"` + b64([]byte(`{"kind":"nonsense","apiVersion":"0.0.1","spec":{}}`)) +
				`","integratedTime":1,"logIndex":1,"logID":"` + strings.Repeat("ab", 32) + `"}}`)
			return s
		}(), RekorBundleAnnotation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.s.Entity()
			if err == nil {
				t.Fatalf("Entity = %v", e)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	// Without a Rekor bundle the entity converts but has no log entry,
	// which a verifier that requires one refuses.
	e, err := keyless.Entity()
	if err != nil {
		t.Fatal(err)
	}
	if entries, err := e.TlogEntries(); err != nil || len(entries) != 0 {
		t.Errorf("TlogEntries = %v, %v; want none", entries, err)
	}
	if _, err := vs.verify(t, keyless, verify.WithArtifact(bytes.NewReader(keyless.Payload))); err == nil {
		t.Error("verified without a transparency-log entry")
	}
}

func TestParseRekorBundle(t *testing.T) {
	vs := newVirtualSigstore(t)
	good := vs.signSimple(t, []byte(`{"a":1}`)).annotations[RekorBundleAnnotation]
	rb, err := parseRekorBundle([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if rb.kind != "hashedrekord" || rb.apiVersion != "0.0.1" || rb.logIndex != 1000 || rb.integratedTime <= 0 || len(rb.logID) != 32 || len(rb.set) == 0 {
		t.Errorf("parsed %+v", rb)
	}
	var doc cosignRekorBundle
	if err := json.Unmarshal([]byte(good), &doc); err != nil {
		t.Fatal(err)
	}
	body := doc.Payload.Body.(string)
	for _, tc := range []struct{ name, in, want string }{
		{"not JSON", "bundle", "invalid JSON"},
		{"bad JSON", good[:len(good)-1], "invalid JSON"},
		{"duplicate key", strings.Replace(good, `"Payload":`, `"Payload":{},"Payload":`, 1), "duplicate key"},
		{"unknown key", strings.Replace(good, `"Payload":`, `"Extra":1,"Payload":`, 1), `unknown key "Extra"`},
		{"key in another case", strings.Replace(good, `"logID"`, `"LogID"`, 1), "differs in case"},
		{"bad base64 SET", strings.Replace(good, `"SignedEntryTimestamp":"`, `"SignedEntryTimestamp":"*`, 1), "SignedEntryTimestamp: invalid base64"},
		{"SET null", strings.Replace(good, `"SignedEntryTimestamp":"`+b64(doc.SignedEntryTimestamp)+`"`, `"SignedEntryTimestamp":null`, 1), "not a JSON string"},
		{"bad base64 body", strings.Replace(good, body, body[:len(body)-4]+"!!!!", 1), "body: invalid base64"},
		{"body not JSON", strings.Replace(good, body, b64([]byte("not json")), 1), "body: invalid JSON"},
		{"body without kind", strings.Replace(good, body, b64([]byte(`{"apiVersion":"0.0.1"}`)), 1), "body.kind"},
		{"body with numeric apiVersion", strings.Replace(good, body, b64([]byte(`{"kind":"hashedrekord","apiVersion":1}`)), 1), "body.apiVersion"},
		{"negative log index", strings.Replace(good, `"logIndex":1000`, `"logIndex":-1`, 1), "logIndex"},
		{"fractional time", strings.Replace(good, fmt.Sprintf(`"integratedTime":%d`, doc.Payload.IntegratedTime), `"integratedTime":1.5`, 1), "integratedTime"},
		{"exponent time", strings.Replace(good, fmt.Sprintf(`"integratedTime":%d`, doc.Payload.IntegratedTime), `"integratedTime":1e9`, 1), "integratedTime"},
		{"string log index", strings.Replace(good, `"logIndex":1000`, `"logIndex":"1000"`, 1), "logIndex: not a JSON number"},
		{"log index overflow", strings.Replace(good, `"logIndex":1000`, `"logIndex":99999999999999999999`, 1), "logIndex"},
		{"upper-case log ID", strings.Replace(good, doc.Payload.LogID, strings.ToUpper(doc.Payload.LogID), 1), "logID"},
		{"short log ID", strings.Replace(good, doc.Payload.LogID, doc.Payload.LogID[:10], 1), "logID"},
		{"oversized", strings.Replace(good, `"Payload":`, `"Pad":"`+strings.Repeat("x", maxKeylessAnnotationSize)+`","Payload":`, 1), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in == good {
				t.Fatal("test case did not change the annotation")
			}
			if _, err := parseRekorBundle([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

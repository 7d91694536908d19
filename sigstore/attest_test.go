package sigstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// attPredicate is a small SLSA v1 provenance predicate.
const attPredicate = `{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{"repo":"a<b>&c"}},` +
	`"runDetails":{"builder":{"id":"https://example.com/builder"}}}`

func TestParsePredicateTypeKnowsCosignsShortNames(t *testing.T) {
	// The URIs of cosign v3.1.2's options.PredicateTypeMap (in-toto-golang
	// and cosign's pkg/cosign/attestation constants).
	want := map[string]string{
		"custom":           "https://cosign.sigstore.dev/attestation/v1",
		"slsaprovenance":   "https://slsa.dev/provenance/v0.2",
		"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
		"slsaprovenance1":  "https://slsa.dev/provenance/v1",
		"spdx":             "https://spdx.dev/Document",
		"spdxjson":         "https://spdx.dev/Document",
		"cyclonedx":        "https://cyclonedx.org/bom",
		"link":             "https://in-toto.io/Link/v1",
		"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
		"openvex":          "https://openvex.dev/ns",
	}
	for short, uri := range want {
		got, err := ParsePredicateType(short)
		if err != nil || got != uri {
			t.Errorf("ParsePredicateType(%q) = %q, %v; want %q", short, got, err, uri)
		}
	}
	if names := PredicateTypeNames(); len(names) != len(want) || !slices.IsSorted(names) {
		t.Errorf("PredicateTypeNames() = %v, want the %d names sorted", names, len(want))
	}
	for _, uri := range []string{"https://example.com/predicate/v1", "urn:example:predicate"} {
		if got, err := ParsePredicateType(uri); err != nil || got != uri {
			t.Errorf("ParsePredicateType(%q) = %q, %v; want it as given", uri, got, err)
		}
	}
	for _, bad := range []string{"", "slsa", "SLSAProvenance", "/relative/path", "https://", "https://a b/c", "https://x/\n"} {
		if got, err := ParsePredicateType(bad); err == nil {
			t.Errorf("ParsePredicateType(%q) = %q, want an error", bad, got)
		}
	}
}

func TestAttestationPredicateWrapsCustomAsCosign(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600))
	pt, p, err := AttestationPredicate("custom", []byte(`{"a": 1}`+"\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Data":"{\"a\": 1}\n","Timestamp":"2026-03-04T04:06:07Z"}`
	if pt != PredicateCustom || string(p) != want {
		t.Errorf("custom: %q %s, want %q %s", pt, p, PredicateCustom, want)
	}
	// The custom URI itself, like any other type, takes the object as is
	// (cosign wraps only for the short name).
	for _, typ := range []string{PredicateCustom, "slsaprovenance1", "https://example.com/p"} {
		_, p, err := AttestationPredicate(typ, []byte(attPredicate), now)
		if err != nil || string(p) != attPredicate {
			t.Errorf("%s: predicate %s, %v; want the file as is", typ, p, err)
		}
	}
}

func TestAttestationPredicateRefusesWhatIsNotOneJSONObject(t *testing.T) {
	big := `{"x":"` + strings.Repeat("a", MaxAttestationSize) + `"}`
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	for _, tc := range []struct{ name, file, want string }{
		{"empty", "", "empty"},
		{"blank", " \n", "empty"},
		{"array", `[1,2]`, "not a JSON object"},
		{"string", `"text"`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"two values", `{} {}`, ""},
		{"duplicate key", `{"a":1,"a":2}`, "a"},
		{"truncated", `{"a":`, ""},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", ""},
		{"too deep", deep, ""},
		{"too large", big, "limit"},
	} {
		for _, typ := range []string{"custom", "spdxjson"} {
			_, _, err := AttestationPredicate(typ, []byte(tc.file), time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, --type %s: err = %v, want one containing %q", tc.name, typ, err, tc.want)
			}
		}
	}
	if _, _, err := AttestationPredicate("nonsense", []byte(`{}`), time.Now()); err == nil {
		t.Error("unknown type: no error")
	}
}

var attDigest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}

func TestNewStatementIsInTotoV1(t *testing.T) {
	st, err := NewStatement("registry.example/app", attDigest, PredicateSLSA1, []byte("{\n  \"b\": [1, 2],\n  \"a\": \"<&>\"\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example/app","digest":{"sha256":"` +
		attDigest.Hex + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"b":[1,2],"a":"<&>"}}`
	if string(st) != want {
		t.Errorf("statement\n%s\nwant\n%s", st, want)
	}
	st, err = NewStatement("registry.example/app", attDigest, PredicateSLSA1, []byte(`{}`), map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(st, []byte(`"annotations":{"env":"prod"}`)) {
		t.Errorf("statement %s lacks the subject's annotations", st)
	}
	c, err := Signature{Format: FormatAttestation, Payload: st, PayloadType: InTotoPayloadType, Signed: PAE(InTotoPayloadType, st)}.Claims()
	if err != nil || c.PredicateType != PredicateSLSA1 || !slices.Equal(c.Digests, []v1.Hash{attDigest}) || c.AnnotationsOf(attDigest)["env"] != "prod" {
		t.Errorf("claims of the statement: %+v, %v", c, err)
	}
}

func TestNewStatementRefusesBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name          string
		repo          string
		digest        v1.Hash
		predicateType string
		predicate     string
	}{
		{"no repository", "", attDigest, PredicateSLSA1, `{}`},
		{"bad digest", "r/x", v1.Hash{Algorithm: "sha256", Hex: "AB"}, PredicateSLSA1, `{}`},
		{"sha512 digest", "r/x", v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("a", 128)}, PredicateSLSA1, `{}`},
		{"short name as type", "r/x", attDigest, "slsaprovenance1", `{}`},
		{"cosign's signing type", "r/x", attDigest, CosignPredicateType, `{}`},
		{"predicate not an object", "r/x", attDigest, PredicateSLSA1, `[]`},
		{"predicate with duplicate keys", "r/x", attDigest, PredicateSLSA1, `{"a":1,"a":1}`},
	} {
		if st, err := NewStatement(tc.repo, tc.digest, tc.predicateType, []byte(tc.predicate), nil); err == nil {
			t.Errorf("%s: statement %s, want an error", tc.name, st)
		}
	}
}

// attStatement is a statement about d.
func attStatement(t *testing.T, d name.Digest, predicateType string) []byte {
	t.Helper()
	st, err := NewStatement(d.Context().Name(), mustHash(d.DigestStr()), predicateType, []byte(attPredicate), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestNewAttestationEnvelopeIsCosignsAndVerifies(t *testing.T) {
	key := newKey(t)
	st, err := NewStatement("r.example/app", attDigest, PredicateSPDX, []byte(`{"spdxVersion":"SPDX-2.3"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	env, err := NewAttestationEnvelope(key, st)
	if err != nil {
		t.Fatal(err)
	}
	// cosign v3.1.2's field order, and no keyid.
	var doc struct {
		Payload     string `json:"payload"`
		PayloadType string `json:"payloadType"`
		Signatures  []struct {
			Sig string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(env, &doc); err != nil {
		t.Fatal(err)
	}
	prefix := `{"payload":"` + base64.StdEncoding.EncodeToString(st) + `","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"`
	if !strings.HasPrefix(string(env), prefix) || !strings.HasSuffix(string(env), `"}]}`) || len(doc.Signatures) != 1 {
		t.Fatalf("envelope %s\nwant %s<sig>\"}]}", env, prefix)
	}
	sig, err := base64.StdEncoding.DecodeString(doc.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Public().Verify(PAE(InTotoPayloadType, st), sig); err != nil {
		t.Errorf("the envelope's signature does not verify over PAE: %v", err)
	}
	if err := newKey(t).Public().Verify(PAE(InTotoPayloadType, st), sig); err == nil {
		t.Error("another key verifies the envelope's signature")
	}
	s := SignatureFromEnvelope(env, "test")
	if s.Err != nil || !bytes.Equal(s.Payload, st) {
		t.Fatalf("the reader reads the envelope as %+v", s)
	}
	back, err := EnvelopeJSON(s)
	if err != nil || !bytes.Equal(back, env) {
		t.Errorf("EnvelopeJSON = %s, %v; want the envelope as written", back, err)
	}
}

func TestEnvelopeJSONRefusesWhatIsNoDSSE(t *testing.T) {
	for _, s := range []Signature{
		{Format: FormatSimpleSigning, Payload: []byte("{}"), Signed: []byte("{}"), Sig: []byte("x")},
		{Format: FormatBundle, Err: ErrInvalidArtifact},
		{Format: FormatAttestation, PayloadType: InTotoPayloadType, Payload: []byte("{}"), Signed: []byte("{}"), Sig: []byte("x")},
	} {
		if b, err := EnvelopeJSON(s); err == nil {
			t.Errorf("EnvelopeJSON(%+v) = %s, want an error", s, b)
		}
	}
}

// attLayer is one layer of an .att manifest, with its blob.
type attLayer struct {
	desc v1.Descriptor
	blob []byte
}

// attLayers reads the .att manifest of d: its media types and layers.
func attLayers(t *testing.T, r *testRegistry, d name.Digest) (*v1.Manifest, []attLayer) {
	t.Helper()
	raw := getManifest(t, r, writeRepo, AttestationTag(mustHash(d.DigestStr())))
	if raw == nil {
		return nil, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []attLayer
	for _, l := range m.Layers {
		blob, err := NewFetcher(r.URL, nil).Blob(context.Background(), writeRepo, Descriptor{MediaType: string(l.MediaType), Digest: l.Digest, Size: l.Size}, MaxAttestationSize)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, attLayer{l, blob})
	}
	return m, out
}

func TestAppendAttestationLayoutIsCosigns(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	key := newKey(t)
	env, err := NewAttestationEnvelope(key, attStatement(t, d, PredicateSLSA1))
	if err != nil {
		t.Fatal(err)
	}
	tagsBefore := tagList(t, r, writeRepo)
	added, err := AppendAttestation(context.Background(), d, env)
	if err != nil || !added {
		t.Fatalf("AppendAttestation = %t, %v", added, err)
	}
	m, layers := attLayers(t, r, d)
	if m == nil || len(layers) != 1 {
		t.Fatalf("the .att manifest has %d layers, want 1", len(layers))
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s with config %s, want an OCI image manifest with an OCI config, as cosign writes", m.MediaType, m.Config.MediaType)
	}
	l := layers[0]
	wantAnn := map[string]string{SignatureAnnotation: "", PredicateTypeAnnotation: PredicateSLSA1}
	if l.desc.MediaType != "application/vnd.dsse.envelope.v1+json" || !mapsEqual(l.desc.Annotations, wantAnn) || !bytes.Equal(l.blob, env) {
		t.Errorf("layer %s %v, blob %s; want the DSSE media type, annotations %v and the envelope", l.desc.MediaType, l.desc.Annotations, l.blob, wantAnn)
	}
	tagsAfter := tagList(t, r, writeRepo)
	wantTags := append(slices.Clone(tagsBefore), AttestationTag(mustHash(d.DigestStr())))
	slices.Sort(wantTags)
	if !slices.Equal(tagsAfter, wantTags) {
		t.Errorf("tags %v after attesting, want %v: only the .att tag added", tagsAfter, wantTags)
	}

	// The same envelope again: nothing added. Another one: appended.
	if added, err := AppendAttestation(context.Background(), d, env); err != nil || added {
		t.Errorf("same envelope again: added = %t, %v; want false, nil", added, err)
	}
	env2, err := NewAttestationEnvelope(newKey(t), attStatement(t, d, PredicateSPDX))
	if err != nil {
		t.Fatal(err)
	}
	if added, err := AppendAttestation(context.Background(), d, env2); err != nil || !added {
		t.Fatalf("second attestation: added = %t, %v", added, err)
	}
	if _, layers := attLayers(t, r, d); len(layers) != 2 || !bytes.Equal(layers[0].blob, env) || !bytes.Equal(layers[1].blob, env2) ||
		layers[1].desc.Annotations[PredicateTypeAnnotation] != PredicateSPDX {
		t.Errorf("after a second attestation: %d layers, want the first kept and the second appended with its predicate type", len(layers))
	}
	sigs, err := NewFetcher(r.URL, nil).Attestations(context.Background(), writeRepo, mustHash(d.DigestStr()))
	if err != nil || len(sigs) != 2 {
		t.Fatalf("Fetcher.Attestations: %d, %v; want both", len(sigs), err)
	}
	for _, s := range sigs {
		if s.Err != nil || s.Format != FormatAttestation {
			t.Errorf("read back %s: %v (%s)", s.Where, s.Err, s.Format)
		}
	}
	if key.Public().Verify(sigs[0].Signed, sigs[0].Sig) != nil {
		t.Error("the key does not verify the attestation read back")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestAppendAttestationConcurrentAttestersAllKept(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	keys := newKeys(t, 8)
	st := attStatement(t, d, PredicateSLSA1)
	concurrently(t, keys, func(ctx context.Context, k PrivateKey) error {
		env, err := NewAttestationEnvelope(k, st)
		if err != nil {
			return err
		}
		added, err := AppendAttestation(ctx, d, env)
		if err == nil && !added {
			err = errors.New("added = false for a new attestation")
		}
		return err
	})
	sigs, err := NewFetcher(r.URL, nil).Attestations(context.Background(), writeRepo, mustHash(d.DigestStr()))
	if err != nil {
		t.Fatal(err)
	}
	if n := verifiedBy(sigs, keys); n != len(keys) || len(sigs) != len(keys) {
		t.Errorf("%d attestations stored, %d of %d keys verify one; want all kept", len(sigs), n, len(keys))
	}
}

// isAttTag matches manifest paths of .att tags.
func isAttTag(path string) bool { return strings.HasSuffix(path, ".att") }

func TestAppendAttestationReaddsWhatAConcurrentWriterDropped(t *testing.T) {
	var old atomic.Pointer[[]byte]
	var reverts, puts atomic.Int32
	r := newTestRegistry(t, false, countPuts(isAttTag, &puts), revertTag(isAttTag, &old, &reverts))
	d, _ := pushImage(t, r)
	k1, k2 := newKey(t), newKey(t)
	st := attStatement(t, d, PredicateSLSA1)
	env1, _ := NewAttestationEnvelope(k1, st)
	env2, _ := NewAttestationEnvelope(k2, st)
	if _, err := AppendAttestation(context.Background(), d, env1); err != nil {
		t.Fatal(err)
	}
	before := getManifest(t, r, writeRepo, AttestationTag(mustHash(d.DigestStr())))
	old.Store(&before)
	reverts.Store(1)
	puts.Store(0)
	if added, err := AppendAttestation(context.Background(), d, env2); err != nil || !added {
		t.Fatalf("AppendAttestation = %t, %v", added, err)
	}
	if n := puts.Load(); n != 2 {
		t.Errorf("%d pushes of the .att manifest, want 2 (the dropped one and the one that kept it)", n)
	}
	if _, layers := attLayers(t, r, d); len(layers) != 2 {
		t.Errorf("%d layers, want both attestations kept", len(layers))
	}
}

func TestAppendAttestationRefusesWhatNoVerifierReads(t *testing.T) {
	r := newTestRegistry(t, false)
	d, _ := pushImage(t, r)
	key := newKey(t)
	st := attStatement(t, d, PredicateSLSA1)
	good, _ := NewAttestationEnvelope(key, st)
	otherDigest := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}
	forOther, err := NewStatement(d.Context().Name(), otherDigest, PredicateSLSA1, []byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	envOther, _ := NewAttestationEnvelope(key, forOther)
	signing, _ := NewBundle(key, mustHash(d.DigestStr()), nil) // a cosign signature statement
	signingEnv := SignatureFromBundle(signing, "")
	envSigning, _ := EnvelopeJSON(signingEnv)
	wrongType := bytes.Replace(good, []byte(`"application/vnd.in-toto+json"`), []byte(`"text/plain"`), 1)
	twoSigs := bytes.Replace(good, []byte(`"signatures":[{`), []byte(`"signatures":[{"sig":"AAAA"},{`), 1)
	huge := bytes.Repeat([]byte(" "), MaxAttestationSize+1)
	for _, tc := range []struct {
		name     string
		env      []byte
		d        name.Digest
		contains string
	}{
		{"statement for another digest", envOther, d, "do not name"},
		{"a signature, not an attestation", envSigning, d, "not an attestation"},
		{"payload type not in-toto", wrongType, d, "payloadType"},
		{"two signatures", twoSigs, d, "signatures"},
		{"not JSON", []byte("junk"), d, "DSSE envelope"},
		{"empty", nil, d, "empty"},
		{"too large", huge, d, "MaxAttestationSize"},
	} {
		r.reset()
		added, err := AppendAttestation(context.Background(), tc.d, tc.env)
		if err == nil || added || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: added = %t, err = %v; want an error containing %q", tc.name, added, err, tc.contains)
		}
		if got := r.recorded(); len(got) != 0 {
			t.Errorf("%s: refused envelope still reached the registry: %v", tc.name, got)
		}
	}
}

func TestWriteAttestationBundleIsAReferrerWithItsPredicateType(t *testing.T) {
	for _, referrers := range []bool{false, true} {
		t.Run(fmt.Sprintf("referrers API %t", referrers), func(t *testing.T) {
			r := newTestRegistry(t, referrers)
			d, desc := pushImage(t, r)
			key := newKey(t)
			b, err := NewAttestationBundle(key, attStatement(t, d, PredicateCycloneDX))
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteAttestationBundle(context.Background(), d, desc, b); err != nil {
				t.Fatal(err)
			}
			sigs, err := NewFetcher(r.URL, nil).Signatures(context.Background(), writeRepo, desc.Digest)
			if err != nil || len(sigs) != 1 {
				t.Fatalf("Signatures: %d, %v; want the bundle", len(sigs), err)
			}
			s := sigs[0]
			if s.Err != nil || s.Format != FormatBundle || !bytes.Equal(s.Bundle, b) || key.Public().Verify(s.Signed, s.Sig) != nil {
				t.Fatalf("bundle read back: %+v", s)
			}
			c, err := s.Claims()
			if err != nil || c.PredicateType != PredicateCycloneDX {
				t.Errorf("claims %+v, %v; want predicate type %s", c, err, PredicateCycloneDX)
			}
			// The referrer manifest names the predicate type, as cosign's does.
			var hint struct {
				VerificationMaterial struct {
					PublicKey struct{ Hint string } `json:"publicKey"`
				} `json:"verificationMaterial"`
			}
			if err := json.Unmarshal(b, &hint); err != nil || hint.VerificationMaterial.PublicKey.Hint == "" {
				t.Errorf("bundle %s has no publicKey hint (%v)", b, err)
			}
			m := referrerManifestOf(t, r, s.Where)
			if m.ArtifactType != BundleMediaType || m.Annotations[bundlePredicateTypeAnnotation] != PredicateCycloneDX ||
				m.Annotations[bundleContentAnnotation] != "dsse-envelope" || m.Subject == nil || m.Subject.Digest != desc.Digest {
				t.Errorf("referrer manifest %+v: want artifactType %s, annotations predicateType %s and content dsse-envelope, subject %s",
					m, BundleMediaType, PredicateCycloneDX, desc.Digest)
			}
		})
	}
}

// referrerManifestOf reads the manifest of "referrer sha256:...".
func referrerManifestOf(t *testing.T, r *testRegistry, where string) *v1.Manifest {
	t.Helper()
	digest, ok := strings.CutPrefix(where, "referrer ")
	if !ok {
		t.Fatalf("signature found at %q, not a referrer", where)
	}
	m, err := v1.ParseManifest(bytes.NewReader(getManifest(t, r, writeRepo, digest)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriteAttestationBundleRefusesBadArguments(t *testing.T) {
	r := newTestRegistry(t, false)
	d, desc := pushImage(t, r)
	key := newKey(t)
	good, _ := NewAttestationBundle(key, attStatement(t, d, PredicateSLSA1))
	forOther, _ := NewStatement(d.Context().Name(), v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}, PredicateSLSA1, []byte(`{}`), nil)
	other, _ := NewAttestationBundle(key, forOther)
	signing, _ := NewBundle(key, desc.Digest, nil)
	wrongSubject := desc
	wrongSubject.Size = 0
	for _, tc := range []struct {
		name     string
		subject  v1.Descriptor
		bundle   []byte
		contains string
	}{
		{"statement for another digest", desc, other, "do not name"},
		{"a signature bundle", desc, signing, "not an attestation"},
		{"not a bundle", desc, []byte(`{"mediaType":"x"}`), "bundle"},
		{"empty", desc, nil, "empty"},
		{"subject without size", wrongSubject, good, "does not describe"},
	} {
		r.reset()
		err := WriteAttestationBundle(context.Background(), d, tc.subject, tc.bundle)
		if err == nil || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.contains)
		}
		if got := r.recorded(); len(got) != 0 {
			t.Errorf("%s: refused bundle still reached the registry: %v", tc.name, got)
		}
	}
}

// FuzzAttestationRoundTrip checks that whatever predicate attest accepts
// makes a statement that the reader parses back, naming the digest and
// the predicate type, with the same predicate.
func FuzzAttestationRoundTrip(f *testing.F) {
	f.Add([]byte(attPredicate), false)
	f.Add([]byte(`{"a":"\u00e9\ud83d\ude00","b":[1,2.5e3,null,true],"c":{}}`), true)
	f.Add([]byte(" {\"x\" : \"<script>&\"}\n"), false)
	f.Fuzz(func(t *testing.T, file []byte, custom bool) {
		typ := "spdxjson"
		if custom {
			typ = "custom"
		}
		pt, predicate, err := AttestationPredicate(typ, file, time.Unix(0, 0))
		if err != nil {
			return
		}
		st, err := NewStatement("registry.example/app", attDigest, pt, predicate, nil)
		if err != nil {
			t.Fatalf("an accepted predicate %q makes no statement: %v", file, err)
		}
		s := Signature{Format: FormatAttestation, Payload: st, PayloadType: InTotoPayloadType, Signed: PAE(InTotoPayloadType, st)}
		c, err := s.Claims()
		if err != nil || c.PredicateType != pt || !slices.Equal(c.Digests, []v1.Hash{attDigest}) {
			t.Fatalf("statement %s reads back as %+v, %v", st, c, err)
		}
		var want, got any
		if err := json.Unmarshal(predicate, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(c.Predicate, &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("predicate %s reads back as %s", predicate, c.Predicate)
		}
	})
}

package sigstore_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

func TestPAE(t *testing.T) {
	for _, tc := range []struct {
		typ, body, want string
	}{
		// The example of the DSSE protocol document.
		{"http://example.com/HelloWorld", "hello world", "DSSEv1 29 http://example.com/HelloWorld 11 hello world"},
		{"", "", "DSSEv1 0  0 "},
		{"application/vnd.in-toto+json", "{}", "DSSEv1 28 application/vnd.in-toto+json 2 {}"},
		// Lengths count bytes, not runes.
		{"t", "é", "DSSEv1 1 t 2 é"},
	} {
		if got := string(sigstore.PAE(tc.typ, []byte(tc.body))); got != tc.want {
			t.Errorf("PAE(%q, %q) = %q, want %q", tc.typ, tc.body, got, tc.want)
		}
	}
}

func TestSignatureFromBundleInterop(t *testing.T) {
	raw := interopFile(t, "blobs/"+interopBundle)
	s := sigstore.SignatureFromBundle(raw, "referrer sha256:92fd")
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if s.Format != sigstore.FormatBundle || s.PayloadType != sigstore.InTotoPayloadType || s.Where != "referrer sha256:92fd" || !bytes.Equal(s.Bundle, raw) {
		t.Errorf("Signature = %+v", s)
	}
	if !bytes.Equal(s.Signed, sigstore.PAE(s.PayloadType, s.Payload)) {
		t.Error("Signed is not PAE(PayloadType, Payload)")
	}
	if !bytes.HasPrefix(s.Payload, []byte(`{"_type":"https://in-toto.io/Statement/v1"`)) {
		t.Errorf("Payload = %s", s.Payload)
	}
	if err := interopPublicKey(t, "ecdsa.pub").Verify(s.Signed, s.Sig); err != nil {
		t.Errorf("ecdsa.pub: %v", err)
	}
	c, err := s.Claims()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Digests) != 1 || c.Digests[0].String() != interopAppV2Digest || c.Reference != "" || len(c.Annotations) != 0 {
		t.Errorf("Claims = %+v", c)
	}
}

// NewBundle writes what cosign writes for the same key and digest: the
// same bundle and statement structure, the same key hint; only the
// signature (randomized ECDSA) and protojson's spacing differ.
func TestNewBundleMatchesCosign(t *testing.T) {
	key := interopPrivateKey(t, "ecdsa.key")
	raw, err := sigstore.NewBundle(key, mustHash(t, interopAppV2Digest), nil)
	if err != nil {
		t.Fatal(err)
	}
	cosign := interopBundleSignature(t)
	mine := sigstore.SignatureFromBundle(raw, "new")
	if mine.Err != nil {
		t.Fatal(mine.Err)
	}
	if !reflect.DeepEqual(decodeJSON(t, mine.Payload), decodeJSON(t, cosign.Payload)) {
		t.Errorf("statement\n%s\ncosign's\n%s", mine.Payload, cosign.Payload)
	}
	want, got := decodeJSON(t, cosign.Bundle).(map[string]any), decodeJSON(t, raw).(map[string]any)
	for _, m := range []map[string]any{want, got} {
		env := m["dsseEnvelope"].(map[string]any)
		env["payload"], env["signatures"].([]any)[0].(map[string]any)["sig"] = "-", "-"
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bundle\n%v\ncosign's\n%v", got, want)
	}
	if err := interopPublicKey(t, "ecdsa.pub").Verify(mine.Signed, mine.Sig); err != nil {
		t.Errorf("ecdsa.pub does not verify NewBundle's signature: %v", err)
	}
}

func TestNewBundleAnnotations(t *testing.T) {
	key := newECDSAKey(t)
	raw, err := sigstore.NewBundle(key, mustHash(t, interopAppDigest), map[string]string{"env": "prod", "team": "a"})
	if err != nil {
		t.Fatal(err)
	}
	s := sigstore.SignatureFromBundle(raw, "")
	if err := key.Public().Verify(s.Signed, s.Sig); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claims()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.AnnotationsOf(c.Digests[0]), map[string]string{"env": "prod", "team": "a"}) || c.Digests[0].String() != interopAppDigest {
		t.Errorf("Claims = %+v", c)
	}
	if !bytes.Contains(s.Payload, []byte(`"annotations":{"env":"prod","team":"a"}`)) {
		t.Errorf("annotations not in the subject: %s", s.Payload)
	}
}

func TestNewBundleRejects(t *testing.T) {
	key := newECDSAKey(t)
	if _, err := sigstore.NewBundle(nil, mustHash(t, interopAppDigest), nil); err == nil {
		t.Error("nil key accepted")
	}
	bad := mustHash(t, interopAppDigest)
	bad.Hex = strings.ToUpper(bad.Hex)
	if _, err := sigstore.NewBundle(key, bad, nil); err == nil {
		t.Error("uppercase digest accepted")
	}
}

// The statement, envelope fields and signature of the vector, for
// rebuilding bundles around them.
type bundleParts struct {
	payload, payloadType, sig, hint string
}

func interopBundleParts(t *testing.T) bundleParts {
	t.Helper()
	var b struct {
		VerificationMaterial struct {
			PublicKey struct{ Hint string } `json:"publicKey"`
		} `json:"verificationMaterial"`
		DSSEEnvelope struct {
			Payload, PayloadType string
			Signatures           []struct{ Sig string }
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(interopFile(t, "blobs/"+interopBundle), &b); err != nil {
		t.Fatal(err)
	}
	return bundleParts{b.DSSEEnvelope.Payload, b.DSSEEnvelope.PayloadType, b.DSSEEnvelope.Signatures[0].Sig, b.VerificationMaterial.PublicKey.Hint}
}

func obj(members ...string) string { return "{" + strings.Join(members, ",") + "}" }
func member(k, v string) string    { return `"` + k + `":` + v }
func str(s string) string          { return `"` + s + `"` }

func (p bundleParts) envelope(extra ...string) string {
	return obj(append([]string{member("payload", str(p.payload)), member("payloadType", str(p.payloadType)),
		member("signatures", "["+obj(member("sig", str(p.sig)))+"]")}, extra...)...)
}

func (p bundleParts) bundle(mediaType, envelope string) string {
	return obj(member("mediaType", str(mediaType)), member("verificationMaterial", obj(member("publicKey", obj(member("hint", str(p.hint)))))),
		member("dsseEnvelope", envelope))
}

// Re-encodings of the vector the protobuf JSON reader also accepts.
func TestSignatureFromBundleAccepts(t *testing.T) {
	p := interopBundleParts(t)
	payload, err := base64.StdEncoding.DecodeString(p.payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(p.sig)
	if err != nil {
		t.Fatal(err)
	}
	urlSafe := p
	urlSafe.payload, urlSafe.sig = base64.RawURLEncoding.EncodeToString(payload), base64.URLEncoding.EncodeToString(sig)
	for _, tc := range []struct{ name, in string }{
		{"vector rebuilt", p.bundle(sigstore.BundleMediaType, p.envelope())},
		{"URL-safe and unpadded base64", urlSafe.bundle(sigstore.BundleMediaType, urlSafe.envelope())},
		{"keyid hint", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), `{"sig"`, `{"keyid":"","sig"`, 1))},
		{"bundle v0.1", p.bundle(sigstore.BundleMediaTypeV01, p.envelope())},
		{"bundle v0.2", p.bundle(sigstore.BundleMediaTypeV02, p.envelope())},
		{"bundle v0.3 in the older spelling", p.bundle("application/vnd.dev.sigstore.bundle+json;version=0.3", p.envelope())},
		{"publicKey without hint", strings.Replace(p.bundle(sigstore.BundleMediaType, p.envelope()), member("hint", str(p.hint)), "", 1)},
		{"empty tlogEntries and timestampVerificationData", strings.Replace(p.bundle(sigstore.BundleMediaType, p.envelope()), `"verificationMaterial":{`,
			`"verificationMaterial":{"tlogEntries":[],"timestampVerificationData":{},`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sigstore.SignatureFromBundle([]byte(tc.in), "")
			if s.Err != nil {
				t.Fatal(s.Err)
			}
			if err := interopPublicKey(t, "ecdsa.pub").Verify(s.Signed, s.Sig); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSignatureFromBundleRejects(t *testing.T) {
	p := interopBundleParts(t)
	ok := p.bundle(sigstore.BundleMediaType, p.envelope())
	twoSigs := strings.Replace(p.envelope(), `"signatures":[`, `"signatures":[{"sig":"MEYC"},`, 1)
	for _, tc := range []struct{ name, in, want string }{
		{"media type v0.2 in the v0.3 spelling", p.bundle("application/vnd.dev.sigstore.bundle.v0.2+json", p.envelope()), `mediaType "application/vnd.dev.sigstore.bundle.v0.2+json"`},
		{"media type v0.4", p.bundle("application/vnd.dev.sigstore.bundle.v0.4+json", p.envelope()), "mediaType"},
		{"media type with parameters", p.bundle(sigstore.BundleMediaTypeV01+";charset=utf-8", p.envelope()), "mediaType"},
		{"empty verificationMaterial", strings.Replace(ok, obj(member("publicKey", obj(member("hint", str(p.hint))))), "{}", 1), "holds 0 of publicKey"},
		{"unknown verificationMaterial key", strings.Replace(ok, `"verificationMaterial":{`, `"verificationMaterial":{"tlogEntry":[],`, 1), `unknown key "tlogEntry"`},
		{"tlogEntries not an array", strings.Replace(ok, `"verificationMaterial":{`, `"verificationMaterial":{"tlogEntries":{},`, 1), "tlogEntries: not a JSON array"},
		{"timestampVerificationData not an object", strings.Replace(ok, `"verificationMaterial":{`, `"verificationMaterial":{"timestampVerificationData":[],`, 1), "timestampVerificationData: not a JSON object"},
		{"hint not a string", strings.Replace(ok, str(p.hint), "1", 1), "hint: not a JSON string"},
		{"unknown publicKey key", strings.Replace(ok, `{"hint"`, `{"rawBytes":"","hint"`, 1), `unknown key "rawBytes"`},
		{"media type in another case", p.bundle(strings.ToUpper(sigstore.BundleMediaType), p.envelope()), "mediaType"},
		{"missing mediaType", strings.Replace(ok, member("mediaType", str(sigstore.BundleMediaType))+",", "", 1), `missing key "mediaType"`},
		{"missing verificationMaterial", obj(member("mediaType", str(sigstore.BundleMediaType)), member("dsseEnvelope", p.envelope())), `missing key "verificationMaterial"`},
		{"verificationMaterial not an object", strings.Replace(ok, `"verificationMaterial":{`, `"verificationMaterial":[{`, 1), "invalid JSON"},
		{"verificationMaterial null", obj(member("mediaType", str(sigstore.BundleMediaType)), member("verificationMaterial", "null"), member("dsseEnvelope", p.envelope())), "verificationMaterial: not a JSON object"},
		{"messageSignature bundle", strings.Replace(ok, `"dsseEnvelope"`, `"messageSignature"`, 1), "messageSignature"},
		{"messageSignature beside dsseEnvelope", strings.Replace(ok, `"dsseEnvelope"`, `"messageSignature":{},"dsseEnvelope"`, 1), "messageSignature"},
		{"no content", obj(member("mediaType", str(sigstore.BundleMediaType)), member("verificationMaterial", "{}")), "dsseEnvelope: missing"},
		{"two signatures", p.bundle(sigstore.BundleMediaType, twoSigs), "2 signatures"},
		{"no signatures", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), obj(member("sig", str(p.sig))), "", 1)), "0 signatures"},
		{"signatures null", p.bundle(sigstore.BundleMediaType, obj(member("payload", str(p.payload)), member("payloadType", str(p.payloadType)), member("signatures", "null"))), "not a JSON array"},
		{"empty sig", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), p.sig, "", 1)), "sig: empty"},
		{"bad base64 sig", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), p.sig, "!!!!", 1)), "invalid base64"},
		{"bad base64 payload", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), p.payload, p.payload[:len(p.payload)-1]+"*", 1)), "payload: invalid base64"},
		{"non-canonical base64", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), p.sig, "MEZ=", 1)), "invalid base64"},
		{"sig number", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), str(p.sig), "1", 1)), "not a JSON string"},
		{"keyid number", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), `{"sig"`, `{"keyid":1,"sig"`, 1)), "keyid: not a JSON string"},
		{"empty payloadType", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), str(p.payloadType), `""`, 1)), "payloadType: empty"},
		{"missing payload", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), member("payload", str(p.payload))+",", "", 1)), `missing key "payload"`},
		{"unknown envelope key", p.bundle(sigstore.BundleMediaType, p.envelope(member("payloadSha256", `"x"`))), `unknown key "payloadSha256"`},
		{"unknown signature key", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), `{"sig"`, `{"extension":{},"sig"`, 1)), `unknown key "extension"`},
		{"PayloadType case variant", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), `"payloadType"`, `"PayloadType"`, 1)), `differs in case`},
		{"snake_case member", strings.Replace(ok, `"dsseEnvelope"`, `"dsse_envelope"`, 1), `unknown key "dsse_envelope"`},
		{"unknown top-level key", strings.Replace(ok, `"dsseEnvelope"`, `"timestamp":1,"dsseEnvelope"`, 1), `unknown key "timestamp"`},
		{"duplicate dsseEnvelope", strings.Replace(ok, `"dsseEnvelope"`, `"dsseEnvelope":{},"dsseEnvelope"`, 1), `duplicate key "dsseEnvelope"`},
		{"duplicate payload", p.bundle(sigstore.BundleMediaType, strings.Replace(p.envelope(), `"payloadType"`, `"payload":"e30=","payloadType"`, 1)), `duplicate key "payload"`},
		{"duplicate inside verificationMaterial", strings.Replace(ok, `{"hint"`, `{"hint":"","hint"`, 1), `duplicate key "hint"`},
		{"trailing data", ok + ok, "data after the JSON value"},
		{"not JSON", "bundle", "invalid JSON"},
		{"empty", "", "invalid JSON"},
		{"array", "[" + ok + "]", "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sigstore.SignatureFromBundle([]byte(tc.in), "referrer x")
			if s.Err == nil {
				t.Fatalf("SignatureFromBundle accepted it: %+v", s)
			}
			if !strings.Contains(s.Err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", s.Err, tc.want)
			}
			if !errors.Is(s.Err, sigstore.ErrInvalidArtifact) {
				t.Errorf("error %v does not wrap ErrInvalidArtifact", s.Err)
			}
			if s.Format != sigstore.FormatBundle || s.Where != "referrer x" || s.Signed != nil || s.Sig != nil {
				t.Errorf("Signature = %+v", s)
			}
			if _, err := s.Claims(); err != s.Err {
				t.Errorf("Claims() error = %v, want the signature's Err", err)
			}
		})
	}
}

// A bundle whose payload was changed after signing parses (the format is
// fine) but its signature no longer verifies.
func TestBundleTamperedPayloadDoesNotVerify(t *testing.T) {
	p := interopBundleParts(t)
	payload, err := base64.StdEncoding.DecodeString(p.payload)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(payload, []byte("28eb0959"), []byte("f3e4ab09"), 1)
	tamperedType := p
	tamperedType.payloadType = "application/json"
	p.payload = base64.StdEncoding.EncodeToString(tampered)
	for name, raw := range map[string]string{
		"payload":     p.bundle(sigstore.BundleMediaType, p.envelope()),
		"payloadType": tamperedType.bundle(sigstore.BundleMediaType, tamperedType.envelope()),
	} {
		s := sigstore.SignatureFromBundle([]byte(raw), "")
		if s.Err != nil {
			t.Fatalf("%s: %v", name, s.Err)
		}
		if err := interopPublicKey(t, "ecdsa.pub").Verify(s.Signed, s.Sig); err == nil {
			t.Errorf("tampered %s verified", name)
		}
	}
}

func newECDSAKey(t testing.TB) sigstore.PrivateKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := sigstore.ParsePrivateKey(pkcs8PEM(t, priv), nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// The public-good vector: a keyless bundle v0.1 made by the real Fulcio,
// Rekor and CT log (see testdata/public-good and the interop README).
const (
	publicGoodBundle = "testdata/public-good/slsa-provenance-npm.sigstore.json"
	publicGoodRoot   = "testdata/public-good/trusted_root.json"
	// publicGoodSHA512 is the statement's subject, an npm tarball.
	publicGoodSHA512 = "bbfd372fc9beeb777fe35d05bb10c0c70a9733d366a75fed7dd18866c7391de3ee7e88ba74dd47abf3e15c845e547fcf0e5c3da80854c751554224d3a6d4e55f"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publicGoodChain returns the base64 DER certificates of the vector's
// x509CertificateChain, leaf first.
func publicGoodChain(t testing.TB) []string {
	t.Helper()
	var b struct {
		VerificationMaterial struct {
			X509CertificateChain struct {
				Certificates []struct{ RawBytes string } `json:"certificates"`
			} `json:"x509CertificateChain"`
		} `json:"verificationMaterial"`
	}
	if err := json.Unmarshal(readFile(t, publicGoodBundle), &b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range b.VerificationMaterial.X509CertificateChain.Certificates {
		out = append(out, c.RawBytes)
	}
	if len(out) != 3 {
		t.Fatalf("the vector's chain has %d certificates, want 3", len(out))
	}
	return out
}

func TestSignatureFromBundlePublicGood(t *testing.T) {
	raw := readFile(t, publicGoodBundle)
	s := sigstore.SignatureFromBundle(raw, "public-good")
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	chain := publicGoodChain(t)
	if !s.Keyless() || std64(s.Certificate) != chain[0] || len(s.Chain) != 2 || std64(s.Chain[0]) != chain[1] || std64(s.Chain[1]) != chain[2] {
		t.Fatalf("Certificate and Chain are not the vector's chain: %d + %d certificates", len(s.Certificate), len(s.Chain))
	}
	if s.PayloadType != sigstore.InTotoPayloadType || !bytes.Contains(s.Payload, []byte(publicGoodSHA512)) {
		t.Errorf("Payload = %s", s.Payload)
	}

	tr, err := sigstore.ParseTrustedRoot("public-good", readFile(t, publicGoodRoot))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.NewVerifier(tr.Material, verify.WithTransparencyLog(1), verify.WithSignedCertificateTimestamps(1), verify.WithObserverTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	digest, err := hex.DecodeString(publicGoodSHA512)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Entity()
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Verify(e, verify.NewPolicy(verify.WithArtifactDigest("sha512", digest), verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c := res.Signature.Certificate; c.SubjectAlternativeName != "brian@dehamer.com" || c.Issuer != "https://github.com/login/oauth" {
		t.Errorf("verified identity %s from %s", c.SubjectAlternativeName, c.Issuer)
	}
	// The envelope binds its subject: another digest does not verify.
	digest[0] ^= 1
	if _, err := v.Verify(e, verify.NewPolicy(verify.WithArtifactDigest("sha512", digest), verify.WithoutIdentitiesUnsafe())); err == nil {
		t.Error("verified against another artifact digest")
	}
}

// The verification material of certificate bundles, as the bundle
// versions write it.
func TestSignatureFromBundleCertificates(t *testing.T) {
	p := interopBundleParts(t)
	chain := publicGoodChain(t)
	rawBytes := func(c string) string { return obj(member("rawBytes", str(c))) }
	withMaterial := func(mediaType, material string) string {
		return obj(member("mediaType", str(mediaType)), member("verificationMaterial", material), member("dsseEnvelope", p.envelope()))
	}
	certificate := member("certificate", rawBytes(chain[0]))
	chainOf := func(certs ...string) string {
		var items []string
		for _, c := range certs {
			items = append(items, rawBytes(c))
		}
		return member("x509CertificateChain", obj(member("certificates", "["+strings.Join(items, ",")+"]")))
	}
	tlog := member("tlogEntries", `[]`)
	tsa := member("timestampVerificationData", `{"rfc3161Timestamps":[]}`)

	for _, tc := range []struct {
		name, in string
		chain    int
	}{
		{"v0.3 certificate", withMaterial(sigstore.BundleMediaType, obj(certificate, tlog, tsa)), 0},
		{"v0.1 chain", withMaterial(sigstore.BundleMediaTypeV01, obj(chainOf(chain...), tlog)), 2},
		{"v0.2 chain of the leaf alone", withMaterial(sigstore.BundleMediaTypeV02, obj(tsa, chainOf(chain[0]))), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sigstore.SignatureFromBundle([]byte(tc.in), "")
			if s.Err != nil {
				t.Fatal(s.Err)
			}
			if std64(s.Certificate) != chain[0] || len(s.Chain) != tc.chain {
				t.Errorf("Certificate %d bytes, %d chain certificates; want the leaf and %d", len(s.Certificate), len(s.Chain), tc.chain)
			}
		})
	}

	leaf, _ := base64.StdEncoding.DecodeString(chain[0])
	notDER := std64(leaf[:len(leaf)-1])
	eleven := slices.Repeat([]string{chain[0]}, 11)
	for _, tc := range []struct{ name, in, want string }{
		{"publicKey and certificate", withMaterial(sigstore.BundleMediaType, obj(member("publicKey", "{}"), certificate)), "holds 2 of"},
		{"certificate and chain", withMaterial(sigstore.BundleMediaTypeV01, obj(certificate, chainOf(chain...))), "holds 2 of"},
		{"certificate not DER", withMaterial(sigstore.BundleMediaType, obj(member("certificate", rawBytes(notDER)))), "not an X.509 certificate"},
		{"certificate not base64", withMaterial(sigstore.BundleMediaType, obj(member("certificate", rawBytes("***")))), "rawBytes: invalid base64"},
		{"certificate empty", withMaterial(sigstore.BundleMediaType, obj(member("certificate", rawBytes("")))), "empty certificate"},
		{"certificate without rawBytes", withMaterial(sigstore.BundleMediaType, obj(member("certificate", "{}"))), `missing key "rawBytes"`},
		{"certificate with an unknown key", withMaterial(sigstore.BundleMediaType, obj(member("certificate", obj(member("rawBytes", str(chain[0])), member("pem", `""`))))), `unknown key "pem"`},
		{"certificate with a duplicate rawBytes", withMaterial(sigstore.BundleMediaType, obj(member("certificate", obj(member("rawBytes", str(notDER)), member("rawBytes", str(chain[0])))))), `duplicate key "rawBytes"`},
		{"certificate null", withMaterial(sigstore.BundleMediaType, obj(member("certificate", "null"))), "not a JSON object"},
		{"chain empty", withMaterial(sigstore.BundleMediaTypeV01, obj(chainOf())), "certificates: empty"},
		{"chain too long", withMaterial(sigstore.BundleMediaTypeV01, obj(chainOf(eleven...))), "more than 10 certificates"},
		{"chain with a broken certificate", withMaterial(sigstore.BundleMediaTypeV01, obj(chainOf(chain[0], notDER))), "certificates[1].rawBytes: not an X.509 certificate"},
		{"chain entry not an object", withMaterial(sigstore.BundleMediaTypeV01, obj(member("x509CertificateChain", obj(member("certificates", "["+str(chain[0])+"]"))))), "not a JSON object"},
		{"chain certificates null", withMaterial(sigstore.BundleMediaTypeV01, obj(member("x509CertificateChain", obj(member("certificates", "null"))))), "certificates: not a JSON array"},
		{"chain with an unknown key", withMaterial(sigstore.BundleMediaTypeV01, obj(member("x509CertificateChain", obj(member("certificates", "[]"), member("root", "{}"))))), `unknown key "root"`},
		{"snake_case chain", withMaterial(sigstore.BundleMediaTypeV01, obj(member("x509_certificate_chain", obj(member("certificates", "["+rawBytes(chain[0])+"]"))))), `unknown key "x509_certificate_chain"`},
		{"duplicate tlogEntries", withMaterial(sigstore.BundleMediaType, obj(certificate, tlog, tlog)), `duplicate key "tlogEntries"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sigstore.SignatureFromBundle([]byte(tc.in), "")
			if s.Err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(s.Err.Error(), tc.want) || !errors.Is(s.Err, sigstore.ErrInvalidArtifact) {
				t.Errorf("error %q does not mention %q or wrap ErrInvalidArtifact", s.Err, tc.want)
			}
			if s.Certificate != nil || s.Chain != nil || s.Sig != nil {
				t.Errorf("a refused bundle carries material")
			}
		})
	}
}

func std64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

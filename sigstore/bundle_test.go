package sigstore_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
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
		{"empty verificationMaterial", strings.Replace(p.bundle(sigstore.BundleMediaType, p.envelope()), obj(member("publicKey", obj(member("hint", str(p.hint))))), "{}", 1)},
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
		{"media type v0.2", p.bundle("application/vnd.dev.sigstore.bundle.v0.2+json", p.envelope()), `mediaType "application/vnd.dev.sigstore.bundle.v0.2+json"`},
		{"media type v0.1", p.bundle("application/vnd.dev.sigstore.bundle+json;version=0.1", p.envelope()), "mediaType"},
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

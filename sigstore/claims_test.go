package sigstore_test

import (
	"encoding/base64"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

func TestClaimsSimpleSigningInterop(t *testing.T) {
	app := interopLayers(t, interopAppSig)
	multi := interopLayers(t, interopMultiSig)
	for _, tc := range []struct {
		name        string
		sig         sigstore.Signature
		digest, ref string
		annotations map[string]string
	}{
		{"app ECDSA", app[0], interopAppDigest, "127.0.0.1:5000/interop/app", map[string]string{"env": "prod"}},
		{"app Ed25519ph", app[1], interopAppDigest, "127.0.0.1:5000/interop/app", nil},
		{"multi index", multi[0], interopMultiDigest, "127.0.0.1:5000/interop/multi", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.sig.Claims()
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Digests) != 1 || c.Digests[0].String() != tc.digest || c.Reference != tc.ref || !maps.Equal(c.AnnotationsOf(c.Digests[0]), tc.annotations) {
				t.Errorf("Claims = %+v", c)
			}
		})
	}
}

func TestClaimsRefusesUnboundOrBrokenSignatures(t *testing.T) {
	errBroken := errors.New("payload does not match its descriptor")
	layer := interopLayers(t, interopAppSig)[0]
	otherPayload := layer
	otherPayload.Payload = interopLayers(t, interopAppSig)[1].Payload
	bundle := interopBundleSignature(t)
	otherStatement := bundle
	otherStatement.Payload = []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + strings.Repeat("0", 64) + `"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`)
	for _, tc := range []struct {
		name string
		sig  sigstore.Signature
		want string
	}{
		{"signature with Err", sigstore.Signature{Format: sigstore.FormatSimpleSigning, Err: errBroken}, errBroken.Error()},
		{"simple-signing payload is not the signed bytes", otherPayload, "differs from the signed bytes"},
		{"statement is not the signed bytes", otherStatement, "differs from the signed bytes"},
		{"unknown format", sigstore.Signature{Format: "notary"}, `format "notary"`},
		{"empty simple-signing payload", sigstore.Signature{Format: sigstore.FormatSimpleSigning}, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.sig.Claims()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Claims() = %+v, %v; want an error mentioning %q", c, err, tc.want)
			}
		})
	}
}

const (
	hexA = "f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"
	hexB = "28eb0959570ca76b3c9adf3ed8cad7c0426a3bd07dbb589a9415282fcacefdc2"
)

// statement builds an in-toto statement from raw JSON parts.
func statement(typ, subjects, predicateType, predicate string) string {
	return obj(member("_type", typ), member("subject", subjects), member("predicateType", predicateType), member("predicate", predicate))
}

func subject(hex string, extra ...string) string {
	return obj(append([]string{member("digest", obj(member("sha256", str(hex))))}, extra...)...)
}

const (
	v1Type     = `"https://in-toto.io/Statement/v1"`
	cosignPred = `"https://sigstore.dev/cosign/sign/v1"`
)

// bundleClaims signs stmt into a real bundle, checks the signature
// verifies, and returns the Claims: the format and the key are fine, so
// Claims alone decides.
func bundleClaims(t *testing.T, key sigstore.PrivateKey, payloadType, stmt string) (sigstore.Claims, error) {
	t.Helper()
	sig, err := key.Sign(sigstore.PAE(payloadType, []byte(stmt)))
	if err != nil {
		t.Fatal(err)
	}
	p := bundleParts{payload: b64(stmt), payloadType: payloadType, sig: b64(string(sig)), hint: "x"}
	s := sigstore.SignatureFromBundle([]byte(p.bundle(sigstore.BundleMediaType, p.envelope())), "")
	if s.Err != nil {
		t.Fatal(s.Err)
	}
	if err := key.Public().Verify(s.Signed, s.Sig); err != nil {
		t.Fatalf("bundle does not verify: %v", err)
	}
	return s.Claims()
}

func TestClaimsBundleAccepts(t *testing.T) {
	key := newECDSAKey(t)
	for _, tc := range []struct {
		name, stmt  string
		digests     []string
		annotations map[string]map[string]string // by subject hex
	}{
		{"cosign v3 statement", statement(v1Type, "["+subject(hexA, member("annotations", "{}"))+"]", cosignPred, "{}"), []string{hexA}, nil},
		{"statement v0.1", statement(`"https://in-toto.io/Statement/v0.1"`, "["+subject(hexA, member("name", `"app"`))+"]", cosignPred, "{}"), []string{hexA}, nil},
		{"two subjects", statement(v1Type, "["+subject(hexA)+","+subject(hexB)+"]", cosignPred, "{}"), []string{hexA, hexB}, nil},
		{"repeated subject", statement(v1Type, "["+subject(hexA)+","+subject(hexA)+"]", cosignPred, "{}"), []string{hexA}, nil},
		{"other digest algorithms beside sha256", statement(v1Type, "["+obj(member("digest", obj(member("sha512", `"abc"`), member("sha256", str(hexA)))))+"]", cosignPred, "{}"), []string{hexA}, nil},
		{"annotations", statement(v1Type, "["+subject(hexA, member("annotations", `{"env":"prod","n":2,"o":{"a": 1}}`))+"]", cosignPred, "{}"),
			[]string{hexA}, map[string]map[string]string{hexA: {"env": "prod", "n": "2", "o": `{"a":1}`}}},
		{"annotations stay with their subject", statement(v1Type, "["+subject(hexA, member("annotations", `{"env":"prod"}`))+","+subject(hexB, member("annotations", `{"team":"a"}`))+"]", cosignPred, "{}"),
			[]string{hexA, hexB}, map[string]map[string]string{hexA: {"env": "prod"}, hexB: {"team": "a"}}},
		{"annotations of one digest's subjects merged", statement(v1Type, "["+subject(hexA, member("annotations", `{"env":"prod"}`))+","+subject(hexA, member("annotations", `{"team":"a"}`))+"]", cosignPred, "{}"),
			[]string{hexA}, map[string]map[string]string{hexA: {"env": "prod", "team": "a"}}},
		{"non-empty predicate", statement(v1Type, "["+subject(hexA)+"]", cosignPred, `{"x":1}`), []string{hexA}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := bundleClaims(t, key, sigstore.InTotoPayloadType, tc.stmt)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range c.Digests {
				if d.Algorithm != "sha256" {
					t.Errorf("digest %v", d)
				}
				got = append(got, d.Hex)
				if !maps.Equal(c.AnnotationsOf(d), tc.annotations[d.Hex]) {
					t.Errorf("annotations of %s = %v, want %v", d.Hex, c.AnnotationsOf(d), tc.annotations[d.Hex])
				}
			}
			if !slices.Equal(got, tc.digests) || c.Reference != "" || len(c.Annotations) != len(tc.annotations) {
				t.Errorf("Claims = %+v", c)
			}
		})
	}
}

func TestClaimsBundleRejects(t *testing.T) {
	key := newECDSAKey(t)
	ok := statement(v1Type, "["+subject(hexA)+"]", cosignPred, "{}")
	for _, tc := range []struct {
		name, payloadType, stmt, want string
	}{
		{"payloadType JSON", "application/json", ok, `payloadType "application/json"`},
		{"payloadType simple signing", sigstore.SimpleSigningMediaType, ok, "payloadType"},
		{"empty predicate type", "", statement(v1Type, "["+subject(hexA)+"]", `""`, "{}"), "predicateType: empty"},
		{"predicate type a number", "", statement(v1Type, "["+subject(hexA)+"]", `1`, "{}"), "predicateType"},
		{"predicate an array", "", statement(v1Type, "["+subject(hexA)+"]", `"https://slsa.dev/provenance/v1"`, "[]"), "predicate: not a JSON object"},
		{"other statement type", "", statement(`"https://in-toto.io/Statement/v2"`, "["+subject(hexA)+"]", cosignPred, "{}"), "_type"},
		{"predicate missing", "", obj(member("_type", v1Type), member("subject", "["+subject(hexA)+"]"), member("predicateType", cosignPred)), `missing key "predicate"`},
		{"predicate null", "", statement(v1Type, "["+subject(hexA)+"]", cosignPred, "null"), "predicate: not a JSON object"},
		{"no subject", "", statement(v1Type, "[]", cosignPred, "{}"), "subject: empty"},
		{"subject null", "", statement(v1Type, "null", cosignPred, "{}"), "subject: not a JSON array"},
		{"subject without sha256", "", statement(v1Type, "["+obj(member("digest", obj(member("sha512", `"abc"`))))+"]", cosignPred, "{}"), "no sha256 digest"},
		{"subject without digest", "", statement(v1Type, `[{"name":"app"}]`, cosignPred, "{}"), `missing key "digest"`},
		{"uppercase hex", "", statement(v1Type, "["+subject(strings.ToUpper(hexA))+"]", cosignPred, "{}"), "lowercase hex"},
		{"short hex", "", statement(v1Type, "["+subject(hexA[:63])+"]", cosignPred, "{}"), "63 characters"},
		{"prefixed hex", "", statement(v1Type, "["+subject("sha256:"+hexA)+"]", cosignPred, "{}"), "71 characters"},
		{"sha256 number", "", statement(v1Type, `[{"digest":{"sha256":1}}]`, cosignPred, "{}"), "not a JSON string"},
		{"other algorithm not a string", "", statement(v1Type, `[{"digest":{"sha256":"`+hexA+`","sha512":1}}]`, cosignPred, "{}"), "sha512: not a JSON string"},
		{"one bad subject among good", "", statement(v1Type, "["+subject(hexA)+","+subject("zz")+"]", cosignPred, "{}"), "subject[1]"},
		{"unknown subject key", "", statement(v1Type, "["+subject(hexA, member("signed", "true"))+"]", cosignPred, "{}"), `unknown key "signed"`},
		{"Digest case variant", "", statement(v1Type, `[{"Digest":{"sha256":"`+hexA+`"}}]`, cosignPred, "{}"), `"Digest" differs in case`},
		{"name not a string", "", statement(v1Type, "["+subject(hexA, member("name", "1"))+"]", cosignPred, "{}"), "name: not a JSON string"},
		{"annotations array", "", statement(v1Type, "["+subject(hexA, member("annotations", "[]"))+"]", cosignPred, "{}"), "annotations: not a JSON object"},
		{"conflicting annotations for one digest", "", statement(v1Type, "["+subject(hexA, member("annotations", `{"env":"dev"}`))+","+subject(hexA, member("annotations", `{"env":"prod"}`))+"]", cosignPred, "{}"), `"env"`},
		{"unknown statement key", "", strings.Replace(ok, `"predicate":`, `"extra":1,"predicate":`, 1), `unknown key "extra"`},
		{"_Type case variant", "", strings.Replace(ok, `"_type"`, `"_Type"`, 1), "differs in case"},
		{"duplicate predicateType", "", strings.Replace(ok, `"predicate":`, `"predicateType":"x","predicate":`, 1), `duplicate key "predicateType"`},
		{"duplicate sha256", "", statement(v1Type, `[{"digest":{"sha256":"`+hexB+`","sha256":"`+hexA+`"}}]`, cosignPred, "{}"), `duplicate key "sha256"`},
		{"trailing data", "", ok + "{}", "data after the JSON value"},
		{"not JSON", "", "statement", "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := tc.payloadType
			if pt == "" {
				pt = sigstore.InTotoPayloadType
			}
			c, err := bundleClaims(t, key, pt, tc.stmt)
			if err == nil {
				t.Fatalf("Claims accepted it: %+v", c)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// An attestation's statement parses like a signature's; its predicate type
// and predicate come back as they were signed, in any case, so that the
// verifier, not the parser, tells a signature from an attestation.
func TestClaimsAttestationPredicate(t *testing.T) {
	key := newECDSAKey(t)
	for _, tc := range []struct{ predicateType, predicate string }{
		{"https://slsa.dev/provenance/v1", `{"runDetails":{"builder":{"id":"https://ci.example/builder"}}}`},
		{"https://sigstore.dev/Cosign/sign/v1", "{}"},
		{sigstore.CosignPredicateType, "{}"},
	} {
		c, err := bundleClaims(t, key, sigstore.InTotoPayloadType,
			statement(v1Type, "["+subject(hexA)+"]", strconv.Quote(tc.predicateType), tc.predicate))
		if err != nil {
			t.Fatalf("%s: %v", tc.predicateType, err)
		}
		if c.PredicateType != tc.predicateType || string(c.Predicate) != tc.predicate {
			t.Errorf("got predicate type %q, predicate %s; want %q, %s", c.PredicateType, c.Predicate, tc.predicateType, tc.predicate)
		}
		if len(c.Digests) != 1 || c.Digests[0].Hex != hexA {
			t.Errorf("digests %v", c.Digests)
		}
	}
}

func TestClaimsDigestsAreUsableHashes(t *testing.T) {
	c, err := interopBundleSignature(t).Claims()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v1.NewHash(c.Digests[0].String()); err != nil {
		t.Errorf("digest %v: %v", c.Digests[0], err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

package sigstore_test

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

func mustHash(t testing.TB, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// NewPayload regenerates the payloads cosign v3.1.2 wrote, byte for byte;
// the blob names are their SHA-256.
func TestNewPayloadMatchesCosign(t *testing.T) {
	for _, tc := range []struct {
		name, blob, reference, digest string
		annotations                   map[string]string
	}{
		{"no annotations", "sha256-b253890994138607dc85312179f4aa38eb37414994e0b74006aea391e452a5d8",
			"127.0.0.1:5000/interop/app", interopAppDigest, nil},
		{"env=prod", "sha256-803ac2839e1535ccb5e59a0f4c721639a62d71a5b54beda0ef1203b6b8167304",
			"127.0.0.1:5000/interop/app", interopAppDigest, map[string]string{"env": "prod"}},
		{"index", "sha256-eee3fe1964b873eb6035e1a217e4e570a11687a45bc52d89031df7b83fc4c95e",
			"127.0.0.1:5000/interop/multi", interopMultiDigest, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sigstore.NewPayload(tc.reference, mustHash(t, tc.digest), tc.annotations)
			if err != nil {
				t.Fatal(err)
			}
			want := interopFile(t, "blobs/"+tc.blob)
			if !bytes.Equal(got, want) {
				t.Errorf("NewPayload =\n%s\ncosign wrote\n%s", got, want)
			}
			sum := sha256.Sum256(got)
			if "sha256-"+hexOf(sum[:]) != tc.blob {
				t.Errorf("payload digest %x, want blob %s", sum, tc.blob)
			}
		})
	}
}

func TestNewPayloadSortsAnnotations(t *testing.T) {
	got, err := sigstore.NewPayload("r.example/a", mustHash(t, interopAppDigest), map[string]string{"b": "2", "a": "1", "<": "&"})
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json escapes HTML characters, as cosign's json.Marshal does.
	if want := `"optional":{"\u003c":"\u0026","a":"1","b":"2"}}`; !strings.HasSuffix(string(got), want) {
		t.Errorf("payload %s does not end with %s", got, want)
	}
	p, err := sigstore.ParsePayload(got)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(p.Annotations, map[string]string{"b": "2", "a": "1", "<": "&"}) {
		t.Errorf("round trip annotations %v", p.Annotations)
	}
}

func TestNewPayloadRejects(t *testing.T) {
	for _, tc := range []struct {
		name, reference string
		digest          v1.Hash
	}{
		{"empty reference", "", mustHash(t, interopAppDigest)},
		{"sha512 digest", "r/a", v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("a", 128)}},
		{"uppercase hex", "r/a", v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("A", 64)}},
		{"short hex", "r/a", v1.Hash{Algorithm: "sha256", Hex: "abc"}},
		{"zero hash", "r/a", v1.Hash{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := sigstore.NewPayload(tc.reference, tc.digest, nil); err == nil {
				t.Errorf("NewPayload = %s", b)
			}
		})
	}
}

func TestParsePayloadInterop(t *testing.T) {
	for _, tc := range []struct {
		blob, reference, digest string
		annotations             map[string]string
	}{
		{"sha256-b253890994138607dc85312179f4aa38eb37414994e0b74006aea391e452a5d8", "127.0.0.1:5000/interop/app", interopAppDigest, nil},
		{"sha256-803ac2839e1535ccb5e59a0f4c721639a62d71a5b54beda0ef1203b6b8167304", "127.0.0.1:5000/interop/app", interopAppDigest, map[string]string{"env": "prod"}},
		{"sha256-eee3fe1964b873eb6035e1a217e4e570a11687a45bc52d89031df7b83fc4c95e", "127.0.0.1:5000/interop/multi", interopMultiDigest, nil},
	} {
		p, err := sigstore.ParsePayload(interopFile(t, "blobs/"+tc.blob))
		if err != nil {
			t.Fatalf("%s: %v", tc.blob, err)
		}
		if p.Reference != tc.reference || p.Digest.String() != tc.digest || p.Type != sigstore.SimpleSigningType || !maps.Equal(p.Annotations, tc.annotations) {
			t.Errorf("%s: %+v", tc.blob, p)
		}
	}
}

// payloadDoc builds a payload from its parts; each is raw JSON text.
func payloadDoc(identity, image, typ, optional string) string {
	return `{"critical":{"identity":` + identity + `,"image":` + image + `,"type":` + typ + `},"optional":` + optional + `}`
}

const (
	okIdentity = `{"docker-reference":"r.example/app"}`
	okImage    = `{"docker-manifest-digest":"sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"}`
	okType     = `"cosign container image signature"`
	okDigest   = `"sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"`
)

func digestImage(d string) string { return `{"docker-manifest-digest":` + d + `}` }

func TestParsePayloadAccepts(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"optional null", payloadDoc(okIdentity, okImage, okType, "null")},
		{"optional empty", payloadDoc(okIdentity, okImage, okType, "{}")},
		{"optional absent", `{"critical":{"identity":` + okIdentity + `,"image":` + okImage + `,"type":` + okType + `}}`},
		{"members in another order", `{"optional":null,"critical":{"type":` + okType + `,"image":` + okImage + `,"identity":` + okIdentity + `}}`},
		{"whitespace around", " \n" + payloadDoc(okIdentity, okImage, okType, "null") + "\n\t "},
		{"annotation keys differing in case", payloadDoc(okIdentity, okImage, okType, `{"env":"a","Env":"b"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sigstore.ParsePayload([]byte(tc.in)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestParsePayloadRejects(t *testing.T) {
	ok := payloadDoc(okIdentity, okImage, okType, "null")
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	for _, tc := range []struct{ name, in, want string }{
		// Duplicate keys, at every level.
		{"duplicate critical", `{"critical":{},` + ok[1:], `duplicate key "critical"`},
		{"duplicate optional", strings.Replace(ok, `"optional":null`, `"optional":null,"optional":{"a":"b"}`, 1), `duplicate key "optional"`},
		{"duplicate docker-reference", payloadDoc(`{"docker-reference":"a/b","docker-reference":"r.example/app"}`, okImage, okType, "null"), `duplicate key "docker-reference"`},
		{"duplicate digest", payloadDoc(okIdentity, `{"docker-manifest-digest":"sha256:0","docker-manifest-digest":`+okDigest+`}`, okType, "null"), `duplicate key "docker-manifest-digest"`},
		{"duplicate type", strings.Replace(ok, `"type":`, `"type":"x","type":`, 1), `duplicate key "type"`},
		{"duplicate annotation", payloadDoc(okIdentity, okImage, okType, `{"env":"dev","env":"prod"}`), `duplicate key "env"`},
		{"duplicate deep in an annotation", payloadDoc(okIdentity, okImage, okType, `{"env":{"x":1,"x":2}}`), `duplicate key "x"`},
		// Case variants of the expected keys.
		{"Critical", strings.Replace(ok, `"critical"`, `"Critical"`, 1), `"Critical" differs in case from "critical"`},
		{"Critical beside critical", strings.Replace(ok, `"optional"`, `"Critical":{},"optional"`, 1), `"Critical" differs in case`},
		{"Optional", strings.Replace(ok, `"optional"`, `"Optional"`, 1), `"Optional" differs in case`},
		{"Identity", `{"critical":{"Identity":` + okIdentity + `,"image":` + okImage + `,"type":` + okType + `}}`, `"Identity" differs in case`},
		{"Docker-manifest-digest", payloadDoc(okIdentity, `{"Docker-manifest-digest":`+okDigest+`}`, okType, "null"), `"Docker-manifest-digest" differs in case`},
		{"DOCKER-REFERENCE", payloadDoc(`{"DOCKER-REFERENCE":"r.example/app"}`, okImage, okType, "null"), `differs in case`},
		{"Type", strings.Replace(ok, `"type":`, `"Type":`, 1), `"Type" differs in case`},
		// Unknown keys.
		{"unknown top-level key", strings.Replace(ok, `"optional"`, `"extra":1,"optional"`, 1), `unknown key "extra"`},
		{"unknown key in critical", strings.Replace(ok, `"type":`, `"timestamp":1,"type":`, 1), `critical: unknown key "timestamp"`},
		{"unknown key in identity", payloadDoc(`{"docker-reference":"r/a","tag":"v1"}`, okImage, okType, "null"), `critical.identity: unknown key "tag"`},
		{"unknown key in image", payloadDoc(okIdentity, `{"docker-manifest-digest":`+okDigest+`,"size":3}`, okType, "null"), `critical.image: unknown key "size"`},
		// Missing members.
		{"missing critical", `{"optional":null}`, `missing key "critical"`},
		{"missing identity", `{"critical":{"image":` + okImage + `,"type":` + okType + `}}`, `missing key "identity"`},
		{"missing image", `{"critical":{"identity":` + okIdentity + `,"type":` + okType + `}}`, `missing key "image"`},
		{"missing type", `{"critical":{"identity":` + okIdentity + `,"image":` + okImage + `}}`, `missing key "type"`},
		{"missing docker-reference", payloadDoc(`{}`, okImage, okType, "null"), `missing key "docker-reference"`},
		{"missing digest", payloadDoc(okIdentity, `{}`, okType, "null"), `missing key "docker-manifest-digest"`},
		// Trailing data.
		{"second object", ok + "{}", "data after the JSON value"},
		{"trailing garbage", ok + "x", "data after the JSON value"},
		{"trailing brace", ok + "}", "data after the JSON value"},
		{"trailing NUL", ok + "\x00", "data after the JSON value"},
		// Type.
		{"atomic type", payloadDoc(okIdentity, okImage, `"atomic container signature"`, "null"), `critical.type "atomic container signature"`},
		{"type in another case", payloadDoc(okIdentity, okImage, `"Cosign container image signature"`, "null"), "critical.type"},
		{"cosign v3 predicate as type", payloadDoc(okIdentity, okImage, `"https://sigstore.dev/cosign/sign/v1"`, "null"), "critical.type"},
		{"type null", payloadDoc(okIdentity, okImage, `null`, "null"), "critical.type: not a JSON string"},
		// Digest.
		{"digest without algorithm", payloadDoc(okIdentity, digestImage(`"f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"`), okType, "null"), "want sha256:"},
		{"digest uppercase hex", payloadDoc(okIdentity, digestImage(`"sha256:F3E4AB0914E5B4177E1859D6CC94E3090EA9153CD966AA9CCE53D86A3A51725C"`), okType, "null"), "lowercase hex"},
		{"digest uppercase algorithm", payloadDoc(okIdentity, digestImage(`"SHA256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"`), okType, "null"), "want sha256:"},
		{"digest 63 hex", payloadDoc(okIdentity, digestImage(`"sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725"`), okType, "null"), "63 characters"},
		{"digest 65 hex", payloadDoc(okIdentity, digestImage(`"sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c0"`), okType, "null"), "65 characters"},
		{"digest trailing newline", payloadDoc(okIdentity, digestImage(`"sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c\n"`), okType, "null"), "65 characters"},
		{"digest sha512", payloadDoc(okIdentity, digestImage(`"sha512:`+strings.Repeat("a", 128)+`"`), okType, "null"), "want sha256:"},
		{"digest empty", payloadDoc(okIdentity, digestImage(`""`), okType, "null"), "want sha256:"},
		{"digest number", payloadDoc(okIdentity, digestImage(`256`), okType, "null"), "not a JSON string"},
		{"digest null", payloadDoc(okIdentity, digestImage(`null`), okType, "null"), "not a JSON string"},
		{"digest non-hex", payloadDoc(okIdentity, digestImage(`"sha256:`+strings.Repeat("g", 64)+`"`), okType, "null"), "lowercase hex"},
		// Identity and shapes.
		{"docker-reference null", payloadDoc(`{"docker-reference":null}`, okImage, okType, "null"), "not a JSON string"},
		{"docker-reference number", payloadDoc(`{"docker-reference":1}`, okImage, okType, "null"), "not a JSON string"},
		{"identity array", payloadDoc(`["r/a"]`, okImage, okType, "null"), "critical.identity: not a JSON object"},
		{"critical null", `{"critical":null}`, "critical: not a JSON object"},
		{"optional array", payloadDoc(okIdentity, okImage, okType, `["a"]`), "optional: not a JSON object or null"},
		{"optional string", payloadDoc(okIdentity, okImage, okType, `"a"`), "optional: not a JSON object or null"},
		{"optional number", payloadDoc(okIdentity, okImage, okType, `1`), "optional: not a JSON object or null"},
		{"optional true", payloadDoc(okIdentity, okImage, okType, `true`), "optional: not a JSON object or null"},
		{"optional nested too deep", payloadDoc(okIdentity, okImage, okType, deep), "nested deeper"},
		// Not a payload at all.
		{"empty", "", "invalid JSON"},
		{"not JSON", "hello", "invalid JSON"},
		{"truncated", ok[:len(ok)-1], "invalid JSON"},
		{"top-level array", "[" + ok + "]", "payload: not a JSON object"},
		{"top-level null", "null", "payload: not a JSON object"},
		{"invalid UTF-8", payloadDoc(`{"docker-reference":"r/a`+"\xff"+`"}`, okImage, okType, "null"), "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := sigstore.ParsePayload([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParsePayload accepted it: %+v", p)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestParsePayloadAnnotationValues(t *testing.T) {
	in := payloadDoc(okIdentity, okImage, okType, `{"s":"text","n":3,"f":1.50,"b":true,"z":null,"o":{"k": "v"},"a":[1, 2]}`)
	p, err := sigstore.ParsePayload([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s": "text", "n": "3", "f": "1.50", "b": "true", "z": "null", "o": `{"k":"v"}`, "a": "[1,2]"}
	if !maps.Equal(p.Annotations, want) {
		t.Errorf("Annotations = %v, want %v", p.Annotations, want)
	}
}

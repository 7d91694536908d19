package sigstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const (
	// SimpleSigningMediaType is the media type of a layer of a
	// "sha256-<hex>.sig" manifest: its blob is a simple-signing payload.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation is the layer annotation holding the base64
	// signature over the payload.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// SimpleSigningType is the critical.type of a cosign image signature.
	SimpleSigningType = "cosign container image signature"
)

// Payload is a parsed simple-signing payload (cosign flavour):
//
//	{"critical":{"identity":{"docker-reference":R},
//	             "image":{"docker-manifest-digest":D},"type":T},
//	 "optional":{...}|null}
type Payload struct {
	// Reference is critical.identity.docker-reference, as written.
	Reference string
	// Digest is critical.image.docker-manifest-digest.
	Digest v1.Hash
	// Type is critical.type; ParsePayload only accepts SimpleSigningType.
	Type string
	// Annotations are the "optional" members. String values are kept as
	// they are; any other value (number, bool, object, array, null) is kept
	// as its compact JSON text, e.g. 3 -> "3", true -> "true".
	Annotations map[string]string
}

// The simple-signing document, in the field order cosign writes.
type simpleSigning struct {
	Critical critical          `json:"critical"`
	Optional map[string]string `json:"optional"`
}

type critical struct {
	Identity identity `json:"identity"`
	Image    image    `json:"image"`
	Type     string   `json:"type"`
}

type identity struct {
	DockerReference string `json:"docker-reference"`
}

type image struct {
	DockerManifestDigest string `json:"docker-manifest-digest"`
}

// NewPayload returns the simple-signing payload cosign writes for reference
// (a repository such as "registry.example/team/app") and a sha256 digest,
// byte for byte: encoding/json output, optional keys sorted, and "optional":
// null when there are no annotations (nil or empty map).
func NewPayload(reference string, digest v1.Hash, annotations map[string]string) ([]byte, error) {
	if reference == "" {
		return nil, errors.New("simple-signing payload: empty docker-reference")
	}
	if err := checkDigest(digest); err != nil {
		return nil, fmt.Errorf("simple-signing payload: %w", err)
	}
	doc := simpleSigning{
		Critical: critical{
			Identity: identity{DockerReference: reference},
			Image:    image{DockerManifestDigest: digest.String()},
			Type:     SimpleSigningType,
		},
	}
	if len(annotations) > 0 {
		doc.Optional = annotations
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("simple-signing payload: %w", err)
	}
	return b, nil
}

// ParsePayload parses a simple-signing payload strictly. It refuses invalid
// UTF-8, duplicate keys at any depth, keys other than the expected ones
// (including case variants such as "Critical"), a missing member, data after
// the JSON value, a type other than SimpleSigningType, a digest that is not
// "sha256:" + 64 lowercase hex digits, and an "optional" that is neither an
// object nor null ("optional" may be absent).
func ParsePayload(b []byte) (*Payload, error) {
	p, err := parsePayload(b)
	if err != nil {
		return nil, fmt.Errorf("simple-signing payload: %w", err)
	}
	return p, nil
}

// Key sets of the simple-signing objects; fields returns the members in
// this order.
var (
	payloadKeys  = []string{"critical"}
	criticalKeys = []string{"identity", "image", "type"}
	identityKeys = []string{"docker-reference"}
	imageKeys    = []string{"docker-manifest-digest"}
)

func parsePayload(b []byte) (*Payload, error) {
	doc, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	top, err := doc.fields("payload", payloadKeys, "optional")
	if err != nil {
		return nil, err
	}
	critical, optional := top[0], top[1]
	crit, err := critical.fields("critical", criticalKeys)
	if err != nil {
		return nil, err
	}
	identity, image, typ := crit[0], crit[1], crit[2]
	id, err := identity.fields("critical.identity", identityKeys)
	if err != nil {
		return nil, err
	}
	img, err := image.fields("critical.image", imageKeys)
	if err != nil {
		return nil, err
	}
	var p Payload
	if p.Reference, err = stringOf(id[0], "critical.identity.docker-reference"); err != nil {
		return nil, err
	}
	d, err := stringOf(img[0], "critical.image.docker-manifest-digest")
	if err != nil {
		return nil, err
	}
	if p.Digest, err = parseDigest(d); err != nil {
		return nil, fmt.Errorf("critical.image.docker-manifest-digest: %w", err)
	}
	if p.Type, err = stringOf(typ, "critical.type"); err != nil {
		return nil, err
	}
	if p.Type != SimpleSigningType {
		return nil, fmt.Errorf("critical.type %q is not %q", p.Type, SimpleSigningType)
	}
	if p.Annotations, err = decodeAnnotations(optional, "optional"); err != nil {
		return nil, err
	}
	return &p, nil
}

// checkDigest accepts only "sha256:" + 64 lowercase hex digits.
func checkDigest(h v1.Hash) error {
	_, err := parseDigest(h.String())
	return err
}

// parseDigest parses "sha256:<64 lowercase hex>" and nothing else.
func parseDigest(s string) (v1.Hash, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return v1.Hash{}, fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", s)
	}
	if err := checkSHA256Hex(hexPart); err != nil {
		return v1.Hash{}, fmt.Errorf("digest %q: %w", s, err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hexPart}, nil
}

// checkSHA256Hex accepts exactly 64 lowercase hex digits.
func checkSHA256Hex(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("sha256 hex is %d characters, want 64", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("sha256 hex has %q at %d: want lowercase hex", c, i)
		}
	}
	return nil
}

// decodeAnnotations decodes an object of annotations; absent or null gives
// nil. Non-string values become their compact JSON text.
func decodeAnnotations(v jsonValue, what string) (map[string]string, error) {
	switch v.kind() {
	case 0, jsonNull:
		return nil, nil
	case jsonObject:
	default:
		return nil, fmt.Errorf("%s: not a JSON object or null", what)
	}
	out := make(map[string]string)
	for k, m := range v.members() {
		s, err := annotationValue(m)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", what, k, err)
		}
		out[k] = s
	}
	return out, nil
}

func annotationValue(v jsonValue) (string, error) {
	if v.kind() == jsonString {
		return v.text(), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return "", err
	}
	return buf.String(), nil
}

package sigstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

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

func parsePayload(b []byte) (*Payload, error) {
	if err := checkJSON(b); err != nil {
		return nil, err
	}
	top, err := decodeObject(b, "payload", []string{"critical"}, "optional")
	if err != nil {
		return nil, err
	}
	crit, err := decodeObject(top["critical"], "critical", []string{"identity", "image", "type"})
	if err != nil {
		return nil, err
	}
	id, err := decodeObject(crit["identity"], "critical.identity", []string{"docker-reference"})
	if err != nil {
		return nil, err
	}
	img, err := decodeObject(crit["image"], "critical.image", []string{"docker-manifest-digest"})
	if err != nil {
		return nil, err
	}
	var p Payload
	if p.Reference, err = decodeString(id["docker-reference"], "critical.identity.docker-reference"); err != nil {
		return nil, err
	}
	d, err := decodeString(img["docker-manifest-digest"], "critical.image.docker-manifest-digest")
	if err != nil {
		return nil, err
	}
	if p.Digest, err = parseDigest(d); err != nil {
		return nil, fmt.Errorf("critical.image.docker-manifest-digest: %w", err)
	}
	if p.Type, err = decodeString(crit["type"], "critical.type"); err != nil {
		return nil, err
	}
	if p.Type != SimpleSigningType {
		return nil, fmt.Errorf("critical.type %q is not %q", p.Type, SimpleSigningType)
	}
	if p.Annotations, err = decodeAnnotations(top["optional"], "optional"); err != nil {
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

// Strict JSON helpers, shared by the payload, bundle, statement and
// encrypted-key parsers.

// maxJSONDepth bounds nesting; the documents read here are shallow.
const maxJSONDepth = 32

// checkJSON verifies that b is valid UTF-8 holding exactly one JSON value,
// with only whitespace after it and no object with a repeated key at any
// depth. encoding/json alone would keep the last of two duplicate keys,
// match keys case-insensitively and silently replace invalid UTF-8.
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walkJSON(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// walkJSON consumes one value from dec, checking objects for repeated keys.
func walkJSON(dec *json.Decoder, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("JSON nested deeper than %d", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		seen := make(map[string]bool)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %w", err)
			}
			key, ok := kt.(string)
			if !ok {
				return fmt.Errorf("invalid JSON: object key %v", kt)
			}
			if seen[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			seen[key] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("invalid JSON: unexpected %q", delim)
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

// decodeObject decodes raw, which must be a JSON object (already checked by
// checkJSON), and checks its key set: every required key present, no key
// outside required and optional. A key that differs only in case from an
// expected one is named as such.
func decodeObject(raw json.RawMessage, what string, required []string, optional ...string) (map[string]json.RawMessage, error) {
	if raw == nil {
		return nil, fmt.Errorf("%s: missing", what)
	}
	if !isKind(raw, '{') {
		return nil, fmt.Errorf("%s: not a JSON object", what)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkKeys(obj, what, required, optional); err != nil {
		return nil, err
	}
	return obj, nil
}

func checkKeys(obj map[string]json.RawMessage, what string, required, optional []string) error {
	known := make(map[string]bool, len(required)+len(optional))
	for _, k := range append(append([]string(nil), required...), optional...) {
		known[k] = true
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if known[k] {
			continue
		}
		for want := range known {
			if strings.EqualFold(k, want) {
				return fmt.Errorf("%s: key %q differs in case from %q", what, k, want)
			}
		}
		return fmt.Errorf("%s: unknown key %q", what, k)
	}
	for _, k := range required {
		if _, ok := obj[k]; !ok {
			return fmt.Errorf("%s: missing key %q", what, k)
		}
	}
	return nil
}

// decodeString decodes raw, which must be a JSON string (null is refused).
func decodeString(raw json.RawMessage, what string) (string, error) {
	if !isKind(raw, '"') {
		return "", fmt.Errorf("%s: not a JSON string", what)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return s, nil
}

// decodeAnnotations decodes an object of annotations; absent or null gives
// nil. Non-string values become their compact JSON text.
func decodeAnnotations(raw json.RawMessage, what string) (map[string]string, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	if !isKind(raw, '{') {
		return nil, fmt.Errorf("%s: not a JSON object or null", what)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		s, err := annotationValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", what, k, err)
		}
		out[k] = s
	}
	return out, nil
}

func annotationValue(v json.RawMessage) (string, error) {
	if isKind(v, '"') {
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// isKind reports whether the JSON value raw starts with c.
func isKind(raw json.RawMessage, c byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == c
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

package sigstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON reader for the documents a signature covers.
//
// encoding/json alone would keep the last of two duplicate keys, match
// struct fields case-insensitively and silently replace invalid UTF-8, so a
// verifier and a signer could read different claims from the same bytes.
// checkJSON scans a document once and refuses all of that, allocating
// only for escaped or very many keys; the schema checks then read the parts they need from the
// checked text through jsonValue. Whatever checkJSON accepts, jsonValue
// reads as encoding/json decodes it (strictjson_test.go fuzzes that).

// maxJSONDepth bounds nesting; the documents read here are shallow. A value
// nested in more containers than this is refused.
const maxJSONDepth = 32

// smallObject is the member count up to which repeated keys are found by a
// linear scan; larger objects use a map.
const smallObject = 16

// checkJSON verifies that b is valid UTF-8 holding exactly one JSON value,
// with only whitespace around it, nesting within maxJSONDepth, and no
// object with a repeated key at any depth (keys compared as decoded).
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	s := jsonScanner{buf: b}
	s.skipSpace()
	if err := s.value(0); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos < len(s.buf) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// jsonScanner checks one document in a single recursive-descent pass.
type jsonScanner struct {
	buf []byte
	pos int
}

func (s *jsonScanner) value(depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("JSON nested deeper than %d", maxJSONDepth)
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, _, err := s.string()
		return err
	case c == '-' || isDigit(c):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.syntaxError("looking for a value")
}

func (s *jsonScanner) object(depth int) error {
	s.pos++ // '{'
	var keys keySet
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.syntaxError("looking for an object key")
		}
		key, escaped, err := s.string()
		if err != nil {
			return err
		}
		if escaped {
			key = []byte(unquote(key))
		}
		if err := keys.add(key); err != nil {
			return err
		}
		s.skipSpace()
		if s.peek() != ':' {
			return s.syntaxError("after an object key")
		}
		s.pos++
		s.skipSpace()
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			return nil
		default:
			return s.syntaxError("after an object member")
		}
	}
}

// keySet holds the decoded keys of one object, to refuse a repeated one:
// the first smallObject keys in an array that is scanned, any more in a
// map. The keys are slices of the document unless they have escapes.
type keySet struct {
	n     int
	small [smallObject][]byte
	index map[string]struct{}
}

func (k *keySet) add(key []byte) error {
	for _, seen := range k.small[:k.n] {
		if bytes.Equal(seen, key) {
			return fmt.Errorf("duplicate key %q", key)
		}
	}
	if k.n < smallObject {
		k.small[k.n] = key
		k.n++
		return nil
	}
	if k.index == nil {
		k.index = make(map[string]struct{})
	}
	if _, dup := k.index[string(key)]; dup {
		return fmt.Errorf("duplicate key %q", key)
	}
	k.index[string(key)] = struct{}{}
	return nil
}

func (s *jsonScanner) array(depth int) error {
	s.pos++ // '['
	s.skipSpace()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
			s.skipSpace()
		case ']':
			s.pos++
			return nil
		default:
			return s.syntaxError("after an array element")
		}
	}
}

// string checks a string literal and returns its body, the text between
// the quotes, and whether that has escapes.
func (s *jsonScanner) string() (body []byte, escaped bool, err error) {
	s.pos++ // '"'
	start := s.pos
	for s.pos < len(s.buf) {
		switch c := s.buf[s.pos]; {
		case c == '"':
			s.pos++
			return s.buf[start : s.pos-1], escaped, nil
		case c == '\\':
			if err := s.escape(); err != nil {
				return nil, false, err
			}
			escaped = true
		case c < 0x20:
			return nil, false, s.syntaxError("in a string")
		default:
			s.pos++
		}
	}
	return nil, false, s.syntaxError("in a string")
}

// escape checks the escape sequence at s.pos and moves past it.
func (s *jsonScanner) escape() error {
	s.pos++ // '\\'
	c := s.peek()
	if simpleEscapes[c] != 0 {
		s.pos++
		return nil
	}
	if c != 'u' {
		return s.syntaxError("in a string escape")
	}
	s.pos++
	if _, ok := hex4(s.buf[s.pos:]); !ok {
		return s.syntaxError("in a \\u escape")
	}
	s.pos += 4
	return nil
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case isDigit(c):
		s.digits()
	default:
		return s.syntaxError("in a number")
	}
	if s.peek() == '.' {
		s.pos++
		if !s.digits() {
			return s.syntaxError("after a decimal point")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if !s.digits() {
			return s.syntaxError("in an exponent")
		}
	}
	return nil
}

// digits skips a run of decimal digits and reports whether there was one.
func (s *jsonScanner) digits() bool {
	start := s.pos
	for isDigit(s.peek()) {
		s.pos++
	}
	return s.pos > start
}

func (s *jsonScanner) literal(lit string) error {
	if len(s.buf)-s.pos < len(lit) || string(s.buf[s.pos:s.pos+len(lit)]) != lit {
		return s.syntaxError("in a literal")
	}
	s.pos += len(lit)
	return nil
}

func (s *jsonScanner) skipSpace() { s.pos = skipSpace(s.buf, s.pos) }

// peek returns the byte at s.pos, or 0 at the end (0 is never valid there).
func (s *jsonScanner) peek() byte {
	if s.pos < len(s.buf) {
		return s.buf[s.pos]
	}
	return 0
}

func (s *jsonScanner) syntaxError(context string) error {
	if s.pos >= len(s.buf) {
		return fmt.Errorf("invalid JSON: unexpected end of input %s", context)
	}
	return fmt.Errorf("invalid JSON: unexpected %q at offset %d %s", s.buf[s.pos], s.pos, context)
}

// simpleEscapes maps the letter of each one-letter escape to what it
// stands for; other bytes map to 0.
var simpleEscapes = [256]byte{
	'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t',
}

// hex4 decodes the four hex digits b starts with.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipSpace returns the index of the first byte of b from i on that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// unquote decodes the body of a string literal that checkJSON accepted, as
// encoding/json does: a \u surrogate pair becomes one rune, a lone
// surrogate U+FFFD.
func unquote(body []byte) string {
	i := bytes.IndexByte(body, '\\')
	if i < 0 {
		return intern(body)
	}
	out := make([]byte, 0, len(body))
	for i >= 0 {
		out = append(out, body[:i]...)
		var r rune
		r, body = unescape(body[i:])
		out = utf8.AppendRune(out, r)
		i = bytes.IndexByte(body, '\\')
	}
	return string(append(out, body...))
}

// unescape decodes the checked escape sequence b starts with and returns
// the rest of b.
func unescape(b []byte) (rune, []byte) {
	if len(b) < 2 {
		return utf8.RuneError, nil
	}
	if c := simpleEscapes[b[1]]; c != 0 {
		return rune(c), b[2:]
	}
	r, ok := hex4(b[2:])
	if !ok {
		return utf8.RuneError, b[2:]
	}
	b = b[6:]
	if !utf16.IsSurrogate(r) {
		return r, b
	}
	if len(b) >= 6 && b[0] == '\\' && b[1] == 'u' {
		if r2, ok := hex4(b[2:]); ok {
			if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
				return pair, b[6:]
			}
		}
	}
	return utf8.RuneError, b
}

// internable are the keys and fixed values of the documents read here:
// intern returns these strings instead of allocating a copy.
var internable = func() map[string]string {
	m := make(map[string]string)
	for _, s := range []string{
		"critical", "identity", "docker-reference", "image", "docker-manifest-digest", "type", "optional",
		SimpleSigningType, "_type", inTotoStatementV1, inTotoStatementV01, "subject", "digest", "sha256",
		"name", "uri", "content", "downloadLocation", "mediaType", "annotations", "predicateType",
		CosignPredicateType, "predicate", "verificationMaterial", "dsseEnvelope", "payload", "payloadType",
		"signatures", "sig", "keyid", InTotoPayloadType, BundleMediaType,
	} {
		m[s] = s
	}
	return m
}()

// maxInternable bounds the strings intern looks up: longer ones are never
// internable, and hashing them would be wasted.
const maxInternable = 64

// intern returns b as a string, shared when it is internable.
func intern(b []byte) string {
	if len(b) <= maxInternable {
		if s, ok := internable[string(b)]; ok {
			return s
		}
	}
	return string(b)
}

// Reading checked documents.

// jsonKind is the type of a JSON value; 0 is an absent value.
type jsonKind uint8

const (
	jsonNull jsonKind = iota + 1
	jsonBool
	jsonNumber
	jsonString
	jsonObject
	jsonArray
)

// jsonValue is the text of one JSON value, without surrounding whitespace,
// from a document that checkJSON accepted; nil is an absent value. Its
// methods read that text again as needed: they do not check it, and on
// text that was not checked they return nonsense but never panic.
type jsonValue []byte

// parseJSON checks b with checkJSON and returns its value.
func parseJSON(b []byte) (jsonValue, error) {
	if err := checkJSON(b); err != nil {
		return nil, err
	}
	return jsonValue(bytes.Trim(b, " \t\r\n")), nil
}

// kind returns the type of v, from its first byte.
func (v jsonValue) kind() jsonKind {
	if len(v) == 0 {
		return 0
	}
	switch c := v[0]; {
	case c == '{':
		return jsonObject
	case c == '[':
		return jsonArray
	case c == '"':
		return jsonString
	case c == 't' || c == 'f':
		return jsonBool
	case c == 'n':
		return jsonNull
	}
	return jsonNumber
}

// text returns the decoded text of a string.
func (v jsonValue) text() string {
	if len(v) < 2 {
		return ""
	}
	return unquote(v[1 : len(v)-1])
}

// members yields the keys and values of an object in document order.
func (v jsonValue) members() iter.Seq2[string, jsonValue] {
	return func(yield func(string, jsonValue) bool) {
		if v.kind() != jsonObject {
			return
		}
		for i := skipSpace(v, 1); i < len(v) && v[i] == '"'; {
			keyEnd := endOfString(v, i)
			colon := skipSpace(v, keyEnd)
			if colon >= len(v) {
				return
			}
			start := skipSpace(v, colon+1)
			end := endOfValue(v, start)
			if !yield(v[i:keyEnd].text(), v[start:end]) {
				return
			}
			i = skipSpace(v, skipSpace(v, end)+1) // past ','
		}
	}
}

// elements yields the elements of an array.
func (v jsonValue) elements() iter.Seq[jsonValue] {
	return func(yield func(jsonValue) bool) {
		if v.kind() != jsonArray {
			return
		}
		for i := skipSpace(v, 1); i < len(v) && v[i] != ']'; {
			end := endOfValue(v, i)
			if end == i || !yield(v[i:end]) {
				return
			}
			i = skipSpace(v, skipSpace(v, end)+1) // past ','
		}
	}
}

// get returns the member of object v named key, or nil.
func (v jsonValue) get(key string) jsonValue {
	for k, m := range v.members() {
		if k == key {
			return m
		}
	}
	return nil
}

// endOfString returns the index just past the string literal at b[i]: past
// the first quote after it that does not end an odd run of backslashes.
func endOfString(b []byte, i int) int {
	open := i
	for i++; i < len(b); {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			break
		}
		q += i
		backslashes := 0
		for k := q - 1; k > open && b[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
	return len(b)
}

// endOfValue returns the index just past the checked value at b[i].
func endOfValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = endOfString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && !endsScalar(b[i]) {
		i++
	}
	return i
}

// endsScalar reports whether c may follow a number or literal.
func endsScalar(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// Schema checks on checked documents.

// maxFields is the most keys an object read by fields may have: a
// ResourceDescriptor has seven.
const maxFields = 8

// jsonFields are the members of an object for the keys fields was given,
// required then optional, in that order; an absent optional member is nil.
type jsonFields [maxFields]jsonValue

// fields checks that v is an object with every required key and no key
// outside required and optional, and returns their members in one pass
// over v. A key that differs only in case from an expected one is named as
// such. Of several unexpected keys, the first in byte order is reported.
func (v jsonValue) fields(what string, required []string, optional ...string) (jsonFields, error) {
	var f jsonFields
	switch v.kind() {
	case 0:
		return f, fmt.Errorf("%s: missing", what)
	case jsonObject:
	default:
		return f, fmt.Errorf("%s: not a JSON object", what)
	}
	if len(required)+len(optional) > len(f) {
		return f, fmt.Errorf("%s: reading %d keys, over %d", what, len(required)+len(optional), len(f))
	}
	unknown, found := "", false
	for k, m := range v.members() {
		if i := slices.Index(required, k); i >= 0 {
			f[i] = m
		} else if i := slices.Index(optional, k); i >= 0 {
			f[len(required)+i] = m
		} else if !found || k < unknown {
			unknown, found = k, true
		}
	}
	if found {
		return f, unknownKeyError(what, unknown, required, optional)
	}
	for i, k := range required {
		if f[i] == nil {
			return f, fmt.Errorf("%s: missing key %q", what, k)
		}
	}
	return f, nil
}

func unknownKeyError(what, key string, required, optional []string) error {
	for _, want := range slices.Concat(required, optional) {
		if strings.EqualFold(key, want) {
			return fmt.Errorf("%s: key %q differs in case from %q", what, key, want)
		}
	}
	return fmt.Errorf("%s: unknown key %q", what, key)
}

// stringOf returns the text of v, which must be a string (null is refused).
func stringOf(v jsonValue, what string) (string, error) {
	if v.kind() != jsonString {
		return "", fmt.Errorf("%s: not a JSON string", what)
	}
	return v.text(), nil
}

// The same checks on raw JSON text, for parsers that keep members as
// json.RawMessage (bundle.go).

// decodeObject checks raw, which must be a JSON object, checks its key set
// as fields does and returns its members. The values alias raw.
func decodeObject(raw json.RawMessage, what string, required []string, optional ...string) (map[string]json.RawMessage, error) {
	if raw == nil {
		return nil, fmt.Errorf("%s: missing", what)
	}
	v, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := v.fields(what, required, optional...); err != nil {
		return nil, err
	}
	obj := make(map[string]json.RawMessage)
	for k, m := range v.members() {
		obj[k] = json.RawMessage(m)
	}
	return obj, nil
}

// decodeString decodes raw, which must be a JSON string (null is refused).
func decodeString(raw json.RawMessage, what string) (string, error) {
	if !isKind(raw, '"') {
		return "", fmt.Errorf("%s: not a JSON string", what)
	}
	v, err := parseJSON(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return stringOf(v, what)
}

// isKind reports whether the JSON value raw starts with c.
func isKind(raw json.RawMessage, c byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == c
}

package sigstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Kind says what a manifest document is.
type Kind int

const (
	// KindOther is a document of another media type (Docker schema 1, an
	// unknown type): it is served only when signed, and nothing in it is
	// read.
	KindOther Kind = iota
	// KindImage is an OCI image manifest or Docker schema 2 manifest.
	KindImage
	// KindIndex is an OCI image index or Docker manifest list.
	KindIndex
)

func (k Kind) String() string {
	switch k {
	case KindImage:
		return "image manifest"
	case KindIndex:
		return "index"
	default:
		return "manifest"
	}
}

// Descriptor is an OCI content descriptor as a manifest carries it. Every
// field a client may act on is kept, so that a decision sees what the
// client will see: URLs (a client may fetch the content from there instead
// of the registry) and Platform (a client chooses children by it).
type Descriptor struct {
	MediaType    string
	Digest       v1.Hash
	Size         int64
	URLs         []string
	Platform     *v1.Platform
	ArtifactType string
	Annotations  map[string]string
	// Data is set when the descriptor embeds its content ("data", even
	// empty): a client may take the content from there instead of
	// fetching it.
	Data bool
}

// Manifest is the one strict view of a manifest or index that the proxy,
// the verifier and the CLI read. ParseManifest makes it.
type Manifest struct {
	// Kind is what the document is, from MediaType.
	Kind Kind
	// MediaType is the document's media type: the Content-Type it was
	// served with, without parameters, or the document's own mediaType when
	// it was served without one. The two never disagree.
	MediaType     string
	SchemaVersion int
	ArtifactType  string
	// Config, Layers and Subject are an image manifest's; Manifests an
	// index's. A document with both kinds of field is refused.
	Config    *Descriptor
	Layers    []Descriptor
	Manifests []Descriptor
	Subject   *Descriptor
	// Annotations are the document's own annotations.
	Annotations map[string]string
}

// Descriptors yields every descriptor of m: config, layers, manifests and
// subject.
func (m *Manifest) Descriptors() []*Descriptor {
	out := make([]*Descriptor, 0, 2+len(m.Layers)+len(m.Manifests))
	if m.Config != nil {
		out = append(out, m.Config)
	}
	for i := range m.Layers {
		out = append(out, &m.Layers[i])
	}
	for i := range m.Manifests {
		out = append(out, &m.Manifests[i])
	}
	if m.Subject != nil {
		out = append(out, m.Subject)
	}
	return out
}

// Children are the digests an index lists, each once, in order; nil for
// anything else.
func (m *Manifest) Children() []v1.Hash {
	if m.Kind != KindIndex {
		return nil
	}
	out := make([]v1.Hash, 0, len(m.Manifests))
	seen := make(map[v1.Hash]bool, len(m.Manifests))
	for _, d := range m.Manifests {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			out = append(out, d.Digest)
		}
	}
	return out
}

// Top-level and descriptor keys a manifest parser reads. A key that
// differs from one of these only in case is refused: Go's encoding/json
// (containerd, Docker, skopeo) would read it as that key, other parsers
// would not.
var (
	manifestKeys   = []string{"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject", "annotations", "fsLayers"}
	descriptorKeys = []string{"mediaType", "digest", "size", "urls", "platform", "artifactType", "annotations", "data"}
)

// ParseManifest reads a manifest or index strictly. It refuses what a
// client could read differently from the proxy: invalid UTF-8, repeated
// keys or keys differing only in case from a known one (at any depth for
// the former, for manifest and descriptor keys for the latter), trailing
// data, a document that is both an index and an image manifest
// (GHSA-qq97-vm5h-rrhg), a mediaType that differs from contentType, and no
// media type at all. Image manifests and indexes must have schemaVersion
// 2 and well-formed descriptors (digest algorithm:hex, size >= 0); other
// media types are kept as KindOther without further reading.
func ParseManifest(body []byte, contentType string) (*Manifest, error) {
	doc, err := parseJSON(body)
	if err != nil {
		return nil, err
	}
	if doc.kind() != jsonObject {
		return nil, errors.New("not a JSON object")
	}
	members, err := knownMembers(doc, "manifest", manifestKeys)
	if err != nil {
		return nil, err
	}
	m := &Manifest{}
	docType, err := optionalString(members["mediaType"], "mediaType")
	if err != nil {
		return nil, err
	}
	ct := BaseMediaType(contentType)
	switch {
	case ct == "" && docType == "":
		return nil, errors.New("no media type in Content-Type or document")
	case ct == "":
		m.MediaType = docType
	case docType != "" && docType != ct:
		return nil, fmt.Errorf("document mediaType %q differs from Content-Type %q", docType, ct)
	default:
		m.MediaType = ct
	}
	_, hasManifests := members["manifests"]
	_, hasLayers := members["layers"]
	_, hasConfig := members["config"]
	_, hasFSLayers := members["fsLayers"]
	if hasManifests && (hasLayers || hasConfig || hasFSLayers) {
		return nil, errors.New("document is both an index (manifests) and a manifest (layers/config)")
	}
	switch mt := types.MediaType(m.MediaType); {
	case mt.IsIndex():
		m.Kind = KindIndex
	case mt.IsImage():
		m.Kind = KindImage
	default:
		return m, nil // KindOther: served only when signed
	}
	if err := m.readTyped(members, hasManifests, hasLayers || hasConfig); err != nil {
		return nil, err
	}
	return m, nil
}

// readTyped reads the fields of an image manifest or index.
func (m *Manifest) readTyped(members map[string]jsonValue, hasManifests, hasImageFields bool) error {
	sv := members["schemaVersion"]
	if sv.kind() != jsonNumber || string(sv) != "2" {
		return fmt.Errorf("schemaVersion %s, want 2", orAbsent(sv))
	}
	m.SchemaVersion = 2
	var err error
	if m.ArtifactType, err = optionalString(members["artifactType"], "artifactType"); err != nil {
		return err
	}
	if m.Annotations, err = stringMap(members["annotations"], "annotations"); err != nil {
		return err
	}
	if m.Subject, err = optionalDescriptor(members["subject"], "subject"); err != nil {
		return err
	}
	if m.Kind == KindIndex {
		if hasImageFields {
			return fmt.Errorf("%s has layers or config", m.MediaType)
		}
		if !hasManifests {
			return errors.New("index has no manifests")
		}
		m.Manifests, err = descriptorList(members["manifests"], "manifests")
		return err
	}
	if hasManifests {
		return fmt.Errorf("%s has manifests", m.MediaType)
	}
	if m.Config, err = optionalDescriptor(members["config"], "config"); err != nil {
		return err
	}
	if m.Config == nil {
		return errors.New("image manifest has no config")
	}
	m.Layers, err = descriptorList(members["layers"], "layers")
	return err
}

// knownMembers returns the members of object v whose keys are in known,
// refusing a key that differs from a known one only in case. Unknown keys
// are skipped: the specs let documents carry more.
func knownMembers(v jsonValue, what string, known []string) (map[string]jsonValue, error) {
	out := make(map[string]jsonValue, len(known))
	for k, val := range v.members() {
		for _, canon := range known {
			if k == canon {
				if val.kind() != jsonNull {
					out[k] = val
				}
				break
			}
			if strings.EqualFold(k, canon) {
				return nil, fmt.Errorf("%s key %q: the spec's key is %q", what, k, canon)
			}
		}
	}
	return out, nil
}

func orAbsent(v jsonValue) string {
	if v == nil {
		return "absent"
	}
	return string(v)
}

// optionalString reads a string member; absent or null is "".
func optionalString(v jsonValue, what string) (string, error) {
	if v == nil {
		return "", nil
	}
	return stringOf(v, what)
}

// stringMap reads an object of string values; absent or null is nil.
func stringMap(v jsonValue, what string) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	if v.kind() != jsonObject {
		return nil, fmt.Errorf("%s: not a JSON object", what)
	}
	var out map[string]string
	for k, val := range v.members() {
		if val.kind() != jsonString {
			return nil, fmt.Errorf("%s.%s: not a JSON string", what, k)
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[k] = val.text()
	}
	return out, nil
}

func optionalDescriptor(v jsonValue, what string) (*Descriptor, error) {
	if v == nil {
		return nil, nil
	}
	d, err := parseDescriptor(v, what)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// descriptorList reads an array of descriptors; absent is empty.
func descriptorList(v jsonValue, what string) ([]Descriptor, error) {
	if v == nil {
		return nil, nil
	}
	if v.kind() != jsonArray {
		return nil, fmt.Errorf("%s: not a JSON array", what)
	}
	var out []Descriptor
	i := 0
	for el := range v.elements() {
		d, err := parseDescriptor(el, what+"["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		i++
	}
	return out, nil
}

// parseDescriptor reads one descriptor: mediaType and digest are required,
// size is a non-negative integer.
func parseDescriptor(v jsonValue, what string) (Descriptor, error) {
	var d Descriptor
	if v.kind() != jsonObject {
		return d, fmt.Errorf("%s: not a JSON object", what)
	}
	f, err := knownMembers(v, what, descriptorKeys)
	if err != nil {
		return d, err
	}
	if d.MediaType, err = stringOf(f["mediaType"], what+".mediaType"); err != nil {
		return d, err
	}
	ds, err := stringOf(f["digest"], what+".digest")
	if err != nil {
		return d, err
	}
	if d.Digest, err = ParseContentDigest(ds); err != nil {
		return d, fmt.Errorf("%s.digest: %w", what, err)
	}
	size := f["size"]
	if size.kind() != jsonNumber {
		return d, fmt.Errorf("%s.size: not a number", what)
	}
	if d.Size, err = strconv.ParseInt(string(size), 10, 64); err != nil || d.Size < 0 {
		return d, fmt.Errorf("%s.size %s: want a non-negative integer", what, size)
	}
	if d.ArtifactType, err = optionalString(f["artifactType"], what+".artifactType"); err != nil {
		return d, err
	}
	if d.Annotations, err = stringMap(f["annotations"], what+".annotations"); err != nil {
		return d, err
	}
	if dv := f["data"]; dv != nil {
		if dv.kind() != jsonString {
			return d, fmt.Errorf("%s.data: not a JSON string", what)
		}
		d.Data = true
	}
	if u := f["urls"]; u != nil {
		if u.kind() != jsonArray {
			return d, fmt.Errorf("%s.urls: not a JSON array", what)
		}
		d.URLs = []string{} // present, even if empty: a client may still look
		for el := range u.elements() {
			s, err := stringOf(el, what+".urls[]")
			if err != nil {
				return d, err
			}
			d.URLs = append(d.URLs, s)
		}
	}
	if p := f["platform"]; p != nil {
		if p.kind() != jsonObject {
			return d, fmt.Errorf("%s.platform: not a JSON object", what)
		}
		if _, err := knownMembers(p, what+".platform", platformKeys); err != nil {
			return d, err
		}
		d.Platform = new(v1.Platform)
		if err := json.Unmarshal(p, d.Platform); err != nil {
			return d, fmt.Errorf("%s.platform: %w", what, err)
		}
	}
	return d, nil
}

var platformKeys = []string{"architecture", "os", "os.version", "os.features", "variant", "features"}

// ParseDigest parses "sha256:<64 lowercase hex>", the only digest form the
// signature formats and the proxy's manifest gate accept.
func ParseDigest(s string) (v1.Hash, error) {
	return parseDigest(s)
}

// contentDigestPattern is the OCI digest grammar for registered and
// unregistered algorithms, with lowercase hex encodings.
var contentDigestPattern = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)

// ParseContentDigest parses a descriptor's digest: sha256 and sha512 must
// be lowercase hex of their length; other algorithms must follow the OCI
// digest grammar.
func ParseContentDigest(s string) (v1.Hash, error) {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok || !contentDigestPattern.MatchString(s) {
		return v1.Hash{}, fmt.Errorf("digest %q: want algorithm:encoded", s)
	}
	want := map[string]int{"sha256": 64, "sha512": 128}[alg]
	if want != 0 && (len(enc) != want || !isLowerHex(enc)) {
		return v1.Hash{}, fmt.Errorf("digest %q: %s wants %d lowercase hex characters", s, alg, want)
	}
	return v1.Hash{Algorithm: alg, Hex: enc}, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// BaseMediaType is a Content-Type value without parameters, lower-cased
// as mime.ParseMediaType does; a value it cannot parse is returned
// trimmed.
func BaseMediaType(contentType string) string {
	if contentType == "" {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(mt)
}

// MaxRepositoryLength bounds a repository name, as distribution does.
const MaxRepositoryLength = 255

// CheckRepository accepts the distribution spec's repository names:
// lower-case components [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)* joined by
// '/', at most 255 characters.
func CheckRepository(name string) error {
	if name == "" {
		return errors.New("empty repository name")
	}
	if len(name) > MaxRepositoryLength {
		return fmt.Errorf("repository name longer than %d characters", MaxRepositoryLength)
	}
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return fmt.Errorf("invalid repository name %q: component %q must be lower-case letters and digits, "+
				"separated by '.', '_', '__' or dashes", name, comp)
		}
	}
	return nil
}

func validComponent(c string) bool {
	i, n := 0, len(c)
	for {
		start := i
		for i < n && isLowerAlnum(c[i]) {
			i++
		}
		if i == start {
			return false
		}
		if i == n {
			return true
		}
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < n && c[i] == '_' {
				i++
			}
		case '-':
			for i < n && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

func isLowerAlnum(b byte) bool { return ('a' <= b && b <= 'z') || ('0' <= b && b <= '9') }

// LooksLikeManifest reports whether a client could take b for a manifest
// or index: a JSON object with a top-level "layers", "manifests" or
// "fsLayers" member, or a mediaType naming a manifest or index. Keys are
// compared without case, as Go's encoding/json (containerd, Docker) reads
// them. It is for content served as something else, a blob: what it says
// true of must be gated like a manifest.
func LooksLikeManifest(b []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return false
	}
	for k, v := range top {
		// strings.EqualFold folds as encoding/json matches keys:
		// Unicode simple folding, so "layerſ" (U+017F) is "layers".
		for _, want := range []string{"layers", "manifests", "fsLayers"} {
			if strings.EqualFold(k, want) {
				return true
			}
		}
		if strings.EqualFold(k, "mediaType") {
			var mt string
			if json.Unmarshal(v, &mt) == nil {
				if t := types.MediaType(mt); t.IsImage() || t.IsIndex() || t.IsSchema1() {
					return true
				}
			}
		}
	}
	return false
}

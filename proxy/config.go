package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// Defaults for the values a configuration may leave out.
const (
	DefaultListen          = "127.0.0.1:5050"
	DefaultCacheSize       = verifier.DefaultCacheSize
	DefaultTTL             = verifier.DefaultTTL
	DefaultNegativeTTL     = verifier.DefaultNegativeTTL
	DefaultManifestBytes   = 64 << 20
	DefaultInflightBytes   = 64 << 20
	DefaultUpstreamTimeout = 30 * time.Second
)

const maxConfigSize = 1 << 20

// Config is a proxy configuration. LoadConfig and ParseConfig build it from
// YAML; programs may also fill it in directly (New validates it again). Zero
// values mean the defaults above.
type Config struct {
	// Listen is the address the proxy listens on (DefaultListen).
	Listen string
	// Upstreams are the registries the proxy pulls from.
	Upstreams []Upstream
	// DefaultUpstream names, by Registry, the upstream for requests with
	// neither ?ns= nor a registry prefix. Empty means the only upstream when
	// there is one; with several, such requests are refused.
	DefaultUpstream string
	// Policies decide which signers (keys, keyless identities) must have
	// signed what, and which attestations must be present; first match
	// wins. Policies that name one trusted root share its
	// *sigstore.TrustedRoot.
	Policies []*verifier.Policy
	// DefaultAllow admits repositories that no policy matches, unchecked.
	// False (defaultPolicy: deny) refuses them.
	DefaultAllow bool
	// Cache sizes the decision and manifest caches.
	Cache CacheConfig
	// UpstreamTimeout bounds each manifest fetch and each signature lookup
	// (DefaultUpstreamTimeout).
	UpstreamTimeout time.Duration
	// TLS, when set, serves HTTPS on Listen.
	TLS *TLSConfig
	// MetricsListen, when set, serves /metrics on its own address instead
	// of on Listen.
	MetricsListen string
	// Log says how the proxy logs.
	Log LogConfig
	// ClientAuth, when set, is how clients authenticate to the proxy. It is
	// required when an upstream has proxy-owned credentials and is not
	// public.
	ClientAuth *ClientAuthConfig

	// files are the files the configuration was read from (the YAML file,
	// keys, trusted roots, credentials, certificates): a change of any is a
	// reload.
	files []string
}

// TLSConfig is the proxy's own certificate. The files are read again when
// they change on disk (cert-manager rotates them).
type TLSConfig struct {
	Cert, Key string
	// ClientCA, when set, requires client certificates signed by it
	// (mTLS).
	ClientCA string
}

// LogConfig chooses the log format and level.
type LogConfig struct {
	// Format is "text" (default) or "json".
	Format string
	// Level is "debug", "info" (default), "warn" or "error". The access
	// log and the audit log are at info.
	Level string
}

// ClientAuthConfig is how clients authenticate to the proxy.
type ClientAuthConfig struct {
	// Htpasswd is an htpasswd file of bcrypt hashes.
	Htpasswd string
}

// UpstreamAuth is the proxy's own credentials for an upstream: a username
// and a password file, or a Docker config file (with its credential
// helpers).
type UpstreamAuth struct {
	Username     string
	PasswordFile string
	DockerConfig string
}

// Files returns the files c was read from: the YAML file, key files,
// trusted roots, credentials and certificates. A change of any is a reason
// to reload.
func (c *Config) Files() []string { return slices.Clone(c.files) }

// Upstream is one registry behind the proxy.
type Upstream struct {
	// Registry is the name clients use for it (host or host:port), in
	// ?ns=<registry>, in /v2/<registry>/<repository>/... paths, and in the
	// "<registry>/<repository>" names that policies match and signatures
	// carry.
	Registry string
	// URL is where it is reached: http:// or https://host[:port].
	URL string
	// ForwardCredentials says whether the Authorization header clients
	// send the proxy is passed on to this upstream (for its manifests,
	// blobs and the signature lookups made for the client). A client has
	// one set of credentials for the proxy's host, obtained from the
	// challenge of the /v2/ ping, which the default upstream answers; so
	// nil means true for the default upstream and false for the others,
	// which then see anonymous requests.
	ForwardCredentials *bool
	// CAFile, when set, holds the PEM certificates that upstream's TLS
	// certificate must chain to, instead of the system's.
	CAFile string
	// InsecureSkipVerify skips checking upstream's TLS certificate (a
	// warning is logged at start).
	InsecureSkipVerify bool
	// Auth, when set, is the proxy's own credentials for this upstream:
	// clients' credentials are then never forwarded to it.
	Auth *UpstreamAuth
	// Public says that anyone who reaches the proxy may pull this
	// upstream's images with the proxy's own credentials; without it,
	// clientAuth is required.
	Public bool
}

// forwardsCredentials resolves u.ForwardCredentials for c (with defaults
// applied).
func (c *Config) forwardsCredentials(u Upstream) bool {
	if u.Auth != nil || c.ClientAuth != nil {
		// The proxy's own credentials go upstream, or the client's
		// Authorization is its login to the proxy: never the client's.
		return false
	}
	if u.ForwardCredentials != nil {
		return *u.ForwardCredentials
	}
	return u.Registry == c.DefaultUpstream
}

// CacheConfig sizes the caches.
type CacheConfig struct {
	// Size is the number of decisions kept (DefaultCacheSize).
	Size int
	// TTL is how long an admission is remembered (DefaultTTL).
	TTL time.Duration
	// NegativeTTL is how long a refusal for "no valid signature" is
	// remembered (DefaultNegativeTTL).
	NegativeTTL time.Duration
	// ManifestBytes bounds the verified manifest bytes kept in memory to
	// serve by digest (DefaultManifestBytes); negative keeps none.
	ManifestBytes int64
	// InflightBytes bounds the manifest bytes being read from upstreams at
	// once (DefaultInflightBytes); past it clients get 503 with
	// Retry-After.
	InflightBytes int64
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c *Config) withDefaults() Config {
	out := *c
	if out.Listen == "" {
		out.Listen = DefaultListen
	}
	if out.DefaultUpstream == "" && len(out.Upstreams) == 1 {
		out.DefaultUpstream = out.Upstreams[0].Registry
	}
	if out.Cache.Size == 0 {
		out.Cache.Size = DefaultCacheSize
	}
	if out.Cache.TTL == 0 {
		out.Cache.TTL = DefaultTTL
	}
	if out.Cache.NegativeTTL == 0 {
		out.Cache.NegativeTTL = DefaultNegativeTTL
	}
	if out.Cache.ManifestBytes == 0 {
		out.Cache.ManifestBytes = DefaultManifestBytes
	}
	if out.Cache.InflightBytes == 0 {
		out.Cache.InflightBytes = DefaultInflightBytes
	}
	if out.UpstreamTimeout == 0 {
		out.UpstreamTimeout = DefaultUpstreamTimeout
	}
	return out
}

// verifierConfig is the part of c that package verifier needs.
func (c *Config) verifierConfig() verifier.Config {
	return verifier.Config{
		Policies:     c.Policies,
		DefaultAllow: c.DefaultAllow,
		CacheSize:    c.Cache.Size,
		TTL:          c.Cache.TTL,
		NegativeTTL:  c.Cache.NegativeTTL,
	}
}

// validate checks what a Config built in code can get wrong; it assumes
// withDefaults was applied.
func (c *Config) validate() error {
	if err := checkListen(c.Listen); err != nil {
		return err
	}
	if len(c.Upstreams) == 0 {
		return errors.New("no upstreams")
	}
	seen := make(map[string]bool, len(c.Upstreams))
	for _, u := range c.Upstreams {
		if err := checkRegistry(u.Registry); err != nil {
			return err
		}
		if seen[u.Registry] {
			return fmt.Errorf("upstream registry %q is listed twice", u.Registry)
		}
		seen[u.Registry] = true
		if _, err := parseUpstreamURL(u.URL); err != nil {
			return fmt.Errorf("upstream %s: %w", u.Registry, err)
		}
	}
	if c.DefaultUpstream != "" && !seen[c.DefaultUpstream] {
		return fmt.Errorf("defaultUpstream %q names no upstream (have %s)", c.DefaultUpstream, registryList(c.Upstreams))
	}
	switch {
	case c.Cache.Size < 0:
		return fmt.Errorf("cache size %d is negative", c.Cache.Size)
	case c.Cache.TTL < 0 || c.Cache.NegativeTTL < 0:
		return errors.New("cache TTLs must be positive")
	case c.UpstreamTimeout < 0:
		return errors.New("upstreamTimeout must be positive")
	case c.Cache.InflightBytes < maxManifestSize:
		return fmt.Errorf("cache.inflightBytes %d is less than one manifest (%d bytes)", c.Cache.InflightBytes, maxManifestSize)
	}
	if _, err := verifier.New(c.verifierConfig()); err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	return nil
}

func registryList(ups []Upstream) string {
	names := make([]string, len(ups))
	for i, u := range ups {
		names[i] = u.Registry
	}
	return strings.Join(names, ", ")
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: want host:port: %w", addr, err)
	}
	if strings.ContainsFunc(host, isSpaceOrControl) {
		return fmt.Errorf("listen address %q: bad host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("listen address %q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

// registryName is a lower-case host name or IPv4 address with an optional
// port.
var registryName = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$`)

// checkRegistry accepts names that cannot be mistaken for the first
// component of a repository: they contain '.' or ':' or are "localhost",
// as docker decides what is a registry.
func checkRegistry(r string) error {
	if !registryName.MatchString(r) {
		return fmt.Errorf("upstream registry %q: want a lower-case host[:port], like 127.0.0.1:5000 or ghcr.io", r)
	}
	if !strings.ContainsAny(r, ".:") && r != "localhost" {
		return fmt.Errorf("upstream registry %q: a registry name needs a '.' or a ':port' (or is localhost), "+
			"else it reads as a repository path component", r)
	}
	return nil
}

func parseUpstreamURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("url %q: scheme must be http or https", s)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("url %q: no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("url %q: credentials do not belong in the URL (clients send their own)", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("url %q: want scheme://host[:port] only, no path or query", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// ConfigError is a configuration problem at a line of a file.
type ConfigError struct {
	// File is the configuration's path as given.
	File string
	// Line is 1-based; 0 when the problem has no line (an empty file).
	Line int
	// Msg says what is wrong and what is wanted.
	Msg string
}

// Error is "FILE:LINE: reason".
func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// LoadConfig reads and validates a YAML configuration file. The files it
// names (keys, trusted roots, credentials, certificates) are relative to the
// file's directory.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	return ParseConfig(data, path, filepath.Dir(path))
}

// ParseConfig parses and validates a YAML configuration. path names it in
// errors; the files it names are read relative to baseDir. Every error is a
// *ConfigError saying "FILE:LINE: reason".
func ParseConfig(data []byte, path, baseDir string) (*Config, error) {
	p := &configParser{file: path, baseDir: baseDir}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("larger than %d bytes", maxConfigSize)}
	}
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	cfg, err := p.config(root)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

type configParser struct {
	file    string
	baseDir string
	files   []string // files the configuration depends on, besides file
	// roots are the trustedRoots, each parsed once however many policies
	// name it; nil when the file has no trustedRoots.
	roots map[string]*sigstore.TrustedRoot
	// rootRefs are the policies' keyless.trustedRoot names, resolved once
	// the whole file is read: trustedRoots may come after policies.
	rootRefs []rootRef
}

// rootRef is one policy's keyless.trustedRoot, waiting to be resolved.
type rootRef struct {
	pol     *verifier.Policy
	keyless *verifier.Keyless
	name    string
	node    *yaml.Node
}

func (p *configParser) errorf(n *yaml.Node, format string, args ...any) error {
	return &ConfigError{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data into the root mapping node.
func (p *configParser) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: p.file, Msg: "empty configuration"}
		}
		return nil, p.syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, p.syntaxError(err)
		}
		return nil, p.errorf(&extra, "a second YAML document; the configuration is one document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &ConfigError{File: p.file, Msg: "empty configuration"}
	}
	return doc.Content[0], nil
}

func (p *configParser) syntaxError(err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{File: p.file, Line: line, Msg: "YAML: " + m[2]}
	}
	return &ConfigError{File: p.file, Msg: err.Error()}
}

// fields walks a mapping: every key must be one of handlers', at most once.
func (p *configParser) fields(n *yaml.Node, where string, handlers map[string]func(*yaml.Node) error) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "%s must be a mapping", where)
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := p.noAlias(k); err != nil {
			return err
		}
		h, ok := handlers[k.Value]
		if k.Kind != yaml.ScalarNode || !ok {
			known := make([]string, 0, len(handlers))
			for name := range handlers {
				known = append(known, name)
			}
			slices.Sort(known)
			return p.errorf(k, "unknown key %q in %s (known: %s)", k.Value, where, strings.Join(known, ", "))
		}
		if line, dup := seen[k.Value]; dup {
			return p.errorf(k, "key %q appears twice in %s (first at line %d)", k.Value, where, line)
		}
		seen[k.Value] = k.Line
		if err := p.noAlias(v); err != nil {
			return err
		}
		if err := h(v); err != nil {
			return err
		}
	}
	return nil
}

func (p *configParser) noAlias(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		return p.errorf(n, "YAML aliases are not supported; write the value out")
	}
	return nil
}

func (p *configParser) str(n *yaml.Node, what string, out *string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!binary" {
		return p.errorf(n, "%s must be a string", what)
	}
	if n.Value == "" {
		return p.errorf(n, "%s is empty", what)
	}
	*out = n.Value
	return nil
}

// file reads a path relative to the configuration's directory and
// records it as a file the configuration depends on.
func (p *configParser) path(n *yaml.Node, what string, out *string) error {
	var s string
	if err := p.str(n, what, &s); err != nil {
		return err
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.baseDir, s)
	}
	if _, err := os.Stat(s); err != nil {
		return p.errorf(n, "%s: %v", what, err)
	}
	p.files = append(p.files, s)
	*out = s
	return nil
}

func (p *configParser) tls(n *yaml.Node, cfg *Config) error {
	t := &TLSConfig{}
	err := p.fields(n, "tls", map[string]func(*yaml.Node) error{
		"cert":     func(v *yaml.Node) error { return p.path(v, "tls.cert", &t.Cert) },
		"key":      func(v *yaml.Node) error { return p.path(v, "tls.key", &t.Key) },
		"clientCA": func(v *yaml.Node) error { return p.path(v, "tls.clientCA", &t.ClientCA) },
	})
	if err != nil {
		return err
	}
	if t.Cert == "" || t.Key == "" {
		return p.errorf(n, "tls needs both cert and key")
	}
	if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
		return p.errorf(n, "tls: %v", err)
	}
	if t.ClientCA != "" {
		if _, err := loadCertPool(t.ClientCA); err != nil {
			return p.errorf(n, "tls.clientCA: %v", err)
		}
	}
	cfg.TLS = t
	return nil
}

func (p *configParser) upstreamAuth(n *yaml.Node, where string) (*UpstreamAuth, error) {
	a := &UpstreamAuth{}
	err := p.fields(n, where, map[string]func(*yaml.Node) error{
		"username":     func(v *yaml.Node) error { return p.str(v, where+".username", &a.Username) },
		"passwordFile": func(v *yaml.Node) error { return p.path(v, where+".passwordFile", &a.PasswordFile) },
		"dockerConfig": func(v *yaml.Node) error { return p.path(v, where+".dockerConfig", &a.DockerConfig) },
	})
	if err != nil {
		return nil, err
	}
	switch {
	case a.DockerConfig != "" && (a.Username != "" || a.PasswordFile != ""):
		return nil, p.errorf(n, "%s: give username and passwordFile, or dockerConfig, not both", where)
	case a.DockerConfig == "" && (a.Username == "" || a.PasswordFile == ""):
		return nil, p.errorf(n, "%s: needs username and passwordFile, or dockerConfig", where)
	}
	if _, err := a.authenticator(""); err != nil && a.DockerConfig == "" {
		return nil, p.errorf(n, "%s: %v", where, err)
	}
	if a.DockerConfig != "" {
		if _, err := loadDockerConfig(a.DockerConfig); err != nil {
			return nil, p.errorf(n, "%s: %v", where, err)
		}
	}
	return a, nil
}

func (p *configParser) boolean(n *yaml.Node, what string, out *bool) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.ScalarNode || (n.Value != "true" && n.Value != "false") {
		return p.errorf(n, "%s must be true or false", what)
	}
	*out = n.Value == "true"
	return nil
}

func (p *configParser) integer(n *yaml.Node, what string, out *int64) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return p.errorf(n, "%s must be an integer, got %q", what, n.Value)
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		return p.errorf(n, "%s: %q is not an integer", what, n.Value)
	}
	*out = v
	return nil
}

func (p *configParser) duration(n *yaml.Node, what string, out *time.Duration) error {
	var s string
	if err := p.str(n, what, &s); err != nil {
		return err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return p.errorf(n, "%s: %q is not a duration like 30s, 5m or 1h", what, s)
	}
	if d <= 0 {
		return p.errorf(n, "%s must be positive, got %s", what, s)
	}
	*out = d
	return nil
}

func (p *configParser) stringList(n *yaml.Node, what string, out *[]string) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, "%s must be a list", what)
	}
	for i, item := range n.Content {
		var s string
		if err := p.str(item, fmt.Sprintf("%s[%d]", what, i), &s); err != nil {
			return err
		}
		*out = append(*out, s)
	}
	return nil
}

func (p *configParser) enum(n *yaml.Node, what string, out *string, allowed ...string) error {
	var s string
	if err := p.str(n, what, &s); err != nil {
		return err
	}
	if !slices.Contains(allowed, s) {
		return p.errorf(n, "%s %q: want %s", what, s, strings.Join(allowed, " or "))
	}
	*out = s
	return nil
}

// config walks the root mapping.
func (p *configParser) config(root *yaml.Node) (*Config, error) {
	cfg := &Config{}
	var defaultUpstream, upstreamsNode *yaml.Node
	var policiesNode []*yaml.Node
	err := p.fields(root, "the configuration", map[string]func(*yaml.Node) error{
		"listen": func(n *yaml.Node) error {
			if err := p.str(n, "listen", &cfg.Listen); err != nil {
				return err
			}
			if err := checkListen(cfg.Listen); err != nil {
				return p.errorf(n, "%v", err)
			}
			return nil
		},
		"upstreams": func(n *yaml.Node) error {
			upstreamsNode = n
			return p.upstreams(n, cfg)
		},
		"defaultUpstream": func(n *yaml.Node) error {
			defaultUpstream = n
			return p.str(n, "defaultUpstream", &cfg.DefaultUpstream)
		},
		"policies": func(n *yaml.Node) error {
			var err error
			policiesNode, err = p.policies(n, cfg)
			return err
		},
		"trustedRoots": p.trustedRoots,
		"defaultPolicy": func(n *yaml.Node) error {
			var s string
			if err := p.enum(n, "defaultPolicy", &s, "deny", "allow"); err != nil {
				return err
			}
			cfg.DefaultAllow = s == "allow"
			return nil
		},
		"cache":           func(n *yaml.Node) error { return p.cache(n, &cfg.Cache) },
		"upstreamTimeout": func(n *yaml.Node) error { return p.duration(n, "upstreamTimeout", &cfg.UpstreamTimeout) },
		"tls":             func(n *yaml.Node) error { return p.tls(n, cfg) },
		"metricsListen": func(n *yaml.Node) error {
			if err := p.str(n, "metricsListen", &cfg.MetricsListen); err != nil {
				return err
			}
			if err := checkListen(cfg.MetricsListen); err != nil {
				return p.errorf(n, "metricsListen: %v", err)
			}
			return nil
		},
		"log": func(n *yaml.Node) error {
			return p.fields(n, "log", map[string]func(*yaml.Node) error{
				"format": func(v *yaml.Node) error { return p.enum(v, "log.format", &cfg.Log.Format, "text", "json") },
				"level": func(v *yaml.Node) error {
					return p.enum(v, "log.level", &cfg.Log.Level, "debug", "info", "warn", "error")
				},
			})
		},
		"clientAuth": func(n *yaml.Node) error {
			cfg.ClientAuth = &ClientAuthConfig{}
			var at *yaml.Node
			err := p.fields(n, "clientAuth", map[string]func(*yaml.Node) error{
				"htpasswd": func(v *yaml.Node) error { at = v; return p.path(v, "clientAuth.htpasswd", &cfg.ClientAuth.Htpasswd) },
			})
			if err != nil {
				return err
			}
			if at == nil {
				return p.errorf(n, "clientAuth: htpasswd is missing")
			}
			if _, err := loadHtpasswd(cfg.ClientAuth.Htpasswd); err != nil {
				return p.errorf(at, "%v", err)
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	if upstreamsNode == nil {
		return nil, p.errorf(root, "no upstreams: list at least one registry under upstreams")
	}
	if defaultUpstream != nil && !slices.ContainsFunc(cfg.Upstreams, func(u Upstream) bool { return u.Registry == cfg.DefaultUpstream }) {
		return nil, p.errorf(defaultUpstream, "defaultUpstream %q names no upstream (have %s)", cfg.DefaultUpstream, registryList(cfg.Upstreams))
	}
	if err := p.resolveRoots(); err != nil {
		return nil, err
	}
	if err := p.checkPolicies(cfg, policiesNode); err != nil {
		return nil, err
	}
	for i, u := range cfg.Upstreams {
		if cfg.ClientAuth != nil && u.ForwardCredentials != nil && *u.ForwardCredentials {
			return nil, p.errorf(upstreamsNode.Content[i], "upstream %s: forwardCredentials: true cannot go with clientAuth: "+
				"clients' Authorization is then their login to this proxy, which must not reach an upstream", u.Registry)
		}
		if u.Auth != nil && !u.Public && cfg.ClientAuth == nil {
			return nil, p.errorf(upstreamsNode.Content[i], "upstream %s has the proxy's own credentials: "+
				"set clientAuth (or public: true on it), else anyone who reaches the proxy pulls its private images", u.Registry)
		}
	}
	cfg.files = append([]string{p.file}, p.files...)
	full := cfg.withDefaults()
	if err := full.validate(); err != nil { // anything not caught at a line above
		return nil, p.errorf(root, "%v", err)
	}
	return cfg, nil
}

func (p *configParser) upstreams(n *yaml.Node, cfg *Config) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return p.errorf(n, "upstreams must be a non-empty list")
	}
	for i, item := range n.Content {
		var u Upstream
		where := fmt.Sprintf("upstreams[%d]", i)
		var urlNode *yaml.Node
		err := p.fields(item, where, map[string]func(*yaml.Node) error{
			"registry": func(v *yaml.Node) error {
				if err := p.str(v, where+".registry", &u.Registry); err != nil {
					return err
				}
				if err := checkRegistry(u.Registry); err != nil {
					return p.errorf(v, "%v", err)
				}
				for _, prev := range cfg.Upstreams {
					if prev.Registry == u.Registry {
						return p.errorf(v, "upstream registry %q is listed twice", u.Registry)
					}
				}
				return nil
			},
			"forwardCredentials": func(v *yaml.Node) error {
				var b bool
				if err := p.boolean(v, where+".forwardCredentials", &b); err != nil {
					return err
				}
				u.ForwardCredentials = &b
				return nil
			},
			"caFile": func(v *yaml.Node) error {
				if err := p.path(v, where+".caFile", &u.CAFile); err != nil {
					return err
				}
				if _, err := loadCertPool(u.CAFile); err != nil {
					return p.errorf(v, "%v", err)
				}
				return nil
			},
			"insecureSkipVerify": func(v *yaml.Node) error { return p.boolean(v, where+".insecureSkipVerify", &u.InsecureSkipVerify) },
			"public":             func(v *yaml.Node) error { return p.boolean(v, where+".public", &u.Public) },
			"auth": func(v *yaml.Node) error {
				a, err := p.upstreamAuth(v, where+".auth")
				u.Auth = a
				return err
			},
			"url": func(v *yaml.Node) error {
				urlNode = v
				if err := p.str(v, where+".url", &u.URL); err != nil {
					return err
				}
				if _, err := parseUpstreamURL(u.URL); err != nil {
					return p.errorf(v, "%v", err)
				}
				return nil
			},
		})
		if err != nil {
			return err
		}
		if u.Registry == "" {
			return p.errorf(item, "%s: registry is missing", where)
		}
		if urlNode == nil {
			return p.errorf(item, "%s: url is missing", where)
		}
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	return nil
}

func (p *configParser) cache(n *yaml.Node, c *CacheConfig) error {
	return p.fields(n, "cache", map[string]func(*yaml.Node) error{
		"size": func(v *yaml.Node) error {
			var size int64
			if err := p.integer(v, "cache.size", &size); err != nil {
				return err
			}
			if size < 1 || size > 1<<24 {
				return p.errorf(v, "cache.size %d: want 1 to %d decisions", size, 1<<24)
			}
			c.Size = int(size)
			return nil
		},
		"ttl":         func(v *yaml.Node) error { return p.duration(v, "cache.ttl", &c.TTL) },
		"negativeTTL": func(v *yaml.Node) error { return p.duration(v, "cache.negativeTTL", &c.NegativeTTL) },
		"manifestBytes": func(v *yaml.Node) error {
			if err := p.integer(v, "cache.manifestBytes", &c.ManifestBytes); err != nil {
				return err
			}
			if c.ManifestBytes < 0 || c.ManifestBytes > 1<<34 {
				return p.errorf(v, "cache.manifestBytes %d: want 0 (keep none) to %d", c.ManifestBytes, int64(1)<<34)
			}
			if c.ManifestBytes == 0 {
				c.ManifestBytes = -1
			}
			return nil
		},
		"inflightBytes": func(v *yaml.Node) error {
			if err := p.integer(v, "cache.inflightBytes", &c.InflightBytes); err != nil {
				return err
			}
			if c.InflightBytes < maxManifestSize || c.InflightBytes > 1<<34 {
				return p.errorf(v, "cache.inflightBytes %d: want %d (one manifest) to %d", c.InflightBytes, maxManifestSize, int64(1)<<34)
			}
			return nil
		},
	})
}

func (p *configParser) policies(n *yaml.Node, cfg *Config) ([]*yaml.Node, error) {
	if err := p.noAlias(n); err != nil {
		return nil, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errorf(n, "policies must be a list")
	}
	for i, item := range n.Content {
		pol, err := p.policy(item, i)
		if err != nil {
			return nil, err
		}
		for j, prev := range cfg.Policies {
			if prev.Name == pol.Name {
				return nil, p.errorf(item, "policy name %q is used twice (policies[%d] and policies[%d])", pol.Name, j, i)
			}
		}
		cfg.Policies = append(cfg.Policies, pol)
	}
	return n.Content, nil
}

func (p *configParser) policy(n *yaml.Node, i int) (*verifier.Policy, error) {
	pol := &verifier.Policy{}
	where := fmt.Sprintf("policies[%d]", i)
	var matchNode, keysNode, thresholdNode, signatureNode *yaml.Node
	var threshold int64
	err := p.fields(n, where, map[string]func(*yaml.Node) error{
		"name": func(v *yaml.Node) error { return p.str(v, where+".name", &pol.Name) },
		"match": func(v *yaml.Node) error {
			matchNode = v
			return p.stringList(v, where+".match", &pol.Match)
		},
		"keys": func(v *yaml.Node) error {
			keysNode = v
			return p.keys(v, where+".keys", pol)
		},
		"threshold": func(v *yaml.Node) error {
			thresholdNode = v
			return p.integer(v, where+".threshold", &threshold)
		},
		"mode": func(v *yaml.Node) error {
			return p.enum(v, where+".mode", (*string)(&pol.Mode),
				string(verifier.ModeEnforce), string(verifier.ModeWarn), string(verifier.ModeAllow))
		},
		"identity": func(v *yaml.Node) error { return p.identity(v, where+".identity", pol) },
		"annotations": func(v *yaml.Node) error {
			pol.Annotations = map[string]string{}
			return p.stringMap(v, where+".annotations", pol.Annotations)
		},
		"children": func(v *yaml.Node) error {
			return p.enum(v, where+".children", (*string)(&pol.Children),
				string(verifier.ChildrenInherit), string(verifier.ChildrenRequireSigned))
		},
		"keyless":      func(v *yaml.Node) error { return p.keyless(v, where+".keyless", pol) },
		"attestations": func(v *yaml.Node) error { return p.attestations(v, where+".attestations", pol) },
		"signature": func(v *yaml.Node) error {
			signatureNode = v
			var required bool
			if err := p.boolean(v, where+".signature", &required); err != nil {
				return err
			}
			pol.SignatureOptional = !required
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	if pol.Name == "" {
		return nil, p.errorf(n, "%s: name is missing", where)
	}
	where = fmt.Sprintf("policy %q", pol.Name)
	if matchNode == nil || len(pol.Match) == 0 {
		return nil, p.errorf(n, "%s: match needs at least one pattern on \"<registry>/<repository>\"", where)
	}
	if pol.Mode == "" {
		pol.Mode = verifier.ModeEnforce
	}
	identities := 0
	if pol.Keyless != nil {
		identities = len(pol.Keyless.Identities)
	}
	if pol.Mode != verifier.ModeAllow && len(pol.Keys) == 0 && pol.Keyless == nil {
		at := n
		if keysNode != nil {
			at = keysNode
		}
		return nil, p.errorf(at, "%s: mode %s needs at least one key (keys) or certificate identity (keyless)", where, pol.Mode)
	}
	if thresholdNode != nil {
		signers := int64(len(pol.Keys) + identities)
		if threshold < 1 || threshold > signers {
			return nil, p.errorf(thresholdNode, "%s: threshold %d: want 1 to the number of signers, %d (%d keys and %d keyless identities)",
				where, threshold, signers, len(pol.Keys), identities)
		}
		pol.Threshold = int(threshold)
	}
	if pol.SignatureOptional && len(pol.Attestations) == 0 {
		return nil, p.errorf(signatureNode, "%s: signature: false admits on attestations alone, and there are none: "+
			"list the required attestations, or leave signature out", where)
	}
	return pol, nil
}

// trustedRoots loads each named trusted_root.json, a file relative to the
// configuration, once.
func (p *configParser) trustedRoots(n *yaml.Node) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "trustedRoots must be a mapping of names to trusted_root.json files")
	}
	p.roots = make(map[string]*sigstore.TrustedRoot, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := p.noAlias(k); err != nil {
			return err
		}
		var name string
		if err := p.str(k, "a trustedRoots name", &name); err != nil {
			return err
		}
		if strings.ContainsFunc(name, isSpaceOrControl) {
			return p.errorf(k, "trusted root name %q contains spaces", name)
		}
		if line, dup := lines[name]; dup {
			return p.errorf(k, "trusted root %q appears twice in trustedRoots (first at line %d)", name, line)
		}
		lines[name] = k.Line
		if err := p.noAlias(v); err != nil {
			return err
		}
		var path string
		if err := p.path(v, "trustedRoots."+name, &path); err != nil {
			return err
		}
		root, err := loadTrustedRoot(name, path)
		if err != nil {
			return p.errorf(v, "trustedRoots.%s: %v", name, err)
		}
		p.roots[name] = root
	}
	return nil
}

// loadTrustedRoot reads and parses the trusted_root.json at path.
func loadTrustedRoot(name, path string) (*sigstore.TrustedRoot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, sigstore.MaxTrustedRootSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	root, err := sigstore.ParseTrustedRoot(name, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return root, nil
}

// resolveRoots points each keyless policy at the trusted root it names.
func (p *configParser) resolveRoots() error {
	for _, r := range p.rootRefs {
		root, ok := p.roots[r.name]
		if !ok {
			have := "none is defined: add it under trustedRoots"
			if len(p.roots) > 0 {
				have = "have " + strings.Join(slices.Sorted(maps.Keys(p.roots)), ", ")
			}
			return p.errorf(r.node, "policy %q: keyless.trustedRoot %q names no trusted root (%s)", r.pol.Name, r.name, have)
		}
		r.keyless.TrustedRoot = root
	}
	return nil
}

// keyless reads a policy's certificate signers; its trustedRoot is
// resolved by resolveRoots.
func (p *configParser) keyless(n *yaml.Node, where string, pol *verifier.Policy) error {
	k := &verifier.Keyless{}
	var rootNode, idsNode *yaml.Node
	var rootName string
	err := p.fields(n, where, map[string]func(*yaml.Node) error{
		"trustedRoot": func(v *yaml.Node) error {
			rootNode = v
			return p.str(v, where+".trustedRoot", &rootName)
		},
		"identities": func(v *yaml.Node) error {
			idsNode = v
			return p.identities(v, where+".identities", k)
		},
	})
	if err != nil {
		return err
	}
	if rootNode == nil {
		return p.errorf(n, "%s: trustedRoot is missing: name one of trustedRoots", where)
	}
	if len(k.Identities) == 0 {
		at := n
		if idsNode != nil {
			at = idsNode
		}
		return p.errorf(at, "%s: identities needs at least one entry {issuer or issuerRegExp, subject or subjectRegExp}", where)
	}
	pol.Keyless = k
	p.rootRefs = append(p.rootRefs, rootRef{pol: pol, keyless: k, name: rootName, node: rootNode})
	return nil
}

// identities reads the accepted certificate identities. Each entry counts
// as one signer, so an entry given twice is refused: it would let one
// certificate count twice.
func (p *configParser) identities(n *yaml.Node, where string, k *verifier.Keyless) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, "%s must be a list of {issuer or issuerRegExp, subject or subjectRegExp}", where)
	}
	seen := map[verifier.Identity]int{}
	for i, item := range n.Content {
		at := fmt.Sprintf("%s[%d]", where, i)
		var id verifier.Identity
		err := p.fields(item, at, map[string]func(*yaml.Node) error{
			"issuer":        func(v *yaml.Node) error { return p.str(v, at+".issuer", &id.Issuer) },
			"issuerRegExp":  func(v *yaml.Node) error { return p.regexp(v, at+".issuerRegExp", &id.IssuerRegExp) },
			"subject":       func(v *yaml.Node) error { return p.str(v, at+".subject", &id.Subject) },
			"subjectRegExp": func(v *yaml.Node) error { return p.regexp(v, at+".subjectRegExp", &id.SubjectRegExp) },
		})
		if err != nil {
			return err
		}
		switch {
		case id.Issuer != "" && id.IssuerRegExp != "":
			return p.errorf(item, "%s: give issuer or issuerRegExp, not both", at)
		case id.Issuer == "" && id.IssuerRegExp == "":
			return p.errorf(item, "%s: needs issuer (the OIDC issuer, exactly) or issuerRegExp", at)
		case id.Subject != "" && id.SubjectRegExp != "":
			return p.errorf(item, "%s: give subject or subjectRegExp, not both", at)
		case id.Subject == "" && id.SubjectRegExp == "":
			return p.errorf(item, "%s: needs subject (the certificate's e-mail or URI, exactly) or subjectRegExp", at)
		}
		if line, dup := seen[id]; dup {
			return p.errorf(item, "%s: the same identity as at line %d (%s)", at, line, id)
		}
		seen[id] = item.Line
		k.Identities = append(k.Identities, id)
	}
	return nil
}

// regexp reads a Go (RE2) regular expression.
func (p *configParser) regexp(n *yaml.Node, what string, out *string) error {
	if err := p.str(n, what, out); err != nil {
		return err
	}
	if _, err := regexp.Compile(*out); err != nil {
		return p.errorf(n, "%s: not a Go (RE2) regular expression: %v", what, err)
	}
	return nil
}

// attestations reads the required attestations, one rule per predicate
// type.
func (p *configParser) attestations(n *yaml.Node, where string, pol *verifier.Policy) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return p.errorf(n, "%s must be a non-empty list of {predicateType, predicate}", where)
	}
	seen := map[string]int{}
	for i, item := range n.Content {
		at := fmt.Sprintf("%s[%d]", where, i)
		var rule verifier.AttestationRule
		var typeNode *yaml.Node
		err := p.fields(item, at, map[string]func(*yaml.Node) error{
			"predicateType": func(v *yaml.Node) error {
				typeNode = v
				return p.str(v, at+".predicateType", &rule.PredicateType)
			},
			"predicate": func(v *yaml.Node) error {
				var err error
				rule.Predicate, err = p.predicate(v, at+".predicate")
				return err
			},
		})
		if err != nil {
			return err
		}
		if typeNode == nil {
			return p.errorf(item, "%s: predicateType is missing (like https://slsa.dev/provenance/v1)", at)
		}
		if line, dup := seen[rule.PredicateType]; dup {
			return p.errorf(typeNode, "%s: predicateType %q is listed twice (first at line %d); "+
				"put all its conditions under one predicate", at, rule.PredicateType, line)
		}
		seen[rule.PredicateType] = typeNode.Line
		pol.Attestations = append(pol.Attestations, rule)
	}
	return nil
}

// predicate reads the conditions on a predicate: dotted paths to scalar
// values. YAML integers stay int64 and floats float64.
func (p *configParser) predicate(n *yaml.Node, where string) (map[string]any, error) {
	if err := p.noAlias(n); err != nil {
		return nil, err
	}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		return nil, p.errorf(n, "%s must be a non-empty mapping of dotted paths to values (leave it out for no conditions)", where)
	}
	out := make(map[string]any, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := p.noAlias(k); err != nil {
			return nil, err
		}
		var path string
		if err := p.str(k, where+" path", &path); err != nil {
			return nil, err
		}
		if slices.Contains(strings.Split(path, "."), "") {
			return nil, p.errorf(k, "%s: path %q has an empty segment: want names and array indexes joined by '.', like runDetails.builder.id", where, path)
		}
		if line, dup := lines[path]; dup {
			return nil, p.errorf(k, "%s: path %q appears twice (first at line %d)", where, path, line)
		}
		lines[path] = k.Line
		val, err := p.scalar(v, where+"."+path)
		if err != nil {
			return nil, err
		}
		out[path] = val
	}
	return out, nil
}

// scalar is a YAML scalar as the JSON value it is compared with: string,
// int64, float64, bool or nil. A timestamp is its text, as JSON has no
// timestamps.
func (p *configParser) scalar(n *yaml.Node, what string) (any, error) {
	if err := p.noAlias(n); err != nil {
		return nil, err
	}
	if n.Kind != yaml.ScalarNode {
		return nil, p.errorf(n, "%s must be a string, a number, true, false or null, not a list or a mapping", what)
	}
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, p.errorf(n, "%s: %q is not a boolean", what, n.Value)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return nil, p.errorf(n, "%s: %s does not fit a 64-bit integer", what, n.Value)
		}
		return i, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, p.errorf(n, "%s: %s is not a JSON number", what, n.Value)
		}
		return f, nil
	case "!!str", "!!timestamp":
		return n.Value, nil
	}
	return nil, p.errorf(n, "%s: a %s value is not a string, a number, true, false or null", what, n.ShortTag())
}

func (p *configParser) identity(n *yaml.Node, where string, pol *verifier.Policy) error {
	err := p.fields(n, where, map[string]func(*yaml.Node) error{
		"mode": func(v *yaml.Node) error {
			return p.enum(v, where+".mode", (*string)(&pol.Identity),
				string(verifier.IdentityRepository), string(verifier.IdentityAny))
		},
		"remap": func(v *yaml.Node) error {
			r := &verifier.Remap{}
			err := p.fields(v, where+".remap", map[string]func(*yaml.Node) error{
				"prefix":       func(x *yaml.Node) error { return p.str(x, where+".remap.prefix", &r.Prefix) },
				"signedPrefix": func(x *yaml.Node) error { return p.str(x, where+".remap.signedPrefix", &r.SignedPrefix) },
			})
			if err != nil {
				return err
			}
			if r.Prefix == "" || r.SignedPrefix == "" {
				return p.errorf(v, "%s.remap needs both prefix and signedPrefix", where)
			}
			pol.Remap = r
			return nil
		},
	})
	if err != nil {
		return err
	}
	if pol.Remap != nil && pol.Identity == verifier.IdentityAny {
		return p.errorf(n, "%s: remap only applies to mode repository", where)
	}
	return nil
}

func (p *configParser) stringMap(n *yaml.Node, where string, out map[string]string) error {
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "%s must be a mapping of strings", where)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var key, val string
		if err := p.noAlias(k); err != nil {
			return err
		}
		if err := p.str(k, where+" key", &key); err != nil {
			return err
		}
		if _, dup := out[key]; dup {
			return p.errorf(k, "%s: key %q appears twice", where, key)
		}
		if err := p.noAlias(v); err != nil {
			return err
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Tag == "!!binary" {
			return p.errorf(v, "%s.%s must be a string", where, key)
		}
		val = v.Value
		out[key] = val
	}
	return nil
}

// keys loads each entry: inline PEM, or a file relative to the config.
func (p *configParser) keys(n *yaml.Node, where string, pol *verifier.Policy) error {
	if err := p.noAlias(n); err != nil {
		return err
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, "%s must be a list of key files or inline PEM", where)
	}
	seen := map[string]int{}
	for i, item := range n.Content {
		var s string
		if err := p.str(item, fmt.Sprintf("%s[%d]", where, i), &s); err != nil {
			return err
		}
		key, err := p.key(s)
		if err != nil {
			return p.errorf(item, "%s[%d]: %v", where, i, err)
		}
		if line, dup := seen[key.ID()]; dup {
			return p.errorf(item, "%s[%d]: the same key as at line %d (%s)", where, i, line, key.ID())
		}
		seen[key.ID()] = item.Line
		pol.Keys = append(pol.Keys, key)
	}
	return nil
}

func (p *configParser) key(s string) (sigstore.PublicKey, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") {
		k, err := sigstore.ParsePublicKey([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("inline PEM: %w", err)
		}
		return k, nil
	}
	path := s
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.baseDir, path)
	}
	k, err := sigstore.LoadPublicKey(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	p.files = append(p.files, path)
	return k, nil
}

// checkPolicies runs package verifier's own checks on each policy, so that
// its errors too point at a line.
func (p *configParser) checkPolicies(cfg *Config, nodes []*yaml.Node) error {
	for i, pol := range cfg.Policies {
		if _, err := verifier.New(verifier.Config{Policies: []*verifier.Policy{pol}}); err != nil {
			msg := strings.ReplaceAll(err.Error(), "\n", "; ")
			return p.errorf(nodes[i], "policy %q: %s", pol.Name, msg)
		}
	}
	return nil
}

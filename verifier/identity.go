package verifier

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/cosign-dev/cosign/sigstore"
)

// maxReferenceLen caps what NormalizeReference parses: 255 for the
// repository, a host, a tag or digest, with room to spare.
const maxReferenceLen = 1024

// NormalizeReference reduces an image reference to its repository in
// canonical form: "<registry>/<repository>", with Docker Hub spelled
// "index.docker.io", "library/" added to single-component Hub names, the
// registry lower-cased, and any tag or digest removed. So "alpine",
// "docker.io/library/alpine:3" and "index.docker.io/library/alpine@sha256:..."
// all give "index.docker.io/library/alpine".
//
// It rejects what no registry would serve: URL schemes, user info, empty
// path components, "..", names that break the distribution grammar.
func NormalizeReference(ref string) (string, error) {
	if ref == "" {
		return "", errors.New("empty reference")
	}
	if len(ref) > maxReferenceLen {
		return "", fmt.Errorf("reference is %d bytes long, over %d", len(ref), maxReferenceLen)
	}
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	repo := r.Context()
	registry := strings.ToLower(repo.RegistryStr())
	if err := checkRegistryHost(registry); err != nil {
		return "", fmt.Errorf("reference %q: %w", ref, err)
	}
	path := repo.RepositoryStr()
	if err := sigstore.CheckRepository(path); err != nil {
		return "", fmt.Errorf("reference %q: %w", ref, err)
	}
	if registry != repo.RegistryStr() {
		// Lower-casing changed the registry: parse again so that Docker
		// Hub's rules apply to "DOCKER.io/x" as to "docker.io/x". The
		// input is now lower case, so this recurses once.
		return NormalizeReference(registry + "/" + path)
	}
	return registry + "/" + path, nil
}

// checkRegistryHost accepts "host", "host:port" and "[ipv6]:port".
func checkRegistryHost(reg string) error {
	host, port := reg, ""
	if strings.HasPrefix(reg, "[") {
		end := strings.IndexByte(reg, ']')
		if end < 0 {
			return fmt.Errorf("registry %q: unterminated IPv6 address", reg)
		}
		host, port = reg[1:end], strings.TrimPrefix(reg[end+1:], ":")
		if reg[end+1:] != "" && !strings.HasPrefix(reg[end+1:], ":") {
			return fmt.Errorf("registry %q: junk after IPv6 address", reg)
		}
		if host == "" || strings.Trim(host, "0123456789abcdef:.") != "" {
			return fmt.Errorf("registry %q: bad IPv6 address", reg)
		}
	} else {
		if i := strings.LastIndexByte(reg, ':'); i >= 0 {
			host, port = reg[:i], reg[i+1:]
			if port == "" {
				return fmt.Errorf("registry %q: empty port", reg)
			}
		}
		if err := checkHostname(host); err != nil {
			return fmt.Errorf("registry %q: %w", reg, err)
		}
	}
	if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("registry %q: bad port", reg)
	}
	return nil
}

// checkHostname accepts dot-separated labels of letters, digits and '-'
// that neither start nor end with '-'.
func checkHostname(host string) error {
	if host == "" {
		return errors.New("empty host")
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Errorf("bad host label %q", label)
		}
	}
	return nil
}

// hasPathPrefix reports whether s is prefix or starts with prefix + "/".
func hasPathPrefix(s, prefix string) bool {
	return s == prefix || strings.HasPrefix(s, prefix+"/")
}

// expectedIdentity is the name a signature must carry for img under p: the
// pulled name, remapped, normalized.
func expectedIdentity(p *Policy, img Image) (string, error) {
	pulled := img.Registry + "/" + img.Repository
	norm, err := NormalizeReference(pulled)
	if err != nil {
		return "", fmt.Errorf("pulled name: %w", err)
	}
	r := p.Remap
	if r == nil {
		return norm, nil
	}
	for _, candidate := range []string{pulled, norm} {
		for _, prefix := range []string{r.Prefix, normalizePrefix(r.Prefix)} {
			if !hasPathPrefix(candidate, prefix) {
				continue
			}
			remapped := r.SignedPrefix + candidate[len(prefix):]
			out, err := NormalizeReference(remapped)
			if err != nil {
				return "", fmt.Errorf("remapped name %q: %w", remapped, err)
			}
			return out, nil
		}
	}
	return norm, nil
}

// normalizePrefix spells a remap prefix's registry the way
// NormalizeReference does: lower case, Docker Hub as "index.docker.io".
func normalizePrefix(prefix string) string {
	reg, rest, found := strings.Cut(prefix, "/")
	reg = strings.ToLower(reg)
	if reg == "docker.io" {
		reg = name.DefaultRegistry
	}
	if found {
		return reg + "/" + rest
	}
	return reg
}

// checkIdentity applies the policy's identity rule to one signature's
// claims and returns a detail for the message when it fails.
//
// A simple-signing payload must name the pulled repository (after Remap);
// an empty or malformed docker-reference fails. Formats that carry no
// reference (bundles) pass: they bind the digest only, and they were found
// in the pulled repository.
func checkIdentity(p *Policy, img Image, sig sigstore.Signature, claims sigstore.Claims) (string, bool) {
	if p.identity() == IdentityAny {
		return "", true
	}
	if claims.Reference == "" && sig.Format != sigstore.FormatSimpleSigning {
		return "", true
	}
	if p.Remap == nil && namesPulled(claims.Reference, img) {
		// The same text normalizes the same way: no need to parse either.
		return "", true
	}
	want, err := expectedIdentity(p, img)
	if err != nil {
		return err.Error(), false
	}
	got, err := NormalizeReference(claims.Reference)
	if err != nil {
		return fmt.Sprintf("it names %q, which is not a valid reference", claims.Reference), false
	}
	if got != want {
		return fmt.Sprintf("it names %q, not %q", got, want) + remapHint(p, img, got, want), false
	}
	return "", true
}

// namesPulled reports whether ref is literally "<registry>/<repository>" of
// img, the form cosign writes, without building that string.
func namesPulled(ref string, img Image) bool {
	return len(ref) == len(img.Registry)+1+len(img.Repository) &&
		strings.HasPrefix(ref, img.Registry) &&
		ref[len(img.Registry)] == '/' &&
		strings.HasSuffix(ref, img.Repository)
}

// remapHint suggests a remap when only the registries differ and the
// policy has none: the usual cause is an image served from a mirror of the
// registry it was signed at.
func remapHint(p *Policy, img Image, got, want string) string {
	gotReg, gotPath, _ := strings.Cut(got, "/")
	wantReg, wantPath, _ := strings.Cut(want, "/")
	if p.Remap != nil || gotPath != wantPath || gotReg == wantReg {
		return ""
	}
	return fmt.Sprintf("; if %s mirrors %s, remap prefix %q to %q", img.Registry, gotReg, img.Registry, gotReg)
}

package sigstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// MaxTrustedRootSize is the largest trusted_root.json read; the public-good
// one is about 7 KiB.
const MaxTrustedRootSize = 4 << 20

// TrustedRoot is a Sigstore trusted root (the trusted_root.json that TUF
// distributes): the Fulcio certificate authorities, Rekor logs, CT logs and
// timestamp authorities keyless signatures are verified against.
type TrustedRoot struct {
	// Name is what policies call it.
	Name string
	// Digest is "sha256:<hex>" of the JSON it was read from: a changed root
	// changes the fingerprint of the policies that use it.
	Digest string
	// Material is the parsed root.
	Material root.TrustedMaterial
}

// ParseTrustedRoot parses a trusted_root.json. The root must name at least
// one Fulcio certificate authority and one Rekor log: keyless signatures
// are only counted with a transparency-log entry.
func ParseTrustedRoot(name string, b []byte) (*TrustedRoot, error) {
	if name == "" {
		return nil, errors.New("trusted root: empty name")
	}
	if len(b) > MaxTrustedRootSize {
		return nil, fmt.Errorf("trusted root %q: %d bytes, the limit is %d", name, len(b), MaxTrustedRootSize)
	}
	if err := checkJSON(b); err != nil {
		return nil, fmt.Errorf("trusted root %q: %w", name, err)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("trusted root %q: %w", name, err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 {
		return nil, fmt.Errorf("trusted root %q: no Fulcio certificate authority", name)
	}
	if len(tr.RekorLogs()) == 0 {
		return nil, fmt.Errorf("trusted root %q: no Rekor transparency log", name)
	}
	sum := sha256.Sum256(b)
	return &TrustedRoot{Name: name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Material: tr}, nil
}

// RequiresSCT reports whether certificates must carry a signed certificate
// timestamp: they must when the root names a certificate-transparency log,
// as the public-good root does. A private Sigstore without CT names none.
func (r *TrustedRoot) RequiresSCT() bool {
	return r != nil && r.Material != nil && len(r.Material.CTLogs()) > 0
}

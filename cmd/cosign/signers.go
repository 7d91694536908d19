package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// signerFlags are the flags that say who must have signed, shared by verify
// and verify-attestation: a public key, or a certificate identity (keyless,
// sigstore cosign's flag names) and the trusted root it must chain to.
type signerFlags struct {
	key                      string
	identity, identityRegexp string
	issuer, issuerRegexp     string
	trustedRoot              string
}

// register adds --key and the keyless flags to fs.
func (s *signerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.key, "key", "", "public key: PKIX PEM (Ed25519, ECDSA P-256 or RSA), a file or env://VAR")
	fs.StringVar(&s.identity, "certificate-identity", "",
		"keyless: the signing certificate's identity (its SAN: e-mail, URI, ...), exactly")
	fs.StringVar(&s.identityRegexp, "certificate-identity-regexp", "",
		"keyless: a regular expression (Go RE2, unanchored) the certificate's identity must match")
	fs.StringVar(&s.issuer, "certificate-oidc-issuer", "",
		"keyless: the OIDC issuer named in the certificate, exactly (e.g. https://token.actions.githubusercontent.com)")
	fs.StringVar(&s.issuerRegexp, "certificate-oidc-issuer-regexp", "",
		"keyless: a regular expression (Go RE2, unanchored) the certificate's OIDC issuer must match")
	fs.StringVar(&s.trustedRoot, "trusted-root", "",
		"keyless: the Sigstore trusted_root.json (Fulcio CAs, Rekor logs) certificates must chain to")
}

// keyless reports whether any keyless flag was given.
func (s *signerFlags) keyless() bool {
	return s.identity != "" || s.identityRegexp != "" || s.issuer != "" || s.issuerRegexp != "" || s.trustedRoot != ""
}

// check reports a wrong combination as a usage error: exactly one of --key
// and the keyless flags; keyless needs one subject flag, one issuer flag
// and --trusted-root, and regular expressions that compile.
func (s *signerFlags) check() error {
	const keylessFlags = "--certificate-identity (or -regexp), --certificate-oidc-issuer (or -regexp) and --trusted-root"
	switch {
	case s.key != "" && s.keyless():
		return usagef("--key and the keyless flags (%s) are alternatives: give one", keylessFlags)
	case s.key != "":
		return nil
	case !s.keyless():
		return usagef("give --key PUB, or %s", keylessFlags)
	case s.identity != "" && s.identityRegexp != "":
		return usagef("give one of --certificate-identity and --certificate-identity-regexp, not both")
	case s.identity == "" && s.identityRegexp == "":
		return usagef("keyless verification needs --certificate-identity or --certificate-identity-regexp")
	case s.issuer != "" && s.issuerRegexp != "":
		return usagef("give one of --certificate-oidc-issuer and --certificate-oidc-issuer-regexp, not both")
	case s.issuer == "" && s.issuerRegexp == "":
		return usagef("keyless verification needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp")
	case s.trustedRoot == "":
		return usagef("keyless verification needs --trusted-root FILE (a Sigstore trusted_root.json); " +
			"this cosign does not fetch the public-good root over TUF")
	}
	for flagName, re := range map[string]string{"--certificate-identity-regexp": s.identityRegexp, "--certificate-oidc-issuer-regexp": s.issuerRegexp} {
		if re == "" {
			continue
		}
		if _, err := regexp.Compile(re); err != nil {
			return usagef("%s %q: %v", flagName, re, err)
		}
	}
	return nil
}

// signers holds who a verification trusts: one key, or one identity under
// a trusted root.
type signers struct {
	key     sigstore.PublicKey
	keyless *verifier.Keyless
}

// load reads the key or the trusted root; call check first.
func (c *cli) loadSigners(s *signerFlags) (signers, error) {
	if s.key != "" {
		pub, err := c.loadPublicKey(s.key)
		if err != nil {
			return signers{}, err
		}
		return signers{key: pub}, nil
	}
	root, err := loadTrustedRoot(s.trustedRoot)
	if err != nil {
		return signers{}, err
	}
	return signers{keyless: &verifier.Keyless{
		TrustedRoot: root,
		Identities: []verifier.Identity{{
			Issuer: s.issuer, IssuerRegExp: s.issuerRegexp,
			Subject: s.identity, SubjectRegExp: s.identityRegexp,
		}},
	}}, nil
}

// loadTrustedRoot reads and parses a trusted_root.json.
func loadTrustedRoot(path string) (*sigstore.TrustedRoot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading trusted root: %w", err)
	}
	defer f.Close()
	b, err := readCappedN(f, sigstore.MaxTrustedRootSize)
	if err != nil {
		return nil, fmt.Errorf("reading trusted root %s: %w", path, err)
	}
	root, err := sigstore.ParseTrustedRoot(path, b)
	if err != nil {
		return nil, err
	}
	return root, nil
}

// policy is a one-signer verification policy for verify and
// verify-attestation.
func (s signers) policy(ann annotations) *verifier.Policy {
	p := &verifier.Policy{
		Name:        verifyPolicyName,
		Threshold:   1,
		Mode:        verifier.ModeEnforce,
		Identity:    verifier.IdentityAny,
		Annotations: ann.orNil(),
		Keyless:     s.keyless,
	}
	if s.key != nil {
		p.Keys = []sigstore.PublicKey{s.key}
	}
	return p
}

// kind names the signer for messages: "key" or "certificate identity".
func (s signers) kind() string {
	if s.key != nil {
		return "key"
	}
	return "certificate identity"
}

// describe says, for the checks report, what the signatures were verified
// against.
func (s signers) describe() []string {
	if s.key != nil {
		return []string{fmt.Sprintf("The signature was verified against the public key %s (%s).", s.key.ID(), s.key.Algorithm())}
	}
	root := s.keyless.TrustedRoot
	return []string{
		fmt.Sprintf("The signing certificate chains to a certificate authority of the trusted root %s (%s).", root.Name, root.Digest),
		"A transparency-log entry of the trusted root places the signature within the certificate's validity.",
		fmt.Sprintf("The certificate identity matches %s.", s.keyless.Identities[0]),
	}
}

// decisionError is a refusal as the user reads it: the decision's detail,
// led by its reason unless the detail already starts with it.
func decisionError(dec verifier.Decision, img verifier.Image) error {
	detail := dec.Detail
	switch {
	case detail == "":
		return fmt.Errorf("%s for %s", dec.Reason, img)
	case strings.HasPrefix(detail, string(dec.Reason)):
		return fmt.Errorf("%s (for %s)", detail, img)
	}
	return fmt.Errorf("%s: %s (for %s)", dec.Reason, detail, img)
}

// readCappedN reads r to the end, refusing more than limit bytes.
func readCappedN(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

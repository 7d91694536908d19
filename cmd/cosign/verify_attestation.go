package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

func runVerifyAttestation(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("verify-attestation",
		"[--type TYPE] (--key PUB | --certificate-identity[-regexp] ID --certificate-oidc-issuer[-regexp] ISSUER\n"+
			"       --trusted-root FILE) IMAGE",
		"Exit 0 when an attestation of predicate type TYPE stored for the digest IMAGE resolves to (a\n"+
			"layer of sha256-<hex>.att, or a Sigstore bundle referrer) was signed by the key PUB, or by a\n"+
			"certificate of the identity given that chains to the trusted root FILE with a transparency-log\n"+
			"entry, and its in-toto statement names that digest. Each verified attestation goes to stdout\n"+
			"as its DSSE envelope, one JSON object per line, as sigstore cosign prints them (the statement\n"+
			"is the base64 \"payload\"); the checks go to stderr. TYPE is a URI or one of cosign's short\n"+
			"names (default custom):\n  "+strings.Join(sigstore.PredicateTypeNames(), ", "),
		c.stdout)
	typ := fs.String("type", "custom", "predicate type: a URI or a short name ("+strings.Join(sigstore.PredicateTypeNames(), "|")+")")
	var signer signerFlags
	signer.register(fs.FlagSet)
	fs.yes()
	output := c.outputFile(fs)
	var reg registryFlags
	reg.register(fs.FlagSet)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	predicateType, err := sigstore.ParsePredicateType(*typ)
	if err != nil {
		return usagef("--type: %v", err)
	}
	if err := signer.check(); err != nil {
		return err
	}
	if err := output(); err != nil {
		return err
	}
	who, err := c.loadSigners(&signer)
	if err != nil {
		return err
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	sigs, err := reg.signaturesAndAttestations(ctx, d)
	if err != nil {
		return err
	}
	img := verifierImage(d.Context(), desc.Digest)
	policy := who.policy(nil)
	policy.Attestations = []verifier.AttestationRule{{PredicateType: predicateType}}
	policy.SignatureOptional = true
	dec := verifier.Evaluate(policy, img, sigs)
	if !dec.Admit || dec.Warn {
		err := decisionError(dec, img)
		if n := attestationsOfType(sigs, predicateType); n > 0 && dec.Reason == verifier.ReasonAttestationMissing {
			err = fmt.Errorf("%w; %s of this type found, none verified with the given %s", err, plural(n, "attestation"), who.kind())
		}
		return err
	}
	var envelopes [][]byte
	for _, s := range dec.Verified {
		if s.Format != sigstore.FormatBundle && s.Format != sigstore.FormatAttestation {
			continue
		}
		claims, err := s.Claims()
		if err != nil || claims.PredicateType != predicateType {
			continue
		}
		env, err := sigstore.EnvelopeJSON(s)
		if err != nil {
			return fmt.Errorf("verified attestation %s: %w", s.Where, err)
		}
		envelopes = append(envelopes, env)
	}
	if len(envelopes) == 0 {
		// The decision admitted on an attestation of this type; not
		// finding it among the verified ones is a bug, never a pass.
		return fmt.Errorf("internal error: %s admitted but no verified attestation of %s found", img, predicateType)
	}
	c.reportSigners(img, who, "attestations")
	fmt.Fprintf(c.stderr, "  - The signed in-toto statement names the image digest %s.\n", img.Digest)
	fmt.Fprintf(c.stderr, "  - Its predicate type is %s.\n", predicateType)
	fmt.Fprintf(c.stderr, "%d verified attestation(s).\n", len(envelopes))
	for _, env := range envelopes {
		if _, err := fmt.Fprintf(c.stdout, "%s\n", env); err != nil {
			return err
		}
	}
	return nil
}

// signaturesAndAttestations reads what is stored for d in every format:
// the .sig layers and bundle referrers (signatures or attestations), then
// the .att layers.
func (r *registryFlags) signaturesAndAttestations(ctx context.Context, d name.Digest) ([]sigstore.Signature, error) {
	return r.lookup(ctx, d, "attestations", func(f *sigstore.Fetcher, repo string, h v1.Hash) ([]sigstore.Signature, error) {
		sigs, err := f.Signatures(ctx, repo, h)
		if err != nil {
			return nil, err
		}
		atts, err := f.Attestations(ctx, repo, h)
		return append(sigs, atts...), err
	})
}

// attestationsOfType counts the well-formed attestations of predicateType
// among sigs, verified or not: for a refusal to say that some were found.
func attestationsOfType(sigs []sigstore.Signature, predicateType string) int {
	n := 0
	for _, s := range sigs {
		if s.Err != nil || (s.Format != sigstore.FormatBundle && s.Format != sigstore.FormatAttestation) {
			continue
		}
		if c, err := s.Claims(); err == nil && c.PredicateType == predicateType {
			n++
		}
	}
	return n
}

// plural is "1 thing" or "n things".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

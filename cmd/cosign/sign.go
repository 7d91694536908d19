package main

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

func runSign(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("sign", "-key KEY IMAGE [-a key=value]... [--no-upload] [--bundle] [--recursive]",
		"Sign the digest IMAGE resolves to and store the signature in IMAGE's repository, as a layer of\n"+
			"the tag sha256-<hex>.sig (earlier signatures are kept, an identical one is not added twice).\n"+
			"The image's own manifest and tags are never changed. With --bundle, store a Sigstore bundle\n"+
			"(cosign v3's format) as an OCI referrer of the image instead. Concurrent signers do not\n"+
			"lose each other's signatures: after the push the signature is read back, and added again\n"+
			"if another signer's push dropped it; exit 1 if it cannot be kept.\n"+
			"KEY is a PEM file or env://VAR; an encrypted key takes its password from COSIGN_PASSWORD,\n"+
			"a prompt on a terminal, or stdin.",
		c.stdout)
	keyRef := fs.String("key", "", "private key: PKCS#8 PEM or cosign's encrypted format, a file or env://VAR")
	ann := annotations{}
	fs.Var(ann, "a", "annotation `key=value` signed with the digest (repeatable)")
	noUpload := fs.Bool("no-upload", false, "print the base64 signature (the bundle with --bundle) to stdout; write nothing to the registry")
	bundle := fs.Bool("bundle", false, "store a Sigstore bundle v0.3 as a referrer instead of a .sig layer")
	recursive := fs.Bool("recursive", false, "for a multi-platform index, also sign each platform manifest")
	fs.yes()
	output := c.outputFile(fs)
	var reg registryFlags
	reg.register(fs.FlagSet)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	if err := output(); err != nil {
		return err
	}
	key, err := c.loadPrivateKey(*keyRef)
	if err != nil {
		return err
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	targets := []v1.Descriptor{desc}
	if *recursive {
		children, err := reg.platformManifests(ctx, d, desc)
		if err != nil {
			return err
		}
		targets = append(targets, children...)
	}
	for _, t := range targets {
		if err := c.signOne(ctx, &reg, key, d.Context().Digest(t.Digest.String()), t, ann, *bundle, *noUpload); err != nil {
			return err
		}
	}
	return nil
}

// signOne signs the manifest desc (at d) and stores or prints the signature.
func (c *cli) signOne(ctx context.Context, reg *registryFlags, key sigstore.PrivateKey, d name.Digest, desc v1.Descriptor,
	ann annotations, bundle, noUpload bool) error {
	if bundle {
		b, err := sigstore.NewBundle(key, desc.Digest, ann.orNil())
		if err != nil {
			return fmt.Errorf("making bundle for %s: %w", d, err)
		}
		if noUpload {
			_, err := fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		}
		if err := sigstore.WriteBundle(ctx, d, desc, b, reg.remoteOptions(ctx)...); err != nil {
			return fmt.Errorf("pushing bundle for %s: %w", d, registryFailure(d.Context().Name(), err))
		}
		fmt.Fprintf(c.stderr, "Pushed a Sigstore bundle for %s as a referrer in %s\n", d, d.Context().Name())
		return nil
	}
	payload, err := sigstore.NewPayload(d.Context().Name(), desc.Digest, ann.orNil())
	if err != nil {
		return fmt.Errorf("making payload for %s: %w", d, err)
	}
	sig, err := key.Sign(payload)
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	if noUpload {
		_, err := fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(sig))
		return err
	}
	return c.appendSignature(ctx, reg, d, payload, sig)
}

package main

import (
	"context"
	"fmt"

	"github.com/cosign-dev/cosign/sigstore"
)

func runGenerate(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("generate", "IMAGE [-a key=value]...",
		"Print the simple-signing payload that sign would sign for IMAGE, byte for byte and without a\n"+
			"trailing newline, so another tool can sign it. ECDSA P-256 from a pipe:\n"+
			"  cosign generate IMAGE | openssl dgst -sha256 -sign ec.pem | cosign upload -signature - IMAGE\n"+
			"Ed25519 from a file (OpenSSL 3.0 cannot sign Ed25519 from a pipe):\n"+
			"  cosign generate IMAGE > payload.json\n"+
			"  openssl pkeyutl -sign -inkey key.pem -rawin -in payload.json | cosign upload -signature - IMAGE",
		c.stdout)
	ann := annotations{}
	fs.Var(ann, "a", "annotation `key=value` to include (repeatable)")
	var reg registryFlags
	output := c.outputFile(fs)
	reg.register(fs.FlagSet)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	if err := output(); err != nil {
		return err
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	payload, err := sigstore.NewPayload(d.Context().Name(), desc.Digest, ann.orNil())
	if err != nil {
		return fmt.Errorf("making payload: %w", err)
	}
	_, err = c.stdout.Write(payload)
	return err
}

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/cosign-dev/cosign/sigstore"
)

// downloaded is one line of cosign download's output.
type downloaded struct {
	// Base64Signature is the signature, base64.
	Base64Signature string
	// Payload is the signed document, base64: the simple-signing payload
	// (exactly the signed bytes) or, for a bundle, the in-toto statement.
	Payload string
	// PayloadType is the DSSE payload type of a bundle.
	PayloadType string `json:",omitempty"`
	// Bundle is the raw Sigstore bundle, for the bundle format.
	Bundle json.RawMessage `json:",omitempty"`
	// Error says why the artifact is malformed; it never verifies.
	Error string `json:",omitempty"`
}

func runDownload(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("download", "[signature] IMAGE",
		"Print every signature stored for the digest IMAGE resolves to, one JSON object per line:\n"+
			`  {"Base64Signature":"...","Payload":"<base64 payload>"}`+"\n"+
			"Bundles (cosign v3's format) add PayloadType and the raw Bundle; malformed artifacts add Error.\n"+
			"'cosign download signature IMAGE' (sigstore cosign's spelling) is the same.\n"+
			"For the simple-signing format, Payload decodes to exactly the signed bytes:\n"+
			"  cosign download IMAGE | head -1 | jq -r .Payload | base64 -d > payload\n"+
			"  cosign download IMAGE | head -1 | jq -r .Base64Signature | base64 -d > sig\n"+
			"  openssl pkeyutl -verify -pubin -inkey cosign.pub -rawin -in payload -sigfile sig",
		c.stdout)
	fs.yes()
	output := c.outputFile(fs)
	var reg registryFlags
	reg.register(fs.FlagSet)
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 2 && pos[0] == "signature" {
		pos = pos[1:]
	}
	if len(pos) != 1 {
		return usagef("expected one image reference (or 'signature IMAGE'), got %d arguments", len(pos))
	}
	if err := output(); err != nil {
		return err
	}
	d, _, err := reg.resolveImage(ctx, pos[0])
	if err != nil {
		return err
	}
	sigs, err := reg.signatures(ctx, d)
	if err != nil {
		return err
	}
	if len(sigs) == 0 {
		return fmt.Errorf("no signatures found for %s", d)
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	for _, s := range sigs {
		if err := enc.Encode(toDownloaded(s)); err != nil {
			return err
		}
	}
	return nil
}

func toDownloaded(s sigstore.Signature) downloaded {
	out := downloaded{
		Base64Signature: base64.StdEncoding.EncodeToString(s.Sig),
		Payload:         base64.StdEncoding.EncodeToString(s.Payload),
		PayloadType:     s.PayloadType,
	}
	if s.Format == sigstore.FormatBundle && json.Valid(s.Bundle) {
		out.Bundle = json.RawMessage(s.Bundle)
	}
	if s.Err != nil {
		out.Error = fmt.Sprintf("%s: %v", s.Where, s.Err)
	}
	return out
}

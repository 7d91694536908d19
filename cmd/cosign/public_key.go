package main

import (
	"context"
	"fmt"
	"os"
)

func runPublicKey(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet("public-key", "--key KEY [--outfile FILE]",
		"Print the PKIX public key (PEM) of the private key KEY: a file, or env://VAR. An encrypted key\n"+
			"takes its password as sign does (COSIGN_PASSWORD, a prompt, or stdin).",
		c.stdout)
	keyRef := fs.String("key", "", "private key: a PEM file or env://VAR")
	outfile := fs.String("outfile", "", "write the public key to this file instead of stdout")
	fs.StringVar(outfile, "output-file", "", "same as --outfile")
	if err := fs.noArgs(args); err != nil {
		return err
	}
	key, err := c.loadPrivateKey(*keyRef)
	if err != nil {
		return err
	}
	pemBytes := key.Public().PEM()
	if *outfile == "" {
		_, err := c.stdout.Write(pemBytes)
		return err
	}
	if err := os.WriteFile(*outfile, pemBytes, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *outfile, err)
	}
	fmt.Fprintf(c.stderr, "Public key written to %s\n", *outfile)
	return nil
}

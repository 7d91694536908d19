package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cosign-dev/cosign/sigstore"
)

// passwordEnv names the environment variable that holds the private key
// password. When it is set, even to "", no prompt is shown and stdin is not
// read.
const passwordEnv = "COSIGN_PASSWORD"

// errNoPassword says that a password is needed and none can be had: no
// COSIGN_PASSWORD, no terminal, nothing on stdin.
var errNoPassword = errors.New("no password")

// newKeyPassword returns the password for a key being generated, as sigstore
// cosign finds it: COSIGN_PASSWORD if set (even empty), else asked twice
// when stdin is a terminal, else read from stdin (one trailing newline
// dropped). Empty stdin is refused: a plain key is never written by accident.
func (c *cli) newKeyPassword() ([]byte, error) {
	if pw, ok := c.lookupEnv(passwordEnv); ok {
		return []byte(pw), nil
	}
	if !c.stdinTerminal() {
		pw, err := c.stdinPassword()
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, fmt.Errorf("%w for the new key: stdin is not a terminal and gave none; pipe it on stdin or set %s "+
				"(an empty one, as in '%s= cosign generate-key-pair', writes an unencrypted key)", errNoPassword, passwordEnv, passwordEnv)
		}
		return pw, nil
	}
	pw, err := c.prompt("Enter password for private key (empty for an unencrypted key): ")
	if err != nil {
		return nil, err
	}
	again, err := c.prompt("Enter password for private key again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("passwords do not match")
	}
	return pw, nil
}

// stdinPassword reads a password piped on stdin: everything, without one
// trailing newline ("echo pw |" gives "pw").
func (c *cli) stdinPassword() ([]byte, error) {
	b, err := readCapped(c.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading the password from stdin: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r")), nil
}

// keyPassword returns the password source of an encrypted private key:
// COSIGN_PASSWORD if set, else a prompt when stdin is a terminal, else
// stdin. from says which it was, for messages.
func (c *cli) keyPassword(from *string) func() ([]byte, error) {
	return func() ([]byte, error) {
		if pw, ok := c.lookupEnv(passwordEnv); ok {
			*from = passwordEnv
			return []byte(pw), nil
		}
		if c.stdinTerminal() {
			*from = "the prompt"
			return c.prompt("Enter password for private key: ")
		}
		*from = "stdin"
		pw, err := c.stdinPassword()
		if err == nil && len(pw) == 0 {
			return nil, errNoPassword
		}
		return pw, err
	}
}

func (c *cli) prompt(text string) ([]byte, error) {
	fmt.Fprint(c.stderr, text)
	pw, err := c.readPassword()
	fmt.Fprintln(c.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	return pw, nil
}

// loadPrivateKey reads and decrypts the private key a key reference names.
func (c *cli) loadPrivateKey(ref string) (sigstore.PrivateKey, error) {
	pemBytes, err := c.readKeyRef(ref)
	if err != nil {
		return nil, err
	}
	var from string
	key, err := sigstore.ParsePrivateKey(pemBytes, c.keyPassword(&from))
	switch {
	case errors.Is(err, errNoPassword):
		return nil, fmt.Errorf("the private key %s is encrypted and no password was given: set %s, pipe the password on stdin, "+
			"or run from a terminal to be asked (%s set to the empty string is the empty password, not none)", ref, passwordEnv, passwordEnv)
	case errors.Is(err, sigstore.ErrPasswordRequired) && from == passwordEnv:
		return nil, fmt.Errorf("the private key %s is encrypted and %s is set but empty: set it to the key's password", ref, passwordEnv)
	case errors.Is(err, sigstore.ErrWrongPassword), errors.Is(err, sigstore.ErrPasswordRequired):
		return nil, fmt.Errorf("wrong password for the private key %s (from %s)", ref, from)
	case err != nil:
		return nil, fmt.Errorf("reading private key %s: %w", ref, err)
	}
	return key, nil
}

// loadPublicKey reads the PKIX "PUBLIC KEY" PEM a key reference names.
func (c *cli) loadPublicKey(ref string) (sigstore.PublicKey, error) {
	pemBytes, err := c.readKeyRef(ref)
	if err != nil {
		return nil, err
	}
	key, err := sigstore.ParsePublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("reading public key %s: %w", ref, err)
	}
	return key, nil
}

// envKeyScheme is the key reference scheme that names an environment
// variable holding a PEM key, as in sigstore cosign.
const envKeyScheme = "env://"

// readKeyRef reads the PEM bytes a key reference names: a file, or
// env://VAR for the value of an environment variable. sigstore cosign's
// other schemes (KMS, Kubernetes secrets, PKCS#11) are refused by name.
func (c *cli) readKeyRef(ref string) ([]byte, error) {
	if ref == "" {
		return nil, usagef("-key is required")
	}
	if v, ok := strings.CutPrefix(ref, envKeyScheme); ok {
		pemBytes, set := c.lookupEnv(v)
		if !set || pemBytes == "" {
			return nil, fmt.Errorf("reading key %s: the environment variable %s is not set or empty", ref, v)
		}
		return []byte(pemBytes), nil
	}
	if scheme, _, ok := strings.Cut(ref, "://"); ok && isScheme(scheme) || strings.HasPrefix(ref, "pkcs11:") {
		return nil, fmt.Errorf("reading key %s: key references of this kind are not supported: give a PEM file or %sVAR", ref, envKeyScheme)
	}
	f, err := os.Open(ref)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	defer f.Close()
	b, err := readCapped(f)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", ref, err)
	}
	return b, nil
}

// isScheme reports whether s looks like a URL scheme (awskms, k8s,
// hashivault, ...) rather than part of a file name.
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

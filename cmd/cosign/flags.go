package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// errUsage marks a command line that cannot be parsed; main exits 2 on it.
var errUsage = errors.New("usage")

// maxInputSize caps what is read from a signature, payload or key file, or
// from stdin: all of them are a few hundred bytes in practice.
const maxInputSize = 1 << 20

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage (a one-line synopsis, a description, the flags) to w.
func newFlagSet(name, synopsis, description string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: cosign %s %s\n\n%s\n", name, synopsis, description)
		if hasFlags(fs) {
			fmt.Fprintf(w, "\nFlags (-flag and --flag are the same; flags may follow the image):\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseArgs parses flags that may appear before and after the positional
// arguments ("sign -key k.pem IMAGE --no-upload"): it parses, takes one
// positional argument, and parses the rest again. A bare "--" that is not the
// value of a flag ends flag parsing; everything after it is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumedTerminator(fs, args, len(args)-len(rest)) {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// consumedTerminator reports whether args[consumed-1] is a "--" that the flag
// package took as the end of the flags, rather than as the value of the flag
// before it (as in "upload -signature -- IMAGE", where "--" means stdin).
func consumedTerminator(fs *flag.FlagSet, args []string, consumed int) bool {
	if consumed == 0 || args[consumed-1] != "--" {
		return false
	}
	if consumed < 2 {
		return true
	}
	return !takesValue(fs, args[consumed-2])
}

// takesValue reports whether arg is a flag, written without "=value", whose
// value is the next argument.
func takesValue(fs *flag.FlagSet, arg string) bool {
	if !strings.HasPrefix(arg, "-") || strings.Contains(arg, "=") {
		return false
	}
	f := fs.Lookup(strings.TrimLeft(arg, "-"))
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

// oneImage parses args and returns the single positional argument, the image.
func oneImage(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", parseErr(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return "", fmt.Errorf("%w: expected one image reference, got %d arguments", errUsage, len(pos))
	}
	return pos[0], nil
}

// annotations is a repeatable "-a key=value" flag.
type annotations map[string]string

// String lists the annotations as sorted key=value pairs.
func (a annotations) String() string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+a[k])
	}
	return strings.Join(parts, ",")
}

// Set adds one key=value pair; a key given twice is an error.
func (a annotations) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("annotation %q is not key=value", s)
	}
	if _, dup := a[k]; dup {
		return fmt.Errorf("annotation %q given twice", k)
	}
	a[k] = v
	return nil
}

// orNil returns nil for an empty set, so that payloads carry no "optional".
func (a annotations) orNil() map[string]string {
	if len(a) == 0 {
		return nil
	}
	return a
}

// isStdin reports whether a file argument names standard input: "-", or
// "--" as the seed README writes it ("upload -signature -- IMAGE").
func isStdin(path string) bool {
	return path == "-" || path == "--"
}

// readInput reads a file, or stdin for "-" and "--", up to maxInputSize.
func readInput(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if isStdin(path) {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return readCapped(r)
}

// readCapped reads r to the end, refusing more than maxInputSize bytes.
func readCapped(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInputSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInputSize {
		return nil, fmt.Errorf("larger than %d bytes", maxInputSize)
	}
	return b, nil
}

// decodeSignature accepts a signature as raw bytes or as standard base64
// (surrounding whitespace ignored). Content that is valid base64 decoding to
// at least 64 bytes is base64: no raw signature of a supported key is (an
// Ed25519 signature is 64 raw bytes, which as text would decode to at most 48;
// an ECDSA P-256 one is at most 72 bytes, decoding to at most 54).
func decodeSignature(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("signature is empty")
	}
	if dec, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b))); err == nil && len(dec) >= 64 {
		return dec, nil
	}
	return b, nil
}

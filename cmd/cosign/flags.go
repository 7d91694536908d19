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

// errUsage marks a command line that cannot be parsed; main exits 2 on it
// and adds a hint to the command's help.
var errUsage = errors.New("usage")

// usageError is a wrong command line: one line saying what is wrong.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Is makes every usageError match errUsage.
func (e *usageError) Is(target error) bool { return target == errUsage }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// maxInputSize caps what is read from a signature, payload or key file, or
// from stdin: all of them are a few hundred bytes in practice.
const maxInputSize = 1 << 20

// flagSet is a command's flags and its help, which -h prints to stdout.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlagSet returns a flag set that reports errors instead of exiting or
// printing, and whose help (a one-line synopsis, a description, the flags)
// -h prints to w.
func newFlagSet(name, synopsis, description string, w io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.help = func() {
		fmt.Fprintf(w, "Usage: cosign %s %s\n\n%s\n", name, synopsis, description)
		if hasFlags(fs.FlagSet) {
			fmt.Fprintf(w, "\nFlags (-flag and --flag are the same; flags may follow the image):\n")
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parse parses args (see parseArgs) and returns the positional arguments.
// -h prints the help and returns flag.ErrHelp; other errors are usage errors.
func (fs *flagSet) parse(args []string) ([]string, error) {
	pos, err := parseArgs(fs.FlagSet, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.help()
		return nil, err
	case err != nil:
		return nil, usagef("%v", err)
	}
	return pos, nil
}

// noArgs parses args for a command that takes no positional arguments.
func (fs *flagSet) noArgs(args []string) error {
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("%s takes no arguments, got %s", fs.Name(), strings.Join(pos, " "))
	}
	return nil
}

// yes registers -y/--yes, which sigstore cosign uses to skip its
// confirmation prompts. Nothing here asks for confirmation: it is accepted
// and does nothing.
func (fs *flagSet) yes() {
	y := new(bool)
	fs.BoolVar(y, "yes", false, "accepted for sigstore cosign compatibility; nothing asks for confirmation")
	fs.BoolVar(y, "y", false, "same as --yes")
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
func oneImage(fs *flagSet, args []string) (string, error) {
	pos, err := fs.parse(args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("expected one image reference, got %d arguments", len(pos))
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

// outputFile registers --output-file (sigstore cosign's spelling) on fs. The
// returned function, called after parsing, sends what the command prints
// on stdout to that file instead; main closes it.
func (c *cli) outputFile(fs *flagSet) func() error {
	path := fs.String("output-file", "", "write what would go to stdout to this file instead")
	return func() error {
		if *path == "" {
			return nil
		}
		f, err := os.OpenFile(*path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("--output-file: %w", err)
		}
		c.stdout = f
		c.closeOutput = f.Close
		return nil
	}
}

package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseArgsAcceptsFlagsAnywhere(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPos   []string
		wantKey   string
		wantSig   string
		wantNoUp  bool
		wantAnnot string
	}{
		{name: "flags before the image", args: []string{"-key", "k.pem", "img"}, wantPos: []string{"img"}, wantKey: "k.pem"},
		{name: "double-dash flags", args: []string{"--key", "k.pem", "img"}, wantPos: []string{"img"}, wantKey: "k.pem"},
		{name: "flags after the image", args: []string{"-key", "k.pem", "img", "--no-upload"}, wantPos: []string{"img"}, wantKey: "k.pem", wantNoUp: true},
		{name: "key=value form", args: []string{"img", "--key=k.pem"}, wantPos: []string{"img"}, wantKey: "k.pem"},
		{name: "repeated annotations around the image", args: []string{"-a", "x=1", "img", "-a", "y=2"}, wantPos: []string{"img"}, wantAnnot: "x=1,y=2"},
		{name: "-signature -- means stdin", args: []string{"-signature", "--", "img"}, wantPos: []string{"img"}, wantSig: "--"},
		{name: "-- after a bool flag ends the flags", args: []string{"--no-upload", "--", "-img"}, wantPos: []string{"-img"}, wantNoUp: true},
		{name: "leading -- ends the flags", args: []string{"--", "-img", "-key"}, wantPos: []string{"-img", "-key"}},
		{name: "two positionals", args: []string{"a", "-key", "k", "b"}, wantPos: []string{"a", "b"}, wantKey: "k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			key := fs.String("key", "", "")
			sig := fs.String("signature", "", "")
			noUp := fs.Bool("no-upload", false, "")
			ann := annotations{}
			fs.Var(ann, "a", "")
			pos, err := parseArgs(fs, tt.args)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if !slices.Equal(pos, tt.wantPos) {
				t.Errorf("positional = %q, want %q", pos, tt.wantPos)
			}
			if *key != tt.wantKey || *sig != tt.wantSig || *noUp != tt.wantNoUp || ann.String() != tt.wantAnnot {
				t.Errorf("key=%q sig=%q no-upload=%v a=%q, want %q %q %v %q",
					*key, *sig, *noUp, ann, tt.wantKey, tt.wantSig, tt.wantNoUp, tt.wantAnnot)
			}
		})
	}
}

func TestParseArgsRejectsUnknownFlagAfterImage(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("key", "", "")
	if _, err := parseArgs(fs, []string{"img", "--nope"}); err == nil {
		t.Fatal("unknown flag after the image was accepted")
	}
}

func TestOneImageWantsExactlyOne(t *testing.T) {
	for _, args := range [][]string{nil, {"a", "b"}} {
		fs := newFlagSet("t", "", "", io.Discard)
		if _, err := oneImage(fs, args); !errors.Is(err, errUsage) {
			t.Errorf("oneImage(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestAnnotationsRejectBadPairs(t *testing.T) {
	tests := []struct {
		name string
		in   []string
	}{
		{"no equals sign", []string{"novalue"}},
		{"empty key", []string{"=v"}},
		{"key given twice", []string{"k=1", "k=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := annotations{}
			var err error
			for _, s := range tt.in {
				if err = a.Set(s); err != nil {
					break
				}
			}
			if err == nil {
				t.Fatalf("Set(%q) accepted", tt.in)
			}
		})
	}
	a := annotations{}
	if err := a.Set("k=v=w"); err != nil || a["k"] != "v=w" {
		t.Errorf("Set(k=v=w) = %v, %q; want the value to keep its '='", err, a["k"])
	}
	if (annotations{}).orNil() != nil {
		t.Error("empty annotations must become nil so the payload has no optional section")
	}
}

func TestDecodeSignatureTellsRawFromBase64(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := ed25519.Sign(priv, []byte("payload"))
	b64 := base64.StdEncoding.EncodeToString(raw)
	der := bytes.Repeat([]byte{0x30}, 71) // an ECDSA-sized DER signature
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"raw Ed25519 bytes stay raw", raw, raw},
		{"base64 Ed25519 is decoded", []byte(b64), raw},
		{"base64 with a trailing newline is decoded", []byte(b64 + "\n"), raw},
		{"base64 ECDSA DER is decoded", []byte(base64.StdEncoding.EncodeToString(der)), der},
		{"short base64 text stays raw", []byte("aGVsbG8="), []byte("aGVsbG8=")},
		{"raw text that is not base64 stays raw", []byte("not base64!"), []byte("not base64!")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSignature(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("decodeSignature = %x, want %x", got, tt.want)
			}
		})
	}
	if _, err := decodeSignature(nil); err == nil {
		t.Error("empty signature accepted")
	}
}

func TestReadInputCapsSize(t *testing.T) {
	big := strings.NewReader(strings.Repeat("x", maxInputSize+1))
	if _, err := readInput("-", big); err == nil {
		t.Fatal("input over the cap was accepted")
	}
	b, err := readInput("--", strings.NewReader("sig"))
	if err != nil || string(b) != "sig" {
		t.Fatalf(`readInput("--") = %q, %v; want stdin`, b, err)
	}
}

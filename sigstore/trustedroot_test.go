package sigstore

import (
	"os"
	"strings"
	"testing"
)

func TestParseTrustedRootPublicGood(t *testing.T) {
	b, err := os.ReadFile("testdata/public-good/trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ParseTrustedRoot("public-good", b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tr.Digest, "sha256:") || len(tr.Digest) != len("sha256:")+64 {
		t.Errorf("digest %q", tr.Digest)
	}
	if !tr.RequiresSCT() {
		t.Error("the public-good root names CT logs: SCTs must be required")
	}
	if len(tr.Material.FulcioCertificateAuthorities()) == 0 || len(tr.Material.RekorLogs()) == 0 {
		t.Error("no Fulcio CA or Rekor log parsed")
	}
}

func TestParseTrustedRootRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"not json":  "nope",
		"duplicate": `{"mediaType":"a","mediaType":"b"}`,
		"empty":     `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`,
	} {
		if _, err := ParseTrustedRoot("r", []byte(in)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := ParseTrustedRoot("", []byte("{}")); err == nil {
		t.Error("empty name accepted")
	}
}

package sigstore_test

import (
	"encoding/json"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
)

// The tags are the ones cosign v3.1.2 wrote in the interop registry dump.
func TestTagsMatchCosign(t *testing.T) {
	var tags map[string]map[string]struct{ Digest string }
	if err := json.Unmarshal(interopFile(t, "tags.json"), &tags); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo, tag string
	}{
		{"interop/app", sigstore.SignatureTag(mustHash(t, interopAppDigest))},
		{"interop/multi", sigstore.SignatureTag(mustHash(t, interopMultiDigest))},
		{"interop/app", sigstore.ReferrersTag(mustHash(t, interopAppV2Digest))},
	} {
		if _, ok := tags[tc.repo][tc.tag]; !ok {
			t.Errorf("%s has no tag %q", tc.repo, tc.tag)
		}
	}
	if got, want := sigstore.SignatureTag(mustHash(t, interopAppDigest)), "sha256-f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c.sig"; got != want {
		t.Errorf("SignatureTag = %q, want %q", got, want)
	}
	if got, want := sigstore.ReferrersTag(mustHash(t, interopAppV2Digest)), "sha256-28eb0959570ca76b3c9adf3ed8cad7c0426a3bd07dbb589a9415282fcacefdc2"; got != want {
		t.Errorf("ReferrersTag = %q, want %q", got, want)
	}
}

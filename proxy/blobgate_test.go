package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// uploadBlob stores b as a blob of repo upstream (monolithic upload).
func uploadBlob(t testing.TB, u *fakeUpstream, repo string, b []byte) v1.Hash {
	t.Helper()
	sum := sha256.Sum256(b)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	resp, err := http.Post(u.URL+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = u.URL + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(http.MethodPut, loc+sep+"digest="+d.String(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("blob upload: %d", resp.StatusCode)
	}
	return d
}

// TestBlobGate: /blobs/ never hands out a manifest that was not admitted
// in that repository, however it is asked for; everything else passes.
func TestBlobGate(t *testing.T) {
	e := newEnv(t)
	img, signed := e.pushRandom("prod/app", "signed")
	e.sign("prod/app", signed, e.key)
	signedRaw, _ := rawManifest(t, img)
	img2, _ := e.pushRandom("prod/app", "unsigned")
	unsignedRaw, _ := rawManifest(t, img2)

	// The manifests' bytes uploaded as blobs, as an attacker would to point
	// a descriptor's urls at them.
	unsignedBlob := uploadBlob(t, e.up, "prod/app", unsignedRaw)
	signedBlob := uploadBlob(t, e.up, "prod/app", signedRaw)
	indented := uploadBlob(t, e.up, "prod/app", append(bytes.Repeat([]byte(" "), 600), unsignedRaw...))
	caseVariant := uploadBlob(t, e.up, "prod/app", []byte(`{"SCHEMAVERSION":2,"Layers":[]}`))
	longS := uploadBlob(t, e.up, "prod/app", []byte(`{"schemaVersion":2,"layerſ":[]}`))
	config := uploadBlob(t, e.up, "prod/app", []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`))
	notJSON := uploadBlob(t, e.up, "prod/app", []byte("\x1f\x8b\x08 a layer"))
	blob := func(d v1.Hash) string { return "/v2/prod/app/blobs/" + d.String() }

	for _, tc := range []struct {
		name   string
		path   string
		header []string
		status int
	}{
		{"unsigned manifest as a blob", blob(unsignedBlob), nil, http.StatusForbidden},
		{"unsigned manifest as a blob, ranged from 0", blob(unsignedBlob), []string{"Range", "bytes=0-30"}, http.StatusForbidden},
		{"unsigned manifest as a blob, ranged past the start", blob(unsignedBlob), []string{"Range", "bytes=10-40"}, http.StatusForbidden},
		{"unsigned manifest as a blob, suffix range", blob(unsignedBlob), []string{"Range", "bytes=-20"}, http.StatusForbidden},
		{"unsigned manifest as a blob, several ranges from 0", blob(unsignedBlob), []string{"Range", "bytes=0-0,1-40"}, http.StatusForbidden},
		{"a key Go folds to layers (U+017F)", blob(longS), nil, http.StatusForbidden},
		{"unsigned manifest behind 600 spaces", blob(indented), nil, http.StatusForbidden},
		{"manifest keys in other cases", blob(caseVariant), nil, http.StatusForbidden},
		{"signed manifest as a blob", blob(signedBlob), nil, http.StatusOK},
		{"image config", blob(config), nil, http.StatusOK},
		{"layer", blob(notJSON), nil, http.StatusOK},
		{"layer, ranged", blob(notJSON), []string{"Range", "bytes=2-5"}, http.StatusPartialContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := ""
			if tc.status == http.StatusForbidden {
				code = CodeDenied
			}
			wantStatus(t, e.do(http.MethodGet, tc.path, tc.header...), tc.status, code)
		})
	}
	t.Run("the same bytes in another repository are not admitted there", func(t *testing.T) {
		d := uploadBlob(t, e.up, "prod/other", signedRaw)
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/other/blobs/"+d.String()), http.StatusForbidden, CodeDenied)
	})
	t.Run("a JSON blob over 4 MiB is refused, not buffered past the limit", func(t *testing.T) {
		big := append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), maxManifestSize)...)
		d := uploadBlob(t, e.up, "prod/app", append(big, `"}`...))
		wantStatus(t, e.do(http.MethodGet, blob(d)), http.StatusForbidden, CodeDenied)
		if n := e.srv.blobBytes.inUse(); n != 0 {
			t.Fatalf("%d bytes still leased after the answer", n)
		}
	})
}

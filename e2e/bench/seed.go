package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// seeded is an image pushed to the upstream.
type seeded struct {
	repo   string // e.g. "bench/warm"
	tag    string
	digest string // sha256:<hex> of the manifest
}

// ref is "<registry>/<repo>:<tag>".
func (s seeded) ref(registry string) string { return registry + "/" + s.repo + ":" + s.tag }

// pushRandom pushes a random image of layers layers of size bytes each.
func pushRandom(ctx context.Context, registry, repo, tag string, size, layers int64) (seeded, error) {
	img, err := random.Image(size, layers)
	if err != nil {
		return seeded{}, fmt.Errorf("random image: %w", err)
	}
	ref, err := name.ParseReference(registry+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return seeded{}, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return seeded{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return seeded{}, err
	}
	return seeded{repo: repo, tag: tag, digest: d.String()}, nil
}

// tagCopies tags the manifest of s again as "<tag>-0" ... "<tag>-<n-1>".
func tagCopies(ctx context.Context, registry string, s seeded, n int) error {
	src, err := name.ParseReference(s.ref(registry), name.Insecure)
	if err != nil {
		return err
	}
	desc, err := remote.Get(src, remote.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	for i := range n {
		dst := src.Context().Tag(fmt.Sprintf("%s-%d", s.tag, i))
		if err := remote.Tag(dst, desc, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("tagging %s: %w", dst, err)
		}
	}
	return nil
}

// keyPair makes an unencrypted key pair with the cosign binary in dir and
// returns the private and public key paths.
func keyPair(ctx context.Context, cosign, dir string) (string, string, error) {
	if _, err := runCmd(ctx, dir, []string{"COSIGN_PASSWORD="}, cosign, "generate-key-pair"); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub"), nil
}

// signAll signs each reference with the cosign binary, four at a time.
func signAll(ctx context.Context, cosign, key string, refs []string) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, ref := range refs {
		g.Go(func() error {
			_, err := runCmd(ctx, "", []string{"COSIGN_PASSWORD="}, cosign, "sign", "-key", key, ref)
			return err
		})
	}
	return g.Wait()
}

// newPseudoRandom is a deterministic, fast, non-cryptographic stream of size
// bytes, generated as it is read.
func newPseudoRandom(seed byte, size int64) io.Reader {
	var s [32]byte
	for i := range s {
		s[i] = seed + byte(i)
	}
	return io.LimitReader(rand.NewChaCha8(s), size)
}

// rawRegistry speaks the blob upload API of the distribution spec directly,
// so a large blob can be streamed without being held in memory.
type rawRegistry struct {
	base   string // http://127.0.0.1:port
	client *http.Client
}

// uploadBlob streams r to repo with a POST then one chunked PATCH, hashing on
// the way, and commits it with PUT ?digest=. It returns the digest and size.
func (rr *rawRegistry) uploadBlob(ctx context.Context, repo string, r io.Reader) (string, int64, error) {
	loc, err := rr.startUpload(ctx, repo)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, cr)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := rr.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("PATCH upload: %w", err)
	}
	loc, err = locationAfter(resp, http.StatusAccepted, loc)
	if err != nil {
		return "", 0, fmt.Errorf("PATCH upload: %w", err)
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err := rr.commit(ctx, loc, digest, nil); err != nil {
		return "", 0, err
	}
	return digest, cr.n, nil
}

// putBlob uploads a small blob monolithically (POST, then PUT with the bytes).
func (rr *rawRegistry) putBlob(ctx context.Context, repo string, b []byte) (string, error) {
	loc, err := rr.startUpload(ctx, repo)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	return digest, rr.commit(ctx, loc, digest, b)
}

func (rr *rawRegistry) startUpload(ctx context.Context, repo string) (string, error) {
	u := rr.base + "/v2/" + repo + "/blobs/uploads/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := rr.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", u, err)
	}
	loc, err := locationAfter(resp, http.StatusAccepted, u)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", u, err)
	}
	return loc, nil
}

func (rr *rawRegistry) commit(ctx context.Context, loc, digest string, body []byte) error {
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := rr.client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT upload: %w", err)
	}
	if _, err := locationAfter(resp, http.StatusCreated, loc); err != nil {
		return fmt.Errorf("PUT upload %s: %w", digest, err)
	}
	return nil
}

// putManifest stores a manifest under a tag.
func (rr *rawRegistry) putManifest(ctx context.Context, repo, tag, mediaType string, b []byte) error {
	u := rr.base + "/v2/" + repo + "/manifests/" + tag
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := rr.client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", u, err)
	}
	if _, err := locationAfter(resp, http.StatusCreated, u); err != nil {
		return fmt.Errorf("PUT %s: %w", u, err)
	}
	return nil
}

// locationAfter checks the status, drains the body and resolves the
// Location header against base.
func locationAfter(resp *http.Response, want int, base string) (string, error) {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != want {
		return "", fmt.Errorf("status %d, want %d: %s", resp.StatusCode, want, strings.TrimSpace(string(body)))
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	l, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("bad Location: %w", err)
	}
	return b.ResolveReference(l).String(), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// pushBigImage streams a single-layer image of size pseudo-random bytes to
// repo:tag and returns the layer digest.
func pushBigImage(ctx context.Context, rr *rawRegistry, repo, tag string, size int64) (string, error) {
	layer, n, err := rr.uploadBlob(ctx, repo, newPseudoRandom(7, size))
	if err != nil {
		return "", fmt.Errorf("upload %d-byte layer: %w", size, err)
	}
	if n != size {
		return "", fmt.Errorf("uploaded %d bytes, want %d", n, size)
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layer}},
	})
	if err != nil {
		return "", err
	}
	cfgDigest, err := rr.putBlob(ctx, repo, cfg)
	if err != nil {
		return "", fmt.Errorf("upload config: %w", err)
	}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	m, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mt,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json",
			"digest": cfgDigest, "size": len(cfg)},
		"layers": []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar",
			"digest": layer, "size": size}},
	})
	if err != nil {
		return "", err
	}
	if err := rr.putManifest(ctx, repo, tag, mt, m); err != nil {
		return "", err
	}
	return layer, nil
}

package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// maxPayloadFetches bounds the concurrent blob fetches of one check.
const maxPayloadFetches = 8

// signaturePayloads reports whether every layer of m, an image manifest
// whose layers all declare a signature media type, really is a signature
// payload: at most sigstore.MaxSignatures layers, each at most
// sigstore.MaxPayloadSize bytes, matching its descriptor, and a JSON object
// (a simple-signing payload or a Sigstore bundle). A media type is only a
// label: a runnable layer (a tar, a binary) labelled as a signature fails
// this check, and the manifest is then verified like any image. The blobs
// are read with the client's credentials; an upstream failure is returned
// as an error so that no decision is made.
func (s *Server) signaturePayloads(ctx context.Context, t target, m *manifest, src *signatureSource) (bool, error) {
	var doc struct {
		Layers []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(m.body, &doc); err != nil || len(doc.Layers) == 0 || len(doc.Layers) > sigstore.MaxSignatures {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	f := src.fetcher()
	errs := make([]error, len(doc.Layers))
	sem := make(chan struct{}, maxPayloadFetches)
	var wg sync.WaitGroup
	for i, l := range doc.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			b, err := f.Payload(ctx, t.repo, l)
			if err == nil && !isJSONObject(b) {
				err = errNotPayload
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	ok := true
	for _, err := range errs {
		var re *sigstore.RegistryError
		if errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return false, err
		}
		ok = ok && err == nil
	}
	return ok, nil
}

var errNotPayload = errors.New("layer is not a JSON signature payload")

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

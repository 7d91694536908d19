package sigstore

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SignatureTag is the tag cosign's legacy format stores the signatures of
// digest d under: "sha256-<hex>.sig".
func SignatureTag(d v1.Hash) string {
	return d.Algorithm + "-" + d.Hex + ".sig"
}

// ReferrersTag is the OCI referrers tag schema fallback tag for digest d:
// "sha256-<hex>", holding an OCI index of the referrers of d on registries
// without the referrers API. Like go-containerregistry (which cosign uses),
// it does not truncate: sha256 tags are well within the 128-character limit.
func ReferrersTag(d v1.Hash) string {
	return d.Algorithm + "-" + d.Hex
}

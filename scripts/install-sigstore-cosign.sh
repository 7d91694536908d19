#!/usr/bin/env bash
# Builds the real sigstore cosign, which the interoperability tests run
# against this project's output, when it is missing. It is a test tool, as
# crane is: installed once into a versioned directory outside the module
# (about 4 minutes on two cores), never into PATH, so that it cannot be
# mistaken for this project's cosign.
#
#   scripts/install-sigstore-cosign.sh        installs, prints the path
#
# SIGSTORE_COSIGN, if set, names the binary to use (and install to).
set -euo pipefail

version=v3.1.2
go=${GO:-go}
bin=${SIGSTORE_COSIGN:-$("$go" env GOPATH)/sigstore-cosign/$version/cosign}

if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "${version#v}"; then
	echo "sigstore cosign $version: present at $bin"
	exit 0
fi

echo "sigstore cosign $version: building into $bin (about 4 minutes)"
dir=$(dirname "$bin")
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside this module, so that its go.mod does not take part.
(cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod "$go" install "github.com/sigstore/cosign/v3/cmd/cosign@$version")
install -m 0755 "$tmp/cosign" "$bin"
"$bin" version | grep -q "${version#v}" || { echo "sigstore cosign: $bin is not $version" >&2; exit 1; }
echo "sigstore cosign $version: installed at $bin"

#!/usr/bin/env bash
# Installs the programs the e2e tests run, when they are missing: the CNCF
# distribution registry, openssl, skopeo, containerd, nginx, GNU time, and a
# C compiler for `go test -race`. Quick and idempotent: with everything
# present it installs nothing and does not run apt-get update.
#
# Without apt-get or root it only warns (the e2e tests then skip loudly),
# except under CI=true, where a missing program is an error.
set -euo pipefail

# Debian package -> program that proves it is installed.
packages=(docker-registry openssl skopeo containerd nginx-light time gcc libc6-dev)
declare -A probe=(
	[docker-registry]=docker-registry
	[openssl]=openssl
	[skopeo]=skopeo
	[containerd]=containerd
	[nginx-light]=nginx
	[time]=/usr/bin/time
	[gcc]=gcc
	[libc6-dev]=/usr/include/stdio.h
)

present() {
	local p="$1"
	case "$p" in
	/*) [ -e "$p" ] ;;
	*) command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || [ -x "/sbin/$p" ] ;;
	esac
}

missing=()
for pkg in "${packages[@]}"; do
	present "${probe[$pkg]}" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "test dependencies: all present"
	exit 0
fi

ci=false
case "${CI:-}" in 1 | true | TRUE | True) ci=true ;; esac

fail() {
	echo "test dependencies: $*" >&2
	if [ "$ci" = true ]; then exit 1; fi
	echo "test dependencies: continuing; e2e tests that need them will be skipped" >&2
	exit 0
}

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		fail "missing ${missing[*]}; run as root (or with sudo): apt-get install ${missing[*]}"
	fi
fi
command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get; install them with your package manager"

echo "test dependencies: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null

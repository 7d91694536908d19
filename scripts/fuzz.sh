#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one after the other, each for
# FUZZTIME (default 3s), and stops at the first failure.
#
#   scripts/fuzz.sh                  # every package (./...)
#   scripts/fuzz.sh ./sigstore       # only these packages
#   FUZZTIME=1m scripts/fuzz.sh      # longer runs (any -fuzztime value: 30s, 10000x)
#
# FUZZMINIMIZETIME (default 200x) bounds the minimization of each new
# interesting input: go test's default of 60s lets both workers spend a short
# run minimizing inputs grown from large seeds (bundles, configs), so that a
# 3s run of such a target made fewer than 20 executions instead of thousands.
#
# Targets are discovered from the test files `go list` reports for each
# package, so a new `func FuzzX(f *testing.F)` in any package is picked up
# without touching this script. A failing input is written by go test to
# <package dir>/testdata/fuzz/<FuzzX>/; commit it so that `go test` replays
# it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-3s}"
FUZZMINIMIZETIME="${FUZZMINIMIZETIME:-200x}"
[ $# -gt 0 ] || set -- ./...

# The test files each package builds with in this configuration (build
# constraints applied), without compiling anything; then every
# `func FuzzX(f *testing.F)` in them.
if ! listing="$("$GO" list -f '{{.ImportPath}} {{.Dir}}{{range .TestGoFiles}} {{.}}{{end}}{{range .XTestGoFiles}} {{.}}{{end}}' "$@")"; then
	echo "fuzz: go list $* failed" >&2
	exit 1
fi
targets=()
while read -r pkg dir files; do
	[ -n "$files" ] || continue
	while read -r name; do
		targets+=("$pkg $dir $name")
	done < <(cd "$dir" && sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' $files | sort -u)
done <<<"$listing"

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found in $*" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
start=$SECONDS
for t in "${targets[@]}"; do
	read -r pkg dir name <<<"$t"
	echo "fuzz: $name ($pkg)"
	t0=$SECONDS
	# go test's fuzzing coordinator sometimes ends a run on a loaded machine
	# with "context deadline exceeded" and no failing input (a worker did
	# not answer in time): such a run is tried once more. A run that found
	# a failing input writes it under testdata/fuzz/ and fails at once.
	for try in 1 2; do
		inputs_before=$( (ls "$dir/testdata/fuzz/$name" 2>/dev/null || true) | wc -l)
		if out=$("$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" 2>&1); then
			echo "$out" | tail -n 2
			break
		fi
		echo "$out"
		inputs_after=$( (ls "$dir/testdata/fuzz/$name" 2>/dev/null || true) | wc -l)
		if [ "$try" = 1 ] && [ "$inputs_after" = "$inputs_before" ] && grep -q "context deadline exceeded" <<<"$out"; then
			echo "fuzz: $name: the coordinator timed out without a failing input; trying once more"
			continue
		fi
		echo "fuzz: FAILED: $name in $pkg after $((SECONDS - start))s" >&2
		echo "fuzz: a failing input is written to $dir/testdata/fuzz/$name/ (see above)" >&2
		echo "fuzz: replay it with: $GO test -run '^${name}\$' $pkg" >&2
		exit 1
	done
	echo "fuzz: $name passed ($((SECONDS - t0))s)"
done
echo "fuzz: all ${#targets[@]} targets passed in $((SECONDS - start))s"

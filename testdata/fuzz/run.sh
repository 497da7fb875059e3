#!/usr/bin/env bash
# Runs every fuzz target of the module for a short fixed time on top of its
# committed seed corpus (<package>/testdata/fuzz/<Target>/), as CI does.
#
#   testdata/fuzz/run.sh                 # each target for 10s
#   FUZZTIME=5m testdata/fuzz/run.sh     # longer, e.g. before a release
#   testdata/fuzz/run.sh FuzzRelay       # only the targets named
#
# Targets are found by their `func FuzzXxx(f *testing.F)` in *_test.go
# files, so a new one is picked up without editing this script. A failing
# input is saved under the package's testdata/fuzz/<Target>/, where plain
# `go test` replays it from then on: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/../.."

fuzztime="${FUZZTIME:-10s}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

found=0
failed=()
while IFS=: read -r file decl; do
	name="${decl#func }"
	name="${name%%(*}"
	if [ "$#" -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then
		continue
	fi
	pkg="./$(dirname "$file")"
	echo "== $name in $pkg for $fuzztime"
	if ! go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime"; then
		failed+=("$name")
	fi
	found=$((found + 1))
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(' . | sed 's|^\./||' | sort)

if [ "$found" -eq 0 ]; then
	echo "no fuzz target found${*:+ named $*}" >&2
	exit 1
fi
echo "== $found fuzz targets ran for $fuzztime each"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "failed: ${failed[*]}" >&2
	exit 1
fi

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
	for attempt in 1 2; do
		log=$(mktemp)
		if go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" 2>&1 | tee "$log"; then
			rm -f "$log"
			break
		fi
		# Go 1.26's fuzzing coordinator can report the end of -fuzztime
		# itself as a failure, "context deadline exceeded" with no input
		# saved (go.dev/issue/75804, fixed in Go 1.27): run such a target
		# once more. Anything else, or the same twice, is a failure.
		if [ "$attempt" -eq 1 ] && grep -q '^    context deadline exceeded$' "$log" &&
			! grep -q 'Failing input written to' "$log"; then
			echo "== $name: the fuzzing coordinator's deadline race; once more"
			rm -f "$log"
			continue
		fi
		rm -f "$log"
		failed+=("$name")
		break
	done
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

#!/usr/bin/env bash
# fuzz.sh: `make fuzz`. Finds every fuzz target in the module (packages whose
# _test.go files declare `func Fuzz...`, then `go test -list` on those) and
# fuzzes each one for $FUZZTIME (default 1m), one after another, since
# go test -fuzz takes a single target. FUZZ narrows the targets by regexp;
# FUZZPARALLEL, if set, is go test's -parallel (fuzzing workers; default
# GOMAXPROCS).
# It stops at the first target that fails; the failing input is kept under
# the package's testdata/fuzz/ as Go writes it. Finding no target is not an
# error, only reported.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

FUZZTIME=${FUZZTIME:-1m}
FUZZ=${FUZZ:-.}
parallel=()
[ -z "${FUZZPARALLEL:-}" ] || parallel=(-parallel "$FUZZPARALLEL")

found=0
while read -r pkg dir; do
	grep -qs '^func Fuzz' "$dir"/*_test.go || continue
	while read -r name; do
		[[ $name == Fuzz* ]] || continue
		[[ $name =~ $FUZZ ]] || continue
		found=$((found + 1))
		log "fuzz $pkg $name for $FUZZTIME"
		go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "$pkg"
	done < <(go test -list '^Fuzz' "$pkg")
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)

if [ "$found" -eq 0 ]; then
	log "no fuzz targets matching $FUZZ"
else
	log "fuzzed $found target(s), $FUZZTIME each"
fi

#!/usr/bin/env bash
# compose-check.sh: `make compose-check`, the static check of
# docker-compose.yml that needs no Docker engine. It runs the Go tests named
# TestCompose* wherever they live in the module (they compare the compose
# file's services, ports and environment with the code's configuration).
# The same tests also run in make test; this target runs only them. It fails
# when there is no compose file or no such test, rather than pass on nothing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

[ -f docker-compose.yml ] || die "no docker-compose.yml yet"
mapfile -t dirs < <(grep -rlE --include='*_test.go' --exclude-dir=.data --exclude-dir=bin --exclude-dir=.git \
	'^func TestCompose' . | xargs -r -n1 dirname | sort -u)
[ ${#dirs[@]} -gt 0 ] || die "no TestCompose* test found in the module"
log "go test -run '^TestCompose' ${dirs[*]}"
go test -count=1 -run '^TestCompose' "${dirs[@]}"

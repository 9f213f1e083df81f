#!/usr/bin/env bash
# lint.sh: the checks `make lint` (and so `make test`) runs, failing on the
# first that complains:
#   - gofmt -l lists no file (./.data and ./bin are skipped: a local cluster
#     directory may not even be readable);
#   - go vet ./...;
#   - luacheck lua/ (lua-check is installed with apt-get when missing).
#
#   scripts/lint.sh sh   shellcheck scripts/*.sh and .ci/run instead (make
#                        lint/sh). It is kept out of make test: shellcheck's
#                        findings change between versions, and a gate must
#                        give the same answer on every machine.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [ "${1:-}" = sh ]; then
	ensure_tool shellcheck
	log "shellcheck scripts/*.sh .ci/run"
	shellcheck -x scripts/*.sh .ci/run
	exit
fi

ensure_tool luacheck

log "gofmt -l"
unformatted=$(find . \( -path ./.data -o -path ./bin -o -path ./.git \) -prune -o -name '*.go' -print0 |
	xargs -0 -r gofmt -l)
if [ -n "$unformatted" ]; then
	printf '%s\n' "$unformatted" >&2
	die "gofmt would change the files above; run gofmt -w on them"
fi

log "go vet ./..."
go vet ./...

log "luacheck lua/"
luacheck --no-color -q lua/

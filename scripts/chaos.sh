#!/usr/bin/env bash
# chaos.sh: `make chaos`. Runs every scenario of the chaos suite (./chaos),
# including those that wait for Asynq's lease recovery, which make test
# skips. The scenarios run side by side (-parallel): most of their time is
# spent waiting on Asynq's timers, not the CPU. Each prints one "chaos:"
# line of figures; they are gathered into $CHAOS_FIGURES (default a fresh
# temp file) and printed at the end.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export STOCKGATE_CHAOS=all
if [ -z "${CHAOS_FIGURES:-}" ]; then
	CHAOS_FIGURES=$(mktemp "${TMPDIR:-/tmp}/chaos-figures.XXXXXX")
else
	: >"$CHAOS_FIGURES"
fi
export CHAOS_FIGURES
status=0
go test -race -count=1 -timeout 30m -parallel "${CHAOS_PARALLEL:-8}" -v -run "${CHAOS_RUN:-.}" ./chaos/ |
	grep --line-buffered -v -E '^=== (RUN|PAUSE|CONT)' || status=$?
log "chaos figures ($CHAOS_FIGURES):"
sort "$CHAOS_FIGURES" >&2
exit "$status"

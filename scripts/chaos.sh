#!/usr/bin/env bash
# chaos.sh: `make chaos`. Runs every scenario of the chaos suite (./chaos),
# including those that wait for Asynq's lease recovery, which make test
# skips. The scenarios run side by side (-parallel): most of their time is
# spent waiting on Asynq's timers, not the CPU. Each prints one "chaos:"
# line of figures; they are gathered into $CHAOS_FIGURES (default
# chaos-figures.txt under the system temp dir) and printed at the end.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export STOCKGATE_CHAOS=all
export CHAOS_FIGURES=${CHAOS_FIGURES:-${TMPDIR:-/tmp}/chaos-figures.txt}
: >"$CHAOS_FIGURES"
status=0
go test -race -count=1 -timeout 30m -parallel "${CHAOS_PARALLEL:-8}" -v -run "${CHAOS_RUN:-.}" ./chaos/ |
	grep --line-buffered -v -E '^=== (RUN|PAUSE|CONT)' || status=$?
log "chaos figures ($CHAOS_FIGURES):"
sort "$CHAOS_FIGURES" >&2
exit "$status"

#!/usr/bin/env bash
# soak.sh: `make soak`. Runs chaos.TestSoak, the seeded fault schedule
# (docs/reliability.md, "The soak"): SEED (default: from the clock),
# DURATION (default 10m) and FAULTS (default all, or a comma-separated list
# of kill, stop, stop-long, slow, redis, postgres, scriptflush, sweep). The
# same SEED and FAULTS replay the same schedule. It prints the seed, one
# line per fault and one per checked cycle, then a summary.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export STOCKGATE_SOAK_SEED="${SEED:-$(($(date +%s) % 1000000))}"
export STOCKGATE_SOAK_DURATION="${DURATION:-10m}"
export STOCKGATE_SOAK_FAULTS="${FAULTS:-all}"
log "soak: seed $STOCKGATE_SOAK_SEED, duration $STOCKGATE_SOAK_DURATION, faults $STOCKGATE_SOAK_FAULTS"
# Not -race: the soak is long, and the race detector is make test's job.
# The run ends itself: no cycle starts after DURATION, and each cycle's
# quiet period is bounded.
go test -count=1 -timeout 24h -v -run '^TestSoak$' ./chaos/ |
	grep --line-buffered -v -E '^=== (RUN|PAUSE|CONT)'

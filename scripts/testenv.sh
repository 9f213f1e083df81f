#!/usr/bin/env bash
# testenv.sh: runs a command (go test, a benchmark, a fuzz run) with what the
# test suite needs, then stops whatever it had to start.
#
#   scripts/testenv.sh [--no-browser] CMD [ARG...]
#
# It makes sure chromium (the chromedp test drives it; skipped with
# --no-browser) is installed, then asks scripts/services.sh (up test) for
# redis-server on PATH (the tests start private ones) and a Postgres:
# TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) when it
# answers, else a local cluster under ./.data/pg. CMD runs with
# TEST_DATABASE_URL exported. A cluster this run started is stopped when CMD
# ends, whatever its exit status, which is passed on; one that was already
# running (say, from make run) is left alone.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

browser=1
if [ "${1:-}" = --no-browser ]; then
	browser=0
	shift
fi
[ $# -gt 0 ] || die "usage: testenv.sh [--no-browser] CMD [ARG...]"

[ "$browser" -eq 0 ] || ensure_tool chromium

SG_STARTED=
env_lines=$(bash "$ROOT/scripts/services.sh" up test)
eval "$env_lines"
if [ -n "$SG_STARTED" ]; then
	# shellcheck disable=SC2086 # SG_STARTED is a list of words
	trap 'bash "$ROOT/scripts/services.sh" down $SG_STARTED' EXIT
	trap 'exit 130' INT TERM
fi
log "TEST_DATABASE_URL=$TEST_DATABASE_URL"
log "$*"
"$@"

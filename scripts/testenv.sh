#!/usr/bin/env bash
# testenv.sh: runs a command (go test, a benchmark, a fuzz run) with what the
# test suite needs, then stops whatever it had to start.
#
#   scripts/testenv.sh [--no-browser] CMD [ARG...]
#
# It installs chromium when missing (the chromedp test drives it; skipped
# with --no-browser) and node (e2e's Node.js storefront), then hands over to `services exec` (internal/devsvc):
# redis-server and the Postgres server binaries installed (the tests start
# private ones), TEST_DATABASE_URL when it answers, else the local cluster
# under ./.data/pg; CMD runs with TEST_DATABASE_URL exported, and a cluster
# this run started is stopped when CMD ends, whose exit status is passed on.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [ "${1:-}" = --no-browser ]; then
	shift
else
	ensure_tool chromium
fi
ensure_tool node
[ $# -gt 0 ] || die "usage: testenv.sh [--no-browser] CMD [ARG...]"

bin=$(services_bin)
exec "$bin" exec -- "$@"

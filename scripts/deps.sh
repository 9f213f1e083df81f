#!/usr/bin/env bash
# deps.sh: makes sure the named tools are installed, installing the Debian
# package that carries each one with apt-get when it is missing (as root, or
# through passwordless sudo). Without either it prints the apt-get command to
# run and fails. Nothing is installed, and apt-get update never runs, when
# every tool is already there. The services command runs it for a missing
# redis-server or Postgres.
#
#   scripts/deps.sh TOOL...    TOOL: redis-server postgres luacheck chromium shellcheck wrk node
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -gt 0 ] || die "usage: deps.sh TOOL..."
for tool in "$@"; do
	ensure_tool "$tool"
done

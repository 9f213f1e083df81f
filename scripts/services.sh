#!/usr/bin/env bash
# services.sh: builds and runs the services command, which brings up (and
# stops) the Redis and Postgres stockgate needs; internal/devsvc is the one
# implementation, used by make run, make test, the benchmarks and the tests.
# `scripts/services.sh` alone lists its subcommands; make run, make stop and
# make clean are `services.sh run`, `stop` and `clean`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bin=$(services_bin)
exec "$bin" "$@"

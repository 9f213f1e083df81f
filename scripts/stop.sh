#!/usr/bin/env bash
# stop.sh: `make stop`. Stops the worker that make run started (SIGTERM, so
# it drains; SIGKILL after $STOP_TIMEOUT s, 35 by default), then the services
# make run started: the local redis-server and Postgres under ./.data and any
# compose services scripts/services.sh brought up. A system Redis or Postgres
# is never touched.
#
#   scripts/stop.sh          the worker and the services
#   scripts/stop.sh worker   the worker only (make run does this before it
#                            starts a fresh one)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_TIMEOUT=${STOP_TIMEOUT:-35}

stop_worker() {
	local pid arg0 i
	pid=$(cat "$DATA/worker.pid" 2>/dev/null) || return 0
	# Signal only our own bin/worker, never whatever now has a recycled pid.
	if [ -n "$pid" ] && alive "$pid" &&
		arg0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) &&
		[ "$arg0" = "$ROOT/bin/worker" ]; then
		log "stopping the worker (pid $pid)"
		kill -TERM "$pid"
		for i in $(seq 1 $((STOP_TIMEOUT * 10))); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			warn "the worker did not drain in ${STOP_TIMEOUT}s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$DATA/worker.pid" "$DATA/worker.addr"
}

case ${1:-all} in
worker) stop_worker ;;
all)
	stop_worker
	bash "$ROOT/scripts/services.sh" down
	;;
*) die "usage: stop.sh [worker|all]" ;;
esac

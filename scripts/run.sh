#!/usr/bin/env bash
# run.sh: `make run`, the local demo, in six steps:
#   1. Redis and Postgres through scripts/services.sh (REDIS_URL/DATABASE_URL
#      when they answer, else docker compose, else local servers under ./.data);
#      their URLs land in ./.data/env;
#   2. go build -o bin/ ./cmd/..., then bin/stockctl migrate;
#   3. bin/stockctl set $SKU $STOCK (DEMO-SKU, 100);
#   4. bin/worker in the background, logging to ./.data/worker.log, its admin
#      server on $ADMIN_ADDR (127.0.0.1:8080, or a free port when that one is
#      taken); it waits up to $READY_TIMEOUT s (30) for /readyz to answer 200;
#      a worker left by an earlier make run is stopped first, and one that
#      never gets ready is stopped too;
#   5. bin/enqueue flash-sale --sku $SKU --buyers $BUYERS (1000) --wait;
#   6. bin/stockctl show $SKU and bin/stockctl reconcile, then where to look
#      next. The worker keeps running; `make stop` stops it and the services.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

SKU=${SKU:-DEMO-SKU}
STOCK=${STOCK:-100}
BUYERS=${BUYERS:-1000}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:8080}
READY_TIMEOUT=${READY_TIMEOUT:-30}
WORKER_LOG=$DATA/worker.log
WORKER=$ROOT/bin/worker

[ -d cmd ] || die "cmd/ does not exist yet: make run needs cmd/worker, cmd/enqueue and cmd/stockctl"

log "step 1/6: services"
bash "$ROOT/scripts/services.sh" up run >/dev/null
# shellcheck source=/dev/null
. "$DATA/env"
log "REDIS_URL=$REDIS_URL"
log "DATABASE_URL=$DATABASE_URL"

log "step 2/6: build and migrate"
mkdir -p bin
go build -o bin/ ./cmd/...
bin/stockctl migrate

log "step 3/6: stock $SKU with $STOCK units"
bin/stockctl set "$SKU" "$STOCK"

log "step 4/6: start the worker"
bash "$ROOT/scripts/stop.sh" worker
host=${ADMIN_ADDR%:*}
port=${ADMIN_ADDR##*:}
if port_taken "$port"; then
	newport=$(free_port "")
	log "admin port $port is taken; using $newport"
	ADMIN_ADDR=$host:$newport
fi
mkdir -p "$DATA"
printf '\n==== make run %s ====\n' "$(date -u +%FT%TZ)" >>"$WORKER_LOG"
# setsid: the worker outlives this terminal, and a Ctrl-C typed in it later.
detach=()
if command -v setsid >/dev/null 2>&1; then detach=(setsid); else detach=(nohup); fi
"${detach[@]}" "$WORKER" --admin-addr "$ADMIN_ADDR" </dev/null >>"$WORKER_LOG" 2>&1 &
pid=$!
echo "$pid" >"$DATA/worker.pid"
echo "$ADMIN_ADDR" >"$DATA/worker.addr"
log "worker pid $pid, admin on http://$ADMIN_ADDR, log $WORKER_LOG"

deadline=$((SECONDS + READY_TIMEOUT))
while :; do
	if ! alive "$pid"; then
		tail -n 20 "$WORKER_LOG" >&2
		die "the worker exited during start-up; its log is $WORKER_LOG (last lines above)"
	fi
	code=$(http_code "http://$ADMIN_ADDR/readyz")
	if [ "$code" = 200 ]; then
		log "worker ready (/readyz answers 200)"
		break
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		tail -n 20 "$WORKER_LOG" >&2
		bash "$ROOT/scripts/stop.sh" worker
		die "the worker was not ready after ${READY_TIMEOUT}s (/readyz: $code), so it was stopped; its log is $WORKER_LOG"
	fi
	sleep 0.2
done

log "step 5/6: flash sale, $BUYERS buyers for $STOCK units of $SKU"
bin/enqueue flash-sale --sku "$SKU" --buyers "$BUYERS" --wait

log "step 6/6: outcome"
bin/stockctl show "$SKU"
reconciled=yes
bin/stockctl reconcile || reconciled=no

cat <<EOT

stockgate is running.
  worker log     $WORKER_LOG   (pid $pid)
  queues (UI)    http://$ADMIN_ADDR/monitoring/
  metrics        http://$ADMIN_ADDR/metrics
  health         http://$ADMIN_ADDR/healthz   http://$ADMIN_ADDR/readyz
  CLIs           . ${DATA#"$ROOT"/}/env && bin/stockctl show $SKU   (or bin/enqueue order --customer c-1 $SKU=1)
  stop it all    make stop
EOT
[ "$reconciled" = yes ] || die "stockctl reconcile found drift between Redis and Postgres (printed above)"

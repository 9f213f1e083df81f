#!/usr/bin/env bash
# bench-pipeline.sh: the whole pipeline against the Postgres-only design, in
# one run on this machine, and the ratio between them.
#
#   pipeline:      enqueue flash-sale --buyers N --wait --json on a stock large
#                  enough that every order confirms (enqueue -> Asynq -> worker
#                  -> Lua reserve -> Postgres row -> commit).
#   postgres-only: pgbench at 32 clients running, per order, one transaction
#                  that decrements the hot row with UPDATE ... WHERE stock >= 1
#                  and INSERTs the order (bench/postgres-only.sql).
#
# It starts its own redis-server (AOF on, appendfsync $APPENDFSYNC, default
# everysec, the setting the first published figures were measured with;
# compose runs always, see the README's Redis durability) on a free port and creates a throwaway database on
# the Postgres at TEST_DATABASE_URL, so it never touches shared data.
# Usage: scripts/bench-pipeline.sh [BUYERS] [PGBENCH_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

buyers=${1:-20000}
pgsecs=${2:-20}
admin_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
db="stockgate_bench_$$"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
worker_pid=""

cleanup() {
  if [ -n "$worker_pid" ]; then
    kill "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bin/" ./cmd/...
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --daemonize yes --save "" \
  --appendonly yes --appendfsync "${APPENDFSYNC:-everysec}" --maxmemory-policy noeviction --logfile "$work/redis.log"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
psql "$admin_url" -qc "CREATE DATABASE $db" >/dev/null
dburl=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$admin_url" "$db")
export REDIS_URL="redis://127.0.0.1:$port/0" DATABASE_URL="$dburl"

"$work/bin/stockctl" migrate >/dev/null
"$work/bin/stockctl" set BENCH-SKU $((buyers * 2)) >/dev/null
"$work/bin/worker" --admin-addr 127.0.0.1:0 --concurrency "${CONCURRENCY:-64}" >"$work/worker.log" 2>&1 &
worker_pid=$!
until grep -q '"worker ready"' "$work/worker.log"; do
  kill -0 "$worker_pid" 2>/dev/null || { cat "$work/worker.log"; exit 1; }
  sleep 0.1
done
# A short warm-up so connection pools and script caches are filled.
"$work/bin/enqueue" flash-sale --sku BENCH-SKU --buyers 500 --wait --json >/dev/null 2>&1
pipeline=$("$work/bin/enqueue" flash-sale --sku BENCH-SKU --buyers "$buyers" --concurrency 32 --wait --json 2>/dev/null)
"$work/bin/stockctl" reconcile >/dev/null || { echo "reconcile found drift after the pipeline run" >&2; exit 1; }
kill "$worker_pid"; wait "$worker_pid" 2>/dev/null || true; worker_pid=""

psql "$dburl" -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -f bench/postgres-only-setup.sql >/dev/null
pgout=$(pgbench -n -c 32 -j 2 -T "$pgsecs" -M prepared -f bench/postgres-only.sql "$dburl" 2>&1)
tps=$(echo "$pgout" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
pglat=$(echo "$pgout" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
sold=$(psql "$dburl" -tAc "SELECT 2000000000 - stock FROM pg_only_stock")

python3 - "$pipeline" "$tps" "$pglat" "$sold" "$buyers" "$pgsecs" <<'PY'
import json, sys
p = json.loads(sys.argv[1]); tps = float(sys.argv[2]); lat = float(sys.argv[3])
print(f"pipeline:      {p['confirmed']} of {p['enqueued']} orders confirmed in {p['seconds']:.2f}s = "
      f"{p['orders_per_sec']:.0f} orders/s; latency placed_at->decided_at "
      f"p50 {p['latency_ms']['p50']:.1f} ms, p95 {p['latency_ms']['p95']:.1f} ms, p99 {p['latency_ms']['p99']:.1f} ms")
print(f"postgres-only: pgbench -c 32 for {sys.argv[6]}s: {tps:.0f} transactions/s, "
      f"average latency {lat:.1f} ms, {sys.argv[4]} units sold")
print(f"ratio:         pipeline / postgres-only = {p['orders_per_sec'] / tps:.2f}x")
PY

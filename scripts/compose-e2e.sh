#!/usr/bin/env bash
# compose-e2e.sh: `make compose-e2e`, the flash sale through docker compose.
# It needs a Docker engine (`docker info` must succeed) and fails with a
# clear message when there is none; without one, make compose-check (also
# part of make test) checks the compose file statically instead.
#
# Steps: create .env from .env.example (random passwords) if there is none;
# docker compose up -d --build --wait (every service healthy, the worker on
# /readyz); then, in one-off containers of the worker image on the compose
# network (docker compose run worker ...), stock a fresh SKU with $E2E_STOCK
# (100) units and run a flash sale of $E2E_BUYERS (1000) buyers, which the
# compose worker serves. It checks: confirmed = stock, rejected = the rest,
# available 0, held 0, sold = stock, and stockctl reconcile clean.
# The stack is taken down (docker compose down -v) at the end unless
# KEEP_COMPOSE=1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

compose() { docker compose "$@"; }

E2E_STOCK=${E2E_STOCK:-100}
E2E_BUYERS=${E2E_BUYERS:-1000}

{ command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; } || die "no Docker engine here (docker info fails): compose-e2e needs one; make compose-check checks the compose file without it"
docker compose version >/dev/null 2>&1 || die "the docker compose plugin is missing (docker compose version fails)"
[ -f docker-compose.yml ] || die "no docker-compose.yml"
bin=$(services_bin)
"$bin" dotenv

if [ "${KEEP_COMPOSE:-0}" != 1 ]; then
	trap 'log "docker compose down -v"; compose down -v >&2 || true' EXIT
fi

log "docker compose up -d --build --wait"
compose up -d --build --wait --wait-timeout 300

# in_worker runs a CLI of the worker image next to the running worker, with
# its REDIS_URL and DATABASE_URL.
in_worker() { compose run --rm --no-deps -T worker "$@"; }

sku=E2E-$(date +%s)
log "stock $sku with $E2E_STOCK units; flash sale of $E2E_BUYERS buyers"
in_worker stockctl set "$sku" "$E2E_STOCK"
summary=$(in_worker enqueue flash-sale --sku "$sku" --buyers "$E2E_BUYERS" --wait --json)
echo "$summary"
show=$(in_worker stockctl show --json "$sku")
echo "$show"

# json_int KEY TEXT: the first integer value of KEY in a flat JSON text.
json_int() { grep -oE "\"$1\"[[:space:]]*:[[:space:]]*[0-9]+" <<<"$2" | head -n1 | grep -oE '[0-9]+$' || true; }

fail=0
check() { # what got want
	if [ "$2" != "$3" ]; then
		printf 'compose-e2e: %s = %s, want %s\n' "$1" "${2:-(missing)}" "$3" >&2
		fail=1
	fi
}
check confirmed "$(json_int confirmed "$summary")" "$E2E_STOCK"
check rejected "$(json_int rejected "$summary")" "$((E2E_BUYERS - E2E_STOCK))"
check available "$(json_int available "$show")" 0
check held "$(json_int held "$show")" 0
check sold "$(json_int sold "$show")" "$E2E_STOCK"
if ! in_worker stockctl reconcile; then
	echo "compose-e2e: stockctl reconcile found drift" >&2
	fail=1
fi
[ "$fail" -eq 0 ] || die "the compose flash sale broke an invariant (above)"
log "compose-e2e passed: $E2E_STOCK confirmed of $E2E_BUYERS buyers, reconcile clean"

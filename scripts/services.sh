#!/usr/bin/env bash
# services.sh: brings up (or stops) the Redis and Postgres that stockgate
# needs. `make run`, `make stop` and scripts/testenv.sh (make test, bench,
# fuzz) all go through here, so there is one copy of this logic.
#
#   scripts/services.sh up run    Redis + Postgres for the demo (make run)
#   scripts/services.sh up test   Postgres for the test suite, redis-server on PATH
#   scripts/services.sh down [redis|pg|compose]...   stop what runs under ./.data
#   scripts/services.sh status    say what runs under ./.data
#   scripts/services.sh clean     down, then delete ./.data (and the cluster)
#
# `up run` picks, for Redis and for Postgres separately:
#   1. REDIS_URL / DATABASE_URL when set and answering (PING / select 1);
#   2. else `docker compose up -d redis postgres` when a Docker engine answers
#      (`docker info`) and the repository has a compose file;
#   3. else a local server under ./.data: redis-server (AOF on, noeviction,
#      daemonized, on 6379 if free else a free port) and a Postgres cluster in
#      ./.data/pg (initdb, trust auth, loopback TCP only, on 5432 if free else
#      a free port), installing redis-server / postgresql with apt-get when
#      they are missing and we may (root, or passwordless sudo).
#   It creates the `stockgate` database when it started Postgres itself.
# `up test` uses TEST_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/
#   postgres?sslmode=disable) when it answers, else a local cluster as above.
#   Either way it installs redis-server and postgresql when they are missing:
#   tests start private servers of both.
#
# Postgres refuses to run as root, so as root the cluster runs as the
# `postgres` user (PG_RUN_USER overrides) and ./.data/pg belongs to it. When
# that user cannot reach ./.data (a checkout under /root), the cluster lives
# in /var/tmp/stockgate-pg-HASH and ./.data/pg is a symlink to it.
#
# Output: `up` prints shell `export` lines on stdout (eval-able) and writes
# them to ./.data/env (run) or ./.data/test.env (test); progress goes to
# stderr. SG_STARTED lists what this call started (redis, pg, compose), so a
# caller can stop exactly that afterwards.
#
# `down` only ever touches servers whose data lives under ./.data (checked by
# pid file and data directory) and compose services this script started. It
# never stops a system service.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_DIR=$DATA/redis
PG_DIR=$DATA/pg
# Postgres tools get the real path: the symlink's parent may be closed to them.
[ ! -L "$PG_DIR" ] || PG_DIR=$(readlink -f "$PG_DIR")
DB_NAME=${DB_NAME:-stockgate}
DEFAULT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'

STARTED=()

# ---- local redis-server ------------------------------------------------------

local_redis_pid() {
	local pid
	pid=$(cat "$REDIS_DIR/redis.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && alive "$pid" || return 1
	# A recycled pid must not make us signal someone else's process.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q redis-server || return 1
	echo "$pid"
}

start_local_redis() {
	local port
	mkdir -p "$REDIS_DIR"
	if local_redis_pid >/dev/null && port=$(cat "$REDIS_DIR/port" 2>/dev/null) &&
		redis_answers "redis://127.0.0.1:$port/0"; then
		log "redis: local redis-server already running on 127.0.0.1:$port"
		REDIS_URL="redis://127.0.0.1:$port/0"
		return
	fi
	ensure_tool redis-server
	port=$(free_port "$(cat "$REDIS_DIR/port" 2>/dev/null || echo 6379)")
	log "redis: starting local redis-server on 127.0.0.1:$port (data in $REDIS_DIR)"
	redis-server --port "$port" --bind 127.0.0.1 --dir "$REDIS_DIR" \
		--appendonly yes --maxmemory-policy noeviction \
		--daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
	echo "$port" >"$REDIS_DIR/port"
	REDIS_URL="redis://127.0.0.1:$port/0"
	local i
	for i in $(seq 1 100); do
		redis_answers "$REDIS_URL" && break
		[ "$i" -lt 100 ] || die "redis-server on port $port did not answer; see $REDIS_DIR/redis.log"
		sleep 0.1
	done
	STARTED+=(redis)
}

stop_local_redis() {
	local pid i
	pid=$(local_redis_pid) || return 0
	log "redis: stopping local redis-server (pid $pid)"
	kill -TERM "$pid"
	for i in $(seq 1 100); do
		alive "$pid" || return 0
		sleep 0.1
	done
	warn "redis-server $pid did not stop in 10s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# ---- local Postgres ------------------------------------------------------------

PG_AS=()
PG_USER=
PG_PORT=
BINDIR=

# pg_setup_user finds the server binaries and the user to run them as. With
# "install" it installs postgresql when missing; otherwise it fails quietly,
# so status and down never install anything.
pg_setup_user() {
	[ -z "$BINDIR" ] || return 0
	if [ "${1:-}" = install ]; then
		BINDIR=$(ensure_pg_bindir)
	else
		BINDIR=$(pg_bindir) || return 1
	fi
	PG_AS=()
	PG_USER=$(id -un)
	if is_root; then
		PG_USER=${PG_RUN_USER:-postgres}
		id "$PG_USER" >/dev/null 2>&1 || die "postgres refuses to run as root and user $PG_USER does not exist; set PG_RUN_USER to an unprivileged user"
		if command -v runuser >/dev/null 2>&1; then
			PG_AS=(runuser -u "$PG_USER" --)
		else
			# shellcheck disable=SC2016 # expanded by su's shell, on purpose
			PG_AS=(su -s /bin/sh "$PG_USER" -c '"$0" "$@"')
		fi
	fi
}

# pg_run runs a Postgres tool as the cluster's owner, from /, because that
# user may not be allowed into the current directory.
pg_run() { (cd / && "${PG_AS[@]}" "$@"); }

pg_running() {
	[ -f "$PG_DIR/PG_VERSION" ] || return 1
	pg_setup_user || return 1
	pg_run "$BINDIR/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1
}

# pg_prepare_dir creates ./.data/pg so that the cluster's owner can use it.
pg_prepare_dir() {
	mkdir -p "$DATA"
	if [ ! -e "$PG_DIR" ]; then
		if is_root && ! pg_run test -x "$DATA"; then
			local alt
			alt=/var/tmp/stockgate-pg-$(printf '%s' "$DATA" | cksum | cut -d' ' -f1)
			log "postgres: $PG_USER cannot reach $DATA; keeping the cluster in $alt (symlinked from $PG_DIR)"
			mkdir -p "$alt"
			ln -s "$alt" "$PG_DIR"
			PG_DIR=$alt
		else
			mkdir -p "$PG_DIR"
		fi
	fi
	if is_root; then
		chown -R "$PG_USER:" "$PG_DIR/"
	fi
	chmod 700 "$PG_DIR/"
}

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$1?sslmode=disable"; }

start_local_pg() {
	pg_setup_user install
	if pg_running; then
		PG_PORT=$(sed -n 4p "$PG_DIR/postmaster.pid")
		log "postgres: local cluster already running on 127.0.0.1:$PG_PORT"
		return
	fi
	pg_prepare_dir
	if [ ! -f "$PG_DIR/PG_VERSION" ]; then
		log "postgres: initdb $PG_DIR (as $PG_USER, trust auth)"
		pg_run "$BINDIR/initdb" -D "$PG_DIR" -U postgres -A trust -E UTF8 --locale=C >"$DATA/initdb.log" 2>&1 ||
			die "initdb failed; see $DATA/initdb.log"
		# Loopback TCP only: no socket directory to own, nothing public.
		# shellcheck disable=SC2016 # expanded by the inner sh, on purpose
		pg_run sh -c 'cat >>"$1/postgresql.conf"' _ "$PG_DIR" <<-'EOF'

			# stockgate local cluster (scripts/services.sh)
			listen_addresses = '127.0.0.1'
			unix_socket_directories = ''
			max_connections = 200
		EOF
	fi
	PG_PORT=$(free_port "$(cat "$DATA/pg.port" 2>/dev/null || echo 5432)")
	log "postgres: starting local cluster on 127.0.0.1:$PG_PORT (data in $PG_DIR)"
	pg_run "$BINDIR/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null ||
		die "postgres did not start; see $PG_DIR/server.log"
	echo "$PG_PORT" >"$DATA/pg.port"
	pg_answers "$(pg_url postgres)" "$BINDIR/psql" || die "postgres on port $PG_PORT does not answer; see $PG_DIR/server.log"
	STARTED+=(pg)
}

stop_local_pg() {
	[ -f "$PG_DIR/PG_VERSION" ] || return 0
	pg_running || return 0
	log "postgres: stopping local cluster in $PG_DIR"
	pg_run "$BINDIR/pg_ctl" -D "$PG_DIR" -m fast -w -t 60 stop >/dev/null
}

# create_local_db creates the demo database on the local cluster if missing.
create_local_db() {
	local psql=("$BINDIR/psql" "$(pg_url postgres)" -Atq -v ON_ERROR_STOP=1)
	if [ -z "$("${psql[@]}" -c "select 1 from pg_database where datname = '$DB_NAME'")" ]; then
		log "postgres: creating database $DB_NAME"
		"${psql[@]}" -c "create database \"$DB_NAME\"" >/dev/null
	fi
	DATABASE_URL=$(pg_url "$DB_NAME")
}

# ---- docker compose ---------------------------------------------------------------

compose_usable() {
	{ [ -f "$ROOT/docker-compose.yml" ] || [ -f "$ROOT/compose.yaml" ]; } && docker_engine &&
		docker compose version >/dev/null 2>&1
}

# compose_host_port SERVICE PORT prints the host port a compose service
# publishes for its PORT.
compose_host_port() {
	local out
	out=$(compose port "$1" "$2" 2>/dev/null | head -n1) || true
	out=${out##*:}
	if [ -z "$out" ] || [ "$out" = 0 ]; then
		die "compose service $1 publishes no host port for $2; publish it or set the URL yourself"
	fi
	echo "$out"
}

# compose_service_env SERVICE NAME prints an environment variable of a
# running compose service, read from its container's config so the image
# needs no shell or printenv.
compose_service_env() {
	local id
	id=$(compose ps -q "$1" | head -n1)
	[ -n "$id" ] || return 0
	docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$id" | sed -n "s/^$2=//p" | head -n1
}

start_compose() {
	ensure_dotenv
	log "compose: docker compose up -d --wait $*"
	compose up -d --wait "$@" >&2
	mkdir -p "$DATA"
	local s
	for s in "$@"; do
		grep -qx "$s" "$DATA/compose.started" 2>/dev/null || echo "$s" >>"$DATA/compose.started"
	done
	[[ " ${STARTED[*]} " == *" compose "* ]] || STARTED+=(compose)
}

compose_redis() {
	start_compose redis
	REDIS_URL="redis://127.0.0.1:$(compose_host_port redis 6379)/0"
}

compose_pg() {
	start_compose postgres
	local user pw port i
	user=$(compose_service_env postgres POSTGRES_USER)
	pw=$(compose_service_env postgres POSTGRES_PASSWORD)
	user=${user:-postgres}
	port=$(compose_host_port postgres 5432)
	for i in $(seq 1 60); do
		compose exec -T postgres pg_isready -q -U "$user" >/dev/null 2>&1 && break
		[ "$i" -lt 60 ] || die "compose postgres did not become ready in 60s"
		sleep 1
	done
	if [ -z "$(compose exec -T postgres psql -U "$user" -d postgres -Atqc "select 1 from pg_database where datname = '$DB_NAME'" | tr -d '\r')" ]; then
		log "postgres: creating database $DB_NAME in compose"
		compose exec -T postgres psql -U "$user" -d postgres -qc "create database \"$DB_NAME\"" >/dev/null
	fi
	DATABASE_URL="postgres://$user${pw:+:$pw}@127.0.0.1:$port/$DB_NAME?sslmode=disable"
}

# ---- up / down ------------------------------------------------------------------------

write_env() {
	local file=$1
	shift
	mkdir -p "$DATA"
	{
		echo "# written by scripts/services.sh; source it to reach the same services"
		local kv v
		for kv in "$@"; do
			# Single quotes keep URLs readable; a quote inside is closed and escaped.
			v=${kv#*=}
			v=${v//\'/\'\\\'\'}
			printf "export %s='%s'\n" "${kv%%=*}" "$v"
		done
	} >"$file.tmp"
	mv "$file.tmp" "$file"
	cat "$file"
	printf "SG_STARTED='%s'\n" "${STARTED[*]}"
}

up_run() {
	if [ -n "${REDIS_URL:-}" ] && redis_answers "$REDIS_URL"; then
		log "redis: using REDIS_URL (it answers)"
	else
		[ -z "${REDIS_URL:-}" ] || warn "REDIS_URL is set but does not answer; bringing up one of our own"
		if compose_usable; then compose_redis; else start_local_redis; fi
	fi
	if [ -n "${DATABASE_URL:-}" ] && pg_answers "$DATABASE_URL"; then
		log "postgres: using DATABASE_URL (it answers)"
	else
		[ -z "${DATABASE_URL:-}" ] || warn "DATABASE_URL is set but does not answer; bringing up one of our own"
		if compose_usable; then
			compose_pg
		else
			start_local_pg
			create_local_db
		fi
	fi
	write_env "$DATA/env" "REDIS_URL=$REDIS_URL" "DATABASE_URL=$DATABASE_URL"
}

up_test() {
	# The tests start private redis-servers and Postgres clusters
	# (testsvc.StartPostgres); they only need the binaries.
	ensure_tool redis-server
	ensure_tool postgres
	local url=${TEST_DATABASE_URL:-$DEFAULT_TEST_DATABASE_URL}
	if pg_answers "$url"; then
		log "postgres: tests use $url"
	else
		log "postgres: nothing answers at $url; starting a local cluster"
		start_local_pg
		url=$(pg_url postgres)
	fi
	write_env "$DATA/test.env" "TEST_DATABASE_URL=$url"
}

down() {
	local what=("$@") w
	[ ${#what[@]} -gt 0 ] || what=(redis pg compose)
	for w in "${what[@]}"; do
		case $w in
		redis) stop_local_redis ;;
		pg) stop_local_pg ;;
		compose)
			if [ -s "$DATA/compose.started" ]; then
				local svcs
				mapfile -t svcs <"$DATA/compose.started"
				log "compose: docker compose stop ${svcs[*]}"
				compose stop "${svcs[@]}" >&2 || warn "docker compose stop failed"
				rm -f "$DATA/compose.started"
			fi
			;;
		"") ;;
		*) die "down: unknown service $w (want redis, pg or compose)" ;;
		esac
	done
}

# clean stops everything, then deletes ./.data and, when ./.data/pg is a
# symlink this script made, the cluster it points to.
clean() {
	down redis pg compose
	if [ -L "$DATA/pg" ]; then
		case $PG_DIR in
		/var/tmp/stockgate-pg-*) rm -rf "$PG_DIR" ;;
		esac
	fi
	rm -rf "$DATA"
}

status() {
	local pid
	if pid=$(local_redis_pid); then
		echo "redis:    running (pid $pid) on 127.0.0.1:$(cat "$REDIS_DIR/port" 2>/dev/null)"
	else
		echo "redis:    not running under $REDIS_DIR"
	fi
	if pg_running; then
		echo "postgres: running on 127.0.0.1:$(sed -n 4p "$PG_DIR/postmaster.pid")"
	else
		echo "postgres: not running under $PG_DIR"
	fi
	if [ -s "$DATA/compose.started" ]; then
		echo "compose:  started $(tr '\n' ' ' <"$DATA/compose.started")"
	fi
}

case ${1:-} in
up)
	case ${2:-} in
	run) up_run ;;
	test) up_test ;;
	*) die "usage: services.sh up run|test" ;;
	esac
	;;
down)
	shift
	down "$@"
	;;
status) status ;;
clean) clean ;;
*) die "usage: services.sh up run|test | down [redis|pg|compose]... | status | clean" ;;
esac

# shellcheck shell=bash
# lib.sh: the shell functions every other script in scripts/ sources; it is
# never run on its own.
#
# It owns four things:
#   - installing a missing tool: apt-get install -y as root, sudo -n when
#     that works, otherwise one clear line saying what to install, and a
#     non-zero exit. apt-get update runs only when an install is needed and
#     the package cache does not know the package (or the install fails).
#   - probing services: does a redis:// or postgres:// URL answer? It uses
#     redis-cli / psql / pg_isready when present and a bare TCP probe through
#     bash's /dev/tcp when not, so a fresh machine can still probe.
#   - ports: whether a loopback port is taken, and a free one when it is.
#   - finding the Postgres server binaries, which Debian keeps out of PATH in
#     /usr/lib/postgresql/VERSION/bin.
#
# Callers set `set -euo pipefail` themselves; nothing here changes shell
# options. ROOT is the repository root and DATA its ./.data directory.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DATA=${DATA:-$ROOT/.data}

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# as_root runs a command as root: directly when we are root, through
# passwordless sudo otherwise. It fails (status 1, no output) when neither is
# possible, so callers can print their own message.
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		return 1
	fi
}

can_root() {
	is_root || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

# apt_install installs Debian packages. why names what is missing, for the
# message printed when we may not install.
apt_install() {
	local why=$1
	shift
	if ! can_root || ! command -v apt-get >/dev/null 2>&1; then
		die "$why is missing; install it with: sudo apt-get install -y $*"
	fi
	log "installing $* (apt-get, for $why)"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y
		-o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
	local updated=0
	# A fresh image has an empty cache: update first rather than fail once.
	if ! apt-cache show "$@" >/dev/null 2>&1; then
		as_root "${apt[@]}" update >&2
		updated=1
	fi
	if ! as_root "${apt[@]}" install "$@" >&2; then
		[ "$updated" -eq 0 ] || die "apt-get install -y $* failed"
		# A stale cache points at versions the mirror no longer has.
		as_root "${apt[@]}" update >&2
		as_root "${apt[@]}" install "$@" >&2 || die "apt-get install -y $* failed"
	fi
}

# ensure_cmd makes sure one of the named commands is on PATH, installing pkg
# when none is.
#   ensure_cmd PKG CMD [CMD...]
ensure_cmd() {
	local pkg=$1 c
	shift
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 && return 0
	done
	apt_install "$1" "$pkg"
	hash -r
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 && return 0
	done
	die "installed $pkg but $1 is still not on PATH"
}

# ensure_tool knows which Debian package gives each tool the project needs.
ensure_tool() {
	case $1 in
	redis-server) ensure_cmd redis-server redis-server ;;
	redis-cli) ensure_cmd redis-tools redis-cli ;;
	luacheck) ensure_cmd lua-check luacheck ;;
	# chromedp looks for any of these names.
	chromium) ensure_cmd chromium chromium chromium-browser google-chrome google-chrome-stable headless-shell ;;
	psql) ensure_cmd postgresql-client psql ;;
	curl) ensure_cmd curl curl ;;
	shellcheck) ensure_cmd shellcheck shellcheck ;;
	postgres) ensure_pg_bindir >/dev/null ;;
	*) die "ensure_tool: unknown tool $1" ;;
	esac
}

# url_hostport prints "HOST PORT" of a redis:// or postgres:// URL, with
# the scheme's default port when the URL has none.
url_hostport() {
	local url=$1 re='^([a-zA-Z0-9+.-]+)://([^@/?]*@)?(\[[^]/]*\]|[^]:/?[]*)(:([0-9]+))?'
	[[ $url =~ $re ]] || return 1
	local scheme=${BASH_REMATCH[1]} host=${BASH_REMATCH[3]} port=${BASH_REMATCH[5]}
	host=${host#[}
	host=${host%]}
	[ -n "$host" ] || host=127.0.0.1
	if [ -z "$port" ]; then
		case $scheme in
		redis | rediss) port=6379 ;;
		*) port=5432 ;;
		esac
	fi
	printf '%s %s\n' "$host" "$port"
}

# tcp_open reports whether something accepts TCP connections on HOST PORT.
tcp_open() {
	# shellcheck disable=SC2016 # expanded by the inner bash, on purpose
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# port_taken reports whether a loopback port is in use, by connecting to it.
port_taken() { tcp_open 127.0.0.1 "$1"; }

# free_port prints the preferred port when it is free, else a free one from
# a range no well-known service uses by default.
free_port() {
	local want=${1:-} p i
	if [ -n "$want" ] && ! port_taken "$want"; then
		echo "$want"
		return
	fi
	for i in $(seq 1 200); do
		p=$((20000 + (RANDOM + i * 7919) % 12000))
		if ! port_taken "$p"; then
			echo "$p"
			return
		fi
	done
	die "no free loopback port found"
}

# redis_answers reports whether a Redis URL answers PING.
redis_answers() {
	local url=$1 hp reply
	if command -v redis-cli >/dev/null 2>&1; then
		reply=$(timeout 5 redis-cli -u "$url" --no-auth-warning ping 2>/dev/null) || return 1
		[ "$reply" = PONG ]
		return
	fi
	# No redis-cli: speak RESP by hand. Good enough for plain redis:// without
	# a password; anything else needs redis-cli, which the fallback installs.
	[[ $url == redis://* && $url != *@* ]] || return 1
	hp=$(url_hostport "$url") || return 1
	# shellcheck disable=SC2086,SC2016 # hp is "HOST PORT"; the inner bash expands $1 $2
	reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && head -c 5 <&3' _ $hp 2>/dev/null) || return 1
	[ "$reply" = "+PONG" ]
}

# pg_answers reports whether a Postgres URL accepts a query (psql), or at
# least connections (pg_isready), or at last resort its TCP port.
pg_answers() {
	local url=$1 psql=${2:-} hp
	[ -n "$psql" ] || psql=$(command -v psql 2>/dev/null || true)
	if [ -n "$psql" ]; then
		# -w: a server that wants a password must not stop us at a prompt.
		PGCONNECT_TIMEOUT=3 timeout 10 "$psql" -w "$url" -Atqc 'select 1' >/dev/null 2>&1
		return
	fi
	if command -v pg_isready >/dev/null 2>&1; then
		timeout 10 pg_isready -q -t 3 -d "$url" >/dev/null 2>&1
		return
	fi
	hp=$(url_hostport "$url") || return 1
	# shellcheck disable=SC2086 # hp is "HOST PORT" on purpose
	tcp_open $hp
}

# pg_bindir prints the directory holding initdb, pg_ctl and postgres, or
# fails. PG_BINDIR overrides the search.
pg_bindir() {
	local d c
	for d in ${PG_BINDIR:-}; do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && {
			echo "$d"
			return
		}
	done
	# Debian's layout first, newest major version first.
	while read -r d; do
		[ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && {
			echo "$d"
			return
		}
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -rn)
	if c=$(command -v pg_ctl 2>/dev/null); then
		d=$(dirname "$(readlink -f "$c")")
		[ -x "$d/initdb" ] && [ -x "$d/postgres" ] && {
			echo "$d"
			return
		}
	fi
	return 1
}

ensure_pg_bindir() {
	local d
	if d=$(pg_bindir); then
		echo "$d"
		return
	fi
	apt_install "postgres (initdb, pg_ctl)" postgresql
	d=$(pg_bindir) || die "installed postgresql but found no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
	echo "$d"
}

# http_code prints the HTTP status of a GET on an http:// URL, or 000 when
# nothing answers. It uses curl when present and a bare HTTP/1.0 request
# through /dev/tcp otherwise, so it needs nothing installed.
http_code() {
	local url=$1 code
	if command -v curl >/dev/null 2>&1; then
		code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$url" 2>/dev/null) || true
		echo "${code:-000}"
		return
	fi
	local re='^http://([^/:]+)(:([0-9]+))?(/.*)?$'
	[[ $url =~ $re ]] || {
		echo 000
		return
	}
	local host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]:-80} path=${BASH_REMATCH[4]:-/}
	# shellcheck disable=SC2016 # expanded by the inner bash, on purpose
	code=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3 && head -n1 <&3' _ "$host" "$port" "$path" 2>/dev/null |
		cut -d' ' -f2) || true
	echo "${code:-000}"
}

# alive reports whether a process runs. A zombie does not count: a daemon
# whose parent has exited may wait a while for someone to reap it.
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 0
	[ "$st" != Z ]
}

# docker_engine reports whether a Docker engine answers (not just a client).
docker_engine() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

compose() { (cd "$ROOT" && docker compose "$@"); }

# ensure_dotenv creates .env from .env.example when it is missing, with a
# fresh random value for every *PASSWORD setting: docker-compose.yml refuses
# to start without them, and a password copied from a public example file
# is no password. An existing .env is never touched.
ensure_dotenv() {
	[ ! -f "$ROOT/.env" ] || return 0
	[ -f "$ROOT/.env.example" ] || return 0
	log "creating .env from .env.example, with random passwords"
	local line re='^([A-Za-z_][A-Za-z0-9_]*PASSWORD)='
	(
		umask 077
		while IFS= read -r line || [ -n "$line" ]; do
			if [[ $line =~ $re ]]; then
				printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
			else
				printf '%s\n' "$line"
			fi
		done <"$ROOT/.env.example" >"$ROOT/.env"
	)
}

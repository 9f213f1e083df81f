# shellcheck shell=bash
# lib.sh: the shell functions the other scripts in scripts/ source; it is
# never run on its own. Bringing up Redis and Postgres is Go's job
# (internal/devsvc, through the services command); this file keeps what Go
# should not do:
#   - installing a missing tool: apt-get install -y as root, sudo -n when
#     that works, otherwise one line saying what to install, and a non-zero
#     exit. apt-get update runs only when an install is needed and the
#     package cache does not know the package (or the install fails).
#   - building and running the services command (services_bin).
#
# Callers set `set -euo pipefail` themselves; nothing here changes shell
# options. ROOT is the repository root and DATA its ./.data directory.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DATA=${DATA:-$ROOT/.data}

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# as_root runs a command as root: directly when we are root, through
# passwordless sudo otherwise.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

can_root() {
	[ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
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
	luacheck) ensure_cmd lua-check luacheck ;;
	# chromedp looks for any of these names.
	chromium) ensure_cmd chromium chromium chromium-browser google-chrome google-chrome-stable headless-shell ;;
	shellcheck) ensure_cmd shellcheck shellcheck ;;
	wrk) ensure_cmd wrk wrk ;;
	# e2e's storefront.mjs; it needs only fetch and top-level await.
	node) ensure_cmd nodejs node ;;
	# The server binaries live off PATH; the services command looks for
	# them (PG_BINDIR, /usr/lib/postgresql/*/bin) and asks for this only
	# when it found none.
	postgres) dpkg -s postgresql >/dev/null 2>&1 || apt_install "postgres (initdb, pg_ctl)" postgresql ;;
	*) die "ensure_tool: unknown tool $1" ;;
	esac
}

# services_bin builds the services command (internal/devsvc/cmd/services)
# into ./.data/bin and prints its path. Built, not `go run`: go run adds a
# line of its own to every failure and does not pass signals on.
services_bin() {
	mkdir -p "$DATA/bin"
	(cd "$ROOT" && go build -o "$DATA/bin/services" ./internal/devsvc/cmd/services) ||
		die "could not build the services command (go build ./internal/devsvc/cmd/services)"
	echo "$DATA/bin/services"
}

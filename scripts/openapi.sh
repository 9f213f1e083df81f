#!/usr/bin/env bash
# openapi.sh: validates api/openapi.yaml, the storefront API's description,
# with Redocly's OpenAPI linter (an OpenAPI 3.1 validator from npm), pinned
# below and installed once into ./.data/npm. npm itself comes from apt-get
# when missing. make test runs it; internal/httpapi's tests check the same
# file against what the server answers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

REDOCLY_VERSION=2.77.0
prefix=$DATA/npm
bin=$prefix/node_modules/.bin/redocly

if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -qx "$REDOCLY_VERSION"; then
	ensure_cmd npm npm
	log "installing @redocly/cli@$REDOCLY_VERSION into $prefix (npm)"
	mkdir -p "$prefix"
	npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "@redocly/cli@$REDOCLY_VERSION" >&2
fi

log "redocly lint api/openapi.yaml"
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "$bin" lint --format=stylish api/openapi.yaml

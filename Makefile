# stockgate: build, run and test. `make` alone lists the targets.
#
# Bringing up Redis and Postgres, and make run/stop/clean, are Go
# (internal/devsvc and its services command, through scripts/services.sh and
# scripts/testenv.sh); installs and the other entry points are scripts/ (each
# starts with a comment saying what it does). This file only names the entry
# points and their knobs.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Knobs: make bench BENCH=Reserve BENCHTIME=2s COUNT=5, make fuzz FUZZTIME=5m FUZZPARALLEL=1,
# make test PKG=./internal/stock/... TESTFLAGS=-v, make soak SEED=42 DURATION=30m FAULTS=kill,redis.
PKG ?= ./...
TESTFLAGS ?=
BENCH ?= .
BENCHTIME ?= 1s
COUNT ?= 1
FUZZ ?= .
FUZZTIME ?= 1m
FUZZPARALLEL ?=

.PHONY: help build lint lint/sh openapi test test/short chaos soak bench bench/pipeline bench/api bench/catalog fuzz run stop compose-e2e compose-check clean

help: ## list the targets
	@echo "stockgate make targets:"
	@awk 'BEGIN { FS = ":[^#]*## " } /^[a-zA-Z0-9_\/-]+:[^#]*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build bin/worker, bin/api, bin/enqueue and bin/stockctl
	@mkdir -p bin
	go build -o bin/ ./cmd/...

lint: ## gofmt -l, go vet, luacheck lua/ (installs lua-check if missing)
	@bash scripts/lint.sh

lint/sh: ## shellcheck scripts/*.sh and .ci/run (not part of make test)
	@bash scripts/lint.sh sh

openapi: ## validate api/openapi.yaml with Redocly's OpenAPI linter (npm, pinned, cached in ./.data/npm)
	@bash scripts/openapi.sh

test: lint openapi ## lint, validate the OpenAPI description, then the whole suite with -race on real Redis, Postgres and Chromium (installs what is missing)
	@bash scripts/testenv.sh go test -race -count=1 -timeout 20m $(TESTFLAGS) $(PKG)

test/short: openapi ## the quick tests only (-short), with -race
	@bash scripts/testenv.sh go test -short -race -count=1 -timeout 10m $(TESTFLAGS) $(PKG)

chaos: ## every chaos scenario, the slow ones too: kills, restarts, freezes (CHAOS_RUN=regexp narrows)
	@bash scripts/testenv.sh --no-browser bash scripts/chaos.sh

soak: ## a seeded fault schedule: sales under kills, freezes, Redis and Postgres restarts, checked after each quiet period (SEED=, DURATION=10m, FAULTS=all)
	@SEED='$(SEED)' DURATION='$(DURATION)' FAULTS='$(FAULTS)' bash scripts/testenv.sh --no-browser bash scripts/soak.sh

bench: ## benchmarks with allocations (BENCH=regexp BENCHTIME=1s COUNT=1 PKG=./...)
	@bash scripts/testenv.sh --no-browser go test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime '$(BENCHTIME)' -count '$(COUNT)' $(PKG)

bench/pipeline: ## the pipeline against Postgres-only and Asynq no-op, with latency and CPU per order (BUYERS=20000 PGSECS=20 APPENDFSYNC=everysec ARGS=)
	@bash scripts/testenv.sh --no-browser go run ./bench/pipeline -buyers $${BUYERS:-20000} -pgbench-seconds $${PGSECS:-20} $${ARGS:-}

bench/api: ## the storefront API under wrk against the Go client's enqueue rate, and held long-polls (BUYERS=20000 SECS=20; installs wrk)
	@bash scripts/deps.sh wrk
	@bash scripts/testenv.sh --no-browser go run ./bench/pipeline -api -buyers $${BUYERS:-20000} -api-seconds $${SECS:-20} $${ARGS:-}

bench/catalog: ## a big catalogue: import, Redis memory per SKU, idle worker commands/s and CPU, /metrics, show and reconcile time and memory (SKUS=1000000 ARGS=)
	@bash scripts/testenv.sh --no-browser go run ./bench/catalog -skus $${SKUS:-1000000} $${ARGS:-}

fuzz: ## every fuzz target in turn for FUZZTIME each (default 1m; FUZZ=regexp narrows)
	@FUZZTIME='$(FUZZTIME)' FUZZ='$(FUZZ)' FUZZPARALLEL='$(FUZZPARALLEL)' bash scripts/testenv.sh --no-browser bash scripts/fuzz.sh

run: ## the demo: services, migrate, stock DEMO-SKU, start the worker, a 1000-buyer flash sale
	@bash scripts/services.sh run

stop: ## stop the worker and the services make run started under ./.data
	@bash scripts/services.sh stop

compose-e2e: ## the flash sale through docker compose (needs a Docker engine)
	@bash scripts/compose-e2e.sh

compose-check: ## check docker-compose.yml against the code's configuration, no Docker needed
	@bash scripts/compose-check.sh

clean: ## stop everything, then delete bin/ and ./.data (the local Redis and Postgres data)
	@bash scripts/services.sh clean
	rm -rf bin

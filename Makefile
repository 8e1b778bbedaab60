# Spark Gateway developer commands (SPEC §9).
#   make install    install npm dependencies when package-lock.json changed
#   make dev        run the gateway (src/server.ts); environment passes through
#   make test       start private PostgreSQL + Redis, run the tap suite, stop them
#   make bench      run the benchmarks (bench/run.ts)
#   make fuzz       fuzz an in-process gateway (FUZZ_RUNS=1000000, FUZZ_SEED, FUZZ_PATH); results in fuzz-results/
#   make cluster    Redis, PostgreSQL, three instances on 3001-3003 (+ nginx on 3000); Ctrl-C stops all
#   make build      compile to dist/ (the client SDK to dist/sdk/), and the console, demo and SDK browser bundle to public/
#   make demo       the gateway on embedded defaults with a demo policy and key; prints the console and demo URLs
#   make typecheck  type-check only: src/, the SDK as browser code, test/ and bench/ (tsconfig.test.json)
#   make lint       neostandard (eslint.config.js) over src/, test/, bench/, scripts/
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TEST_SERVERS := scripts/test-servers.sh
TEST_SERVERS_STATE ?= $(CURDIR)/.test-servers.env

.PHONY: help install dev test bench fuzz build web demo typecheck lint cluster test-servers-start test-servers-stop

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# Reinstall only when the lockfile's content changed (a checkout that merely
# touches package-lock.json does not wipe node_modules). flock serialises
# concurrent `make dev`/`make test` runs from one checkout.
node_modules: package-lock.json
	@flock package-lock.json bash -euo pipefail -c ' \
	  want="$$(sha256sum package-lock.json | cut -d" " -f1)"; \
	  have="$$(cat node_modules/.lock-sha256 2>/dev/null || true)"; \
	  if [ "$$want" = "$$have" ]; then :; \
	  elif [ -z "$$have" ] && [ -f node_modules/.package-lock.json ] && \
	       ! [ package-lock.json -nt node_modules/.package-lock.json ]; then :; \
	  else echo "npm ci" >&2; npm ci --no-audit --no-fund --loglevel=error >&2; fi; \
	  echo "$$want" > node_modules/.lock-sha256; \
	  touch node_modules'

install: node_modules

# The console, the demo and the SDK's browser bundle (SPEC §13): built ahead of time, again when a source is newer.
WEB_SOURCES := $(shell find web src/sdk src/protocol -type f 2>/dev/null) scripts/build-web.mjs
public/sizes.json: node_modules $(WEB_SOURCES)
	@node scripts/build-web.mjs

web: public/sizes.json

dev: node_modules public/sizes.json
	@exec node --import tsx src/server.ts

demo: node_modules public/sizes.json
	@exec node --import tsx scripts/demo.ts

# Each run has servers and a state file of its own, so two runs never stop each other's servers.
test: node_modules public/sizes.json
	@run_dir="$$(mktemp -d "$${TMPDIR:-/tmp}/spark-make-test-XXXXXX")"; \
	export TEST_SERVERS_STATE="$$run_dir/servers.env"; \
	trap 'bash $(TEST_SERVERS) stop >/dev/null 2>&1 || true; rm -rf "$$run_dir"' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	bash $(TEST_SERVERS) start >&2; \
	set -a; . "$$TEST_SERVERS_STATE"; set +a; \
	npx tap build >/dev/null 2>&1; \
	npx tap --reporter=tap | node scripts/summary.mjs

test-servers-start:
	@TEST_SERVERS_STATE="$(TEST_SERVERS_STATE)" bash $(TEST_SERVERS) start

test-servers-stop:
	@TEST_SERVERS_STATE="$(TEST_SERVERS_STATE)" bash $(TEST_SERVERS) stop

cluster: node_modules
	@bash scripts/cluster.sh

bench: node_modules
	@npx tsx bench/run.ts

fuzz: node_modules
	@npx tsx scripts/fuzz.ts

build: node_modules
	@npx tsc -p tsconfig.json && npx tsc -p src/sdk/tsconfig.json && node scripts/build-web.mjs

typecheck: node_modules
	@npx tsc -p tsconfig.json --noEmit && npx tsc -p src/sdk/tsconfig.json --noEmit && npx tsc -p tsconfig.test.json --noEmit && npx tsc -p web/tsconfig.json

lint: node_modules
	@npx eslint --max-warnings 0 --cache --cache-location node_modules/.cache/eslint/ src test bench scripts examples web eslint.config.js

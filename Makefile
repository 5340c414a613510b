# ledgerflow: `make run` runs the service with its example data, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install services run test unit integration acceptance bench soak soak-cluster lint format clean

help:
	@echo "make run    run ledgerflow locally with the example producer (services started as needed)"
	@echo "make test   run every test against real PostgreSQL, RabbitMQ and Redis"
	@echo "make lint   import contracts, ruff and mypy (strict, on src and tests)"

CONSOLE_JS := src/ledgerflow/web/static/dist/console.js

install: $(VENV)/.installed $(CONSOLE_JS)

$(VENV)/.installed: pyproject.toml
	@python=$$(scripts/dev-env.sh python) && \
	  { [ -x $(BIN)/python ] || "$$python" -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@scripts/dev-env.sh fonts
	@touch $@

# The console's scripts: front-end packages from the npm registry, as the lock file says.
$(CONSOLE_JS): frontend/package.json frontend/package-lock.json $(wildcard frontend/src/*)
	@scripts/dev-env.sh node
	cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

services:
	@scripts/dev-env.sh services

# Local services if they run (or are installed), else the whole stack in Docker Compose,
# else the distribution's packages (Debian/Ubuntu as root).
run:
	@if scripts/dev-env.sh local; then \
	  $(MAKE) --no-print-directory install && $(BIN)/ledgerflow run; \
	elif scripts/dev-env.sh docker; then \
	  echo "run: no local services; running the whole stack with Docker Compose"; \
	  docker compose -f deploy/compose.yaml up --build; \
	else \
	  scripts/dev-env.sh services && $(MAKE) --no-print-directory install && $(BIN)/ledgerflow run; \
	fi

# The browser tests run in Debian's Chromium (installed here when possible, else skipped).
test: install services
	LEDGERFLOW_TEST_CHROMIUM="$$(scripts/dev-env.sh browser)" $(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install services
	$(BIN)/pytest tests/integration

acceptance: install services
	LEDGERFLOW_TEST_CHROMIUM="$$(scripts/dev-env.sh browser)" $(BIN)/pytest tests/acceptance

# Not part of `make test`: ingest against the broker's ceiling and the usual solutions,
# then publish lag under load and against a long history, then /rates and price batches
# against the original's design (with and without a token), then the console at the
# 10-million scale and the live feed's push latency, then KeyDB pub/sub against
# PostgreSQL NOTIFY, then ingest with 0, 5 and 20 filtering rules and a trace at 10
# million messages, then comparisons at 1 and 10 million ids, then feed detection at a
# million batches and reconciliation at 10,000 tables, then trades into positions against
# the stream's read ceiling and the normaliser alone, then the LCR at 1,000 to 100,000
# instruments, in full and change by change, then a trade's way to the LCR on the console's
# WebSocket at 5,000 trades/s, then ingest with 1, 2 and 4 shards (about an hour).
bench: install services
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.lag
	$(BIN)/python -m bench.rates
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.live
	$(BIN)/python -m bench.lineage
	$(BIN)/python -m bench.reconcile
	$(BIN)/python -m bench.feeds
	$(BIN)/python -m bench.treasury
	$(BIN)/python -m bench.lcr
	$(BIN)/python -m bench.treasury_latency
	$(BIN)/python -m bench.shards

# Not part of `make test`: about SOAK_MINUTES (default 10) of kills and restarts, then a check.
soak: install services
	$(BIN)/python -m bench.soak

# Not part of `make test`: a three-node RabbitMQ cluster on this machine (root, RabbitMQ's
# server programs), sharded ingestion under load, nodes stopped and killed, then a check.
soak-cluster: install services
	$(BIN)/python -m bench.soak_cluster

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis frontend/node_modules \
	  src/ledgerflow/web/static/dist

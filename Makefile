# UltraMarket — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP  := $(VENV)/.installed

export ULTRAMARKET_DATA_DIR ?= ./data

.PHONY: install run serve test lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Installs exactly what uv.lock pins (plus the dev tools), into .venv.
$(STAMP): pyproject.toml uv.lock | $(BIN)/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --python $(BIN)/python
	@touch $(STAMP)

install: $(STAMP)

## Serve the whole platform on http://127.0.0.1:3000 with demo data (embedded parts).
run: install
	$(BIN)/ultramarket migrate
	$(BIN)/ultramarket seed --demo
	$(BIN)/ultramarket serve

serve: install
	$(BIN)/ultramarket serve

## The test suite: embedded stack always; PostgreSQL and Redis too where they answer.
test: install
	$(BIN)/pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

## Load benchmark on PostgreSQL (needs wrk; see bench/README.md).
bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# hookline: `make run` brings the pipeline up locally, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/hookline up

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

unit: $(VENV)/.dev
	$(BIN)/pytest -m "not integration"

bench: $(VENV)/.dev
	$(BIN)/hookline bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# hookline: `make run` brings the pipeline up locally, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint unit mutate bench clean checkov

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

# checkov (tests/unit/deploy/test_checkov.py) in a virtualenv of its own: it pins `packaging`
# below what the dev tools use and brings ~100 packages (~400 MB, about a minute).
CHECKOV_VERSION := 3.3.30
.venv-checkov/bin/checkov:
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q checkov==$(CHECKOV_VERSION)

checkov: .venv-checkov/bin/checkov

test: lint checkov
	$(BIN)/pytest

unit: $(VENV)/.dev
	$(BIN)/pytest -m "not integration"

# Mutation testing of the modules where a wrong line is a security or data-loss bug (see
# [tool.mutmut] in pyproject.toml) against the fast suite. Not in CI: about half an hour on
# two cores. `make mutate MUTANTS='ingress.parse*'` runs one module's mutants. Left out by
# default: the Runner class and the idempotency store, which only integration tests reach.
MUTANTS ?= 'shared.signatures*' 'ingress.auth*' 'ingress.parse*' 'ingress.problems*' \
	'shared.wire.ordering*' 'shared.expressions*' 'worker.retries*' 'worker.consumer.x_*' \
	'ingress.idempotency.x_*'
mutate: $(VENV)/.dev
	nice -n 19 $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results --all true | $(BIN)/python tests/mutation_score.py

bench: $(VENV)/.dev
	$(BIN)/hookline bench

clean:
	rm -rf $(VENV) .venv-checkov .mypy_cache .ruff_cache .pytest_cache mutants

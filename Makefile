# Every target builds or refreshes .venv from this project's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench crds clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/epp demo

# The test command (README, .ci/run): lint first, then the whole suite.
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

# mypy's files (src, tests, benchmarks) and strictness are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

crds: $(STAMP)
	$(BIN)/epp crds -o deploy/crds

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

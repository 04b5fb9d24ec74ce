# Every target builds or refreshes .venv from this project's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv browser demo test lint bench crds clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/epp demo

# Debian's chromium drives the status-page browser test; installed where apt-get can (root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null; } || echo "chromium not installed: the status-page browser test is skipped"

# The test command (README, .ci/run): lint first, then the whole suite.
test: lint browser
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

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

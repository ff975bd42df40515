# Integration Hub: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HUB_HOME ?= $(CURDIR)/.hub
export HUB_HOME
export DAGSTER_HOME := $(HUB_HOME)/dagster

.PHONY: demo dev test lint bench clean install browser

# The stamp is rebuilt only when the declared dependencies change, so a second
# `make demo` does not reinstall anything. The sandbox (sandbox/, its own package) is
# installed beside the hub for the demo and the tests; a production install leaves it out.
$(BIN)/.installed: pyproject.toml sandbox/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./sandbox
	@touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/hub demo

dev: install
	$(BIN)/hub dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Under CI the browser tests must run, so Chromium is installed first; elsewhere they skip without it.
# Three workers, one test file each at a time: many tests wait on HTTP, subprocesses and
# Dagster's daemon loops, so even the 2-core machine gains from a third (tests/conftest.py).
test: install $(if $(filter true,$(CI)),browser)
	$(BIN)/python -m pytest -n 3 --dist loadfile

lint: install
	$(BIN)/ruff check .

bench: install
	@echo "benchmarks live in bench/ (see BENCHMARKS.md for each command)"

# Debian's Chromium for the browser test; Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

clean:
	rm -rf $(VENV) .hub .pytest_cache .ruff_cache

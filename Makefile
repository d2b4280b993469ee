# Two commands matter: `make run` and `make test`. Both set up everything they need first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
ARGS ?=
PYTEST_ARGS ?=
# Workers for the tests (pytest-xdist; tests/conftest.py groups those that share a server).
PYTEST_XDIST ?= -n 4 --dist loadscope

.PHONY: run test build lint bench clean

run: build
	$(BIN)/python -m streamdom $(ARGS)

test: build
	$(BIN)/ruff check streamdom tests benchmarks
	npx tsc --noEmit -p tsconfig.json
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# Bytecode for our own modules too: an editable install has none, and where PYTHONDONTWRITEBYTECODE
# is set every server, flusher and test process compiled them again (~0.06 s of CPU each).
build: $(PY_STAMP) $(NPM_STAMP)
	node build.mjs
	$(BIN)/python -m compileall -q streamdom tests benchmarks

lint: $(PY_STAMP)
	$(BIN)/ruff check streamdom tests benchmarks

bench: build
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/archive.py
	$(BIN)/python benchmarks/recorder.py

$(PY_STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) node_modules streamdom/static

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv system-deps node-deps microsoft-venv lint bench clean

$(STAMP): pyproject.toml scripts/dev-install.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	scripts/dev-install.sh $(BIN)/python
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@if command -v npm >/dev/null; then scripts/install-node-deps.sh || \
	  echo "(Azurite could not be installed: the demo skips its storage step)"; fi
	azurite=$(CURDIR)/tests/node/node_modules/.bin/azurite-blob; [ -x $$azurite ] || azurite=; \
	  AUTHBROKER_AZURITE="$${AUTHBROKER_AZURITE:-$$azurite}" $(BIN)/authbroker demo

system-deps:
	scripts/install-system-deps.sh

node-deps:
	scripts/install-node-deps.sh

microsoft-venv:
	PYTHON=$(PY) scripts/microsoft-venv.sh

test: system-deps node-deps $(STAMP) microsoft-venv lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) tests/.venv-microsoft build dist .pytest_cache tests/node/node_modules

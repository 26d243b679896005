# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck soak test-asyncio-debug clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/aioecho server

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict src

test: lint typecheck
	$(BIN)/python -m pytest

# asyncio's debug mode: never-retrieved exceptions, unclosed transports, callbacks that block
test-asyncio-debug: $(VENV)/.installed-test
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest -W error::ResourceWarning

soak: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m slow -s

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

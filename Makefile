PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/cdrec: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/cdrec

install: $(BIN)/cdrec

demo: install
	$(BIN)/cdrec demo --out demo-out

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) demo-out

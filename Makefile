PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

# Flower (cdrec[flower]) pins FastAPI / typer / uvicorn lower than the main venv: it gets its own venv.
FLOWER_VENV ?= .venv-flower
FBIN := $(FLOWER_VENV)/bin

.PHONY: install install-flower demo test test-flower bench reports clean

$(BIN)/cdrec: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/cdrec

install: $(BIN)/cdrec

$(FBIN)/flower-superlink: pyproject.toml
	$(PY) -m venv $(FLOWER_VENV)
	$(FBIN)/pip install -q --upgrade pip
	$(FBIN)/pip install -q torch==2.13.0
	$(FBIN)/pip install -q -e '.[dev,flower]'
	touch $(FBIN)/flower-superlink

install-flower: $(FBIN)/flower-superlink

demo: install
	$(BIN)/cdrec demo --out demo-out

test: install test-flower
	$(BIN)/python -m pytest

# MTAL on Flower: real SuperLink / SuperNode processes on 127.0.0.1 (tests/federated/flower).
test-flower: install-flower
	FLWR_TELEMETRY_ENABLED=0 OMP_NUM_THREADS=1 PATH="$(abspath $(FBIN)):$$PATH" $(FBIN)/python -m pytest tests/federated/flower -p no:cacheprovider

bench: install
	$(BIN)/python -m benchmarks.run_all

# Rebuild every report under docs/reproductions/ and the README's headline table from the committed runs.
reports: install
	$(BIN)/cdrec reproduce all --report-only --out docs/reproductions --readme README.md

clean:
	rm -rf $(VENV) $(FLOWER_VENV) demo-out

# The README's two commands: `make demo` and `make test`. Both create the
# virtual environment and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-scan clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sclandscape demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check sclandscape tests benchmarks
	$(BIN)/ruff format --check sclandscape tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/optimum.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# Peers for benchmarks/scan.py (Pymanopt, PyTorch CPU) are not needed by the tests.
bench-scan: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[peers]'
	$(BIN)/python benchmarks/scan.py

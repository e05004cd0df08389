# The README's two commands: `make demo` and `make test`. Both create the
# virtual environment and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-scan bench-threshold bench-accelerator clean

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

# Continuation in tau of the spurious minimum of 10,10,2,2, d = 5 (BENCHMARKS.md, "The temperature threshold").
bench-threshold: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/threshold.py

# Every accelerator figure of BENCHMARKS.md in one run (one GPU, under 8 minutes).
bench-accelerator: $(STAMP)
	$(BIN)/python benchmarks/accelerator.py

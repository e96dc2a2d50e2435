# Two set-up commands: `make demo` and `make test`. Each creates .venv if missing and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs bench bench-disability sensitivity clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd.yaml -o out/ivig_nmosd

sensitivity: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd_sensitivity.yaml -o out/ivig_nmosd_sensitivity --jobs 2

test: $(STAMP)
	$(BIN)/ruff check core plugins tests specs $(wildcard benchmarks)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check core plugins tests specs $(wildcard benchmarks)

# Regenerates every generated part of docs/ (parameter tables, spec.schema.json) from the code.
docs: $(STAMP)
	$(BIN)/python -m endpointkit.docgen docs

# pymsprog pins pandas<3 and numpy<2 (endpointkit needs pandas>=3): it gets a venv of its own in the
# git-ignored benchmarks/data/, without endpointkit, and benchmarks/run.py runs it there in a subprocess.
BENCH_VENV := benchmarks/data/pymsprog-venv
PYMSPROG := pymsprog==1.0.7

$(BENCH_VENV)/.installed: Makefile
	test -x $(BENCH_VENV)/bin/python || $(BIN)/python -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet '$(PYMSPROG)'
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed
	$(BIN)/python benchmarks/run.py --msprog-python $(BENCH_VENV)/bin/python

clean:
	rm -rf out build *.egg-info .pytest_cache .ruff_cache

# disability_events against pymsprog on a grid of settings, and its speed: benchmarks/DISABILITY_RESULTS.md
bench-disability: $(STAMP) $(BENCH_VENV)/.installed
	$(BIN)/python benchmarks/disability_vs_msprog.py --msprog-python $(BENCH_VENV)/bin/python

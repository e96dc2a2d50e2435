# Two set-up commands: `make demo` and `make test`. Each creates .venv if missing and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench sensitivity clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot]'
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

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf out build *.egg-info .pytest_cache .ruff_cache

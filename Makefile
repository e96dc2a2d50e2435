# Two set-up commands: `make demo` and `make test`. Each creates .venv if missing and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs bench bench-arr bench-disability bench-scale sensitivity clean figures check-report check-docx

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd.yaml -o out/ivig_nmosd

sensitivity: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd_sensitivity.yaml -o out/ivig_nmosd_sensitivity --jobs 2

# the README's pictures, from the sensitivity demo
figures: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd_sensitivity.yaml --quiet --figures docs/figures > /dev/null

# report.html in Debian's headless Chromium (apt-get install chromium): a screenshot to look at, and a
# network log in which the page made no request (tools/check_netlog.py)
CHROMIUM ?= chromium
CHECK := out/check
check-report: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd_sensitivity.yaml -o $(CHECK) --quiet > /dev/null
	rm -rf $(CHECK)/chromium-profile
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	  --disable-background-networking --disable-component-update --disable-sync \
	  --user-data-dir=$(CURDIR)/$(CHECK)/chromium-profile --log-net-log=$(CURDIR)/$(CHECK)/netlog.json \
	  --window-size=1200,5000 --screenshot=$(CURDIR)/$(CHECK)/report.png file://$(CURDIR)/$(CHECK)/report.html
	$(BIN)/python tools/check_netlog.py $(CHECK)/netlog.json
	@echo "screenshot: $(CHECK)/report.png"

# table.docx to PDF with LibreOffice (apt-get install libreoffice-writer-nogui poppler-utils), and
# its first page as PNG to look at
SOFFICE ?= soffice
check-docx: $(STAMP)
	$(BIN)/endpointkit run specs/ivig_nmosd.yaml -o $(CHECK)/docx --format docx --quiet > /dev/null
	$(SOFFICE) --headless --convert-to pdf --outdir $(CHECK)/docx $(CHECK)/docx/table.docx > /dev/null
	pdftoppm -png -r 80 -f 1 -l 1 $(CHECK)/docx/table.pdf $(CHECK)/docx/table-page
	@echo "table.pdf and its first page: $(CHECK)/docx/"

test: $(STAMP)
	$(BIN)/ruff check core plugins tests specs tools $(wildcard benchmarks)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check core plugins tests specs tools $(wildcard benchmarks)

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

# endpointkit run --only arr against an independent DuckDB computation of the same per-patient ARRs
# (benchmarks/arr_duckdb.py): best-of-3 wall times, their ratio (target <= 1.5) and a check that the two agree
ARR_DATA := benchmarks/data/registry_100k
bench-arr: $(STAMP)
	test -f $(ARR_DATA)/patients.csv || $(BIN)/endpointkit simulate --patients 100000 --seed 1 -o $(ARR_DATA)
	$(BIN)/python benchmarks/arr_duckdb.py $(ARR_DATA) --time

# the executors at 100,000 and 1,000,000 patients (serial, processes, dask): time, peak memory of every
# process, byte-identical outputs: benchmarks/SCALE_RESULTS.md (about 30 minutes; the 1,000,000-patient
# simulations need about 8 GiB of free memory)
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale_out.py

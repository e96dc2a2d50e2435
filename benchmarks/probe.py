"""One run of a spec split into its phases, timed in one process, plus the in-memory size of the
loaded canonical tables (``DataFrame.memory_usage(deep=True)``). Prints one JSON object.

    python benchmarks/probe.py SPEC DATA_DIR OUT_DIR

Run by benchmarks/run.py in a subprocess of its own (a fresh interpreter, as a real run).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

started = time.perf_counter()
from endpointkit.cohort import build_cohort  # noqa: E402
from endpointkit.endpoint import Context  # noqa: E402
from endpointkit.engine import load_spec_data, run_spec  # noqa: E402
from endpointkit.outdir import OutputFolder  # noqa: E402
from endpointkit.output import render_files  # noqa: E402
from endpointkit.spec import load_spec  # noqa: E402

imported = time.perf_counter()


def main(spec_path: str, data_dir: str, out_dir: str) -> dict:
    phases: dict[str, float] = {"import endpointkit": imported - started}
    t = time.perf_counter()
    spec = load_spec(spec_path, data=data_dir)
    phases["read spec"] = time.perf_counter() - t
    t = time.perf_counter()
    data = load_spec_data(spec, spec.plugins)
    phases["read and type the tables (core/data.py, plugins/sources.py)"] = time.perf_counter() - t
    sizes = {name: int(frame.memory_usage(deep=True).sum()) for name, frame in data.tables.items()}
    rows = {name: len(frame) for name, frame in data.tables.items()}
    t = time.perf_counter()
    cohort = build_cohort(data, spec.cohort, spec.plugins.criteria)
    phases["build the cohort (core/cohort.py)"] = time.perf_counter() - t
    ctx = Context(quantile_method=spec.statistics.quantile_method, paired_test=spec.paired_test,
                  year_days=spec.statistics.year_days)
    endpoints = {}
    for e in spec.endpoints:
        t = time.perf_counter()
        spec.plugins.endpoints.items[e.plugin]().compute(cohort, e.params, ctx)
        endpoints[e.id] = time.perf_counter() - t
    phases["endpoints (plugins/*.py)"] = sum(endpoints.values())
    t = time.perf_counter()
    results = run_spec(spec, spec.plugins, data=data)  # cohort + endpoints again, through the engine
    engine = time.perf_counter() - t
    t = time.perf_counter()
    files = render_files(results, spec.table.format)
    phases["render tables, results and JSON (core/output.py)"] = time.perf_counter() - t
    t = time.perf_counter()
    with OutputFolder(Path(out_dir)) as folder:
        written = folder.commit(files)
    phases["write output files, per-patient CSVs and manifest included (core/outdir.py, Arrow CSV writer)"] = time.perf_counter() - t
    return {
        "phases": phases, "endpoints": endpoints, "engine_run_spec": engine,
        "table_bytes": sizes, "table_rows": rows, "input_bytes": sum(sizes.values()),
        "output_bytes": {str(path.relative_to(out_dir)): path.stat().st_size for path in written},
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))

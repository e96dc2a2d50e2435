"""Runs pymsprog (PyPI ``pymsprog`` 1.0.7) on EDSS visits written by benchmarks/edss_vs_msprog.py.

    python benchmarks/msprog_worker.py JOB.json RESULT.json

pymsprog pins pandas<3 and numpy<2, so ``make bench`` installs it (the Makefile's ``PYMSPROG`` pin) into a venv of its
own (benchmarks/data/pymsprog-venv) and this script runs there; it imports nothing from endpointkit.
JOB.json: {"runs": [{"name", "visits", "relapses" (CSV path or null), "delta" ("ms_standard" or
"builtin"), "kwargs" (MSprog keyword arguments)}]}. RESULT.json: per run the seconds MSprog took and,
per patient, the number of confirmed worsening (CDW) and improvement (CDI) events and the date of
the first CDW; and every reported event (type, CDW type, date, baseline date and value, first
confirmation date) for benchmarks/disability_vs_msprog.py.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings


def ms_standard(baseline: float) -> float:
    """endpointkit's ``ms_standard`` threshold: +1.5 from 0, +1.0 from 1.0-5.5, +0.5 from 6.0."""
    return 1.5 if baseline < 1.0 else (1.0 if baseline < 6.0 else 0.5)


def main(job_path: str, result_path: str) -> None:
    import numpy as np
    import pandas as pd
    import pymsprog

    with open(job_path, encoding="utf-8") as stream:
        job = json.load(stream)
    out = {"versions": {"pymsprog": pymsprog.__version__, "pandas": pd.__version__, "numpy": np.__version__,
                        "python": sys.version.split()[0]}, "runs": {}}
    for run in job["runs"]:
        visits = pd.read_csv(run["visits"], dtype={"patient_id": str, "date": str, "score": float})
        relapses = pd.read_csv(run["relapses"], dtype=str) if run.get("relapses") else None
        kwargs = dict(run["kwargs"])
        for key in ("conf_tol_days",):
            if key in kwargs:
                kwargs[key] = [math.inf if v == "inf" else v for v in kwargs[key]]
        if kwargs.get("require_sust_days") == "inf":
            kwargs["require_sust_days"] = math.inf
        if run["delta"] == "ms_standard":
            kwargs["delta_fun"] = ms_standard
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary, results = pymsprog.MSprog(
                visits, subj_col="patient_id", value_col="score", date_col="date", outcome="edss",
                relapse=relapses, rsubj_col="patient_id", rdate_col="date", date_format="%Y-%m-%d",
                include_dates=True, include_value=True, verbose=0, **kwargs,
            )
        seconds = time.perf_counter() - started
        first_cdw = {}
        if len(results) and "date" in results.columns:
            cdw = results[results["event_type"] == "CDW"].sort_values("date").drop_duplicates("patient_id")
            first_cdw = {str(k): str(v)[:10] for k, v in zip(cdw["patient_id"], cdw["date"], strict=True)}
        patients = {}
        for pid, row in summary.iterrows():
            patients[str(pid)] = {"CDW": int(row.get("CDW", 0)), "CDI": int(row.get("CDI", 0)),
                                  "first_cdw": first_cdw.get(str(pid))}
        events = []  # every reported event: [patient, type, CDW type, date, baseline date, baseline value, first confirmation date]
        if len(results) and "nevent" in results.columns:
            conf = next((c for c in results.columns if c.startswith("conf") and c.endswith("_date")), None)
            for r in results[results["nevent"] > 0].to_dict("records"):  # (column names such as conf84.0_date)
                kind = str(r["event_type"]).lower()
                cdw_type = str(r.get("CDW_type", "") or "").lower() if kind == "cdw" else ""
                confirmed = r.get(conf) if conf else None
                events.append([str(r["patient_id"]), kind, cdw_type or None, str(r["date"])[:10], str(r["bl_date"])[:10],
                               float(r["bl_value"]), None if confirmed is None or pd.isna(confirmed) else str(confirmed)[:10]])
        out["runs"][run["name"]] = {"seconds": seconds, "patients": patients, "n": len(patients), "events": events}
    with open(result_path, "w", encoding="utf-8") as stream:
        json.dump(out, stream)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

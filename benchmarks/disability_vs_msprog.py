"""``disability_events`` against pymsprog: the same events on a grid of settings, and the speed.

    python benchmarks/disability_vs_msprog.py [--patients 2000] [--large 100000] [--msprog-python PY]

(``make bench-disability`` runs it with the pymsprog venv that ``make bench`` installs.) It writes
benchmarks/DISABILITY_RESULTS.md.

1. Agreement: a simulated registry (benchmarks/common.py, seed 1) goes through specs/registry.yaml's
   cohort; each patient's visits as ``disability_events`` scans them (from the baseline score to
   follow-up end) and the cohort's cleaned relapses are handed to pymsprog (PyPI pymsprog 1.0.7,
   in its own venv: it pins numpy<2 and pandas<3) and to our engine, for every setting of the grid
   (event, baseline, proceed_from, confirmation periods and tolerance, intermediate visits,
   sustained, relapse distances, PIRA/RAW, threshold rule, last visit). Agreement per patient = the
   same list of events; per event = the same (type, CDW type, date, baseline date and value, first
   confirmation date). Our ``pymsprog`` threshold rule is pymsprog's built-in EDSS delta; for
   ``ms_standard`` pymsprog gets the same table as ``delta_fun``.
2. Speed: patients per second of the engine's derivation (``derive_events``: baseline, visits,
   the scan, the per-patient frame) against pymsprog's ``MSprog`` call on the same patients, and the
   derivation alone on a large registry with roving baseline and PIRA/RAW.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, DATA, REPO, SPEC, ensure_registry, machine_info  # noqa: E402
from edss_vs_msprog import msprog_python  # noqa: E402

# (our params, pymsprog kwargs): at least 24 combinations; pymsprog's own defaults where not named
GRID: list[dict] = [
    {},
    {"threshold_rule": "pymsprog"},
    {"event": "first_cdi"},
    {"event": "first"},
    {"event": "first", "baseline": "roving"},
    {"event": "multiple"},
    {"event": "multiple", "baseline": "roving", "pira_raw": True},
    {"event": "multiple", "baseline": "roving", "proceed_from": "event", "pira_raw": True},
    {"event": "multiple", "proceed_from": "event"},
    {"event": "multiple", "baseline": "roving_worsening"},
    {"event": "first_cdw", "baseline": "roving_improvement"},
    {"event": "first_cdw", "pira_raw": True},
    {"event": "first_pira"},
    {"event": "first_pira", "baseline": "roving"},
    {"event": "first_raw"},
    {"event": "first_raw", "baseline": "roving_worsening"},
    {"event": "multiple", "confirmation_days": [84, 168], "pira_raw": True},
    {"event": "multiple", "confirmation_days": 168, "confirmation_tolerance_days": [0, "inf"], "baseline": "roving"},
    {"event": "first_cdw", "confirmation_tolerance_days": [7, 7]},
    {"event": "multiple", "check_intermediate": False, "pira_raw": True},
    {"event": "multiple", "sustained_days": 168, "baseline": "roving"},
    {"event": "multiple", "sustained_days": 168, "check_intermediate": False},
    {"event": "first_cdw", "sustained_days": "end"},
    {"event": "first_cdw", "relapse_to_baseline_days": [30, 30], "relapse_to_event_days": [30, 0],
     "relapse_to_confirmation_days": [30, 30]},
    {"event": "first_cdw", "relapse_to_baseline_days": 0, "relapse_to_confirmation_days": 0},
    {"event": "multiple", "pira_raw": True, "relapse_assoc_days": [90, 30], "pira_preceding_days": [30, 0],
     "pira_event_days": [180, 30], "pira_confirmation_days": [30, 30]},
    {"event": "multiple", "baseline": "roving", "last_visit": "always", "pira_raw": True},
    {"event": "multiple", "threshold_rule": "pymsprog", "baseline": "roving", "pira_raw": True},
]
EVENTS = {"first_cdw": "firstCDW", "first_cdi": "firstCDI", "first": "first", "multiple": "multiple",
          "first_pira": "firstPIRA", "first_raw": "firstRAW"}
BASELINES = {"fixed": "fixed", "roving": "roving", "roving_worsening": "roving_wors", "roving_improvement": "roving_impr"}
SPEED_SETTING = {"event": "multiple", "baseline": "roving", "pira_raw": True}


def pymsprog_kwargs(params) -> tuple[dict, str]:
    """pymsprog's MSprog arguments for our params (and which delta function to hand it)."""
    s = params.settings()
    kwargs = {
        "event": EVENTS[s.event], "baseline": BASELINES[s.baseline],
        "proceed_from": "firstconf" if s.proceed_from == "confirmation" else "event",
        "conf_days": list(s.confirmation_days), "conf_tol_days": [s.tolerance[0], "inf" if s.tolerance[1] == float("inf") else s.tolerance[1]],
        "check_intermediate": s.check_intermediate,
        "require_sust_days": s.sustained_days if s.sustained_days != float("inf") else "inf",
        "relapse_to_bl": list(s.relapse_to_baseline), "relapse_to_event": list(s.relapse_to_event),
        "relapse_to_conf": list(s.relapse_to_confirmation), "RAW_PIRA": s.pira_raw,
        "relapse_assoc": list(s.relapse_assoc),
        "relapse_indep": {"prec": list(s.pira_preceding), "event": list(s.pira_event), "conf": list(s.pira_confirmation),
                          "prec_type": "baseline"},
        "impute_last_visit": 1 if s.last_visit == "always" else 0,
    }
    return kwargs, ("builtin" if s.threshold_rule == "pymsprog" else "ms_standard")


def our_events(frame: pd.DataFrame) -> list[list]:
    rows = frame[frame["event_number"] > 0]

    def text(v):
        return None if pd.isna(v) else str(v)[:10]

    return [[str(r.patient_id), r.event_type, r.cdw_type if isinstance(r.cdw_type, str) else None, text(r.date),
             text(r.baseline_date), float(r.baseline_value), text(r.confirmation_date)] for r in rows.itertuples()]


def compare(ours: list[list], theirs: list[list], patients: list[str]) -> dict:
    def by_patient(events):
        out: dict[str, list[tuple]] = {}
        for e in events:
            out.setdefault(e[0], []).append(tuple(e[1:]))
        return out

    a, b = by_patient(ours), by_patient(theirs)
    same = sum(a.get(p, []) == b.get(p, []) for p in patients)
    sa, sb = {(e[0], *e[1:]) for e in map(tuple, ours)}, {(e[0], *e[1:]) for e in map(tuple, theirs)}
    return {"patients": len(patients), "patients_agree": same, "events_ours": len(ours), "events_pymsprog": len(theirs),
            "events_agree": len(sa & sb), "only_ours": sorted(sa - sb)[:3], "only_pymsprog": sorted(sb - sa)[:3]}


def run_pymsprog(python: str, runs: list[dict], tmp: Path, patients: int) -> dict:
    """pymsprog's results for these runs; reused from benchmarks/data when the same inputs ran before."""
    digest = hashlib.sha256(json.dumps([{k: v for k, v in r.items() if k not in ("visits", "relapses")} for r in runs],
                                       sort_keys=True).encode())
    for path in sorted({r["visits"] for r in runs} | {r["relapses"] for r in runs}) + [str(BENCH / "msprog_worker.py")]:
        digest.update(Path(path).read_bytes())
    cache = DATA / "pymsprog_cache" / f"{digest.hexdigest()[:20]}.json"
    if cache.exists():
        print(f"pymsprog: {len(runs)} runs reused from {cache.relative_to(REPO)}", flush=True)
        return json.loads(cache.read_text())
    (tmp / "job.json").write_text(json.dumps({"runs": runs}))
    print(f"pymsprog: {len(runs)} runs on {patients:,} patients ({python})", flush=True)
    done = subprocess.run([python, str(BENCH / "msprog_worker.py"), str(tmp / "job.json"), str(tmp / "result.json")],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"pymsprog failed: {done.stderr.strip()[-2000:]}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text((tmp / "result.json").read_text())
    return json.loads(cache.read_text())


def load_cohort(n: int):
    from endpointkit.cohort import build_cohort
    from endpointkit.engine import load_spec_data
    from endpointkit.spec import load_spec

    folder, _ = ensure_registry(n)
    spec = load_spec(SPEC, data=folder)
    data = load_spec_data(spec, spec.plugins)
    return build_cohort(data, spec.cohort, spec.plugins.criteria)


def timed_derive(cohort, params, repeats: int = 3) -> tuple[pd.DataFrame, float]:
    from endpointkit.plugins.disability_events import derive_events

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        frame = derive_events(cohort, params)
        best = min(best, time.perf_counter() - started)
    return frame, best


def main() -> None:
    from endpointkit.plugins.disability_events import DisabilityEvents, engine_input
    from endpointkit.testing import params_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--large", type=int, default=100000)
    parser.add_argument("--msprog-python")
    args = parser.parse_args()
    python = msprog_python(args.msprog_python)
    if python is None:
        sys.exit("pymsprog is not installed: run `make bench` once (it installs it into benchmarks/data/pymsprog-venv)")

    cohort = load_cohort(args.patients)
    ids = cohort.patients["patient_id"].to_numpy()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs, ours_by_name = [], {}
        for i, values in enumerate(GRID):
            params = params_for(DisabilityEvents, **values)
            x = engine_input(cohort, params)
            visits = pd.DataFrame({"patient_id": ids[x.code], "date": x.day.astype("datetime64[D]").astype(str), "score": x.value})
            v_path = tmp / f"visits_{params.baseline_score}_{params.baseline_window_days}.csv"
            if not v_path.exists():
                visits.to_csv(v_path, index=False)
                relapses = pd.DataFrame({"patient_id": ids[x.relapse_code],
                                         "date": x.relapse_day.astype("datetime64[D]").astype(str)})
                relapses[np.isin(x.relapse_code, np.unique(x.code))].to_csv(tmp / "relapses.csv", index=False)
            frame, seconds = timed_derive(cohort, params)
            name = f"{i + 1:02d}"
            kwargs, delta = pymsprog_kwargs(params)
            runs.append({"name": name, "visits": str(v_path), "relapses": str(tmp / "relapses.csv"), "delta": delta,
                         "kwargs": kwargs})
            ours_by_name[name] = (values, our_events(frame), seconds, sorted(set(ids[x.code])))
        theirs = run_pymsprog(python, runs, tmp, len(ours_by_name["01"][3]))
    for name, (values, ours, seconds, patients) in ours_by_name.items():
        got = theirs["runs"][name]
        row = compare(ours, got["events"], patients)
        row.update({"setting": values, "seconds_ours": seconds, "seconds_pymsprog": got["seconds"]})
        results.append(row)
        print(f"{name} {json.dumps(values)}: patients {row['patients_agree']}/{row['patients']}, events "
              f"{row['events_agree']}/{row['events_pymsprog']} (ours {row['events_ours']}); "
              f"{got['seconds'] / seconds:.0f}x", flush=True)

    large = load_cohort(args.large)
    params = params_for(DisabilityEvents, **SPEED_SETTING)
    frame, large_seconds = timed_derive(large, params)
    visits = int(engine_input(large, params).code.size)
    ten = ten_visit_seconds(args.large, params.settings())
    write_report(results, theirs["versions"], args.patients, args.large, large_seconds, visits, len(large.patients), ten)


def ten_visit_seconds(n: int, settings) -> float:
    """The engine alone on n patients x 10 visits (3-6 months apart, a random walk on the EDSS grid) and
    one relapse per patient on average: best of 3."""
    from endpointkit.plugins.disability_engine import detect_events

    rng = np.random.default_rng(1)
    code = np.repeat(np.arange(n), 10)
    gaps = rng.integers(90, 183, code.size).reshape(n, 10)
    gaps[:, 0] = 0
    day = np.cumsum(gaps, axis=1).ravel()
    steps = rng.choice([-1.0, -0.5, 0.0, 0.0, 0.0, 0.5, 1.0], code.size).reshape(n, 10)
    steps[:, 0] = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0, 5.5, 6.0], n)
    value = np.clip(np.cumsum(steps, axis=1), 0, 9.5).ravel()
    r_code = rng.integers(0, n, n)
    r_day = rng.integers(-60, int(day.max()), n)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        detect_events(code, day, value, n, r_code, r_day, settings)
        best = min(best, time.perf_counter() - started)
    return best


def write_report(results, versions, n_small, n_large, large_seconds, large_visits, large_patients, ten: float) -> None:
    total_p = sum(r["patients"] for r in results)
    agree_p = sum(r["patients_agree"] for r in results)
    ev_theirs = sum(r["events_pymsprog"] for r in results)
    ev_agree = sum(r["events_agree"] for r in results)
    ratios = [r["seconds_pymsprog"] / r["seconds_ours"] for r in results]
    lines = [
        "# disability_events against pymsprog",
        "",
        "Written by `python benchmarks/disability_vs_msprog.py` (`make bench-disability`); do not edit by hand.",
        f"Machine: {json.dumps(machine_info())}. pymsprog side: {json.dumps(versions)}.",
        "",
        f"Registry: {n_small:,} simulated patients (seed 1) through specs/registry.yaml's cohort; each patient's "
        "EDSS visits from the baseline score to follow-up end and the cleaned relapses go to both tools.",
        "",
        f"**Agreement: {agree_p:,} of {total_p:,} patient runs have identical event lists "
        f"({agree_p / total_p:.2%}); {ev_agree:,} of {ev_theirs:,} pymsprog events are reproduced exactly "
        "(type, CDW type, date, baseline date and value, first confirmation date).**",
        "",
        "| # | setting (disability_events params) | patients agree | events agree / pymsprog / ours | pymsprog s | ours s | x faster |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        setting = ", ".join(f"{k}: {v}" for k, v in r["setting"].items()) or "defaults"
        lines.append(f"| {i} | {setting} | {r['patients_agree']}/{r['patients']} | {r['events_agree']} / "
                     f"{r['events_pymsprog']} / {r['events_ours']} | {r['seconds_pymsprog']:.1f} | {r['seconds_ours']:.3f} | "
                     f"{r['seconds_pymsprog'] / r['seconds_ours']:.0f} |")
    patients = results[0]["patients"]
    lines += [
        "",
        "## Speed",
        "",
        f"* {patients:,} patients: pymsprog {min(r['seconds_pymsprog'] for r in results):.1f}-"
        f"{max(r['seconds_pymsprog'] for r in results):.1f} s per run "
        f"({patients / max(r['seconds_pymsprog'] for r in results):.0f}-{patients / min(r['seconds_pymsprog'] for r in results):.0f} patients/s); "
        f"ours {min(r['seconds_ours'] for r in results):.3f}-{max(r['seconds_ours'] for r in results):.3f} s "
        f"(best of 3, the whole derivation); ratio {min(ratios):.0f}x-{max(ratios):.0f}x (median {float(np.median(ratios)):.0f}x).",
        f"* {large_patients:,} patients ({large_visits:,} visits scanned), {json.dumps(SPEED_SETTING)}: "
        f"{large_seconds:.2f} s ({large_patients / large_seconds:,.0f} patients/s), the whole derivation (baseline, visits, "
        "the scan, the per-patient frame).",
        f"* The engine alone, {n_large:,} patients x 10 visits (a random walk on the EDSS grid, one relapse per patient "
        f"on average), same setting: {ten:.2f} s.",
        "",
        "Timings are best of 3 on a 2-core machine shared with other jobs (load average above); pymsprog's are one "
        "run each under the same load.",
        "",
    ]
    differ = [r for r in results if r["patients_agree"] != r["patients"]]
    if differ:
        lines += ["## Disagreements", ""]
        for r in differ:
            lines.append(f"* {json.dumps(r['setting'])}: only ours {r['only_ours']}; only pymsprog {r['only_pymsprog']}")
    (BENCH / "DISABILITY_RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {(BENCH / 'DISABILITY_RESULTS.md').relative_to(REPO)}")


if __name__ == "__main__":
    main()

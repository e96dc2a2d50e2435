"""``edss_progression`` against pymsprog (the Python port of R msprog) on the same simulated EDSS data.

pymsprog scans each patient's visits in order from its baseline (the first visit it is given) and
confirms a change at the first visit in a tolerance window after ``conf_days``, requiring every
visit in between to meet the change too (``check_intermediate``). Run with the settings that match
ours, it should agree patient by patient; each single setting left at pymsprog's default shows how
far that definition difference moves the outcome. Matching choices:

* baseline: pymsprog has no "last score before index" rule (its baseline is the first visit given),
  so it is given each patient's scores from our baseline date on: the baseline is identical by
  construction;
* confirmation: ours (C > 0) = the first score at or after t + C, every score from t to it meeting
  the change: pymsprog ``conf_days=C``, ``conf_tol_days=[0, inf]``, ``check_intermediate=True``;
  our default (C = 0, last score vs baseline) has no pymsprog counterpart;
* threshold: ``delta_fun`` = our ms_standard (pymsprog's own EDSS delta gives +0.5 from 5.5, ours
  +1.0 up to 5.5);
* relapses: ours drops scores in [onset, onset + X] (``exclude_within_relapse_days``); pymsprog keeps
  them but does not use them as baseline, event or confirmation visits (``relapse_to_*``);
* fixed vs roving: ours roving moves the reference to the confirming score; pymsprog
  ``baseline='roving'``, ``proceed_from='firstconf'`` does the same;
* end of follow-up: ours uses scores up to follow-up end (treatment end); pymsprog uses every visit
  it is given.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import DATA, REPO, SPEC, ensure_registry

CONF_MONTHS = 6
CONF_DAYS = 183  # round(6 x 365.25 / 12), as endpointkit converts months to days
MATCHED = {"conf_days": CONF_DAYS, "conf_tol_days": [0, "inf"], "check_intermediate": True, "baseline": "fixed",
           "event": "multiple", "relapse_to_bl": 0, "relapse_to_event": 0, "relapse_to_conf": 0,
           "impute_last_visit": 0, "require_sust_days": 0}
PYMSPROG_DEFAULTS = {"conf_tol_days": [7, 730.5], "relapse_to_bl": 30, "relapse_to_conf": 30, "relapse_to_event": 0}


@dataclass(frozen=True)
class Case:
    """One pymsprog run and the endpointkit setting it is compared with."""

    name: str
    ours: str  # key of our per-patient outcomes
    visits: str  # which visits pymsprog is given
    delta: str = "ms_standard"
    relapses: bool = False
    kwargs: tuple = ()
    category: str = ""  # the definition difference this run isolates ("" = all matched)
    single: bool = True  # one setting differs from the matched run (used to attribute disagreements)


CASES = (
    Case("matched, fixed", "c6_fixed", "from_baseline"),
    Case("matched, roving", "c6_roving", "from_baseline", kwargs=(("baseline", "roving"), ("proceed_from", "firstconf"))),
    Case("matched, relapse exclusion 30 days", "c6_fixed_rex30", "from_baseline", relapses=True,
         kwargs=(("relapse_to_bl", 31), ("relapse_to_event", 31), ("relapse_to_conf", 31))),
    Case("pymsprog EDSS delta", "c6_fixed", "from_baseline", delta="builtin",
         category="threshold: pymsprog's EDSS delta is +0.5 from a reference of 5.5, ms_standard +1.0"),
    Case("pymsprog confirmation window", "c6_fixed", "from_baseline", kwargs=(("conf_tol_days", [7, 730.5]),),
         category="confirmation window: pymsprog takes a confirming visit from C - 7 days up to C + 730.5 days"),
    Case("pymsprog relapse influence", "c6_fixed", "from_baseline", relapses=True,
         kwargs=(("relapse_to_bl", 30), ("relapse_to_conf", 30)),
         category="relapse influence: pymsprog moves the baseline and skips confirmations < 30 days after a relapse"),
    Case("baseline = first visit from index - 365 d", "c6_fixed", "index_window",
         category="baseline: pymsprog's baseline is the first visit given, ours the last score before index"),
    Case("visits up to last follow-up", "c6_fixed", "to_last_followup",
         category="end of follow-up: pymsprog uses visits after treatment end, ours stops at follow-up end"),
    Case("pymsprog defaults (conf_days = 183)", "c6_fixed", "defaults", delta="builtin", relapses=True,
         kwargs=tuple(PYMSPROG_DEFAULTS.items()), single=False),
)


def _ours(cohort, ctx_factory, **settings):
    from endpointkit.plugins.edss_progression import EdssProgression
    from endpointkit.testing import params_for

    params = params_for(EdssProgression, **settings)
    times = []
    for _ in range(5):
        ctx = ctx_factory()  # a fresh cache: nothing memoised between repeats
        t = time.perf_counter()
        result = EdssProgression().compute(cohort, params, ctx)
        times.append(time.perf_counter() - t)
    return result.per_patient, min(times)


def _visits(cohort, frame: pd.DataFrame, which: str) -> pd.DataFrame:
    """Each included patient's scores in the window a case gives pymsprog."""
    edss = cohort.table("edss")[["patient_id", "date", "score"]]
    who = frame[frame["included"]][["patient_id", "baseline_date", "index_date", "followup_end"]]
    last = cohort.patients[["patient_id", "last_followup"]]
    merged = edss.merge(who, on="patient_id").merge(last, on="patient_id")
    start = merged["index_date"] - pd.Timedelta(days=365) if which in ("index_window", "defaults") else merged["baseline_date"]
    end = merged["last_followup"] if which in ("to_last_followup", "defaults") else merged["followup_end"]
    keep = (merged["date"] >= start) & (merged["date"] <= end)
    out = merged.loc[keep, ["patient_id", "date", "score"]].sort_values(["patient_id", "date"], kind="stable")
    out["date"] = out["date"].dt.strftime("%Y-%m-%d")
    return out


def msprog_python(explicit: str | None) -> str | None:
    """The interpreter that has pymsprog: --msprog-python, the bench venv, or this one."""
    candidates = [explicit] if explicit else [str(DATA / "pymsprog-venv" / "bin" / "python"), sys.executable]
    for python in candidates:
        if python and Path(python).exists() and subprocess.run(
                [python, "-c", "import pymsprog"], capture_output=True).returncode == 0:
            return python
    return None


def run(n_patients: int, python: str | None, log=print) -> dict:
    from endpointkit.cohort import build_cohort
    from endpointkit.engine import load_spec_data
    from endpointkit.spec import load_spec
    from endpointkit.testing import make_context

    folder, reused = ensure_registry(n_patients)
    spec = load_spec(SPEC, data=folder)
    data = load_spec_data(spec, spec.plugins)
    cohort = build_cohort(data, spec.cohort, spec.plugins.criteria)
    ours, seconds = {}, {}
    settings = {
        "default": {},
        "c6_fixed": {"confirmation_months": CONF_MONTHS},
        "c6_roving": {"confirmation_months": CONF_MONTHS, "reference": "roving"},
        "c6_fixed_rex30": {"confirmation_months": CONF_MONTHS, "exclude_within_relapse_days": 30},
    }
    for key, values in settings.items():
        ours[key], seconds[key] = _ours(cohort, make_context, **values)
    result = {"n_registry": n_patients, "registry": str(folder.relative_to(REPO)), "reused": reused,
              "ours_seconds": seconds, "included": int(ours["c6_fixed"]["included"].sum()), "cases": {}}
    if python is None:
        result["skipped"] = "pymsprog not installed (make bench installs it into benchmarks/data/pymsprog-venv)"
        return result

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        relapses = cohort.table("relapses")[["patient_id", "onset_date"]].rename(columns={"onset_date": "date"})
        relapses.assign(date=relapses["date"].dt.strftime("%Y-%m-%d")).to_csv(tmp / "relapses.csv", index=False)
        visit_files = {}
        for which, key in sorted({(c.visits, c.ours) for c in CASES}):
            frame = _visits(cohort, ours[key], which)  # from that setting's baseline, for its included patients
            path = tmp / f"visits_{which}_{key}.csv"
            frame.to_csv(path, index=False)
            visit_files[(which, key)] = (path, len(frame))
        runs = [{"name": c.name, "visits": str(visit_files[(c.visits, c.ours)][0]), "delta": c.delta,
                 "relapses": str(tmp / "relapses.csv") if c.relapses else None,
                 "kwargs": {**MATCHED, **dict(c.kwargs)}} for c in CASES]
        (tmp / "job.json").write_text(json.dumps({"runs": runs}))
        log(f"    pymsprog: {len(runs)} runs on {result['included']:,} patients ({python})")
        done = subprocess.run([python, str(Path(__file__).with_name("msprog_worker.py")), str(tmp / "job.json"),
                               str(tmp / "result.json")], capture_output=True, text=True)
        if done.returncode != 0:
            result["skipped"] = f"pymsprog failed: {done.stderr.strip()[-800:]}"
            return result
        theirs = json.loads((tmp / "result.json").read_text())
    result["versions"] = theirs["versions"]
    result["visits_rows"] = {f"{k[0]} ({k[1]})": v[1] for k, v in visit_files.items()}

    disagree_by_case = {}
    for case in CASES:
        got = theirs["runs"][case.name]
        mine = ours[case.ours]
        mine = mine[mine["included"]].set_index("patient_id")
        ids = mine.index
        cdw = np.array([got["patients"].get(p, {}).get("CDW", 0) > 0 for p in ids])
        cdi = np.array([got["patients"].get(p, {}).get("CDI", 0) > 0 for p in ids])
        progressed = mine["progressed"].to_numpy(dtype=bool)
        improved = mine["improved"].to_numpy(dtype=bool)
        their_improved = cdi & ~cdw
        differ = progressed != cdw
        disagree_by_case[case.name] = set(ids[differ])
        result["cases"][case.name] = {
            "ours": case.ours, "category": case.category, "seconds": got["seconds"], "patients": len(ids),
            "progressed_ours": int(progressed.sum()), "progressed_pymsprog": int(cdw.sum()),
            "agree_progression": float(np.mean(~differ)) if len(ids) else None,
            "disagree": int(differ.sum()), "ours_only": int((progressed & ~cdw).sum()), "pymsprog_only": int((~progressed & cdw).sum()),
            "agree_improvement": float(np.mean(improved == their_improved)) if len(ids) else None,
            "examples": sorted(ids[differ])[:5],
        }
        if case.category == "" and case.single:  # a matched run: look for the reason of each disagreement
            result["cases"][case.name]["explained"] = _explain_matched(cohort, mine, ids[differ], got)
        improvement_differs = ids[improved != their_improved]
        result["cases"][case.name]["improvement_disagree"] = len(improvement_differs)
        if case.relapses and len(improvement_differs):  # do they have scores ours drops near a relapse?
            near = _near_relapse(cohort, 30)
            result["cases"][case.name]["improvement_disagree_with_score_near_relapse"] = int(sum(p in near for p in improvement_differs))
        if case.delta == "builtin" and case.single:
            result["cases"][case.name]["disagree_with_reference_5_5"] = int((mine.loc[ids[differ], "baseline_score"] == 5.5).sum())
    # our default (no confirmation) against the matched confirmed run
    matched = theirs["runs"]["matched, fixed"]
    mine = ours["default"][ours["default"]["included"]].set_index("patient_id")
    cdw = np.array([matched["patients"].get(p, {}).get("CDW", 0) > 0 for p in mine.index])
    progressed = mine["progressed"].to_numpy(dtype=bool)
    result["default_vs_confirmed"] = {
        "patients": len(mine), "progressed_ours_default": int(progressed.sum()), "progressed_pymsprog_c6": int(cdw.sum()),
        "agree": float(np.mean(progressed == cdw)), "ours_only": int((progressed & ~cdw).sum()),
        "pymsprog_only": int((~progressed & cdw).sum()),
    }
    # attribute the disagreements of the all-defaults run to the single differences that reproduce them
    singles = {c.name: c.category for c in CASES if c.category and c.single}
    attribution: dict[str, int] = {}
    for pid in sorted(disagree_by_case["pymsprog defaults (conf_days = 183)"]):
        causes = [category for name, category in singles.items() if pid in disagree_by_case[name]]
        label = causes[0] if len(causes) == 1 else ("several of the above together" if causes else
                                                    "only the combination (no single difference reproduces it)")
        attribution[label] = attribution.get(label, 0) + 1
    result["defaults_attribution"] = attribution
    t = result["cases"]["matched, fixed"]
    result["speed_ratio"] = t["seconds"] / seconds["c6_fixed"]
    return result


def _near_relapse(cohort, days: int) -> set:
    """Patients with an EDSS score dated in [relapse onset, onset + days] (dropped by ours, kept by pymsprog)."""
    edss = cohort.table("edss")[["patient_id", "date"]]
    relapses = cohort.table("relapses")[["patient_id", "onset_date"]]
    pairs = edss.merge(relapses, on="patient_id")
    gap = (pairs["date"] - pairs["onset_date"]).dt.days
    return set(pairs.loc[(gap >= 0) & (gap <= days), "patient_id"])


def _explain_matched(cohort, mine: pd.DataFrame, ids, got) -> dict[str, int]:
    """Reasons for disagreements in a matched run (expected: none)."""
    reasons: dict[str, int] = {}
    for pid in ids:
        row = mine.loc[pid]
        their = got["patients"].get(pid)
        if their is None:
            reason = "pymsprog got no visits for the patient"
        elif bool(row["progressed"]) and their["CDW"] == 0:
            reason = "ours confirmed a worsening that pymsprog did not"
        else:
            reason = "pymsprog confirmed a worsening that ours did not"
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons

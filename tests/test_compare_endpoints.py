"""Between-group comparisons of every built-in endpoint (``by: group`` + ``compare: true``).

A simulated two-arm registry is analysed once through the command line; each comparison row of
results.csv is then recomputed here from the per-patient CSV files the run wrote, with SciPy,
statsmodels or numpy called directly (hand formulas where the method has a closed form), never
with endpointkit's own comparison code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from endpointkit.cli import main

MONTH_DAYS = 365.25 / 12
Z = stats.norm.ppf(0.975)
ENDPOINTS = [
    {"id": "patients", "plugin": "characteristics", "params": {"variables": ["antibody_status"]}},
    {"id": "arr", "plugin": "arr_change"},
    {"id": "arr_poisson", "plugin": "arr_change", "params": {"compare_model": "poisson_robust"}},
    {"id": "relapse_free", "plugin": "relapse_free", "params": {"method": "km", "landmarks_months": [12, 24]}},
    {"id": "edss", "plugin": "edss_progression"},
    {"id": "titer", "plugin": "titer_reduction"},
    {"id": "discontinuation", "plugin": "discontinuation", "params": {"method": "km", "landmarks_months": [12]}},
    {"id": "safety", "plugin": "safety"},
    {"id": "cdw", "plugin": "disability_events"},
    {"id": "milestone", "plugin": "disability_milestone", "params": {"milestone": 4.0}},
]


def _run(argv: list) -> None:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    assert status == 0


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The spec of a grouped, compared study on a simulated two-arm registry (arm B: fewer
    relapses, stops sooner)."""
    root = tmp_path_factory.mktemp("arms")
    _run(["simulate", "--patients", 600, "--seed", 5, "--set", "arms=true", "--set", "arm_b_rate_ratio=0.6",
          "--set", "arm_b_stop_hazard_ratio=1.5", "-o", root / "data"])
    spec = {"study": {"id": "arms", "title": "two arms"}, "data": {"source": "csv", "path": str(root / "data")},
            "cohort": {"index": {"treatment": "IVIG"}}, "by": "group", "compare": True, "endpoints": ENDPOINTS}
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def out(study) -> Path:
    folder = study.parent / "out"
    _run(["run", study, "-o", folder])
    return folder


def row(out: Path, endpoint: str, measure: str) -> pd.Series:
    results = pd.read_csv(out / "results.csv")
    found = results[(results["endpoint"] == endpoint) & (results["measure"] == measure) & (results["group"] == "B vs A")]
    assert len(found) == 1, (endpoint, measure)
    return found.iloc[0]


def patients(out: Path, endpoint: str) -> pd.DataFrame:
    frame = pd.read_csv(out / "per_patient" / f"{endpoint}.csv")
    if "included" in frame:
        frame = frame[frame["included"].astype(str) == "True"]
    return frame


def flag(values: pd.Series) -> np.ndarray:
    return values.astype(str).eq("True").to_numpy()


def wilson(x: int, n: int) -> tuple[float, float]:
    p, z2 = x / n, Z ** 2
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def newcombe(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float, float]:
    """Newcombe's method 10 (hybrid score) for p1 - p0, by hand."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson(x1, n1)
    l0, u0 = wilson(x0, n0)
    d = p1 - p0
    return d, d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def check_proportion(out: Path, endpoint: str, measure: str, success: np.ndarray, group: np.ndarray) -> None:
    got = row(out, endpoint, measure)
    x1, n1 = int(success[group == "B"].sum()), int((group == "B").sum())
    x0, n0 = int(success[group == "A"].sum()), int((group == "A").sum())
    d, low, high = newcombe(x1, n1, x0, n0)
    assert got["estimate"] == pytest.approx(d, abs=1e-12)
    assert (got["low"], got["high"]) == pytest.approx((low, high), abs=1e-9)
    table = np.array([[x1, x0], [n1 - x1, n0 - x0]])
    if stats.contingency.expected_freq(table).min() < 5:
        p = stats.fisher_exact(table).pvalue
    else:
        p = stats.chi2_contingency(table, correction=True).pvalue
    assert got["p_value"] == pytest.approx(p, rel=1e-9)
    assert got["n"] == n1 + n0


def check_mann_whitney(out: Path, endpoint: str, measure: str, values: np.ndarray, group: np.ndarray) -> None:
    got = row(out, endpoint, measure)
    b, a = values[(group == "B") & ~np.isnan(values)], values[(group == "A") & ~np.isnan(values)]
    assert got["p_value"] == pytest.approx(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue, rel=1e-9)
    assert got["estimate"] == pytest.approx(np.median(b) - np.median(a), abs=1e-12)


# --------------------------------------------------------------------------- characteristics


def test_characteristics_smd_match_the_formulas(out):
    frame = patients(out, "patients")
    group = frame["group"].to_numpy()
    for variable in ("age_at_index", "disease_duration_at_index"):
        b, a = frame.loc[group == "B", variable].dropna(), frame.loc[group == "A", variable].dropna()
        smd = (b.mean() - a.mean()) / math.sqrt((b.var(ddof=1) + a.var(ddof=1)) / 2)
        got = row(out, "patients", f"smd:{variable}")
        assert got["estimate"] == pytest.approx(smd, rel=1e-9)
        assert got["p_value"] == pytest.approx(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue, rel=1e-9)
    for variable, success in (("female", flag(frame["female"])),
                              ("antibody_status", frame["antibody_status"].eq("positive").to_numpy())):
        p1, p0 = success[group == "B"].mean(), success[group == "A"].mean()
        got = row(out, "patients", f"smd:{variable}")
        assert got["estimate"] == pytest.approx(abs(p1 - p0) / math.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2), rel=1e-9)
        table = pd.crosstab(success, group).to_numpy()
        assert got["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=True).pvalue, rel=1e-9)
    assert "SMD" in pd.read_csv(out / "results.csv").query("measure == 'smd:female'")["test"].iloc[0]


# --------------------------------------------------------------------------- arr_change


def _arr(out, endpoint):
    frame = patients(out, endpoint)
    is_b = frame["group"].eq("B").to_numpy(dtype=float)
    return frame, is_b


def test_post_rate_ratio_negative_binomial_matches_statsmodels_discrete_model(out):
    from statsmodels.discrete.discrete_model import NegativeBinomial

    frame, is_b = _arr(out, "arr")
    x = np.column_stack([np.ones(is_b.size), is_b])
    fit = NegativeBinomial(frame["post_relapses"].to_numpy(float), x, loglike_method="nb2",
                           offset=np.log(frame["post_days"].to_numpy(float) / 365.25)).fit(disp=0, maxiter=2000)
    got = row(out, "arr", "post_rate_ratio")
    assert got["estimate"] == pytest.approx(math.exp(fit.params[1]), rel=1e-4)
    low, high = np.exp(fit.conf_int()[1])
    assert (got["low"], got["high"]) == pytest.approx((low, high), rel=2e-3)  # joint (beta, alpha) vs alpha fixed
    assert got["n"] == len(frame)
    assert got["estimate"] < 1 and "negative binomial" in got["test"]


def test_post_rate_ratio_poisson_robust_is_the_crude_ratio_with_a_hand_sandwich(out):
    frame, is_b = _arr(out, "arr_poisson")
    y, t = frame["post_relapses"].to_numpy(float), frame["post_days"].to_numpy(float) / 365.25
    b, a = is_b == 1, is_b == 0
    rate_b, rate_a = y[b].sum() / t[b].sum(), y[a].sum() / t[a].sum()
    # HC0 sandwich of the saturated Poisson model: var log rate = sum (y - mu)^2 / (sum mu)^2 per group
    var = sum(((y[g] - r * t[g]) ** 2).sum() / (r * t[g]).sum() ** 2 for g, r in ((b, rate_b), (a, rate_a)))
    got = row(out, "arr_poisson", "post_rate_ratio")
    rr = rate_b / rate_a
    assert got["estimate"] == pytest.approx(rr, rel=1e-8)
    assert (got["low"], got["high"]) == pytest.approx((rr * math.exp(-Z * math.sqrt(var)), rr * math.exp(Z * math.sqrt(var))), rel=1e-6)
    assert got["p_value"] == pytest.approx(2 * stats.norm.sf(abs(math.log(rr)) / math.sqrt(var)), rel=1e-5)


def _long(frame: pd.DataFrame, is_b: np.ndarray):
    n = len(frame)
    y = np.r_[frame["pre_relapses"].to_numpy(float), frame["post_relapses"].to_numpy(float)]
    t = np.r_[frame["pre_days"].to_numpy(float), frame["post_days"].to_numpy(float)] / 365.25
    period, arm, patient = np.repeat([0.0, 1.0], n), np.r_[is_b, is_b], np.r_[np.arange(n), np.arange(n)]
    order = np.argsort(patient, kind="stable")
    x = np.column_stack([np.ones(2 * n), period, arm, period * arm])
    return y[order], t[order], x[order], patient[order]


def test_ratio_of_rate_ratios_poisson_gee_matches_statsmodels_gee(out):
    import statsmodels.api as sm

    frame, is_b = _arr(out, "arr_poisson")
    y, t, x, patient = _long(frame, is_b)
    fit = sm.GEE(y, x, groups=patient, family=sm.families.Poisson(), cov_struct=sm.cov_struct.Exchangeable(),
                 offset=np.log(t)).fit()
    got = row(out, "arr_poisson", "ratio_of_rate_ratios")
    assert got["estimate"] == pytest.approx(math.exp(fit.params[3]), rel=1e-6)
    assert (got["low"], got["high"]) == pytest.approx(tuple(np.exp(fit.conf_int()[3])), rel=1e-6)


def test_ratio_of_rate_ratios_negative_binomial_matches_the_discrete_model(out):
    from statsmodels.discrete.discrete_model import NegativeBinomial

    frame, is_b = _arr(out, "arr")
    y, t, x, _ = _long(frame, is_b)
    fit = NegativeBinomial(y, x, loglike_method="nb2", offset=np.log(t)).fit(disp=0, maxiter=5000)
    got = row(out, "arr", "ratio_of_rate_ratios")
    assert got["estimate"] == pytest.approx(math.exp(fit.params[3]), rel=1e-4)
    assert got["low"] < got["estimate"] < got["high"] and "clustered by patient" in got["test"]


# --------------------------------------------------------------------------- time to event


def _km_at(time: np.ndarray, event: np.ndarray, at: float) -> tuple[float, float]:
    """KM survival (scipy.stats.ecdf) and a hand Greenwood SE at time ``at``."""
    s = stats.ecdf(stats.CensoredData(uncensored=time[event], right=time[~event])).sf.evaluate(at)
    times = np.unique(time[event & (time <= at)])
    greenwood = sum(((time == u) & event).sum() / ((time >= u).sum() * ((time >= u).sum() - ((time == u) & event).sum()))
                    for u in times)
    return float(s), float(s) * math.sqrt(greenwood)


@pytest.mark.parametrize(("endpoint", "landmarks"), [("relapse_free", (12, 24)), ("discontinuation", (12,))])
def test_survival_comparisons_match_scipy_and_phreg(out, endpoint, landmarks):
    from statsmodels.duration.hazard_regression import PHReg

    frame = patients(out, endpoint)
    time, event = frame["km_time_months"].to_numpy(float), flag(frame["km_event"])
    b = frame["group"].eq("B").to_numpy()
    logrank = stats.logrank(stats.CensoredData(uncensored=time[b & event], right=time[b & ~event]),
                            stats.CensoredData(uncensored=time[~b & event], right=time[~b & ~event]))
    got = row(out, endpoint, "logrank")
    assert got["estimate"] == pytest.approx(logrank.statistic ** 2, rel=1e-6)
    assert got["p_value"] == pytest.approx(logrank.pvalue, rel=1e-6)
    fit = PHReg(time, b.astype(float)[:, None], status=event.astype(float), ties="efron").fit()
    got = row(out, endpoint, "hazard_ratio")
    assert got["estimate"] == pytest.approx(math.exp(fit.params[0]), rel=1e-6)
    assert (got["low"], got["high"]) == pytest.approx(tuple(np.exp(fit.conf_int()[0])), rel=1e-6)
    for m in landmarks:
        at = round(m * MONTH_DAYS) / MONTH_DAYS
        (s1, se1), (s0, se0) = _km_at(time[b], event[b], at), _km_at(time[~b], event[~b], at)
        se = math.hypot(se1, se0)
        got = row(out, endpoint, f"km_difference_{m}m")
        assert got["estimate"] == pytest.approx(s1 - s0, abs=1e-12)
        assert (got["low"], got["high"]) == pytest.approx((s1 - s0 - Z * se, s1 - s0 + Z * se), abs=1e-9)


def test_discontinuation_hazard_ratio_points_the_simulated_way(out):
    truth = json.loads((out.parent / "data" / "truth.json").read_text())
    assert truth["arms"]["true_values"]["stop_hazard_ratio_b_vs_a"] == 1.5
    assert row(out, "discontinuation", "hazard_ratio")["low"] > 1  # B stops sooner, and 600 patients show it


# --------------------------------------------------------------------------- proportions and changes


def test_edss_differences_and_mann_whitney(out):
    frame = patients(out, "edss")
    group = frame["group"].to_numpy()
    for measure in ("no_progression", "improved"):
        check_proportion(out, "edss", f"{measure}_difference", flag(frame[measure]), group)
    check_mann_whitney(out, "edss", "change_mann_whitney", frame["change"].to_numpy(float), group)


def test_titer_differences_and_mann_whitney(out):
    frame = pd.read_csv(out / "per_patient" / "titer.csv")
    eligible = frame["became_negative"].notna().to_numpy()
    check_proportion(out, "titer", "became_negative_difference", flag(frame["became_negative"])[eligible],
                     frame["group"].to_numpy()[eligible])
    pair = flag(frame["pair"])
    check_mann_whitney(out, "titer", "log2_fold_change_mann_whitney", frame.loc[pair, "log2_fold_change"].to_numpy(float),
                       frame["group"].to_numpy()[pair])


def test_safety_differences(out):
    frame = patients(out, "safety")
    for measure in ("any_ae", "severe_ae", "severe_ae_led_to_discontinuation"):
        check_proportion(out, "safety", f"{measure}_difference", flag(frame[measure]), frame["group"].to_numpy())


def test_disability_differences_count_each_patient_once(out):
    frame = patients(out, "cdw")
    by_patient = frame.assign(hit=frame["event_type"].eq("cdw") | frame["cdw_type"].eq("cdw")).groupby("patient_id").agg(
        hit=("hit", "any"), group=("group", "first"))
    check_proportion(out, "cdw", "cdw_difference", by_patient["hit"].to_numpy(), by_patient["group"].to_numpy())
    milestone = patients(out, "milestone")
    check_proportion(out, "milestone", "milestone_difference", flag(milestone["reached"]), milestone["group"].to_numpy())


def test_every_endpoint_compares_and_labels_its_rows(out):
    results = pd.read_csv(out / "results.csv")
    compared = results[results["group"] == "B vs A"]
    assert set(compared["endpoint"]) == {e["id"] for e in ENDPOINTS}
    assert compared["test"].notna().all()
    table = (out / "table.md").read_text()
    for label in ("Post-index ARR, rate ratio (negative binomial, 95% CI)", "Time to first relapse, hazard ratio (Cox, 95% CI)",
                  "Relapse-free at 12 months, KM difference (95% CI)", "Age at index, SMD"):
        assert label in table


# --------------------------------------------------------------------------- partitions


def _files(folder: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            content = path.read_bytes()
            if path.name == "results.json":
                payload = json.loads(content)
                payload["provenance"].pop("run", None)  # the command line differs
                content = json.dumps(payload, sort_keys=True).encode()
            out[str(path.relative_to(folder))] = content
    return out


def test_grouped_compared_run_is_byte_identical_for_1_and_3_partitions(study, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    outputs = []
    for parts in (1, 3):
        _run(["run", study, "-o", tmp_path / f"out{parts}", "--partitions", parts])
        outputs.append(_files(tmp_path / f"out{parts}"))
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name


def test_a_run_without_compare_does_not_import_statsmodels(tmp_path):
    """The comparisons import statsmodels (about a second): only a run that compares pays it."""
    import subprocess
    import sys

    from tests.paths import DEMO_SPEC

    code = ("import sys; from endpointkit.cli import main; "
            f"status = main(['run', {str(DEMO_SPEC)!r}, '-o', {str(tmp_path / 'out')!r}, '--quiet']); "
            "assert status == 0, status; assert 'statsmodels' not in sys.modules, 'statsmodels imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""95% CI coverage of the between-group comparisons on simulated two-arm cohorts with known ratios.

``python benchmarks/group_coverage.py [--cohorts 1000] [--patients 300]`` simulates that many
cohorts with the two-arm design of core/simulate.py (``arms=true``: arm B's relapse rate on the
index treatment x ``arm_b_rate_ratio``, its hazard of stopping x ``arm_b_stop_hazard_ratio``; the
default gamma frailty, shape 2), one seed per cohort, and scores how often each 95% CI of
endpointkit.comparisons covers the true value:

* ``rate_ratio_rows`` (negative binomial GLM, the default, and Poisson with HC0 errors) on each
  patient's post-window relapses and post-window person-years (index to treatment end): true value
  ``arm_b_rate_ratio``; the NB2 model is correctly specified (gamma frailty = NB2 counts);
* ``ratio_of_rate_ratios_rows`` (Poisson GEE) on pre- and post-window relapses and person-years:
  the pre-window rate is the same in both arms, so the true ratio of the arms' post/pre ratios is
  ``arm_b_rate_ratio`` too;
* ``hazard_ratio_rows`` (Cox, Efron ties) on the time from index to stopping the index treatment
  (censored at last follow-up): true value ``arm_b_stop_hazard_ratio``.

The inputs are the simulator's per-patient process counts and windows (``Simulation.patients``),
not counts re-derived from the tables by the cohort pipeline: the benchmark checks the statistics,
and tests/test_simulate.py checks that the tables carry the same ratios. Writes
benchmarks/COMPARISONS_RESULTS.md (benchmarks/run.py rewrites RESULTS.md, so this has its own file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
YEAR = 365.25
MONTH = YEAR / 12
TRUE = {"arm_b_rate_ratio": 0.6, "arm_b_stop_hazard_ratio": 1.5}
LEVELS = ["A", "B"]


def _methods():
    from endpointkit.comparisons import (
        hazard_ratio_rows,
        rate_ratio_rows,
        ratio_of_rate_ratios_rows,
    )

    def nb(h):
        return rate_ratio_rows(h["post_relapses"], h["post_days"] / YEAR, h["arm"], LEVELS)

    def poisson(h):
        return rate_ratio_rows(h["post_relapses"], h["post_days"] / YEAR, h["arm"], LEVELS, model="poisson_robust")

    def gee(h):
        return ratio_of_rate_ratios_rows(h["pre_relapses"], h["pre_days"] / YEAR, h["post_relapses"],
                                         h["post_days"] / YEAR, h["arm"], LEVELS)

    def cox(h):
        return hazard_ratio_rows(h["post_days"] / MONTH, h["stopped"], h["arm"], LEVELS)

    return {
        "relapse rate ratio, negative binomial GLM (default)": (nb, "arm_b_rate_ratio"),
        "relapse rate ratio, Poisson GLM + HC0 errors": (poisson, "arm_b_rate_ratio"),
        "ratio of post/pre rate ratios, Poisson GEE (exchangeable)": (gee, "arm_b_rate_ratio"),
        "hazard ratio of stopping, Cox (Efron ties)": (cox, "arm_b_stop_hazard_ratio"),
    }


def run(cohorts: int = 1000, patients: int = 300, first_seed: int = 1, log=print) -> dict:
    from endpointkit.simulate import make_parameters, simulate_registry

    params = make_parameters({"arms": True, **TRUE})
    methods = _methods()
    scores = {name: {"covered": 0, "blank": 0, "log_estimates": [], "log_widths": [], "test": None} for name in methods}
    started = time.perf_counter()
    for i in range(cohorts):
        hidden = simulate_registry(patients, first_seed + i, params).patients
        for name, (method, truth_name) in methods.items():
            (row,) = method(hidden)
            score = scores[name]
            if row.estimate is None:
                score["blank"] += 1
                continue
            score["test"] = score["test"] or row.test
            score["covered"] += int(row.low <= TRUE[truth_name] <= row.high)
            score["log_estimates"].append(math.log(row.estimate))
            score["log_widths"].append(math.log(row.high) - math.log(row.low))
        if (i + 1) % 100 == 0:
            log(f"  {i + 1} cohorts, {time.perf_counter() - started:.0f} s")
    results = {}
    for name, (_, truth_name) in methods.items():
        score = scores[name]
        scored = cohorts - score["blank"]
        coverage = score["covered"] / scored if scored else math.nan
        estimates = np.array(score["log_estimates"])
        results[name] = {
            "truth": TRUE[truth_name], "coverage": coverage,
            "mc_half_width": 1.96 * math.sqrt(coverage * (1 - coverage) / scored) if scored else math.nan,
            "scored": scored, "blank": score["blank"],
            "geometric_mean": float(np.exp(estimates.mean())) if scored else math.nan,
            "bias_log": float(estimates.mean() - math.log(TRUE[truth_name])) if scored else math.nan,
            "sd_log": float(estimates.std(ddof=1)) if scored > 1 else math.nan,
            "median_log_width": float(np.median(score["log_widths"])) if scored else math.nan,
            "test": score["test"],
        }
    return {"cohorts": cohorts, "patients": patients, "first_seed": first_seed,
            "seconds": time.perf_counter() - started, "results": results}


def markdown(summary: dict) -> str:
    import numpy
    import pandas
    import scipy
    import statsmodels

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Between-group comparisons: coverage",
        "",
        f"Written by `python benchmarks/group_coverage.py --cohorts {summary['cohorts']} --patients {summary['patients']}` "
        f"on {now} in {summary['seconds']:.0f} s: Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"pandas {pandas.__version__}, scipy {scipy.__version__}, statsmodels {statsmodels.__version__}.",
        "",
        f"{summary['cohorts']:,} simulated two-arm cohorts of {summary['patients']} patients (seeds "
        f"{summary['first_seed']}-{summary['first_seed'] + summary['cohorts'] - 1}; `endpointkit simulate --set arms=true "
        f"--set arm_b_rate_ratio={TRUE['arm_b_rate_ratio']} --set arm_b_stop_hazard_ratio={TRUE['arm_b_stop_hazard_ratio']}`, "
        "everything else at its default: gamma frailty of shape 2, half the patients in arm B). Each row is one "
        "function of `endpointkit.comparisons` (arm B vs arm A); coverage = share of cohorts whose 95% CI holds the "
        "true value, with its Monte Carlo 95% limits; target 93-97%. Inputs are the simulator's per-patient "
        "process counts and windows (see the script's docstring).",
        "",
        "| comparison | true value | coverage (MC 95% limits) | verdict | geometric mean estimate | bias of log estimate | SD of log estimate | median CI width (log) | blank rows |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["results"].items():
        verdict = "met" if 0.93 <= r["coverage"] <= 0.97 else "**missed**"
        lines.append(
            f"| {name} | {r['truth']:g} | {100 * r['coverage']:.1f}% ± {100 * r['mc_half_width']:.1f}% | {verdict} | "
            f"{r['geometric_mean']:.3f} | {r['bias_log']:+.3f} | {r['sd_log']:.3f} | {r['median_log_width']:.3f} | {r['blank']} |"
        )
    lines += ["", "Methods as recorded in each row's `test` (from the last cohort scored):", ""]
    lines += [f"* {name}: {r['test']}" for name, r in summary["results"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path, default=BENCH / "COMPARISONS_RESULTS.md")
    args = parser.parse_args(argv)
    summary = run(args.cohorts, args.patients, args.first_seed, log=lambda m: print(m, file=sys.stderr))
    text = markdown(summary)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

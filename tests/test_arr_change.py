"""arr_change: per-patient ARR in pre and post windows, summaries, paired test, responders."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from endpointkit.plugins.arr_change import ArrChange
from endpointkit.testing import make_cohort, make_context, params_for, row

# Two patients, year = 365.25 days.
# p1: onset 2010-01-01, IVIG 2014-01-01 .. 2016-01-01 (end_date), relapses 2010-01-01 (onset attack),
#     2012-01-01, 2013-11-20, 2014-01-01 (index day: pre), 2015-01-01 (post)
#     pre window 2010-01-01..2014-01-01 = 1461 days, 4 relapses -> ARR 4 / (1461/365.25) = 1.0
#     post window (2014-01-01, 2016-01-01] = 730 days, 1 relapse -> 1 / (730/365.25) = 0.500342
# p2: onset 2012-01-01, IVIG 2014-01-01 .. 2015-01-01, relapses 2012-01-01, 2013-07-01
#     pre = 731 days, 2 relapses -> 2 / (731/365.25) = 0.999316; post 365 days, 0 relapses -> 0
PATIENTS = [
    {"patient_id": "p1", "onset_date": "2010-01-01", "last_followup_date": "2018-01-01"},
    {"patient_id": "p2", "onset_date": "2012-01-01", "last_followup_date": "2018-01-01"},
]
TREATMENTS = [
    {"patient_id": "p1", "treatment": "IVIG", "start_date": "2014-01-01", "end_date": "2016-01-01"},
    {"patient_id": "p2", "treatment": "IVIG", "start_date": "2014-01-01", "end_date": "2015-01-01"},
    {"patient_id": "p1", "treatment": "azathioprine", "start_date": "2013-01-01"},
    {"patient_id": "p2", "treatment": "azathioprine", "start_date": "2013-07-01"},
]
RELAPSES = [
    {"patient_id": "p1", "onset_date": d} for d in ("2010-01-01", "2012-01-01", "2013-11-20", "2014-01-01", "2015-01-01")
] + [{"patient_id": "p2", "onset_date": d} for d in ("2012-01-01", "2013-07-01")]


def compute(patients=PATIENTS, treatments=TREATMENTS, relapses=RELAPSES, ctx=None, **params):
    cohort = make_cohort(patients=patients, treatments=treatments, relapses=relapses)
    return ArrChange().compute(cohort, params_for(ArrChange, **params), ctx or make_context())


def test_since_onset_counts_the_onset_attack_and_the_index_day_relapse_as_pre():
    pp = compute().per_patient.set_index("patient_id")
    assert pp.loc["p1", ["pre_days", "pre_relapses", "post_days", "post_relapses"]].tolist() == [1461, 4, 730, 1]
    assert pp.loc["p1", "pre_arr"] == pytest.approx(4 / (1461 / 365.25))
    assert pp.loc["p1", "post_arr"] == pytest.approx(1 / (730 / 365.25))
    assert pp.loc["p2", "pre_arr"] == pytest.approx(2 / (731 / 365.25))
    assert pp.loc["p2", "post_arr"] == 0


def test_median_iqr_rows_use_the_quantile_method():
    result = compute()
    pre = np.array([4 / (1461 / 365.25), 2 / (731 / 365.25)])
    r = row(result, "pre")
    assert (r.stat, r.interval, r.n) == ("median", "IQR", 2)
    assert (r.low, r.estimate, r.high) == pytest.approx(tuple(np.quantile(pre, [0.25, 0.5, 0.75])))
    weibull = row(compute(ctx=make_context("weibull")), "pre")
    assert (weibull.low, weibull.high) == pytest.approx(tuple(np.quantile(pre, [0.25, 0.75], method="weibull")))


def test_since_onset_excl_first_drops_each_patients_earliest_relapse():
    pp = compute(pre_window="since_onset_excl_first").per_patient.set_index("patient_id")
    assert pp["pre_relapses"].tolist() == [3, 1]
    assert pp["pre_days"].tolist() == [1461, 731]  # the window still starts at onset


@pytest.mark.parametrize(("window", "days"), [("last_12m", 365), ("last_24m", 730), ("18 months", 548)])
def test_lookback_windows_are_cut_at_onset(window, days):
    pp = compute(pre_window=window).per_patient.set_index("patient_id")
    # p1: onset 4 years before index, so the full lookback; p2: onset 731 days before index
    assert pp.loc["p1", "pre_days"] == days
    assert pp.loc["p2", "pre_days"] == min(days, 731)
    # p1 lookback 365 days: 2013-11-20 and the index-day relapse; 730 days adds 2012-01-01? no (731 days before)
    assert pp.loc["p1", "pre_relapses"] == 2


def test_since_prior_treatment_starts_at_the_background_drug():
    pp = compute(pre_window="since_prior_treatment", prior_treatment="Azathioprine").per_patient.set_index("patient_id")
    # p1: 2013-01-01 .. 2014-01-01 = 365 days, relapses 2013-11-20 and 2014-01-01
    assert pp.loc["p1", ["pre_days", "pre_relapses"]].tolist() == [365, 2]
    # p2: 2013-07-01 .. 2014-01-01 = 184 days, relapse 2013-07-01 on the window start counts
    assert pp.loc["p2", ["pre_days", "pre_relapses"]].tolist() == [184, 1]


def test_exclude_index_relapse_days_removes_recent_relapses_from_the_numerator_only():
    pp = compute(exclude_index_relapse_days=60).per_patient.set_index("patient_id")
    # p1 loses 2013-11-20 (42 days before) and the index-day relapse (0 days); window unchanged
    assert pp.loc["p1", ["pre_relapses", "pre_days"]].tolist() == [2, 1461]


def test_post_lag_leaves_numerator_and_person_time():
    pp = compute(post_lag_days=400).per_patient.set_index("patient_id")
    # p1: post (2015-02-05, 2016-01-01] = 330 days; the 2015-01-01 relapse falls in the lag
    assert pp.loc["p1", ["post_days", "post_relapses"]].tolist() == [330, 0]
    # p2: 365 - 400 < 0 days -> excluded from the endpoint and counted
    result = compute(post_lag_days=400)
    assert row(result, "pre").n == 1
    assert sum(len(v) for v in result.excluded.values()) == 1


def test_min_pre_and_post_days_exclude_and_count():
    result = compute(min_pre_days=1000)
    assert row(result, "pre").n == 1
    assert list(result.excluded.values()) == [["p2"]]
    assert not compute(min_post_days=400).per_patient.set_index("patient_id").loc["p2", "included"]


def test_mean_sd_and_median_range_summaries():
    pre = np.array([4 / (1461 / 365.25), 2 / (731 / 365.25)])
    mean = row(compute(summary="mean_sd"), "pre")
    assert (mean.stat, mean.interval, mean.estimate, mean.low) == ("mean", "SD", pytest.approx(pre.mean()), pytest.approx(pre.std(ddof=1)))
    ranged = row(compute(summary="median_range"), "pre")
    assert (ranged.interval, ranged.low, ranged.high) == ("range", pytest.approx(pre.min()), pytest.approx(pre.max()))


def test_crude_summary_is_sum_of_relapses_over_person_years_with_exact_poisson_ci():
    result = compute(summary="crude")
    years = (1461 + 731) / 365.25
    r = row(result, "pre")
    assert r.estimate == pytest.approx(6 / years)
    assert r.low == pytest.approx(stats.chi2.ppf(0.025, 12) / 2 / years)
    assert r.high == pytest.approx(stats.chi2.ppf(0.975, 14) / 2 / years)
    post = row(result, "post")
    post_years = (730 + 365) / 365.25
    assert post.estimate == pytest.approx(1 / post_years)
    ratio = row(result, "rate_ratio")
    assert ratio.estimate == pytest.approx((1 / post_years) / (6 / years))
    ci = stats.binomtest(1, 7).proportion_ci(method="exact")
    assert ratio.low == pytest.approx(ci.low / (1 - ci.low) * years / post_years)


@pytest.mark.parametrize(("responder", "expected"), [("reduced", 2), ("halved", 1), ("relapse_free", 1)])
def test_responder_definitions(responder, expected):
    # p1: 1.0 -> 0.50034 (reduced, not halved: 0.50034 > 0.5); p2: 0.9993 -> 0 (reduced, halved, relapse free)
    r = row(compute(responder=responder), "responders")
    assert (r.count, r.n) == (expected, 2)


def test_paired_test_is_scipy_wilcoxon_on_post_minus_pre():
    # five patients with distinct differences -> exact test
    patients, treatments, relapses = [], [], []
    for i, (pre_n, post_n) in enumerate([(2, 0), (3, 1), (4, 1), (5, 3), (6, 0)]):
        pid = f"q{i}"
        patients.append({"patient_id": pid, "onset_date": "2010-01-01"})
        treatments.append({"patient_id": pid, "treatment": "IVIG", "start_date": "2014-01-01", "end_date": "2016-01-01"})
        relapses += [{"patient_id": pid, "onset_date": f"{2010 + k}-0{1 + i}-01"} for k in range(pre_n) if 2010 + k < 2014]
        relapses += [{"patient_id": pid, "onset_date": f"2014-0{2 + k}-0{1 + i}"} for k in range(post_n)]
    result = compute(patients, treatments, relapses)
    pp = result.per_patient
    expected = stats.wilcoxon(pp["post_arr"] - pp["pre_arr"], zero_method="wilcox", correction=False, method="exact")
    r = row(result, "paired_test")
    assert (r.estimate, r.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert "-> exact" in r.test and "5 pairs, 0 zero differences" in r.test


def test_since_prior_treatment_needs_the_treatment_name():
    from endpointkit.errors import SpecError

    with pytest.raises(SpecError, match="params.prior_treatment"):
        params_for(ArrChange, pre_window="since_prior_treatment")


# Five patients for the robust rate-ratio CI, IVIG from 2014-01-01 (since_onset: the onset attack is pre).
#   id  onset       IVIG end    pre days, relapses   post days, relapses
#   r0  2010-01-01  2016-01-01  1461, 2              730, 2
#   r1  2012-01-01  2015-01-01   731, 4              365, 0
#   r2  2013-01-01  2017-01-01   365, 1             1096, 1
#   r3  2008-01-01  2014-07-01  2192, 6              181, 1
#   r4  2011-01-01  2018-01-01  1096, 2             1461, 2
ROBUST_COHORT = {
    "r0": ("2010-01-01", "2016-01-01", ["2012-06-01"], ["2014-06-01", "2015-06-01"]),
    "r1": ("2012-01-01", "2015-01-01", ["2012-08-01", "2013-03-01", "2013-10-01"], []),
    "r2": ("2013-01-01", "2017-01-01", [], ["2015-03-01"]),
    "r3": ("2008-01-01", "2014-07-01", ["2009-01-01", "2010-01-01", "2011-01-01", "2012-01-01", "2013-01-01"], ["2014-03-01"]),
    "r4": ("2011-01-01", "2018-01-01", ["2011-06-01"], ["2016-01-01", "2017-01-01"]),
}
ROBUST_COUNTS = {  # pre days, pre relapses, post days, post relapses (worked out by hand above)
    "r0": (1461, 2, 730, 2), "r1": (731, 4, 365, 0), "r2": (365, 1, 1096, 1), "r3": (2192, 6, 181, 1), "r4": (1096, 2, 1461, 2),
}


def robust_compute(cohort=ROBUST_COHORT, **params):
    patients, treatments, relapses = [], [], []
    for pid, (onset, end, pre, post) in cohort.items():
        patients.append({"patient_id": pid, "onset_date": onset, "last_followup_date": "2018-06-01"})
        treatments.append({"patient_id": pid, "treatment": "IVIG", "start_date": "2014-01-01", "end_date": end})
        relapses += [{"patient_id": pid, "onset_date": d} for d in [onset, *pre, *post]]
    return compute(patients, treatments, relapses, summary="crude", **params)


def gee_poisson_period_sandwich(counts):
    """Reference: Poisson GEE, log E[y] = b0 + b1 * post + log(days), independence working correlation,
    fitted by Newton-Raphson on the long data (two rows per patient); sandwich A^-1 B A^-1 with the
    meat B summed over each patient's two score contributions."""
    y = np.array([[c[1], c[3]] for c in counts], dtype=float)  # patient x (pre, post)
    days = np.array([[c[0], c[2]] for c in counts], dtype=float)
    x = np.array([[1.0, 0.0], [1.0, 1.0]])  # design rows: pre, post
    beta = np.zeros(2)
    for _ in range(100):
        mu = days * np.exp(x @ beta)  # patient x period
        score = np.einsum("ij,jk->k", y - mu, x)
        bread = np.einsum("ij,jk,jl->kl", mu, x, x)
        step = np.linalg.solve(bread, score)
        beta += step
        if np.max(np.abs(step)) < 1e-13:
            break
    mu = days * np.exp(x @ beta)
    bread = np.einsum("ij,jk,jl->kl", mu, x, x)
    per_patient_score = (y - mu) @ x  # patient x parameter
    meat = per_patient_score.T @ per_patient_score
    inverse = np.linalg.inv(bread)
    return beta, inverse @ meat @ inverse


def test_robust_rate_ratio_ci_is_the_patient_clustered_sandwich_of_a_poisson_gee():
    result = robust_compute(rate_ratio_ci="robust")
    pp = result.per_patient.set_index("patient_id")
    counts = [ROBUST_COUNTS[pid] for pid in pp.index]
    assert pp[["pre_days", "pre_relapses", "post_days", "post_relapses"]].to_numpy().tolist() == [list(c) for c in counts]
    beta, cov = gee_poisson_period_sandwich(counts)
    n = 5
    se = np.sqrt(n / (n - 1) * cov[1, 1])
    half = stats.t.ppf(0.975, n - 1) * se
    r = row(result, "rate_ratio")
    # the GEE estimate is the crude ratio (15 pre relapses in 5845 days, 6 post in 3833 days)
    assert r.estimate == pytest.approx(np.exp(beta[1]), rel=1e-12)
    assert r.estimate == pytest.approx((6 / 3833) / (15 / 5845), rel=1e-12)
    assert (r.low, r.high) == pytest.approx((np.exp(beta[1] - half), np.exp(beta[1] + half)), rel=1e-10)
    assert (r.n, r.interval) == (5, "95% CI")
    assert r.test.startswith("patient-clustered sandwich") and "n/(n-1) correction, t quantile with n-1 df" in r.test
    assert any("patient-clustered sandwich" in note for note in result.notes)


def test_robust_ci_differs_from_the_exact_default_only_in_the_rate_ratio_interval():
    exact, robust = robust_compute(), robust_compute(rate_ratio_ci="robust")
    e, r = row(exact, "rate_ratio"), row(robust, "rate_ratio")
    assert e.test.startswith("exact conditional binomial")
    assert e.estimate == r.estimate
    assert (e.low, e.high) != pytest.approx((r.low, r.high))
    for measure in ("pre", "post", "paired_test", "responders"):
        assert row(exact, measure) == row(robust, measure)
    assert any("exact conditional binomial" in note for note in exact.notes)


def test_robust_rate_ratio_without_post_relapses_has_no_interval():
    no_post = {pid: (onset, end, pre, []) for pid, (onset, end, pre, _) in ROBUST_COHORT.items()}
    r = row(robust_compute(no_post, rate_ratio_ci="robust"), "rate_ratio")
    assert (r.estimate, r.low, r.high) == (0.0, None, None)
    assert "not estimable" in r.test


def test_rate_ratio_ci_only_with_crude_and_validated():
    from endpointkit.errors import SpecError

    result = compute(summary="median_iqr", rate_ratio_ci="robust")
    assert "rate_ratio" not in [r.measure for r in result.rows]
    with pytest.raises(SpecError, match="expected one of exact, robust"):
        params_for(ArrChange, rate_ratio_ci="sandwich")


# --------------------------------------------------------------------------- exact ties


def one_window_patients(windows):
    """Tables for patients given as (pre relapses, pre days, post relapses, post days).

    Index 2020-01-01 for everyone; onset = index - pre days; relapses spread 30+ days apart inside
    each window (so none merge); follow-up ends with the IVIG course at index + post days.
    """
    import datetime as dt

    index = dt.date(2020, 1, 1)
    patients, treatments, relapses = [], [], []
    for i, (pre_c, pre_d, post_c, post_d) in enumerate(windows):
        pid = f"t{i}"
        onset, end = index - dt.timedelta(days=pre_d), index + dt.timedelta(days=post_d)
        patients.append({"patient_id": pid, "onset_date": onset.isoformat(), "last_followup_date": end.isoformat()})
        treatments.append({"patient_id": pid, "treatment": "IVIG", "start_date": index.isoformat(), "end_date": end.isoformat()})
        relapses += [{"patient_id": pid, "onset_date": (onset + dt.timedelta(days=k * (pre_d // pre_c))).isoformat()} for k in range(pre_c)]
        relapses += [{"patient_id": pid, "onset_date": (end - dt.timedelta(days=k * (post_d // post_c))).isoformat()} for k in range(post_c)]
    return {"patients": patients, "treatments": treatments, "relapses": relapses}


def test_an_unchanged_rate_is_an_exact_tie_not_a_responder_or_a_difference():
    # t0: 1 relapse in 366 days before, 3 in 1,098 days after: both rates are 365.25/366 exactly,
    #     although 1 / (366/365.25) and 3 / (1098/365.25) differ in the last bit as doubles.
    # t1: 2 in 730 days before, 1 in 730 days after: the rate halves (difference -365.25/730 = -0.5003...).
    assert 1 / (366 / 365.25) != 3 / (1098 / 365.25)  # the floating-point trap this test is about
    result = compute(**one_window_patients([(1, 366, 3, 1098), (2, 730, 1, 730)]))
    pp = result.per_patient.set_index("patient_id")
    assert pp.loc["t0", "arr_difference"] == 0.0
    assert pp.loc["t1", "arr_difference"] == -365.25 / 730
    assert row(result, "responders").count == 1  # t1 only
    test = row(result, "paired_test")
    assert "2 pairs, 1 zero differences" in test.test
    # scipy on the hand-worked differences: the zero is dropped (wilcox), one pair left, p = 1
    expected = stats.wilcoxon([0.0, -365.25 / 730], zero_method="wilcox", correction=False)
    assert (test.estimate, test.p_value) == (expected.statistic, expected.pvalue)


def test_a_rate_exactly_halved_is_a_halved_responder():
    # 1 relapse in 202 days before, 3 in 1,212 days after: post = pre / 2 exactly, which doubles
    # evaluated in the usual order miss (0.9040841584158417 > 0.9040841584158416).
    pre, post = 1 / (202 / 365.25), 3 / (1212 / 365.25)
    assert not post <= pre / 2  # the floating-point trap
    result = compute(responder="halved", **one_window_patients([(1, 202, 3, 1212), (1, 202, 2, 202)]))
    assert row(result, "responders").count == 1
    assert result.per_patient.set_index("patient_id")["responder"].to_dict() == {"t0": True, "t1": False}


def test_the_exact_difference_holds_for_any_year_length():
    from fractions import Fraction

    result = compute(ctx=make_context(year_days=365.2425), **one_window_patients([(2, 300, 5, 700), (1, 366, 3, 1098)]))
    pp = result.per_patient.set_index("patient_id")
    year = Fraction(365.2425)
    assert pp.loc["t0", "arr_difference"] == float(5 * year / 700 - 2 * year / 300)
    assert pp.loc["t1", "arr_difference"] == 0.0


@pytest.mark.parametrize("year_days", [365.25, 365, 365.2425, 365.123456789])
def test_the_vectorised_difference_is_the_correctly_rounded_fraction(year_days):
    """Integers below 2**53 divide as doubles into the correctly rounded quotient: the vectorised
    difference is, patient by patient, the exact fraction rounded once (a year length whose exact
    fraction is too long for doubles takes Python's integers)."""
    from fractions import Fraction

    from endpointkit.plugins.arr_change import exact_rate_difference

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"pre_relapses": rng.integers(0, 40, 2000), "pre_days": rng.integers(1, 20_000, 2000),
                          "post_relapses": rng.integers(0, 40, 2000), "post_days": rng.integers(1, 20_000, 2000),
                          "included": rng.random(2000) < 0.9})
    year = Fraction(year_days)
    expected = [float(year * (Fraction(int(r.post_relapses), int(r.post_days)) - Fraction(int(r.pre_relapses), int(r.pre_days))))
                if r.included else np.nan for r in frame.itertuples()]
    np.testing.assert_array_equal(exact_rate_difference(frame, year_days), np.array(expected))


window = st.tuples(st.integers(0, 3), st.integers(100, 600), st.integers(0, 3), st.integers(100, 600))
tied_window = st.builds(lambda c, d, m: (c, d, c * m, d * m), st.integers(1, 3), st.integers(100, 300), st.integers(2, 3))


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.lists(st.one_of(window, tied_window), min_size=2, max_size=8), st.integers(2, 3))
def test_scaling_person_time_and_counts_together_changes_no_responder_and_no_test(windows, k):
    scaled = [(k * a, k * b, k * c, k * d) for a, b, c, d in windows]
    for rule in ("reduced", "halved"):
        original, bigger = (compute(responder=rule, **one_window_patients(w)) for w in (windows, scaled))
        assert row(original, "responders").count == row(bigger, "responders").count
        a, b = row(original, "paired_test"), row(bigger, "paired_test")
        assert (a.estimate, a.p_value, a.test) == (b.estimate, b.p_value, b.test)
        np.testing.assert_array_equal(original.per_patient["arr_difference"], bigger.per_patient["arr_difference"])

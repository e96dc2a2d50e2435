"""relapse_free: crude proportion, follow-up, post-index lag, and Kaplan-Meier against a textbook data set.

Every cohort starts IVIG on 2020-01-01 (the index date); follow-up ends at the course's end_date
(cohort rule ``treatment_end``). A month is 365.25/12 = 30.4375 days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from endpointkit.errors import SpecError
from endpointkit.params import MONTH_DAYS
from endpointkit.plugins.relapse_free import RelapseFree
from endpointkit.testing import make_cohort, make_context, params_for, row

INDEX = pd.Timestamp("2020-01-01")
Z = 1.959963984540054  # qnorm(0.975), as R survival uses


def day(offset: int) -> str:
    return (INDEX + pd.Timedelta(days=offset)).strftime("%Y-%m-%d")


def cohort(courses: dict[str, int], relapses: list[tuple[str, int]] = (), pseudo: set[int] = frozenset()):
    """courses: patient -> end_date as days after index; relapses: (patient, onset day after index)."""
    return make_cohort(
        patients=[{"patient_id": p} for p in courses],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": day(0), "end_date": day(end)} for p, end in courses.items()],
        # one IVIG infusion on the index day of the first patient; it changes nothing here (every course
        # has an end_date), and keeps the core's first-administration lookup away from an empty table
        administrations=[{"patient_id": next(iter(courses)), "treatment": "IVIG", "date": day(0)}],
        relapses=[{"patient_id": p, "onset_date": day(d), "pseudo": "true" if i in pseudo else "false"}
                  for i, (p, d) in enumerate(relapses)],
    )


def compute(c, quantile_method="linear", **params):
    return RelapseFree().compute(c, params_for(RelapseFree, **params), make_context(quantile_method))


# --------------------------------------------------------------------------- parameters


def test_defaults_and_parameter_values():
    p = params_for(RelapseFree)
    assert (p.method, p.landmarks_months, p.post_lag_days) == ("crude", [], 0)
    assert params_for(RelapseFree, method="km", landmarks_months=[12, 1.5]).landmarks_months == [12.0, 1.5]
    with pytest.raises(SpecError, match="method"):
        params_for(RelapseFree, method="km_landmark")
    with pytest.raises(SpecError, match=r"landmarks_months\[1\]"):
        params_for(RelapseFree, landmarks_months=[12, 0])
    with pytest.raises(SpecError, match="post_lag_days"):
        params_for(RelapseFree, post_lag_days=-1)


def test_headline():
    assert RelapseFree.headline == ("relapse_free",)
    assert RelapseFree.headline_for(params_for(RelapseFree, landmarks_months=[12])) == ("relapse_free",)
    km = params_for(RelapseFree, method="km", landmarks_months=[24, 12])
    assert RelapseFree.headline_for(km) == ("relapse_free", "relapse_free_at_24m")


# --------------------------------------------------------------------------- crude


def test_crude_counts_only_onsets_in_the_post_window():
    # follow-up end (days after index) and relapses:
    #   a 400: relapse at -100 (before index) and at 0 (index day: pre)   -> relapse-free
    #   b 400: relapse at 200                                             -> relapse
    #   c 300: relapse at 301 (after follow-up end)                       -> relapse-free
    #   d 500: relapse at 500 (on follow-up end: in (index, end])         -> relapse
    #   e 600: only a pseudo relapse at 100 (dropped by the cohort)       -> relapse-free
    c = cohort({"a": 400, "b": 400, "c": 300, "d": 500, "e": 600},
               [("a", -100), ("a", 0), ("b", 200), ("c", 301), ("d", 500), ("e", 100)], pseudo={5})
    result = compute(c)
    free = row(result, "relapse_free")
    ci = stats.binomtest(3, 5).proportion_ci(method="exact")
    assert (free.count, free.n, free.estimate) == (3, 5, 0.6)
    assert (free.low, free.high) == pytest.approx((ci.low, ci.high))
    assert free.interval == "95% CI"
    pp = result.per_patient.set_index("patient_id")
    assert list(result.per_patient.columns[:1]) == ["patient_id"]
    assert pp["relapse_free"].tolist() == [True, False, True, False, True]
    assert pp["post_relapses"].tolist() == [0, 1, 0, 1, 0]
    assert pp.loc["b", "first_relapse_date"] == INDEX + pd.Timedelta(days=200)
    assert result.excluded == {}


def test_followup_is_median_iqr_of_followup_end_minus_index_in_months():
    # follow-up 300, 400, 400, 500, 600 days = 9.856, 13.142, 13.142, 16.427, 19.713 months;
    # linear quantiles of 5 values: Q1 = 2nd, median = 3rd, Q3 = 4th value
    c = cohort({"a": 400, "b": 400, "c": 300, "d": 500, "e": 600})
    fu = row(compute(c), "followup_months")
    assert (fu.n, fu.interval) == (5, "IQR")
    assert (fu.low, fu.estimate, fu.high) == pytest.approx((400 / 30.4375, 400 / 30.4375, 500 / 30.4375))
    assert fu.estimate == pytest.approx(13.1417, abs=1e-4)
    months = np.array([400, 400, 300, 500, 600]) / MONTH_DAYS
    weibull = row(compute(c, quantile_method="weibull"), "followup_months")
    assert (weibull.low, weibull.estimate, weibull.high) == pytest.approx(tuple(np.quantile(months, [0.25, 0.5, 0.75], method="weibull")))


def test_crude_ignores_landmarks_and_says_so():
    c = cohort({"a": 400, "b": 400}, [("b", 10)])
    result = compute(c, landmarks_months=[12])
    assert [r.measure for r in result.rows] == ["relapse_free", "followup_months"]
    assert any("not used" in note for note in result.notes)


# --------------------------------------------------------------------------- lag


def test_post_lag_moves_the_window_start_and_excludes_patients_without_a_window():
    # lag 90 days: post window (index + 90, follow-up end]
    #   a end 400, relapse at 60  -> inside the lag, not counted: relapse-free; KM censored at 400 - 90 = 310 days
    #   b end 400, relapse at 90  -> on index + lag, not counted (window is open there): relapse-free
    #   c end 400, relapse at 91  -> counted; KM event at 91 - 90 = 1 day
    #   d end 90                  -> follow-up end not after index + lag: excluded from the endpoint, counted
    c = cohort({"a": 400, "b": 400, "c": 400, "d": 90}, [("a", 60), ("b", 90), ("c", 91)])
    result = compute(c, method="km", post_lag_days=90)
    free = row(result, "relapse_free")
    assert (free.count, free.n) == (2, 3)
    assert result.excluded == {"no post window: follow-up end not after index + 90 days": ["d"]}
    pp = result.per_patient.set_index("patient_id")
    assert pp["included"].tolist() == [True, True, True, False]
    assert pp.loc["a", "km_time_months"] == pytest.approx(310 / MONTH_DAYS)
    assert pp.loc["c", "km_time_months"] == pytest.approx(1 / MONTH_DAYS)
    assert pp["km_event"].tolist()[:3] == [False, False, True]
    assert pd.isna(pp.loc["d", "relapse_free"])
    # follow-up still runs from index (not index + lag), over the 3 patients of the endpoint
    assert row(result, "followup_months").estimate == pytest.approx(400 / MONTH_DAYS)
    assert any("index + 90 days" in note for note in result.notes)
    # without lag the relapses at 60 and 90 count and nobody is excluded
    no_lag = compute(c)
    assert (row(no_lag, "relapse_free").count, row(no_lag, "relapse_free").n) == (1, 4)


# --------------------------------------------------------------------------- Kaplan-Meier

# Freireich et al. (1963) 6-MP arm, remission times in weeks (Gehan 1965; Kleinbaum & Klein, "Survival
# Analysis", table 1.1); here read as months. Censored times are marked with False.
SIX_MP = [(6, True), (6, True), (6, True), (6, False), (7, True), (9, False), (10, True), (10, False),
          (11, False), (13, True), (16, True), (17, False), (19, False), (20, False), (22, True), (23, True),
          (25, False), (32, False), (32, False), (34, False), (35, False)]


def six_mp_cohort():
    """Relapse at t months (event) or follow-up end at t months (censored); t months = round(t x 30.4375) days."""
    courses, relapses = {}, []
    for i, (t, event) in enumerate(SIX_MP):
        pid = f"p{i:02d}"
        days = round(t * MONTH_DAYS)
        courses[pid] = 1200 if event else days
        if event:
            relapses.append((pid, days))
    return make_cohort(
        patients=[{"patient_id": p} for p in courses],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": day(0), "end_date": day(e)} for p, e in courses.items()],
        administrations=[{"patient_id": "p00", "treatment": "IVIG", "date": day(0)}],
        relapses=[{"patient_id": p, "onset_date": day(d)} for p, d in relapses],
    )


def product_limit_table(times, events):
    """Kaplan-Meier by hand: at each distinct event time, n at risk, d events, S, Greenwood, log-log CI."""
    times, events = np.asarray(times, float), np.asarray(events, bool)
    table = []
    s, greenwood = 1.0, 0.0
    for t in np.unique(times[events]):
        n = int((times >= t).sum())
        d = int(((times == t) & events).sum())
        s *= 1 - d / n
        greenwood += d / (n * (n - d))
        se = np.sqrt(greenwood) / abs(np.log(s))  # se of log(-log S)
        table.append((t, n, d, s, s ** np.exp(Z * se), s ** np.exp(-Z * se)))
    return table


def test_hand_table_matches_the_published_six_mp_table():
    # R: summary(survfit(Surv(time, status) ~ 1, conf.type = "log-log")) on the 6-MP arm
    published = [  # time, n.risk, n.event, survival, lower 95% CI, upper 95% CI
        (6, 21, 3, 0.857, 0.620, 0.952), (7, 17, 1, 0.807, 0.563, 0.923), (10, 15, 1, 0.753, 0.503, 0.889),
        (13, 12, 1, 0.690, 0.432, 0.849), (16, 11, 1, 0.627, 0.368, 0.805), (22, 7, 1, 0.538, 0.268, 0.747),
        (23, 6, 1, 0.448, 0.188, 0.680),
    ]
    hand = product_limit_table([t for t, _ in SIX_MP], [e for _, e in SIX_MP])
    assert [(t, n, d) for t, n, d, *_ in hand] == [(t, n, d) for t, n, d, *_ in published]
    for (*_, s, low, high), (*_, ps, plow, phigh) in zip(hand, published):
        assert (s, low, high) == pytest.approx((ps, plow, phigh), abs=5e-4)


def test_km_landmarks_match_the_hand_computed_table():
    result = compute(six_mp_cohort(), method="km", landmarks_months=[6, 12, 22, 12.0, 30])
    measures = [r.measure for r in result.rows]
    # duplicates dropped, integral months named without decimals
    assert measures == ["relapse_free", "followup_months", "relapse_free_at_6m", "relapse_free_at_12m",
                        "relapse_free_at_22m", "relapse_free_at_30m", "median_time_to_relapse_months"]
    hand = {t: (s, low, high) for t, _, _, s, low, high in product_limit_table([t for t, _ in SIX_MP], [e for _, e in SIX_MP])}
    # S(t) is the step value at the last event time <= t; at risk = patients with time >= t
    expected = {6: (hand[6], 21), 12: (hand[10], 12), 22: (hand[22], 7), 30: (hand[23], 4)}
    for m, ((s, low, high), at_risk) in expected.items():
        r = row(result, f"relapse_free_at_{m}m")
        assert (r.stat, r.interval, r.n) == ("km", "95% CI", at_risk)
        assert (r.estimate, r.low, r.high) == pytest.approx((s, low, high), rel=1e-9)
    # 12 months: S = (1 - 3/21)(1 - 1/17)(1 - 1/15) = 0.7529
    assert row(result, "relapse_free_at_12m").estimate == pytest.approx(18 / 21 * 16 / 17 * 14 / 15)
    # crude: 12 of 21 never relapsed
    assert (row(result, "relapse_free").count, row(result, "relapse_free").n) == (12, 21)


def test_km_median_and_its_ci_follow_the_first_time_at_or_below_half_rule():
    result = compute(six_mp_cohort(), method="km")
    hand = product_limit_table([t for t, _ in SIX_MP], [e for _, e in SIX_MP])
    median = next(t for t, _, _, s, _, _ in hand if s <= 0.5)  # S(22) = 0.538, S(23) = 0.448 -> 23
    low = next(t for t, _, _, _, lo, _ in hand if lo <= 0.5)  # lower band 0.503 at 10, 0.432 at 13 -> 13
    assert all(hi > 0.5 for *_, hi in hand)  # upper band never reaches 0.5: upper limit not estimable
    assert (median, low) == (23, 13)
    r = row(result, "median_time_to_relapse_months")
    months = lambda t: round(t * MONTH_DAYS) / MONTH_DAYS  # noqa: E731 - the day-rounded month of the cohort
    assert (r.stat, r.n, r.count, r.unit) == ("km_median", 21, 9, "months")
    assert (r.estimate, r.low) == pytest.approx((months(23), months(13)))
    assert r.high is None


def test_km_median_blank_when_never_reached():
    # 4 patients, one relapse at 100 days: S drops to 3/4 and never reaches 0.5
    c = cohort({"a": 400, "b": 400, "c": 400, "d": 400}, [("a", 100)])
    result = compute(c, method="km", landmarks_months=[1.5])
    r = row(result, "median_time_to_relapse_months")
    # each limit is blank only where its own curve never reaches 0.5 (R survival): the lower band at
    # 100 days is 0.75^exp(1.96 x sqrt(1/(4 x 3)) / |log 0.75|) = 0.128 <= 0.5, so the lower limit is 100 days
    [(_, _, _, s, low, high)] = product_limit_table([100, 400, 400, 400], [True, False, False, False])
    assert (s, low, high) == pytest.approx((0.75, 0.128, 0.961), abs=1e-3)
    assert (r.estimate, r.high) == (None, None)
    assert r.low == pytest.approx(100 / MONTH_DAYS)
    # 1.5 months = round(45.66) = 46 days, before the first event: S = 1, CI not estimable, all 4 at risk
    landmark = row(result, "relapse_free_at_1.5m")
    assert (landmark.estimate, landmark.low, landmark.high, landmark.n) == (1.0, None, None, 4)
    assert row(result, "relapse_free").count == 3

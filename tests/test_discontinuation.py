"""discontinuation: who stopped the index treatment, when, why, and KM persistence.

Every cohort starts IVIG on 2020-01-01 (the index date). A month is 365.25/12 = 30.4375 days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from endpointkit.errors import SpecError
from endpointkit.params import MONTH_DAYS
from endpointkit.plugins.discontinuation import Discontinuation
from endpointkit.testing import make_cohort, make_context, make_settings, params_for, row

INDEX = pd.Timestamp("2020-01-01")
Z = 1.959963984540054  # qnorm(0.975)


def day(offset: int | None) -> str | None:
    return None if offset is None else (INDEX + pd.Timedelta(days=offset)).strftime("%Y-%m-%d")


def cohort(courses, settings=None):
    """courses: (patient, end day or None, stop_reason or None, last follow-up day or None)."""
    first_with_end = next(p for p, end, _, _ in courses if end is not None)
    return make_cohort(
        settings,
        patients=[{"patient_id": p, "last_followup_date": day(fu)} for p, _, _, fu in courses],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": day(0), "end_date": day(end), "stop_reason": reason}
                    for p, end, reason, _ in courses],
        # one IVIG infusion on the index day of a patient whose course has an end_date: it changes no
        # follow-up, and keeps the core's first-administration lookup away from an empty table
        administrations=[{"patient_id": first_with_end, "treatment": "IVIG", "date": day(0)}],
    )


def compute(c, quantile_method="linear", **params):
    return Discontinuation().compute(c, params_for(Discontinuation, **params), make_context(quantile_method))


def product_limit(times, events):
    """Kaplan-Meier by hand: {event time: (n at risk, S, log-log lower, log-log upper)} (Greenwood)."""
    times, events = np.asarray(times, float), np.asarray(events, bool)
    table, s, greenwood = {}, 1.0, 0.0
    for t in np.unique(times[events]):
        n, d = int((times >= t).sum()), int(((times == t) & events).sum())
        s *= 1 - d / n
        greenwood += d / (n * (n - d))
        se = np.sqrt(greenwood) / abs(np.log(s))
        table[t] = (n, s, s ** np.exp(Z * se), s ** np.exp(-Z * se))
    return table


# follow-up end = treatment end: the course's end_date, else (no infusions) the last follow-up
COURSES = [
    ("a", 274, "Relapse", 2000),
    ("b", 426, " relapse ", 2000),
    ("c", 670, "Adverse event", 2000),
    ("d", 1004, None, 2000),  # blank reason
    ("e", None, None, 800),  # ongoing
    ("f", None, None, 1500),  # ongoing
]


# --------------------------------------------------------------------------- parameters


def test_defaults_and_parameter_values():
    p = params_for(Discontinuation)
    assert (p.reasons, p.method, p.landmarks_months) == ([], "descriptive", [])
    assert params_for(Discontinuation, method="km", reasons=["relapse"], landmarks_months=[12]).method == "km"
    with pytest.raises(SpecError, match="method"):
        params_for(Discontinuation, method="competing_risks")
    with pytest.raises(SpecError, match=r"landmarks_months\[0\]"):
        params_for(Discontinuation, landmarks_months=[-6])
    assert Discontinuation.headline == ("discontinued", "time_to_discontinuation_months")


# --------------------------------------------------------------------------- descriptive


def test_any_reason_counts_every_course_ended_on_or_before_followup_end():
    result = compute(cohort(COURSES))
    stopped = row(result, "discontinued")
    ci = stats.binomtest(4, 6).proportion_ci(method="exact")
    assert (stopped.count, stopped.n, stopped.estimate) == (4, 6, pytest.approx(4 / 6))
    assert (stopped.low, stopped.high) == pytest.approx((ci.low, ci.high))
    # times 274, 426, 670, 1004 days; linear quantiles at positions 0.75, 1.5, 2.25 of the sorted four:
    # Q1 = 274 + 0.75 x 152 = 388, median = (426 + 670) / 2 = 548, Q3 = 670 + 0.25 x 334 = 753.5 days
    time = row(result, "time_to_discontinuation_months")
    assert (time.n, time.interval, time.unit) == (4, "IQR", "months")
    assert (time.low, time.estimate, time.high) == pytest.approx((388 / 30.4375, 548 / 30.4375, 753.5 / 30.4375))
    pp = result.per_patient.set_index("patient_id")
    assert result.per_patient.columns[0] == "patient_id"
    assert pp["discontinued"].tolist() == [True, True, True, True, False, False]
    assert pp.loc["a", "time_to_discontinuation_months"] == pytest.approx(274 / MONTH_DAYS)
    assert pp["time_to_discontinuation_months"].isna().tolist() == [False] * 4 + [True] * 2


def test_reasons_match_case_insensitively_and_reason_rows_list_every_stop():
    c = cohort(COURSES)
    relapse = compute(c, reasons=["RELAPSE"])
    assert (row(relapse, "discontinued").count, row(relapse, "discontinued").n) == (2, 6)
    # time among the 2 relapse stoppers: median (274 + 426) / 2 = 350 days
    time = row(relapse, "time_to_discontinuation_months")
    assert (time.n, time.estimate) == (2, pytest.approx(350 / 30.4375))
    assert any("for relapse" in note for note in relapse.notes)
    two = compute(c, reasons=["relapse", " Adverse Event"])
    assert row(two, "discontinued").count == 3
    # reason rows: every ended course whatever `reasons` says, value stripped and lower-cased, blank =
    # unspecified, most frequent first then by name; proportions of all 6 patients
    for result in (relapse, two, compute(c)):
        reasons = [r for r in result.rows if r.measure.startswith("reason:")]
        assert [(r.measure, r.count, r.n) for r in reasons] == [
            ("reason:relapse", 2, 6), ("reason:adverse event", 1, 6), ("reason:unspecified", 1, 6)]
        ci = stats.binomtest(2, 6).proportion_ci(method="exact")
        assert (reasons[0].estimate, reasons[0].low, reasons[0].high) == pytest.approx((2 / 6, ci.low, ci.high))
    assert [r.measure for r in relapse.rows][:2] == ["discontinued", "time_to_discontinuation_months"]


def test_an_end_date_after_followup_end_is_not_a_stop():
    # last_followup rule: a course ending after the last follow-up did not end during follow-up
    c = cohort([("a", 100, "relapse", 365), ("b", 500, "relapse", 365), ("c", None, None, 365)],
               make_settings(follow_up_end="last_followup"))
    result = compute(c)
    assert (row(result, "discontinued").count, row(result, "discontinued").n) == (1, 3)
    assert [(r.measure, r.count) for r in result.rows if r.measure.startswith("reason:")] == [("reason:relapse", 1)]
    # data cut-off: an end date after the cut-off is not seen (follow-up end = cut-off)
    cut = cohort([("a", 100, "relapse", 2000), ("b", 500, "relapse", 2000)], make_settings(cutoff=day(365)))
    assert row(compute(cut), "discontinued").count == 1


def test_nobody_stopped():
    result = compute(cohort([("a", 500, "relapse", 2000), ("b", None, None, 800)]), reasons=["adverse event"])
    assert (row(result, "discontinued").count, row(result, "discontinued").estimate) == (0, 0.0)
    time = row(result, "time_to_discontinuation_months")
    assert (time.n, time.estimate) == (0, None)
    # the relapse stop is still listed among the reasons
    assert [(r.measure, r.count) for r in result.rows if r.measure.startswith("reason:")] == [("reason:relapse", 1)]


@pytest.mark.parametrize(("method", "q1", "q3"), [
    ("linear", 16, 39), ("weibull", 12.75, 43.75), ("averaged_inverted_cdf", 14, 41),
])
def test_time_quantiles_follow_the_quantile_method(method, q1, q3):
    # endpoint-conventions section 7: on [9, 14, 22, 33, 41, 52] months every method gives a median of 27.5,
    # IQR 16-39 (linear), 12.75-43.75 (weibull), 14-41 (averaged_inverted_cdf). Whole days are
    # round(m x 30.4375), so the months are within 0.01 of these and exactly numpy's on the day values.
    months = [9, 14, 22, 33, 41, 52]
    days = [round(m * MONTH_DAYS) for m in months]
    c = cohort([(f"p{m}", d, "relapse", 2000) for m, d in zip(months, days)])
    time = row(compute(c, quantile_method=method), "time_to_discontinuation_months")
    assert (time.low, time.estimate, time.high) == pytest.approx((q1, 27.5, q3), abs=0.01)
    exact = np.quantile(np.array(days) / MONTH_DAYS, [0.25, 0.5, 0.75], method=method)
    assert (time.low, time.estimate, time.high) == pytest.approx(tuple(exact))


def test_descriptive_ignores_landmarks_and_says_so():
    result = compute(cohort(COURSES), landmarks_months=[12])
    assert not any(r.measure.startswith("persistent_at_") for r in result.rows)
    assert any("not used" in note for note in result.notes)


# --------------------------------------------------------------------------- Kaplan-Meier persistence


def test_km_persistence_censors_everyone_else():
    # last_followup rule, reasons [relapse]; KM time (days) and event:
    #   a relapse stop at 100                 -> event 100
    #   b adverse-event stop at 200 (fu 1000) -> censored 1000 (contract: everyone else at follow-up end)
    #   c ongoing, last follow-up 300         -> censored 300
    #   d relapse stop at 400                 -> event 400
    #   e ongoing, last follow-up 1000        -> censored 1000
    # S(100) = 1 - 1/5 = 0.8; at 400 three remain at risk (b, d, e): S(400) = 0.8 x (1 - 1/3) = 0.533
    c = cohort([("a", 100, "relapse", 1000), ("b", 200, "adverse event", 1000), ("c", None, None, 300),
                ("d", 400, "Relapse", 1000), ("e", None, None, 1000)], make_settings(follow_up_end="last_followup"))
    result = compute(c, method="km", reasons=["relapse"], landmarks_months=[6, 12, 24, 24.0])
    pp = result.per_patient.set_index("patient_id")
    assert pp["km_time_months"].tolist() == pytest.approx([d / MONTH_DAYS for d in (100, 1000, 300, 400, 1000)])
    assert pp["km_event"].tolist() == [True, False, False, True, False]
    hand = product_limit([100, 1000, 300, 400, 1000], [True, False, False, True, False])
    assert {t: (n, s) for t, (n, s, _, _) in hand.items()} == {100: (5, 0.8), 400: (3, pytest.approx(0.8 * 2 / 3))}
    # at 100 days: Greenwood 1/(5 x 4) = 0.05, se of log(-log S) = sqrt(0.05) / |log 0.8| = 1.0021,
    # CI 0.8^exp(+-1.96 x 1.0021) = 0.204 to 0.969
    assert hand[100][2:] == pytest.approx((0.204, 0.969), abs=1e-3)
    measures = [r.measure for r in result.rows]
    assert measures[-3:] == ["persistent_at_6m", "persistent_at_12m", "persistent_at_24m"]
    # 6 months = 183 days, 12 = 365, 24 = 730; at risk = patients whose time is >= that
    for m, t, at_risk in ((6, 100, 4), (12, 100, 3), (24, 400, 2)):
        r = row(result, f"persistent_at_{m}m")
        _, s, low, high = hand[t]
        assert (r.stat, r.n, r.interval) == ("km", at_risk, "95% CI")
        assert (r.estimate, r.low, r.high) == pytest.approx((s, low, high), rel=1e-9)
    # descriptive rows are unchanged by the method
    assert (row(result, "discontinued").count, row(result, "time_to_discontinuation_months").n) == (2, 2)
    assert any("censored" in note for note in result.notes)


def test_km_with_any_reason_is_time_to_any_stop():
    # COURSES under treatment_end: events at 274, 426, 670, 1004; e censored at 800, f at 1500
    result = compute(cohort(COURSES), method="km", landmarks_months=[24, 36])
    hand = product_limit([274, 426, 670, 1004, 800, 1500], [True, True, True, True, False, False])
    # 24 months = 730 days: S(670) = 3/6; 36 months = 1096 days: S(1004) = 0.5 x (1 - 1/2) = 0.25
    assert row(result, "persistent_at_24m").estimate == pytest.approx(0.5)
    assert row(result, "persistent_at_36m").estimate == pytest.approx(0.25)
    assert (row(result, "persistent_at_24m").low, row(result, "persistent_at_24m").high) == pytest.approx(hand[670][2:])
    assert (row(result, "persistent_at_24m").n, row(result, "persistent_at_36m").n) == (3, 1)

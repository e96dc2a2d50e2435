"""``disability_events`` and its confirmed-event engine.

Two kinds of expected values, none taken from the code's own output:

* cases worked by hand (the arithmetic is in the comments); a patient starts IVIG on 2020-01-01
  (index, day 0), follow-up ends on day 1000, and dates are written as day offsets from index;
* pymsprog's own toy data set (``pymsprog.load_toy_data()``, pymsprog 1.0.7) re-typed below, with
  the events a real pymsprog run reported. They were recorded with the benchmark's pymsprog venv
  (``make bench`` installs it into benchmarks/data/pymsprog-venv)::

      pymsprog.MSprog(visits, subj_col="id", value_col="EDSS", date_col="date", outcome="edss",
                      relapse=relapses, include_dates=True, include_value=True, verbose=0, **kwargs)

  with the ``kwargs`` given at each case; the test itself does not need pymsprog.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from endpointkit.errors import SpecError
from endpointkit.plugins.disability_engine import EventSettings, detect_events, threshold
from endpointkit.plugins.disability_events import DisabilityEvents
from endpointkit.testing import make_cohort, make_context, params_for, row

INDEX = date(2020, 1, 1)


def day(offset: int) -> str:
    return (INDEX + timedelta(days=offset)).isoformat()


def cohort_of(patients: dict[str, list[tuple[int, float]]], *, end: int = 1000,
              relapses: dict[str, list[int]] | None = None):
    return make_cohort(
        patients=[{"patient_id": p} for p in patients],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": day(0), "end_date": day(end)} for p in patients],
        edss=[{"patient_id": p, "date": day(d), "score": str(s)} for p, scores in patients.items() for d, s in scores],
        relapses=[{"patient_id": p, "onset_date": day(d)} for p, onsets in (relapses or {}).items() for d in onsets],
    )


def run(cohort, **params):
    return DisabilityEvents().compute(cohort, params_for(DisabilityEvents, **params), make_context())


def events(result) -> list[tuple]:
    """(patient, number, type, cdw type, event day, baseline day, baseline value, confirmation day)."""
    f = result.per_patient
    f = f[f["event_number"] > 0]

    def off(v):
        return None if pd.isna(v) else (v.date() - INDEX).days

    return [(r.patient_id, r.event_number, r.event_type, r.cdw_type, off(r.date), off(r.baseline_date),
             r.baseline_value, off(r.confirmation_date)) for r in f.itertuples()]


# --------------------------------------------------------------------------- parameters


def test_parameter_names_are_the_contract():
    names = DisabilityEvents.param_names()
    for name in ("event", "baseline", "proceed_from", "confirmation_days", "confirmation_tolerance_days",
                 "check_intermediate", "sustained_days", "relapse_to_baseline_days", "relapse_to_event_days",
                 "relapse_to_confirmation_days", "pira_raw", "relapse_assoc_days", "threshold_rule", "last_visit"):
        assert name in names
    p = params_for(DisabilityEvents)
    assert (p.event, p.baseline, p.proceed_from, p.confirmation_days, p.confirmation_tolerance_days) == (
        "first_cdw", "fixed", "confirmation", 84, [7, 730.5])


@pytest.mark.parametrize("values, path", [
    ({"confirmation_tolerance_days": ["inf", 3]}, "params.confirmation_tolerance_days[0]"),
    ({"relapse_to_event_days": [1, 2, 3]}, "params.relapse_to_event_days"),
    ({"event": "first_pirra"}, "params.event"),
    ({"confirmation_days": 0}, "params.confirmation_days"),
    ({"pira_event_days": [90]}, "params.pira_event_days"),
])
def test_bad_settings_name_the_spec_path(values, path):
    with pytest.raises(SpecError) as err:
        params_for(DisabilityEvents, **values)
    assert path in str(err.value)


def test_pymsprog_threshold_rule_gives_5_5_a_half_point():
    # pymsprog's compute_delta: 1.5 from 0, 1.0 up to 5.0, 0.5 above 5.0; ms_standard: 1.0 up to 5.5
    assert list(threshold("pymsprog", np.array([0, 1.0, 5.0, 5.5, 6.0]))) == [1.5, 1.0, 1.0, 0.5, 0.5]
    assert list(threshold("ms_standard", np.array([0, 1.0, 5.0, 5.5, 6.0]))) == [1.5, 1.0, 1.0, 1.0, 0.5]


# --------------------------------------------------------------------------- hand-worked cases


def test_first_cdw_is_confirmed_by_the_first_visit_in_the_window():
    # baseline 2.0 on day 0 (threshold +1.0); day 90: 3.0 is a change; the window is
    # [90 + 84 - 7, 90 + 84 + 730.5] = day 167..904.5: day 180 (3.0) confirms it.
    cohort = cohort_of({"a": [(0, 2.0), (90, 3.0), (180, 3.0)], "b": [(0, 2.0), (90, 2.5), (180, 2.5)]})
    result = run(cohort)
    assert events(result) == [("a", 1, "cdw", None, 90, 0, 2.0, 180)]
    assert (row(result, "cdw").count, row(result, "cdw").n) == (1, 2)


def test_an_intermediate_visit_below_threshold_breaks_the_confirmation():
    # day 90: 3.0 (change); day 120: 2.5 lies before the window (day 167..) and is only +0.5;
    # day 200: 3.0 is the confirmation visit. check_intermediate: day 120 fails -> not confirmed;
    # the search goes on at day 120 (no change) and day 200 (a change with no visit after it).
    scores = {"a": [(0, 2.0), (90, 3.0), (120, 2.5), (200, 3.0)]}
    assert events(run(cohort_of(scores))) == []
    assert events(run(cohort_of(scores), check_intermediate=False)) == [("a", 1, "cdw", None, 90, 0, 2.0, 200)]


def test_the_tolerance_window_bounds_the_confirmation_visit():
    # change on day 90; next visit on day 160 = 70 days later: outside [84 - 7, ...] by default,
    # inside with a left tolerance of 14 days (70 >= 84 - 14).
    scores = {"a": [(0, 2.0), (90, 3.0), (160, 3.0)]}
    assert events(run(cohort_of(scores))) == []
    assert events(run(cohort_of(scores), confirmation_tolerance_days=[14, 14])) == [("a", 1, "cdw", None, 90, 0, 2.0, 160)]
    # right tolerance 7: a visit 84 + 8 = 92 days after the change is too late
    late = {"a": [(0, 2.0), (90, 3.0), (182, 3.0)]}
    assert events(run(cohort_of(late), confirmation_tolerance_days=[7, 7])) == []
    assert len(events(run(cohort_of(late), confirmation_tolerance_days=[7, "inf"]))) == 1


def test_roving_baseline_moves_to_the_confirmation_visit():
    # CDW 2.0 -> 3.0 (day 90, confirmed day 180). fixed: day 270 (3.5) is +1.5 from 2.0, confirmed
    # on day 360 -> a second CDW; roving: the reference is 3.0 from day 180, +0.5 is not enough.
    scores = {"a": [(0, 2.0), (90, 3.0), (180, 3.0), (270, 3.5), (360, 3.5)]}
    fixed = events(run(cohort_of(scores), event="multiple"))
    roving = events(run(cohort_of(scores), event="multiple", baseline="roving"))
    assert fixed == [("a", 1, "cdw", None, 90, 0, 2.0, 180), ("a", 2, "cdw", None, 270, 0, 2.0, 360)]
    assert roving == [("a", 1, "cdw", None, 90, 0, 2.0, 180)]
    # proceed_from event: the new reference is the event visit (day 90, 3.0), the search goes on
    # at day 180 (3.0: no change); day 270 3.5 again only +0.5.
    assert events(run(cohort_of(scores), event="multiple", baseline="roving", proceed_from="event")) == roving


def test_roving_improvement_rebaselines_only_after_an_improvement():
    # 4.0 -> 3.0 (day 90) confirmed on day 180: CDI. Then 4.0 on day 270 and 360: from a moved
    # reference of 3.0 that is a CDW (+1.0); from the fixed 4.0 it is nothing.
    scores = {"a": [(0, 4.0), (90, 3.0), (180, 3.0), (270, 4.0), (360, 4.0)]}
    assert events(run(cohort_of(scores))) == []
    assert events(run(cohort_of(scores), baseline="roving_improvement")) == [("a", 1, "cdw", None, 270, 180, 3.0, 360)]
    assert events(run(cohort_of(scores), event="first_cdi")) == [("a", 1, "cdi", None, 90, 0, 4.0, 180)]


def test_raw_and_pira():
    # a: relapse on day 60, worsening on day 90 (30 days later <= 90): RAW.
    # b: relapse on day 200; worsening day 90, visits day 180 and 400 confirm. The event window
    #    [0, 120] is free; confirmation at day 180 has a relapse in [90, 210], the one at day 400 has
    #    none in [310, 430] -> PIRA, confirmed for PIRA on day 400 (the CDW itself on day 180).
    # c: as b with a relapse on day 100, inside the event window [0, 120]: undefined.
    scores = [(0, 2.0), (90, 3.0), (180, 3.0), (400, 3.0)]
    cohort = cohort_of({"a": scores, "b": scores, "c": scores}, relapses={"a": [60], "b": [200], "c": [100]})
    result = run(cohort, pira_raw=True)
    got = {e[0]: e[3] for e in events(result)}
    assert got == {"a": "raw", "b": "pira", "c": "undefined"}
    frame = result.per_patient.set_index("patient_id")
    assert (frame.loc["b", "pira_confirmation_date"].date() - INDEX).days == 400
    assert [(row(result, k).count, row(result, k).n) for k in ("cdw", "pira", "raw")] == [(3, 3), (1, 3), (1, 3)]
    # first_pira with a fixed baseline skips a non-PIRA worsening and searches on from the visit
    # after it: a's day-180 score (3.0, 120 days after the relapse: not RAW; event window [90, 210]
    # free; confirmed on day 400 with [310, 430] free) is a PIRA; c's day-180 score lies 80 days
    # after its relapse (RAW, skipped) and day 400 is the last visit.
    pira = [(e[0], e[4], e[7]) for e in events(run(cohort, event="first_pira"))]
    assert pira == [("a", 180, 400), ("b", 90, 180)]


def test_baseline_too_close_to_a_relapse_moves_to_the_next_visit():
    # relapse on day -10: the baseline score on day 0 lies 10 < 30 days after it, so the baseline
    # moves to day 90 (3.0); day 180 (3.0) and 270 (4.0) then show no +1.0 change. With
    # relapse_to_baseline_days 0 the day-0 baseline stays and 2.0 -> 3.0 is a CDW.
    scores = {"a": [(0, 2.0), (90, 3.0), (180, 3.0), (270, 3.5)]}
    cohort = cohort_of(scores, relapses={"a": [-10]})
    assert events(run(cohort)) == []
    assert events(run(cohort, relapse_to_baseline_days=0)) == [("a", 1, "cdw", None, 90, 0, 2.0, 180)]


def test_a_worsening_at_the_last_visit_counts_only_with_last_visit_always():
    scores = {"a": [(0, 2.0), (90, 2.0), (180, 3.5)]}
    assert events(run(cohort_of(scores))) == []
    assert events(run(cohort_of(scores), last_visit="always")) == [("a", 1, "cdw", None, 180, 0, 2.0, None)]


def test_sustained_days():
    # CDW at day 90 confirmed day 180; day 300 drops back to 2.0: sustained 300 - 90 = 210 days.
    scores = {"a": [(0, 2.0), (90, 3.0), (180, 3.0), (300, 2.0)]}
    assert len(events(run(cohort_of(scores), sustained_days=210))) == 1
    assert events(run(cohort_of(scores), sustained_days=211)) == []
    assert events(run(cohort_of(scores), sustained_days="end")) == []


def test_km_rows_and_exclusions():
    # from each baseline (day 0): a CDW on day 90, b none (last visit day 730), c CDW on day 365,
    # d has no score after baseline, e no baseline score: d and e are excluded and counted.
    cohort = cohort_of({
        "a": [(0, 2.0), (90, 3.0), (180, 3.0)],
        "b": [(0, 2.0), (365, 2.0), (730, 2.0)],
        "c": [(0, 2.0), (365, 3.0), (455, 3.0)],
        "d": [(0, 2.0)],
        "e": [(500, 2.0), (600, 3.0)],
    })
    result = run(cohort, landmarks_months=[6, 12.5])
    assert sorted(result.excluded) == ["no EDSS score after the baseline score up to follow-up end",
                                       "no EDSS score in the baseline window [index - 365 days, index + 30 days]"]
    assert (row(result, "cdw").count, row(result, "cdw").n) == (2, 3)
    month = 365.25 / 12
    times, died = np.array([90, 730, 365]) / month, np.array([True, False, True])
    sf = stats.ecdf(stats.CensoredData(uncensored=times[died], right=times[~died])).sf
    # by 6 months (183 days): only a's event (day 90): 1 - 2/3; by 12.5 months (380 days): 1 - 2/3 * 1/2
    assert row(result, "time_to_cdw_at_6m").estimate == pytest.approx(1 / 3)
    assert row(result, "time_to_cdw_at_12.5m").estimate == pytest.approx(1 - (2 / 3) * (1 / 2))
    ci = sf.confidence_interval(method="log-log")
    t6 = 183 / month
    assert row(result, "time_to_cdw_at_6m").low == pytest.approx(1 - float(ci.high.evaluate(t6)))
    assert row(result, "time_to_cdw_at_6m").high == pytest.approx(1 - float(ci.low.evaluate(t6)))
    assert row(result, "median_time_to_cdw_months").estimate == pytest.approx(365 / month)
    frame = result.per_patient
    assert list(frame["patient_id"]) == ["a", "b", "c", "d", "e"]
    assert list(frame["event_number"]) == [1, 0, 1, 0, 0]


def test_events_per_patient_year_counts_every_cdw_over_visit_years():
    # a: two CDWs over 360 days (fixed baseline, as in the roving test); b: none over 730 days.
    cohort = cohort_of({"a": [(0, 2.0), (90, 3.0), (180, 3.0), (270, 3.5), (360, 3.5)],
                        "b": [(0, 2.0), (365, 2.0), (730, 2.0)]})
    r = row(run(cohort, event="multiple"), "events_per_patient_year")
    assert (r.count, r.n) == (2, 2)
    assert r.estimate == pytest.approx(2 / ((360 + 730) / 365.25))
    assert r.low == pytest.approx(stats.chi2.ppf(0.025, 4) / 2 / ((360 + 730) / 365.25))


# --------------------------------------------------------------------------- pymsprog's toy data

TOY_VISITS = {  # pymsprog 1.0.7, data/MSprog_toydata_visits.csv: id -> (date, EDSS)
    "1": [("2021-09-23", 5.5), ("2021-11-03", 5.5), ("2022-01-19", 5.5), ("2022-04-27", 5.5), ("2022-07-12", 6), ("2022-11-06", 6), ("2022-12-10", 6), ("2023-03-11", 6)],
    "2": [("2020-11-26", 4), ("2020-12-30", 4), ("2021-03-24", 4.5), ("2021-06-12", 5.5), ("2021-09-04", 5), ("2021-12-02", 4.5), ("2022-02-23", 4.5), ("2022-05-19", 6), ("2022-08-28", 6), ("2022-11-26", 6)],
    "3": [("2021-10-18", 3.5), ("2021-12-01", 4.5), ("2022-02-15", 3.5), ("2022-09-03", 3.5), ("2022-10-05", 3.5), ("2022-12-22", 3), ("2023-02-21", 3)],
    "4": [("2021-09-18", 4.5), ("2021-12-04", 3.5), ("2022-03-12", 3.5), ("2022-07-19", 5), ("2022-10-05", 5), ("2023-01-16", 5.5), ("2023-04-27", 5)],
    "5": [("2021-06-14", 4), ("2021-09-12", 4), ("2021-11-01", 5), ("2022-01-17", 5.5), ("2022-04-30", 5), ("2022-07-06", 5.5), ("2022-11-09", 5.5), ("2022-12-15", 5), ("2023-03-13", 5.5)],
    "6": [("2021-10-18", 5.5), ("2021-12-01", 5.5), ("2022-02-15", 4.5), ("2022-09-03", 4.5), ("2022-10-05", 5), ("2022-12-22", 6), ("2023-02-21", 6)],
    "7": [("2021-03-10", 3.5), ("2021-06-09", 3.5), ("2021-09-11", 5), ("2021-12-02", 3.5), ("2022-03-17", 4.5), ("2022-07-22", 4.5), ("2022-10-06", 4.5), ("2023-01-13", 5), ("2023-04-28", 5)],
}
TOY_RELAPSES = [("2", "2021-06-12"), ("2", "2022-10-25"), ("3", "2022-12-01"), ("6", "2022-12-18"), ("7", "2021-09-11")]

# (pymsprog kwargs, our settings, events pymsprog reported: id, type, CDW_type, date, bl_date, bl_value, first conf date)
TOY_CASES = [
    ({}, {"threshold_rule": "pymsprog"}, [
        ("1", "cdw", None, "2022-07-12", "2021-09-23", 5.5, "2022-11-06"),
        ("2", "cdw", None, "2021-06-12", "2020-11-26", 4.0, "2021-09-04"),
        ("5", "cdw", None, "2021-11-01", "2021-06-14", 4.0, "2022-01-17"),
        ("7", "cdw", None, "2022-03-17", "2021-03-10", 3.5, "2022-07-22"),
    ]),
    ({"event": "multiple", "baseline": "roving", "RAW_PIRA": True},
     {"threshold_rule": "pymsprog", "event": "multiple", "baseline": "roving", "pira_raw": True}, [
        ("1", "cdw", "pira", "2022-07-12", "2021-09-23", 5.5, "2022-11-06"),
        ("2", "cdw", "raw", "2021-06-12", "2020-11-26", 4.0, "2021-09-04"),
        ("2", "cdw", "pira", "2022-05-19", "2021-09-04", 5.0, "2022-08-28"),
        ("4", "cdi", None, "2021-12-04", "2021-09-18", 4.5, "2022-03-12"),
        ("4", "cdw", "pira", "2022-07-19", "2022-03-12", 3.5, "2022-10-05"),
        ("5", "cdw", "pira", "2021-11-01", "2021-06-14", 4.0, "2022-01-17"),
        ("6", "cdi", None, "2022-02-15", "2021-10-18", 5.5, "2022-09-03"),
        ("7", "cdw", "pira", "2022-03-17", "2021-03-10", 3.5, "2022-07-22"),
    ]),
    ({"event": "firstCDI"}, {"threshold_rule": "pymsprog", "event": "first_cdi"}, [
        ("4", "cdi", None, "2021-12-04", "2021-09-18", 4.5, "2022-03-12"),
        ("6", "cdi", None, "2022-02-15", "2021-10-18", 5.5, "2022-09-03"),
    ]),
    ({"event": "firstPIRA", "baseline": "roving"}, {"threshold_rule": "pymsprog", "event": "first_pira", "baseline": "roving"}, [
        ("1", "cdw", "pira", "2022-07-12", "2021-09-23", 5.5, "2022-11-06"),
        ("2", "cdw", "pira", "2022-05-19", "2021-09-04", 5.0, "2022-08-28"),
        ("4", "cdw", "pira", "2022-07-19", "2022-03-12", 3.5, "2022-10-05"),
        ("5", "cdw", "pira", "2021-11-01", "2021-06-14", 4.0, "2022-01-17"),
        ("7", "cdw", "pira", "2022-03-17", "2021-03-10", 3.5, "2022-07-22"),
    ]),
    ({"event": "multiple", "conf_days": [84, 168], "RAW_PIRA": True, "relapse_to_bl": 0, "relapse_to_conf": 0},
     {"threshold_rule": "pymsprog", "event": "multiple", "confirmation_days": (84, 168), "pira_raw": True,
      "relapse_to_baseline": (0, 0), "relapse_to_confirmation": (0, 0)}, [
        ("1", "cdw", "pira", "2022-07-12", "2021-09-23", 5.5, "2022-11-06"),
        ("1", "cdw", "pira", "2022-12-10", "2021-09-23", 5.5, "2023-03-11"),
        ("2", "cdw", "raw", "2021-06-12", "2020-11-26", 4.0, "2021-09-04"),
        ("2", "cdw", "pira", "2022-05-19", "2020-11-26", 4.0, "2022-08-28"),
        ("4", "cdi", None, "2021-12-04", "2021-09-18", 4.5, "2022-03-12"),
        ("5", "cdw", "pira", "2021-11-01", "2021-06-14", 4.0, "2022-01-17"),
        ("5", "cdw", "pira", "2022-04-30", "2021-06-14", 4.0, "2022-11-09"),
        ("5", "cdw", "pira", "2022-12-15", "2021-06-14", 4.0, "2023-03-13"),
        ("6", "cdi", None, "2022-02-15", "2021-10-18", 5.5, "2022-09-03"),
        ("7", "cdw", "pira", "2022-03-17", "2021-03-10", 3.5, "2022-07-22"),
        ("7", "cdw", "pira", "2022-10-06", "2021-03-10", 3.5, "2023-01-13"),
    ]),
]


def _day(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


@pytest.mark.parametrize("kwargs, settings, expected", TOY_CASES, ids=[str(c[0]) for c in TOY_CASES])
def test_engine_reproduces_pymsprog_on_its_toy_data(kwargs, settings, expected):
    ids = sorted(TOY_VISITS)
    code = np.array([ids.index(p) for p in ids for _ in TOY_VISITS[p]])
    days = np.array([_day(d) for p in ids for d, _ in TOY_VISITS[p]])
    values = np.array([v for p in ids for _, v in TOY_VISITS[p]], dtype=float)
    r_code = np.array([ids.index(p) for p, _ in TOY_RELAPSES])
    r_day = np.array([_day(d) for _, d in TOY_RELAPSES])
    frame = detect_events(code, days, values, len(ids), r_code, r_day, EventSettings(**settings))

    def text(d):
        return None if d < 0 else str(np.datetime64(int(d), "D"))

    got = [(ids[r.code], r.event_type, r.cdw_type if isinstance(r.cdw_type, str) else None, text(r.day),
            text(r.baseline_day), r.baseline_value, text(r.confirmation_day)) for r in frame.itertuples()]
    assert got == expected


# --------------------------------------------------------------------------- one patient's records only


def _random_registry(n: int, seed: int):
    rng = np.random.default_rng(seed)
    visits = rng.integers(2, 14, n)
    code = np.repeat(np.arange(n), visits)
    gaps = rng.integers(30, 200, code.size)
    start = np.r_[0, np.cumsum(visits)[:-1]]
    day = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[start] - gaps[start], visits)
    steps = rng.choice([-1.0, -0.5, 0, 0, 0, 0.5, 1.0, 1.5], code.size)
    value = np.clip(np.repeat(rng.choice([0, 1.0, 2.0, 3.5, 5.5, 6.0], n), visits) + np.cumsum(steps)
                    - np.repeat(np.cumsum(steps)[start] - steps[start], visits), 0, 9.5)
    r_code = rng.integers(0, n, n)
    r_day = rng.integers(-100, int(day.max()), n)
    return code, day, value, r_code, r_day


@pytest.mark.parametrize("settings", [
    {"event": "multiple", "baseline": "roving", "pira_raw": True},
    {"event": "first_pira", "confirmation_days": (84, 168), "sustained_days": 120.0},
    {"event": "first", "baseline": "roving_improvement", "check_intermediate": False, "last_visit": "always"},
])
def test_each_patients_events_depend_on_its_own_records_only(settings):
    # the map step: events derived for every patient at once equal those derived for each half alone
    code, day, value, r_code, r_day = _random_registry(300, seed=5)
    s = EventSettings(**settings)
    whole = detect_events(code, day, value, 300, r_code, r_day, s)
    parts = []
    for half in (np.arange(300) < 150, np.arange(300) >= 150):
        keep, r_keep = half[code], half[r_code]
        parts.append(detect_events(code[keep], day[keep], value[keep], 300, r_code[r_keep], r_day[r_keep], s))
    assert len(whole) > 50
    pd.testing.assert_frame_equal(whole, pd.concat(parts, ignore_index=True))


# --------------------------------------------------------------------------- milestone

# pymsprog.value_milestone(visits, milestone, subj_col="id", value_col="EDSS", date_col="date",
# outcome="edss", relapse=relapses, verbose=0, **kwargs) on the toy data (pymsprog 1.0.7): the date
# of the confirmed milestone per patient 1..7 (None = not observed).
TOY_MILESTONES = [
    (5.0, {}, {}, ["2021-09-23", "2021-06-12", None, "2022-07-19", "2021-11-01", "2022-10-05", "2023-01-13"]),
    (6.0, {}, {}, ["2022-07-12", "2022-05-19", None, None, None, None, None]),
    (5.0, {"relapse_to_conf": 0, "conf_tol_days": [7, 7]},
     {"relapse_to_confirmation": (0.0, 0.0), "tolerance": (7.0, 7.0)},
     [None, "2021-06-12", None, "2022-07-19", "2021-11-01", "2022-10-05", None]),
    (4.5, {"require_sust_days": 200}, {"sustained_days": 200.0},
     ["2021-09-23", "2021-03-24", None, "2022-07-19", "2021-11-01", "2021-10-18", "2022-03-17"]),
]


@pytest.mark.parametrize("milestone, kwargs, settings, expected", TOY_MILESTONES, ids=[f"{c[0]}{c[1]}" for c in TOY_MILESTONES])
def test_milestone_scan_reproduces_pymsprog_value_milestone(milestone, kwargs, settings, expected):
    from endpointkit.plugins.disability_engine import MilestoneSettings, detect_milestone

    ids = sorted(TOY_VISITS)
    code = np.array([ids.index(p) for p in ids for _ in TOY_VISITS[p]])
    days = np.array([_day(d) for p in ids for d, _ in TOY_VISITS[p]])
    values = np.array([v for p in ids for _, v in TOY_VISITS[p]], dtype=float)
    r_code = np.array([ids.index(p) for p, _ in TOY_RELAPSES])
    r_day = np.array([_day(d) for _, d in TOY_RELAPSES])
    hit = detect_milestone(code, days, values, len(ids), r_code, r_day, MilestoneSettings(milestone=milestone, **settings))
    assert [None if h < 0 else str(np.datetime64(int(days[h]), "D")) for h in hit] == expected


def test_disability_milestone_endpoint():
    from endpointkit.plugins.disability_events import DisabilityMilestone

    # a: 6.0 on day 100 confirmed on day 200 (window day 177..): reached at 100 days.
    # b: 6.0 on day 100, 5.5 on day 150 (before the window) -> not confirmed; last visit day 400.
    cohort = cohort_of({"a": [(0, 4.0), (100, 6.0), (200, 6.5)], "b": [(0, 4.0), (100, 6.0), (150, 5.5), (400, 6.0)]})
    result = DisabilityMilestone().compute(cohort, params_for(DisabilityMilestone, landmarks_months=[6]), make_context())
    frame = result.per_patient.set_index("patient_id")
    assert list(frame["reached"]) == [True, False]
    assert frame["time_months"].tolist() == pytest.approx([100 / (365.25 / 12), 400 / (365.25 / 12)])
    assert (row(result, "milestone").count, row(result, "milestone").n) == (1, 2)
    assert row(result, "time_to_milestone_at_6m").estimate == pytest.approx(0.5)  # 1 - S(183 days) = 1 - 1/2

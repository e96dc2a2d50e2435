"""The ``safety`` endpoint: treatment-emergent adverse events (endpoints.md, pinned detail 9).

Every patient starts IVIG on 2020-01-01 (index) and stops on 2020-12-31 (follow-up end under the
default ``treatment_end`` rule), i.e. 365 days of follow-up, unless a test says otherwise. The
default treatment-emergent window therefore ends on 2020-12-31 + 30 days = 2021-01-30.
"""

from __future__ import annotations

import math

import pytest
from scipy import stats

from endpointkit.errors import SpecError
from endpointkit.plugins import safety as safety_module
from endpointkit.plugins.safety import Safety
from endpointkit.testing import make_cohort, make_context, params_for, row

INDEX, END = "2020-01-01", "2020-12-31"


def cohort_of(patient_ids, adverse_events=None, ends=None):
    """Patients on IVIG from INDEX to END (or ends[pid]), with the given adverse-event records."""
    ends = ends or {}
    tables = {
        "patients": [{"patient_id": p} for p in patient_ids],
        "treatments": [
            {"patient_id": p, "treatment": "IVIG", "start_date": INDEX, "end_date": ends.get(p, END)}
            for p in patient_ids
        ],
        # one infusion per patient on the index day (does not change index or follow-up end)
        "administrations": [{"patient_id": p, "treatment": "IVIG", "date": INDEX} for p in patient_ids],
    }
    if adverse_events is not None:
        tables["adverse_events"] = adverse_events
    return make_cohort(**tables)


def ae(pid, onset, term="Headache", grade=None, serious=None, action=None):
    return {"patient_id": pid, "onset_date": onset, "term": term, "grade": grade, "serious": serious, "action": action}


def compute(cohort, ctx=None, **params):
    return Safety().compute(cohort, params_for(Safety, **params), ctx or make_context())


def assert_exact_proportion(r, count, n):
    """count/n with the Clopper-Pearson CI computed here from scipy directly."""
    ci = stats.binomtest(count, n).proportion_ci(confidence_level=0.95, method="exact")
    assert (r.stat, r.count, r.n) == ("proportion", count, n)
    assert r.estimate == pytest.approx(count / n)
    assert r.low == pytest.approx(ci.low)
    assert r.high == pytest.approx(ci.high)
    assert r.interval == "95% CI"


# --------------------------------------------------------------------------- parameters and plugin


def test_parameters_are_the_contract_names_values_and_defaults():
    params = params_for(Safety)
    assert Safety.param_names() == ["te_window_days", "severe", "by_term", "denominator"]
    assert (params.te_window_days, params.severe, params.by_term, params.denominator) == (
        30, "grade_ge3_or_serious", False, "patients")
    for severe in ("grade_ge3_or_serious", "grade_ge3", "serious"):
        assert params_for(Safety, severe=severe).severe == severe
    for denominator in ("patients", "per_100_patient_years"):
        assert params_for(Safety, denominator=denominator).denominator == denominator
    with pytest.raises(SpecError):
        params_for(Safety, severe="grade_ge4")
    with pytest.raises(SpecError):
        params_for(Safety, te_window_days=-1)
    with pytest.raises(SpecError):
        params_for(Safety, denominator="per_100py")


def test_plugin_registration_and_headline():
    assert safety_module.register_endpoints() == [Safety]
    assert Safety.name == "safety"
    assert Safety.requires == ("adverse_events",)
    assert Safety.headline == ("any_ae", "severe_ae", "severe_ae_led_to_discontinuation")


# --------------------------------------------------------------------------- treatment-emergent window


BOUNDARY_EVENTS = [
    ae("p1", "2019-12-31"),  # day before index: not treatment-emergent
    ae("p1", "2020-01-01"),  # index day: counts
    ae("p1", "2020-12-31"),  # follow-up end: counts
    ae("p1", "2021-01-30"),  # follow-up end + 30 days: counts
    ae("p1", "2021-01-31"),  # follow-up end + 31 days: does not count
]


def test_window_includes_index_day_and_follow_up_end_plus_30_days():
    # p1: 3 events in [2020-01-01, 2021-01-30]; 1 before index, 1 on day +31. p2: no records.
    result = compute(cohort_of(["p1", "p2"], BOUNDARY_EVENTS))
    events = row(result, "events")
    assert (events.stat, events.estimate, events.n) == ("count", 3, 2)
    assert_exact_proportion(row(result, "any_ae"), 1, 2)
    p1 = result.per_patient.set_index("patient_id").loc["p1"]
    assert (p1["te_events"], p1["events_outside_window"]) == (3, 2)
    assert str(p1["te_window_end"].date()) == "2021-01-30"
    assert any("2 adverse event(s) outside" in n and "1 before index, 1 after" in n for n in result.notes)


def test_window_length_follows_te_window_days():
    cohort = cohort_of(["p1"], BOUNDARY_EVENTS)
    # 31 days: the day +31 event joins (4 events); 0 days: index day and follow-up end only (2 events)
    assert row(compute(cohort, te_window_days=31), "events").estimate == 4
    assert row(compute(cohort, te_window_days=0), "events").estimate == 2


def test_patient_with_only_pre_index_events_has_no_ae():
    result = compute(cohort_of(["p1"], [ae("p1", "2019-06-01", grade="4", serious="yes", action="discontinued")]))
    for measure in ("any_ae", "severe_ae", "serious_ae", "ae_led_to_discontinuation", "severe_ae_led_to_discontinuation"):
        assert_exact_proportion(row(result, measure), 0, 1)
    assert row(result, "events").estimate == 0


# --------------------------------------------------------------------------- severity rules


# p1: grade 3, not serious, action " Discontinued "  -> grade >= 3; led to discontinuation
# p2: grade 2, serious                                 -> serious only
# p3: grade and serious missing, action blank          -> an AE, never severe or serious
# p4: grade 4 (continued) and, separately, grade 1 that led to discontinuation
#     -> severe (grade) and led to discontinuation, but no single severe event led to it
# p5: no adverse event
# p6: grade 5, serious, action "DISCONTINUED"         -> everything
SEVERITY_EVENTS = [
    ae("p1", "2020-03-01", grade="3", serious="no", action=" Discontinued "),
    ae("p2", "2020-03-01", grade="2", serious="yes", action="dose reduced"),
    ae("p3", "2020-03-01"),
    ae("p4", "2020-03-01", grade="4", serious="no", action="none"),
    ae("p4", "2020-04-01", grade="1", serious="no", action="discontinued"),
    ae("p6", "2020-03-01", grade="5", serious="true", action="DISCONTINUED"),
]
SEVERITY_PATIENTS = ["p1", "p2", "p3", "p4", "p5", "p6"]


@pytest.mark.parametrize(
    ("severe", "severe_count", "severe_discontinued"),
    [
        # grade >= 3 or serious: p1, p2, p4, p6 severe; severe event that led to stop: p1, p6
        ("grade_ge3_or_serious", 4, 2),
        # grade >= 3: p1, p4, p6; severe event that led to stop: p1, p6
        ("grade_ge3", 3, 2),
        # serious: p2, p6; severe event that led to stop: p6 (p1's grade-3 event is not serious)
        ("serious", 2, 1),
    ],
)
def test_severe_rule(severe, severe_count, severe_discontinued):
    result = compute(cohort_of(SEVERITY_PATIENTS, SEVERITY_EVENTS), severe=severe)
    n = 6  # every patient of the endpoint, p5 (no records) included
    assert_exact_proportion(row(result, "any_ae"), 5, n)  # all but p5
    assert_exact_proportion(row(result, "severe_ae"), severe_count, n)
    assert_exact_proportion(row(result, "serious_ae"), 2, n)  # p2, p6 whatever the rule
    assert_exact_proportion(row(result, "ae_led_to_discontinuation"), 3, n)  # p1, p4, p6
    assert_exact_proportion(row(result, "severe_ae_led_to_discontinuation"), severe_discontinued, n)
    events = row(result, "events")
    assert (events.estimate, events.n) == (6, 6)  # 1 + 1 + 1 + 2 + 0 + 1


def test_rows_and_order_with_default_parameters():
    result = compute(cohort_of(SEVERITY_PATIENTS, SEVERITY_EVENTS))
    assert [r.measure for r in result.rows] == [
        "any_ae", "severe_ae", "serious_ae", "ae_led_to_discontinuation",
        "severe_ae_led_to_discontinuation", "events",
    ]
    assert all(r.label and r.group == "all" for r in result.rows)
    assert result.excluded == {}
    assert any("grade >= 3 or serious" in n for n in result.notes)


def test_per_patient_frame_traces_every_flag():
    result = compute(cohort_of(SEVERITY_PATIENTS, SEVERITY_EVENTS))
    frame = result.per_patient
    assert list(frame["patient_id"]) == SEVERITY_PATIENTS
    assert frame.columns[0] == "patient_id"
    by = frame.set_index("patient_id")
    assert list(by["te_events"]) == [1, 1, 1, 2, 0, 1]
    assert list(by["severe_events"]) == [1, 1, 0, 1, 0, 1]
    assert list(by["serious_events"]) == [0, 1, 0, 0, 0, 1]
    assert list(by["any_ae"]) == [True, True, True, True, False, True]
    assert list(by["severe_ae"]) == [True, True, False, True, False, True]
    assert list(by["serious_ae"]) == [False, True, False, False, False, True]
    assert list(by["ae_led_to_discontinuation"]) == [True, False, False, True, False, True]
    assert list(by["severe_ae_led_to_discontinuation"]) == [True, False, False, False, False, True]
    # worst grade: missing when no event or no graded event (p3, p5)
    assert by["worst_grade"].tolist()[:2] == [3.0, 2.0]
    assert math.isnan(by.loc["p3", "worst_grade"]) and math.isnan(by.loc["p5", "worst_grade"])
    assert (by.loc["p4", "worst_grade"], by.loc["p6", "worst_grade"]) == (4.0, 5.0)
    # 365 days of follow-up / 365.25
    assert by["exposure_years"].tolist() == pytest.approx([365 / 365.25] * 6)


def test_no_adverse_event_records_at_all():
    # an empty adverse_events table, and no adverse_events table: every patient has no AE
    for cohort in (cohort_of(["p1", "p2"], []), cohort_of(["p1", "p2"])):
        result = compute(cohort, by_term=True, denominator="per_100_patient_years")
        assert_exact_proportion(row(result, "any_ae"), 0, 2)
        assert row(result, "events").estimate == 0
        assert not any(r.measure.startswith("term:") for r in result.rows)
        assert list(result.per_patient["te_events"]) == [0, 0]


# --------------------------------------------------------------------------- denominator


def test_per_100_patient_years_rates_with_exact_poisson_ci():
    # p1: follow-up 2020-01-01 -> 2020-12-31 = 365 days; events on 2020-02-01 (grade 3),
    #     2020-06-01 (grade 1) and 2021-01-15 (after follow-up end, inside the 30-day window: counted)
    # p2: follow-up 2020-01-01 -> 2021-06-30 = 366 + 180 = 546 days; one grade-2 event
    # events = 4, severe events = 1 (grade >= 3 or serious)
    # person-years = (365 + 546) / 365.25 = 911 / 365.25 (the 30-day window is NOT exposure)
    events = [
        ae("p1", "2020-02-01", grade="3"), ae("p1", "2020-06-01", grade="1"),
        ae("p1", "2021-01-15", grade="1"), ae("p2", "2020-05-01", grade="2"),
    ]
    cohort = cohort_of(["p1", "p2"], events, ends={"p2": "2021-06-30"})
    result = compute(cohort, denominator="per_100_patient_years")
    py = 911 / 365.25
    for measure, k in (("events_per_100py", 4), ("severe_events_per_100py", 1)):
        r = row(result, measure)
        assert (r.stat, r.count, r.n, r.interval) == ("rate", k, 2, "95% CI")
        assert r.estimate == pytest.approx(100 * k / py)
        assert r.low == pytest.approx(100 * stats.chi2.ppf(0.025, 2 * k) / (2 * py))
        assert r.high == pytest.approx(100 * stats.chi2.ppf(0.975, 2 * k + 2) / (2 * py))
    assert result.per_patient["exposure_years"].sum() == pytest.approx(py)
    assert any("without the 30-day" in n for n in result.notes)
    # the patient proportions are still there
    assert_exact_proportion(row(result, "any_ae"), 2, 2)
    # and the default denominator adds no rate rows
    assert not any(r.stat == "rate" for r in compute(cohort).rows)


def test_rate_with_no_severe_event_has_zero_lower_limit_and_uses_year_days():
    # one grade-1 event; follow-up 365 days with year_days = 365 -> exactly 1 person-year
    result = compute(cohort_of(["p1"], [ae("p1", "2020-02-01", grade="1")]), make_context(year_days=365),
                     denominator="per_100_patient_years")
    r = row(result, "severe_events_per_100py")
    assert (r.estimate, r.low) == (0.0, 0.0)
    assert r.high == pytest.approx(100 * stats.chi2.ppf(0.975, 2) / 2)  # = 100 x 3.689 / 2
    assert row(result, "events_per_100py").estimate == pytest.approx(100.0)


# --------------------------------------------------------------------------- by term


# Rash: p3 (grade missing), p4 (grade 3), p5 (grade 2)       -> 3/6 patients, worst grade >= 3: 1/6 (p4)
# headache: p1 twice (grades 1 and 3: one patient, worst 3), p2 (grade 2)
#                                                            -> 2/6, worst grade >= 3: 1/6 (p1)
# Nausea: p3 (grade 1), p5 (grade 4)                         -> 2/6, worst grade >= 3: 1/6 (p5)
# Infusion reaction: only before index                       -> no row
# p6: no adverse event. Spelling shown: the first one in the file ("headache " stripped).
TERM_EVENTS = [
    ae("p1", "2020-02-01", term="headache ", grade="1"),
    ae("p1", "2020-03-01", term="Headache", grade="3"),
    ae("p2", "2020-03-01", term="HEADACHE", grade="2"),
    ae("p3", "2020-03-01", term="Rash"),
    ae("p4", "2020-03-01", term="rash", grade="3"),
    ae("p5", "2020-03-01", term=" RASH", grade="2"),
    ae("p3", "2020-04-01", term="Nausea", grade="1"),
    ae("p5", "2020-04-01", term="nausea", grade="4"),
    ae("p2", "2019-12-01", term="Infusion reaction", grade="4"),
]


def test_by_term_rows_count_each_patient_once_per_term():
    result = compute(cohort_of(["p1", "p2", "p3", "p4", "p5", "p6"], TERM_EVENTS), by_term=True)
    terms = [r.measure for r in result.rows if r.measure.startswith("term:")]
    # most frequent first, ties alphabetical ignoring case (headache before Nausea)
    assert terms == [
        "term:Rash", "term:Rash:grade_ge3",
        "term:headache", "term:headache:grade_ge3",
        "term:Nausea", "term:Nausea:grade_ge3",
    ]
    assert_exact_proportion(row(result, "term:Rash"), 3, 6)
    assert_exact_proportion(row(result, "term:Rash:grade_ge3"), 1, 6)
    assert_exact_proportion(row(result, "term:headache"), 2, 6)
    assert_exact_proportion(row(result, "term:headache:grade_ge3"), 1, 6)
    assert_exact_proportion(row(result, "term:Nausea"), 2, 6)
    assert_exact_proportion(row(result, "term:Nausea:grade_ge3"), 1, 6)
    by = result.per_patient.set_index("patient_id")
    assert list(by["term:headache:events"]) == [2, 1, 0, 0, 0, 0]
    assert by.loc["p1", "term:headache:worst_grade"] == 3.0
    assert list(by["term:Rash:events"]) == [0, 0, 1, 1, 1, 0]
    assert math.isnan(by.loc["p3", "term:Rash:worst_grade"])
    assert not any("Infusion" in c for c in by.columns)


def test_by_term_false_adds_no_term_rows():
    result = compute(cohort_of(["p1", "p2", "p3", "p4", "p5", "p6"], TERM_EVENTS))
    assert not any(r.measure.startswith("term:") for r in result.rows)
    assert not any(c.startswith("term:") for c in result.per_patient.columns)
    assert row(result, "events").estimate == 8  # the pre-index Infusion reaction is not counted

"""``disability_events`` on the other scales: timed 25-foot walk, 9-hole peg test and SDMT.

The values come from the long ``measurements`` table (``patient_id, date, scale, value``). Every
expected event below is worked by hand (arithmetic in the comments). A patient starts IVIG on
2020-01-01 (index, day 0), follow-up ends on day 1000; dates are day offsets from index. The default
confirmation is 84 days with tolerance -7/+730.5, so a visit 77 to 814.5 days after the change confirms.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from endpointkit.errors import DataError
from endpointkit.plugins.disability_engine import EventSettings, change_threshold
from endpointkit.plugins.disability_events import DisabilityEvents
from endpointkit.testing import make_cohort, make_context, make_data, params_for, row

INDEX = date(2020, 1, 1)


def day(offset: int) -> str:
    return (INDEX + timedelta(days=offset)).isoformat()


def cohort_of(scale: str, patients: dict[str, list[tuple[int, float]]], *, extra: list[dict] | None = None,
              relapses: dict[str, list[int]] | None = None):
    """A cohort whose only disability data are ``scale`` measurements (no edss table at all)."""
    return make_cohort(
        patients=[{"patient_id": p} for p in patients],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": day(0), "end_date": day(1000)} for p in patients],
        measurements=[{"patient_id": p, "date": day(d), "scale": scale, "value": str(v)}
                      for p, values in patients.items() for d, v in values] + (extra or []),
        relapses=[{"patient_id": p, "onset_date": day(d)} for p, onsets in (relapses or {}).items() for d in onsets],
    )


def run(cohort, **params):
    return DisabilityEvents().compute(cohort, params_for(DisabilityEvents, **params), make_context())


def events(result) -> list[tuple]:
    """(patient, type, event day, baseline value, value, confirmation day)."""
    f = result.per_patient
    f = f[f["event_number"] > 0]
    return [(r.patient_id, r.event_type, (r.date.date() - INDEX).days, r.baseline_value, r.value,
             (r.confirmation_date.date() - INDEX).days) for r in f.itertuples()]


# --------------------------------------------------------------------------- thresholds


def test_thresholds_by_scale():
    # T25FW / 9HPT: 20% of the reference; SDMT: 4 points or 10%, whichever is smaller.
    timed = change_threshold(EventSettings(scale="t25fw", change_percent=20), [5.0, 10.0])
    sdmt = change_threshold(EventSettings(scale="sdmt", change_percent=10, change_points=4), [30.0, 40.0, 60.0])
    assert timed == pytest.approx([1.0, 2.0])
    assert sdmt == pytest.approx([3.0, 4.0, 4.0])


def test_defaults_follow_the_literature():
    p = params_for(DisabilityEvents)
    assert (p.scale, p.timed_change_percent, p.sdmt_change_points, p.sdmt_change_percent) == ("edss", 20, 4, 10)


def test_the_endpoint_needs_the_measurements_table_not_edss_on_another_scale():
    assert DisabilityEvents.requires_for(params_for(DisabilityEvents)) == ("edss",)
    assert DisabilityEvents.requires_for(params_for(DisabilityEvents, scale="sdmt")) == ("measurements",)


# --------------------------------------------------------------------------- timed 25-foot walk


def test_t25fw_worsening_of_20_percent_confirmed():
    cohort = cohort_of("t25fw", {
        # 5.0 -> 6.0 is +1.0 = 20% of 5.0: a change; 6.2 on day 200 (100 days later) still >= 6.0: CDW.
        "a": [(0, 5.0), (100, 6.0), (200, 6.2)],
        # 5.0 -> 5.9 is +18%: no change; 6.1 (+22%) on day 200, confirmed by 6.5 on day 300.
        "b": [(0, 5.0), (100, 5.9), (200, 6.1), (300, 6.5)],
        # 6.5 -> 7.8 is exactly +20% (1.3 s; binary rounding must not lose it), kept on day 200.
        "c": [(0, 6.5), (100, 7.8), (200, 7.8)],
        # +40% on day 100 but back to 5.5 (+10%) on day 200: not confirmed, and nothing after.
        "d": [(0, 5.0), (100, 7.0), (200, 5.5)],
    })
    result = run(cohort, scale="t25fw")
    assert events(result) == [("a", "cdw", 100, 5.0, 6.0, 200), ("b", "cdw", 200, 5.0, 6.1, 300),
                              ("c", "cdw", 100, 6.5, 7.8, 200)]
    assert row(result, "cdw").count == 3 and row(result, "cdw").n == 4


def test_a_faster_walk_is_an_improvement_not_a_worsening():
    # 10.0 -> 8.0 s is -2.0 = 20% of 10.0: an improvement, confirmed by 7.9 on day 190.
    cohort = cohort_of("t25fw", {"a": [(0, 10.0), (100, 8.0), (190, 7.9)]})
    assert events(run(cohort, scale="t25fw")) == []
    assert events(run(cohort, scale="t25fw", event="first_cdi")) == [("a", "cdi", 100, 10.0, 8.0, 190)]


def test_the_percentage_is_a_setting():
    # +15% (5.0 -> 5.75) counts with timed_change_percent 15, not with the default 20.
    cohort = cohort_of("t25fw", {"a": [(0, 5.0), (100, 5.75), (200, 5.8)]})
    assert events(run(cohort, scale="t25fw")) == []
    assert events(run(cohort, scale="t25fw", timed_change_percent=15)) == [("a", "cdw", 100, 5.0, 5.75, 200)]


# --------------------------------------------------------------------------- 9-hole peg test


def test_9hpt_uses_its_own_rows_and_the_edss_baseline_rule():
    other = [{"patient_id": "a", "date": day(d), "scale": "T25FW", "value": "99"} for d in (0, 100, 200)]
    cohort = cohort_of("9HPT ", {  # scale names are compared without case or surrounding spaces
        # Baseline = the latest value in [index - 365, index]: 20.0 on day -10 (not 30.0 on day -400).
        # 20.0 -> 23.0 on day 90 is +15%: no change; 24.0 on day 180 (+20%), confirmed by 25.0 on day 270.
        "a": [(-400, 30.0), (-10, 20.0), (90, 23.0), (180, 24.0), (270, 25.0)],
    }, extra=other)
    result = run(cohort, scale="9hpt")
    assert events(result) == [("a", "cdw", 180, 20.0, 24.0, 270)]
    f = result.per_patient
    assert (f["baseline_date"].iloc[0].date() - INDEX).days == -10 and f["visits"].iloc[0] == 4


def test_roving_baseline_on_9hpt():
    # Roving: after the CDW at day 100 (20 -> 24, confirmed day 200 at 24.5) the reference moves to the
    # confirmation visit (24.5); 29.4 on day 300 is +4.9 = 20% of 24.5, confirmed by 30.0 on day 400.
    cohort = cohort_of("9hpt", {"a": [(0, 20.0), (100, 24.0), (200, 24.5), (300, 29.4), (400, 30.0)]})
    assert events(run(cohort, scale="9hpt", event="multiple", baseline="roving")) == [
        ("a", "cdw", 100, 20.0, 24.0, 200), ("a", "cdw", 300, 24.5, 29.4, 400)]


# --------------------------------------------------------------------------- SDMT


def test_sdmt_drop_of_4_points_or_10_percent():
    cohort = cohort_of("sdmt", {
        # reference 50: threshold min(4, 5.0) = 4; 46 is a drop of 4, confirmed by 45 on day 200.
        "a": [(0, 50), (100, 46), (200, 45)],
        # reference 30: threshold min(4, 3.0) = 3; 27 is a drop of 3 (10%), kept on day 200.
        "b": [(0, 30), (100, 27), (200, 27)],
        # reference 50: a drop of 3 is neither 4 points nor 10% (5): no event.
        "c": [(0, 50), (100, 47), (200, 47)],
        # a rise of 5 is an improvement on SDMT, never a worsening.
        "d": [(0, 50), (100, 55), (200, 56)],
    })
    result = run(cohort, scale="sdmt")
    assert events(result) == [("a", "cdw", 100, 50.0, 46.0, 200), ("b", "cdw", 100, 30.0, 27.0, 200)]
    assert (row(result, "cdw").count, row(result, "cdw").n) == (2, 4)
    assert events(run(cohort, scale="sdmt", event="first_cdi")) == [("d", "cdi", 100, 50.0, 55.0, 200)]
    # with 3 points, c's drop of 3 counts too
    assert [e[0] for e in events(run(cohort, scale="sdmt", sdmt_change_points=3))] == ["a", "b", "c"]


def test_sdmt_pira_and_raw():
    # Both drop 50 -> 44 on day 200, confirmed on day 300. a: a relapse on day 150 (50 days before the
    # event, within relapse_assoc 90): RAW. b: no relapse: PIRA.
    cohort = cohort_of("sdmt", {"a": [(0, 50), (200, 44), (300, 44)], "b": [(0, 50), (200, 44), (300, 44)]},
                       relapses={"a": [150]})
    result = run(cohort, scale="sdmt", pira_raw=True)
    f = result.per_patient
    assert dict(zip(f["patient_id"], f["cdw_type"], strict=True)) == {"a": "raw", "b": "pira"}
    assert (row(result, "raw").count, row(result, "pira").count) == (1, 1)


def test_patients_without_values_on_the_scale_are_excluded_and_named():
    cohort = make_cohort(
        patients=[{"patient_id": p} for p in "abc"],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": day(0), "end_date": day(1000)} for p in "abc"],
        measurements=[{"patient_id": "a", "date": day(d), "scale": "sdmt", "value": v} for d, v in ((0, 50), (100, 46), (200, 45))]
        + [{"patient_id": "b", "date": day(0), "scale": "sdmt", "value": 50},
           {"patient_id": "c", "date": day(0), "scale": "t25fw", "value": 5}],
    )
    result = run(cohort, scale="sdmt")
    assert result.excluded == {
        "no SDMT score after the baseline SDMT score up to follow-up end": ["b"],
        "no SDMT score in the baseline window [index - 365 days, index + 30 days]": ["c"],
    }
    assert (row(result, "cdw").count, row(result, "cdw").n) == (1, 1)
    assert any("4 points or 10%" in note for note in result.notes)


# --------------------------------------------------------------------------- the measurements table


def _measurements(value: str, scale: str = "t25fw", when: str = "2020-01-01") -> None:
    make_data(patients=[{"patient_id": "a"}],
              measurements=[{"patient_id": "a", "date": "2020-01-01", "scale": "sdmt", "value": "50"},
                            {"patient_id": "a", "date": when, "scale": scale, "value": value}])


@pytest.mark.parametrize("value, scale, when, column, expected", [
    ("fast", "t25fw", "2020-01-01", "value", "expected a number"),
    ("-1", "sdmt", "2020-01-01", "value", "expected a number >= 0"),
    ("0", "t25fw", "2020-01-01", "value", "expected a time in seconds > 0"),
    ("0", "9HPT", "2020-01-01", "value", "expected a time in seconds > 0"),
    ("111", "sdmt", "2020-01-01", "value", "expected an SDMT score 0-110"),
    ("5", "t25fw", "2020-02-30", "date", "expected a date YYYY-MM-DD that exists"),
    ("", "t25fw", "2020-01-01", "value", "expected a value"),
])
def test_bad_measurements_name_table_line_and_column(value, scale, when, column, expected):
    with pytest.raises(DataError) as error:
        _measurements(value, scale, when)
    text = str(error.value)
    assert "measurements" in text and "line 3" in text and column in text and expected in text


def test_other_scales_are_kept_but_not_checked():
    data = make_data(patients=[{"patient_id": "a"}],
                     measurements=[{"patient_id": "a", "date": "2020-01-01", "scale": "MSFC", "value": "0"}])
    assert data.tables["measurements"]["scale"].tolist() == ["msfc"]

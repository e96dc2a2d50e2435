"""Cohort building: index date, follow-up end rules, cut-off, criteria, relapse cleaning, attrition."""

import pandas as pd
import pytest

from endpointkit.spec import Criterion
from endpointkit.testing import make_cohort, make_settings

P = [
    {"patient_id": "a", "sex": "F", "antibody_status": "positive", "last_followup_date": "2019-06-30"},
    {"patient_id": "b", "sex": "F", "antibody_status": "negative", "last_followup_date": "2019-06-30"},
    {"patient_id": "c", "sex": "M", "antibody_status": "positive", "last_followup_date": None},
    {"patient_id": "d", "sex": "F", "antibody_status": "positive", "last_followup_date": "2019-06-30"},
]
T = [
    {"patient_id": "a", "treatment": "IVIG", "start_date": "2015-01-01", "end_date": "2016-01-01", "stop_reason": "relapse"},
    {"patient_id": "a", "treatment": "ivig", "start_date": "2017-01-01"},  # a restart: ignored, reported
    {"patient_id": "b", "treatment": "IVIG", "start_date": "2015-01-01"},
    {"patient_id": "c", "treatment": "IVIG", "start_date": "2015-01-01"},
    {"patient_id": "d", "treatment": "azathioprine", "start_date": "2012-01-01"},
]
A = [
    {"patient_id": "b", "treatment": "IVIG", "date": "2015-01-01"},
    {"patient_id": "b", "treatment": "IVIG", "date": "2018-01-01"},
    {"patient_id": "c", "treatment": "IVIG", "date": "2015-01-01"},
    {"patient_id": "c", "treatment": "IVIG", "date": "2015-06-01"},
]


def test_index_is_the_first_course_and_restarts_are_reported():
    cohort = make_cohort(patients=P, treatments=T, administrations=A)
    pts = cohort.patients.set_index("patient_id")
    assert pts.loc["a", "index_date"] == pd.Timestamp("2015-01-01")
    assert pts.loc["a", "followup_end"] == pd.Timestamp("2016-01-01")
    assert cohort.quality["reason"].str.contains("later course of IVIG").any()
    assert "d" not in pts.index  # never on IVIG


def test_treatment_end_without_end_date_is_last_administration_plus_grace_capped_at_last_followup():
    pts = make_cohort(patients=P, treatments=T, administrations=A).patients.set_index("patient_id")
    # b: last infusion 2018-01-01 + 90 days = 2018-04-01 (before last follow-up 2019-06-30)
    assert pts.loc["b", "treatment_end"] == pd.Timestamp("2018-04-01")
    # c: no last_followup_date -> replaced by the latest recorded date (2015-06-01), which caps 2015-08-30
    assert pts.loc["c", "last_followup"] == pd.Timestamp("2015-06-01")
    assert pts.loc["c", "treatment_end"] == pd.Timestamp("2015-06-01")


def test_last_followup_rule_and_cutoff_cap():
    settings = make_settings(follow_up_end="last_followup", cutoff="2017-12-31")
    cohort = make_cohort(settings, patients=P, treatments=T, administrations=A)
    pts = cohort.patients.set_index("patient_id")
    assert pts.loc["a", "followup_end"] == pd.Timestamp("2017-12-31")
    # the 2018 infusion is after the cut-off and ignored: last infusion 2015-01-01 + 90 days
    assert pts.loc["b", "treatment_end"] == pd.Timestamp("2015-04-01")
    after = cohort.quality[cohort.quality["reason"].str.contains("cut-off")]
    assert set(after["table"]) == {"administrations"}


def test_criteria_apply_in_order_and_attrition_adds_up():
    criteria = (
        Criterion("antibody positive", "where", _expr("antibody_status == 'positive'")),
        Criterion("treated >= 6 months", "min_treatment_months", 6.0),
    )
    cohort = make_cohort(make_settings(criteria=criteria), patients=P, treatments=T, administrations=A)
    attrition = cohort.attrition
    assert attrition["step"].tolist() == [
        "patients in data", "received IVIG", "follow-up end after the index date", "antibody positive", "treated >= 6 months",
    ]
    assert attrition["remaining"].tolist() == [4, 3, 3, 2, 1]
    assert attrition["excluded"].tolist() == [0, 1, 0, 1, 1]
    # c: 2015-01-01 .. 2015-06-01 = 151 days = 4.96 months < 6
    assert cohort.patients["patient_id"].tolist() == ["a"]
    excluded = cohort.quality[cohort.quality["action"] == "excluded"]
    assert excluded["patient_id"].tolist() == ["b", "c", "d"]  # the report's order: table, then source line
    assert excluded["reason"].tolist() == ["did not meet criterion 'antibody positive'",
                                           "did not meet criterion 'treated >= 6 months'",
                                           "did not meet criterion 'received IVIG'"]


def _expr(text):
    from endpointkit.expr import Expression

    return Expression(text, "cohort.criteria[0].where")


RELAPSES = [
    {"patient_id": "a", "onset_date": "2014-01-01"},
    {"patient_id": "a", "onset_date": "2014-01-20"},  # 19 days after a kept onset: merged
    {"patient_id": "a", "onset_date": "2014-02-10"},  # 40 days after the last KEPT onset: kept (greedy)
    {"patient_id": "a", "onset_date": "2014-03-11"},  # 29 days after 02-10: merged
    {"patient_id": "a", "onset_date": "2014-04-11"},  # 60 days after 02-10: kept
    {"patient_id": "a", "onset_date": "2014-06-01", "pseudo": "yes"},
    {"patient_id": "c", "onset_date": "2014-05-01"},
    {"patient_id": "c", "onset_date": "2014-05-31"},  # exactly 30 days: separate
]


def test_relapse_merging_is_greedy_against_the_last_kept_onset():
    cohort = make_cohort(patients=P, treatments=T, administrations=A, relapses=RELAPSES)
    kept = cohort.table("relapses")
    assert kept.groupby("patient_id")["onset_date"].apply(lambda s: s.dt.strftime("%m-%d").tolist()).to_dict() == {
        "a": ["01-01", "02-10", "04-11"], "c": ["05-01", "05-31"],
    }
    quality = cohort.quality
    assert (quality["action"] == "merged").sum() == 2
    assert (quality["action"] == "dropped").sum() == 1


@pytest.mark.parametrize(("merge", "kept"), [(0, 5), (20, 4), (30, 3), (90, 2)])
def test_merge_window_setting(merge, kept):
    cohort = make_cohort(make_settings(merge_within_days=merge), patients=P, treatments=T, administrations=A, relapses=RELAPSES)
    assert (cohort.table("relapses")["patient_id"] == "a").sum() == kept


def test_pseudo_relapses_kept_when_asked_and_confirmed_only_filter():
    kept = make_cohort(make_settings(exclude_pseudo=False), patients=P, treatments=T, administrations=A, relapses=RELAPSES)
    assert (kept.table("relapses")["patient_id"] == "a").sum() == 4
    confirmed = [dict(r, confirmed="yes" if r["onset_date"] == "2014-01-01" else "no") for r in RELAPSES]
    only = make_cohort(make_settings(only_confirmed=True), patients=P, treatments=T, administrations=A, relapses=confirmed)
    assert len(only.table("relapses")) == 1


def test_same_day_edss_and_titer_records_are_reported_as_ignored():
    edss = [
        {"patient_id": "a", "date": "2015-06-01", "score": "3.0"},
        {"patient_id": "a", "date": "2015-06-01", "score": "3.5"},  # the later line is the one used
    ]
    titers = [{"patient_id": "a", "date": "2015-06-01", "titer": t} for t in ("1:480", "1:240", "negative")]
    cohort = make_cohort(patients=P, treatments=T, administrations=A, edss=edss, titers=titers)
    ignored = cohort.quality[cohort.quality["reason"].str.contains("same day")]
    assert ignored[["table", "line"]].values.tolist() == [["edss", 2], ["titers", 2], ["titers", 3]]


def test_patient_rows_give_each_record_its_row_in_the_analysed_patients():
    cohort = make_cohort(patients=P, treatments=T, administrations=A)
    admins = cohort.table("administrations")
    rows = cohort.patient_rows(admins)
    assert cohort.patients["patient_id"].to_numpy()[rows].tolist() == admins["patient_id"].tolist()
    other = pd.DataFrame({"patient_id": ["d", "zz", "a"]})  # d is not analysed (never on IVIG), zz unknown
    assert cohort.patient_rows(other).tolist()[:2] == [-1, -1]
    assert cohort.patients["patient_id"].iloc[cohort.patient_rows(other)[2]] == "a"


def test_relapses_and_edss_dated_before_birth_or_onset_are_reported_and_not_used():
    patients = [{"patient_id": "a", "birth_date": "1980-05-01", "onset_date": "2010-01-01", "last_followup_date": "2019-06-30"}]
    treatments = [{"patient_id": "a", "treatment": "IVIG", "start_date": "2015-01-01"}]
    relapses = [
        {"patient_id": "a", "onset_date": "1979-01-01"},  # before birth
        {"patient_id": "a", "onset_date": "2009-06-01"},  # after birth, before disease onset
        {"patient_id": "a", "onset_date": "2010-01-01"},  # the onset itself: used
        {"patient_id": "a", "onset_date": "2016-03-01"},
    ]
    edss = [
        {"patient_id": "a", "date": "1975-01-01", "score": "2.0"},
        {"patient_id": "a", "date": "2009-12-31", "score": "3.0"},
        {"patient_id": "a", "date": "2014-12-01", "score": "4.0"},
    ]
    cohort = make_cohort(patients=patients, treatments=treatments, relapses=relapses, edss=edss)
    assert list(cohort.table("relapses")["onset_date"].dt.strftime("%Y-%m-%d")) == ["2010-01-01", "2016-03-01"]
    assert list(cohort.table("edss")["score"]) == [4.0]
    ignored = cohort.quality[cohort.quality["table"].isin(["relapses", "edss"])]
    assert sorted(zip(ignored["table"], ignored["line"], ignored["reason"], ignored["action"])) == [
        ("edss", 2, "date before the patient's birth_date", "ignored"),
        ("edss", 3, "date before the patient's onset_date (disease onset)", "ignored"),
        ("relapses", 2, "onset_date before the patient's birth_date", "ignored"),
        ("relapses", 3, "onset_date before the patient's onset_date (disease onset)", "ignored"),
    ]


def test_an_excluded_patient_s_reason_says_which_criterion_was_not_met():
    criteria = (Criterion("AQP4-IgG positive", "where", _expr("antibody_status == 'positive'")),)
    cohort = make_cohort(make_settings(criteria=criteria), patients=P, treatments=T, administrations=A)
    b = cohort.quality[cohort.quality["patient_id"] == "b"]
    assert list(b["reason"]) == ["did not meet criterion 'AQP4-IgG positive'"] and list(b["action"]) == ["excluded"]


def test_implausible_birth_and_onset_dates_are_reported_and_not_used_for_age_or_duration():
    rows = [
        ("ok", "1980-01-01", "2010-01-01"),
        ("born_after_index", "2016-01-01", "2017-01-01"),
        ("born_in_future", "2099-01-01", None),
        ("too_old", "1890-06-01", "2010-01-01"),  # before 1900 (and over 120 at index)
        ("old_130", "1900-06-01", "2010-01-01"),  # 114 years at index: plausible
        ("onset_before_birth", "1980-01-01", "1975-01-01"),
    ]
    patients = [{"patient_id": p, "birth_date": b, "onset_date": o, "last_followup_date": "2019-06-30"} for p, b, o in rows]
    treatments = [{"patient_id": p, "treatment": "IVIG", "start_date": "2015-01-01"} for p, *_ in rows]
    cohort = make_cohort(patients=patients, treatments=treatments)
    pts = cohort.patients.set_index("patient_id")
    assert pts.loc["ok", "age_at_index"] == pytest.approx((pd.Timestamp("2015-01-01") - pd.Timestamp("1980-01-01")).days / 365.25)
    for p in ("born_after_index", "born_in_future", "too_old"):
        assert pd.isna(pts.loc[p, "age_at_index"])
    assert pts.loc["old_130", "age_at_index"] == pytest.approx(114.58, abs=0.01)
    assert pd.isna(pts.loc["onset_before_birth", "disease_duration_at_index"])
    quality = cohort.quality[cohort.quality["table"] == "patients"].set_index("patient_id")
    assert quality.loc["born_after_index", "reason"] == "birth_date after the index date"
    assert quality.loc["born_in_future", "reason"] == "birth_date in the future"
    assert quality.loc["too_old", "reason"] == "birth_date before 1900"
    assert quality.loc["onset_before_birth", "reason"] == "onset_date before birth_date"
    assert quality.loc["onset_before_birth", "action"] == "onset_date not used: disease duration not computed"
    assert "ok" not in quality.index and "old_130" not in quality.index


def test_index_event_first_administration_takes_the_first_infusion_else_the_course_start():
    treatments = [
        {"patient_id": "a", "treatment": "IVIG", "start_date": "2015-01-01", "end_date": "2016-01-01"},
        {"patient_id": "b", "treatment": "IVIG", "start_date": "2015-01-01"},
    ]
    admins = [  # b's first infusion is 10 days after the recorded start; a has no infusion on record
        {"patient_id": "b", "treatment": "ivig", "date": "2015-01-21"},
        {"patient_id": "b", "treatment": "IVIG", "date": "2015-01-11"},
        {"patient_id": "b", "treatment": "azathioprine", "date": "2014-01-01"},
    ]
    by_start = make_cohort(make_settings(), patients=P[:2], treatments=treatments, administrations=admins)
    by_admin = make_cohort(make_settings(index_event="first_administration"), patients=P[:2], treatments=treatments, administrations=admins)
    start = by_start.patients.set_index("patient_id")["index_date"]
    admin = by_admin.patients.set_index("patient_id")["index_date"]
    assert start.to_dict() == {"a": pd.Timestamp("2015-01-01"), "b": pd.Timestamp("2015-01-01")}
    assert admin.to_dict() == {"a": pd.Timestamp("2015-01-01"), "b": pd.Timestamp("2015-01-11")}


def test_first_administration_makes_the_administrations_table_required(tmp_path):
    import shutil

    import yaml
    from paths import DEMO_DATA, DEMO_SPEC

    from endpointkit.engine import load_spec_data
    from endpointkit.errors import DataError
    from endpointkit.spec import load_spec

    data = tmp_path / "data"
    shutil.copytree(DEMO_DATA, data)
    (data / "administrations.csv").unlink()
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(data)
    raw["endpoints"] = [{"id": "arr", "plugin": "arr_change"}]
    for event, fails in (("first_start", False), ("first_administration", True)):
        raw["cohort"]["index"]["event"] = event
        path = tmp_path / f"{event}.yaml"
        path.write_text(yaml.safe_dump(raw))
        spec = load_spec(path)
        if fails:
            with pytest.raises(DataError, match="administrations: table not found"):
                load_spec_data(spec, spec.plugins)
        else:
            load_spec_data(spec, spec.plugins)

"""Subgroups (``by:``) and between-group comparisons (``compare:``).

The numbers of each group are checked against an independent run: the ungrouped study on a copy
of the data holding only that group's patients. Attrition per group must add up to the overall
flow, and a grouped run must give byte-identical files for any number of partitions.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats

from endpointkit.engine import run
from endpointkit.errors import SpecError
from endpointkit.spec import load_spec_mapping
from tests.paths import ROOT

DEMO = ROOT / "specs" / "ivig_nmosd.yaml"
DATA = ROOT / "specs" / "data" / "ivig_nmosd"
AGE_GROUPS = {"name": "age", "groups": {"under 50": "age_at_index < 50", "50 or older": "age_at_index >= 50"}}
NUMBERS = ["measure", "stat", "count", "n", "estimate", "low", "high", "interval", "p_value", "test", "display"]


def demo_spec(**extra) -> dict:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"]["path"] = str(DATA)
    raw.update(extra)
    return raw


def run_mapping(raw: dict, data: Path | None = None, **kwargs):
    spec = load_spec_mapping(raw, base=ROOT / "specs", data=data)
    return run(spec, **kwargs)


def copy_data(target: Path, keep) -> Path:
    """The demo data with only the patients ``keep`` (a set of ids), every table filtered."""
    target.mkdir(parents=True, exist_ok=True)
    for path in DATA.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame[frame["patient_id"].isin(keep)].to_csv(target / path.name, index=False)
    return target


def age_at_first_ivig() -> pd.Series:
    """Age at the first IVIG start, computed here from the CSV files (not by endpointkit)."""
    patients = pd.read_csv(DATA / "patients.csv", parse_dates=["birth_date"]).set_index("patient_id")
    treatments = pd.read_csv(DATA / "treatments.csv", parse_dates=["start_date"])
    first = treatments[treatments["treatment"].str.casefold() == "ivig"].groupby("patient_id")["start_date"].min()
    return ((first - patients["birth_date"].reindex(first.index)).dt.days / 365.25).rename("age")


def numbers(frame: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    return frame[frame["endpoint"] == endpoint][NUMBERS].reset_index(drop=True)


# --------------------------------------------------------------------------- by a column, by named groups


def test_by_a_patient_column_gives_rows_per_group_and_overall():
    results = run_mapping(demo_spec(by="sex"))
    frame = results.frame
    assert set(frame["group"]) == {"all", "F", "M"}
    sexes = pd.read_csv(DATA / "patients.csv").set_index("patient_id")["sex"]
    analysed = results.per_patient["patients"]
    assert list(analysed.columns[:2]) == ["patient_id", "group"]
    assert (analysed["group"].to_numpy() == sexes.reindex(analysed["patient_id"]).to_numpy()).all()
    count = frame[(frame["endpoint"] == "patients") & (frame["measure"] == "patients")].set_index("group")["estimate"]
    assert count["F"] + count["M"] == count["all"] == len(analysed)
    # the overall rows are those of the ungrouped run
    plain = run_mapping(demo_spec()).frame
    assert numbers(frame[frame["group"] == "all"], "arr").equals(numbers(plain, "arr"))


def test_named_subgroups_equal_the_ungrouped_run_on_each_groups_data(tmp_path):
    results = run_mapping(demo_spec(by=AGE_GROUPS))
    frame = results.frame
    age = age_at_first_ivig()
    for label, chosen in (("under 50", age[age < 50].index), ("50 or older", age[age >= 50].index)):
        alone = run_mapping(demo_spec(), data=copy_data(tmp_path / label.replace(" ", "_"), set(chosen))).frame
        grouped = frame[frame["group"] == label]
        for endpoint in ("patients", "arr", "relapse_free", "edss", "titer", "discontinuation", "safety"):
            mine = numbers(grouped, endpoint)
            theirs = numbers(alone, endpoint)
            pd.testing.assert_frame_equal(mine, theirs, check_dtype=False, obj=f"{label} {endpoint}")


def test_attrition_per_group_adds_up_to_the_overall_flow():
    results = run_mapping(demo_spec(by=AGE_GROUPS))
    table = results.primary.attrition_table
    assert list(table.columns) == ["group", "step", "remaining", "excluded"]
    overall = table[table["group"] == "all"].set_index("step")
    groups = table[table["group"] != "all"]
    assert set(groups["group"]) == {"under 50", "50 or older", "missing"}  # no index date: no age
    summed = groups.groupby("step", sort=False)[["remaining", "excluded"]].sum()
    assert (summed.loc[overall.index, "remaining"] == overall["remaining"]).all()
    assert (summed.loc[overall.index, "excluded"] == overall["excluded"]).all()
    # the flow of a group is that of its own patients: the data hold 10 patients under 50 at index
    age = age_at_first_ivig()
    under = groups[groups["group"] == "under 50"]
    assert under["remaining"].iloc[0] == int((age < 50).sum())


def test_data_quality_and_per_patient_frames_carry_the_group():
    results = run_mapping(demo_spec(by="sex"))
    quality = results.data_quality
    assert "group" in quality.columns
    sexes = pd.read_csv(DATA / "patients.csv").set_index("patient_id")["sex"]
    known = quality["patient_id"].isin(sexes.index)
    assert (quality.loc[known, "group"].to_numpy() == sexes.reindex(quality.loc[known, "patient_id"]).to_numpy()).all()
    for frame in results.per_patient.values():
        assert frame.columns[1] == "group"


def test_without_by_nothing_gains_a_group_column():
    results = run_mapping(demo_spec())
    assert "group" not in results.data_quality.columns
    assert "group" not in results.primary.attrition_table.columns
    assert all("group" not in frame.columns for frame in results.per_patient.values())
    assert set(results.frame["group"]) == {"all"}
    assert "by" not in results.provenance["variants"][0]["resolved"]


# --------------------------------------------------------------------------- missing values


def _with_blank_sex(tmp_path: Path, patient: str) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    patients = pd.read_csv(target / "patients.csv", dtype=str, keep_default_na=False)
    patients.loc[patients["patient_id"] == patient, "sex"] = ""
    patients.to_csv(target / "patients.csv", index=False)
    return target


def test_missing_values_form_their_own_group_or_are_left_out(tmp_path):
    data = _with_blank_sex(tmp_path, "P01")
    own = run_mapping(demo_spec(by="sex"), data=data)
    assert "missing" in set(own.frame["group"])
    count = own.frame[(own.frame["endpoint"] == "patients") & (own.frame["measure"] == "patients")].set_index("group")["estimate"]
    assert count["missing"] == 1 and count["F"] + count["M"] + count["missing"] == count["all"]
    left_out = run_mapping(demo_spec(by={"column": "sex", "missing": "exclude"}), data=data)
    assert "missing" not in set(left_out.frame["group"])
    count = left_out.frame[(left_out.frame["endpoint"] == "patients") & (left_out.frame["measure"] == "patients")].set_index("group")["estimate"]
    assert count["F"] + count["M"] == count["all"] - 1  # overall keeps the patient
    flow = left_out.primary.attrition_table
    assert flow[(flow["group"] == "missing")]["remaining"].iloc[-1] == 1  # counted either way
    assert any("missing" in note for note in left_out.table().splitlines())


# --------------------------------------------------------------------------- a derive/summarise plugin: partitions, compare

PLUGIN = '''
import numpy as np
import pandas as pd
from scipy import stats

from endpointkit import Endpoint, EndpointResult, hookimpl
from endpointkit.endpoint import Row
from endpointkit.stats import median_row, proportion_row


class RelapsesAfter(Endpoint):
    """Relapses after index per patient (derive), their median and the share with one (summarise)."""

    name = "relapses_after"
    title = "Relapses after index"
    requires = ("relapses",)

    def derive(self, cohort, params, ctx):
        patients = cohort.patients
        relapses = cohort.with_patient_columns("relapses", "index_date", "followup_end")
        after = relapses[(relapses["onset_date"] > relapses["index_date"]) & (relapses["onset_date"] <= relapses["followup_end"])]
        counts = np.bincount(cohort.patient_rows(after), minlength=len(patients))
        return pd.DataFrame({"patient_id": patients["patient_id"].to_numpy(), "relapses": counts,
                             "months": patients["followup_months"].to_numpy()})

    def summarise(self, per_patient, params, ctx):
        n = len(per_patient)
        any_relapse = int((per_patient["relapses"] > 0).sum())
        rows = [median_row("months", per_patient["months"], ctx.quantile_method),
                proportion_row("relapsed", any_relapse, n)]
        return EndpointResult(rows=rows, per_patient=per_patient)

    def compare(self, per_patient, groups, levels, params, ctx):
        reference = per_patient.loc[groups == levels[0], "months"]
        rows = []
        for level in levels[1:]:
            other = per_patient.loc[groups == level, "months"]
            test = stats.mannwhitneyu(other, reference, alternative="two-sided")
            rows.append(Row(measure="months", stat="test", estimate=float(test.statistic), p_value=float(test.pvalue),
                            n=len(other) + len(reference), test="Mann-Whitney U", group=f"{level} vs {levels[0]}"))
        return rows


@hookimpl
def register_endpoints():
    return [RelapsesAfter]
'''


@pytest.fixture
def plugin_spec(tmp_path):
    (tmp_path / "relapses_after.py").write_text(PLUGIN)
    spec = tmp_path / "study.yaml"

    def write(**extra) -> Path:
        raw = {"study": {"id": "g", "title": "Groups"}, "data": {"path": str(DATA), "cutoff": "2019-12-31"},
               "plugins": ["relapses_after.py"], "endpoints": [{"id": "after", "plugin": "relapses_after"}], **extra}
        spec.write_text(yaml.safe_dump(raw, sort_keys=False))
        return spec

    return write


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


def test_a_grouped_run_is_byte_identical_for_any_number_of_partitions(plugin_spec, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    spec = plugin_spec(by=AGE_GROUPS, compare=True)
    outputs = []
    for parts in (1, 3):
        status, _, err = cli("run", spec, "-o", tmp_path / f"out{parts}", "--partitions", parts)
        assert status == 0, err
        outputs.append(_files(tmp_path / f"out{parts}"))
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name
    results = pd.read_csv(tmp_path / "out1" / "results.csv")
    assert {"all", "under 50", "50 or older", "50 or older vs under 50"} <= set(results["group"])


def test_compare_rows_match_scipy_and_honour_the_reference(plugin_spec):
    from endpointkit.spec import load_spec

    results = run(load_spec(plugin_spec(by=AGE_GROUPS, compare={"reference": "50 or older"})))
    frame = results.frame
    row = frame[frame["group"] == "under 50 vs 50 or older"].iloc[0]
    per_patient = results.per_patient["after"]
    under = per_patient.loc[per_patient["group"] == "under 50", "months"]
    older = per_patient.loc[per_patient["group"] == "50 or older", "months"]
    expected = scipy_stats.mannwhitneyu(under, older, alternative="two-sided")
    assert row["estimate"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)
    table = results.table("plain")
    assert "under 50 vs 50 or older" in table and "under 50 (n = 10)" in table and "Overall (n = 22)" in table


def test_by_is_a_sensitivity_axis_and_per_endpoint_by_overrides(plugin_spec):
    from endpointkit.spec import load_spec

    spec = load_spec(plugin_spec(sensitivity=[{"name": "by sex", "set": {"by": "sex"}}],
                                 endpoints=[{"id": "after", "plugin": "relapses_after"},
                                            {"id": "aged", "plugin": "relapses_after", "by": AGE_GROUPS}]))
    results = run(spec)
    primary = results.frame[results.frame["variant"] == "primary"]
    assert set(primary.loc[primary["endpoint"] == "after", "group"]) == {"all"}
    assert set(primary.loc[primary["endpoint"] == "aged", "group"]) == {"all", "under 50", "50 or older"}
    variant = results.frame[results.frame["variant"] == "by sex"]
    assert set(variant.loc[variant["endpoint"] == "after", "group"]) == {"all", "F", "M"}
    assert set(variant.loc[variant["endpoint"] == "aged", "group"]) == {"all", "under 50", "50 or older"}
    moves = results.what_moves()
    assert {"F", "M"} <= set(moves["group"])
    assert "(F)" in results.side_by_side("plain")


# --------------------------------------------------------------------------- spec errors


@pytest.mark.parametrize(("extra", "path", "words"), [
    ({"by": "sx"}, "by", "did you mean 'sex'"),
    ({"by": {"name": "age", "groups": {"under 50": "age_at_index <"}}}, "by.groups.under 50", "invalid expression"),
    ({"by": {"name": "age", "groups": {"under 50": "age_at_indx < 50"}}}, "by.groups.under 50", "did you mean 'age_at_index'"),
    ({"by": {"column": "sex", "missing": "drop"}}, "by.missing", "own_group"),
    ({"by": {"column": "sex", "colour": 1}}, "by.colour", "valid keys"),
    ({"by": {"name": "x", "groups": {"all": "sex == 'F'"}}}, "by.groups.all", "reserved"),
    ({"compare": True}, "compare", "no grouping"),
    ({"by": "sex", "compare": {"reference": "X"}}, "compare.reference", "groups: F, M"),
    ({"by": "sex", "compare": "yes"}, "compare", "expected true"),
])
def test_spec_errors_name_their_path(plugin_spec, cli, tmp_path, extra, path, words):
    status, _, err = cli("run", plugin_spec(**extra), "-o", tmp_path / "out")
    assert status == 2, err
    assert path in err and words in err
    assert "Traceback" not in err


def test_endpoint_level_errors_name_the_endpoint():
    raw = demo_spec()
    raw["endpoints"][1]["compare"] = True
    with pytest.raises(SpecError) as caught:
        load_spec_mapping(raw, base=ROOT / "specs")
    assert caught.value.path == "endpoints[1].compare"
    raw = demo_spec()
    raw["endpoints"][1]["by"] = {"groups": {}}
    with pytest.raises(SpecError) as caught:
        load_spec_mapping(raw, base=ROOT / "specs")
    assert caught.value.path == "endpoints[1].by.groups"


def test_grouped_table_renders_in_every_format(tmp_path):
    results = run_mapping(demo_spec(by="sex"))
    for fmt in ("github", "plain", "latex", "html"):
        text = results.table(fmt)
        assert "F (n = 19)" in text and "M (n = 1)" in text
    written = results.write(tmp_path / "out", ["github", "docx", "xlsx"], figures=False)
    assert any(str(p).endswith("table.xlsx") for p in written)
    assert np.isfinite(len(textwrap.dedent(results.table("plain"))))


def test_cohort_split_is_subset_for_each_group():
    from endpointkit.testing import make_cohort

    cohort = make_cohort(
        patients=[{"patient_id": p, "sex": s, "onset_date": "2010-01-01", "last_followup_date": "2019-01-01"}
                  for p, s in (("p1", "F"), ("p2", "M"), ("p3", "F"))],
        treatments=[{"patient_id": p, "treatment": "IVIG", "start_date": "2015-01-01", "end_date": "2017-01-01"}
                    for p in ("p1", "p2", "p3")],
        relapses=[{"patient_id": "p1", "onset_date": "2016-01-01"}, {"patient_id": "p2", "onset_date": "2016-02-01"},
                  {"patient_id": "p3", "onset_date": "2016-03-01"}, {"patient_id": "p1", "onset_date": "2016-06-01"}],
    )
    labels = cohort.patients["sex"].to_numpy(dtype=object)
    split = cohort.split(labels, ["F", "M"])
    for level, part in split.items():
        alone = cohort.subset(labels == level)
        pd.testing.assert_frame_equal(part.patients, alone.patients)
        for name in alone.tables:
            pd.testing.assert_frame_equal(part.tables[name], alone.tables[name])
    assert list(split["F"].table("relapses")["patient_id"]) == ["p1", "p1", "p3"]


def test_side_by_side_marks_a_group_the_variant_does_not_have(plugin_spec):
    from endpointkit.spec import load_spec

    results = run(load_spec(plugin_spec(by="sex", sensitivity=[{"name": "by age", "set": {"by": AGE_GROUPS}}])))
    text = results.side_by_side("plain")
    line = next(line for line in text.splitlines() if "(F)" in line)
    assert "\u2013" in line and "failed" not in text


def test_validate_checks_the_grouping_against_the_data(plugin_spec, cli):
    status, _, err = cli("validate", plugin_spec(endpoints=[{"id": "after", "plugin": "relapses_after", "by": "antibody"}]))
    assert status == 2
    assert "endpoints[0].by: unknown patient column 'antibody'" in err and "antibody_status" in err


def test_each_group_gets_its_own_kaplan_meier_curves_after_the_overall_ones():
    results = run_mapping(demo_spec(by=AGE_GROUPS))
    titles = [title for endpoint, title in results.primary.curves if endpoint == "relapse_free"]
    assert titles[0] == "Relapse-free survival"
    assert titles[1:] == ["Relapse-free survival (under 50)", "Relapse-free survival (50 or older)"]
    grouped = results.primary.curves[("relapse_free", "Relapse-free survival (under 50)")]
    assert int(grouped.at_risk(0)) == 8

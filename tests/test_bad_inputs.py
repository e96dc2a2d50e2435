"""A catalogue of bad inputs: each is refused with exit status 2, a message that names where the
problem is and what was expected, no traceback, and no result file left in the -o folder.

Every case starts from a copy of the demo spec and data in tmp_path and breaks one thing.
Failure isolation (an endpoint plugin that raises or breaks the results contract: exit 3, the other
endpoints complete) is at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC

# --------------------------------------------------------------------------- the study under test


class Study:
    """A copy of the demo study in a temporary folder: ``study.yaml``, ``data/`` and ``out/``."""

    def __init__(self, root: Path):
        self.root = root
        self.spec = root / "study.yaml"
        self.data = root / "data"
        self.out = root / "out"
        shutil.copytree(DEMO_DATA, self.data)
        raw = yaml.safe_load(DEMO_SPEC.read_text())
        raw["data"]["path"] = "data"
        self.write(raw)

    # -- the spec
    def raw(self) -> dict:
        return yaml.safe_load(self.spec.read_text())

    def write(self, raw: dict) -> None:
        self.spec.write_text(yaml.safe_dump(raw, sort_keys=False))

    def edit(self, change: Callable[[dict], object]) -> Study:
        raw = self.raw()
        change(raw)
        self.write(raw)
        return self

    def endpoint(self, endpoint_id: str) -> Callable[[dict], dict]:
        """A getter for one endpoint's mapping in a raw spec."""

        def get(raw: dict) -> dict:
            return next(e for e in raw["endpoints"] if e["id"] == endpoint_id)

        return get

    def plugin_file(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(source))
        self.edit(lambda raw: raw.setdefault("plugins", []).append(f"./{name}"))
        return path

    # -- the data
    def csv(self, table: str) -> Path:
        return self.data / f"{table}.csv"

    def lines(self, table: str) -> list[str]:
        return self.csv(table).read_text().splitlines()

    def write_lines(self, table: str, lines: list[str]) -> None:
        self.csv(table).write_text("\n".join(lines) + "\n")

    def append(self, table: str, *rows: str) -> int:
        """Append CSV rows; returns the file line number of the first one."""
        lines = self.lines(table)
        self.write_lines(table, [*lines, *rows])
        return len(lines) + 1

    def replace_line(self, table: str, line: int, text: str) -> None:
        lines = self.lines(table)
        lines[line - 1] = text
        self.write_lines(table, lines)

    def set_cell(self, table: str, line: int, column: str, value: str) -> None:
        """Replace one value (CSV line numbers count the header as line 1)."""
        lines = self.lines(table)
        header = lines[0].split(",")
        fields = lines[line - 1].split(",")
        fields[header.index(column)] = value
        lines[line - 1] = ",".join(fields)
        self.write_lines(table, lines)

    def drop_column(self, table: str, column: str) -> None:
        frame = pd.read_csv(self.csv(table), dtype=str, keep_default_na=False)
        frame.drop(columns=[column]).to_csv(self.csv(table), index=False)


@pytest.fixture
def study(tmp_path) -> Study:
    return Study(tmp_path)


def result_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


def refused(cli, study: Study, *fragments: str, argv: tuple = ()) -> str:
    """Run the study; assert a clean refusal naming every fragment; return stderr."""
    status, stdout, err = cli("run", study.spec, "-o", study.out, "--quiet", *argv)
    assert status == 2, f"exit {status}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith("endpointkit: error: ") or "usage:" in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in\n{err}"
    assert result_files(study.out) == []
    assert "Result" not in stdout  # no table printed
    return err


def test_the_untouched_copy_of_the_demo_runs(cli, study):
    """The baseline every case breaks: exit 0 and the result files written."""
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 0, err
    assert (study.out / "results.csv").is_file()


# --------------------------------------------------------------------------- spec files


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("study: [unclosed\nendpoints: []\n", "is not valid YAML at line"),
        ("data:\n  path: data\n\tcutoff: 2019-12-31\n", "is not valid YAML"),
        ("", "is empty; expected a mapping"),
        ("# only a comment\n", "is empty; expected a mapping"),
        ("- {id: arr, plugin: arr_change}\n", "expected a mapping at the top level, got list"),
        ("just words\n", "expected a mapping at the top level, got str"),
    ],
    ids=["unclosed-bracket", "tab-indent", "empty", "comment-only", "list-at-top", "scalar-at-top"],
)
def test_a_spec_that_is_not_a_yaml_mapping_is_refused(cli, study, text, expected):
    study.spec.write_text(text)
    refused(cli, study, "study.yaml", expected)


def test_a_spec_that_is_not_utf8_is_refused(cli, study):
    study.spec.write_bytes(b"study: {title: \xe9tude}\n")
    refused(cli, study, "is not UTF-8")


def test_a_missing_spec_file_is_refused(cli, study):
    study.spec.unlink()
    refused(cli, study, "spec file not found", "study.yaml")


def test_a_spec_without_endpoints_is_refused(cli, study):
    study.edit(lambda raw: raw.pop("endpoints"))
    refused(cli, study, "endpoints: missing")


def test_a_duplicate_key_in_the_yaml_is_refused_not_silently_overwritten(cli, study):
    study.spec.write_text(textwrap.dedent("""\
        data: {path: data}
        endpoints:
          - id: arr
            plugin: arr_change
            params:
              post_lag_days: 0
              post_lag_days: 90
    """))
    refused(cli, study, "study.yaml is not valid YAML at line 7", "duplicate key 'post_lag_days'")


# --------------------------------------------------------------------------- unknown keys


def _set(path: str, value) -> Callable[[dict], None]:
    """An edit that sets a dotted path (numbers index lists), creating mappings on the way."""

    def change(raw: dict) -> None:
        node = raw
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


@pytest.mark.parametrize(
    ("path", "where", "suggestion"),
    [
        ("stuyd", "stuyd: unknown top-level key", "did you mean 'study'"),
        ("data.colums", "data.colums: unknown", "did you mean 'columns'"),
        ("cohort.grace_day", "cohort.grace_day: unknown", "did you mean 'grace_days'"),
        ("cohort.index.treatmnt", "cohort.index.treatmnt: unknown", "did you mean 'treatment'"),
        ("cohort.relapses.merge_within", "cohort.relapses.merge_within: unknown", "did you mean 'merge_within_days'"),
        ("statistics.quantile", "statistics.quantile: unknown", "did you mean 'quantile_method'"),
        ("statistics.paired_test.zero_metod", "statistics.paired_test.zero_metod: unknown", "did you mean 'zero_method'"),
        ("table.decimal", "table.decimal: unknown", "did you mean 'decimals'"),
        ("study.titel", "study.titel: unknown", "did you mean 'title'"),
        ("endpoints.1.parms", "endpoints[1].parms: unknown key", "did you mean 'params'"),
        ("endpoints.1.params.pre_windw", "endpoints[1].params.pre_windw: unknown parameter", "did you mean 'pre_window'"),
    ],
)
def test_an_unknown_key_at_any_level_is_refused_with_the_closest_valid_name(cli, study, path, where, suggestion):
    study.edit(_set(path, 1))
    err = refused(cli, study, where, suggestion)
    assert "valid" in err  # and the valid names are listed


def test_an_unknown_key_in_a_sensitivity_variant_is_refused(cli, study):
    study.edit(lambda raw: raw.update(sensitivity=[{"name": "lag", "sett": {"arr.post_lag_days": 90}}]))
    refused(cli, study, "sensitivity[0].sett: unknown key", "did you mean 'set'", "valid keys: name, set, grid")


def test_an_unknown_criterion_is_refused_with_the_registered_ones(cli, study):
    study.edit(_set("cohort.criteria.1", {"name": "long", "min_treatment_month": 6}))
    refused(cli, study, "cohort.criteria[1].min_treatment_month", "did you mean 'min_treatment_months'")


# --------------------------------------------------------------------------- plugins and ids


@pytest.mark.parametrize(
    ("path", "value", "where", "suggestion"),
    [
        ("endpoints.1.plugin", "arr_chnage", "endpoints[1].plugin: unknown endpoint 'arr_chnage'", "did you mean 'arr_change'"),
        ("data.source", "cvs", "data.source: unknown source 'cvs'", "did you mean 'csv'"),
        ("table.format", "githb", "table.format: unknown renderer 'githb'", "did you mean 'github'"),
    ],
)
def test_an_unknown_plugin_name_suggests_the_closest_registered_one(cli, study, path, value, where, suggestion):
    study.edit(_set(path, value))
    err = refused(cli, study, where, suggestion)
    assert "registered:" in err


def test_a_duplicate_endpoint_id_is_refused_naming_both_places(cli, study):
    study.edit(lambda raw: raw["endpoints"].append({"id": "arr", "plugin": "relapse_free"}))
    refused(cli, study, "endpoints[7].id: duplicate endpoint id 'arr'", "also endpoints[1]")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("plugin", ["arr_change"], "expected the name of an endpoint plugin such as arr_change"),
     ("plugin", None, "missing: name the endpoint plugin"),
     ("title", ["ARR"], "expected a title (text)")],
)
def test_an_endpoint_entry_of_the_wrong_type_is_refused(cli, study, key, value, expected):
    study.edit(_set(f"endpoints.1.{key}", value))
    refused(cli, study, f"endpoints[1].{key}: {expected}")


def test_an_endpoint_id_that_is_not_an_identifier_is_refused(cli, study):
    study.edit(_set("endpoints.1.id", "arr change"))
    refused(cli, study, "endpoints[1].id", "expected an identifier")


# --------------------------------------------------------------------------- parameter values


@pytest.mark.parametrize(
    ("path", "value", "where", "expected"),
    [
        # wrong types
        ("endpoints.1.params.post_lag_days", "ninety", "endpoints[1].params.post_lag_days", "expected an integer, got 'ninety'"),
        ("endpoints.1.params.post_lag_days", 1.5, "endpoints[1].params.post_lag_days", "expected an integer"),
        ("endpoints.1.params.post_lag_days", True, "endpoints[1].params.post_lag_days", "expected an integer, got True"),
        ("endpoints.1.params", [1, 2], "endpoints[1].params", "expected a mapping of parameters"),
        ("endpoints.5.params.reasons", "relapse", "endpoints[5].params.reasons", "expected a list"),
        ("endpoints.6.params.by_term", "yes", "endpoints[6].params.by_term", "expected true or false"),
        ("endpoints.4.params.lod", ".nan", "endpoints[4].params.lod", "expected a finite number, got nan"),
        ("table.decimals", "two", "table.decimals", "expected an integer"),
        ("cohort.criteria", "antibody_status == 'positive'", "cohort.criteria", "expected a list"),
        ("cohort.criteria.1.min_treatment_months", "six", "cohort.criteria[1].min_treatment_months", "expected a number of months >= 0"),
        ("data.columns", {"edss": {"score": 5}}, "data.columns.edss.score", "expected a non-empty string"),
        ("data.cutoff", "end of 2019", "data.cutoff", "expected a date YYYY-MM-DD"),
        ("data.cutoff", "2019-02-30", "data.cutoff", "expected a date YYYY-MM-DD"),
        # negative or zero durations and day counts
        ("endpoints.1.params.post_lag_days", -5, "endpoints[1].params.post_lag_days", "expected a value >= 0, got -5"),
        ("endpoints.1.params.min_pre_days", -1, "endpoints[1].params.min_pre_days", "expected a value >= 0"),
        ("endpoints.1.params.pre_window", "-18 months", "endpoints[1].params.pre_window", "a duration such as '18 months'"),
        ("endpoints.1.params.pre_window", "0 months", "endpoints[1].params.pre_window", "a duration such as '18 months'"),
        ("endpoints.3.params.confirmation_months", -3, "endpoints[3].params.confirmation_months", "expected a value >= 0"),
        ("endpoints.6.params.te_window_days", -30, "endpoints[6].params.te_window_days", "expected a value >= 0"),
        ("cohort.grace_days", -90, "cohort.grace_days", "expected a value >= 0"),
        ("cohort.relapses.merge_within_days", -1, "cohort.relapses.merge_within_days", "expected a value >= 0"),
        ("cohort.criteria.1.min_treatment_months", -6, "cohort.criteria[1].min_treatment_months", "expected a number of months >= 0"),
        ("statistics.year_days", 0, "statistics.year_days", "expected a value >= 1"),
        ("endpoints.4.params.lod", ".inf", "endpoints[4].params.lod", "expected a finite number, got inf"),
        ("endpoints.2.params.landmarks_months", [12, -6], "endpoints[2].params.landmarks_months[1]", "expected a value >= 0, got -6"),
        ("endpoints.1.params.pre_window", "200 years", "endpoints[1].params.pre_window", "at most 100 years"),
        ("endpoints.1.params.post_lag_days", 10**12, "endpoints[1].params.post_lag_days", "expected a value <= 36525 (100 years)"),
        ("cohort.grace_days", 10**12, "cohort.grace_days", "expected a value <= 36525 (100 years)"),
        ("endpoints.3.params.confirmation_months", 10**6, "endpoints[3].params.confirmation_months", "expected a value <= 1200"),
        ("cohort.criteria.1.min_treatment_months", 10**6, "cohort.criteria[1].min_treatment_months", "at most 1200"),
        # invalid choices list the valid values
        ("endpoints.1.params.summary", "median", "endpoints[1].params.summary", "expected one of median_iqr, mean_sd, median_range, crude"),
        ("endpoints.1.params.pre_window", "last_36m", "endpoints[1].params.pre_window", "since_onset"),
        ("endpoints.2.params.method", "kaplan", "endpoints[2].params.method", "expected one of crude, km"),
        ("cohort.follow_up_end", "end", "cohort.follow_up_end", "expected one of treatment_end, last_followup"),
        ("cohort.index.event", "last_start", "cohort.index.event", "expected one of first_start"),
        ("statistics.quantile_method", "lineer", "statistics.quantile_method", "did you mean 'linear'"),
        ("statistics.paired_test.method", "exakt", "statistics.paired_test.method", "did you mean 'exact'"),
        ("table.p_style", "apa", "table.p_style", "expected one of nejm, ama"),
        ("table.decimals", 9, "table.decimals", "expected a value <= 6, got 9"),
        ("table.show", ["arx"], "table.show[0]", "unknown endpoint id 'arx'"),
        ("data.columns", {"edsss": {"score": "edss"}}, "data.columns.edsss", "unknown table"),
        ("data.columns", {"edss": {"scor": "value"}}, "data.columns.edss.scor", "did you mean 'score'"),
    ],
)
def test_a_wrong_setting_is_refused_naming_its_path_and_what_was_expected(cli, study, path, value, where, expected):
    if value in (".nan", ".inf"):  # YAML's own spelling of not-a-number and infinity
        text = study.spec.read_text()
        study.spec.write_text(text.replace("negative_value: zero_rank", f"negative_value: zero_rank\n    lod: {value}", 1))
        assert f"lod: {value}" in study.spec.read_text()
    elif value == "2019-02-30":
        study.spec.write_text(study.spec.read_text().replace("cutoff: 2019-12-31", "cutoff: 2019-02-30"))
    else:
        study.edit(_set(path, value))
    refused(cli, study, where + ":", expected)


# --------------------------------------------------------------------------- where expressions


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch pwned')",
        "patient_id.__class__",
        "patient_id.__class__.__mro__ == 1",
        "open('pwned', 'w')",
        "antibody_status == 'positive'; import os",
        "[c for c in ()]",
        "lambda: 1",
    ],
)
def test_a_where_expression_that_tries_python_is_rejected_as_invalid_never_evaluated(cli, study, expression, monkeypatch):
    monkeypatch.chdir(study.root)
    study.edit(_set("cohort.criteria.0.where", expression))
    refused(cli, study, "cohort.criteria[0].where: invalid expression")
    assert not (study.root / "pwned").exists()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("antibody == 'positive'", "unknown column 'antibody' (did you mean 'antibody_status'?)"),
        ("antibody_status = 'positive'", "invalid expression"),
        ("onset_date > '2015-02-30'", "is not a date YYYY-MM-DD"),
        ("antibody_status > 5", "cannot compare"),
        ("", "invalid expression"),
    ],
)
def test_a_where_expression_that_cannot_be_evaluated_is_refused(cli, study, expression, expected):
    study.edit(_set("cohort.criteria.0.where", expression))
    refused(cli, study, "cohort.criteria[0].where", expected)


# --------------------------------------------------------------------------- sensitivity variants


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"arx.post_lag_days": 90}, "unknown endpoint id or section 'arx' (did you mean 'arr'?)"),
        ({"post_lag_days": 90}, "expected a dotted path"),
        ({"arr.post_lag_days.days": 90}, "expected <endpoint id>.<param>"),
        ({"arr.post_lag_day": 90}, "unknown parameter (did you mean 'post_lag_days'?)"),
        ({"cohort.grace_day": 90}, "cohort.grace_day: unknown"),
        ({"arr.post_lag_days": -5}, "expected a value >= 0, got -5"),
        ({"arr.pre_window": "3 decades"}, "a duration such as '18 months'"),
        ({"data.path": "other_data"}, "'data.path' cannot vary: every variant analyses the same loaded data"),
        ({"data.columns": {}}, "'data.columns' cannot vary"),
    ],
)
def test_a_sensitivity_setting_that_does_not_exist_or_is_invalid_is_refused(cli, study, settings, expected):
    study.edit(lambda raw: raw.update(sensitivity=[{"name": "variant one", "set": settings}]))
    refused(cli, study, "sensitivity", expected)


def test_two_sensitivity_variants_with_the_same_name_are_refused(cli, study):
    study.edit(lambda raw: raw.update(sensitivity=[
        {"name": "lag", "set": {"arr.post_lag_days": 90}}, {"name": "lag", "set": {"arr.post_lag_days": 30}},
    ]))
    refused(cli, study, "sensitivity[1].name: duplicate variant name 'lag'")


# --------------------------------------------------------------------------- data: folders, tables, columns


def test_a_missing_data_folder_is_refused(cli, study):
    study.edit(_set("data.path", "no_such_folder"))
    refused(cli, study, "data folder not found", "no_such_folder")


def test_a_missing_data_folder_given_on_the_command_line_is_refused(cli, study):
    refused(cli, study, "data folder not found", "elsewhere", argv=("--data", str(study.root / "elsewhere")))


def test_a_data_path_that_is_a_file_is_refused(cli, study):
    refused(cli, study, "expected a folder of CSV files", argv=("--data", str(study.csv("patients"))))


@pytest.mark.parametrize("table", ["patients", "treatments", "relapses", "edss", "titers", "adverse_events"])
def test_a_missing_required_table_is_refused_naming_the_file(cli, study, table):
    study.csv(table).unlink()
    refused(cli, study, f"{table}: table not found", f"{table}.csv")


@pytest.mark.parametrize(
    ("table", "column"),
    [("patients", "patient_id"), ("treatments", "start_date"), ("relapses", "onset_date"), ("edss", "score"), ("titers", "titer"), ("adverse_events", "term")],
)
def test_a_missing_required_column_is_refused_listing_the_columns_found(cli, study, table, column):
    study.drop_column(table, column)
    refused(cli, study, f"{table}, column '{column}': missing required column '{column}'", "found: ")


def test_a_column_mapping_to_a_column_not_in_the_file_is_refused(cli, study):
    study.edit(_set("data.columns", {"edss": {"score": "edss_score"}}))
    refused(cli, study, "edss: column 'edss_score' named in data.columns.edss is not in the file")


def test_a_column_mapped_onto_a_name_that_is_already_there_is_refused(cli, study):
    study.edit(_set("data.columns", {"relapses": {"severity": "confirmed"}}))
    refused(cli, study, "relapses", "data.columns.relapses", "'severity'")


def test_two_canonical_columns_mapped_onto_one_column_are_refused(cli, study):
    study.edit(_set("data.columns", {"relapses": {"severity": "confirmed", "pseudo": "confirmed"}}))
    refused(cli, study, "relapses", "maps both 'severity' and 'pseudo' to the column 'confirmed'")


def test_a_header_with_a_repeated_column_name_is_refused(cli, study):
    study.replace_line("edss", 1, "patient_id,date,date")
    refused(cli, study, "edss, line 1: column 'date' appears twice in the header")


# --------------------------------------------------------------------------- data: values


def _first_line_of(study: Study, table: str, patient: str) -> int:
    return next(i for i, line in enumerate(study.lines(table), start=1) if line.startswith(patient + ","))


@pytest.mark.parametrize(
    ("table", "column", "value", "expected"),
    [
        ("treatments", "start_date", "2019/03/02", "expected a date YYYY-MM-DD that exists, got '2019/03/02'"),
        ("treatments", "start_date", "2019-02-30", "expected a date YYYY-MM-DD that exists, got '2019-02-30'"),
        ("treatments", "start_date", "2019-13-01", "expected a date YYYY-MM-DD that exists"),
        ("patients", "birth_date", "26/07/1967", "expected a date YYYY-MM-DD that exists"),
        ("relapses", "onset_date", "yesterday", "expected a date YYYY-MM-DD that exists"),
        ("edss", "score", "0.5", "expected an EDSS score on the grid"),
        ("edss", "score", "11", "expected an EDSS score on the grid"),
        ("edss", "score", "-1", "expected an EDSS score on the grid"),
        ("edss", "score", "3.25", "expected an EDSS score on the grid"),
        ("edss", "score", "four", "expected a number, got 'four'"),
        ("titers", "titer", "1:abc", "expected a titer such as 1:480"),
        ("titers", "titer", "lots", "expected a titer such as 1:480"),
        ("titers", "titer", "1:-40", "expected a titer such as 1:480"),
        ("adverse_events", "grade", "0", "expected a grade 1, 2, 3, 4 or 5"),
        ("adverse_events", "grade", "6", "expected a grade 1, 2, 3, 4 or 5"),
        ("adverse_events", "grade", "2.5", "expected a grade 1, 2, 3, 4 or 5"),
        ("adverse_events", "grade", "severe", "expected a number, got 'severe'"),
        ("adverse_events", "serious", "maybe", "expected true/false"),
        ("relapses", "pseudo", "perhaps", "expected true/false"),
        ("administrations", "dose", "two", "expected a number, got 'two'"),
        ("administrations", "dose", "-2", "expected a number >= 0"),
        ("treatments", "treatment", "", "expected a value (required column)"),
    ],
)
def test_a_bad_value_is_refused_naming_table_line_and_column(cli, study, table, column, value, expected):
    line = 3
    study.set_cell(table, line, column, value)
    refused(cli, study, f"{table}, line {line}, column '{column}': {expected}")


def test_an_end_date_before_the_start_date_is_refused(cli, study):
    line = _first_line_of(study, "treatments", "P01") + 1  # P01's IVIG course
    study.set_cell("treatments", line, "end_date", "2019-01-01")
    refused(cli, study, f"treatments, line {line}, column 'end_date': expected an end date on or after start_date")


def test_two_courses_of_a_treatment_on_the_same_start_date_that_disagree_are_refused(cli, study):
    first = _first_line_of(study, "treatments", "P01") + 1  # P01,IVIG,2019-03-02,2019-12-01,relapse
    line = study.append("treatments", "P01,ivig,2019-03-02,,")
    refused(cli, study, f"treatments, line {line}, column 'end_date': expected one end_date and stop_reason per patient, "
                        f"treatment and start date; P01 has blank here but 2019-12-01 on line {first}")


def test_a_repeated_identical_course_is_accepted(cli, study):
    study.append("treatments", "P01,IVIG,2019-03-02,2019-12-01,relapse")
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 0, err


def test_a_duplicate_patient_id_is_refused(cli, study):
    line = study.append("patients", "P01,F,1967-07-26,2015-10-31,NMOSD,positive,2019-12-31")
    refused(cli, study, f"patients, line {line}, column 'patient_id': expected unique patient ids", "'P01'")


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("treatments", "P99,IVIG,2019-01-01,,"),
        ("relapses", "P99,2018-01-01,yes,mild,"),
        ("edss", "P99,2018-01-01,2.0"),
        ("titers", "P99,2018-01-01,1:100,CBA"),
        ("adverse_events", "P99,2018-01-01,Rash,1,no,no,none,IVIG"),
        ("administrations", "P99,IVIG,2018-01-01,2.0"),
    ],
)
def test_a_record_of_a_patient_not_in_patients_is_refused(cli, study, table, row):
    line = study.append(table, row)
    refused(cli, study, f"{table}, line {line}, column 'patient_id': expected a patient_id listed in patients", "'P99'")


def test_validate_reports_a_bad_value_the_same_way_without_computing(cli, study):
    study.set_cell("edss", 3, "score", "0.5")
    status, stdout, err = cli("validate", study.spec)
    assert status == 2
    assert "spec OK" in stdout and "data OK" not in stdout
    assert err == "endpointkit: error: edss, line 3, column 'score': expected an EDSS score on the grid 0, 1.0, 1.5, ..., 9.5, 10 (0.5 is not a score), got 0.5\n"


def test_the_line_number_of_a_bad_value_counts_blank_lines(cli, study):
    lines = study.lines("edss")
    study.write_lines("edss", [lines[0], "", lines[1], "", lines[2], "P01,2019-12-01,0.5", *lines[3:]])
    refused(cli, study, "edss, line 6, column 'score'")


def test_the_line_number_of_a_bad_value_counts_quoted_line_breaks(cli, study):
    lines = study.lines("adverse_events")
    multi = 'P02,2018-08-26,"Headache\nafter infusion",1,no,yes,none,IVIG'
    study.write_lines("adverse_events", [lines[0], multi, "P05,2015-09-12,Headache,7,no,yes,none,IVIG", *lines[2:]])
    refused(cli, study, "adverse_events, line 4, column 'grade'")


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("treatments", "start_date", "9999-12-31"),
        ("treatments", "start_date", "0001-01-01"),
        ("patients", "birth_date", "1600-07-26"),
        ("patients", "last_followup_date", "9999-12-31"),
        ("relapses", "onset_date", "0001-01-01"),
        ("edss", "date", "2300-01-01"),
        ("adverse_events", "onset_date", "1600-01-01"),
    ],
)
def test_a_placeholder_or_out_of_range_date_is_refused_naming_table_line_and_column(cli, study, table, column, value):
    """Dates are analysed in pandas' nanosecond range: 0001-01-01, 9999-12-31 or a typo year such as
    1600 is a clear error, not an internal one."""
    study.set_cell(table, 3, column, value)
    refused(cli, study, f"{table}, line 3, column '{column}': expected a date between 1678-01-01 and 2261-12-31",
            f"got '{value}'")


def test_an_open_end_date_written_as_9999_12_31_reads_as_an_ongoing_course(cli, study):
    line = _first_line_of(study, "treatments", "P01") + 1  # P01's IVIG course, ended 2019-12-01
    study.set_cell("treatments", line, "end_date", "")
    status, _, err = cli("run", study.spec, "-o", study.out / "blank", "--quiet")
    assert status == 0, err
    study.set_cell("treatments", line, "end_date", "9999-12-31")
    status, _, err = cli("run", study.spec, "-o", study.out / "open", "--quiet")
    assert status == 0, err
    blank = pd.read_csv(study.out / "blank" / "results.csv")
    assert blank.equals(pd.read_csv(study.out / "open" / "results.csv"))


@pytest.mark.parametrize("cutoff", ["1600-12-31", "0001-01-01", "9999-12-31"])
def test_a_cutoff_outside_the_date_range_is_refused(cli, study, cutoff):
    study.spec.write_text(study.spec.read_text().replace("cutoff: 2019-12-31", f"cutoff: {cutoff}"))
    refused(cli, study, "data.cutoff: expected a date between 1678-01-01 and 2261-12-31", cutoff)


# --------------------------------------------------------------------------- data: codes, reading options, the spec against the data


def _recode_sex(study: Study) -> None:
    lines = study.lines("patients")
    study.write_lines("patients", [lines[0], *(line.replace(",F,", ",2,", 1).replace(",M,", ",1,", 1) for line in lines[1:])])


def test_a_sex_coded_1_2_is_refused_naming_the_values_and_how_to_recode_never_a_silent_0_percent(cli, study):
    _recode_sex(study)
    refused(cli, study, "patients, line 2, column 'sex': expected a sex coded F or M", "values not recognised: '2' (",
            "'1' (", "data.values: {patients: {sex: {")


def test_data_values_recodes_before_validation_and_gives_the_same_results(cli, study):
    status, _, err = cli("run", study.spec, "-o", study.out / "canonical", "--quiet")
    assert status == 0, err
    _recode_sex(study)
    lines = study.lines("relapses")
    study.write_lines("relapses", [lines[0], *(line.replace(",yes,", ",ja,").replace(",no,", ",nein,") for line in lines[1:])])
    study.edit(_set("data.values", {"patients": {"sex": {1: "M", 2: "F"}}, "relapses": {"confirmed": {"ja": True, "nein": False}}}))
    status, _, err = cli("run", study.spec, "-o", study.out / "recoded", "--quiet")
    assert status == 0, err
    canonical = pd.read_csv(study.out / "canonical" / "results.csv")
    assert canonical.equals(pd.read_csv(study.out / "recoded" / "results.csv"))
    provenance = json.loads((study.out / "recoded" / "results.json").read_text())["provenance"]
    assert provenance["variants"][0]["resolved"]["data"]["values"]["patients"]["sex"] == {"1": "M", "2": "F"}


def test_a_boolean_coded_ja_nein_is_refused_with_the_values_found(cli, study):
    lines = study.lines("relapses")
    study.write_lines("relapses", [lines[0], *(line.replace(",yes,", ",ja,") for line in lines[1:])])
    refused(cli, study, "relapses, line 2, column 'confirmed': expected true/false", "values not recognised: 'ja' (",
            "data.values: {relapses: {confirmed: {'ja': ...}}}")


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_index_treatment_that_no_patient_received_is_refused_listing_the_treatments(cli, study, command):
    study.edit(_set("cohort.index.treatment", "rituximab"))
    argv = ("run", study.spec, "-o", study.out, "--quiet") if command == "run" else ("validate", study.spec)
    status, _, err = cli(*argv)
    assert status == 2, err
    assert "cohort.index.treatment: no patient received 'rituximab'" in err
    assert "the data hold: azathioprine (23 patients), IVIG (22 patients)" in err  # counted with grep | sort -u


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_criterion_that_excludes_everyone_is_refused_with_what_the_data_hold(cli, study, command):
    study.edit(_set("cohort.criteria.0.where", "antibody_status == 'AQP4-IgG positive'"))
    argv = ("run", study.spec, "-o", study.out, "--quiet") if command == "run" else ("validate", study.spec)
    status, _, err = cli(*argv)
    assert status == 2, err
    assert "cohort.criteria[0]: criterion 'NMO-IgG positive' excludes every remaining patient" in err
    assert "antibody_status: 'positive' (" in err


def test_validate_checks_where_columns_against_the_data(cli, study):
    study.edit(_set("cohort.criteria.0.where", "aqp4 == 'positive'"))
    status, stdout, err = cli("validate", study.spec)
    assert status == 2 and "data OK" not in stdout
    assert "cohort.criteria[0].where: unknown column 'aqp4'" in err
    assert "_line" not in err and "_patient_row" not in err


def test_a_table_no_endpoint_needs_is_not_read_so_it_cannot_stop_or_change_the_run(cli, study):
    status, _, err = cli("run", study.spec, "-o", study.out / "before", "--quiet", "--only", "arr")
    assert status == 0, err
    study.csv("titers").write_text("this is not,a titers table\n1,2,3\n")
    study.csv("edss").unlink()
    status, _, err = cli("run", study.spec, "-o", study.out / "after", "--quiet", "--only", "arr")
    assert status == 0, err
    before = json.loads((study.out / "before" / "results.json").read_text())
    assert pd.read_csv(study.out / "before" / "results.csv").equals(pd.read_csv(study.out / "after" / "results.csv"))
    assert set(before["provenance"]["data"]["sha256"]) == {"patients", "treatments", "administrations", "relapses"}


def test_characteristics_of_sex_with_a_blank_value_gives_one_missing_row(cli, study):
    study.set_cell("patients", 3, "sex", "")
    study.edit(lambda raw: study.endpoint("patients")(raw).update(params={"variables": ["sex"]}))
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 0, err
    results = pd.read_csv(study.out / "results.csv")
    assert (results["measure"] == "sex:missing").sum() == 1


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("data.read.delimiter", "::", "expected auto or one character"),
        ("data.read.decimal", ";", "expected '.' or ','"),
        ("data.read.encoding", "klingon", "expected a text encoding such as utf-8, cp1252"),
        ("data.read.date_format", "%d.%m", "expected a date format with day, month and year"),
        ("data.read.date_format", ["%d.%m.%Y", "%Q"], "expected a date format with day, month and year"),
        ("data.read.delimter", ";", "unknown option or table (did you mean 'delimiter'?)"),
        ("data.read.edss", {"decimals": ","}, "unknown option (did you mean 'decimal'?)"),
        ("data.values", {"patient": {"sex": {"1": "M"}}}, "unknown table (did you mean 'patients'?)"),
        ("data.values", {"patients": {"gender": {"1": "M"}}}, "not a canonical column of patients"),
        ("data.values", {"patients": {"sex": "1=M"}}, "expected a mapping code -> value"),
        ("data.tables", {"patient": "Patienten.csv"}, "unknown table (did you mean 'patients'?)"),
        ("data.tables", {"patients": ""}, "data.tables.patients: expected a non-empty string"),
    ],
)
def test_a_bad_reading_option_is_refused_naming_its_path(cli, study, path, value, expected):
    study.edit(_set(path, value))
    refused(cli, study, expected)


def test_a_file_named_in_data_tables_that_is_missing_is_refused(cli, study):
    study.edit(_set("data.tables", {"patients": "Patienten.csv"}))
    refused(cli, study, "patients: file not found:", "Patienten.csv (named in data.tables.patients)")


def test_a_cp1252_file_read_as_utf8_points_to_the_encoding_option(cli, study):
    study.csv("patients").write_bytes(study.csv("patients").read_bytes().replace(b"NMOSD", "NMOSD Müller".encode("cp1252"), 1))
    refused(cli, study, "patients, line 2", "is not UTF-8 text", "data.read.encoding", "cp1252")


# --------------------------------------------------------------------------- data: file shape


def test_a_row_with_too_many_fields_is_refused(cli, study):
    study.replace_line("edss", 4, "P01,2019-11-21,3.0,extra")
    refused(cli, study, "edss, line 4: expected 3 fields as in the header, found 4")


def test_a_row_with_too_few_fields_is_refused(cli, study):
    study.replace_line("edss", 4, "P01,2019-11-21")
    refused(cli, study, "edss, line 4: expected 3 fields as in the header, found 2")


def test_a_ragged_row_in_a_file_with_quotes_is_refused(cli, study):
    study.replace_line("adverse_events", 3, 'P05,2015-09-12,"Headache, mild",1,no,yes,none')
    refused(cli, study, "adverse_events, line 3: expected 8 fields as in the header, found 7")


def test_a_table_that_is_not_utf8_is_refused_with_the_line(cli, study):
    study.csv("patients").write_bytes(study.csv("patients").read_bytes().replace(b"NMOSD", b"NMOSD \xe9", 2))
    refused(cli, study, "patients, line 2", "is not UTF-8", "save it as UTF-8")


@pytest.mark.parametrize("table", ["patients", "treatments", "relapses", "edss", "administrations"])
def test_an_empty_file_is_refused(cli, study, table):
    study.csv(table).write_bytes(b"")
    refused(cli, study, f"{table}: {table}.csv is empty")


@pytest.mark.parametrize("table", ["patients", "treatments"])
def test_a_required_table_with_only_a_header_is_refused(cli, study, table):
    study.write_lines(table, study.lines(table)[:1])
    refused(cli, study, f"{table}: the table has no rows")


def test_a_table_with_carriage_return_only_line_endings_is_refused(cli, study):
    study.csv("edss").write_bytes(study.csv("edss").read_bytes().replace(b"\n", b"\r"))
    refused(cli, study, "edss, line 1: edss.csv ends its lines with a carriage return only", "LF or CRLF")


@pytest.mark.parametrize("quoted", [False, True])
def test_a_stray_carriage_return_is_refused_with_its_line(cli, study, quoted):
    lines = study.lines("adverse_events")
    lines[3] = lines[3].replace(",", "\r,", 1)
    if quoted:  # a quoted value elsewhere: the CSV scan finds it
        lines[1] = lines[1].replace("Headache", '"Headache"')
    study.write_lines("adverse_events", lines)
    refused(cli, study, "adverse_events, line 4: a line break (carriage return) inside an unquoted value")


@pytest.mark.parametrize("target", ["/dev/zero", "folder"])
def test_a_table_that_is_not_a_regular_file_is_refused_before_reading(cli, study, target):
    study.csv("edss").unlink()
    if target == "folder":
        study.csv("edss").mkdir()
    else:
        study.csv("edss").symlink_to(target)
    started = time.monotonic()
    refused(cli, study, "edss: edss.csv is not a regular file")
    assert time.monotonic() - started < 10


def test_a_table_of_one_huge_line_is_refused_after_reading_its_first_mebibyte(cli, study):
    with study.csv("edss").open("wb") as handle:  # 200 MB, no line break
        for _ in range(200):
            handle.write(b"a" * 1_000_000)
    started = time.monotonic()
    refused(cli, study, "edss, line 1: edss.csv: the header line is longer than 1024 KiB")
    assert time.monotonic() - started < 10


def test_a_header_with_100000_columns_is_refused_fast(cli, study):
    study.csv("edss").write_text(",".join(f"c{i}" for i in range(100_000)) + "\n")
    started = time.monotonic()
    refused(cli, study, "edss, line 1: the header has 100,000 columns; expected at most 2,000")
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "the following arguments are required: command"),
        (("run",), "the following arguments are required: spec"),
        (("run", "SPEC", "--frobnicate"), "unrecognized arguments: --frobnicate"),
        (("run", "SPEC", "--jobs"), "argument --jobs: expected one argument"),
        (("run", "SPEC", "--jobs", "many"), "argument --jobs: invalid int value: 'many'"),
        (("run", "SPEC", "--jobs", "0"), "--jobs: expected a number of worker processes >= 1"),
        (("run", "SPEC", "--format", "dox"), "--format: unknown renderer 'dox' (did you mean 'docx'?)"),
        (("run", "SPEC", "--only", "arx"), "--only: unknown endpoint id 'arx' (did you mean 'arr'?)"),
        (("run", "SPEC", "--variant", "primery"), "--variant: unknown variant 'primery' (did you mean 'primary'?)"),
        (("validate",), "the following arguments are required: spec"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("simulate", "-o", "OUT"), "the following arguments are required: --patients"),
        (("simulate", "--patients", "-5", "-o", "OUT"), "--patients"),
    ],
)
def test_a_bad_command_line_exits_2_with_a_message(cli, study, argv, expected):
    argv = [str(study.spec) if a == "SPEC" else str(study.out) if a == "OUT" else a for a in argv]
    if argv and argv[0] == "run":
        argv += ["-o", str(study.out)]
    status, _, err = cli(*argv)
    assert status == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    assert result_files(study.out) == []


def test_an_output_folder_under_a_regular_file_is_refused_before_any_computation(cli, study):
    blocker = study.root / "a_file"
    blocker.write_text("not a folder")
    status, stdout, err = cli("run", study.spec, "-o", blocker / "out", "--quiet")
    assert status == 2, err
    assert "-o: cannot write to the output folder" in err and "a_file" in err
    assert "Traceback" not in err and stdout == ""
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("plot", "expected"),
    [("forest.gif", "--plot: expected a .png, .svg or .pdf file name, got forest.gif"),
     ("study.yaml/forest.png", "--plot: cannot write to the output folder")],
)
def test_a_bad_plot_path_is_refused_before_any_computation(cli, study, plot, expected):
    refused(cli, study, expected, argv=("--plot", str(study.root / plot)))


def test_an_output_path_that_is_a_regular_file_is_refused(cli, study):
    study.out.write_text("occupied")
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 2, err
    assert "-o: cannot write to the output folder" in err
    assert study.out.read_text() == "occupied"


def test_the_command_line_refusal_has_no_traceback_in_a_real_process(study):
    """The same contract seen from outside: a subprocess, exit 2, one clean message."""
    study.edit(_set("endpoints.1.params.post_lag_days", -5))
    proc = subprocess.run(
        [sys.executable, "-m", "endpointkit.cli", "run", str(study.spec), "-o", str(study.out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "endpointkit: error: endpoints[1].params.post_lag_days: expected a value >= 0, got -5"
    assert result_files(study.out) == []


# --------------------------------------------------------------------------- plugin files


def test_a_plugin_file_that_raises_on_import_is_refused(cli, study):
    study.plugin_file("broken.py", "raise RuntimeError('the plugin is broken')\n")
    refused(cli, study, "plugins[0]: error while loading", "broken.py", "RuntimeError: the plugin is broken")


def test_a_plugin_file_with_a_syntax_error_is_refused(cli, study):
    study.plugin_file("typo.py", "def register_endpoints(:\n")
    refused(cli, study, "plugins[0]: error while loading", "typo.py", "SyntaxError")


def test_a_missing_plugin_file_is_refused(cli, study):
    study.edit(lambda raw: raw.update(plugins=["./not_there.py"]))
    refused(cli, study, "plugins[0]", "not_there.py", "not found")


def test_a_plugin_entry_that_is_not_a_python_file_is_refused(cli, study):
    study.edit(lambda raw: raw.update(plugins=["./notes.txt"]))
    refused(cli, study, "plugins[0]: expected a path to a .py file")


def test_a_plugin_that_registers_an_existing_endpoint_name_is_refused(cli, study):
    study.plugin_file("clash.py", """\
        from endpointkit import hookimpl
        from endpointkit.plugins.arr_change import ArrChange

        class Again(ArrChange):
            pass

        @hookimpl
        def register_endpoints():
            return [Again]
    """)
    refused(cli, study, "endpoint 'arr_change' is registered twice")


# --------------------------------------------------------------------------- unsafe YAML


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/name:os.system", "!!python/object:pathlib.Path"])
def test_yaml_with_a_python_tag_is_refused_and_never_constructed(cli, study, monkeypatch, tag):
    monkeypatch.chdir(study.root)
    study.spec.write_text(f"study: {tag} ['touch pwned']\nendpoints: [{{id: arr, plugin: arr_change}}]\n")
    refused(cli, study, "is not valid YAML at line 1", "could not determine a constructor", "python/")
    assert not (study.root / "pwned").exists()


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic bomb as a YAML list: each item lists the previous one `width` times (9**9 strings
    from 81 aliases, under the alias-count limit)."""
    items = [f"&l0 [{', '.join(['lol'] * width)}]"]
    items += [f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(f"    - {item}" for item in items)


def test_a_yaml_alias_bomb_fails_fast(cli, study):
    study.spec.write_text(f"data: {{path: data}}\nendpoints: [{{id: arr, plugin: arr_change}}]\ntable:\n  notes:\n{billion_laughs()}\n")
    started = time.perf_counter()
    refused(cli, study, "expands to more than 1,000,000 values through aliases", "refusing")
    assert time.perf_counter() - started < 2


def test_a_yaml_with_very_many_aliases_is_refused(cli, study):
    aliases = ", ".join(["*x"] * 150)
    study.spec.write_text(f"data: {{path: data, source: &x csv}}\ntable: {{notes: [{aliases}]}}\nendpoints: [{{id: arr, plugin: arr_change}}]\n")
    refused(cli, study, "more than 100 aliases", "refusing")


def test_a_yaml_that_contains_itself_is_refused(cli, study):
    study.spec.write_text("data: {path: data}\ntable: {notes: &loop [a, *loop]}\nendpoints: [{id: arr, plugin: arr_change}]\n")
    refused(cli, study, "refers to itself through an alias")


def test_a_deeply_nested_yaml_is_refused(cli, study):
    study.spec.write_text("table: {notes: " + "[" * 5000 + "]" * 5000 + "}\n")
    refused(cli, study, "study.yaml")


# --------------------------------------------------------------------------- failure isolation (exit 3)

RAISING_PLUGIN = """\
from dataclasses import dataclass

from endpointkit import Endpoint, hookimpl


@dataclass(frozen=True)
class NoParams:
    pass


class Explodes(Endpoint):
    name = "explodes"
    title = "An endpoint with a bug"
    Params = NoParams

    def compute(self, cohort, params, ctx):
        raise ZeroDivisionError("the plugin divided by zero")


@hookimpl
def register_endpoints():
    return [Explodes]
"""

CONTRACT_BREAKING_PLUGIN = """\
from dataclasses import dataclass

import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl


@dataclass(frozen=True)
class NoParams:
    pass


class Overfull(Endpoint):
    name = "overfull"
    title = "A proportion above one"
    Params = NoParams

    def compute(self, cohort, params, ctx):
        ids = cohort.patients["patient_id"]
        rows = [Row(measure="share", stat="proportion", count=34, n=20, estimate=1.7)]
        return EndpointResult(rows=rows, per_patient=pd.DataFrame({"patient_id": ids}))


@hookimpl
def register_endpoints():
    return [Overfull]
"""


@pytest.mark.parametrize(
    ("plugin", "source", "reason"),
    [
        ("explodes", RAISING_PLUGIN, "ZeroDivisionError: the plugin divided by zero"),
        ("overfull", CONTRACT_BREAKING_PLUGIN, "row 'share': count 34 exceeds n 20"),
    ],
    ids=["raises", "breaks-the-results-contract"],
)
def test_a_failing_endpoint_exits_3_and_the_others_complete(cli, study, plugin, source, reason):
    study.plugin_file(f"{plugin}.py", source)
    study.edit(lambda raw: raw["endpoints"].insert(2, {"id": "bad_one", "plugin": plugin}))
    status, stdout, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 3, err
    assert "Traceback" not in err
    assert f"endpoint 'bad_one' ({plugin}, variant primary) failed: {reason}" in err
    results = pd.read_csv(study.out / "results.csv")
    assert set(results["endpoint"]) == {"patients", "arr", "relapse_free", "edss", "titer", "discontinuation", "safety"}
    assert "1.1 [0.6\u20131.4]" in stdout  # the ARR row is still in the printed table
    payload = json.loads((study.out / "results.json").read_text())
    (failure,) = payload["failures"]
    assert failure["endpoint"] == "bad_one" and failure["plugin"] == plugin
    assert reason in failure["reason"]
    assert not (study.out / "per_patient" / "bad_one.csv").exists()


def test_a_proportion_above_one_is_reported_as_a_contract_breach(cli, study):
    source = CONTRACT_BREAKING_PLUGIN.replace("count=34, n=20, estimate=1.7", "count=None, n=20, estimate=1.7")
    study.plugin_file("overfull.py", source)
    study.edit(lambda raw: raw["endpoints"].append({"id": "bad_one", "plugin": "overfull"}))
    status, _, err = cli("run", study.spec, "-o", study.out, "--quiet")
    assert status == 3, err
    assert "a proportion must lie in [0, 1], got 1.7" in err
    payload = json.loads((study.out / "results.json").read_text())
    assert payload["failures"][0]["endpoint"] == "bad_one"
    assert len(pd.read_csv(study.out / "results.csv")) > 0

"""The Python API: run() on a spec path, mapping or YAML text, with data from a folder or from
DataFrames in memory; Results.write, Results.figure and the notebook display."""

from __future__ import annotations

import inspect
import typing

import pandas as pd
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC, SPECS

import endpointkit
from endpointkit.errors import DataError, EndpointkitError, UsageError


@pytest.fixture(scope="module")
def from_file():
    return endpointkit.run(DEMO_SPEC)


def _tables() -> dict[str, pd.DataFrame]:
    """The demo tables as a user would have them in a notebook: typed columns, real dates."""
    tables = {p.stem: pd.read_csv(p) for p in DEMO_DATA.glob("*.csv")}
    for name, column in (("patients", "birth_date"), ("patients", "onset_date"), ("treatments", "start_date"), ("relapses", "onset_date")):
        tables[name][column] = pd.to_datetime(tables[name][column])
    return tables


def test_in_memory_dataframes_give_the_same_results_as_the_files(from_file):
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    results = endpointkit.run(raw, data=_tables())
    pd.testing.assert_frame_equal(results.frame, from_file.frame)
    assert results.provenance["data"]["source"] == "dataframes"


def test_yaml_text_with_a_base_folder_and_only_as_a_string(from_file):
    results = endpointkit.run(DEMO_SPEC.read_text(), base=SPECS, only="arr")
    assert set(results.frame["endpoint"]) == {"arr"}
    expected = from_file.frame[from_file.frame["endpoint"] == "arr"].reset_index(drop=True)
    pd.testing.assert_frame_equal(results.frame.reset_index(drop=True), expected, check_dtype=False)
    results = endpointkit.run(DEMO_SPEC, only=["arr", "edss"])
    assert list(dict.fromkeys(results.frame["endpoint"])) == ["arr", "edss"]


def test_a_data_folder_replaces_the_specs_data_path(from_file):
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = "nowhere"
    results = endpointkit.run(raw, data=DEMO_DATA)
    pd.testing.assert_frame_equal(results.frame, from_file.frame)


def test_run_has_an_explicit_typed_signature():
    signature = inspect.signature(endpointkit.run)
    assert list(signature.parameters) == ["spec", "data", "only", "variant", "jobs", "base", "progress"]
    assert all(p.kind is p.KEYWORD_ONLY for name, p in signature.parameters.items() if name not in ("spec", "data"))
    hints = typing.get_type_hints(endpointkit.run)
    assert "only" in hints and "data" in hints and hints["jobs"] is int
    assert ":param only:" in endpointkit.run.__doc__


@pytest.mark.parametrize("data, error, message", [
    ({"patient": pd.DataFrame()}, UsageError, "data: unknown table 'patient'"),
    ({"patients": [1, 2]}, UsageError, "data['patients']: expected a pandas DataFrame"),
    ({"patients": pd.DataFrame({"patient_id": ["a"]})}, DataError, "treatments"),
])
def test_bad_in_memory_data_is_named(data, error, message):
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        endpointkit.run(raw, data=data)


def test_a_bad_spec_mapping_names_its_key():
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["table"]["decimals"] = "two"
    with pytest.raises(EndpointkitError, match="table.decimals"):
        endpointkit.run(raw, base=SPECS)


def test_write_gives_the_cli_files_in_every_format_and_figures(from_file, tmp_path):
    paths = from_file.write(tmp_path / "out", formats=["github", "xlsx"], figures=["png", "svg"])
    names = {p.relative_to(tmp_path / "out").as_posix() for p in paths}
    assert {"results.csv", "results.json", "table.md", "table.xlsx", "report.html", "attrition.csv",
            "figures/consort.png", "figures/consort.svg", "per_patient/arr.csv"} <= names
    assert all(p.is_file() for p in paths)
    assert pd.read_csv(tmp_path / "out" / "results.csv")["display"].tolist() == from_file.frame["display"].tolist()


def test_figure_returns_a_matplotlib_figure(from_file):
    from matplotlib.figure import Figure

    assert isinstance(from_file.figure("km", endpoint="relapse_free"), Figure)
    assert isinstance(from_file.figure("consort"), Figure)
    with pytest.raises(UsageError, match="no Kaplan-Meier curve for endpoint 'arr'"):
        from_file.figure("km", endpoint="arr")
    with pytest.raises(UsageError, match="expected 'km', 'consort' or 'forest'"):
        from_file.figure("pie")


def test_notebook_display_is_the_table_as_html(from_file):
    page = from_file._repr_html_()
    assert page.startswith('<div class="endpointkit">') and "Relapse-free on IVIG" in page
    for display in from_file.frame["display"]:
        assert display.replace("<", "&lt;").replace(">", "&gt;") in page

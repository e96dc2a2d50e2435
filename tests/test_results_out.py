"""Results out: Word and Excel files, Excel-friendly CSV, figures and the one-file report.

Every file is read back with the library a user would open it with (python-docx, openpyxl,
pandas) and checked against results.csv; Kaplan-Meier numbers at risk are recounted from the
per-patient file."""

from __future__ import annotations

import html
import re

import docx
import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC, SPECS

from endpointkit.disclosure import Policy
from endpointkit.figures import consort_figure, forest_figure, km_figure
from endpointkit.stats import KaplanMeier

SENSITIVITY = SPECS / "ivig_nmosd_sensitivity.yaml"


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """The demo written once in each binary format (and with --figures)."""
    from endpointkit.cli import main

    root = tmp_path_factory.mktemp("demo")
    for fmt in ("docx", "xlsx"):
        assert main(["run", str(DEMO_SPEC), "-o", str(root / fmt), "--format", fmt, "--quiet",
                     "--figures", str(root / "figures"), "--figure-format", "png,svg,pdf"]) == 0
    return root


def _spec(tmp_path, **changes):
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(DEMO_DATA)
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _primary(out) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv", dtype={"display": str})
    return frame[frame["variant"] == "primary"]


def test_docx_holds_every_figure_of_the_table_grouped_by_endpoint(demo_out):
    out = demo_out / "docx"
    document = docx.Document(out / "table.docx")
    (grid,) = document.tables
    cells = [[c.text for c in row.cells] for row in grid.rows]
    assert cells[0] == ["Measure", "n", "Result"]
    shown = {c for row in cells for c in row}
    for record in _primary(out).itertuples():
        assert record.display in shown, record.measure
    # an endpoint's title is one merged row over its measures
    assert ["Relapse-free on IVIG"] * 3 in cells
    text = [p.text for p in document.paragraphs]
    assert text[0] == "IVIG add-on therapy in NMO-IgG-positive NMOSD (synthetic demo cohort)"
    assert any(t.startswith("1. Cohort: 20 of 23 patients analysed") for t in text)


def test_docx_is_landscape_when_the_table_is_wide(cli, tmp_path):
    from docx.enum.section import WD_ORIENT

    status, _, err = cli("run", SENSITIVITY, "-o", tmp_path / "s", "--format", "docx", "--quiet")
    assert status == 0, err
    side = docx.Document(tmp_path / "s" / "side_by_side.docx")
    assert side.sections[0].orientation == WD_ORIENT.LANDSCAPE
    assert side.sections[0].page_width > side.sections[0].page_height
    table = docx.Document(tmp_path / "s" / "table.docx")
    assert table.sections[0].orientation == WD_ORIENT.PORTRAIT


def test_xlsx_sheets_hold_the_table_as_shown_and_the_numbers_as_numbers(demo_out):
    out = demo_out / "xlsx"
    book = openpyxl.load_workbook(out / "table.xlsx")
    assert book.sheetnames == ["Table", "Results", "Attrition", "Data quality", "Provenance"]
    shown = {c.value for row in book["Table"].iter_rows() for c in row}
    frame = _primary(out)
    assert set(frame["display"]) <= shown
    sheet = book["Results"]
    header = [c.value for c in sheet[1]]
    assert header == list(frame.columns)
    records = [dict(zip(header, [c.value for c in row], strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert len(records) == len(frame)
    for got, want in zip(records, frame.to_dict(orient="records"), strict=True):
        for column in ("estimate", "low", "high", "p_value", "n", "count"):
            if pd.isna(want[column]):
                assert got[column] is None
            else:
                assert isinstance(got[column], int | float) and got[column] == pytest.approx(want[column], rel=1e-12)
    attrition = [[c.value for c in row] for row in book["Attrition"].iter_rows()]
    assert attrition[0] == ["step", "remaining", "excluded"] and attrition[-1] == ["IVIG for more than 6 months", 20, 1]
    provenance = {row[0].value: row[1].value for row in book["Provenance"].iter_rows(min_row=2)}
    assert len(provenance["spec.sha256"]) == 64


def test_xlsx_and_docx_keep_hostile_text_as_text(cli, tmp_path):
    spec = _spec(tmp_path, study={"id": "x", "title": '=HYPERLINK("http://evil","click") <b>\x07'},
                 table={"labels": {"arr.pre": "+cmd|' /C calc'!A0", "arr.post": "@SUM(1+1)"}})
    for fmt in ("xlsx", "docx"):
        status, _, err = cli("run", spec, "-o", tmp_path / fmt, "--format", fmt, "--quiet")
        assert status == 0, err
    book = openpyxl.load_workbook(tmp_path / "xlsx" / "table.xlsx")
    cells = [c for row in book["Table"].iter_rows() for c in row if isinstance(c.value, str)]
    risky = [c for c in cells if c.value[:1] in "=+-@"]
    assert {c.value for c in risky} >= {'=HYPERLINK("http://evil","click") <b>', "+cmd|' /C calc'!A0", "@SUM(1+1)"}
    assert all(c.data_type == "s" for c in risky)  # text, not a formula
    document = docx.Document(tmp_path / "docx" / "table.docx")
    assert document.paragraphs[0].text.rstrip() == '=HYPERLINK("http://evil","click") <b>'  # the bell is dropped


def test_binary_formats_need_an_output_folder(cli):
    status, _, err = cli("run", DEMO_SPEC, "--format", "xlsx")
    assert status == 2 and "-o DIR" in err


def test_csv_for_excel_starts_with_a_byte_order_mark(cli, tmp_path):
    status, _, _ = cli("run", DEMO_SPEC, "-o", tmp_path / "x", "--csv-excel", "--quiet")
    assert status == 0
    for name in ("results.csv", "attrition.csv", "data_quality.csv", "per_patient/arr.csv"):
        raw = (tmp_path / "x" / name).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), name
    frame = pd.read_csv(tmp_path / "x" / "results.csv", encoding="utf-8-sig")
    assert frame.columns[0] == "variant"
    assert "1.1 [0.6\u20131.4]" in set(frame["display"])  # the en dash survives
    plain = (tmp_path / "plain")
    cli("run", DEMO_SPEC, "-o", plain, "--quiet")
    assert not (plain / "results.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_report_html_is_one_self_contained_file(demo_out):
    page = (demo_out / "docx" / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!data:)[a-z]+:""", page, re.I)  # no network
    assert "<script" not in page and "@import" not in page and "url(" not in page
    for record in _primary(demo_out / "docx").itertuples():
        assert html.escape(record.display) in page, record.measure
    assert page.count('src="data:image/png;base64,') == 3  # two KM curves and the attrition diagram
    for heading in ("Results", "Figures", "Patient flow (attrition)", "Data quality", "Provenance"):
        assert f"<h2>{heading}</h2>" in page


def test_report_escapes_spec_text_and_shows_the_sensitivity(cli, tmp_path):
    spec = _spec(tmp_path, study={"id": "x", "title": "<script>alert(1)</script> & co"})
    status, _, _ = cli("run", spec, "-o", tmp_path / "o", "--quiet")
    page = (tmp_path / "o" / "report.html").read_text()
    assert status == 0 and "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    status, _, _ = cli("run", SENSITIVITY, "-o", tmp_path / "s", "--quiet")
    page = (tmp_path / "s" / "report.html").read_text()
    assert "<h2>Sensitivity analyses</h2>" in page and "What moves" in page
    assert page.count("data:image/png") == 4  # + the forest plot


def test_figures_are_written_in_every_format_asked_for(demo_out):
    files = sorted(p.name for p in (demo_out / "figures").iterdir())
    stems = ["consort", "km_discontinuation_persistence_on_treatment", "km_relapse_free_relapse_free_survival"]
    assert files == sorted(f"{s}.{e}" for s in stems for e in ("pdf", "png", "svg"))
    folder = demo_out / "figures"
    assert (folder / "consort.pdf").read_bytes()[:5] == b"%PDF-"
    assert (folder / "consort.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (folder / "consort.svg").read_bytes()[:500]


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_km_number_at_risk_recounted_from_the_per_patient_file(demo_out):
    frame = pd.read_csv(demo_out / "docx" / "per_patient" / "relapse_free.csv")
    used = frame[frame["included"]]
    km = KaplanMeier.fit(used["km_time_months"], used["km_event"])
    fig = km_figure(km, title="Relapse-free")
    risk = fig.axes[1]
    ticks = risk.get_xticks()
    counts = [int((used["km_time_months"] >= t).sum()) for t in ticks]  # by hand
    assert [t.get_text() for t in risk.texts] == [str(c) for c in counts]
    assert counts[0] == 20 and ticks[1] - ticks[0] == 12
    curve = fig.axes[0].lines[0]
    # the step curve passes through 1 - (events so far) / 20 before the first censoring (no censoring early)
    first = np.sort(used.loc[used["km_event"], "km_time_months"].to_numpy())[0]
    assert curve.get_ydata()[list(curve.get_xdata()).index(first)] == pytest.approx(19 / 20)
    assert any(line.get_marker() == "|" for line in fig.axes[0].lines)  # censoring marks


def test_km_figure_under_disclosure_hides_small_numbers_at_risk_and_censoring():
    km = KaplanMeier.fit([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 30, 30], [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0])
    fig = km_figure(km, title="x", policy=Policy(min_count=5, round_to=5))
    # at 0, 6, 12, ..., 30 months: 12, 7, 2, 2, 2, 2 at risk
    assert [t.get_text() for t in fig.axes[1].texts] == ["10", "5", "<5", "<5", "<5", "<5"]
    assert not any(line.get_marker() == "|" for line in fig.axes[0].lines)


def test_consort_diagram_shows_every_step_and_exclusion(demo_out):
    attrition = pd.read_csv(demo_out / "docx" / "attrition.csv")
    fig = consort_figure(attrition)
    text = " ".join(_texts(fig)).replace("\n", " ")
    for step in attrition.itertuples():
        assert f"n = {step.remaining}" in text
    assert "Excluded: 1 not meeting: NMO-IgG positive" in text


def test_forest_plot_defaults_to_the_first_outcome_estimate_with_human_labels(tmp_path):
    import endpointkit

    results = endpointkit.run(SENSITIVITY)
    fig = forest_figure(results)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "ARR before, median [IQR]"
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "Primary analysis"
    texts = [t.get_text() for t in ax.texts]
    assert "1.1 [0.6\u20131.4]" in texts and "Estimate [IQR]" in texts
    with pytest.raises(Exception, match="is a test"):
        forest_figure(results, "arr.paired_test")


def test_forest_plot_of_a_ratio_uses_a_log_axis_and_a_line_at_1(cli, tmp_path):
    raw = yaml.safe_load(SENSITIVITY.read_text())
    status, _, err = cli("run", SENSITIVITY, "--quiet", "--plot", tmp_path / "f.pdf", "--plot-measure", "arr.pre")
    assert status == 0, err
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    import endpointkit

    spec = tmp_path / "crude.yaml"
    spec.write_text(yaml.safe_dump({"extends": str(SENSITIVITY.resolve()),
                                    "endpoints": _crude_endpoints(raw)}))
    results = endpointkit.run(spec)
    fig = forest_figure(results, "arr.rate_ratio")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.lines)


def _crude_endpoints(raw):
    endpoints = [dict(e) for e in raw["endpoints"]]
    for e in endpoints:
        if e["id"] == "arr":
            e["params"] = {**e.get("params", {}), "summary": "crude"}
    return endpoints

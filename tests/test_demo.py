"""The demo study reproduces every figure of the seed abstract (synthetic data, documented build).

Abstract (Mult Scler Relat Disord 2020;42:102109): 20 patients (19 women; median age 52); median ARR 1.1
[0.6-1.4] -> 0.3 [0-0.6], p < 0.001, 19 (95%) reduced; 7 (35%) relapse-free during a median of 43.5
months; median EDSS 4.0 -> 4.0, 80% no progression, 25% improved; median titer 1:480 (n = 19) -> 1:120
(n = 13), p = 0.006, 3 negative; 6 (30%) stopped IVIG for relapses after a median of 27.5 months
(IQR 15.3-43.3); no severe adverse event led to discontinuation.
"""

import importlib.util
import json

import pandas as pd
import pytest
from paths import DEMO_DATA, DEMO_SPEC, SPECS

import endpointkit


@pytest.fixture(scope="module")
def demo():
    return endpointkit.run(DEMO_SPEC)


def display(results, endpoint, measure):
    frame = results.frame
    row = frame[(frame["endpoint"] == endpoint) & (frame["measure"] == measure)]
    assert len(row) == 1, (endpoint, measure)
    return row.iloc[0]


@pytest.mark.parametrize(
    ("endpoint", "measure", "shown", "n"),
    [
        ("patients", "patients", "20", 20),
        ("patients", "female", "19 (95%)", 20),
        ("arr", "pre", "1.1 [0.6\u20131.4]", 20),
        ("arr", "post", "0.3 [0.0\u20130.6]", 20),
        ("arr", "paired_test", "<0.001", 20),
        ("arr", "responders", "19 (95%)", 20),
        ("relapse_free", "relapse_free", "7 (35%)", 20),
        ("edss", "no_progression", "16 (80%)", 20),
        ("edss", "improved", "5 (25%)", 20),
        ("titer", "paired_test", "0.006", 13),
        ("discontinuation", "discontinued", "6 (30%)", 20),
        ("discontinuation", "time_to_discontinuation_months", "27.5 [15.3\u201343.3]", 6),
        ("safety", "severe_ae_led_to_discontinuation", "0 (0%)", 20),
    ],
)
def test_the_demo_table_shows_the_abstract_figure(demo, endpoint, measure, shown, n):
    row = display(demo, endpoint, measure)
    assert row["display"] == shown
    assert row["n"] == n


def test_medians_that_the_abstract_rounds(demo):
    assert round(display(demo, "patients", "age_at_index")["estimate"]) == 52
    assert round(display(demo, "relapse_free", "followup_months")["estimate"], 1) == 43.5
    assert display(demo, "edss", "baseline")["estimate"] == 4.0
    assert display(demo, "edss", "final")["estimate"] == 4.0
    pre, post = display(demo, "titer", "pre"), display(demo, "titer", "post")
    assert (pre["display"].split()[0], pre["n"]) == ("1:480", 19)
    assert (post["display"].split()[0], post["n"]) == ("1:120", 13)
    assert display(demo, "titer", "became_negative")["count"] == 3


def test_the_demo_figures_follow_from_the_per_patient_frames_by_hand(demo):
    """Recompute the headline numbers from the per-patient frames with numpy/scipy directly."""
    import numpy as np
    from scipy import stats

    arr = demo.per_patient["arr"]
    pre = arr["pre_relapses"] / (arr["pre_days"] / 365.25)
    post = arr["post_relapses"] / (arr["post_days"] / 365.25)
    assert np.quantile(pre, [0.25, 0.5, 0.75]) == pytest.approx(display(demo, "arr", "pre")[["low", "estimate", "high"]].to_numpy(dtype=float))
    assert np.quantile(post, 0.5) == pytest.approx(display(demo, "arr", "post")["estimate"])
    expected = stats.wilcoxon(post - pre, zero_method="wilcox", correction=False, method="exact")
    assert display(demo, "arr", "paired_test")["p_value"] == pytest.approx(expected.pvalue)
    assert int((post < pre).sum()) == 19


def test_attrition_and_data_quality_account_for_every_patient_and_record(demo):
    attrition = demo.attrition
    assert attrition["remaining"].tolist() == [23, 22, 22, 21, 20]
    assert attrition["excluded"].sum() == 3
    quality = demo.data_quality
    reasons = " | ".join(quality["reason"])
    assert "pseudo relapse" in reasons
    assert "merged into it" in reasons
    assert "later course of IVIG" in reasons
    assert "after the data cut-off" in reasons
    excluded = quality[quality["action"] == "excluded"]
    assert set(excluded[excluded["table"] == "patients"]["patient_id"]) == {"P21", "P22", "P23"}


def test_the_committed_demo_data_is_what_the_build_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("build_ivig_nmosd", SPECS / "data" / "build_ivig_nmosd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(tmp_path)
    for path in sorted(DEMO_DATA.glob("*.csv")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_run_writes_every_file_design_md_lists(cli, tmp_path):
    out = tmp_path / "out"
    status, stdout, _ = cli("run", DEMO_SPEC, "--data", DEMO_DATA, "-o", out, "--quiet")
    assert status == 0
    assert "1.1 [0.6\u20131.4]" in stdout
    for name in ("results.csv", "results.json", "table.md", "attrition.csv", "data_quality.csv"):
        assert (out / name).is_file(), name
    for endpoint in ("patients", "arr", "relapse_free", "edss", "titer", "discontinuation", "safety"):
        frame = pd.read_csv(out / "per_patient" / f"{endpoint}.csv")
        assert frame.columns[0] == "patient_id"
        assert len(frame) == 20
    results = pd.read_csv(out / "results.csv")
    assert results.columns.tolist() == [
        "variant", "endpoint", "measure", "group", "stat", "count", "n", "estimate", "low", "high",
        "interval", "p_value", "test", "display",
    ]
    payload = json.loads((out / "results.json").read_text())
    provenance = payload["provenance"]
    assert provenance["spec"]["sha256"] and provenance["data"]["sha256"]["patients"]
    assert provenance["variants"][0]["resolved"]["endpoints"][1]["params"]["pre_window"] == "since_onset"
    assert payload["attrition"][-1]["remaining"] == 20
    assert not list(out.rglob(".endpointkit-*"))


@pytest.mark.parametrize("fmt", ["github", "plain", "latex", "html"])
def test_every_table_format_renders_the_same_figures(demo, fmt):
    text = demo.table(fmt)
    assert "19 (95%)" in text or "19 (95\\%)" in text
    assert "27.5" in text


def test_a_plugin_file_listed_in_the_spec_adds_rows_to_the_table_and_results_csv(cli, tmp_path):
    status, stdout, _ = cli("run", SPECS / "ivig_nmosd_custom.yaml", "-o", tmp_path, "--quiet")
    assert status == 0
    assert "Annualized rate of severe relapses" in stdout
    results = pd.read_csv(tmp_path / "results.csv")
    severe = results[results["endpoint"] == "severe_arr"]
    assert severe["measure"].tolist() == ["pre", "post", "paired_test"]
    assert (tmp_path / "per_patient" / "severe_arr.csv").is_file()


def test_the_plugin_guide_shows_the_tested_plugin_file():
    guide = (SPECS.parent / "docs" / "plugins.md").read_text()
    source = (SPECS / "plugins" / "severe_relapse_rate.py").read_text()
    assert source.strip() in guide

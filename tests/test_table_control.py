"""Table control: decimals per endpoint or measure, ratios at 2, one percent precision per endpoint,
NR for Kaplan-Meier limits not reached, show_ci for outcomes only."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC

from endpointkit.endpoint import Row
from endpointkit.results import decimals_for, format_display, rows_to_frame
from endpointkit.spec import TableSection


def _spec(tmp_path, table: dict, endpoints=None):
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(DEMO_DATA)
    raw["table"].update(table)
    if endpoints:
        raw["endpoints"] = endpoints
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


RATIO = Row(measure="rate_ratio", stat="rate_ratio", n=20, estimate=0.4166, low=0.351, high=0.449, interval="95% CI")


def test_ratios_print_with_two_decimals_by_default():
    assert format_display(RATIO, TableSection(), endpoint="arr") == "0.42 (95% CI 0.35\u20130.45)"
    assert format_display(RATIO, TableSection(decimals=3), endpoint="arr") == "0.417 (95% CI 0.351\u20130.449)"


@pytest.mark.parametrize("decimals, endpoint, measure, stat, expected", [
    ({"default": 2}, "arr", "pre", "median", 2),
    ({"default": 2, "arr": 0}, "arr", "pre", "median", 0),
    ({"default": 2, "arr": 0, "arr.pre": 3}, "arr", "pre", "median", 3),
    ({"arr.rate_ratio": 3}, "arr", "rate_ratio", "rate_ratio", 3),
    ({"arr": 1}, "arr", "rate_ratio", "rate_ratio", 1),  # naming the endpoint overrides the ratio default
    ({}, "edss", "final", "median", 1),
])
def test_decimals_by_measure_then_endpoint_then_default(decimals, endpoint, measure, stat, expected):
    assert decimals_for(TableSection(decimals=decimals), endpoint, measure, stat) == expected


def test_one_percent_precision_within_an_endpoint():
    """auto: 0 decimals below 100 patients, else 1, decided by the endpoint's largest n."""
    rows = [Row(measure="a", stat="proportion", count=30, n=150, estimate=0.2, low=0.1, high=0.3, interval="95% CI"),
            Row(measure="b", stat="proportion", count=7, n=60, estimate=7 / 60, low=0.05, high=0.2, interval="95% CI")]
    frame = rows_to_frame(rows, variant="primary", endpoint="x", table=TableSection())
    assert frame["display"].tolist() == ["30 (20.0%)", "7 (11.7%)"]


def test_km_median_and_limits_not_reached_print_nr():
    never = Row(measure="m", stat="km_median", n=20, count=3, estimate=None, interval="95% CI")
    upper = Row(measure="m", stat="km_median", n=20, count=12, estimate=30.25, low=14.0, high=None, interval="95% CI")
    lower_only = Row(measure="m", stat="km_median", n=20, count=8, estimate=None, low=22.0, interval="95% CI")
    assert format_display(never, TableSection()) == "NR"
    assert format_display(upper, TableSection()) == "30.2 (95% CI 14.0\u2013NR)"
    assert format_display(lower_only, TableSection()) == "NR (95% CI 22.0\u2013NR)"


def test_show_ci_outcomes_leaves_table_1_without_cis(cli, tmp_path):
    status, out, _ = cli("run", _spec(tmp_path, {"show_ci": "outcomes"}))
    assert status == 0
    female = next(line for line in out.splitlines() if "Female" in line)
    relapse_free = next(line for line in out.splitlines() if "Relapse-free after index" in line)
    assert "95% CI" not in female
    assert "7 (35%) [95% CI 15\u201359%]" in relapse_free  # scipy binomtest(7, 20): 0.154-0.592


def test_show_ci_list_targets_endpoints_and_measures(cli, tmp_path):
    status, out, _ = cli("run", _spec(tmp_path, {"show_ci": ["edss.progressed", "safety"]}))
    assert status == 0
    lines = {line.split("|")[2].strip(): line for line in out.splitlines() if line.count("|") > 4}
    assert "95% CI" in lines["Disability worsening, n (%)"]
    assert "95% CI" not in lines["Improved, n (%)"]
    assert "95% CI" in lines["Any adverse event, n (%)"]


def test_decimals_mapping_in_a_spec(cli, tmp_path):
    status, out, _ = cli("run", _spec(tmp_path, {"decimals": {"default": 2, "edss": 0}}), "-o", tmp_path / "out")
    assert status == 0
    frame = pd.read_csv(tmp_path / "out" / "results.csv").set_index(["endpoint", "measure"])["display"]
    assert frame[("arr", "pre")] == "1.10 [0.62\u20131.40]"
    assert frame[("edss", "baseline")] == "4 [3\u20135]"


@pytest.mark.parametrize("table, path, message", [
    ({"decimals": {"edds": 2}}, "table.decimals.edds", "did you mean 'edss'"),
    ({"decimals": {"default": 9}}, "table.decimals.default", "from 0 to 6"),
    ({"show_ci": ["safty"]}, "table.show_ci[0]", "did you mean 'safety'"),
    ({"show_ci": "outcome"}, "table.show_ci", "outcomes"),
])
def test_bad_table_settings_name_the_key(cli, tmp_path, table, path, message):
    status, _, err = cli("run", _spec(tmp_path, table))
    assert status == 2
    assert path in err and message in err, err

"""Sensitivity analysis: variants share the data, run in parallel identically, and show what moves."""

import textwrap

import pandas as pd
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC, SPECS

import endpointkit
from endpointkit.data import CohortData
from endpointkit.engine import load_spec_data, run_spec
from endpointkit.spec import load_spec

SENSITIVITY = SPECS / "ivig_nmosd_sensitivity.yaml"


def test_the_sensitivity_demo_prints_the_side_by_side_table_and_what_moves(cli):
    status, out, _ = cli("run", SENSITIVITY, "--quiet")
    assert status == 0
    assert "Sensitivity analysis: headline figures per variant" in out
    # 14 variants: one row per variant under each headline measure, with its setting
    assert "| pre-window last 12 months" in out and "arr.pre_window=last_12m" in out
    assert "What moves: arr.pre moves most under 'pre-window without the onset attack'" in out


def test_jobs_2_gives_a_byte_identical_results_csv(cli, tmp_path):
    status, _, err = cli("run", SENSITIVITY, "-o", tmp_path / "one", "--jobs", "1", "--quiet")
    assert status == 0, err
    status, _, err = cli("run", SENSITIVITY, "-o", tmp_path / "two", "--jobs", "2", "--quiet")
    assert status == 0, err
    assert (tmp_path / "one" / "results.csv").read_bytes() == (tmp_path / "two" / "results.csv").read_bytes()
    frame = pd.read_csv(tmp_path / "two" / "results.csv")
    assert frame["variant"].nunique() == 16
    assert (tmp_path / "two" / "side_by_side.md").is_file()
    assert (tmp_path / "two" / "what_moves.csv").is_file()


def test_variant_option_runs_one_variant(cli):
    status, out, _ = cli("run", SENSITIVITY, "--variant", "pre-window last 24 months", "--quiet")
    assert status == 0 and "Sensitivity analysis" not in out
    status, _, err = cli("run", SENSITIVITY, "--variant", "pre-window last 25 months", "--quiet")
    assert status == 2 and "did you mean 'pre-window last 24 months'" in err


def test_the_cohort_is_built_once_when_only_endpoint_parameters_change():
    from endpointkit.mapreduce import plan_run

    spec = load_spec(SENSITIVITY)
    data = load_spec_data(spec, spec.plugins)
    results = run_spec(spec, spec.plugins, data=data)
    assert len(results.variants) == 16
    # only 'follow-up to last visit' changes the cohort definition: two cohorts for 16 variants
    plan = plan_run([spec, *spec.variants], spec.plugins, (), 1)
    assert len(plan.cohorts) == 2
    assert isinstance(data, CohortData)


def test_a_p_value_crossing_005_is_flagged(tmp_path):
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(DEMO_DATA)
    raw["endpoints"] = [{"id": "titer", "plugin": "titer_reduction"}]
    # with only complete pairs restricted to the 4 smallest-titer patients the test cannot reach 0.05
    raw["cohort"]["criteria"] = raw["cohort"]["criteria"]
    raw["sensitivity"] = [{"name": "few patients", "set": {"cohort.criteria": raw["cohort"]["criteria"] + [
        {"name": "four patients", "where": "patient_id in ['P01', 'P02', 'P03', 'P04']"}]}}]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    results = endpointkit.run(path)
    moves = results.what_moves()
    test = moves[moves["measure"] == "paired_test"].iloc[0]
    assert test["conclusion_changed"] and "p crosses 0.05" in test["why"]
    assert "CONCLUSION CHANGES under 'few patients'" in results.side_by_side()


def test_a_failing_variant_is_recorded_and_the_others_complete(cli, tmp_path):
    plugin = tmp_path / "fragile.py"
    plugin.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import pandas as pd
        from endpointkit import Endpoint, EndpointResult, hookimpl, param
        from endpointkit.stats import count_row

        @dataclass(frozen=True)
        class Params:
            explode: bool = param(False, "raise in compute")

        class Fragile(Endpoint):
            name = "fragile"
            Params = Params
            def compute(self, cohort, params, ctx):
                if params.explode:
                    raise ZeroDivisionError("boom")
                return EndpointResult(rows=[count_row("n", len(cohort.patients), len(cohort.patients))],
                                      per_patient=pd.DataFrame({"patient_id": cohort.patients["patient_id"]}))

        @hookimpl
        def register_endpoints():
            return [Fragile]
    '''))
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(DEMO_DATA)
    raw["plugins"] = [str(plugin)]
    raw["endpoints"] = [{"id": "arr", "plugin": "arr_change"}, {"id": "f", "plugin": "fragile"}]
    raw["sensitivity"] = [{"name": "explodes", "set": {"f.explode": True}}, {"name": "lag", "set": {"arr.post_lag_days": 90}}]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    status, _, err = cli("run", path, "-o", tmp_path / "out", "--quiet", "--jobs", "2")
    assert status == 3
    assert "'f'" in err and "boom" in err and "Traceback" not in err
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(frame["variant"]) == {"primary", "explodes", "lag"}
    assert not ((frame["variant"] == "explodes") & (frame["endpoint"] == "f")).any()
    import json

    failures = json.loads((tmp_path / "out" / "results.json").read_text())["failures"]
    assert failures == [{"variant": "explodes", "endpoint": "f", "plugin": "fragile", "provider": f"file:{plugin}",
                         "reason": "ZeroDivisionError: boom"}]


def test_forest_plot_of_an_estimate_across_variants(cli, tmp_path):
    pytest.importorskip("matplotlib")
    status, _, _ = cli("run", SENSITIVITY, "--quiet", "--plot", tmp_path / "arr.png", "--plot-measure", "arr.pre")
    assert status == 0
    assert (tmp_path / "arr.png").read_bytes()[:4] == b"\x89PNG"
    status, _, err = cli("run", SENSITIVITY, "--quiet", "--plot", tmp_path / "x.png", "--plot-measure", "arr.nothing")
    assert status == 2 and "arr.nothing" in err

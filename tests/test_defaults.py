"""Spec-level ``defaults:``: one value for every endpoint that has the parameter, unless it sets its own."""

import pytest
import yaml
from paths import DEMO_DATA

from endpointkit.errors import SpecError
from endpointkit.spec import load_spec

BASE = {
    "data": {"path": str(DEMO_DATA)},
    "cohort": {"index": {"treatment": "IVIG"}},
    "endpoints": [
        {"id": "arr", "plugin": "arr_change"},
        {"id": "relapse_free", "plugin": "relapse_free"},
        {"id": "arr0", "plugin": "arr_change", "params": {"post_lag_days": 0}},
        {"id": "safety", "plugin": "safety"},
    ],
}


def load(tmp_path, **extra):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, **extra}))
    return load_spec(path)


def lags(spec):
    return {e.id: getattr(e.params, "post_lag_days", None) for e in spec.endpoints}


def test_a_default_reaches_every_endpoint_with_the_parameter_unless_it_sets_its_own(tmp_path):
    spec = load(tmp_path, defaults={"post_lag_days": 90})
    assert lags(spec) == {"arr": 90, "relapse_free": 90, "arr0": 0, "safety": None}
    assert spec.resolved()["defaults"] == {"post_lag_days": 90}
    assert spec.resolved()["endpoints"][1]["params"]["post_lag_days"] == 90  # provenance shows the applied value


def test_without_defaults_the_plugin_defaults_hold(tmp_path):
    assert lags(load(tmp_path)) == {"arr": 0, "relapse_free": 0, "arr0": 0, "safety": None}


def test_a_default_is_a_sensitivity_axis(tmp_path):
    spec = load(tmp_path, sensitivity=[{"name": "lag", "set": {"defaults.post_lag_days": 90}},
                                       {"grid": {"defaults.post_lag_days": [30, 180]}}])
    assert lags(spec) == {"arr": 0, "relapse_free": 0, "arr0": 0, "safety": None}
    assert [lags(v) for v in spec.variants] == [
        {"arr": 90, "relapse_free": 90, "arr0": 0, "safety": None},
        {"arr": 30, "relapse_free": 30, "arr0": 0, "safety": None},
        {"arr": 180, "relapse_free": 180, "arr0": 0, "safety": None},
    ]
    assert spec.variants[1].variant == "defaults.post_lag_days=30"


@pytest.mark.parametrize(
    ("extra", "where", "expected"),
    [
        ({"defaults": {"post_lag_dayz": 90}}, "defaults.post_lag_dayz", "did you mean 'post_lag_days'"),
        ({"defaults": {"landmarks_months": [12]}, "endpoints": [{"id": "arr", "plugin": "arr_change"}]},
         "defaults.landmarks_months", "no endpoint of this spec has a parameter 'landmarks_months'"),
        ({"defaults": {"post_lag_days": -5}}, "defaults.post_lag_days (for plugin arr_change)", "expected a value >= 0, got -5"),
        ({"defaults": {"post_lag_days": "ninety"}}, "defaults.post_lag_days", "expected an integer"),
        ({"defaults": [90]}, "defaults", "expected a mapping of parameter names to values"),
        ({"sensitivity": [{"name": "v", "set": {"defaults.post_lag_days": -1}}]}, "sensitivity variant 'v'", "expected a value >= 0"),
        ({"sensitivity": [{"name": "v", "set": {"defaults.post_lag_days": 90}}],
          "endpoints": [{"id": "arr", "plugin": "arr_change", "params": {"post_lag_days": 0}}]},
         "set.defaults.post_lag_days", "changes no endpoint"),
    ],
)
def test_bad_defaults_name_their_path(tmp_path, extra, where, expected):
    with pytest.raises(SpecError) as info:
        load(tmp_path, **extra)
    assert where in str(info.value)
    assert expected in str(info.value)


def test_defaults_change_the_numbers_like_the_endpoint_setting_does(tmp_path):
    """A default and the same value set on the endpoint give identical results."""
    from endpointkit.engine import run_spec

    by_default = load(tmp_path, defaults={"post_lag_days": 90}, endpoints=[{"id": "arr", "plugin": "arr_change"}])
    (tmp_path / "own").mkdir()
    own = load(tmp_path / "own", endpoints=[{"id": "arr", "plugin": "arr_change", "params": {"post_lag_days": 90}}])
    zero = load(tmp_path / "own", endpoints=[{"id": "arr", "plugin": "arr_change"}])
    a, b, c = (run_spec(s, s.plugins).frame for s in (by_default, own, zero))
    assert a.drop(columns="display").equals(b.drop(columns="display"))
    assert not a["estimate"].equals(c["estimate"])


def test_a_bad_default_exits_2_with_one_message(cli, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, "defaults": {"post_lag_days": -5}}))
    status, out, err = cli("validate", path, "--spec-only")
    assert status == 2
    assert err.strip() == "endpointkit: error: defaults.post_lag_days (for plugin arr_change): expected a value >= 0, got -5"
    assert "Traceback" not in err

"""Spec loading and validation: every problem names its path; variants are validated up front."""

import textwrap

import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC

from endpointkit.errors import SpecError
from endpointkit.params import Duration
from endpointkit.spec import load_spec


def write_spec(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def demo_raw():
    raw = yaml.safe_load(DEMO_SPEC.read_text())
    raw["data"]["path"] = str(DEMO_DATA)
    return raw


def test_the_demo_spec_loads_into_typed_objects():
    spec = load_spec(DEMO_SPEC)
    assert spec.data_path == DEMO_DATA.resolve()  # relative to the spec file, not the working directory
    assert [e.id for e in spec.endpoints] == ["patients", "arr", "relapse_free", "edss", "titer", "discontinuation", "safety"]
    assert spec.cohort.criteria[1].kind == "min_treatment_months"
    assert str(spec.cohort.cutoff) == "2019-12-31"


def test_validate_names_a_misspelt_parameter_and_lists_the_valid_ones(cli, tmp_path):
    raw = demo_raw()
    raw["endpoints"][1]["params"] = {"pre_windw": "last_24m"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    status, _, err = cli("validate", path)
    assert status == 2
    assert "endpoints[1].params.pre_windw" in err
    assert "did you mean 'pre_window'" in err and "post_lag_days" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("params", "path", "expected"),
    [
        ({"pre_window": "last_36m"}, "endpoints[1].params.pre_window", "since_onset"),
        ({"pre_window": "-3 months"}, "endpoints[1].params.pre_window", "duration"),
        ({"post_lag_days": "ninety"}, "endpoints[1].params.post_lag_days", "integer"),
        ({"post_lag_days": -5}, "endpoints[1].params.post_lag_days", ">= 0"),
        ({"summary": "median"}, "endpoints[1].params.summary", "median_iqr"),
    ],
)
def test_wrong_parameter_values_name_the_path_and_what_was_expected(tmp_path, params, path, expected):
    raw = demo_raw()
    raw["endpoints"][1]["params"] = params
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as info:
        load_spec(spec_path)
    assert info.value.path == path
    assert expected in str(info.value)


def test_durations_convert_months_to_whole_days():
    assert Duration.parse("12 months").days == 365
    assert Duration.parse("24 months").days == 730
    assert Duration.parse("18 months").days == 548  # round(18 x 30.4375) = round(547.875)
    assert Duration.parse("2 years").days == 730
    assert Duration.parse("six months") is None


def test_unknown_plugin_suggests_the_closest_name(tmp_path):
    raw = demo_raw()
    raw["endpoints"][1]["plugin"] = "arr_chnage"
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="did you mean 'arr_change'"):
        load_spec(spec_path)


def test_sensitivity_grid_crosses_axes_and_names_variants_from_their_settings(tmp_path):
    raw = demo_raw()
    raw["sensitivity"] = [
        {"name": "24-month window", "set": {"arr.pre_window": "last_24m"}},
        {"grid": {"arr.post_lag_days": [0, 90], "statistics.quantile_method": ["linear", "weibull"]}},
    ]
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(spec_path)
    names = [v.variant for v in spec.variants]
    assert names[0] == "24-month window"
    assert len(names) == 5
    assert "arr.post_lag_days=90, statistics.quantile_method=weibull" in names
    assert spec.variants[0].endpoints[1].params.pre_window == "last_24m"
    assert spec.endpoints[1].params.pre_window == "since_onset"  # the primary is untouched


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"arr.pre_window": "last_36m"}, "endpoints[1].params.pre_window"),
        ({"arx.pre_window": "last_24m"}, "unknown endpoint id or section 'arx'"),
        ({"cohort.follow_up": "last_followup"}, "cohort.follow_up"),
        ({"arr.no_such": 1}, "endpoints[1].params.no_such"),
    ],
)
def test_an_invalid_variant_fails_validation_naming_it(tmp_path, setting, message):
    raw = demo_raw()
    raw["sensitivity"] = [{"name": "bad one", "set": setting}]
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as info:
        load_spec(spec_path)
    assert message in str(info.value)
    assert "bad one" in str(info.value) or "sensitivity[0]" in str(info.value)


def test_unknown_keys_are_rejected_at_every_level(tmp_path):
    for mutate, path in [
        (lambda r: r.update(endpoint=[]), "endpoint"),
        (lambda r: r["cohort"].update(grace=90), "cohort.grace"),
        (lambda r: r["cohort"]["relapses"].update(merge_days=30), "cohort.relapses.merge_days"),
        (lambda r: r["statistics"]["paired_test"].update(zero="wilcox"), "statistics.paired_test.zero"),
        (lambda r: r["table"].update(decimal=2), "table.decimal"),
        (lambda r: r["endpoints"][0].update(param={}), "endpoints[0].param"),
    ]:
        raw = demo_raw()
        mutate(raw)
        spec_path = tmp_path / "s.yaml"
        spec_path.write_text(yaml.safe_dump(raw))
        with pytest.raises(SpecError) as info:
            load_spec(spec_path)
        assert info.value.path == path


def test_yaml_python_tags_are_refused(tmp_path):
    path = write_spec(tmp_path, "study: !!python/object/apply:os.system ['echo hacked']\nendpoints: []\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)

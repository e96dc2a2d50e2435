"""The plugin system: one hookspec module, built-ins through the same hooks, files from a spec,
duplicate names rejected naming both providers, every hook documented and tested."""

import inspect
import re
import textwrap

import pytest
from paths import ROOT

from endpointkit import hookspecs
from endpointkit.errors import SpecError
from endpointkit.manager import get_plugin_manager

HOOKS = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_builtins_register_through_the_hooks():
    plugins = get_plugin_manager(entrypoints=False)
    assert sorted(plugins.endpoints.items) == [
        "arr_change", "characteristics", "disability_events", "disability_milestone", "discontinuation", "edss_progression", "relapse_free", "safety",
        "titer_reduction",
    ]
    assert all(e.provider.startswith("endpointkit.plugins.") for e in plugins.endpoints)


def test_hook_register_endpoints(tmp_path):
    plugin = tmp_path / "extra.py"
    plugin.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from endpointkit import Endpoint, EndpointResult, hookimpl, param
        from endpointkit.stats import count_row
        import pandas as pd

        @dataclass(frozen=True)
        class Params:
            k: int = param(1, "a number")

        class Extra(Endpoint):
            name = "extra"
            Params = Params
            def compute(self, cohort, params, ctx):
                return EndpointResult(rows=[count_row("k", params.k, len(cohort.patients))],
                                      per_patient=pd.DataFrame({"patient_id": cohort.patients["patient_id"]}))

        @hookimpl
        def register_endpoints():
            return [Extra]
    '''))
    plugins = get_plugin_manager(entrypoints=False, files=(plugin,))
    assert plugins.endpoints.items["extra"].provider == f"file:{plugin}"
    again = get_plugin_manager(entrypoints=False, files=(plugin,))  # reloading for a rerun is harmless
    assert "extra" in again.endpoints


def test_hook_register_sources():
    assert "csv" in get_plugin_manager(entrypoints=False).sources


def test_hook_register_criteria():
    assert {"where", "min_treatment_months"} <= set(get_plugin_manager(entrypoints=False).criteria.items)


def test_hook_register_renderers():
    assert {"github", "plain", "latex", "html"} <= set(get_plugin_manager(entrypoints=False).renderers.items)


def test_a_duplicate_name_is_an_error_naming_both_providers(tmp_path):
    plugin = tmp_path / "dup.py"
    plugin.write_text(textwrap.dedent('''
        from endpointkit import hookimpl
        from endpointkit.plugins.arr_change import ArrChange

        class Copy(ArrChange):
            pass

        @hookimpl
        def register_endpoints():
            return [Copy]
    '''))
    with pytest.raises(SpecError) as info:
        get_plugin_manager(entrypoints=False, files=(plugin,))
    assert "endpointkit.plugins.arr_change" in str(info.value) and f"file:{plugin}" in str(info.value)


def test_a_misspelt_hook_name_is_caught(tmp_path):
    plugin = tmp_path / "typo.py"
    plugin.write_text("from endpointkit import hookimpl\n\n@hookimpl\ndef register_endpoint():\n    return []\n")
    with pytest.raises(SpecError, match="unknown hook"):
        get_plugin_manager(entrypoints=False, files=(plugin,))


def test_a_plugin_file_that_fails_to_import_is_a_spec_error(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(SpecError, match=r"plugins\[0\].*boom"):
        get_plugin_manager(entrypoints=False, files=(plugin,))


def test_every_hook_is_documented_in_the_plugin_guide_with_its_signature():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert re.search(rf"^#+ `{hook}\(\)`", guide, re.MULTILINE), hook


def test_every_hook_has_a_test():
    names = {name for name in globals() if name.startswith("test_hook_")}
    for hook in HOOKS:
        assert f"test_hook_{hook}" in names


def test_the_plugins_command_lists_all_seven_endpoints_with_parameters(cli):
    status, out, _ = cli("plugins")
    assert status == 0
    for name in ("characteristics", "arr_change", "relapse_free", "edss_progression", "titer_reduction", "discontinuation", "safety"):
        assert f"endpoint {name}:" in out
    assert 'pre_window = "since_onset"' in out
    status, out, _ = cli("plugins", "--json")
    import json

    listing = json.loads(out)
    arr = next(e for e in listing["endpoints"] if e["name"] == "arr_change")
    assert {p["name"]: p["default"] for p in arr["params"]}["post_lag_days"] == 0

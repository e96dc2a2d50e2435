"""The documentation is part of the product: generated parts current, every example run, links alive.

* the parameter tables and ``docs/spec.schema.json`` are what ``python -m endpointkit.docgen`` writes;
* every spec in the repository, and every YAML block of README and docs, validates against the schema;
* every YAML block runs as a spec (a fragment merged over the demo spec), every Python block runs,
  every ``endpointkit ...`` command line in a shell block parses;
* the make targets table says what the Makefile does; relative links point at files that exist.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from paths import DEMO_DATA, DEMO_SPEC, ROOT, SPECS

from endpointkit import docgen
from endpointkit.cli import build_parser
from endpointkit.engine import run_spec
from endpointkit.manager import get_plugin_manager
from endpointkit.spec import _plugin_files, load_spec, read_spec_file

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[tuple[str, str]]:
    """(``page:line``, code) of every fenced block in that language, in page order."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def as_json(value):
    """YAML as a JSON document: dates are the strings they were written as (as editors see them)."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------- generated parts


def test_generated_docs_match_the_code():
    stale = docgen.stale_files(DOCS)
    assert not stale, f"run `make docs` (python -m endpointkit.docgen docs); stale: {[str(p) for p in stale]}"


def test_docgen_rewrites_a_stale_block_and_check_reports_it(tmp_path, capsys):
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "endpoints" / "safety.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `te_window_days` |", "| `te_window_dayz` |"), encoding="utf-8")
    assert docgen.main([str(docs), "--check"]) == 1
    assert f"stale: {page}" in capsys.readouterr().out
    assert docgen.main([str(docs)]) == 0
    assert docgen.main([str(docs), "--check"]) == 0
    assert page.read_text(encoding="utf-8") == (DOCS / "endpoints" / "safety.md").read_text(encoding="utf-8")


def test_every_endpoint_has_a_page_with_its_generated_parameter_table():
    for endpoint in docgen.builtin_plugins().endpoints:
        page = DOCS / "endpoints" / f"{endpoint.name}.md"
        assert f"<!-- generated: params:{endpoint.name} -->" in page.read_text(encoding="utf-8")


def test_the_markdown_listing_is_the_generated_table(cli):
    status, out, _ = cli("plugins", "--markdown")
    assert status == 0
    assert docgen.params_table(docgen.builtin_plugins().endpoints.items["arr_change"].Params) in out


# --------------------------------------------------------------------------- JSON Schema


def schema_for(spec_path: Path | None = None) -> dict:
    files = ()
    if spec_path is not None:
        raw, _ = read_spec_file(spec_path)
        files = _plugin_files(raw, spec_path.parent.resolve())
    return docgen.spec_schema(get_plugin_manager(entrypoints=False, files=files))


def test_the_schema_is_valid_json_schema():
    jsonschema.Draft7Validator.check_schema(schema_for())


@pytest.mark.parametrize("spec_path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_spec_in_the_repository_validates_against_the_schema(spec_path):
    document = as_json(yaml.safe_load(spec_path.read_text(encoding="utf-8")))
    jsonschema.validate(document, schema_for(spec_path))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda s: s["endpoints"][1]["params"].update(pre_window="last_36m"), "last_36m"),
        (lambda s: s["endpoints"][1]["params"].update(post_lag_dayz=90), "Additional properties are not allowed"),
        (lambda s: s["endpoints"][1].update(plugin="arr_chnage"), "is not one of"),
        (lambda s: s["cohort"]["index"].update(event="first_infusion"), "is not one of"),
        (lambda s: s.update(defaults={"post_lag_days": -1}), "less than the minimum"),
        (lambda s: s["statistics"].update(quantile_method="R7"), "is not one of"),
        (lambda s: s["table"].update(p_style="apa"), "is not one of"),
    ],
)
def test_the_schema_rejects_what_validation_rejects(change, complaint):
    document = as_json(yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8")))
    change(document)
    with pytest.raises(jsonschema.ValidationError) as info:
        jsonschema.validate(document, schema_for())
    assert complaint in str(info.value)


def test_the_schema_includes_the_plugins_a_spec_lists(cli, tmp_path):
    custom = SPECS / "ivig_nmosd_custom.yaml"
    status, _, _ = cli("schema", "--spec", custom, "-o", tmp_path / "custom.schema.json")
    assert status == 0
    import json

    schema = json.loads((tmp_path / "custom.schema.json").read_text())
    assert "severe_relapse_rate" in schema["definitions"]["endpoint"]["properties"]["plugin"]["enum"]
    assert schema["definitions"]["params.severe_relapse_rate"]["properties"]["severity"]["default"] == "severe"
    assert "severe_relapse_rate" not in schema_for()["definitions"]["endpoint"]["properties"]["plugin"]["enum"]


# --------------------------------------------------------------------------- examples


def demo_raw() -> dict:
    raw = yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8"))
    raw["data"]["path"] = str(DEMO_DATA)
    return raw


YAML_BLOCKS = blocks("yaml")


@pytest.mark.parametrize(("where", "code"), YAML_BLOCKS, ids=[w for w, _ in YAML_BLOCKS])
def test_every_yaml_example_runs(where, code, tmp_path):
    """A block with `data` and `endpoints` is a whole spec, run as printed beside the demo's data and
    plugins; any other block is a fragment whose top-level keys replace the demo spec's."""
    document = yaml.safe_load(code)
    assert isinstance(document, dict), f"{where}: not a YAML mapping"
    (tmp_path / "data").symlink_to(SPECS / "data", target_is_directory=True)
    (tmp_path / "plugins").symlink_to(SPECS / "plugins", target_is_directory=True)
    if {"data", "endpoints"} <= set(document):
        text = code
    else:
        merged = {**demo_raw(), **copy.deepcopy(document)}
        text = yaml.safe_dump(merged, sort_keys=False)
    spec_path = tmp_path / "example.yaml"
    spec_path.write_text(text, encoding="utf-8")
    jsonschema.validate(as_json(yaml.safe_load(text)), schema_for(spec_path))
    spec = load_spec(spec_path)
    results = run_spec(spec, spec.plugins)
    assert not results.failures
    assert len(results.frame) > 0


def test_the_spec_reference_example_covers_every_top_level_key():
    from endpointkit.spec import TOP_LEVEL

    page = (DOCS / "spec-reference.md").read_text(encoding="utf-8")
    example = yaml.safe_load(FENCE.search(page).group(2))
    assert set(example) == set(TOP_LEVEL)


@pytest.mark.parametrize("page", sorted({w.split(":")[0] for w, _ in blocks("python")}))
def test_every_python_example_runs(page, monkeypatch):
    """The blocks of one page run in order in one namespace, from the repository root."""
    import types

    monkeypatch.chdir(ROOT)
    module = types.ModuleType("endpointkit_docs_example")  # a real module: dataclasses look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for where, code in blocks("python"):
        if where.split(":")[0] == page:
            exec(compile(code, where, "exec"), module.__dict__)  # noqa: S102 - our own documentation


def test_the_plugin_guide_shows_the_example_plugin_file_as_it_is():
    guide = (DOCS / "plugins.md").read_text(encoding="utf-8")
    code = next(c for lang, c in FENCE.findall(guide) if lang == "python")
    assert code == (SPECS / "plugins" / "severe_relapse_rate.py").read_text(encoding="utf-8")


def command_lines() -> list[tuple[str, list[str]]]:
    out = []
    for where, code in blocks("sh"):
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["endpointkit"]:
                out.append((where, words[1:]))
            elif words[:3] == ["python", "-m", "endpointkit"]:
                out.append((where, words[3:]))
    return out


@pytest.mark.parametrize(("where", "argv"), command_lines(), ids=[" ".join(a) for _, a in command_lines()])
def test_every_documented_command_line_parses(where, argv, capsys):
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # --version and --help print and exit 0
        assert exc.code == 0, where


def makefile_commands(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    subst = {"$(BIN)": ".venv/bin", "$(VENV)": ".venv", "$(PYTHON)": "python3", "$(wildcard benchmarks)": "benchmarks",
             "$(BENCH_VENV)": "benchmarks/data/pymsprog-venv", "$(PYMSPROG)": "pymsprog==1.0.7", "'": '"'}
    commands = []
    for line in recipe.splitlines():
        line = line.strip()
        for key, value in subst.items():
            line = line.replace(key, value)
        line = re.sub(r"^PYTHONWARNINGS=(\"[^\"]*\"|\S+) ", "", line)  # hides setuptools' editable-install note
        line = re.sub(r"^test -x \S+ \|\| ", "", line).replace(" --quiet", "")
        if not line.startswith("touch "):
            commands.append(line)
    return commands


@pytest.mark.parametrize("target", ["demo", "sensitivity", "test", "lint", "docs", "clean", "bench", "bench-scale", "$(STAMP)", "$(BENCH_VENV)/.installed"])
def test_the_make_table_says_what_the_makefile_runs(target):
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    for command in makefile_commands(target):
        assert f"`{command}`" in page, command


# --------------------------------------------------------------------------- links and references


def test_relative_links_point_at_files_in_the_repository():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"
            assert ROOT in path.parents, f"{page.relative_to(ROOT)} links outside the repository: {target}"


def test_nothing_refers_to_files_outside_the_repository():
    for folder in ("README.md", "docs", "core", "plugins", "specs"):
        paths = [ROOT / folder] if folder.endswith(".md") else [p for p in (ROOT / folder).rglob("*") if p.suffix in (".md", ".py", ".yaml", ".json")]
        for path in paths:
            if path.name == "test_docs.py":
                continue
            text = path.read_text(encoding="utf-8")
            assert "shared/" not in text, path
            assert "endpoints.md" not in text.replace("docs/endpoints/", ""), path


# --------------------------------------------------------------------------- install paths and help


def test_python_dash_m_endpointkit_is_the_command_line():
    done = subprocess.run([sys.executable, "-m", "endpointkit", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("endpointkit ")


def test_simulate_help_lists_every_settable_parameter_with_its_default(cli):
    import dataclasses

    from endpointkit.simulate import TrueParameters

    status, out, _ = cli("simulate", "--help")
    assert status == 0
    for field in dataclasses.fields(TrueParameters):
        default = "none" if field.default is None else field.default
        assert f"  {field.name} [{default}]" in out, field.name


def test_the_public_api_is_documented():
    import endpointkit
    import endpointkit.stats

    for module in (endpointkit, endpointkit.stats):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) or isinstance(obj, type):
                assert (obj.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"
    for helper in (endpointkit.stats.KaplanMeier, endpointkit.stats.KaplanMeier.fit, endpointkit.stats.km_landmark_row,
                   endpointkit.stats.km_median_row):
        assert "months" in helper.__doc__, helper

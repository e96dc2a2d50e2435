"""Documentation generated from the code: parameter tables and the JSON Schema of the spec.

One source of truth: the ``Params`` dataclasses of the endpoints and the spec's section dataclasses
give both the Markdown tables in ``docs/`` and ``docs/spec.schema.json``. ``python -m
endpointkit.docgen [DOCS] [--check]`` rewrites (or checks) every generated part of the docs: the
text between ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` markers, and the schema
file. ``make docs`` runs it; a test fails when the committed docs differ from what it generates.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from .manager import Plugins, get_plugin_manager
from .params import MAX_DAYS, Duration, _default_max, _type_name, to_plain

SCHEMA_FILE = "spec.schema.json"
MARKER = re.compile(r"(<!-- generated: (?P<name>[\w.:-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(day|days|week|weeks|month|months|year|years)\s*$"


# --------------------------------------------------------------------------- JSON Schema


def type_schema(tp: Any, field: dataclasses.Field | None = None) -> dict[str, Any]:
    """The JSON Schema of one parameter type (bounds as :func:`endpointkit.params.coerce` checks them)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(a, field) for a in typing.get_args(tp)]}
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return {"type": "array", "items": type_schema(inner, field)}
    if origin is dict:
        _, value_tp = typing.get_args(tp) or (Any, Any)
        return {"type": "object", "additionalProperties": type_schema(value_tp)}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp in (int, float):
        schema: dict[str, Any] = {"type": "integer" if tp is int else "number"}
        if field is not None:
            low = field.metadata.get("min", 0)
            high = field.metadata.get("max", _default_max(field.name))
            if low is not None:
                schema["minimum"] = low
            if high is not None:
                schema["maximum"] = high
        return schema
    if tp is str:
        return {"type": "string", "minLength": 1}
    if tp is Duration:
        return {"type": "string", "pattern": DURATION_PATTERN, "description": f"a duration such as '18 months' (at most {MAX_DAYS} days)"}
    if tp is dt.date:
        return {"type": "string", "pattern": DATE_PATTERN}
    if tp is dict:
        return {"type": "object"}
    if tp is list:
        return {"type": "array"}
    return {}


def params_schema(params_cls: type, overrides: dict[str, dict] | None = None) -> dict[str, Any]:
    """A closed object schema of a ``Params`` (or spec section) dataclass; null means all defaults."""
    hints = typing.get_type_hints(params_cls)
    properties = {}
    for f in dataclasses.fields(params_cls):
        schema = dict((overrides or {}).get(f.name) or type_schema(hints[f.name], f))
        schema["description"] = f.metadata.get("help", "")
        default = _default(f)
        if default is not None or f.default is None:
            schema["default"] = to_plain(default)
        properties[f.name] = schema
    return {"type": ["object", "null"], "properties": properties, "additionalProperties": False}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _criteria_schema(plugins: Plugins) -> dict[str, Any]:
    """Each criterion is ``{name, <kind>: value}`` with exactly one registered kind."""
    options = []
    for criterion in plugins.criteria:
        value = getattr(criterion, "json_schema", {})
        options.append({
            "type": "object",
            "required": [criterion.name],
            "properties": {"name": {"type": "string"}, criterion.name: {**value, "description": getattr(criterion, "description", "")}},
            "additionalProperties": False,
        })
    return {"type": "array", "items": {"oneOf": options}}


def by_schema() -> dict[str, Any]:
    """``by:``: a patient column, or named subgroups (label -> where-expression)."""
    from .groups import MISSING_CHOICES

    missing = {"enum": list(MISSING_CHOICES), "description": "Patients without a group: their own group 'missing' (own_group) or "
                                                            "only in the overall column (exclude); counted either way."}
    return {
        "description": "Subgroups: every endpoint is summarised within each group and overall. A patient column "
                       "(sex, antibody_status, group, age_at_index, ...) or {name, groups: {label: where-expression}}.",
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "required": ["column"], "additionalProperties": False,
             "properties": {"column": {"type": "string", "minLength": 1}, "name": {"type": "string"}, "missing": missing}},
            {"type": "object", "required": ["groups"], "additionalProperties": False,
             "properties": {"name": {"type": "string"}, "missing": missing,
                            "groups": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}}},
            {"type": "null"},
        ],
    }


def compare_schema() -> dict[str, Any]:
    """``compare:``: between-group comparisons, against the first group or a named reference."""
    return {
        "description": "Between-group comparisons (rows 'B vs A'): true = against the first group in order; "
                       "{reference: A} names the reference group.",
        "anyOf": [{"type": ["boolean", "null"]},
                  {"type": "object", "additionalProperties": False,
                   "properties": {"reference": {"type": ["string", "number"]}}}],
    }


def _endpoint_schema(plugins: Plugins) -> dict[str, Any]:
    from .spec import ID_PATTERN

    names = sorted(plugins.endpoints.items)
    return {
        "type": "object",
        "required": ["plugin"],
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN.pattern, "description": "Unique id of this endpoint (default: the plugin name)."},
            "plugin": {"enum": names, "description": "The endpoint plugin (see `endpointkit plugins`)."},
            "title": {"type": ["string", "number"], "description": "Heading of its rows in the table (default: the plugin's title)."},
            "params": {"type": ["object", "null"], "description": "The plugin's parameters."},
            "by": {**by_schema(), "description": "This endpoint's own subgroups (overrides the spec's by)."},
            "compare": {**compare_schema(), "description": "This endpoint's own between-group comparisons (overrides the spec's compare)."},
        },
        "additionalProperties": False,
        "allOf": [
            {"if": {"properties": {"plugin": {"const": name}}, "required": ["plugin"]},
             "then": {"properties": {"params": {"$ref": f"#/definitions/params.{name}"}}}}
            for name in names
        ],
    }


def _defaults_schema(plugins: Plugins) -> dict[str, Any]:
    """``defaults:`` takes any parameter of a registered endpoint, with the type(s) it has there."""
    by_name: dict[str, list[dict]] = {}
    users: dict[str, list[str]] = {}
    for endpoint in plugins.endpoints:
        hints = typing.get_type_hints(endpoint.Params)
        for f in dataclasses.fields(endpoint.Params):
            schema = type_schema(hints[f.name], f)
            if schema not in by_name.setdefault(f.name, []):
                by_name[f.name].append(schema)
            users.setdefault(f.name, []).append(endpoint.name)
    properties = {
        name: {**(options[0] if len(options) == 1 else {"anyOf": options}), "description": f"Default for {', '.join(users[name])}."}
        for name, options in sorted(by_name.items())
    }
    return {
        "type": ["object", "null"],
        "description": "Study-wide parameter values: each applies to every endpoint that has the parameter and does not set its own.",
        "properties": properties,
        "additionalProperties": False,
    }


def spec_schema(plugins: Plugins) -> dict[str, Any]:
    """The JSON Schema of a study spec with these plugins' endpoints and params (draft-07, which every
    editor's YAML language server reads)."""
    from .spec import (
        CohortSection,
        DataSection,
        DisclosureSection,
        ExecutorSection,
        IndexSection,
        PairedTestSection,
        RelapseSection,
        StatisticsSection,
        StudySection,
        TableSection,
    )
    from .stats import QUANTILE_METHODS

    sources, renderers = sorted(plugins.sources.items), sorted(plugins.renderers.items)
    dotted = {"type": "object", "propertyNames": {"pattern": r"^(by|compare|[A-Za-z][\w\-]*(\.[\w\-]+)+)$"}}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "endpointkit study spec",
        "description": "A retrospective treatment study: data, cohort, endpoints, statistics, table and sensitivity variants.",
        "type": "object",
        "properties": {
            "extends": {"type": "string", "description": "Another spec file this one is merged over (path relative to this file)."},
            "study": params_schema(StudySection),
            "data": params_schema(DataSection, {"source": {"enum": sources}}),
            "cohort": params_schema(CohortSection, {
                "index": params_schema(IndexSection),
                "relapses": params_schema(RelapseSection),
                "criteria": _criteria_schema(plugins),
            }),
            "defaults": _defaults_schema(plugins),
            "endpoints": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/endpoint"}},
            "statistics": params_schema(StatisticsSection, {
                "quantile_method": {"enum": list(QUANTILE_METHODS)},
                "paired_test": params_schema(PairedTestSection),
            }),
            "table": params_schema(TableSection, {"format": {"enum": renderers}}),
            "disclosure": params_schema(DisclosureSection),
            "executor": {"anyOf": [{"enum": ["serial", "processes", "dask"]}, params_schema(ExecutorSection)]},
            "by": by_schema(),
            "compare": compare_schema(),
            "sensitivity": {
                "type": "array",
                "description": "Variants: {name, set: {dotted.path: value}} or {name, grid: {dotted.path: [values]}}.",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "set": {**dotted, "minProperties": 1},
                                   "grid": {**dotted, "minProperties": 1, "additionalProperties": {"type": "array", "minItems": 1}}},
                    "additionalProperties": False,
                    "oneOf": [{"required": ["set"]}, {"required": ["grid"]}],
                },
            },
            "plugins": {"type": "array", "items": {"type": "string", "pattern": r"\.py$"},
                        "description": "Plugin files to load (this runs their code); paths relative to this file."},
        },
        "additionalProperties": False,
        "definitions": {
            "endpoint": _endpoint_schema(plugins),
            **{f"params.{e.name}": params_schema(e.Params) for e in sorted(plugins.endpoints, key=lambda e: e.name)},
        },
    }


# --------------------------------------------------------------------------- Markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default_text(value: Any) -> str:
    value = to_plain(value)
    if value is None:
        return "none"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def doc_type(tp: Any, field: dataclasses.Field | None = None) -> str:
    """A parameter's type or allowed values in words, with the bounds the validation applies."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{c}`" for c in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(doc_type(a, field) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list of {doc_type(inner, field)}"
    if origin is dict:
        _, value_tp = typing.get_args(tp) or (Any, Any)
        return f"mapping of name to {doc_type(value_tp)}"
    if tp in (int, float):
        words = "integer" if tp is int else "number"
        if field is not None:
            low = field.metadata.get("min", 0)
            high = field.metadata.get("max", _default_max(field.name))
            if low is not None:
                words += f" ≥ {low}"
            if high is not None:
                words += f", ≤ {high}"
        return words
    names = {bool: "`true` \\| `false`", str: "text", type(None): "null", dict: "mapping", list: "list",
             Duration: "duration such as `18 months`", dt.date: "date YYYY-MM-DD"}
    return names.get(tp, _type_name(tp))


def params_table(params_cls: type, prefix: str = "") -> str:
    """A Markdown table: parameter, type or allowed values, default, meaning."""
    hints = typing.get_type_hints(params_cls)
    lines = ["| parameter | type or allowed values | default | meaning |", "|---|---|---|---|"]
    fields = dataclasses.fields(params_cls)
    for f in fields:
        kind = doc_type(hints[f.name], f)
        lines.append(f"| `{prefix}{f.name}` | {kind} | {_cell(_default_text(_default(f)))} | {_cell(f.metadata.get('help', ''))} |")
    if not fields:
        return "This endpoint has no parameters.\n"
    return "\n".join(lines) + "\n"


def _registry_table(plugins: Plugins) -> str:
    lines = ["| kind | name | what it does |", "|---|---|---|"]
    for kind, registry in (("endpoint", plugins.endpoints), ("data source", plugins.sources),
                           ("criterion", plugins.criteria), ("renderer", plugins.renderers)):
        for item in registry:
            text = getattr(item, "description", "") or getattr(item, "title", "")
            lines.append(f"| {kind} | `{item.name}` | {_cell(text)} |")
    return "\n".join(lines) + "\n"


def _tables_table() -> str:
    from .data import TABLES

    def names(columns: tuple[str, ...]) -> str:
        return ", ".join(f"`{c}`" for c in columns) or "-"

    lines = ["| table | required columns | optional columns | dates | true/false | numbers |", "|---|---|---|---|---|---|"]
    for t in TABLES.values():
        lines.append(f"| `{t.name}` | {names(t.required)} | {names(t.optional)} | {names(t.dates)} | {names(t.booleans)} | {names(t.numbers)} |")
    return "\n".join(lines) + "\n"


def generated_blocks(plugins: Plugins) -> dict[str, str]:
    """Every generated Markdown block, by marker name."""
    from .simulate import TrueParameters
    from .spec import (
        CohortSection,
        DataSection,
        DisclosureSection,
        ExecutorSection,
        IndexSection,
        PairedTestSection,
        RelapseSection,
        StatisticsSection,
        StudySection,
        TableSection,
    )

    blocks = {f"params:{e.name}": params_table(e.Params) for e in plugins.endpoints}
    sections = {"study": StudySection, "data": DataSection, "cohort": CohortSection, "cohort.index": IndexSection,
                "cohort.relapses": RelapseSection, "statistics": StatisticsSection,
                "statistics.paired_test": PairedTestSection, "table": TableSection, "disclosure": DisclosureSection,
                "executor": ExecutorSection}
    for name, cls in sections.items():
        blocks[f"spec:{name}"] = params_table(cls)
    blocks["registry"] = _registry_table(plugins)
    blocks["tables"] = _tables_table()
    rows = ["| `--set` name | kind | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{f.name}` | {f.metadata.get('kind', '')} | {_cell(_default_text(_default(f)))} | {_cell(f.metadata.get('help', ''))} |"
             for f in dataclasses.fields(TrueParameters)]
    blocks["simulate"] = "\n".join(rows) + "\n"
    return blocks


def plugins_markdown(plugins: Plugins) -> str:
    """``endpointkit plugins --markdown``: one section per endpoint with its parameter table."""
    parts = []
    for e in plugins.endpoints:
        parts.append(f"## `{e.name}`: {e.title}\n\n{e.description}\n\nTables: {', '.join(['patients', 'treatments', *e.requires])}.\n\n"
                     + params_table(e.Params))
    return "\n".join(parts)


def builtin_plugins() -> Plugins:
    """The built-in plugins only: the committed docs never depend on what else is installed."""
    return get_plugin_manager(entrypoints=False)


def render_docs(root: Path, plugins: Plugins) -> dict[Path, str]:
    """Every generated file under ``root`` as it should be: the marked Markdown blocks and the schema."""
    blocks = generated_blocks(plugins)
    out: dict[Path, str] = {root / SCHEMA_FILE: json.dumps(spec_schema(plugins), indent=2) + "\n"}
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")

        def fill(match: re.Match, path: Path = path) -> str:
            name = match.group("name")
            if name not in blocks:
                raise KeyError(f"{path}: unknown generated block '{name}'; known: {', '.join(sorted(blocks))}")
            return match.group(1) + blocks[name] + match.group(4)

        new = MARKER.sub(fill, text)
        if new != text:
            out[path] = new
    return out


def stale_files(root: Path, plugins: Plugins | None = None) -> list[Path]:
    """Generated files under ``root`` that differ from what the code generates now."""
    rendered = render_docs(root, plugins or builtin_plugins())
    return [p for p, text in rendered.items() if not p.exists() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m endpointkit.docgen", description="Regenerate the generated parts of the docs.")
    parser.add_argument("docs", nargs="?", type=Path, default=Path("docs"), help="the docs folder (default: docs)")
    parser.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    args = parser.parse_args(argv)
    if not args.docs.is_dir():
        print(f"docgen: not a folder: {args.docs}", file=sys.stderr)
        return 2
    rendered = render_docs(args.docs, builtin_plugins())
    stale = [p for p, text in rendered.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    for path in stale:
        if args.check:
            print(f"stale: {path}")
        else:
            path.write_text(rendered[path], encoding="utf-8")
            print(f"wrote {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The study spec: safe YAML in, typed and fully validated objects out, before any data is read.

Every problem raises a :class:`SpecError` naming its path (``endpoints[2].params.pre_window``).
Relative paths resolve against the spec file's folder. Sensitivity variants are whole specs
derived from the primary one by dotted-path overrides, validated the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import itertools
import os
import re
import stat
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import SpecError, suggest
from .groups import Comparing, Grouping, parse_by, parse_compare
from .manager import Plugins, get_plugin_manager
from .params import build_params, coerce, param, params_dict, to_plain
from .reading import DataReading, data_reading
from .stats import QUANTILE_METHODS, PairedTestSettings

MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 1_000_000  # values after expanding aliases (a billion-laughs bomb has 9**9)
MAX_SPEC_BYTES = 2_000_000


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class StudySection:
    id: str = param("study", "Short identifier of the study, used in provenance.")
    title: str = param("Study", "Title printed above the results table.")


@dataclass(frozen=True)
class DataSection:
    source: str = param("csv", "Registered data source that reads the tables (see `endpointkit plugins`).")
    path: str = param(".", "Folder (or file) holding the tables, relative to the spec file.")
    cutoff: dt.date | None = param(None, "Data cut-off date (YYYY-MM-DD): later records are reported and not used.")
    columns: dict[str, dict[str, str]] = param({}, "Per table, canonical column -> your column name.")
    tables: dict[str, str] = param({}, "Per canonical table, the source's own name for it: file, sheet, database table or SELECT query.")
    read: dict[str, Any] = param({}, "Reading options: delimiter (or auto), encoding, decimal, date_format (one or a list), missing; a table's name inside overrides for that table.")
    values: dict[str, Any] = param({}, "Per table and canonical column, code -> value, recoded before validation: {patients: {sex: {'1': M, '2': F}}}.")
    url: str | None = param(None, "sql source: the database as an SQLAlchemy URL (sqlite:///registry.db, relative to this spec file).")


@dataclass(frozen=True)
class IndexSection:
    treatment: str = param("IVIG", "Treatment (matched case-insensitively) that defines the index date.")
    event: Literal["first_start", "first_administration"] = param(
        "first_start",
        "Which event of that treatment is the index date: first_start = the start_date of its first course "
        "(else its first administration); first_administration = its first administration (else the start_date "
        "of its first course).",
    )


@dataclass(frozen=True)
class RelapseSection:
    merge_within_days: int = param(30, "Onsets fewer than this many days after the last kept onset merge into it.")
    exclude_pseudo: bool = param(True, "Drop relapses flagged pseudo.")
    only_confirmed: bool = param(False, "Keep only relapses flagged confirmed (a stricter definition).")


@dataclass(frozen=True)
class CohortSection:
    index: dict = param({}, "Index date definition: {treatment, event}.")
    criteria: list = param([], "Inclusion criteria, applied in order, each counted in the attrition flow.")
    follow_up_end: Literal["treatment_end", "last_followup"] = param("treatment_end", "End of follow-up for every endpoint.")
    grace_days: int = param(90, "For a course without end_date: last administration + this many days.")
    relapses: dict = param({}, "Relapse cleaning: {merge_within_days, exclude_pseudo, only_confirmed}.")


@dataclass(frozen=True)
class StatisticsSection:
    quantile_method: str = param("linear", "numpy quantile method for every median/IQR (linear = R/pandas, weibull = SPSS, averaged_inverted_cdf = SAS/Stata).")
    paired_test: dict = param({}, "scipy.stats.wilcoxon settings: {zero_method, method, correction}.")
    year_days: float = param(365.25, "Days in a year for annualized rates and ages.", min=1)

    def check(self, path: str) -> None:
        if self.quantile_method not in QUANTILE_METHODS:
            raise SpecError(
                f"{path}.quantile_method",
                f"expected one of {', '.join(QUANTILE_METHODS)}, got {self.quantile_method!r}"
                + suggest(self.quantile_method, QUANTILE_METHODS),
            )


@dataclass(frozen=True)
class PairedTestSection:
    zero_method: Literal["wilcox", "pratt", "zsplit"] = param("wilcox", "How zero differences are treated.")
    method: Literal["auto", "exact", "asymptotic", "permutation"] = param("auto", "How the p-value is computed.")
    correction: bool = param(False, "Continuity correction of the normal approximation.")


@dataclass(frozen=True)
class TableSection:
    format: str = param("github", "Renderer for the printed table: github, plain, latex, html, docx, xlsx.")
    decimals: int | dict[str, int] = param(1, "Decimals of medians, means and rates: a number, or a mapping by `default`, endpoint id or `id.measure` (ratios default to 2).", max=6)
    percent_decimals: Literal["auto", 0, 1, 2] = param("auto", "Decimals of percentages; auto = 0 when the endpoint's largest n is below 100, else 1 (one precision per endpoint).")
    p_style: Literal["nejm", "ama"] = param("nejm", "p-value style: nejm (<0.001, 0.006, 0.04) or ama (P<.001).")
    brackets: Literal["[]", "()"] = param("[]", "Brackets around an IQR or range.")
    show_ci: bool | Literal["outcomes"] | list[str] = param(False, "Show the 95% CI of proportions: true, false, `outcomes` (every endpoint but Table 1 characteristics) or a list of endpoint ids / `id.measure`.")
    show: list[str] = param([], "Endpoint ids or `id.measure` to show (default: everything).")
    labels: dict[str, str] = param({}, "`id.measure` -> row label.")
    footnotes: bool = param(True, "Print footnotes stating definitions, tests and the quantile method.")
    notes: list[str] = param([], "Extra footnotes printed under the table.")
    title: str | None = param(None, "Table title (default: the study title).")

    def check(self, path: str) -> None:
        if isinstance(self.decimals, dict):
            for key, value in self.decimals.items():
                if not 0 <= value <= 6:
                    raise SpecError(f"{path}.decimals.{key}", f"expected a number of decimals from 0 to 6, got {value!r}")


@dataclass(frozen=True)
class DisclosureSection:
    """Small-cell suppression and rounding of every count that leaves (off unless set)."""

    min_count: int | None = param(None, "Counts from 1 to min_count - 1 are suppressed (shown as <min_count), with secondary suppression; null = off.", min=2, max=1000)
    round_to: int | None = param(None, "Round every released count to the nearest multiple of this (e.g. 5); null = off.", min=1, max=1000)

    @property
    def active(self) -> bool:
        return self.min_count is not None or self.round_to is not None


@dataclass(frozen=True)
class ExecutorSection:
    """Where the run executes (the command line's --executor, --partitions, --jobs, --scheduler win)."""

    name: Literal["serial", "processes", "dask"] | None = param(None, "serial (this process), processes (forked workers) or dask (a Dask cluster); default serial, or processes with --jobs above 1.")
    partitions: int = param(1, "Partitions of the patients (by a stable hash of patient_id); the results are identical for any number.", min=1, max=4096)
    workers: int | None = param(None, "Worker processes (processes, or the workers of a local Dask cluster); --jobs wins.", min=1, max=1024)
    scheduler: str | None = param(None, "Address of an existing Dask scheduler (tcp://host:8786); none = a local cluster.")


# --------------------------------------------------------------------------- typed spec


@dataclass(frozen=True)
class Criterion:
    name: str
    kind: str
    value: Any


@dataclass(frozen=True)
class CohortSettings:
    index_treatment: str
    index_event: str
    criteria: tuple[Criterion, ...]
    follow_up_end: str
    grace_days: int
    relapses: RelapseSection
    cutoff: dt.date | None


@dataclass(frozen=True)
class EndpointSpec:
    id: str
    plugin: str
    params: Any
    title: str
    by: Grouping | None = None  # its own ``by`` or the spec's
    compare: Comparing | None = None  # its own ``compare`` or the spec's


@dataclass(frozen=True)
class Spec:
    """A validated study spec (one per variant)."""

    path: Path | None
    raw: dict
    sha256: str
    study: StudySection
    data: DataSection
    data_path: Path
    cohort: CohortSettings
    endpoints: tuple[EndpointSpec, ...]
    statistics: StatisticsSection
    paired_test: PairedTestSettings
    table: TableSection
    plugin_files: tuple[Path, ...]
    defaults: dict = field(default_factory=dict)
    disclosure: DisclosureSection = field(default_factory=DisclosureSection)
    variant: str = "primary"
    variants: tuple[Spec, ...] = ()
    variant_settings: dict = field(default_factory=dict)
    plugins: Plugins | None = field(default=None, compare=False, repr=False)
    reading: DataReading = field(default_factory=DataReading)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    by: Grouping | None = None
    compare: Comparing | None = None
    # (raw, sha256, path, base, data override): how another process rebuilds this spec (load_origin)
    origin: tuple | None = field(default=None, compare=False, repr=False)

    def relative(self, path: Path | str | None) -> str | None:
        """A path as seen from the spec's folder (results.json stays valid when the study folder moves)."""
        if path is None:
            return None
        base = Path(self.path).resolve().parent if self.path else Path.cwd()
        try:
            return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()
        except ValueError:  # another drive (Windows)
            return str(path)

    def resolved(self) -> dict:
        """Every setting as resolved (defaults filled in), for provenance (``by``/``compare`` only when set)."""
        resolved = {
            "study": params_dict(self.study),
            "data": {**params_dict(self.data), "path": self.relative(self.data_path)},
            "cohort": {
                "index": {"treatment": self.cohort.index_treatment, "event": self.cohort.index_event},
                "criteria": [{"name": c.name, c.kind: c.value} for c in self.cohort.criteria],
                "follow_up_end": self.cohort.follow_up_end,
                "grace_days": self.cohort.grace_days,
                "relapses": params_dict(self.cohort.relapses),
            },
            "defaults": {key: to_plain(value) for key, value in self.defaults.items()},
            "endpoints": [
                {"id": e.id, "plugin": e.plugin, "params": params_dict(e.params)} for e in self.endpoints
            ],
            "statistics": {**params_dict(self.statistics), "paired_test": dataclasses.asdict(self.paired_test)},
            "table": params_dict(self.table),
            "disclosure": params_dict(self.disclosure),
        }
        for name in ("by", "compare"):
            if getattr(self, name) is not None:
                resolved[name] = getattr(self, name).plain()
        for entry, endpoint, raw in zip(resolved["endpoints"], self.endpoints, _endpoint_items(self.raw), strict=False):
            for name in ("by", "compare"):
                if isinstance(raw, dict) and name in raw:
                    entry[name] = None if getattr(endpoint, name) is None else getattr(endpoint, name).plain()
        return resolved


def _endpoint_items(raw: dict) -> list:
    items = raw.get("endpoints")
    return items if isinstance(items, list) else []


# --------------------------------------------------------------------------- YAML


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader (no Python tags) that also refuses alias bombs and duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise SpecError("", f"the YAML uses more than {MAX_YAML_ALIASES} aliases; refusing (alias bomb?)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        """A key given twice in one mapping is an error (YAML would keep the last one silently)."""
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node):
        """A date that does not exist (2019-02-30) stays text, so validation names its spec path."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_SafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _SafeLoader.construct_yaml_timestamp)


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse YAML whose aliases expand to too many values, or that refers to itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise SpecError("", "the YAML refers to itself through an alias (a recursive structure); refusing")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        total = 1 + sum(size(child) for child in children)
        active.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise SpecError("", f"the YAML expands to more than {MAX_YAML_NODES:,} values through aliases; refusing (alias bomb?)")
        return total

    size(root)


def parse_yaml(text: str, origin: str) -> Any:
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        return loader.construct_document(node)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError("", f"{origin} is nested too deeply to be a study spec") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", f"{origin} is not valid YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def _merge(base: dict, override: dict) -> dict:
    """Deep merge of mappings; lists and scalars of ``override`` replace those of ``base``."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def read_spec_file(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict, str]:
    """Read a spec file; ``extends: other.yaml`` deep-merges this file over another spec."""
    raw, digest = _read_one_spec_file(path)
    base = raw.pop("extends", None)
    if base is None:
        return raw, digest
    if not isinstance(base, str):
        raise SpecError("extends", f"expected the path of another spec file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in (*_chain, path.resolve()):
        raise SpecError("extends", f"{path} extends itself through {base_path}")
    try:
        base_raw, base_digest = read_spec_file(base_path, (*_chain, path.resolve()))
    except SpecError as exc:
        if exc.path:
            raise
        raise SpecError("extends", exc.message) from None
    if isinstance(base_raw.get("data"), dict) and "path" in base_raw["data"]:  # keep base-relative paths
        base_raw["data"] = {**base_raw["data"], "path": str((base_path.parent / str(base_raw["data"]["path"])).resolve())}
    if isinstance(base_raw.get("plugins"), list):
        base_raw["plugins"] = [str((base_path.parent / str(p)).resolve()) for p in base_raw["plugins"]]
    return _merge(base_raw, raw), hashlib.sha256((base_digest + digest).encode()).hexdigest()


def spec_file_chain(path: Path | None) -> list[tuple[Path, str]]:
    """The spec file and every ``extends:`` base under it, each with the SHA-256 of its bytes."""
    chain: list[tuple[Path, str]] = []
    while path is not None and path.resolve() not in [p for p, _ in chain]:
        raw, digest = _read_one_spec_file(path)
        chain.append((path.resolve(), digest))
        base = raw.get("extends")
        path = (path.parent / base).resolve() if isinstance(base, str) else None
    return chain


def _read_one_spec_file(path: Path) -> tuple[dict, str]:
    """The bytes of one spec file, bounded before reading: only a regular .yaml/.yml file of at most
    MAX_SPEC_BYTES is read (never /dev/zero, a FIFO or a file that is not a spec, whose content an
    error message could otherwise echo)."""
    if not path.exists():
        raise SpecError("", f"spec file not found: {path}")
    if path.is_dir():
        raise SpecError("", f"expected a YAML spec file, got a folder: {path}")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise SpecError("", f"expected a YAML spec file named *.yaml or *.yml, got {path}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SpecError("", f"cannot read the spec file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError("", f"{path} is not a regular file (a device, FIFO or socket); expected a YAML spec file")
        data = stream.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("", f"{path} is larger than {MAX_SPEC_BYTES} bytes; not a study spec")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError("", f"{path} is not UTF-8 text (byte {exc.start})") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise SpecError("", f"{path} is empty; expected a mapping with at least 'endpoints'")
    if not isinstance(raw, dict):
        raise SpecError("", f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw, hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- validation

TOP_LEVEL = ("study", "data", "cohort", "defaults", "endpoints", "statistics", "table", "sensitivity", "plugins", "disclosure", "executor",
             "by", "compare")
ENDPOINT_KEYS = ("id", "plugin", "params", "title", "by", "compare")
ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def _section(cls: type, raw: dict, key: str) -> Any:
    return build_params(cls, raw.get(key), key)


def _cohort(raw: dict, plugins: Plugins, cutoff: dt.date | None) -> CohortSettings:
    section = _section(CohortSection, raw, "cohort")
    index = build_params(IndexSection, section.index, "cohort.index")
    relapses = build_params(RelapseSection, section.relapses, "cohort.relapses")
    criteria = []
    if not isinstance(section.criteria, list):
        raise SpecError("cohort.criteria", "expected a list of criteria")
    for i, item in enumerate(section.criteria):
        path = f"cohort.criteria[{i}]"
        if not isinstance(item, dict):
            raise SpecError(path, f"expected a mapping such as {{name: adults, where: \"age >= 18\"}}, got {item!r}")
        kinds = [k for k in item if k != "name"]
        if len(kinds) != 1:
            raise SpecError(
                path, f"expected exactly one criterion besides 'name'; registered criteria: {', '.join(sorted(plugins.criteria.items))}"
            )
        kind = kinds[0]
        criterion = plugins.criteria.get(kind, f"{path}.{kind}")
        value = criterion.validate(item[kind], f"{path}.{kind}")
        name = item.get("name") or f"{kind}: {item[kind]}"
        criteria.append(Criterion(name=str(name), kind=kind, value=value))
    return CohortSettings(
        index_treatment=index.treatment,
        index_event=index.event,
        criteria=tuple(criteria),
        follow_up_end=section.follow_up_end,
        grace_days=section.grace_days,
        relapses=relapses,
        cutoff=cutoff,
    )


def _defaults(raw: dict, plugins: Plugins) -> dict[str, Any]:
    """``defaults:``: study-wide parameter values, each checked against every endpoint having it.

    A key that no endpoint of the spec has is an error (a default that changes nothing is a typo
    or a forgotten endpoint); a value must be valid for every endpoint it applies to.
    """
    defaults = raw.get("defaults")
    if defaults is None:
        return {}
    if not isinstance(defaults, dict):
        raise SpecError("defaults", f"expected a mapping of parameter names to values, e.g. {{post_lag_days: 90}}, got {defaults!r}")
    items = raw.get("endpoints") if isinstance(raw.get("endpoints"), list) else []
    classes = [plugins.endpoints.get(e["plugin"], f"endpoints[{i}].plugin") for i, e in enumerate(items)
               if isinstance(e, dict) and isinstance(e.get("plugin"), str)]
    names = sorted({f.name for cls in classes for f in dataclasses.fields(cls.Params)})
    resolved = {}
    for key, value in defaults.items():
        path = f"defaults.{key}"
        targets = [cls for cls in classes if key in {f.name for f in dataclasses.fields(cls.Params)}]
        if not targets:
            raise SpecError(path, f"no endpoint of this spec has a parameter '{key}'{suggest(str(key), names)}; "
                                  f"parameters of its endpoints: {', '.join(names) or 'none'}")
        for cls in targets:
            field_ = {f.name: f for f in dataclasses.fields(cls.Params)}[key]
            coerce(value, typing.get_type_hints(cls.Params)[key], f"{path} (for plugin {cls.name})", field_)
        resolved[key] = value
    return resolved


def _reached_by_default(spec: Spec, name: str) -> list[str]:
    """Ids of the endpoints that take parameter ``name`` from ``defaults`` (they do not set their own)."""
    reached = []
    for item, endpoint in zip(spec.raw.get("endpoints") or [], spec.endpoints):
        own = item.get("params") if isinstance(item, dict) else None
        if name in {f.name for f in dataclasses.fields(endpoint.params)} and name not in (own or {}):
            reached.append(endpoint.id)
    return reached


def _endpoints(raw: dict, plugins: Plugins, defaults: dict[str, Any], by: Grouping | None = None,
               compare: Comparing | None = None) -> tuple[EndpointSpec, ...]:
    items = raw.get("endpoints")
    if items is None:
        raise SpecError("endpoints", "missing: list at least one endpoint, e.g. [{id: arr, plugin: arr_change}]")
    if not isinstance(items, list) or not items:
        raise SpecError("endpoints", "expected a non-empty list of endpoints")
    out, seen = [], {}
    for i, item in enumerate(items):
        path = f"endpoints[{i}]"
        if not isinstance(item, dict):
            raise SpecError(path, f"expected a mapping {{id, plugin, params}}, got {item!r}")
        for key in item:
            if key not in ENDPOINT_KEYS:
                raise SpecError(f"{path}.{key}", f"unknown key{suggest(key, ENDPOINT_KEYS)}; valid keys: {', '.join(ENDPOINT_KEYS)}")
        plugin_name = item.get("plugin")
        if plugin_name is None:
            raise SpecError(f"{path}.plugin", "missing: name the endpoint plugin, e.g. arr_change")
        if not isinstance(plugin_name, str):
            raise SpecError(f"{path}.plugin", f"expected the name of an endpoint plugin such as arr_change, got {plugin_name!r}")
        endpoint = plugins.endpoints.get(plugin_name, f"{path}.plugin")
        endpoint_id = item.get("id", plugin_name)
        if not isinstance(endpoint_id, str) or not ID_PATTERN.match(endpoint_id):
            raise SpecError(f"{path}.id", f"expected an identifier (letters, digits, _ or -), got {endpoint_id!r}")
        if endpoint_id in seen:
            raise SpecError(f"{path}.id", f"duplicate endpoint id '{endpoint_id}' (also endpoints[{seen[endpoint_id]}])")
        seen[endpoint_id] = i
        own = item.get("params")
        if isinstance(own, dict) or own is None:  # spec-level defaults fill what the endpoint leaves unset
            fields = {f.name for f in dataclasses.fields(endpoint.Params)}
            inherited = {k: v for k, v in defaults.items() if k in fields and k not in (own or {})}
            if inherited:
                own = {**(own or {}), **inherited}
        params = build_params(endpoint.Params, own, f"{path}.params")
        if item.get("title") is not None and not isinstance(item["title"], str | int | float):
            raise SpecError(f"{path}.title", f"expected a title (text), got {item['title']!r}")
        title = item.get("title") or endpoint.title or plugin_name
        own_by = parse_by(item["by"], f"{path}.by") if "by" in item else by
        own_compare = parse_compare(item["compare"], f"{path}.compare") if "compare" in item else (compare if own_by else None)
        if own_compare is not None and own_by is None:
            raise SpecError(f"{path}.compare", "compares groups, but this endpoint has no grouping: add by: <patient column> "
                                               "(or named groups) to it or to the spec")
        out.append(EndpointSpec(id=endpoint_id, plugin=plugin_name, params=params, title=str(title), by=own_by,
                                compare=own_compare))
    return tuple(out)


def _plugin_files(raw: dict, base: Path) -> tuple[Path, ...]:
    items = raw.get("plugins") or []
    if not isinstance(items, list):
        raise SpecError("plugins", "expected a list of plugin files, e.g. [./my_endpoints.py]")
    files = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.endswith(".py"):
            raise SpecError(f"plugins[{i}]", f"expected a path to a .py file, got {item!r}")
        files.append((base / item).resolve())
    return tuple(files)


def validate(raw: dict, *, path: Path | None = None, sha256: str = "", plugins: Plugins | None = None,
             data_override: Path | None = None, variant: str = "primary", base: Path | None = None) -> Spec:
    """Validate a raw spec mapping completely and return the typed :class:`Spec`.

    Relative paths resolve against the spec file's folder, else ``base``, else the working folder."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise SpecError(str(key), f"unknown top-level key{suggest(key, TOP_LEVEL)}; valid keys: {', '.join(TOP_LEVEL)}")
    base = path.parent.resolve() if path else (base or Path.cwd()).resolve()
    files = _plugin_files(raw, base)
    if plugins is None:
        plugins = get_plugin_manager(files=files)
    study = _section(StudySection, raw, "study")
    data = _section(DataSection, raw, "data")
    if data.source not in plugins.sources:
        plugins.sources.get(data.source, "data.source")
    from .data import TABLES

    for table, mapping in data.columns.items():
        if table not in TABLES:
            raise SpecError(f"data.columns.{table}", f"unknown table{suggest(table, TABLES)}; tables: {', '.join(TABLES)}")
        for canonical in mapping:
            if canonical not in TABLES[table].all_columns:
                raise SpecError(
                    f"data.columns.{table}.{canonical}",
                    f"not a canonical column of {table}{suggest(canonical, TABLES[table].all_columns)}; "
                    f"columns: {', '.join(TABLES[table].all_columns)}",
                )
    reading = data_reading(data.tables, data.read, data.values, _database_url(data.url, base),
                           {name: schema.all_columns for name, schema in TABLES.items()})
    cutoff = data.cutoff
    data_path = data_override if data_override is not None else (base / data.path)
    statistics = _section(StatisticsSection, raw, "statistics")
    paired = build_params(PairedTestSection, statistics.paired_test, "statistics.paired_test")
    table = _section(TableSection, raw, "table")
    disclosure = _section(DisclosureSection, raw, "disclosure")
    executor_raw = raw.get("executor")
    executor = build_params(ExecutorSection, {"name": executor_raw} if isinstance(executor_raw, str) else executor_raw, "executor")
    if executor.scheduler and executor.name not in (None, "dask"):
        raise SpecError("executor.scheduler", f"a scheduler address is for name: dask, not {executor.name}")
    if table.format not in plugins.renderers:
        plugins.renderers.get(table.format, "table.format")
    cohort = _cohort(raw, plugins, cutoff)
    defaults = _defaults(raw, plugins)
    by = parse_by(raw.get("by"), "by")
    compare = parse_compare(raw.get("compare"), "compare")
    endpoints = _endpoints(raw, plugins, defaults, by, compare)
    if compare is not None and not any(e.by for e in endpoints):
        raise SpecError("compare", "compares groups, but no grouping is set: add by: <patient column> (or named groups)")
    ids = {e.id for e in endpoints}
    for i, item in enumerate(table.show):
        if item.split(".")[0] not in ids:
            raise SpecError(f"table.show[{i}]", f"unknown endpoint id '{item}'{suggest(item, ids)}; ids: {', '.join(sorted(ids))}")
    for i, item in enumerate(table.show_ci if isinstance(table.show_ci, list) else []):
        if item.split(".")[0] not in ids:
            raise SpecError(f"table.show_ci[{i}]", f"unknown endpoint id '{item}'{suggest(item, ids)}; ids: {', '.join(sorted(ids))}")
    for key in table.decimals if isinstance(table.decimals, dict) else {}:
        if key != "default" and key.split(".")[0] not in ids:
            raise SpecError(f"table.decimals.{key}", f"expected 'default', an endpoint id or 'id.measure'; "
                            f"unknown endpoint id '{key}'{suggest(key, [*ids, 'default'])}; ids: {', '.join(sorted(ids))}")
    return Spec(
        path=path, raw=raw, sha256=sha256, study=study, data=data, data_path=data_path.resolve(),
        cohort=cohort, endpoints=endpoints, statistics=statistics,
        paired_test=PairedTestSettings(**dataclasses.asdict(paired)), table=table,
        plugin_files=files, defaults=defaults, disclosure=disclosure, variant=variant, plugins=plugins, reading=reading,
        executor=executor, by=by, compare=compare,
    )


def _database_url(url: str | None, base: Path) -> str | None:
    """An SQLite URL's relative file is relative to the spec file, like ``data.path``."""
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        head, _, rest = url.partition(":///")
        return f"{head}:///{(base / rest).resolve()}"
    return url


def load_spec(path: str | Path, *, data: str | Path | None = None, plugins: Plugins | None = None) -> Spec:
    """Read, validate and expand a spec file (with its sensitivity variants)."""
    path = Path(path)
    raw, sha = read_spec_file(path)
    return _load(raw, sha, path=path, base=path.parent.resolve(), data=data, plugins=plugins)


def load_spec_mapping(raw: dict, *, base: str | Path | None = None, data: str | Path | None = None,
                      plugins: Plugins | None = None) -> Spec:
    """A spec given as a mapping (a dict, or parsed YAML text) rather than a file: relative paths
    (``data.path``, ``plugins``, ``extends``) resolve against ``base``, by default the working folder."""
    if not isinstance(raw, dict):
        raise SpecError("", f"expected a study spec mapping, got {type(raw).__name__}")
    base = Path(base if base is not None else Path.cwd()).resolve()
    raw = copy.deepcopy(raw)
    sha = hashlib.sha256(yaml.safe_dump(raw, sort_keys=True, allow_unicode=True).encode()).hexdigest()
    extends = raw.pop("extends", None)
    if extends is not None:
        if not isinstance(extends, str) or not extends.strip():
            raise SpecError("extends", f"expected the path of another spec file, got {extends!r}")
        base_path = (base / extends).resolve()
        base_raw, base_sha = read_spec_file(base_path)
        if isinstance(base_raw.get("data"), dict) and "path" in base_raw["data"]:  # keep base-relative paths
            base_raw["data"] = {**base_raw["data"], "path": str((base_path.parent / str(base_raw["data"]["path"])).resolve())}
        if isinstance(base_raw.get("plugins"), list):
            base_raw["plugins"] = [str((base_path.parent / str(p)).resolve()) for p in base_raw["plugins"]]
        raw = _merge(base_raw, raw)
        sha = hashlib.sha256((base_sha + sha).encode()).hexdigest()
    return _load(raw, sha, path=None, base=base, data=data, plugins=plugins)


def _load(raw: dict, sha: str, *, path: Path | None, base: Path, data: str | Path | None, plugins: Plugins | None) -> Spec:
    """Validate a spec and expand its sensitivity variants."""
    data_override = Path(data).resolve() if data is not None else None
    if plugins is None:
        plugins = get_plugin_manager(files=_plugin_files(raw, base))
    primary = validate(raw, path=path, sha256=sha, plugins=plugins, data_override=data_override, base=base)
    expanded = expand_variants(raw, primary)
    variants = []
    for i, (name, settings) in enumerate(expanded):
        try:
            variant = validate(_apply(raw, settings, name, i), path=path, sha256=sha, plugins=plugins,
                               data_override=data_override, variant=name, base=base)
            for key in settings:
                if str(key).startswith("defaults.") and not _reached_by_default(variant, str(key).split(".", 1)[1]):
                    raise SpecError(f"set.{key}", "changes no endpoint: every endpoint with this parameter sets its own "
                                                  "value, which a default does not replace; set <endpoint id>.<param> instead")
        except SpecError as exc:
            raise SpecError(f"sensitivity variant '{name}' (set {settings})", str(exc)) from None
        variants.append(variant)
    return dataclasses.replace(primary, variants=tuple(variants), variant_settings=dict(expanded),
                               origin=(raw, sha, path, base, data_override))


def load_origin(origin: tuple) -> Spec:
    """The spec ``Spec.origin`` was taken from, loaded again (in a worker process, say)."""
    raw, sha, path, base, data = origin
    return _load(copy.deepcopy(raw), sha, path=path, base=base, data=data, plugins=None)


# --------------------------------------------------------------------------- sensitivity variants


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def expand_variants(raw: dict, primary: Spec) -> list[tuple[str, dict]]:
    """``sensitivity`` as a list of (name, {dotted path: value}); grids are crossed."""
    items = raw.get("sensitivity") or []
    if not isinstance(items, list):
        raise SpecError("sensitivity", "expected a list of variants, each {name, set} or {grid}")
    out: list[tuple[str, dict]] = []
    for i, item in enumerate(items):
        path = f"sensitivity[{i}]"
        if not isinstance(item, dict):
            raise SpecError(path, f"expected a mapping {{name, set}} or {{grid}}, got {item!r}")
        for key in item:
            if key not in ("name", "set", "grid"):
                raise SpecError(f"{path}.{key}", f"unknown key{suggest(key, ['name', 'set', 'grid'])}; valid keys: name, set, grid")
        if ("set" in item) == ("grid" in item):
            raise SpecError(path, "expected exactly one of 'set' (one variant) or 'grid' (crossed axes)")
        if "set" in item:
            settings = item["set"]
            if not isinstance(settings, dict) or not settings:
                raise SpecError(f"{path}.set", "expected a mapping of dotted paths to values, e.g. {arr.post_lag_days: 90}")
            name = item.get("name") or ", ".join(f"{k}={_format_value(v)}" for k, v in settings.items())
            out.append((str(name), dict(settings)))
        else:
            grid = item["grid"]
            if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
                raise SpecError(f"{path}.grid", "expected a mapping of dotted paths to non-empty lists of values")
            keys = list(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                settings = dict(zip(keys, combo))
                label = ", ".join(f"{k}={_format_value(v)}" for k, v in settings.items())
                prefix = f"{item['name']}: " if item.get("name") else ""
                out.append((prefix + label, settings))
    seen: dict[str, int] = {}
    for i, (name, _) in enumerate(out):
        if name == "primary" or name in seen:
            raise SpecError(f"sensitivity[{i}].name", f"duplicate variant name '{name}'")
        seen[name] = i
    for i, (name, settings) in enumerate(out):
        for key in settings:
            _target(raw, key, f"sensitivity[{i}] ('{name}').set.{key}", primary)
    return out


def _target(raw: dict, dotted: str, where: str, primary: Spec | None = None) -> tuple[dict, str]:
    """The mapping and key a dotted variant path points into, creating empty levels as needed."""
    if dotted in ("by", "compare"):  # the grouping is a sensitivity axis: the whole setting is replaced
        return raw, dotted
    parts = str(dotted).split(".")
    if len(parts) < 2 or not all(parts):
        raise SpecError(where, f"expected a dotted path such as arr.post_lag_days or cohort.grace_days, got '{dotted}'")
    head = parts[0]
    if head == "data" and parts[1] != "cutoff":
        raise SpecError(where, f"'{dotted}' cannot vary: every variant analyses the same loaded data; "
                               "expected data.cutoff, cohort.<...>, statistics.<...>, table.<...>, defaults.<param> or <endpoint id>.<param>")
    if head in ("cohort", "statistics", "data", "table", "defaults"):
        node = raw.setdefault(head, {}) if isinstance(raw.get(head), dict) or head not in raw else raw[head]
        for part in parts[1:-1]:
            if not isinstance(node, dict):
                raise SpecError(where, f"'{dotted}' does not lead to a setting")
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(where, f"'{dotted}' does not lead to a setting")
        return node, parts[-1]
    endpoints = raw.get("endpoints") or []
    ids = [e.get("id", e.get("plugin")) for e in endpoints if isinstance(e, dict)]
    if head not in ids:
        raise SpecError(
            where,
            f"unknown endpoint id or section '{head}'{suggest(head, ids + ['cohort', 'statistics'])}; "
            f"expected <endpoint id>.<param>, cohort.<...> or statistics.<...> (ids: {', '.join(ids)})",
        )
    if len(parts) != 2:
        raise SpecError(where, f"expected <endpoint id>.<param>, got '{dotted}'")
    endpoint = endpoints[ids.index(head)]
    params = endpoint.setdefault("params", {})
    if params is None:
        params = endpoint["params"] = {}
    return params, parts[1]


def _apply(raw: dict, settings: dict, name: str, index: int) -> dict:
    variant = copy.deepcopy(raw)
    variant.pop("sensitivity", None)
    for key, value in settings.items():
        node, leaf = _target(variant, key, f"sensitivity[{index}] ('{name}').set.{key}")
        node[leaf] = value
    return variant

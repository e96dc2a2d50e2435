"""The results frame (analysis results data, one row per reported quantity) and its display strings.

Every number any output shows comes from this frame; renderers only format it.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from .endpoint import Row
from .params import to_plain
from .spill import FrameParts, StoredFrame, as_frame

if TYPE_CHECKING:
    from .data import CohortData
    from .manager import Plugins
    from .spec import Spec, TableSection

RESULT_COLUMNS = [
    "variant", "endpoint", "measure", "group", "stat", "count", "n", "estimate", "low", "high",
    "interval", "p_value", "test", "display",
]
DASH = "\u2013"


def _num(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def percent_decimals(table: TableSection, n: int | None) -> int:
    """``auto``: 0 decimals when ``n`` (the endpoint's largest n) is below 100, else 1."""
    if table.percent_decimals != "auto":
        return int(table.percent_decimals)
    return 0 if (n or 0) < 100 else 1


def is_ratio(stat: str, measure: str) -> bool:
    """Ratios (rate ratios, hazard or odds ratios) print with 2 decimals unless the spec says otherwise."""
    return stat.endswith(("ratio", "ratios")) or measure.endswith(("ratio", "ratios"))


def decimals_for(table: TableSection, endpoint: str, measure: str, stat: str) -> int:
    """``table.decimals`` for one row: ``id.measure``, then ``id``, then ``default`` (a plain number
    is the default); ratios use at least 2 unless their endpoint or measure is named."""
    setting = table.decimals
    mapping = setting if isinstance(setting, dict) else {"default": setting}
    for key in (f"{endpoint}.{measure}", endpoint):
        if key in mapping:
            return int(mapping[key])
    default = int(mapping.get("default", 1))
    return max(2, default) if is_ratio(stat, measure) else default


def shows_ci(table: TableSection, endpoint: str, measure: str, kind: str = "outcome") -> bool:
    """Whether a proportion row shows its 95% CI under ``table.show_ci``."""
    setting = table.show_ci
    if isinstance(setting, bool):
        return setting
    if setting == "outcomes":
        return kind != "descriptive"
    return endpoint in setting or f"{endpoint}.{measure}" in setting


def format_p(p: float | None, style: str) -> str:
    """NEJM: <0.001, 3 decimals below 0.01, else 2. AMA: P<.001, P=.006. Never 0.000."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "NA"
    if p < 0.001:
        text = "<0.001"
    elif p < 0.01:
        text = f"{p:.3f}"
    else:
        text = f"{p:.2f}"
        if text == "1.00" and p < 1:
            text = "1.00"
    if style == "ama":
        bare = text.replace("0.", ".", 1)
        return f"P{bare}" if bare.startswith("<") else f"P={bare}"
    return text


NOT_REACHED = "NR"
# between-group statistics (endpointkit.comparisons): their p-value is shown beside the estimate
COMPARISON_STATS = ("smd", "rate_ratio", "ratio_of_rate_ratios", "hazard_ratio", "logrank", "km_difference",
                    "proportion_difference", "median_difference", "hodges_lehmann")
POINTS = ("km_difference", "proportion_difference")  # differences of proportions: in percentage points


def _with_p(text: str, row: Row, style: str) -> str:
    if row.p_value is None or (isinstance(row.p_value, float) and math.isnan(row.p_value)):
        return text
    p = format_p(row.p_value, style)
    return f"{text}, {p}" if style == "ama" else f"{text}, p {'< ' + p[1:] if p.startswith('<') else '= ' + p}"


def format_comparison(row: Row, table: TableSection, decimals: int, percent: int) -> str:
    """A between-group row: differences of proportions in percentage points, the log-rank test as its
    chi-square, the rest as numbers; the 95% CI when there is one, then the p-value."""
    if row.stat in POINTS:
        def points(v: float | None) -> str:
            return "NA" if v is None else _num(100 * v, percent)

        text = f"{'+' if row.estimate > 0 else ''}{points(row.estimate)} pp"
        if row.low is not None and row.high is not None:
            text += f" (95% CI {points(row.low)} to {points(row.high)})"
        return _with_p(text, row, table.p_style)
    if row.stat == "logrank":
        return _with_p(f"chi-square {_num(row.estimate, 1)}", row, table.p_style)
    d = max(decimals, 2) if row.stat == "smd" else decimals
    text = _num(row.estimate, d)
    if row.low is not None and row.high is not None:
        text += f" (95% CI {_num(row.low, d)}{DASH}{_num(row.high, d)})"
    return _with_p(text, row, table.p_style)


def format_display(row: Row, table: TableSection, *, endpoint: str = "", kind: str = "outcome",
                   percent_n: int | None = None) -> str:
    """The string the table shows for one row, from the numbers only.

    ``percent_n`` (the endpoint's largest n) sets one percent precision for the whole endpoint;
    ``kind`` is the endpoint's (``descriptive`` for Table 1) for ``show_ci: outcomes``.
    """
    if row.display is not None:
        return row.display
    d = decimals_for(table, endpoint, row.measure, row.stat)
    percent_n = row.n if percent_n is None else percent_n
    open_, close = table.brackets[0], table.brackets[1]
    est = row.estimate
    if row.stat == "test":
        return format_p(row.p_value, table.p_style)
    if row.stat in COMPARISON_STATS and " vs " in row.group and est is not None and not (isinstance(est, float) and math.isnan(est)):
        return format_comparison(row, table, d, percent_decimals(table, percent_n))
    if est is None or (isinstance(est, float) and math.isnan(est)):
        if row.stat == "km_median":  # not reached; its upper limit is not reached either
            return NOT_REACHED if row.low is None else f"{NOT_REACHED} (95% CI {_num(row.low, d)}{DASH}{NOT_REACHED})"
        return "NA"
    if row.stat == "count":
        return str(int(round(est)))
    if row.stat == "proportion":
        pd_ = percent_decimals(table, percent_n)
        text = f"{row.count} ({_num(100 * est, pd_)}%)"
        if shows_ci(table, endpoint, row.measure, kind) and row.low is not None:
            text += f" {open_}95% CI {_num(100 * row.low, pd_)}{DASH}{_num(100 * row.high, pd_)}%{close}"
        return text
    if row.stat == "km":
        pd_ = percent_decimals(table, percent_n)
        text = f"{_num(100 * est, pd_)}%"
        if row.low is not None and row.high is not None:
            text += f" (95% CI {_num(100 * row.low, pd_)}{DASH}{_num(100 * row.high, pd_)}%)"
        return text
    if row.stat == "mean" and row.interval == "SD":
        return f"{_num(est, d)} ({_num(row.low, d)})" if row.low is not None else _num(est, d)
    if row.low is None and row.high is None:
        return _num(est, d)
    if row.interval == "95% CI":
        missing = NOT_REACHED if row.stat == "km_median" else "NA"  # a KM limit never reached
        low = _num(row.low, d) if row.low is not None else missing
        high = _num(row.high, d) if row.high is not None else missing
        return f"{_num(est, d)} (95% CI {low}{DASH}{high})"
    return f"{_num(est, d)} {open_}{_num(row.low, d)}{DASH}{_num(row.high, d)}{close}"


def rows_to_frame(rows: list[Row], *, variant: str, endpoint: str, table: TableSection,
                  kind: str = "outcome") -> pd.DataFrame:
    ns = [row.n for row in rows if row.stat in ("proportion", "km") and row.n is not None]
    percent_n = max(ns) if ns else None
    records = []
    for row in rows:
        records.append({
            "variant": variant, "endpoint": endpoint, "measure": row.measure, "group": row.group,
            "stat": row.stat, "count": row.count, "n": row.n, "estimate": row.estimate, "low": row.low,
            "high": row.high, "interval": row.interval, "p_value": row.p_value, "test": row.test,
            "display": format_display(row, table, endpoint=endpoint, kind=kind, percent_n=percent_n),
        })
    frame = pd.DataFrame.from_records(records, columns=RESULT_COLUMNS)
    for column in ("count", "n"):
        frame[column] = frame[column].astype("Int64")
    for column in ("estimate", "low", "high", "p_value"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame


def check_rows(rows: Any) -> str | None:
    """Why rows break the results contract, or None when they are fine."""
    if not isinstance(rows, list):
        return f"rows must be a list of Row, got {type(rows).__name__}"
    for row in rows:
        if not isinstance(row, Row):
            return f"rows must be Row objects, got {type(row).__name__}"
        for name in ("estimate", "low", "high", "p_value"):
            value = getattr(row, name)
            if value is not None and not isinstance(value, int | float):
                return f"row '{row.measure}': {name} must be a number, got {value!r}"
        if row.n is not None and row.n < 0:
            return f"row '{row.measure}': n is negative"
        if row.stat == "proportion" and row.count is not None and row.n is not None and row.count > row.n:
            return f"row '{row.measure}': count {row.count} exceeds n {row.n}"
        if row.stat in ("proportion", "km") and row.estimate is not None and not 0 <= row.estimate <= 1:
            return f"row '{row.measure}': a proportion must lie in [0, 1], got {row.estimate}"
        if row.p_value is not None and not (0 <= row.p_value <= 1 or math.isnan(row.p_value)):
            return f"row '{row.measure}': p_value outside [0, 1]"
    measures = [(r.measure, r.group) for r in rows]
    if len(measures) != len(set(measures)):
        return "two rows share the same measure and group"
    return None


@dataclass
class VariantResult:
    """One variant's outputs."""

    name: str
    spec: Spec
    frame: pd.DataFrame
    per_patient: Mapping[str, pd.DataFrame]  # frames beyond the run's memory budget are loaded when asked for
    labels: dict[tuple[str, str], str]
    notes: dict[str, list[str]]
    attrition: pd.DataFrame
    quality: pd.DataFrame | StoredFrame | FrameParts  # a large report stays on disk until asked for (data_quality)
    failures: list[dict] = field(default_factory=list)
    curves: dict[tuple[str, str], Any] = field(default_factory=dict)  # (endpoint id, title) -> KaplanMeier
    seconds: float = 0.0
    # ``by:``: the attrition flow of each group (group, step, remaining, excluded) and the analysed
    # patients per group (the table's column headers)
    group_attrition: pd.DataFrame | None = None
    group_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def attrition_table(self) -> pd.DataFrame:
        """attrition.csv: the overall flow, and under ``by:`` a ``group`` column (``all`` = overall)
        followed by each group's flow."""
        if self.group_attrition is None:
            return self.attrition
        overall = self.attrition.copy(deep=False)
        overall.insert(0, "group", "all")
        return pd.concat([overall, self.group_attrition], ignore_index=True)


@dataclass
class Results:
    """Everything a run produced. ``frame`` is the results frame (contract columns)."""

    spec: Spec
    frame: pd.DataFrame
    variants: list[VariantResult]
    provenance: dict
    plugins: Plugins = field(repr=False)
    _what_moves: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_variants(cls, spec: Spec, plugins: Plugins, data: CohortData, outputs: list[VariantResult]) -> Results:
        frames = [o.frame for o in outputs if not o.frame.empty]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
        return cls(spec=spec, frame=frame[RESULT_COLUMNS], variants=outputs, plugins=plugins,
                   provenance=_provenance(spec, plugins, data, outputs))

    # -- convenient views of the primary (first) variant
    @property
    def primary(self) -> VariantResult:
        return self.variants[0]

    @property
    def per_patient(self) -> Mapping[str, pd.DataFrame]:
        return self.primary.per_patient

    @property
    def attrition(self) -> pd.DataFrame:
        return self.primary.attrition

    @property
    def data_quality(self) -> pd.DataFrame:
        return as_frame(self.primary.quality)

    @property
    def failures(self) -> list[dict]:
        return [f for v in self.variants for f in v.failures]

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def table(self, format: str | None = None, variant: str | None = None) -> str:  # noqa: A002
        """The results table as text (github, plain, latex or html), with footnotes."""
        from .render import render_table

        chosen = self.variant(variant) if variant else self.primary
        return render_table(chosen, self.plugins, format or chosen.spec.table.format)

    def side_by_side(self, format: str | None = None) -> str:
        from .sensitivity import render_side_by_side

        return render_side_by_side(self, format or self.spec.table.format)

    def write(self, folder, formats=(), *, figures=True, csv_excel: bool = False) -> list:
        """Write every output file into ``folder``, as ``endpointkit run -o`` does (all or none).

        :param formats: a table format or a list (``github``, ``docx``, ``xlsx``, ...); each
            is written as ``table.<suffix>``; default ``table.format``.
        :param figures: True (PNG), False, or a list of ``png``/``svg``/``pdf``: figures under ``figures/``.
        :param csv_excel: CSV files with a UTF-8 byte-order mark, for Excel.
        :returns: the paths written.
        """
        from .api import write

        return write(self, folder, formats, figures=figures, csv_excel=csv_excel)

    def figure(self, kind: str = "km", *, endpoint: str | None = None, measure: str | None = None):
        """A matplotlib Figure: ``km`` (the Kaplan-Meier curve of ``endpoint``, default the first
        with one), ``consort`` (the attrition diagram) or ``forest`` (``measure`` across variants)."""
        from .disclosure import Policy
        from .errors import UsageError
        from .figures import consort_figure, forest_figure, km_figure

        if kind == "consort":
            return consort_figure(self.attrition, title=f"Patient flow: {self.spec.study.title}")
        if kind == "forest":
            return forest_figure(self, measure)
        if kind != "km":
            raise UsageError(f"figure: expected 'km', 'consort' or 'forest', got {kind!r}")
        curves = {key: km for key, km in self.primary.curves.items() if endpoint in (None, key[0])}
        if not curves:
            ids = sorted({key[0] for key in self.primary.curves})
            raise UsageError(f"figure: no Kaplan-Meier curve for endpoint {endpoint!r}; endpoints with one: {', '.join(ids) or 'none'}")
        (endpoint_id, title), km = next(iter(curves.items()))
        policy = Policy.of(self.spec.disclosure)
        titles = {e.id: e.title for e in self.spec.endpoints}
        return km_figure(km, title=f"{titles.get(endpoint_id, endpoint_id)}: {title}", ylabel=title,
                         policy=policy if policy.active else None)

    def _repr_html_(self) -> str:
        """Jupyter: the results table with its footnotes, the attrition and the sensitivity table."""
        from .report import notebook_html

        return notebook_html(self)

    def what_moves(self) -> pd.DataFrame:
        """How far each headline moves from primary per variant (computed once per Results)."""
        if self._what_moves is None:
            from .sensitivity import what_moves

            self._what_moves = what_moves(self)
        return self._what_moves


def dependency_versions() -> dict[str, str]:
    """The installed version of every dependency endpointkit declares (extras included when installed)."""
    import importlib.metadata
    import re

    try:
        requirements = importlib.metadata.requires("endpointkit") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        requirements = ["pluggy", "pandas", "numpy", "scipy", "pyyaml", "tabulate", "pyarrow"]
    versions = {}
    for requirement in requirements:
        name = re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0]
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra that is not installed
    return dict(sorted(versions.items()))


def run_time() -> str:
    """When the run happened (UTC); SOURCE_DATE_EPOCH pins it, as reproducible builds do."""
    import datetime as dt
    import os

    pinned = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = dt.datetime.fromtimestamp(int(pinned), dt.UTC) if pinned.isdigit() else dt.datetime.now(dt.UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _provenance(spec: Spec, plugins: Plugins, data: CohortData, outputs: list[VariantResult]) -> dict:
    from . import __version__
    from .spec import spec_file_chain

    return {
        "endpointkit": __version__,
        "python": platform.python_version(),
        "run": {"time": run_time(), "command": None},
        "packages": dependency_versions(),
        "plugins": plugins.versions(),
        "endpoint_plugins": {
            e.plugin: plugins.endpoints.items[e.plugin].provider for e in spec.endpoints
        },
        "spec": {"path": spec.path.name if spec.path else None, "sha256": spec.sha256,
                 "files": [{"path": spec.relative(path), "sha256": digest} for path, digest in spec_file_chain(spec.path)]},
        "data": {"source": data.source, "path": spec.relative(data.path), "sha256": data.checksums},
        "variants": [
            {
                "name": o.name,
                "settings": to_plain(spec.variant_settings.get(o.name, {})),
                "resolved": o.spec.resolved(),
                "attrition": o.attrition.to_dict(orient="records"),
                "failures": [{k: v for k, v in f.items() if k != "detail"} for f in o.failures],
            }
            for o in outputs
        ],
    }

"""Build the results table (rows, labels, footnotes) from the results frame; renderer plugins
turn it into text. Nothing here computes a number."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from .manager import Plugins
from .results import VariantResult

if TYPE_CHECKING:
    pass

QUANTILE_NAMES = {
    "linear": "R type 7, pandas/numpy default",
    "weibull": "Hyndman-Fan type 6, SPSS",
    "averaged_inverted_cdf": "Hyndman-Fan type 2, SAS/Stata",
}


@dataclass(frozen=True)
class Table:
    """What a renderer receives: a title, headers, rows of strings and footnotes."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    footnotes: list[str]

    def one_line(self) -> Table:
        """The same table with every text on one line (see :func:`one_line`): what renderers receive."""
        return dataclasses.replace(
            self, title=one_line(self.title), headers=[one_line(h) for h in self.headers],
            rows=[[one_line(c) for c in row] for row in self.rows], footnotes=[one_line(n) for n in self.footnotes],
        )


# line breaks (\n, \r, \v, \f, NEL, U+2028/9) and every other control character (ESC of terminal
# escape sequences, NUL): text from a spec or from data could otherwise end a LaTeX comment, start a
# Markdown line or rewrite a terminal
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: object) -> str:
    """Text with every run of line breaks and control characters replaced by one space."""
    return _CONTROL.sub(" ", str(text))


def _shown(spec, endpoint: str, measure: str) -> bool:
    return not spec.table.show or any(_matches(entry, endpoint, measure) for entry in spec.table.show)


def build_table(result: VariantResult) -> Table:
    """The results table: one result column, or under ``by:`` one column per group (see
    :func:`grouped_table`)."""
    if is_grouped(result.frame):
        return grouped_table(result)
    spec = result.spec
    titles = {e.id: e.title for e in spec.endpoints}
    rows = []
    frame = result.frame
    for endpoint in spec.endpoints:
        block = frame[frame["endpoint"] == endpoint.id]
        first = True
        for record in block.itertuples(index=False):
            if not _shown(spec, endpoint.id, record.measure):
                continue
            label = spec.table.labels.get(f"{endpoint.id}.{record.measure}") or result.labels.get(
                (endpoint.id, record.measure, record.group), record.measure
            )
            if record.group != "all":
                label = f"{label} ({record.group})"
            n = "" if pd.isna(record.n) else str(int(record.n))
            rows.append([titles[endpoint.id] if first else "", label, n, record.display])
            first = False
    notes = footnotes(result) if spec.table.footnotes else list(spec.table.notes)
    for entry in spec.table.show:
        if not any(_matches(entry, e, m) for e, m in zip(frame["endpoint"], frame["measure"], strict=True)):
            notes.append(f"table.show: '{entry}' matched no result row.")
    return Table(title=spec.table.title or spec.study.title, headers=["Endpoint", "Measure", "n", "Result"], rows=rows, footnotes=notes)


def is_grouped(frame: pd.DataFrame) -> bool:
    """Whether results hold rows within groups (``by:``) besides the overall rows."""
    return bool(len(frame)) and bool((frame["group"] != "all").any())


def group_columns(result: VariantResult) -> tuple[list[str], list[str]]:
    """The table's group columns (in the grouping's order) and comparison columns ('M vs F')."""
    present = list(dict.fromkeys(result.frame["group"]))
    levels = [level for level in result.group_sizes if level in present]
    levels += [g for g in present if g != "all" and g not in levels and " vs " not in g]
    comparisons = [g for g in present if " vs " in g]
    return levels, comparisons


def _size(result: VariantResult, n: int) -> str:
    if result.spec.disclosure.active:
        from .disclosure import Policy

        return Policy.of(result.spec.disclosure).text(int(n))
    return str(int(n))


def grouped_table(result: VariantResult) -> Table:
    """One column per group plus an overall column (the layout of tableone and gtsummary), each
    headed with its patients ('F (n = 12)'), and a column per between-group comparison ('M vs F').
    A row is one measure; a cell is empty where the measure has no result in that column."""
    spec = result.spec
    titles = {e.id: e.title for e in spec.endpoints}
    levels, comparisons = group_columns(result)
    columns = ["all", *levels, *comparisons]
    overall = int(result.attrition["remaining"].iloc[-1]) if len(result.attrition) else 0
    headers = ["Endpoint", "Measure", f"Overall (n = {_size(result, overall)})"]
    headers += [f"{level} (n = {_size(result, result.group_sizes[level])})" if level in result.group_sizes else level
                for level in levels]
    headers += comparisons
    rows = []
    frame = result.frame
    for endpoint in spec.endpoints:
        block = frame[frame["endpoint"] == endpoint.id]
        cells = {(m, g): d for m, g, d in zip(block["measure"], block["group"], block["display"], strict=True)}
        first = True
        for measure in dict.fromkeys(block["measure"]):
            if not _shown(spec, endpoint.id, measure):
                continue
            group = next(g for m, g in cells if m == measure)
            label = spec.table.labels.get(f"{endpoint.id}.{measure}") or result.labels.get(
                (endpoint.id, measure, "all"), result.labels.get((endpoint.id, measure, group), measure))
            rows.append([titles[endpoint.id] if first else "", label] + [cells.get((measure, c), "") for c in columns])
            first = False
    notes = footnotes(result) if spec.table.footnotes else list(spec.table.notes)
    for entry in spec.table.show:
        if not any(_matches(entry, e, m) for e, m in zip(frame["endpoint"], frame["measure"], strict=True)):
            notes.append(f"table.show: '{entry}' matched no result row.")
    return Table(title=spec.table.title or spec.study.title, headers=headers, rows=rows, footnotes=notes)


def _matches(entry: str, endpoint: str, measure: str) -> bool:
    return entry in (endpoint, f"{endpoint}.{measure}")


def footnotes(result: VariantResult) -> list[str]:
    spec = result.spec
    method = spec.statistics.quantile_method
    test = spec.paired_test
    attrition = result.attrition
    notes = [
        f"Cohort: {attrition['remaining'].iloc[-1]} of {attrition['remaining'].iloc[0]} patients analysed; "
        f"index date = first start of {spec.cohort.index_treatment}; follow-up ends at {spec.cohort.follow_up_end.replace('_', ' ')}"
        + (f" (capped at the data cut-off {spec.cohort.cutoff})" if spec.cohort.cutoff else "") + ".",
        f"Medians with [IQR] use the numpy quantile method '{method}'"
        + (f" ({QUANTILE_NAMES[method]})" if method in QUANTILE_NAMES else "") + "; a year is "
        f"{spec.statistics.year_days:g} days.",
        f"Paired tests: Wilcoxon signed-rank on post - pre (scipy.stats.wilcoxon, zero_method={test.zero_method}, "
        f"method={test.method}, correction={str(test.correction).lower()}); the method that ran, pairs and zero "
        "differences are recorded in results.csv. Proportions: exact Clopper-Pearson 95% CI.",
        f"Relapses: pseudo relapses {'dropped' if spec.cohort.relapses.exclude_pseudo else 'kept'}; onsets within "
        f"{spec.cohort.relapses.merge_within_days} days of a kept onset merged"
        + ("; confirmed relapses only" if spec.cohort.relapses.only_confirmed else "") + ".",
        f"p-values: {spec.table.p_style.upper()} style, two-sided.",
    ]
    notes += group_notes(result)
    for endpoint in spec.endpoints:
        for note in result.notes.get(endpoint.id, []):
            notes.append(f"{endpoint.title}: {note}")
    if result.frame["display"].astype(str).str.contains(r"\bNR\b").any():
        notes.append("NR = not reached (a Kaplan-Meier median or limit that the curve or its band never reaches).")
    disclosure = spec.disclosure
    if disclosure.active:
        rules = []
        if disclosure.min_count:
            rules.append(f"counts from 1 to {disclosure.min_count - 1} are shown as <{disclosure.min_count}, rows on fewer "
                         f"than {disclosure.min_count} patients as 'n <{disclosure.min_count}', and 'suppressed' marks a "
                         "count hidden because it would reveal one (complement, total or another row)")
        if disclosure.round_to:
            rules.append(f"counts are rounded to the nearest {disclosure.round_to}, percentages and their CIs computed "
                         "from the rounded counts")
        notes.append("Disclosure control: " + "; ".join(rules) + ".")
    for failure in result.failures:
        notes.append(f"FAILED {failure['endpoint']} ({failure['plugin']}): {failure['reason']}")
    notes.extend(spec.table.notes)
    return notes


def group_notes(result: VariantResult) -> list[str]:
    """What the groups are, and who is left out of them."""
    spec = result.spec
    notes = []
    groupings = {}
    for endpoint in spec.endpoints:
        if endpoint.by is not None:
            groupings.setdefault(endpoint.by.key, (endpoint.by, []))[1].append(endpoint.id)
    for grouping, ids in groupings.values():
        where = "" if spec.by is not None and grouping.key == spec.by.key else f" ({', '.join(ids)})"
        text = f"Groups{where}: by {grouping.describe()}"
        if grouping.column is None:
            text += "; a patient is in the first group whose expression holds"
        if grouping.missing == "exclude":
            text += "; patients without a group (missing) are in the overall column only"
        else:
            text += "; 'missing' = no value (or no group fits)"
        notes.append(text + ".")
    if any(e.compare is not None for e in spec.endpoints):
        notes.append("'<group> vs <reference>' columns: between-group comparisons of each group with the reference "
                     "group, named second (the method of each is recorded in results.csv); differences of proportions "
                     "in percentage points (pp).")
    return notes


def render_table(result: VariantResult, plugins: Plugins, fmt: str) -> str:
    renderer = plugins.renderers.get(fmt, "--format")
    return renderer.render(build_table(result).one_line())

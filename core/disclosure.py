"""Disclosure control: small-cell suppression and rounding of every count that leaves a run.

``disclosure: {min_count: M, round_to: R}`` (both optional, off by default). The rules, in order:

1. **Rows on few patients.** A row whose ``n`` is from 1 to M-1 is suppressed whole: n, count,
   estimate, interval and p-value (a median of 3 patients describes those patients).
2. **Primary suppression.** A count from 1 to M-1 is suppressed (shown as ``<M``): the ``count`` of
   a proportion, rate or Kaplan-Meier median (events), and the estimate of a count row. A
   proportion whose complement ``n - count`` is from 1 to M-1 is suppressed too (``suppressed``),
   and so are its percentage and 95% CI (they give the count back from n). Zero is shown.
3. **Secondary suppression.** Counts that add up to a shown total (the levels of a categorical
   variable, ``<variable>:<level>`` rows, add up to n; an endpoint declares others in
   ``Endpoint.partitions``, e.g. progressed + stable + improved = n) never have exactly one
   suppressed member: the smallest other non-zero count of the relation is suppressed as well,
   until no relation has a single unknown.
4. **Attrition.** An exclusion step that removed 1 to M-1 patients is merged with the next
   (or previous) step until every shown exclusion is 0 or at least M; when all exclusions
   together are below M, the starting count is suppressed.
5. **Rounding.** With ``round_to: R`` every released count (n, counts, attrition, data-quality
   counts, counts in footnotes and labels) is rounded to the nearest multiple of R, after the
   suppression decisions are taken on the exact counts; percentages and their exact CIs are
   computed from the rounded counts.
6. **Files.** Per-patient files are not written; ``data_quality.csv`` becomes a count per table,
   reason and action (cohort exclusions are in the attrition flow only); Kaplan-Meier figures
   show suppressed or rounded numbers at risk and no censoring marks.

Not protected: differences between the denominators of two rows (patients with a missing value)
and differences between sensitivity variants (use ``round_to`` against differencing).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .endpoint import Row
from .results import format_display
from .spill import as_frame
from .stats import proportion_row

if TYPE_CHECKING:
    from .results import Results
    from .spec import DisclosureSection

SUPPRESSED = "suppressed"


@dataclasses.dataclass(frozen=True)
class Policy:
    """The disclosure settings of a spec, with the two operations every output uses."""

    min_count: int | None = None
    round_to: int | None = None

    @classmethod
    def of(cls, section: DisclosureSection) -> Policy:
        return cls(min_count=section.min_count, round_to=section.round_to)

    @property
    def active(self) -> bool:
        return self.min_count is not None or self.round_to is not None

    def small(self, count: float | None) -> bool:
        """A count from 1 to min_count - 1 (zero and missing are not small)."""
        return self.min_count is not None and count is not None and not _missing(count) and 1 <= count < self.min_count

    def rounded(self, count: float) -> int:
        """``count`` to the nearest multiple of round_to (halves up); unchanged when rounding is off."""
        if self.round_to is None:
            return int(count)
        return int(math.floor(count / self.round_to + 0.5) * self.round_to)

    @property
    def below(self) -> str:
        return f"<{self.min_count}"

    def text(self, count: int) -> str:
        """How a single count is released: ``<M`` when small, else (rounded) digits."""
        return self.below if self.small(count) else str(self.rounded(count))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- the results frame


def _cell(row: dict) -> float | None:
    """The protected count of a results row: its ``count``, or the estimate of a count row."""
    if row["stat"] == "count":
        return None if _missing(row["estimate"]) else float(row["estimate"])
    return None if _missing(row["count"]) else float(row["count"])


def _relations(block: pd.DataFrame, partitions: tuple) -> list[tuple[str, list[str]]]:
    """(total, parts) relations among one endpoint/group's rows: declared ones and ``prefix:level``."""
    measures = list(block["measure"])
    relations = [(total, [p for p in parts if p in measures]) for total, parts in partitions]
    prefixes: dict[str, list[str]] = {}
    for measure in measures:
        if ":" in measure:
            prefixes.setdefault(measure.split(":", 1)[0], []).append(measure)
    relations += [("n", parts) for parts in prefixes.values()]
    return [(total, parts) for total, parts in relations if parts and (total == "n" or total in measures)]


def _suppress_block(block: pd.DataFrame, partitions: tuple, policy: Policy) -> dict[int, str]:
    """Which rows of one variant/endpoint/group block are suppressed, and how (row index -> marker)."""
    hidden: dict[int, str] = {}
    by_measure = {row["measure"]: index for index, row in zip(block.index, block.to_dict(orient="records"), strict=True)}
    for index, row in zip(block.index, block.to_dict(orient="records"), strict=True):
        n = None if _missing(row["n"]) else int(row["n"])
        cell = _cell(row)
        if policy.small(n):
            hidden[index] = "n"
        elif policy.small(cell):
            hidden[index] = policy.below
        elif row["stat"] == "proportion" and cell is not None and n is not None and policy.small(n - cell):
            hidden[index] = SUPPRESSED
    changed = True
    while changed:
        changed = False
        for total, parts in _relations(block, partitions):
            members = [by_measure[p] for p in parts] + ([by_measure[total]] if total != "n" else [])
            unknown = [i for i in members if i in hidden]
            if len(unknown) != 1:
                continue
            visible = [(cell, i) for i in members if i not in hidden and (cell := _cell(block.loc[i].to_dict()))]
            if visible:
                hidden[min(visible)[1]] = SUPPRESSED
                changed = True
    return hidden


def _display(record: dict, table, kind: str, percent_n: int | None) -> str:
    """The display string of a row after rounding, from its (rounded) numbers."""
    row = Row(measure=record["measure"], stat=record["stat"], estimate=None if _missing(record["estimate"]) else float(record["estimate"]),
              n=None if _missing(record["n"]) else int(record["n"]), count=None if _missing(record["count"]) else int(record["count"]),
              low=None if _missing(record["low"]) else float(record["low"]), high=None if _missing(record["high"]) else float(record["high"]),
              interval=record["interval"], p_value=None if _missing(record["p_value"]) else float(record["p_value"]), test=record["test"])
    return format_display(row, table, endpoint=record["endpoint"], kind=kind, percent_n=percent_n)


def disclose_frame(frame: pd.DataFrame, results: Results, policy: Policy) -> pd.DataFrame:
    """The results frame with suppressed cells blanked (display ``<M`` or ``suppressed``) and counts rounded."""
    if frame.empty:
        return frame
    out = frame.copy()
    plugin_of = {e.id: e.plugin for e in results.spec.endpoints}
    classes = results.plugins.endpoints.items
    specs = {v.name: v.spec for v in results.variants}
    for (variant, endpoint, _group), block in out.groupby(["variant", "endpoint", "group"], sort=False):
        cls = classes.get(plugin_of.get(endpoint, ""))
        partitions = getattr(cls, "partitions", ())
        kind = getattr(cls, "kind", "outcome")
        hidden = _suppress_block(block, partitions, policy) if policy.min_count else {}
        table = specs.get(variant, results.spec).table
        ns = [policy.rounded(n) for n, s in zip(block["n"], block["stat"], strict=True)
              if s in ("proportion", "km") and not _missing(n)]
        percent_n = max(ns) if ns else None
        for index in block.index:
            record = out.loc[index].to_dict()
            if index in hidden:
                marker = hidden[index]
                whole = marker == "n"
                out.loc[index, ["count", "estimate", "low", "high"]] = [pd.NA, np.nan, np.nan, np.nan]
                if whole:
                    out.loc[index, "n"] = pd.NA
                    out.loc[index, "p_value"] = np.nan
                    out.loc[index, "display"] = f"n {policy.below}"
                elif not _missing(record["n"]):
                    out.loc[index, "n"] = policy.rounded(int(record["n"]))
                    if marker != SUPPRESSED or record["stat"] != "proportion":
                        out.loc[index, "display"] = marker
                    else:
                        out.loc[index, "display"] = SUPPRESSED
                out.loc[index, "test"] = redact_text(record["test"], policy) if isinstance(record["test"], str) else record["test"]
                continue
            if isinstance(record["test"], str):
                out.loc[index, "test"] = redact_text(record["test"], policy)
            if policy.round_to is None:
                continue
            changed = _rounded_record(record, policy)
            for column in ("count", "n", "estimate", "low", "high"):
                out.loc[index, column] = changed[column]
            if record["display"] == frame.loc[index, "display"] and _regenerate(frame.loc[index]):
                out.loc[index, "display"] = _display(changed, table, kind, percent_n)
    return out


def _regenerate(row: pd.Series) -> bool:
    """Rows whose display the generic formatter made (titers carry their own, without counts)."""
    return row["stat"] in ("proportion", "count", "rate", "km_median", "km")


def _rounded_record(record: dict, policy: Policy) -> dict:
    """One row with its counts rounded; a proportion's percentage and exact CI from the rounded counts."""
    out = dict(record)
    n = None if _missing(record["n"]) else policy.rounded(int(record["n"]))
    out["n"] = pd.NA if n is None else n
    if record["stat"] == "count" and not _missing(record["estimate"]):
        out["estimate"] = float(policy.rounded(record["estimate"]))
    if not _missing(record["count"]):
        out["count"] = policy.rounded(int(record["count"]))
    if record["stat"] == "proportion" and not _missing(record["count"]) and n:
        count = min(int(out["count"]), n)
        recomputed = proportion_row(record["measure"], count, n)
        out["count"], out["estimate"], out["low"], out["high"] = count, recomputed.estimate, recomputed.low, recomputed.high
    return out


# --------------------------------------------------------------------------- text, attrition, data quality


_COUNT_IN_TEXT = re.compile(
    r"(?<![\w.+\-])(\d+)(?![\w.])(?=\s+(?:patient|pair|zero difference|event|adverse event|relapse|record|course|"
    r"titer|score|row|before index|after follow-up))"
)
_N_IN_TEXT = re.compile(r"\bn = (\d+)\b")


def redact_text(text: str, policy: Policy) -> str:
    """Counts in free text (``3 patient(s)``, ``n = 13``): small ones as ``<M``, others rounded."""
    if not isinstance(text, str):
        return text
    text = _COUNT_IN_TEXT.sub(lambda m: policy.text(int(m.group(1))), text)
    return _N_IN_TEXT.sub(lambda m: f"n = {policy.text(int(m.group(1)))}", text)


def disclose_attrition(attrition: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """The attrition flow with small exclusion steps merged and counts rounded (text columns)."""
    if attrition.empty or "remaining" not in attrition:
        return attrition
    steps = [str(s) for s in attrition["step"]]
    remaining = [int(r) for r in attrition["remaining"]]
    groups: list[list[int]] = []  # step indexes merged into one shown step (step 0 = the start)
    for i in range(1, len(steps)):
        if groups and policy.small(remaining[groups[-1][0] - 1] - remaining[groups[-1][-1]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    while len(groups) > 1 and policy.small(remaining[groups[-1][0] - 1] - remaining[groups[-1][-1]]):
        groups[-2].extend(groups.pop())
    start_hidden = bool(groups) and policy.small(remaining[0] - remaining[-1]) and len(groups) == 1
    records = [{"step": steps[0], "remaining": SUPPRESSED if start_hidden or policy.small(remaining[0]) else str(policy.rounded(remaining[0])),
                "excluded": "0"}]
    for group in groups:
        before, after = remaining[group[0] - 1], remaining[group[-1]]
        records.append({
            "step": " + ".join(steps[i] for i in group),
            "remaining": SUPPRESSED if policy.small(after) else str(policy.rounded(after)),
            "excluded": policy.text(before - after),
        })
    return pd.DataFrame.from_records(records, columns=["step", "remaining", "excluded"])


def disclose_group_attrition(attrition: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """The attrition flow of each group (``by:``), each disclosed as the overall flow is."""
    parts = []
    for group, flow in attrition.groupby("group", sort=False):
        shown = disclose_attrition(flow.drop(columns="group").reset_index(drop=True), policy)
        shown.insert(0, "group", group)
        parts.append(shown)
    return pd.concat(parts, ignore_index=True) if parts else attrition


_RECORD_DETAIL = re.compile(r"\s*\(line \d+\)|\b\d{4}-\d{2}-\d{2}\b")


def _generic_reason(reason: str, cutoff: str) -> str:
    """A data-quality reason without one record's date or line (the data cut-off date stays)."""
    return _RECORD_DETAIL.sub(lambda m: m.group(0) if m.group(0) == cutoff else ("" if "line" in m.group(0) else "a date"), reason)


def disclose_quality(quality: pd.DataFrame, policy: Policy, cutoff: str = "") -> pd.DataFrame:
    """Data quality as counts per table, reason and action (no patient ids, dates or lines).

    Small counts are suppressed; within a table, never one alone (the exclusions from an endpoint
    add up to the cohort minus the endpoint's n)."""
    by = ["group"] if "group" in quality.columns else []
    columns = ["table", *by, "reason", "action", "records", "patients"]
    if quality.empty or "reason" not in quality:
        return pd.DataFrame(columns=columns)
    keep = quality[~quality["reason"].astype("string").str.startswith("excluded from the cohort").fillna(False)].copy()
    if keep.empty:
        return pd.DataFrame(columns=columns)
    keep["reason"] = [_generic_reason(str(r), cutoff) for r in keep["reason"]]
    grouped = keep.groupby(["table", *by, "reason", "action"], sort=False, dropna=False).agg(
        records=("reason", "size"), patients=("patient_id", "nunique")).reset_index()
    for column in ("records", "patients"):
        values = [int(v) for v in grouped[column]]
        shown = [policy.text(v) for v in values]
        units = list(zip(grouped["table"], *(grouped[b] for b in by), strict=True))  # a table (within a group)
        for unit in dict.fromkeys(units):
            members = [i for i, u in enumerate(units) if u == unit]
            hidden = [i for i in members if policy.small(values[i])]
            others = sorted((values[i], i) for i in members if i not in hidden and values[i])
            if len(hidden) == 1 and others:
                shown[others[0][1]] = SUPPRESSED
        grouped[column] = shown
    return grouped[columns]


_EXCLUDED_NOTE = re.compile(r"^(\d+) patient\(s\) excluded from this endpoint: (.*)\.$")


def _endpoint_note(note: str, endpoint: str, quality: pd.DataFrame, policy: Policy) -> str:
    """The engine's 'k patient(s) excluded' note, with the count the data-quality report releases."""
    match = _EXCLUDED_NOTE.match(note)
    if match is None or "group" in quality.columns:  # per group, the report's rows do not give the total
        return redact_text(note, policy)
    rows = quality[(quality["table"] == f"endpoint {endpoint}") & (quality["reason"] == f"excluded from endpoint: {match.group(2)}")]
    count = rows["patients"].iloc[0] if len(rows) else policy.text(int(match.group(1)))
    return f"{count} patient(s) excluded from this endpoint: {match.group(2)}."


# --------------------------------------------------------------------------- a whole run


def apply_disclosure(results: Results) -> Results:
    """A copy of ``results`` in which every output is disclosure-controlled (no-op when off)."""
    policy = Policy.of(results.spec.disclosure)
    if not policy.active:
        return results
    frame = disclose_frame(results.frame, results, policy)
    variants = []
    for variant in results.variants:
        block = frame[frame["variant"] == variant.name]
        cutoff = str(variant.spec.cohort.cutoff or "")
        quality = disclose_quality(as_frame(variant.quality), policy, cutoff)
        variants.append(dataclasses.replace(
            variant, frame=block.reset_index(drop=True), per_patient={},
            labels={key: redact_text(label, policy) for key, label in variant.labels.items()},
            notes={key: [_endpoint_note(n, key, quality, policy) for n in notes] for key, notes in variant.notes.items()},
            attrition=disclose_attrition(variant.attrition, policy),
            group_attrition=None if variant.group_attrition is None else disclose_group_attrition(variant.group_attrition, policy),
            group_sizes=dict(variant.group_sizes),
            quality=quality,
            failures=[{**f, "reason": redact_text(f["reason"], policy), "detail": ""} for f in variant.failures],
        ))
    provenance = dict(results.provenance)
    provenance["variants"] = [
        {**entry, "attrition": v.attrition.to_dict(orient="records"), "failures": [
            {k: x for k, x in f.items() if k != "detail"} for f in v.failures]}
        for entry, v in zip(results.provenance.get("variants", []), variants, strict=False)
    ]
    provenance["disclosure"] = {"min_count": policy.min_count, "round_to": policy.round_to,
                                "per_patient_files": "not written"}
    return dataclasses.replace(results, frame=frame, variants=variants, provenance=provenance, _what_moves=None)

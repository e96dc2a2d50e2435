"""Side by side: each endpoint's headline figures per variant, and what moves the answer.

A conclusion changes when a p-value crosses 0.05, an estimate changes sign, or the direction of a
before/after comparison (post vs pre, final vs baseline) flips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .render import Table

if TYPE_CHECKING:
    from .results import Results

PAIRS = (("pre", "post"), ("baseline", "final"))
ALPHA = 0.05


def headline_rows(results: Results) -> pd.DataFrame:
    """Results rows of each endpoint's headline measures (all measures when none are declared)."""
    spec = results.spec
    keep = []
    for endpoint in spec.endpoints:
        cls = results.plugins.endpoints.items[endpoint.plugin]
        block = results.frame[results.frame["endpoint"] == endpoint.id]
        headline = cls.headline_for(endpoint.params)
        measures = [m for m in headline if m in set(block["measure"])] or list(dict.fromkeys(block["measure"]))
        keep.append(block[block["measure"].isin(measures)])
    return pd.concat(keep, ignore_index=True) if keep else results.frame.iloc[0:0]


def _setting_text(results: Results, variant: str) -> str:
    settings = results.spec.variant_settings.get(variant, {})
    return ", ".join(f"{k}={v}" for k, v in settings.items()) if settings else ""


def _direction(estimates: dict[str, float]) -> float | None:
    """The sign of the before/after change of one variant's endpoint (and group), from its
    estimates by measure."""
    for before, after in PAIRS:
        if before in estimates and after in estimates and not (pd.isna(estimates[before]) or pd.isna(estimates[after])):
            return float(np.sign(estimates[after] - estimates[before]))
    return None


def _compared(row) -> float | None:
    """The number compared across variants: the p-value of a test row, else the estimate."""
    value = row["p_value"] if row["stat"] == "test" else row["estimate"]
    return None if pd.isna(value) else float(value)


def what_moves(results: Results) -> pd.DataFrame:
    """For every variant and headline measure: how far it moves from primary, and whether a
    conclusion changes. Test rows compare p-values, other rows estimates."""
    heads = headline_rows(results)
    by_variant = {name: rows.to_dict(orient="records") for name, rows in heads.groupby("variant", sort=False)}
    primary = {(row["endpoint"], row["measure"], row["group"]): row for row in by_variant.get("primary", [])}
    frame = results.frame
    estimates = {key: dict(zip(block["measure"], block["estimate"], strict=True))
                 for key, block in frame.groupby(["variant", "endpoint", "group"], sort=False)}
    directions = {}
    records = []
    for variant in results.variants[1:]:
        for row in by_variant.get(variant.name, []):
            key = (row["endpoint"], row["measure"], row["group"])
            base = primary.get(key)
            base_value = None if base is None else _compared(base)
            value = _compared(row)
            change = value - base_value if value is not None and base_value is not None else None
            relative = change / abs(base_value) if change is not None and base_value else None
            reasons = []
            if row["stat"] == "test" and base_value is not None and value is not None and (base_value < ALPHA) != (value < ALPHA):
                reasons.append(f"p crosses {ALPHA} ({base_value:.3g} -> {value:.3g})")
            if row["stat"] != "test" and value and base_value and np.sign(value) != np.sign(base_value):
                reasons.append("estimate changes sign")
            endpoint, group = row["endpoint"], row["group"]
            for name in ("primary", variant.name):
                if (name, endpoint, group) not in directions:
                    directions[(name, endpoint, group)] = _direction(estimates.get((name, endpoint, group), {}))
            before, after = directions[("primary", endpoint, group)], directions[(variant.name, endpoint, group)]
            if before is not None and after is not None and before != after:
                reasons.append("direction of the before/after change flips")
            records.append({
                "variant": variant.name, "setting": _setting_text(results, variant.name),
                "endpoint": endpoint, "measure": row["measure"], "group": row["group"],
                "compared": "p_value" if row["stat"] == "test" else "estimate",
                "primary_value": base_value, "variant_value": value, "change": change, "relative_change": relative,
                "primary_display": None if base is None else base["display"], "variant_display": row["display"],
                "conclusion_changed": bool(reasons), "why": "; ".join(reasons),
            })
    columns = ["variant", "setting", "endpoint", "measure", "group", "compared", "primary_value", "variant_value",
               "change", "relative_change", "primary_display", "variant_display", "conclusion_changed", "why"]
    return pd.DataFrame.from_records(records, columns=columns)


NO_GROUP = "\u2013"  # a group that a variant's grouping does not have
WIDE_MAX_VARIANTS = 4  # primary + 3: beyond that, variants become rows


def _measure_label(results: Results, endpoint: str, measure: str, group: str) -> str:
    labels = results.primary.labels
    title = {e.id: e.title for e in results.spec.endpoints}.get(endpoint, endpoint)
    label = results.spec.table.labels.get(f"{endpoint}.{measure}") or labels.get((endpoint, measure, group), measure)
    return f"{title}: {label}" + ("" if group == "all" else f" ({group})")


def side_by_side_table(results: Results) -> Table:
    """Headline rows per variant, then what moves the answer.

    Up to three variants besides primary: one column per variant, headed by its full name. More
    variants would need unreadable abbreviated columns, so each headline measure becomes a block
    of rows instead: primary, then each variant whose result differs (with its setting, and ``!``
    where a conclusion changes), then one row counting the variants that give the same result."""
    heads = headline_rows(results)
    names = [v.name for v in results.variants]
    blocks = list(heads.groupby(["endpoint", "measure", "group"], sort=False))
    failed = {(f["variant"], f["endpoint"]) for f in results.failures}

    def absent(variant: str, endpoint: str) -> str:
        """A missing cell: the endpoint failed, or the variant has no such group (another ``by``)."""
        return "failed" if (variant, endpoint) in failed else NO_GROUP
    notes = what_moves_notes(results)
    title = "Sensitivity analysis: headline figures per variant"
    if len(names) <= WIDE_MAX_VARIANTS:
        rows = []
        for (endpoint, measure, group), block in blocks:
            cells = block.set_index("variant")["display"]
            rows.append([_measure_label(results, endpoint, measure, group)] + [cells.get(name, absent(name, endpoint)) for name in names])
        legend = [f"{v.name}: {_setting_text(results, v.name)}" for v in results.variants[1:] if _setting_text(results, v.name)]
        return Table(title=title, headers=["Measure"] + names, rows=rows, footnotes=legend + notes)
    moves = results.what_moves()
    flagged = moves[moves["conclusion_changed"]] if not moves.empty else moves
    changed = set(zip(flagged["variant"], flagged["endpoint"], flagged["measure"], flagged["group"], strict=True))
    rows = []
    for (endpoint, measure, group), block in blocks:
        cells = block.set_index("variant")["display"]
        base = cells.get(names[0], absent(names[0], endpoint))
        rows.append([_measure_label(results, endpoint, measure, group), names[0], "", base, ""])
        same = 0
        for name in names[1:]:
            shown = cells.get(name, absent(name, endpoint))
            if shown == base:
                same += 1
                continue
            rows.append(["", name, _setting_text(results, name), shown, "!" if (name, endpoint, measure, group) in changed else ""])
        if same:
            rows.append(["", f"{same} other variant{'s' if same > 1 else ''}", "", "same as primary", ""])
    notes = ["Each variant is listed where its result differs from primary; ! = a conclusion changes (see below)."] + notes
    return Table(title=title, headers=["Measure", "Variant", "Setting", "Result", ""], rows=rows, footnotes=notes)


def _in(group: str) -> str:
    return "" if group == "all" else f" ({group})"


def what_moves_notes(results: Results) -> list[str]:
    """'What moves the answer': the largest move of each headline, and every changed conclusion."""
    moves = results.what_moves()
    notes = []
    if any(v.spec.by is not None or any(e.by for e in v.spec.endpoints) for v in results.variants):
        notes.append(f"Subgroups: a line per group (the group in brackets); {NO_GROUP} = the variant has no such group.")
    if not moves.empty:
        moved = moves.dropna(subset=["change"]).copy()
        moved["size"] = moved["change"].abs() / moved["primary_value"].abs().where(moved["primary_value"] != 0, 1.0)
        moved = moved[(moved["size"] > 1e-12) & (moved["compared"] == "estimate")]
        biggest = moved.sort_values("size", ascending=False, kind="stable").drop_duplicates(["endpoint", "measure", "group"])
        for row in biggest.itertuples(index=False):
            notes.append(f"What moves: {row.endpoint}.{row.measure}{_in(row.group)} moves most under '{row.variant}': "
                         f"{row.primary_display} -> {row.variant_display}")
        for row in moves[moves["conclusion_changed"]].itertuples(index=False):
            notes.append(f"CONCLUSION CHANGES under '{row.variant}' for {row.endpoint}.{row.measure}{_in(row.group)}: {row.why}")
        if not moves["conclusion_changed"].any():
            notes.append("No variant changes a conclusion (no p-value crosses 0.05, no estimate or direction flips).")
    for failure in results.failures:
        notes.append(f"FAILED in variant '{failure['variant']}': {failure['endpoint']}: {failure['reason']}")
    return notes


def render_side_by_side(results: Results, fmt: str) -> str:
    renderer = results.plugins.renderers.get(fmt, "--format")
    return renderer.render(side_by_side_table(results).one_line())

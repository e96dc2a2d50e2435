"""Side by side: each endpoint's headline figures per variant, and what moves the answer.

A conclusion changes when a p-value crosses 0.05, an estimate changes sign, or the direction of a
before/after comparison (post vs pre, final vs baseline) flips.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .render import Table

if TYPE_CHECKING:
    from .run import Results

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


def _direction(frame: pd.DataFrame, endpoint: str) -> float | None:
    block = frame[frame["endpoint"] == endpoint].set_index("measure")["estimate"]
    for before, after in PAIRS:
        if before in block and after in block and not (pd.isna(block[before]) or pd.isna(block[after])):
            return float(np.sign(block[after] - block[before]))
    return None


def what_moves(results: Results) -> pd.DataFrame:
    """For every variant and headline measure: how far the estimate moves from primary."""
    heads = headline_rows(results)
    primary = heads[heads["variant"] == "primary"].set_index(["endpoint", "measure", "group"])
    records = []
    for variant in results.variants[1:]:
        rows = heads[heads["variant"] == variant.name]
        for row in rows.itertuples(index=False):
            key = (row.endpoint, row.measure, row.group)
            base = primary.loc[key] if key in primary.index else None
            base_est = None if base is None or pd.isna(base["estimate"]) else float(base["estimate"])
            est = None if pd.isna(row.estimate) else float(row.estimate)
            change = est - base_est if est is not None and base_est is not None else None
            relative = change / abs(base_est) if change is not None and base_est not in (None, 0) else None
            reasons = []
            base_p = None if base is None or pd.isna(base["p_value"]) else float(base["p_value"])
            p = None if pd.isna(row.p_value) else float(row.p_value)
            if base_p is not None and p is not None and (base_p < ALPHA) != (p < ALPHA):
                reasons.append(f"p crosses {ALPHA} ({base_p:.3g} -> {p:.3g})")
            if row.stat != "test" and est is not None and base_est is not None and np.sign(est) != np.sign(base_est) and est != 0 and base_est != 0:
                reasons.append("estimate changes sign")
            records.append({
                "variant": variant.name, "setting": _setting_text(results, variant.name),
                "endpoint": row.endpoint, "measure": row.measure, "group": row.group,
                "primary_estimate": base_est, "variant_estimate": est, "change": change,
                "relative_change": relative, "primary_p": base_p, "variant_p": p,
                "primary_display": None if base is None else base["display"], "variant_display": row.display,
                "conclusion_changed": bool(reasons), "why": "; ".join(reasons),
            })
        for endpoint in {r.endpoint for r in rows.itertuples()}:
            before = _direction(results.frame[results.frame["variant"] == "primary"], endpoint)
            after = _direction(results.frame[results.frame["variant"] == variant.name], endpoint)
            if before is not None and after is not None and before != after:
                for record in records:
                    if record["variant"] == variant.name and record["endpoint"] == endpoint:
                        record["conclusion_changed"] = True
                        record["why"] = "; ".join(filter(None, [record["why"], "direction of change flips"]))
    columns = ["variant", "setting", "endpoint", "measure", "group", "primary_estimate", "variant_estimate", "change",
               "relative_change", "primary_p", "variant_p", "primary_display", "variant_display", "conclusion_changed", "why"]
    return pd.DataFrame.from_records(records, columns=columns)


def side_by_side_table(results: Results) -> Table:
    heads = headline_rows(results)
    names = [v.name for v in results.variants]
    labels = results.primary.labels
    rows = []
    for (endpoint, measure, group), block in heads.groupby(["endpoint", "measure", "group"], sort=False):
        cells = block.set_index("variant")["display"]
        label = labels.get((endpoint, measure, group), measure)
        rows.append([endpoint, label] + [cells.get(name, "failed") for name in names])
    moves = what_moves(results)
    notes = []
    if not moves.empty:
        moved = moves.dropna(subset=["relative_change"]).copy()
        moved["size"] = moved["relative_change"].abs()
        biggest = moved.sort_values("size", ascending=False, kind="stable").drop_duplicates(["endpoint", "measure"])
        for row in biggest.head(8).itertuples(index=False):
            if math.isclose(row.size, 0.0):
                continue
            notes.append(
                f"{row.endpoint}.{row.measure} moves most under '{row.variant}': {row.primary_display} -> "
                f"{row.variant_display} ({100 * row.relative_change:+.0f}%)"
            )
        for row in moves[moves["conclusion_changed"]].itertuples(index=False):
            notes.append(f"CONCLUSION CHANGES under '{row.variant}' for {row.endpoint}.{row.measure}: {row.why}")
        if not moves["conclusion_changed"].any():
            notes.append("No variant changes a conclusion (no p-value crosses 0.05, no estimate or direction flips).")
    failed = [f for f in results.failures]
    for failure in failed:
        notes.append(f"FAILED in variant '{failure['variant']}': {failure['endpoint']}: {failure['reason']}")
    settings = [f"{v.name}: {_setting_text(results, v.name)}" for v in results.variants[1:]]
    return Table(
        title="Sensitivity analysis: headline figures per variant",
        headers=["Endpoint", "Measure"] + names,
        rows=rows,
        footnotes=["What moves the answer:"] + notes + ["Variants: " + "; ".join(settings)] if settings else notes,
    )


def render_side_by_side(results: Results, fmt: str) -> str:
    renderer = results.plugins.renderers.get(fmt, "--format")
    return renderer.render(side_by_side_table(results))

"""Forest plot of one estimate with its interval across variants (matplotlib, an optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from .results import Results


def forest_plot(results: Results, path: Path, measure: str | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'endpointkit[plot]'") from None
    if path.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot: expected a .png or .svg file name, got {path.name}")
    frame = results.frame
    if measure is None:
        first = results.spec.endpoints[0]
        cls = results.plugins.endpoints.items[first.plugin]
        measure = f"{first.id}.{cls.headline[0] if cls.headline else frame[frame['endpoint'] == first.id]['measure'].iloc[0]}"
    endpoint, _, name = measure.partition(".")
    rows = frame[(frame["endpoint"] == endpoint) & (frame["measure"] == name)]
    if rows.empty:
        raise UsageError(f"--plot-measure: no results rows for '{measure}' (expected ID.MEASURE, e.g. arr.post)")
    rows = rows.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = range(len(rows))
    est = rows["estimate"].to_numpy(dtype=float)
    low = rows["low"].fillna(rows["estimate"]).to_numpy(dtype=float)
    high = rows["high"].fillna(rows["estimate"]).to_numpy(dtype=float)
    ax.errorbar(est, list(y), xerr=[est - low, high - est], fmt="o", color="black", capsize=3)
    primary = rows["variant"].to_numpy() == "primary"
    if primary.any():
        ax.axvline(est[primary][0], color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(list(y), rows["variant"].tolist())
    interval = rows["interval"].dropna().iloc[0] if rows["interval"].notna().any() else ""
    ax.set_xlabel(f"{measure} ({interval})" if interval else measure)
    ax.set_title(results.spec.study.title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

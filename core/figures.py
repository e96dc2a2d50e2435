"""Figures for a manuscript: Kaplan-Meier curves with the number at risk, the CONSORT-style
attrition diagram and the forest plot of a headline estimate across sensitivity variants.

Each figure is a function returning a matplotlib ``Figure`` that a plugin can reuse;
:func:`figure_files` renders all of a run's figures to PNG, SVG or PDF bytes for ``--figures DIR``
and the report. matplotlib is imported only when a figure is drawn (headless: the Agg backend).
Under disclosure control, numbers at risk and attrition counts are shown as released (``<5``,
rounded) and Kaplan-Meier curves carry no censoring marks.
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .disclosure import Policy
    from .results import Results
    from .stats import KaplanMeier

FORMATS = ("png", "svg", "pdf")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain(text) -> str:
    """Spec or data text as a figure label: no control characters, and no matplotlib mathtext."""
    return _CONTROL.sub("", str(text)).replace("$", r"\$")


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tick_step(horizon: float) -> float:
    for step in (3, 6, 12, 24, 60):
        if horizon / step <= 8:
            return step
    return 120


def km_figure(km: KaplanMeier, *, title: str, ylabel: str = "Survival probability", xlabel: str = "Months",
              policy: Policy | None = None) -> Figure:
    """Kaplan-Meier step curve with its 95% CI band, censoring marks and the number at risk under
    the x axis (the layout survminer and lifelines users know)."""
    plt = pyplot()
    fig, (ax, risk) = plt.subplots(2, 1, figsize=(7, 5.2), sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    horizon = float(km.times.max()) if km.times.size else 1.0
    x = np.concatenate([[0.0], km.sf_times])
    y = np.concatenate([[1.0], km.sf])
    low = np.concatenate([[1.0], np.nan_to_num(km.lower, nan=0.0)])
    high = np.concatenate([[1.0], np.nan_to_num(km.upper, nan=1.0)])
    x, y, low, high = (np.append(a, a[-1]) for a in (x, y, low, high))
    x[-1] = horizon
    ax.step(x, y, where="post", color="#1f4e79", linewidth=1.6, label="Kaplan-Meier estimate")
    ax.fill_between(x, low, high, step="post", color="#1f4e79", alpha=0.15, linewidth=0, label="95% CI (log-log)")
    censored = np.unique(km.times[~km.events])  # one mark per distinct time: a registry has thousands
    if censored.size and (policy is None or not policy.active):
        steps = np.searchsorted(km.sf_times, censored, side="right") - 1  # S(t) at each censoring time
        at = np.where(steps < 0, 1.0, km.sf[np.maximum(steps, 0)] if km.sf.size else 1.0)
        ax.plot(censored, at, linestyle="none", marker="|", markersize=8, color="#1f4e79", label="Censored")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(plain(ylabel))
    ax.set_title("\n".join(textwrap.wrap(plain(title), 70)), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    step = _tick_step(horizon)
    ticks = np.arange(0, horizon + 1e-9, step)
    risk.set_xticks(ticks)
    risk.set_xlim(-0.02 * horizon, horizon * 1.02)
    risk.set_ylim(0, 1)
    risk.set_yticks([])
    for spine in ("top", "right", "left", "bottom"):
        risk.spines[spine].set_visible(False)
    risk.tick_params(bottom=False, labelbottom=False)
    for t in ticks:
        n = km.at_risk(float(t))
        risk.text(t, 0.35, policy.text(n) if policy is not None else str(n), ha="center", va="center", fontsize=9)
    risk.set_title("Number at risk", fontsize=9, loc="left")
    ax.tick_params(labelbottom=True)
    ax.set_xlabel(xlabel)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.04, hspace=0.35)
    return fig


def consort_figure(attrition: pd.DataFrame, *, title: str = "Patient flow") -> Figure:
    """A CONSORT-style diagram: a box per step with the patients remaining, an arrow down, and the
    patients excluded at that step in a box on the side."""
    from matplotlib.patches import FancyBboxPatch

    plt = pyplot()
    steps = attrition.to_dict(orient="records")
    height = 1.3 * len(steps) + 0.6
    fig, ax = plt.subplots(figsize=(8, height))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.set_title(plain(title), fontsize=11)

    def box(cx: float, cy: float, text: str, width: float, fill: str) -> None:
        wrapped = "\n".join(line for part in text.split("\n") for line in textwrap.wrap(plain(part), int(width * 7)))
        ax.add_patch(FancyBboxPatch((cx - width / 2, cy - 0.38), width, 0.76, boxstyle="round,pad=0.04",
                                    facecolor=fill, edgecolor="#333333", linewidth=1))
        ax.text(cx, cy, wrapped, ha="center", va="center", fontsize=8.5)

    y = height - 0.7
    for i, step in enumerate(steps):
        label = "Patients in the data" if i == 0 else str(step["step"])
        box(3.2, y, f"{label}\nn = {step['remaining']}", 5.2, "#eef3f8")
        if i + 1 < len(steps):
            nxt = steps[i + 1]
            ax.annotate("", xy=(3.2, y - 0.92), xytext=(3.2, y - 0.4), arrowprops={"arrowstyle": "-|>", "color": "#333333"})
            ax.plot([3.2, 6.2], [y - 0.66, y - 0.66], color="#333333", linewidth=0.8)
            box(8.1, y - 0.66, f"Excluded: {nxt['excluded']}\nnot meeting: {nxt['step']}", 3.6, "#ffffff")
        y -= 1.3
    fig.tight_layout()
    return fig


def default_forest_measure(results: Results) -> str:
    """The first headline of the first outcome endpoint that is an estimate (not a test)."""
    classes = results.plugins.endpoints.items
    frame = results.frame
    for endpoint in results.spec.endpoints:
        cls = classes[endpoint.plugin]
        if getattr(cls, "kind", "outcome") == "descriptive":
            continue
        block = frame[(frame["endpoint"] == endpoint.id) & (frame["variant"] == "primary")]
        for measure in (*cls.headline_for(endpoint.params), *block["measure"]):
            rows = block[block["measure"] == measure]
            if len(rows) and rows["stat"].iloc[0] not in ("test", "count"):
                return f"{endpoint.id}.{measure}"
    raise UsageError("--plot-measure: no outcome estimate to plot (every headline is a test or a count)")


def forest_figure(results: Results, measure: str | None = None) -> Figure:
    """One estimate with its interval per variant: human labels, the full title, an
    "estimate (CI)" column, a log axis with a reference line at 1 for ratios."""
    from .results import is_ratio

    measure = measure or default_forest_measure(results)
    endpoint, _, name = measure.partition(".")
    frame = results.frame
    rows = frame[(frame["endpoint"] == endpoint) & (frame["measure"] == name)]
    if rows.empty:
        raise UsageError(f"--plot-measure: no results rows for '{measure}' (expected ID.MEASURE, e.g. arr.post)")
    if (rows["stat"] == "test").any():
        raise UsageError(f"--plot-measure: '{measure}' is a test: its estimate is a test statistic, not an effect; "
                         "choose an estimate such as the pre or post median")
    rows = rows[rows["estimate"].notna()]
    if rows.empty:
        raise UsageError(f"--plot-measure: '{measure}' has no estimate to plot (suppressed or not estimable)")
    ratio = is_ratio(str(rows["stat"].iloc[0]), name)
    proportion = rows["stat"].iloc[0] in ("proportion", "km")
    scale = 100.0 if proportion else 1.0
    est = rows["estimate"].to_numpy(float) * scale
    low = rows["low"].fillna(rows["estimate"]).to_numpy(float) * scale
    high = rows["high"].fillna(rows["estimate"]).to_numpy(float) * scale
    if rows["interval"].iloc[0] == "SD":  # low holds the SD: plot mean +- SD
        sd = rows["low"].fillna(0).to_numpy(float) * scale
        low, high = est - sd, est + sd
    plt = pyplot()
    count = len(rows)
    fig, ax = plt.subplots(figsize=(9, 0.42 * count + 1.9))
    y = np.arange(count)[::-1]
    ax.errorbar(est, y, xerr=[est - low, high - est], fmt="s", color="#1f4e79", ecolor="#1f4e79", capsize=3, markersize=5)
    labels = [("Primary analysis" if v == "primary" else plain(v)) for v in rows["variant"]]
    ax.set_yticks(y, labels, fontsize=9)
    if ratio:
        ax.set_xscale("log")
        ax.axvline(1.0, color="#555555", linewidth=1)
    primary = rows["variant"].to_numpy() == "primary"
    if primary.any():
        ax.axvline(est[primary][0], color="#999999", linestyle="--", linewidth=0.8)
    texts = [plain(d) for d in rows["display"]]
    for yi, text in zip(y, texts, strict=True):
        ax.annotate(text, xy=(1.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8.5)
    interval = rows["interval"].iloc[0]
    header = "Estimate" + (f" ({interval})" if interval in ("95% CI", "SD") else f" [{interval}]" if interval else "")
    ax.annotate(header, xy=(1.02, count - 0.45), xycoords=("axes fraction", "data"), fontsize=8.5, fontweight="bold")
    label = results.primary.labels.get((endpoint, name, "all"), name)
    title = {e.id: e.title for e in results.spec.endpoints}.get(endpoint, endpoint)
    unit = " (%)" if proportion else ""
    ax.set_xlabel(plain(f"{label}{unit}"), fontsize=9)
    ax.set_title("\n".join(textwrap.wrap(plain(f"{title}: {label} across sensitivity analyses"), 80)), fontsize=10.5)
    ax.set_ylim(-0.7, count - 0.3)
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.32, right=0.74, top=1 - 0.75 / fig.get_figheight(), bottom=0.6 / fig.get_figheight())
    return fig


def save(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG, SVG or PDF bytes (and closed)."""
    if fmt not in FORMATS:
        raise UsageError(f"--figure-format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    stream = io.BytesIO()
    fig.savefig(stream, format=fmt, dpi=150, metadata=_metadata(fmt), bbox_inches="tight", pad_inches=0.15)
    pyplot().close(fig)
    return stream.getvalue()


def curve_name(endpoint: str, title: str) -> str:
    slug = "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")
    return f"km_{endpoint}_{slug}" if slug else f"km_{endpoint}"


def figures(results: Results) -> dict[str, Figure]:
    """Every figure of a run by file stem: a KM curve per fit of the primary analysis, the
    attrition diagram, and the forest plot when the run has sensitivity variants."""
    from .disclosure import Policy

    policy = Policy.of(results.spec.disclosure)
    titles = {e.id: e.title for e in results.spec.endpoints}
    out: dict[str, Any] = {}
    for (endpoint, title), km in results.primary.curves.items():
        if km.times.size:
            out[curve_name(endpoint, title)] = km_figure(km, title=f"{titles.get(endpoint, endpoint)}: {title}",
                                                         ylabel=title, policy=policy if policy.active else None)
    out["consort"] = consort_figure(results.attrition, title=f"Patient flow: {results.spec.study.title}")
    if len(results.variants) > 1:
        with contextlib.suppress(UsageError):
            out["forest"] = forest_figure(results)
    return out


def figure_files(results: Results, formats: tuple[str, ...] = ("png",), dpi: int = 200) -> dict[str, bytes]:
    """Every figure rendered to bytes, by file name (``km_relapse_free_....png``, ``consort.pdf``);
    ``dpi`` sets the resolution of PNGs (200 for print, less for a screen)."""
    files = {}
    for stem, fig in figures(results).items():
        for fmt in formats:
            stream = io.BytesIO()
            fig.savefig(stream, format=fmt, dpi=dpi, metadata=_metadata(fmt), bbox_inches="tight", pad_inches=0.15)
            files[f"{stem}.{fmt}"] = stream.getvalue()
        pyplot().close(fig)
    return files


def _metadata(fmt: str) -> dict:
    """No timestamps in SVG/PDF, so a rerun writes identical files."""
    return {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})


def check_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--figure-format: expected png, svg or pdf (comma-separated), got {text!r}")
    return formats


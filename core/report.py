"""``report.html``: one self-contained file per run (inline CSS, figures as inline PNG, no script,
no external reference): the results table, every figure, the attrition flow, a data-quality
summary, the sensitivity analyses side by side with what moves, and the provenance.

Every piece of text from a spec or the data is escaped with ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from .spill import FrameParts, StoredFrame

if TYPE_CHECKING:
    from .render import Table
    from .results import Results

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#1b1b1b;line-height:1.4;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
.meta{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.group td{font-weight:600;background:#fafbfc;border-top:2px solid #ccc}
ol.notes{font-size:.8rem;color:#333;padding-left:1.4rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#444}
.moves{background:#fff8e1;padding:.5rem .8rem;border-left:4px solid #f0b400;font-size:.88rem}
pre{background:#f6f8fa;padding:.8rem;overflow:auto;font-size:.78rem;max-height:30rem}
"""


def _e(text) -> str:
    return html.escape("" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text))


def table_html(table: Table, grouped: bool = True) -> str:
    """A results table as HTML: the first column becomes a group row when it labels a block."""
    labelled = grouped and any(not row[0] for row in table.rows)
    headers = table.headers[1:] if labelled else table.headers
    parts = ["<table>", "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for row in table.rows:
        if labelled and row[0]:
            parts.append(f'<tr class="group"><td colspan="{len(headers)}">{_e(row[0])}</td></tr>')
        cells = row[1:] if labelled else row
        parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    if table.footnotes:
        parts.append('<ol class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in table.footnotes) + "</ol>")
    return "\n".join(parts)


def frame_html(frame: pd.DataFrame, limit: int = 200) -> str:
    """A small frame as an HTML table (numbers right-aligned); the first ``limit`` rows."""
    shown = frame.head(limit)
    parts = ["<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in shown.columns) + "</tr></thead><tbody>"]
    for record in shown.itertuples(index=False):
        cells = []
        for value in record:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            text = f"{value:.4g}" if isinstance(value, float) and not pd.isna(value) else _e(value)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    if len(frame) > limit:
        parts.append(f'<p class="meta">First {limit} of {len(frame)} rows.</p>')
    return "\n".join(parts)


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}"><figcaption>{_e(name)}</figcaption></figure>'


SUMMARY_ROWS = 1_000_000  # records counted at a time
_RECORD_DETAILS = ((r"\d{4}-\d{2}-\d{2}", "<date>"), (r"\(line \d+\)", "(line <n>)"))


def _quality_summary(quality: pd.DataFrame | StoredFrame | FrameParts) -> pd.DataFrame:
    """Data quality as counts per table, reason and action (the report never lists patients), in
    order of first appearance. A reason's dates and line numbers, which name one record, are
    replaced by ``<date>`` and ``(line <n>)``: a count per merged relapse would be a listing, not a
    summary (data_quality.csv has every record). Counted a million records at a time, part by
    part, so that a registry's report is never held twice."""
    columns = ["table", "reason", "action"]
    counts = []
    for frame in quality.slices() if isinstance(quality, StoredFrame | FrameParts) else [quality]:
        if "records" in frame:  # already a summary (disclosure control)
            return frame
        if frame.empty or "reason" not in frame:
            continue
        for start in range(0, len(frame), SUMMARY_ROWS):
            records = frame.iloc[start:start + SUMMARY_ROWS]
            reason = records["reason"].astype("str")
            for pattern, replacement in _RECORD_DETAILS:
                reason = reason.str.replace(pattern, replacement, regex=True)
            keys = pd.DataFrame({"table": records["table"].astype(object), "reason": reason.astype(object),
                                 "action": records["action"].astype(object)})
            counts.append(keys.groupby(columns, sort=False, dropna=False).size())
        del frame
    if not counts:
        return pd.DataFrame(columns=[*columns, "records"])
    total = pd.concat(counts).groupby(level=[0, 1, 2], sort=False, dropna=False).sum()
    return total.rename("records").reset_index()


def notebook_html(results: Results) -> str:
    """What a notebook shows for a Results object (no figures: ``results.figure(...)`` draws them)."""
    from .render import build_table
    from .sensitivity import side_by_side_table

    parts = [f'<div class="endpointkit"><h3>{_e(results.spec.study.title)}</h3>', table_html(build_table(results.primary)),
             "<details><summary>Attrition</summary>", frame_html(results.primary.attrition_table), "</details>"]
    if len(results.variants) > 1:
        parts += ["<details><summary>Sensitivity analyses</summary>", table_html(side_by_side_table(results)), "</details>"]
    return "\n".join(parts) + "</div>"


def report_figures(results: Results) -> dict[str, bytes]:
    """The report's figures: PNGs for a screen (small and quick to draw)."""
    from .figures import figure_files

    return figure_files(results, ("png",), dpi=90)


def report_html(results: Results, figures: dict[str, bytes] | Callable[[], dict[str, bytes]] | None = None) -> str:
    """The whole report as one HTML string. ``figures``: PNG bytes by name, or a function that
    gives them (called last, so that figures drawn elsewhere meanwhile are waited for last);
    drawn here when None."""
    from .render import build_table
    from .sensitivity import side_by_side_table, what_moves_notes

    spec = results.spec
    title = spec.study.title
    provenance = results.provenance
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Study {_e(spec.study.id)} &middot; endpointkit {_e(provenance.get("endpointkit"))} &middot; '
        f'spec sha256 {_e(str(provenance.get("spec", {}).get("sha256", ""))[:12])}</p>',
        "<h2>Results</h2>", table_html(build_table(results.primary)),
    ]
    figures_at = len(body)
    body += ["<h2>Patient flow (attrition)</h2>", frame_html(results.primary.attrition_table)]
    body += ["<h2>Data quality</h2>", frame_html(_quality_summary(results.primary.quality)),
             '<p class="meta">Records counted per table, reason and action, with the dates and line numbers of '
             "single records as &lt;date&gt; and &lt;n&gt;; data_quality.csv lists every record.</p>"]
    if len(results.variants) > 1:
        body += ["<h2>Sensitivity analyses</h2>", table_html(side_by_side_table(results))]
        moves = [n for n in what_moves_notes(results) if n.startswith(("What moves", "CONCLUSION", "No variant"))]
        if moves:
            body.append('<div class="moves">' + "<br>".join(_e(m) for m in moves) + "</div>")
    if results.failures:
        body.append("<h2>Failures</h2><ul>" + "".join(
            f"<li>{_e(f['endpoint'])} ({_e(f['variant'])}): {_e(f['reason'])}</li>" for f in results.failures) + "</ul>")
    # without the run's time and command line (in results.json): the same results give the same report
    stable = {key: value for key, value in provenance.items() if key != "run"}
    body += ["<h2>Provenance</h2>", f"<pre>{_e(json.dumps(stable, indent=2, default=str))}</pre>"]
    drawn = report_figures(results) if figures is None else figures() if callable(figures) else figures
    if drawn:
        body[figures_at:figures_at] = ["<h2>Figures</h2>", *(_figure_html(name.rsplit(".", 1)[0], data) for name, data in drawn.items())]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )

"""Writing a run's files atomically: everything is rendered in memory first, then each file is
written to a temporary name in the target folder and renamed into place."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import UsageError
from .results import Results


def check_writable(out_dir: Path, option: str = "-o") -> None:
    """Fail early (before any computation) when the output folder cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".endpointkit-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n", date_format="%Y-%m-%d")


def _clean_json(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        return _clean_json(value.item())
    return value


def render_files(results: Results, fmt: str) -> dict[str, str]:
    """Every output file's relative path and content."""
    renderer = results.plugins.renderers.get(fmt, "--format")
    files = {
        "results.csv": _csv(results.frame),
        f"table.{renderer.suffix}": results.table(fmt),
        "attrition.csv": _csv(results.attrition),
        "data_quality.csv": _csv(results.data_quality),
    }
    for endpoint_id, frame in results.per_patient.items():
        files[f"per_patient/{endpoint_id}.csv"] = _csv(frame)
    if len(results.variants) > 1:
        files[f"side_by_side.{renderer.suffix}"] = results.side_by_side(fmt)
        files["what_moves.csv"] = _csv(results.what_moves())
    records = results.frame.astype(object).where(results.frame.notna(), None).to_dict(orient="records")
    payload = {
        "results": records,
        "attrition": results.attrition.to_dict(orient="records"),
        "failures": [{k: v for k, v in f.items() if k != "detail"} for f in results.failures],
        "provenance": results.provenance,
    }
    files["results.json"] = json.dumps(_clean_json(payload), indent=2, default=str) + "\n"
    return files


def write_files(out_dir: Path, files: dict[str, str]) -> None:
    """Write each file to a temporary name beside its target, then rename into place."""
    staged: list[tuple[str, Path]] = []
    try:
        for relative, content in files.items():
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".endpointkit-", suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                stream.write(content)
            staged.append((temp, target))
        for temp, target in staged:
            os.replace(temp, target)
        staged = []
    finally:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)

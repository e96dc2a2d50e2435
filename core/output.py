"""Writing files atomically: every file goes to a temporary name in its folder and is renamed into
place only when all are written, so a failure or an interrupt leaves no partial output.

Frames (per-patient tables, the data-quality report, simulated registries) are written as CSV by
Arrow's C++ writer, several at a time: pandas' ``to_csv`` formats every float in Python and was the
slowest part of a 100,000-patient run. Dates print as YYYY-MM-DD, booleans as True/False, missing
values as empty fields; a value with a comma, quote or line break is quoted.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import UsageError
from .results import Results


def check_writable(out_dir: Path, option: str = "-o") -> None:
    """Fail early (before any computation) when the output folder cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: it is a file, expected a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".endpointkit-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")  # dates without a time print as YYYY-MM-DD


_BOOLEAN_TEXT = pa.array(["False", "True"])
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def _arrow_column(series: pd.Series) -> pa.Array:
    array = pa.Array.from_pandas(series)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_boolean(array.type):  # True/False as pandas writes them, not true/false
        return pa.DictionaryArray.from_arrays(pc.cast(array, pa.int8()), _BOOLEAN_TEXT)
    if pa.types.is_timestamp(array.type) and array.type.tz is None:
        midnight = pc.all(pc.equal(pc.floor_temporal(array, unit="day"), array)).as_py()
        if midnight is not False:  # dates without a time print as YYYY-MM-DD
            return pc.cast(array, pa.date32())
    return array


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    try:
        table = pa.table({str(name): _arrow_column(column) for name, column in frame.items()})
    except _ARROW_ERRORS:  # a column Arrow cannot type (mixed objects): pandas writes it
        with open(path, "w", encoding="utf-8", newline="") as stream:
            frame.to_csv(stream, index=False, lineterminator="\n")
        return
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(table.column_names)  # quoted only where needed
    with open(path, "wb") as stream:
        for quoting in ("none", "needed"):  # "needed" quotes all text: only when a value has a comma, quote or break
            stream.seek(0)
            stream.truncate()
            stream.write(header.getvalue().encode("utf-8"))
            try:
                pacsv.write_csv(table, stream, pacsv.WriteOptions(include_header=False, quoting_style=quoting))
                return
            except pa.ArrowInvalid:
                if quoting == "needed":
                    raise


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


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


def render_files(results: Results, fmt: str) -> dict[str, str | pd.DataFrame]:
    """Every output file's relative path and content (text, or a frame written as CSV)."""
    renderer = results.plugins.renderers.get(fmt, "--format")
    files: dict[str, str | pd.DataFrame] = {
        "results.csv": _csv(results.frame),
        f"table.{renderer.suffix}": results.table(fmt),
        "attrition.csv": _csv(results.attrition),
        "data_quality.csv": results.data_quality,
    }
    for endpoint_id, frame in results.per_patient.items():
        files[f"per_patient/{endpoint_id}.csv"] = frame
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


def write_files(out_dir: Path, files: dict[str, str | pd.DataFrame], option: str = "-o") -> list[Path]:
    """Write every file (text as is, frames as CSV) to a temporary name beside its target, then
    rename all into place; on any failure or interrupt, remove the temporary files."""
    staged: list[tuple[str, Path]] = []
    try:
        for relative in files:
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".endpointkit-", suffix=".tmp")
            os.close(handle)
            staged.append((temp, target))
        temps = dict(zip(files, (temp for temp, _ in staged), strict=True))
        frames = sorted((name for name, content in files.items() if isinstance(content, pd.DataFrame)),
                        key=lambda name: -files[name].size)  # largest first: the workers finish together
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            list(pool.map(lambda name: _write_csv(files[name], temps[name]), frames))
        for name, content in files.items():
            if not isinstance(content, pd.DataFrame):
                with open(temps[name], "w", encoding="utf-8", newline="") as stream:
                    stream.write(content)
        mode = _file_mode()
        for temp, target in staged:
            os.chmod(temp, mode)  # mkstemp makes 0600 files; give them the usual permissions
            os.replace(temp, target)
        written = [target for _, target in staged]
        staged = []
        return written
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None
    finally:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)

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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import UsageError
from .results import Results
from .spill import FrameParts, StoredFrame, as_frame, release_memory, stored_frame


def check_writable(out_dir: Path, option: str = "-o") -> None:
    """Fail early (before any computation) when the output folder cannot be written.

    Nothing is created: the folder itself, or its nearest existing parent, must be a writable folder.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: it is a file, expected a folder")
    existing = out_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {existing} is not writable")


def _csv(frame: pd.DataFrame) -> str:
    return neutralise_formulas(frame).to_csv(index=False, lineterminator="\n")  # dates without a time print as YYYY-MM-DD


_FORMULA_START = r"[=+\-@\t\r]"
# a number, optionally followed by a space and text with none of = | @ + (how endpointkit displays
# an estimate with its interval, "-0.3 [-0.5–0.1]"): spreadsheets do not run it as a formula
_NUMBER_LIKE = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?( [^=|@+]*)?"


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula get a leading apostrophe (CSV injection).

    As OWASP advises: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    (``=HYPERLINK(...)``, ``+cmd|...``) is written as ``'=HYPERLINK(...)``, which spreadsheets show as
    text. Numbers, and numbers followed by an interval (``-0.3 [-0.5–0.1]``), are left as they are.
    """
    changed = {}
    for name, column in frame.items():
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            continue
        try:
            text = column.str
            risky = text.match(_FORMULA_START, na=False)
        except (AttributeError, TypeError):  # not text (e.g. dates held as objects)
            continue
        if not risky.any():
            continue
        risky &= ~text.fullmatch(_NUMBER_LIKE, na=False)
        if risky.any():
            text = column.astype(object) if isinstance(column.dtype, pd.CategoricalDtype) else column
            changed[name] = text.where(~risky, "'" + column.astype("string"))
    return frame.assign(**changed) if changed else frame


_BOOLEAN_TEXT = pa.array(["False", "True"])
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def _arrow_column(series: pd.Series, as_date: bool | None = None) -> pa.Array:
    """A column as Arrow, written as pandas writes it. ``as_date``: whether a timestamp column prints
    as YYYY-MM-DD (every value at midnight), decided on the whole column when this is a slice of it."""
    array = pa.Array.from_pandas(series)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_boolean(array.type):  # True/False as pandas writes them, not true/false
        return pa.DictionaryArray.from_arrays(pc.cast(array, pa.int8()), _BOOLEAN_TEXT)
    if pa.types.is_timestamp(array.type) and array.type.tz is None:
        if as_date is None:
            as_date = pc.all(pc.equal(pc.floor_temporal(array, unit="day"), array)).as_py() is not False
        if as_date:  # dates without a time print as YYYY-MM-DD
            return pc.cast(array, pa.date32())
    return array


def _neutralise_arrow(array: pa.Array) -> pa.Array:
    """:func:`neutralise_formulas` for one Arrow column (the same rule, in Arrow's C++ kernels)."""
    if pa.types.is_dictionary(array.type):  # categories: neutralise the dictionary
        return pa.DictionaryArray.from_arrays(array.indices, _neutralise_arrow(array.dictionary))
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array
    risky = pc.match_substring_regex(array, "^" + _FORMULA_START)
    if not pc.any(risky).as_py():
        return array
    risky = pc.and_(risky, pc.invert(pc.match_substring_regex(array, f"^(?:{_NUMBER_LIKE})$")))
    quoted = pc.binary_join_element_wise(pa.scalar("'", array.type), array, pa.scalar("", array.type))
    return pc.if_else(pc.fill_null(risky, False), quoted, array)


SLICE_ROWS = 1_000_000  # a larger frame is converted to Arrow and written this many rows at a time


class _SliceTypesDiffer(Exception):
    """The slices of a frame convert to different Arrow types: it is written whole."""


class _NotArrow(Exception):
    """A column Arrow cannot type (mixed objects): pandas writes the frame."""


def _to_arrow(frame: pd.DataFrame, dates: dict[str, bool] | None = None) -> pa.Table:
    try:
        return pa.table({str(name): _neutralise_arrow(_arrow_column(column, (dates or {}).get(str(name))))
                         for name, column in frame.items()})
    except _ARROW_ERRORS as exc:
        raise _NotArrow from exc


def _dates(frame: pd.DataFrame) -> dict[str, bool]:
    """Which timestamp columns print as dates (every value at midnight), over the whole frame."""
    out = {}
    for name, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column) and getattr(column.dtype, "tz", None) is None:
            values = column.dropna()
            out[str(name)] = bool((values == values.dt.normalize()).all())
    return out


def _arrow_slices(frame: pd.DataFrame, dates: dict[str, bool] | None = None,
                  schema: pa.Schema | None = None) -> Iterator[pa.Table]:
    """A large frame as Arrow tables of SLICE_ROWS rows, each converted only when written, so that
    the frame is never held twice. Every slice must convert to the types of the first (or to
    ``schema``), and timestamps print as dates by the whole column (``dates``: decided over
    more than this frame): the text is that of the whole frame."""
    dates = _dates(frame) if dates is None else dates
    for start in range(0, max(len(frame), 1), SLICE_ROWS):
        table = _to_arrow(frame.iloc[start:start + SLICE_ROWS], dates)
        if any(pa.types.is_timestamp(f.type) and f.type.tz is None and f.name not in dates for f in table.schema):
            raise _SliceTypesDiffer  # text holding timestamps: whether they print as dates is decided whole
        if schema is None:
            schema = table.schema
        elif not table.schema.equals(schema):
            raise _SliceTypesDiffer
        yield table


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    """A frame as CSV text, as pandas writes it, through Arrow's writer (a frame of more than
    SLICE_ROWS rows slice by slice); a frame Arrow cannot type is written by pandas."""
    try:
        try:
            _write_arrow_csv(frame, path, sliced=len(frame) > SLICE_ROWS)
        except _SliceTypesDiffer:
            _write_arrow_csv(frame, path, sliced=False)
    except _NotArrow:
        with open(path, "w", encoding="utf-8", newline="") as stream:
            neutralise_formulas(frame).to_csv(stream, index=False, lineterminator="\n")


def _write_csv_pieces(pieces: Callable[[], Iterator[pd.DataFrame]], path: str, whole: Callable[[], pd.DataFrame]) -> None:
    """Frames one after another (the slices of a frame on disk, the parts of a report) as one CSV,
    each read only while it is written: the text of their concatenation. Whether a timestamp
    column prints as dates is decided over all of them first (a pass of its own, when there are
    timestamps). Pieces whose columns or Arrow types differ, or that Arrow cannot type, are
    joined (``whole``) and written as one frame."""
    try:
        _write_arrow_csv_pieces(pieces, path, _dates_over(pieces()))
    except (_SliceTypesDiffer, _NotArrow):
        _write_csv(whole(), path)


def _dates_over(pieces: Iterator[pd.DataFrame]) -> dict[str, bool]:
    """:func:`_dates` of the pieces' concatenation."""
    flags: dict[str, bool] | None = None
    for piece in pieces:
        mine = _dates(piece)
        flags = mine if flags is None else {name: flags[name] and mine.get(name, False) for name in flags}
        if not flags:
            break  # no timestamps (the pieces have the columns of the first): nothing to decide
    return flags or {}


def _write_arrow_csv_pieces(pieces: Callable[[], Iterator[pd.DataFrame]], path: str, dates: dict[str, bool]) -> None:
    with open(path, "wb") as stream:
        for quoting in ("none", "needed"):  # as _write_arrow_csv: every piece is written again when one needs quotes
            stream.seek(0)
            stream.truncate()
            columns, schema = None, None
            try:
                for frame in pieces():
                    if columns is None:
                        columns = list(frame.columns)
                        stream.write(_header(frame))
                    elif list(frame.columns) != columns:
                        raise _SliceTypesDiffer
                    for table in _arrow_slices(frame, dates, schema):
                        schema = table.schema
                        pacsv.write_csv(table, stream, pacsv.WriteOptions(include_header=False, quoting_style=quoting))
                    del frame
                return
            except pa.ArrowInvalid:
                if quoting == "needed":
                    raise


def _header(frame: pd.DataFrame) -> bytes:
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([str(name) for name in frame.columns])  # quoted only where needed
    return header.getvalue().encode("utf-8")


def _write_arrow_csv(frame: pd.DataFrame, path: str, sliced: bool) -> None:
    whole = None if sliced else _to_arrow(frame)
    with open(path, "wb") as stream:
        for quoting in ("none", "needed"):  # "needed" quotes all text: only when a value has a comma, quote or break
            stream.seek(0)
            stream.truncate()
            stream.write(_header(frame))
            try:
                for table in _arrow_slices(frame) if sliced else [whole]:
                    pacsv.write_csv(table, stream, pacsv.WriteOptions(include_header=False, quoting_style=quoting))
                return
            except pa.ArrowInvalid:
                if quoting == "needed":
                    raise


def file_mode() -> int:
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


def render_files(results: Results, fmt: str, *, excel_csv: bool = False,
                 figures: Callable[[], dict[str, bytes]] | None = None) -> dict[str, str | bytes | pd.DataFrame | dict]:
    """Every output file's relative path and content (text, bytes, or a frame written as CSV).

    ``excel_csv``: CSV files start with a UTF-8 byte-order mark, so Excel reads them as UTF-8.
    ``figures``: gives the report's figures (drawn elsewhere meanwhile); else they are drawn here."""
    renderer = results.plugins.renderers.get(fmt, "--format")
    render_results = getattr(renderer, "render_results", None)  # a renderer of the whole run (xlsx)
    files: dict[str, str | bytes | pd.DataFrame] = {
        "results.csv": _csv(results.frame),
        f"table.{renderer.suffix}": render_results(results) if render_results else results.table(fmt),
        "attrition.csv": _csv(results.primary.attrition_table),
        "data_quality.csv": results.primary.quality,  # on disk, if it is, until written
    }
    for endpoint_id in results.per_patient:  # frames on disk stay there until written, one at a time
        files[f"per_patient/{endpoint_id}.csv"] = stored_frame(results.per_patient, endpoint_id)
    if len(results.variants) > 1:
        files[f"side_by_side.{renderer.suffix}"] = results.side_by_side(fmt)
        files["what_moves.csv"] = _csv(results.what_moves())
    records = results.frame.astype(object).where(results.frame.notna(), None).to_dict(orient="records")
    payload = {
        "results": records,
        "attrition": results.attrition.to_dict(orient="records"),
        **({"attrition_by_group": results.primary.group_attrition.to_dict(orient="records")}
           if results.primary.group_attrition is not None else {}),
        "failures": [{k: v for k, v in f.items() if k != "detail"} for f in results.failures],
        "provenance": results.provenance,
    }
    # a dict: the output folder adds the list of files it wrote (see endpointkit.outdir) and writes it last
    files["results.json"] = json.loads(json.dumps(_clean_json(payload), default=str))
    from .report import report_html

    files["report.html"] = report_html(results, figures)
    if excel_csv:
        for name, content in files.items():
            if name.endswith(".csv"):
                files[name] = "\ufeff" + (_csv(as_frame(content)) if isinstance(content, pd.DataFrame | StoredFrame | FrameParts) else content)
    return files


def _write_contents(files: dict[str, str | bytes | pd.DataFrame | StoredFrame], paths: dict[str, str]) -> None:
    """Write each file to its path: frames in memory as CSV (several at a time, largest first),
    frames on disk one at a time (each loaded only while it is written), text as UTF-8, bytes as
    they are; every file gets the usual permissions."""
    def in_memory(content) -> bool:
        return isinstance(content, pd.DataFrame) or (isinstance(content, StoredFrame) and not content.spilled)

    frames = sorted((name for name, content in files.items() if in_memory(content)),
                    key=lambda name: -as_frame(files[name]).size)  # largest first: the workers finish together
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(lambda name: _write_csv(as_frame(files[name]), paths[name]), frames))
    for name, content in files.items():
        if isinstance(content, FrameParts) or (isinstance(content, StoredFrame) and content.spilled):
            _write_csv_pieces(content.slices, paths[name], content.load)
            release_memory(content.nbytes)
    mode = file_mode()
    for name, content in files.items():
        if isinstance(content, bytes):
            with open(paths[name], "wb") as stream:
                stream.write(content)
        elif not isinstance(content, pd.DataFrame | StoredFrame | FrameParts):
            with open(paths[name], "w", encoding="utf-8", newline="") as stream:
                stream.write(content)
        os.chmod(paths[name], mode)  # mkstemp makes 0600 files


def write_payloads(folder: Path, files: dict[str, str | bytes | pd.DataFrame]) -> None:
    """Write files into a private folder under their final names."""
    for relative in files:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
    _write_contents(files, {name: str(folder / name) for name in files})


def write_files(out_dir: Path, files: dict[str, str | bytes | pd.DataFrame], option: str = "-o") -> list[Path]:
    """Write every file (text, bytes, frames as CSV) to a temporary name beside its target, then
    rename all into place; on any failure or interrupt, remove the temporary files."""
    staged: list[tuple[str, Path]] = []
    try:
        for relative in files:
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".endpointkit-", suffix=".tmp")
            os.close(handle)
            staged.append((temp, target))
        _write_contents(files, dict(zip(files, (temp for temp, _ in staged), strict=True)))
        for temp, target in staged:
            os.replace(temp, target)
        written = [target for _, target in staged]
        staged = []
        return written
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None
    finally:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)

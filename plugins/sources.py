"""Data sources: the CSV folder (one ``<table>.csv`` per canonical table, or the files ``data.tables``
names), read with the spec's ``data.read`` options (delimiter, encoding)."""

from __future__ import annotations

import csv
import hashlib
import io
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from endpointkit import hookimpl
from endpointkit.data import LINE
from endpointkit.errors import DataError
from endpointkit.reading import DELIMITERS, Request

# Bounds checked before a table is parsed, so that a wrong file fails in seconds, not minutes.
MAX_HEADER_BYTES = 1 << 20  # 1 MiB
MAX_COLUMNS = 2_000  # extra columns are typed one by one: 2,000 take seconds


class CsvFolder:
    """A folder with one UTF-8 CSV file per table: ``patients.csv``, ``treatments.csv``, ..."""

    name = "csv"
    description = "A folder of CSV files, one per canonical table (patients.csv, ... or the names in data.tables)."

    def describe(self, table: str) -> str:
        return f"{table}.csv"

    def read_table(self, root: Path, table: str, request: Request | None = None) -> tuple[pd.DataFrame, str] | None:
        request = request or Request()
        if root.is_file():
            raise DataError("data", f"expected a folder of CSV files, got a file: {root}")
        path = root / (request.name or f"{table}.csv")
        if not path.exists():
            if request.name:
                raise DataError(table, f"file not found: {path} (named in data.tables.{table})")
            return None
        original = read_regular_file(path, table)
        raw = _as_utf8(original, table, path.name, request.options.encoding)
        if not raw.strip():
            raise DataError(table, f"{path.name} is empty; expected a header line with the column names")
        _check_line_endings(raw, table, path.name)
        sep = _delimiter(raw, request.options.delimiter)
        header = _header(raw, table, sep)
        frame = _read_arrow(raw, header, sep)
        if frame is None:  # something Arrow refuses (a ragged row, a line of spaces): pandas and a line scan
            frame = _read_pandas(raw, table, path.name, sep)
        lines = _simple_lines(raw, frame, sep)
        if lines is None:
            lines = _record_lines(raw, table, sep)
        frame.columns = [str(c).strip() for c in frame.columns]
        if len(lines) == len(frame) and LINE not in frame.columns:
            frame[LINE] = lines  # the file's own line numbers, blank lines and quoted line breaks counted
        return frame, hashlib.sha256(original).hexdigest()


def _as_utf8(raw: bytes, table: str, name: str, encoding: str) -> bytes:
    """The file as UTF-8 bytes; a byte the encoding cannot read is an error naming its line."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        hint = "save it as UTF-8" if encoding == "utf-8" else f"check data.read.encoding ({encoding})"
        what = "UTF-8 text" if encoding == "utf-8" else f"{encoding} text"
        raise DataError(table, f"{name} is not {what} (byte {exc.start}); {hint} or set data.read.encoding "
                               "(e.g. cp1252 for Windows exports)", line=line) from None
    return raw if encoding in ("utf-8", "ascii") else text.encode("utf-8")


def _delimiter(raw: bytes, wanted: str) -> str:
    """The delimiter: as set, or (``auto``) the candidate seen most often in the header line."""
    if wanted != "auto":
        return wanted
    start = len(raw) - len(raw.lstrip())
    end = raw.find(b"\n", start)
    header = raw[start:end if end >= 0 else len(raw)]
    counts = {sep: header.count(sep.encode()) for sep in DELIMITERS}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def read_regular_file(path: Path, table: str) -> bytes:
    """The bytes of a regular file whose header line is bounded: a device (``/dev/zero``), a pipe or
    a folder is refused before any read, and a first line longer than ``MAX_HEADER_BYTES`` (one line
    of a gigabyte, say) after reading only that much."""
    try:
        info = path.stat()  # follows a symlink: its target is what would be read
    except OSError as exc:
        raise DataError(table, f"cannot read {path.name}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(table, f"{path.name} is not a regular file (a device, pipe, socket or folder); expected a CSV file")
    try:
        with path.open("rb") as handle:
            head = handle.read(MAX_HEADER_BYTES)
            body = head.lstrip()
            if len(head) == MAX_HEADER_BYTES and b"\n" not in body and b"\r" not in body:
                raise DataError(table, f"{path.name}: the header line is longer than {MAX_HEADER_BYTES // 1024} KiB; "
                                       "expected a header line with the column names, one record per line", line=1)
            return head + handle.read()
    except OSError as exc:
        raise DataError(table, f"cannot read {path.name}: {exc.strerror}") from None


def _check_line_endings(raw: bytes, table: str, name: str) -> None:
    """A carriage return not followed by a line feed is refused: as every line end (old Mac line
    endings), or as a stray one in a file without quotes (where it could only split a record; inside
    a quoted value the CSV scan accepts it)."""
    if b"\r" not in raw or raw.count(b"\r") == raw.count(b"\r\n"):
        return
    data = np.frombuffer(raw, dtype=np.uint8)
    returns = np.flatnonzero(data == ord("\r"))
    following = np.append(data, np.uint8(0))[returns + 1]
    bare = int(returns[following != ord("\n")][0])
    if b"\n" not in raw[:bare]:
        raise DataError(table, f"{name} ends its lines with a carriage return only (old Mac line endings); "
                               "expected LF or CRLF line endings: save it again as CSV (UTF-8)", line=1)
    if b'"' not in raw:
        raise DataError(table, _STRAY_RETURN, line=raw.count(b"\n", 0, bare) + 1)


_STRAY_RETURN = "a line break (carriage return) inside an unquoted value; expected one record per line, LF or CRLF line endings"


def _header(raw: bytes, table: str, sep: str = ",") -> list[str]:
    """The header's column names (first non-blank line), each named once."""
    for number, line in enumerate(io.BytesIO(raw), start=1):  # line by line: no copy of the file
        if line.strip():
            names = next(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")], delimiter=sep))
            _check_header(names, table, number)
            return names
    return []


def _read_arrow(raw: bytes, header: list[str], sep: str = ",") -> pd.DataFrame | None:
    """Every column as text, read by Arrow (multi-threaded C++) and handed over in dictionary form
    (a pandas Categorical: each distinct text once plus a code per row), which is what the typing
    in core/data.py works on. None when Arrow cannot read the file as a clean table."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(raw),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=b'"' in raw),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True, null_values=[""],
            ),
        )
    except pa.ArrowInvalid:
        return None
    if not all(pa.types.is_string(column.type) for column in table.columns):  # a header we did not parse as Arrow did
        return None
    return pd.DataFrame({name.lstrip(" "): _categorical(table.column(i)) for i, name in enumerate(table.column_names)})


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A text column as a Categorical; leading spaces dropped and blank text missing, as pandas'
    ``skipinitialspace`` reading does."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if not pc.any(pc.starts_with(encoded.dictionary, " ")).as_py():  # usual: nothing to trim, texts distinct
        return pd.Categorical.from_codes(codes, categories=pd.Index(pd.array(encoded.dictionary, dtype="str")))
    texts = pc.utf8_ltrim(encoded.dictionary, characters=" ").to_numpy(zero_copy_only=False).astype(object)
    remap, categories = pd.factorize(pd.Series(texts, dtype=object).replace("", None), use_na_sentinel=True)
    codes = np.append(remap, -1)[codes]
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="str"))


def _read_pandas(raw: bytes, table: str, name: str, sep: str = ",") -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
            skipinitialspace=True, sep=sep,
        )
    except pd.errors.ParserError as exc:
        _record_lines(raw, table, sep)  # names the first ragged row and its line, if that is the cause
        raise DataError(table, f"cannot read {name}: {exc}") from None


def _check_header(header: list[str], table: str, line: int) -> None:
    if len(header) > MAX_COLUMNS:
        raise DataError(table, f"the header has {len(header):,} columns; expected at most {MAX_COLUMNS:,}", line=line)
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataError(table, f"column '{name}' appears twice in the header; expected unique column names", line=line)
        seen.add(name)


_VISIBLE = np.ones(256, dtype=bool)
_VISIBLE[list(b" \t\r\n")] = False


def _simple_lines(raw: bytes, frame: pd.DataFrame, sep: str = ",") -> np.ndarray | None:
    """Line numbers without a scan, when they follow from counts alone: no quotes, no blank lines
    (as many line breaks as records) and as many commas as a full header's worth on every line.

    pandas and Arrow refuse rows with too many fields, so with the total right no row can have too
    few. Returns None when any of this does not hold; the full scan then finds the lines (and the
    error). The header's names were checked by ``_header``.
    """
    end = len(raw)
    while end and raw[end - 1] in b"\r\n":  # trailing line breaks, counted without copying the file
        end -= 1
    first_break = raw.find(b"\n", 0, end)
    header = raw[:end] if first_break < 0 else raw[:first_break]
    if raw.find(b'"', 0, end) >= 0 or not header.strip() or not isinstance(frame.index, pd.RangeIndex):
        return None
    mark = sep.encode()
    fields = header.count(mark) + 1
    if len(frame.columns) != fields or raw.count(b"\n", 0, end) != len(frame):
        return None
    if raw.count(mark, 0, end) != (len(frame) + 1) * (fields - 1):
        return None
    return np.arange(2, len(frame) + 2, dtype=np.int64)


def _record_lines(raw: bytes, table: str, sep: str = ",") -> np.ndarray:
    """The line number where each record starts, checking that every row has as many fields as the
    header (pandas pads short rows silently) and that the header names each column once."""
    body = raw.replace(b"\r\n", b"\n").rstrip(b"\n")
    if b'"' in body:
        reader = csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=sep)
        width, starts, line = None, [], 1
        for row in _rows(reader, table):
            start, line = line, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if width is None:
                width = len(row)
                _check_header(row, table, start)
            elif len(row) != width:
                raise DataError(table, f"expected {width} fields as in the header, found {len(row)}", line=start)
            else:
                starts.append(start)
        return np.asarray(starts, dtype=np.int64)
    data = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    ends = np.append(newlines, data.size)
    starts = np.concatenate(([0], newlines + 1))  # every line holds at least its newline byte
    counts = np.add.reduceat((data == ord(sep)).view(np.uint8), starts, dtype=np.int64)
    visible = np.add.reduceat(_VISIBLE[data].view(np.uint8), starts, dtype=np.int64)
    blank = (visible == 0) & (counts == 0)
    filled = np.flatnonzero(~blank)
    if filled.size == 0:
        return np.zeros(0, dtype=np.int64)
    header = filled[0]
    first = 0 if header == 0 else newlines[header - 1] + 1
    header_text = body[first:ends[header]].decode("utf-8-sig")
    _check_header(header_text.split(sep), table, int(header) + 1)
    bad = np.flatnonzero((counts != counts[header]) & ~blank)
    if bad.size:
        line = int(bad[0]) + 1
        raise DataError(table, f"expected {counts[header] + 1} fields as in the header, found {counts[bad[0]] + 1}", line=line)
    return filled[1:].astype(np.int64) + 1


def _rows(reader, table: str):
    """The csv reader's rows, its errors (a bare carriage return in a field) as DataErrors."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            raise DataError(table, _STRAY_RETURN, line=reader.line_num) from None
        yield row


@hookimpl
def register_sources():
    return [CsvFolder()]

"""Data sources: the CSV folder (one ``<table>.csv`` per canonical table)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from endpointkit import hookimpl
from endpointkit.data import LINE
from endpointkit.errors import DataError


class CsvFolder:
    """A folder with one UTF-8 CSV file per table: ``patients.csv``, ``treatments.csv``, ..."""

    name = "csv"
    description = "A folder of UTF-8 CSV files, one per canonical table (patients.csv, ...)."

    def describe(self, table: str) -> str:
        return f"{table}.csv"

    def read_table(self, root: Path, table: str) -> tuple[pd.DataFrame, str] | None:
        if root.is_file():
            raise DataError("data", f"expected a folder of CSV files, got a file: {root}")
        path = root / f"{table}.csv"
        if not path.exists():
            return None
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DataError(table, f"{path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8", line=line) from None
        if not raw.strip():
            raise DataError(table, f"{path.name} is empty; expected a header line with the column names")
        lines = _record_lines(raw, table)
        try:
            frame = pd.read_csv(
                io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
                skipinitialspace=True,
            )
        except pd.errors.ParserError as exc:
            raise DataError(table, f"cannot read {path.name}: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        if len(lines) == len(frame) and LINE not in frame.columns:
            frame[LINE] = lines  # the file's own line numbers, blank lines and quoted line breaks counted
        return frame, hashlib.sha256(raw).hexdigest()


def _check_header(header: list[str], table: str, line: int) -> None:
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataError(table, f"column '{name}' appears twice in the header; expected unique column names", line=line)
        seen.add(name)


_VISIBLE = np.ones(256, dtype=bool)
_VISIBLE[list(b" \t\r\n")] = False


def _record_lines(raw: bytes, table: str) -> np.ndarray:
    """The line number where each record starts, checking that every row has as many fields as the
    header (pandas pads short rows silently) and that the header names each column once."""
    body = raw.replace(b"\r\n", b"\n").rstrip(b"\n")
    if b'"' in body:
        import csv

        reader = csv.reader(io.StringIO(body.decode("utf-8-sig")))
        width, starts, line = None, [], 1
        for row in reader:
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
    counts = np.add.reduceat((data == ord(",")).view(np.uint8), starts, dtype=np.int64)
    visible = np.add.reduceat(_VISIBLE[data].view(np.uint8), starts, dtype=np.int64)
    blank = (visible == 0) & (counts == 0)
    filled = np.flatnonzero(~blank)
    if filled.size == 0:
        return np.zeros(0, dtype=np.int64)
    header = filled[0]
    first = 0 if header == 0 else newlines[header - 1] + 1
    header_text = body[first:ends[header]].decode("utf-8-sig")
    _check_header(header_text.split(","), table, int(header) + 1)
    bad = np.flatnonzero((counts != counts[header]) & ~blank)
    if bad.size:
        line = int(bad[0]) + 1
        raise DataError(table, f"expected {counts[header] + 1} fields as in the header, found {counts[bad[0]] + 1}", line=line)
    return filled[1:].astype(np.int64) + 1


@hookimpl
def register_sources():
    return [CsvFolder()]

"""Data sources: the CSV folder (one ``<table>.csv`` per canonical table)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from endpointkit import hookimpl
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
        _check_ragged(raw, table)
        try:
            frame = pd.read_csv(
                io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
                skipinitialspace=True,
            )
        except pd.errors.ParserError as exc:
            raise DataError(table, f"cannot read {path.name}: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame, hashlib.sha256(raw).hexdigest()


def _check_ragged(raw: bytes, table: str) -> None:
    """Every row must have as many fields as the header (pandas pads short rows silently)."""
    body = raw.replace(b"\r\n", b"\n").rstrip(b"\n")
    if b'"' in body:
        import csv

        rows = csv.reader(io.StringIO(body.decode("utf-8-sig")))
        width = None
        for number, row in enumerate(rows, start=1):
            if width is None:
                width = len(row)
            elif row and len(row) != width:
                raise DataError(table, f"expected {width} fields as in the header, found {len(row)}", line=number)
        return
    data = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    commas_before = np.cumsum(data == ord(","))
    ends = np.append(newlines, data.size)
    counts = np.diff(np.concatenate(([0], commas_before[ends - 1])))
    lengths = np.diff(np.concatenate(([-1], ends)))
    blank = lengths <= 1
    bad = np.flatnonzero((counts != counts[0]) & ~blank)
    if bad.size:
        line = int(bad[0]) + 1
        raise DataError(table, f"expected {counts[0] + 1} fields as in the header, found {counts[bad[0]] + 1}", line=line)


@hookimpl
def register_sources():
    return [CsvFolder()]

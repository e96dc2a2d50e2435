"""A registry written once as a hash-partitioned Parquet dataset, read whole or one partition at a time.

``endpointkit partition`` reads every table through the spec's source and writes, per table, one
Parquet file per partition of the patients (``DIR/<table>/part-00003.parquet``) and a manifest
(``DIR/endpointkit-partitions.json``). The files hold each table as the source handed it over (raw:
before the spec's column mapping, recoding and typing), with each record's original line or row
number and the table's origin, so that reading the dataset types and validates it exactly as reading
the original would, and an error still names the original file and line. A record falls in its
patient's partition: the partition is a function of the patient id alone (:func:`partition_of` on
the id as the typing layer normalises it), so a treatment, relapse or EDSS record is always in the
same file as its patient.

A map task asked for partition ``k`` of ``M`` reads the files ``j`` with ``j % M == k``: with
``M = N`` (the natural choice) one file per table, with fewer a union of them. ``M > N`` is refused
(it would leave tasks without patients). The manifest keeps the original tables' checksums, so a
run's provenance does not depend on how the data was partitioned or read.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import numbers
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import (
    ALWAYS_REQUIRED,
    LINE,
    ORIGIN,
    TABLES,
    UNIT,
    DataReading,
    Distinct,
    _described,
    _reader,
    patients_first,
)
from .errors import DataError, UsageError
from .partitioning import PARTITION_FILES, record_partitions

MANIFEST = "endpointkit-partitions.json"
FORMAT = "endpointkit-partitions"
VERSION = 1
HASH = ("siphash-2-4 with pandas' fixed key (pandas.util.hash_array) of the patient id as text "
        "(as the typing layer normalises it), modulo the number of partitions")
MAX_PARTITIONS = 4096
KINDS = ("categorical", "object", "native")  # how a raw column is stored: dictionary text, tagged values, as is


def is_partitioned(path: Path | None) -> bool:
    """Whether ``path`` is a folder written by ``endpointkit partition`` (it holds the manifest)."""
    return path is not None and (Path(path) / MANIFEST).is_file()


def part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


@dataclass(frozen=True)
class Manifest:
    """What ``endpointkit-partitions.json`` says: the partitions, and per table its row counts, the
    original table's checksum, origin and columns, and each partition file's rows and checksum."""

    root: Path
    partitions: int
    source: str
    tables: dict[str, dict[str, Any]]

    def file(self, table: str, part: int) -> Path:
        return self.root / table / part_name(part)

    def parts_for(self, part: int, parts: int) -> list[int]:
        """The files task ``part`` of ``parts`` reads: those ``j`` with ``j % parts == part``."""
        if parts > self.partitions:
            raise UsageError(
                f"--partitions {parts}: the dataset {self.root} was written with {self.partitions} partition(s); "
                f"run it with --partitions {self.partitions} (one task per partition file) or fewer, or write it "
                f"again with endpointkit partition --partitions {parts}")
        return list(range(part, self.partitions, parts))


def _bad_manifest(root: Path, why: str) -> DataError:
    return DataError("data", f"{root / MANIFEST}: {why}; write the dataset again with endpointkit partition")


_MANIFESTS: dict[tuple, Manifest] = {}  # read once per task, not once per table (keyed by the file's stat)


def read_manifest(root: Path) -> Manifest:
    """The dataset's manifest, checked for what a reader relies on."""
    root = Path(root)
    try:
        info = (root / MANIFEST).stat()
        key = (str(root.resolve()), info.st_mtime_ns, info.st_size, info.st_ino)
        if key in _MANIFESTS:
            return _MANIFESTS[key]
        raw = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_manifest(root, f"cannot read the manifest ({exc})") from None
    manifest = _checked_manifest(root, raw)
    if len(_MANIFESTS) > 16:
        _MANIFESTS.clear()
    _MANIFESTS[key] = manifest
    return manifest


def _checked_manifest(root: Path, raw: Any) -> Manifest:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _bad_manifest(root, f"not a manifest of endpointkit partition (expected \"format\": \"{FORMAT}\")")
    if raw.get("version") != VERSION:
        raise _bad_manifest(root, f"manifest version {raw.get('version')!r}; this endpointkit reads version {VERSION}")
    partitions = raw.get("partitions")
    if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= MAX_PARTITIONS:
        raise _bad_manifest(root, f"expected \"partitions\" a number from 1 to {MAX_PARTITIONS}, got {partitions!r}")
    tables = raw.get("tables")
    if not isinstance(tables, dict) or "patients" not in tables:
        raise _bad_manifest(root, "expected \"tables\" with at least patients")
    for name, entry in tables.items():
        if name not in TABLES:
            raise _bad_manifest(root, f"unknown table '{name}'")
        if not isinstance(entry, dict) or not _counted(entry) or not all(
                isinstance(entry.get(key), str) for key in ("sha256", "origin", "unit")):
            raise _bad_manifest(root, f"tables.{name}: expected rows, sha256, origin, unit, columns and parts")
        parts, columns = entry.get("parts"), entry.get("columns")
        if not isinstance(parts, list) or len(parts) != partitions or not all(_counted(p) for p in parts):
            raise _bad_manifest(root, f"tables.{name}.parts: expected one entry (rows, sha256) per partition ({partitions})")
        if not isinstance(columns, dict) or LINE not in columns or not all(kind in KINDS for kind in columns.values()):
            raise _bad_manifest(root, f"tables.{name}.columns: expected column -> one of {', '.join(KINDS)}, with {LINE}")
        if sum(p["rows"] for p in parts) != entry["rows"]:
            raise _bad_manifest(root, f"tables.{name}: the partitions' rows do not add up to the table's rows")
    return Manifest(root=root, partitions=partitions, source=str(raw.get("source", "")), tables=tables)


def _counted(entry: Any) -> bool:
    """A mapping with a row count (a whole number >= 0) and, for a partition file, its checksum."""
    rows = entry.get("rows") if isinstance(entry, dict) else None
    return isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 and isinstance(entry.get("sha256"), str)


# --------------------------------------------------------------------------- raw values <-> Parquet


def _tag(value: object) -> str:
    """A raw cell of a mixed column (a workbook's) as text that restores the same Python value."""
    if isinstance(value, bool | np.bool_):
        return "b:1" if value else "b:0"
    if isinstance(value, numbers.Integral):
        return f"i:{int(value)}"
    if isinstance(value, float | np.floating):
        return f"f:{float(value)!r}"
    if isinstance(value, decimal.Decimal):
        return f"n:{value}"
    if isinstance(value, pd.Timestamp):
        return f"P:{value.isoformat()}"
    if isinstance(value, dt.datetime):
        return f"T:{value.isoformat()}"
    if isinstance(value, dt.date):
        return f"D:{value.isoformat()}"
    if isinstance(value, dt.time):
        return f"t:{value.isoformat()}"
    return f"s:{value}"


_UNTAG = {
    "b": lambda t: t == "1", "i": int, "f": float, "n": decimal.Decimal, "P": pd.Timestamp,
    "T": dt.datetime.fromisoformat, "D": dt.date.fromisoformat, "t": dt.time.fromisoformat, "s": str,
}


def _untag(text: str) -> object:
    return _UNTAG[text[0]](text[2:])


def _encode_objects(series: pd.Series):
    """A column of mixed Python values as tagged text, through its distinct (type, value) pairs."""
    import pyarrow as pa

    values = series.to_numpy(dtype=object)
    kinds, _ = pd.factorize(pd.Series(values).map(type, na_action="ignore"), use_na_sentinel=True)
    codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
    pair_codes, pairs = pd.factorize(pd.Series(codes.astype(np.int64) * (kinds.max(initial=0) + 1) + kinds), use_na_sentinel=True)
    first = np.full(len(pairs), -1, dtype=np.int64)
    first[pair_codes[::-1]] = np.arange(len(values))[::-1]  # a row holding each pair (the first one)
    texts = np.array([_tag(values[i]) if codes[i] >= 0 else None for i in first], dtype=object)
    return pa.array(np.append(texts, None)[np.where(codes >= 0, pair_codes, -1)], type=pa.string())


def _decode_objects(column) -> pd.Series:
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
    texts = encoded.dictionary.to_pylist()
    decoded = np.array([_untag(t) for t in texts] + [None], dtype=object)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return pd.Series(decoded[codes], dtype=object)


def _kind(series: pd.Series) -> str:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "categorical"
    if series.dtype == object:
        return "object"
    return "native"


def _to_arrow(frame: pd.DataFrame, kinds: dict[str, str]):
    """The raw frame as an Arrow table: text as dictionary text, mixed columns tagged, the rest as
    pandas would store them (its dtypes recorded in the schema's pandas metadata)."""
    import pyarrow as pa

    plain = frame.copy(deep=False)
    for column, kind in kinds.items():
        if kind == "categorical":
            plain[column] = plain[column].cat.set_categories(plain[column].cat.categories.astype(str))
        elif kind == "object":
            plain[column] = pd.Series(_encode_objects(frame[column]).to_pandas(), index=frame.index, dtype="str")
    return pa.Table.from_pandas(plain, preserve_index=False)


def _from_arrow(table, kinds: dict[str, str]) -> pd.DataFrame:
    """The raw frame back: text as the CSV source hands it over (a Categorical), mixed columns as
    their Python values, the rest in their pandas dtype."""
    import pyarrow as pa

    from endpointkit.plugins.sources import _categorical

    special = [c for c, kind in kinds.items() if kind != "native"]
    native = table.drop_columns(special).to_pandas() if len(special) < table.num_columns else pd.DataFrame(index=range(table.num_rows))
    columns = {}
    for column, kind in kinds.items():
        if kind == "categorical":
            columns[column] = _categorical(table.column(column).cast(pa.string()))
        elif kind == "object":
            columns[column] = _decode_objects(table.column(column))
        else:
            columns[column] = native[column].reset_index(drop=True)
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def _read_file(manifest: Manifest, table: str, part: int):
    """One partition file, checked against the manifest (present, unchanged)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = manifest.file(table, part)
    entry = manifest.tables[table]["parts"][part]
    where = f"{table}/{part_name(part)}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(table, f"partition file missing: {where} in {manifest.root} (the manifest lists "
                               f"{manifest.partitions} partitions); write the dataset again with endpointkit partition") from None
    except OSError as exc:
        raise DataError(table, f"cannot read {where}: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise DataError(table, f"{where} in {manifest.root} does not match the manifest (changed or damaged after "
                               "it was written); write the dataset again with endpointkit partition")
    try:
        arrow = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(table, f"{where} is not a Parquet file: {exc}") from None
    expected = list(manifest.tables[table]["columns"])
    if arrow.num_rows != entry.get("rows") or arrow.column_names != expected:
        raise DataError(table, f"{where} in {manifest.root} does not match the manifest (its rows or columns); "
                               "write the dataset again with endpointkit partition")
    return arrow


def _read_files(manifest: Manifest, table: str, files: list[int]) -> pd.DataFrame:
    """These partition files of a table as one raw frame, records in their original order."""
    import pyarrow as pa

    entry = manifest.tables[table]
    arrow = pa.concat_tables([_read_file(manifest, table, j) for j in files]) if files else None
    if arrow is None:  # no file: an empty frame with the table's columns
        arrow = _read_file(manifest, table, 0).slice(0, 0)
    lines = arrow.column(LINE).to_numpy()
    order = np.argsort(lines, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        arrow = arrow.take(pa.array(order))
    frame = _from_arrow(arrow, entry["columns"])
    frame.attrs[ORIGIN] = entry["origin"]
    frame.attrs[UNIT] = entry.get("unit", "row")
    return frame


def read_whole(root: Path, table: str) -> tuple[pd.DataFrame, str] | None:
    """A table of the dataset, all partitions, as the original source handed it over, with the
    original table's checksum; None when the dataset has no such table."""
    manifest = read_manifest(root)
    if table not in manifest.tables:
        return None
    return _read_files(manifest, table, list(range(manifest.partitions))), manifest.tables[table]["sha256"]


def read_part(root: Path, table: str, part: int, parts: int) -> tuple[pd.DataFrame, str] | None:
    """Partition ``part`` of ``parts`` of a table (the files ``j % parts == part``), with the
    original table's checksum; None when the dataset has no such table."""
    manifest = read_manifest(root)
    if table not in manifest.tables:
        return None
    entry = manifest.tables[table]
    if entry["rows"] == 0 and table in ALWAYS_REQUIRED:
        raise DataError(table, "the table has no rows")
    files = manifest.parts_for(part, parts)
    frame = _read_files(manifest, table, files)
    frame.attrs[PARTITION_FILES] = (manifest.partitions, files)
    return frame, entry["sha256"]


def column_values(root: Path, table: str, columns: list[str]) -> dict[str, pd.Series]:
    """The distinct raw values of these columns over the whole table (all partitions)."""
    import pyarrow as pa

    manifest = read_manifest(root)
    kinds = {c: manifest.tables[table]["columns"][c] for c in columns}
    if not kinds:
        return {}
    pieces = [_read_file(manifest, table, j).select(list(kinds)) for j in range(manifest.partitions)]
    frame = _from_arrow(pa.concat_tables(pieces), kinds)
    return {c: Distinct(frame[c]).values for c in kinds}


# --------------------------------------------------------------------------- writing


def _file_bytes(table) -> bytes:
    """A partition's Parquet file. Dictionary text is written as plain text: the table's dictionary
    (every distinct value of the whole table) would otherwise be stored in each file, and Parquet
    dictionary-encodes each file's own values anyway (and reads them back several times faster)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def check_new_folder(out: Path) -> None:
    """The dataset's folder must be new or empty: it is written whole or not at all."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"-o: {out} already exists and is not an empty folder; choose a new folder (the dataset is "
                         "written whole or not at all)")


def write_partitioned(source, path: Path, columns: Mapping[str, Mapping[str, str]] | None, reading: DataReading | None,
                      out: Path, partitions: int, extra_files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every table through ``source`` (one at a time) and write the partitioned dataset to
    ``out`` (a new or empty folder), atomically: staged in a sibling folder, renamed when complete.
    Returns the manifest written."""
    import pyarrow as pa

    reading = reading or DataReading()
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise UsageError(f"--partitions: expected a number of partitions from 1 to {MAX_PARTITIONS}, got {partitions}")
    out = Path(out)
    check_new_folder(out)
    if getattr(source, "needs_path", True) and not path.exists():
        raise DataError("data", f"data folder not found: {path}")
    if is_partitioned(path) and out.resolve() == Path(path).resolve():
        raise UsageError("-o: the output folder is the data folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    except OSError as exc:
        raise UsageError(f"-o: cannot write to {out.parent}: {exc.strerror or exc}") from None
    try:
        read_table = _reader(source, reading)
        names = patients_first(TABLES)
        tables: dict[str, dict[str, Any]] = {}
        for name in names:
            raw = read_table(path, name)
            if raw is None:
                if name in ALWAYS_REQUIRED:
                    raise DataError(name, f"table not found in {path} (expected {_described(source, name, reading)})")
                continue
            frame, checksum = raw
            origin = frame.attrs.get(ORIGIN)
            unit = frame.attrs.get(UNIT, "row" if origin else "line")  # a dataset partitioned again keeps its units
            if LINE not in frame.columns:  # numbered as the typing layer would number it
                frame[LINE] = np.arange(2, len(frame) + 2, dtype=np.int64)
            where = record_partitions(frame, name, partitions, (columns or {}).get(name), reading)
            kinds = {str(c): _kind(frame[c]) for c in frame.columns}
            frame.columns = list(kinds)
            arrow = _to_arrow(frame, kinds)
            del frame, raw
            order = np.argsort(where, kind="stable")
            bounds = np.searchsorted(where[order], np.arange(partitions + 1))
            (staging / name).mkdir()
            parts = []
            for k in range(partitions):
                data = _file_bytes(arrow.take(pa.array(order[bounds[k]:bounds[k + 1]])))
                (staging / name / part_name(k)).write_bytes(data)
                parts.append({"rows": int(bounds[k + 1] - bounds[k]), "sha256": hashlib.sha256(data).hexdigest()})
            tables[name] = {"rows": int(arrow.num_rows), "sha256": checksum,
                            "origin": origin or _described(source, name, reading), "unit": unit,
                            "columns": kinds, "parts": parts}
            del arrow
        from . import __version__

        manifest = {
            "format": FORMAT, "version": VERSION, "partitions": partitions, "hash": HASH,
            "source": getattr(source, "name", ""), "data": str(path), "endpointkit": __version__,
            "tables": tables,
        }
        for relative, text in (extra_files or {}).items():
            (staging / relative).write_text(text, encoding="utf-8")
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
        staging = None
        return manifest
    except OSError as exc:
        raise UsageError(f"-o: cannot write the dataset to {out}: {exc.strerror or exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


class ChunkedDataset:
    """A partitioned dataset written from chunks of patients (``endpointkit simulate --chunk-patients``),
    each chunk's records handed over as the source would hand them over, then released.

    ``add`` splits a chunk's raw table by the same hash as :func:`write_partitioned` and appends it
    to one staging Parquet file per table and chunk, one row group per partition; ``finish`` writes
    each partition's file from its row groups in chunk order (one partition in memory at a time), so
    the dataset is the one :func:`write_partitioned` writes from the chunks' tables put end to end:
    the same records in the same files, line numbers continuing across chunks (the caller numbers
    them), the checksums of the original tables as the caller computed them. Staged in a sibling
    folder and renamed into place when complete, like :func:`write_partitioned`."""

    def __init__(self, out: Path, partitions: int, source: str, data: str):
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise UsageError(f"--partitions: expected a number of partitions from 1 to {MAX_PARTITIONS}, got {partitions}")
        self.out, self.partitions, self.source, self.data = Path(out), partitions, source, data
        check_new_folder(self.out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.staging: Path | None = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.partial-"))
        except OSError as exc:
            raise UsageError(f"-o: cannot write to {self.out.parent}: {exc.strerror or exc}") from None
        self._chunks = self.staging / ".chunks"
        self._chunks.mkdir()
        self._tables: dict[str, dict[str, Any]] = {}  # name -> origin, unit, columns, rows, chunk files
        self._groups: dict[str, list[list[tuple[int, int]]]] = {}  # name -> per partition: (chunk file, row group)

    def add(self, name: str, frame: pd.DataFrame, origin: str, unit: str = "line") -> None:
        """One chunk's raw table (with its records' original line numbers in ``_line``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        where = record_partitions(frame, name, self.partitions, None, DataReading())
        kinds = {str(c): _kind(frame[c]) for c in frame.columns}
        entry = self._tables.setdefault(name, {"origin": origin, "unit": unit, "columns": kinds, "rows": 0, "files": 0})
        if kinds != entry["columns"]:
            raise DataError(name, f"a chunk's columns {kinds} differ from the first chunk's {entry['columns']}")
        arrow = _to_arrow(frame.set_axis(list(kinds), axis=1), kinds)
        for i, field in enumerate(arrow.schema):  # as _file_bytes writes text (a chunk's dictionary is its own)
            if pa.types.is_dictionary(field.type):
                arrow = arrow.set_column(i, field.name, arrow.column(i).cast(pa.string()))
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(self.partitions + 1))
        groups = self._groups.setdefault(name, [[] for _ in range(self.partitions)])
        chunk, group = entry["files"], 0
        with pq.ParquetWriter(self._chunks / f"{name}-{chunk:06d}.parquet", arrow.schema, compression="zstd") as writer:
            for k in range(self.partitions):
                rows = int(bounds[k + 1] - bounds[k])
                if rows:
                    writer.write_table(arrow.take(pa.array(order[bounds[k]:bounds[k + 1]])), row_group_size=rows)
                    groups[k].append((chunk, group))
                    group += 1
        entry["rows"] += int(arrow.num_rows)
        entry["files"] += 1

    def finish(self, checksums: Mapping[str, str], extra_files: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Write each partition's files, the manifest (``checksums``: each original table's) and the
        extra files, and rename the dataset into place. Returns the manifest written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from . import __version__

        assert self.staging is not None, "finish() once"
        try:
            tables: dict[str, dict[str, Any]] = {}
            for name in patients_first(self._tables):
                entry = self._tables[name]
                files = [pq.ParquetFile(self._chunks / f"{name}-{c:06d}.parquet") for c in range(entry["files"])]
                (self.staging / name).mkdir()
                parts = []
                for k, groups in enumerate(self._groups[name]):
                    pieces = [files[c].read_row_group(g) for c, g in groups]
                    table = pa.concat_tables(pieces) if pieces else files[0].schema_arrow.empty_table()
                    data = _file_bytes(table)
                    (self.staging / name / part_name(k)).write_bytes(data)
                    parts.append({"rows": int(table.num_rows), "sha256": hashlib.sha256(data).hexdigest()})
                for c, file in enumerate(files):  # the table's staging files are no longer needed
                    file.close()
                    (self._chunks / f"{name}-{c:06d}.parquet").unlink()
                tables[name] = {"rows": entry["rows"], "sha256": checksums[name], "origin": entry["origin"],
                                "unit": entry["unit"], "columns": entry["columns"], "parts": parts}
            shutil.rmtree(self._chunks)
            manifest = {
                "format": FORMAT, "version": VERSION, "partitions": self.partitions, "hash": HASH,
                "source": self.source, "data": self.data, "endpointkit": __version__, "tables": tables,
            }
            for relative, text in (extra_files or {}).items():
                (self.staging / relative).write_text(text, encoding="utf-8")
            (self.staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if self.out.exists():
                self.out.rmdir()  # empty (checked when the writing began)
            os.replace(self.staging, self.out)
            self.staging = None
            return manifest
        except OSError as exc:
            raise UsageError(f"-o: cannot write the dataset to {self.out}: {exc.strerror or exc}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove what was staged (nothing is left behind when the writing fails or is interrupted)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def summary(manifest: Mapping[str, Any], out: Path, seconds: float) -> str:
    """The one line ``endpointkit partition`` prints."""
    tables = manifest["tables"]
    records = sum(t["rows"] for t in tables.values())
    return (f"endpointkit: partitioned {tables['patients']['rows']:,} patients ({len(tables)} tables, {records:,} records) "
            f"from {manifest['source']} data into {manifest['partitions']} partitions in {seconds:.1f} s: wrote {out}")


def partition_command(args) -> int:
    """``endpointkit partition SPEC -o DIR --partitions N [--data PATH]``."""
    from .engine import data_source
    from .spec import load_spec

    started = time.perf_counter()
    if not 1 <= args.partitions <= MAX_PARTITIONS:
        raise UsageError(f"--partitions: expected a number of partitions from 1 to {MAX_PARTITIONS}, got {args.partitions}")
    spec = load_spec(args.spec, data=args.data)
    source = data_source(spec, spec.plugins)
    manifest = write_partitioned(source, spec.data_path, spec.data.columns, spec.reading, args.output, args.partitions)
    print(summary(manifest, args.output, time.perf_counter() - started), file=sys.stderr)
    return 0

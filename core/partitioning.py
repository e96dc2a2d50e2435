"""Patients split into partitions by a stable hash of ``patient_id``, every record with its patient.

The hash is SipHash-2-4 with pandas' fixed key (``pandas.util.hash_array``) of the id as text: the
same id falls in the same partition on every machine and in every run, so a partitioned dataset
written once can be read one partition at a time by any worker. Which partition a patient falls in
never changes a result (the merge is exact); it only spreads the work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from .data import LINE, NUMERIC, TABLES, CohortData, load_data, numeric_columns
from .reading import DataReading


def partition_of(ids: pd.Series | np.ndarray, partitions: int) -> np.ndarray:
    """The partition (0 .. partitions - 1) of each patient id."""
    values = pd.Series(ids).astype(str).to_numpy(dtype=object)
    if partitions <= 1 or not len(values):
        return np.zeros(len(values), dtype=np.int64)
    hashes = pd.util.hash_array(values, categorize=True)
    return (hashes % np.uint64(partitions)).astype(np.int64)


def _table_partitions(frame: pd.DataFrame, partitions: int) -> np.ndarray:
    """Each record's partition; a categorical id column is hashed once per distinct id."""
    ids = frame["patient_id"]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        per_category = partition_of(ids.cat.categories.to_series(), partitions)
        codes = ids.cat.codes.to_numpy()
        return np.where(codes >= 0, per_category[np.clip(codes, 0, None)], 0)
    return partition_of(ids, partitions)


def split_data(data: CohortData, partitions: int) -> list[CohortData]:
    """The loaded data as ``partitions`` parts, each table's records with their patient's part."""
    parts: list[dict[str, pd.DataFrame]] = [{} for _ in range(partitions)]
    for name, frame in data.tables.items():
        where = _table_partitions(frame, partitions)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(partitions + 1))
        for k in range(partitions):
            parts[k][name] = frame.iloc[order[bounds[k]:bounds[k + 1]]]
    return [dataclasses.replace(data, tables=tables) for tables in parts]


def load_partition(source, path: Path, required: list[str], optional: list[str], columns: dict[str, dict[str, str]],
                   reading: DataReading | None, part: int, parts: int) -> CohortData:
    """Partition ``part`` of ``parts`` read through a source that can (``read_partition``), each
    table mapped, typed and validated exactly as :func:`~endpointkit.data.load_data` does for the
    whole data; the extra columns typed as the whole table types them (``column_values``)."""
    reading = reading or DataReading()

    def read_table(root: Path, name: str):
        raw = source.read_partition(root, name, reading.request(name), part, parts)
        if raw is None:
            return None
        frame, checksum = raw
        return _typed_as_whole(source, root, name, frame, (columns or {}).get(name), reading), checksum

    return load_data(source, path, required, optional, columns, reading, read_table=read_table, partial=True)


def _typed_as_whole(source, root: Path, name: str, frame: pd.DataFrame, mapping: dict[str, str] | None,
                    reading: DataReading) -> pd.DataFrame:
    """An extra column is a number when all its values are, in the whole table: a partition whose
    values happen to all be numbers must not type it otherwise (the merge would differ)."""
    values_of = getattr(source, "column_values", None)
    renamed = {user: canonical for canonical, user in (mapping or {}).items()}
    extra = [str(c) for c in frame.columns if c != LINE and renamed.get(str(c), str(c)) not in TABLES[name].all_columns]
    if extra and values_of is not None:
        options, recodes = reading.typing(name)
        frame.attrs[NUMERIC] = numeric_columns(values_of(root, name, extra), options, recodes)
    return frame

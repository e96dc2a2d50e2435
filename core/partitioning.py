"""Patients split into partitions by a stable hash of ``patient_id``, every record with its patient.

The hash is SipHash-2-4 with pandas' fixed key (``pandas.util.hash_array``) of the id as text: the
same id falls in the same partition on every machine and in every run, so a partitioned dataset
written once can be read one partition at a time by any worker. Which partition a patient falls in
never changes a result (the merge is exact); it only spreads the work.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .data import CohortData


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

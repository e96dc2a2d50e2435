"""Patients split into partitions by a stable hash of ``patient_id``, every record with its patient.

The hash is SipHash-2-4 with pandas' fixed key (``pandas.util.hash_array``) of the id as text: the
same id falls in the same partition on every machine and in every run, so a partitioned dataset
written once can be read one partition at a time by any worker. Which partition a patient falls in
never changes a result (the merge is exact); it only spreads the work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .data import (
    LINE,
    NUMERIC,
    PATIENT_ROW,
    TABLES,
    CohortData,
    Distinct,
    _recode,
    cell_text,
    load_data,
    numeric_columns,
)
from .errors import DataError
from .reading import DataReading

# A partition's raw frame from a source: (partitions the data was written with, the files read).
PARTITION_FILES = "endpointkit.partition_files"


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


def record_partitions(frame: pd.DataFrame, table: str, partitions: int, mapping: Mapping[str, str] | None,
                      reading: DataReading) -> np.ndarray:
    """Each raw record's partition: that of its patient id as the typing layer will read it
    (mapped column, recoded, as text, stripped), hashed once per distinct id."""
    column = (mapping or {}).get("patient_id", "patient_id")
    if column not in frame.columns:
        shown = ", ".join(str(c) for c in frame.columns if not str(c).startswith("_"))
        raise DataError(table, f"missing required column 'patient_id'; found: {shown} (map your own names with "
                               f"data.columns.{table})", column="patient_id")
    ids = pd.DataFrame({"patient_id": frame[column]})
    options, values = reading.typing(table)
    if options.missing or values.get("patient_id"):
        _recode(ids, options, {"patient_id": values["patient_id"]} if "patient_id" in values else {})
    distinct = Distinct(ids["patient_id"])
    text = distinct.values.map(cell_text, na_action="ignore")
    where = partition_of(text.fillna(""), partitions)
    return np.append(where, 0)[distinct.codes]


def split_data(data: CohortData, partitions: int) -> list[CohortData]:
    """The loaded data as ``partitions`` parts, each table's records with their patient's part.

    Only the patients' ids are hashed: every other record finds its part through its patient's row
    (``PATIENT_ROW``), which each part numbers again from 0, as if it had been loaded on its own."""
    patients = data.tables.get("patients")
    rows_known = (patients is not None and PATIENT_ROW in patients
                  and np.array_equal(patients[PATIENT_ROW].to_numpy(), np.arange(len(patients))))
    if rows_known:
        patient_part = _table_partitions(patients, partitions)
        by_part = np.argsort(patient_part, kind="stable")  # each part's patients together, in row order
        starts = np.searchsorted(patient_part[by_part], np.arange(partitions))
        renumbered = np.empty(len(patients), dtype=np.int64)  # each patient's row within its part
        renumbered[by_part] = np.arange(len(patients)) - starts[patient_part[by_part]]
    parts: list[dict[str, pd.DataFrame]] = [{} for _ in range(partitions)]
    for name, frame in data.tables.items():
        rows = frame[PATIENT_ROW].to_numpy() if rows_known and PATIENT_ROW in frame else None
        if rows is not None and (rows >= 0).all():
            where = patient_part[rows]
        else:
            rows, where = None, _table_partitions(frame, partitions)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(partitions + 1))
        for k in range(partitions):
            taken = order[bounds[k]:bounds[k + 1]]
            part = frame.iloc[taken]
            if rows is not None:
                part = part.assign(**{PATIENT_ROW: renumbered[rows[taken]]})
            parts[k][name] = part
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
        if name == "patients" and PARTITION_FILES in frame.attrs:
            _check_placement(frame, name, (columns or {}).get(name), reading)
        return _typed_as_whole(source, root, name, frame, (columns or {}).get(name), reading), checksum

    return load_data(source, path, required, optional, columns, reading, read_table=read_table, partial=True)


def _check_placement(frame: pd.DataFrame, name: str, mapping: dict[str, str] | None, reading: DataReading) -> None:
    """Every patient read must hash to the files read: a dataset partitioned on other ids (another
    ``data.columns`` or ``data.values`` for patient_id) would otherwise split a patient's records or
    hide a duplicate id, silently."""
    partitions, files = frame.attrs[PARTITION_FILES]
    wrong = ~np.isin(record_partitions(frame, name, partitions, mapping, reading), files)
    if wrong.any():
        first = frame[wrong].iloc[0]
        raise DataError(name, "a patient id is stored in another partition than it hashes to: the dataset was "
                              "written with other patient ids (data.columns or data.values for patient_id differ from "
                              "the spec that wrote it); write it again with this spec", line=int(first[LINE]))


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

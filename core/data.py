"""The canonical tables: read through a source plugin, mapped, typed and validated.

Each problem raises a :class:`DataError` naming the table, CSV line and column and what was
expected. Only the tables the requested endpoints need are required; optional tables are read
when present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, SpecError
from .params import DATE_RANGE, FIRST_DATE, LAST_DATE
from .titers import parse_titers

EDSS_GRID = np.array([0.0] + [x / 2 for x in range(2, 21)])  # 0, 1.0, 1.5, ..., 10
TRUE_VALUES = {"true", "t", "yes", "y", "1"}
FALSE_VALUES = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class TableSchema:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def date_column(self) -> str | None:
        """The column that places a record in time (for cut-off and follow-up checks)."""
        for name in ("date", "onset_date", "start_date"):
            if name in self.required:
                return name
        return None


TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        TableSchema(
            "patients", ("patient_id",),
            ("sex", "birth_date", "onset_date", "diagnosis", "antibody_status", "last_followup_date", "group"),
            dates=("birth_date", "onset_date", "last_followup_date"),
        ),
        TableSchema("treatments", ("patient_id", "treatment", "start_date"), ("end_date", "stop_reason"), dates=("start_date", "end_date")),
        TableSchema("administrations", ("patient_id", "treatment", "date"), ("dose",), dates=("date",), numbers=("dose",)),
        TableSchema("relapses", ("patient_id", "onset_date"), ("confirmed", "severity", "pseudo"), dates=("onset_date",), booleans=("confirmed", "pseudo")),
        TableSchema("edss", ("patient_id", "date", "score"), dates=("date",), numbers=("score",)),
        TableSchema("titers", ("patient_id", "date", "titer"), ("assay",), dates=("date",)),
        TableSchema(
            "adverse_events", ("patient_id", "onset_date", "term"),
            ("grade", "serious", "related", "action", "treatment"),
            dates=("onset_date",), booleans=("serious", "related"), numbers=("grade",),
        ),
    )
}
ALWAYS_REQUIRED = ("patients", "treatments")
# Text columns keep Python strings (pandas' "str" without Arrow): ids and codes repeat millions of
# times as references to one object each, whose hash Python caches, so the joins and lookups on
# patient_id in the cohort and the endpoints hash each distinct id once, not every row.
TEXT = pd.StringDtype("python", na_value=np.nan)
UNKNOWN_PATIENT = "expected a patient_id listed in patients"
# An open end written as the usual placeholder 9999-12-31 reads as blank (the course is ongoing).
OPEN_END_COLUMNS = {("treatments", "end_date")}
OPEN_END = pd.Timestamp("9999-12-31")
LINE = "_line"  # CSV line of each record, kept for traceability
# Each record's patient as a row number of the patients table as loaded: the cohort uses it instead
# of looking every patient_id up again (absent when a table was prepared on its own).
PATIENT_ROW = "_patient_row"


@dataclass
class CohortData:
    """The loaded, validated canonical tables (shared by every variant)."""

    tables: dict[str, pd.DataFrame]
    checksums: dict[str, str] = field(default_factory=dict)
    source: str = "csv"
    path: Path | None = None

    def table(self, name: str) -> pd.DataFrame:
        if name in self.tables:
            return self.tables[name]
        return empty_table(name)

    def memory_bytes(self) -> int:
        return int(sum(t.memory_usage(deep=True).sum() for t in self.tables.values()))


def empty_table(name: str) -> pd.DataFrame:
    schema = TABLES[name]
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in schema.all_columns})
    for c in schema.dates:
        frame[c] = pd.Series(dtype="datetime64[ns]")
    for c in schema.numbers:
        frame[c] = pd.Series(dtype="float64")
    for c in schema.booleans:
        frame[c] = pd.Series(dtype="boolean")
    frame[LINE] = pd.Series(dtype="int64")
    return frame


def _fail(table: str, frame: pd.DataFrame, bad: pd.Series, column: str, expected: str) -> None:
    """Raise for the first bad row, saying how many more there are."""
    if not bad.any():
        return
    rows = frame.loc[bad]
    first = rows.iloc[0]
    more = f" ({len(rows) - 1} more rows like this)" if len(rows) > 1 else ""
    value = first.get(column, "")
    if isinstance(value, np.generic):  # show 0.5, not np.float64(0.5)
        value = value.item()
    raise DataError(table, f"{expected}, got {value!r}{more}", line=int(first[LINE]), column=column)


class Distinct:
    """A column as its distinct values plus one code per row (-1 = blank).

    Registries repeat ids, dates and codes millions of times: hashing a column once, then parsing and
    validating only its distinct values, is what keeps loading 100,000 patients fast.
    """

    def __init__(self, series: pd.Series) -> None:
        if isinstance(series.dtype, pd.CategoricalDtype):  # a source that read the text in this form
            self.codes = series.cat.codes.to_numpy()
            self.values = pd.Series(series.cat.categories)
        else:
            self.codes, uniques = pd.factorize(series, use_na_sentinel=True)
            self.values = pd.Series(uniques, dtype=series.dtype)
        self.index = series.index
        self.name = series.name

    def spread(self, per_value: pd.Series) -> pd.Series:
        """One value per distinct value -> one per row (blank rows stay missing)."""
        return pd.Series(pd.api.extensions.take(per_value.array, self.codes, allow_fill=True), index=self.index, name=self.name)

    def rows(self, per_value: np.ndarray) -> pd.Series:
        """A flag per distinct value -> a flag per row (False for blank rows)."""
        return pd.Series(np.append(np.asarray(per_value, dtype=bool), False)[self.codes], index=self.index)

    def blank(self) -> pd.Series:
        return pd.Series(self.codes < 0, index=self.index)


def _plain_text(series: pd.Series) -> pd.Series:
    categories = series.cat.categories.astype(TEXT).array
    text = pd.api.extensions.take(categories, series.cat.codes.to_numpy(), allow_fill=True)
    return pd.Series(text, index=series.index, name=series.name)


def per_distinct(series: pd.Series, transform) -> pd.Series:
    """``transform(series)``, computed on the distinct values only and spread back by position."""
    distinct = Distinct(series)
    return distinct.spread(transform(distinct.values))


def _parse(table: str, frame: pd.DataFrame, distinct: Distinct, transform, expected: str) -> pd.Series:
    """Parse a column through its distinct values; a value that does not parse is an error."""
    parsed = transform(distinct.values)
    bad = parsed.isna().to_numpy()
    if bad.any():
        _fail(table, frame, distinct.rows(bad), str(distinct.name), expected)
    return distinct.spread(parsed)


def _dates(text: pd.Series) -> pd.Series:
    """Dates at microsecond resolution (years 1 to 9999): the range is checked before the cast to ns."""
    return pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").astype("datetime64[us]")


def _parse_dates(table: str, frame: pd.DataFrame, distinct: Distinct, expected: str) -> pd.Series:
    """A date column: each value a date that exists, inside the analysable range."""
    column = str(distinct.name)
    parsed = _dates(distinct.values)
    _fail(table, frame, distinct.rows(parsed.isna().to_numpy()), column, expected)
    if (table, column) in OPEN_END_COLUMNS:
        parsed = parsed.mask(parsed == OPEN_END)
    outside = ((parsed < pd.Timestamp(FIRST_DATE)) | (parsed > pd.Timestamp(LAST_DATE))).to_numpy()
    _fail(table, frame, distinct.rows(outside), column,
          f"expected a date {DATE_RANGE} (leave the cell blank for an unknown date, not a placeholder such as 0001-01-01)")
    return distinct.spread(parsed.astype("datetime64[ns]"))


def _booleans(text: pd.Series) -> pd.Series:
    clean = text.astype("string").str.strip().str.lower()
    result = pd.Series(pd.NA, index=text.index, dtype="boolean")
    result[clean.isin(TRUE_VALUES).fillna(False).astype(bool)] = True
    result[clean.isin(FALSE_VALUES).fillna(False).astype(bool)] = False
    return result


def _numbers(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text, errors="coerce").astype(float)


PARSERS = {
    "dates": (_dates, "datetime64[ns]", "expected a date YYYY-MM-DD that exists"),
    "booleans": (_booleans, "boolean", "expected true/false (or yes/no, 1/0)"),
    "numbers": (_numbers, float, "expected a number"),
}


def _maybe_numeric(series: pd.Series) -> pd.Series:
    """Extra columns become numbers when every non-blank value is one (usable in criteria)."""
    number = per_distinct(series, _numbers).astype(float)
    if series.notna().any() and number[series.notna()].notna().all():
        return number
    return series


def prepare_table(name: str, frame: pd.DataFrame, mapping: dict[str, str] | None = None,
                  known_ids: pd.Index | None = None) -> pd.DataFrame:
    """Map, type and validate one raw (all-text) table; with ``known_ids`` (the patients table's ids)
    every patient_id must be one of them."""
    schema = TABLES[name]
    frame = frame.copy()
    if mapping:
        missing = [user for user in mapping.values() if user not in frame.columns]
        if missing:
            raise DataError(name, f"column '{missing[0]}' named in data.columns.{name} is not in the file; columns: {', '.join(map(str, frame.columns))}")
        targets: dict[str, str] = {}
        for canonical, user in mapping.items():
            if user in targets:
                raise DataError(name, f"data.columns.{name} maps both '{targets[user]}' and '{canonical}' to the column '{user}'; expected one column each")
            targets[user] = canonical
        for canonical, user in mapping.items():
            if canonical != user and canonical in frame.columns and canonical not in mapping.values():
                raise DataError(
                    name, f"data.columns.{name} maps the column '{user}' onto '{canonical}', but the file already has a column "
                    f"'{canonical}'; expected one column per name (rename or map the other one too)", column=canonical,
                )
        frame = frame.rename(columns={user: canonical for canonical, user in mapping.items()})
    for column in schema.required:
        if column not in frame.columns:
            raise DataError(
                name, f"missing required column '{column}'; found: {', '.join(map(str, frame.columns))}"
                f" (map your own names with data.columns.{name})",
                column=column,
            )
    if LINE not in frame.columns:
        frame[LINE] = np.arange(2, len(frame) + 2)
    for column in schema.optional:
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="object")
    typed = {column: kind for kind in PARSERS for column in getattr(schema, kind)}
    distinct = {column: Distinct(frame[column]) for column in ("patient_id", *typed)}
    for column in schema.required:
        blank = distinct[column].blank() if column in distinct else frame[column].isna()
        _fail(name, frame, blank, column, "expected a value (required column)")
    ids = distinct["patient_id"]
    if not isinstance(ids.values.dtype, pd.StringDtype):  # a source that gave numbers or objects as ids
        ids.values = ids.values.astype(TEXT)
    ids.values = ids.values.str.strip().astype(TEXT)  # strip first: vectorised when the source gave Arrow text
    frame["patient_id"] = ids.spread(ids.values)
    for column, kind in typed.items():
        transform, dtype, expected = PARSERS[kind]
        if kind == "dates":
            frame[column] = _parse_dates(name, frame, distinct[column], expected)
        else:
            frame[column] = _parse(name, frame, distinct[column], transform, expected).astype(dtype)
    for column in frame.columns:
        if column not in schema.all_columns and column != LINE:
            frame[column] = _maybe_numeric(frame[column])
        if isinstance(frame[column].dtype, pd.CategoricalDtype):  # the rest of the text: plain strings
            frame[column] = _plain_text(frame[column])
    _check_values(name, frame)
    if known_ids is not None:
        position = known_ids.get_indexer(ids.values.to_numpy(dtype=object))
        _fail(name, frame, ids.rows(position < 0), "patient_id", UNKNOWN_PATIENT)
        frame[PATIENT_ROW] = np.append(position, -1)[ids.codes]
    elif name == "patients":
        frame[PATIENT_ROW] = np.arange(len(frame))
    return frame


def _text(value: object) -> str:
    """A value as a message shows it: dates as YYYY-MM-DD, missing as 'blank'."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "blank"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_conflicts(name: str, frame: pd.DataFrame, keys: list[str], values: list[str], what: str) -> None:
    """Two records with the same keys must agree on ``values``: otherwise which one is used would
    depend on the order of the rows in the file."""
    if len(frame) < 2:
        return
    work = frame[[*keys, *values, LINE]]
    if not work.duplicated(keys, keep=False).any():
        return
    distinct = work.sort_values(LINE, kind="stable").drop_duplicates([*keys, *values])
    second = distinct.duplicated(keys, keep="first")
    if not second.any():
        return
    row = distinct[second].iloc[0]
    same = (distinct[keys] == row[keys]).all(axis=1) | (distinct[keys].isna() & row[keys].isna()).all(axis=1)
    first = distinct[same & ~second].iloc[0]
    column = next(c for c in values if _text(row[c]) != _text(first[c]))
    when = " ".join(_text(row[k]) for k in keys[1:])
    raise DataError(
        name, f"expected one {what}; {row['patient_id']} has {_text(row[column])} here but {_text(first[column])} "
        f"on line {int(first[LINE])} for the same {when} (remove or correct one of them)",
        line=int(row[LINE]), column=column,
    )


def _check_values(name: str, frame: pd.DataFrame) -> None:
    if name == "patients":
        _fail(name, frame, frame["patient_id"].duplicated(), "patient_id", "expected unique patient ids; duplicate")
    if name == "treatments":
        bad = frame["end_date"].notna() & (frame["end_date"] < frame["start_date"])
        _fail(name, frame, bad, "end_date", "expected an end date on or after start_date")
        courses = frame.assign(_treatment=per_distinct(frame["treatment"], lambda t: t.astype(str).str.strip().str.casefold()))
        _check_conflicts(name, courses, ["patient_id", "_treatment", "start_date"], ["end_date", "stop_reason"],
                         "end_date and stop_reason per patient, treatment and start date")
    if name == "edss":
        on_grid = np.isin(frame["score"].to_numpy(), EDSS_GRID)
        _fail(name, frame, ~pd.Series(on_grid, index=frame.index), "score", "expected an EDSS score on the grid 0, 1.0, 1.5, ..., 9.5, 10 (0.5 is not a score)")
    if name == "administrations":
        _fail(name, frame, frame["dose"] < 0, "dose", "expected a number >= 0")
    if name == "titers":
        value = per_distinct(frame["titer"], lambda t: parse_titers(t)[0]).astype(float)
        negative = per_distinct(frame["titer"], lambda t: parse_titers(t)[1]).fillna(False).astype(bool)
        valid = value.notna()
        _fail(name, frame, ~valid, "titer", "expected a titer such as 1:480, 480, negative, neg or <1:10")
        frame["titer_value"] = value
        frame["titer_negative"] = negative
    if name == "adverse_events":
        grade = frame["grade"]
        bad = grade.notna() & ~grade.isin([1, 2, 3, 4, 5])
        _fail(name, frame, bad, "grade", "expected a grade 1, 2, 3, 4 or 5")


def prepare_tables(frames: Iterable[tuple[str, pd.DataFrame]],
                   columns: dict[str, dict[str, str]] | None = None) -> dict[str, pd.DataFrame]:
    """``prepare_table`` for each (name, raw frame), patients first: every later table's patient_id
    must be one of its ids, and each record gets its patient's row (``PATIENT_ROW``)."""
    tables: dict[str, pd.DataFrame] = {}
    known: pd.Index | None = None
    for name, frame in frames:
        if name != "patients" and known is None:
            raise ValueError(f"prepare_tables: {name} given before patients")
        tables[name] = prepare_table(name, frame, (columns or {}).get(name), known)
        if name == "patients":
            known = pd.Index(tables[name]["patient_id"].to_numpy(dtype=object))  # unique: checked
    return tables


def patients_first(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda name: name != "patients")


def tables_needed(endpoint_requires: list[tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """(required, optional) tables for a set of endpoints."""
    required = list(ALWAYS_REQUIRED)
    for requires in endpoint_requires:
        for table in requires:
            if table not in TABLES:
                raise SpecError("endpoints", f"an endpoint requires unknown table '{table}'")
            if table not in required:
                required.append(table)
    optional = [t for t in TABLES if t not in required]
    return required, optional


def load_data(source, path: Path, required: list[str], optional: list[str], columns: dict[str, dict[str, str]]) -> CohortData:
    """Read every needed table through ``source`` and validate it."""
    if not path.exists():
        raise DataError("data", f"data folder not found: {path}")
    checksums: dict[str, str] = {}

    def read():  # one table at a time, so that each raw file is released once it is typed
        for name in patients_first(required + optional):
            raw = source.read_table(path, name)
            if raw is None:
                if name in required:
                    raise DataError(name, f"table not found in {path} (expected {source.describe(name)}); it is required by the chosen endpoints")
                continue
            frame, checksums[name] = raw
            if frame.empty and name in ("patients", "treatments"):
                raise DataError(name, "the table has no rows")
            yield name, frame

    tables = prepare_tables(read(), columns)
    return CohortData(tables=tables, checksums=checksums, source=source.name, path=path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

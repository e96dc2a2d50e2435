"""The canonical tables: read through a source plugin, mapped, typed and validated.

Each problem raises a :class:`DataError` naming the table, CSV line and column and what was
expected. Only the tables the requested endpoints need are required; optional tables are read
when present.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, SpecError
from .params import DATE_RANGE, FIRST_DATE, LAST_DATE
from .reading import DataReading, ReadOptions
from .titers import parse_titers

EDSS_GRID = np.array([0.0] + [x / 2 for x in range(2, 21)])  # 0, 1.0, 1.5, ..., 10
TIMED_SCALES = ("t25fw", "9hpt")  # measurements scales in seconds
TRUE_VALUES = {"true", "t", "yes", "y", "1"}
FALSE_VALUES = {"false", "f", "no", "n", "0"}
SEX_VALUES = {"f", "female", "m", "male", "x", "other", "diverse"}
CANONICAL = ReadOptions()


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
        TableSchema("measurements", ("patient_id", "date", "scale", "value"), dates=("date",), numbers=("value",)),
        TableSchema(
            "adverse_events", ("patient_id", "onset_date", "term"),
            ("grade", "serious", "related", "action", "treatment"),
            dates=("onset_date",), booleans=("serious", "related"), numbers=("grade",),
        ),
    )
}
ALWAYS_REQUIRED = ("patients", "treatments")
# Read when present whatever the endpoints: the cohort definition uses them (the index date falls
# back to the first administration; a course without end_date ends at the last one + grace days).
COHORT_OPTIONAL = ("administrations",)
# Text columns keep Python strings (pandas' "str" without Arrow): ids and codes repeat millions of
# times as references to one object each, whose hash Python caches, so the joins and lookups on
# patient_id in the cohort and the endpoints hash each distinct id once, not every row.
TEXT = pd.StringDtype("python", na_value=np.nan)
UNKNOWN_PATIENT = "expected a patient_id listed in patients"
# An open end written as the usual placeholder 9999-12-31 reads as blank (the course is ongoing).
OPEN_END_COLUMNS = {("treatments", "end_date")}
OPEN_END = pd.Timestamp("9999-12-31")
LINE = "_line"  # CSV line of each record, kept for traceability
# Where a typed source's records come from (frame.attrs): "sheet 'Patienten'", "database table ...";
# its records are numbered by row (the sheet's own row numbers) instead of CSV line.
ORIGIN = "endpointkit.origin"
UNIT = "endpointkit.unit"  # "row" (the default with an origin) or "line" (a CSV file's line numbers)
NUMERIC = "endpointkit.numeric"  # extra column -> is a number, decided on the whole table (a partition's frame)
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


def _fail(table: str, frame: pd.DataFrame, bad: pd.Series, column: str, expected: str, recode: bool = False) -> None:
    """Raise for the first bad row, saying how many more there are; with ``recode``, list the
    values that were not recognised and how to recode them with ``data.values``."""
    if not bad.any():
        return
    rows = frame.loc[bad]
    first = rows.iloc[0]
    more = f" ({len(rows) - 1} more rows like this)" if len(rows) > 1 else ""
    value = first.get(column, "")
    if isinstance(value, np.generic):  # show 0.5, not np.float64(0.5)
        value = value.item()
    hint = _recode_hint(table, column, rows[column]) if recode else ""
    raise DataError(table, f"{expected}, got {value!r}{more}{hint}", line=int(first[LINE]), column=column)


def _recode_hint(table: str, column: str, values: pd.Series) -> str:
    """'; values not recognised: '1' (12 rows), '2' (11 rows); recode them with data.values: ...'"""
    counts = values.astype(object).value_counts(sort=True)
    shown = ", ".join(f"{_plain(v)!r} ({n} row{'s' if n > 1 else ''})" for v, n in counts.head(8).items())
    more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
    example = ", ".join(f"{_plain(v)!r}: ..." for v in counts.index[:2])
    return f"; values not recognised: {shown}{more}; recode them in the spec with data.values: {{{table}: {{{column}: {{{example}}}}}}}"


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def cell_text(value: object) -> str:
    """A cell as text, as a CSV would hold it: a workbook's 1.0 is '1', True is 'true'."""
    value = _plain(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _visible(frame: pd.DataFrame) -> str:
    """The column names a user can see (internal ones such as _line left out)."""
    return ", ".join(str(c) for c in frame.columns if not str(c).startswith("_"))


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


def _parse(table: str, frame: pd.DataFrame, distinct: Distinct, transform, expected: str, options: ReadOptions) -> pd.Series:
    """Parse a column through its distinct values; a value that does not parse is an error."""
    parsed = transform(distinct.values, options)
    bad = parsed.isna().to_numpy()
    if bad.any():
        _fail(table, frame, distinct.rows(bad), str(distinct.name), expected, recode=True)
    return distinct.spread(parsed)


def _dates(values: pd.Series, options: ReadOptions = CANONICAL) -> pd.Series:
    """Dates at microsecond resolution (years 1 to 9999): the range is checked before the cast to ns.

    Text is read with each of ``options.date_format`` in turn (the first that fits wins); values a
    source hands over as dates (Excel date cells, database DATE columns) are taken as they are,
    to the day."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:  # a database's timestamp with time zone: its local day
            values = values.dt.tz_localize(None)
        return values.dt.floor("D").astype("datetime64[us]")
    is_text = values.map(lambda v: isinstance(v, str), na_action="ignore").fillna(False).astype(bool)
    text = values.where(is_text).astype(object)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    for fmt in options.date_format:
        parsed = parsed.fillna(pd.to_datetime(text.str.strip(), format=fmt, errors="coerce").astype("datetime64[us]"))
    if not is_text.all():  # datetime.date / datetime objects among text (a workbook's date cells)
        other = values[~is_text]
        as_dates = pd.to_datetime(other.map(lambda v: v if isinstance(v, dt.date) else None), errors="coerce")
        parsed[~is_text] = as_dates.dt.floor("D").astype("datetime64[us]")
    return parsed


def _parse_dates(table: str, frame: pd.DataFrame, distinct: Distinct, options: ReadOptions) -> pd.Series:
    """A date column: each value a date that exists, inside the analysable range."""
    column = str(distinct.name)
    parsed = _dates(distinct.values, options)
    _fail(table, frame, distinct.rows(parsed.isna().to_numpy()), column, options.date_expectation())
    if (table, column) in OPEN_END_COLUMNS:
        parsed = parsed.mask(parsed == OPEN_END)
    outside = ((parsed < pd.Timestamp(FIRST_DATE)) | (parsed > pd.Timestamp(LAST_DATE))).to_numpy()
    _fail(table, frame, distinct.rows(outside), column,
          f"expected a date {DATE_RANGE} (leave the cell blank for an unknown date, not a placeholder such as 0001-01-01)")
    return distinct.spread(parsed.astype("datetime64[ns]"))


def _booleans(text: pd.Series, options: ReadOptions = CANONICAL) -> pd.Series:
    clean = text.astype("string").str.strip().str.lower()
    result = pd.Series(pd.NA, index=text.index, dtype="boolean")
    result[clean.isin(TRUE_VALUES).fillna(False).astype(bool)] = True
    result[clean.isin(FALSE_VALUES).fillna(False).astype(bool)] = False
    return result


def _numbers(text: pd.Series, options: ReadOptions = CANONICAL) -> pd.Series:
    if options.decimal == "," and not pd.api.types.is_numeric_dtype(text.dtype):
        text = text.astype(object).map(lambda v: v.replace(",", ".") if isinstance(v, str) else v)
    return pd.to_numeric(text, errors="coerce").astype(float)


PARSERS = {
    "dates": (_dates, "datetime64[ns]", ""),
    "booleans": (_booleans, "boolean", "expected true/false (or yes/no, 1/0)"),
    "numbers": (_numbers, float, "expected a number"),
}


def _maybe_numeric(series: pd.Series, options: ReadOptions = CANONICAL, numeric: bool | None = None) -> pd.Series:
    """Extra columns become numbers when every non-blank value is one (usable in criteria);
    ``numeric`` is that decision made on the whole table when only part of it is read."""
    if series.dtype == bool or isinstance(series.dtype, pd.BooleanDtype):
        return series
    if numeric is False:
        return series
    number = per_distinct(series, lambda v: _numbers(v, options)).astype(float)
    if numeric or (series.notna().any() and number[series.notna()].notna().all()):
        return number
    return series


def numeric_columns(values: dict[str, pd.Series], options: ReadOptions = CANONICAL,
                    recodes: dict[str, dict[str, str]] | None = None) -> dict[str, bool]:
    """Which extra columns are numbers, decided on each column's distinct raw values over the whole
    table: a table read one partition at a time must type a column as the whole table would."""
    decided = {}
    for column, distinct in values.items():
        frame = pd.DataFrame({column: distinct.reset_index(drop=True)})
        if options.missing or recodes:
            _recode(frame, options, recodes or {})
        series = frame[column]
        if series.dtype == bool or isinstance(series.dtype, pd.BooleanDtype):
            decided[column] = False
            continue
        number = per_distinct(series, lambda v: _numbers(v, options))
        decided[column] = bool(series.notna().any() and number[series.notna()].notna().all())
    return decided


def _recode(frame: pd.DataFrame, options: ReadOptions, values: dict[str, dict[str, str]]) -> None:
    """``data.read.missing`` codes become blank and ``data.values`` codes their values (before
    typing, through each column's distinct values)."""
    missing = set(options.missing)
    for column in list(frame.columns):
        codes = values.get(str(column))
        if column == LINE or not (missing or codes):
            continue
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = _plain_text(series)

        def change(distinct: pd.Series, codes=codes) -> pd.Series:
            text = distinct.map(cell_text)
            out = distinct.astype(object).where(~text.isin(missing), None)
            if codes:
                found = text.isin(list(codes))
                out = out.where(~found, text[found].map(codes))
            return out

        frame[column] = per_distinct(series, change)


def prepare_table(name: str, frame: pd.DataFrame, mapping: dict[str, str] | None = None,
                  known_ids: pd.Index | None = None, options: ReadOptions = CANONICAL,
                  values: dict[str, dict[str, str]] | None = None, numeric: dict[str, bool] | None = None) -> pd.DataFrame:
    """Map, recode, type and validate one raw table (text, or values a typed source gave); with
    ``known_ids`` (the patients table's ids) every patient_id must be one of them; ``numeric``:
    the extra columns' typing decided on the whole table (:func:`numeric_columns`)."""
    schema = TABLES[name]
    frame = frame.copy()
    if mapping:
        missing = [user for user in mapping.values() if user not in frame.columns]
        if missing:
            raise DataError(name, f"column '{missing[0]}' named in data.columns.{name} is not in the file; columns: {_visible(frame)}")
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
                name, f"missing required column '{column}'; found: {_visible(frame)}"
                f" (map your own names with data.columns.{name})",
                column=column,
            )
    if LINE not in frame.columns:
        frame[LINE] = np.arange(2, len(frame) + 2)
    if options.missing or values:
        _recode(frame, options, values or {})
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
        ids.values = ids.values.map(cell_text).astype(TEXT)
    ids.values = ids.values.str.strip().astype(TEXT)  # strip first: vectorised when the source gave Arrow text
    frame["patient_id"] = ids.spread(ids.values)
    for column, kind in typed.items():
        transform, dtype, expected = PARSERS[kind]
        if kind == "dates":
            frame[column] = _parse_dates(name, frame, distinct[column], options)
        else:
            frame[column] = _parse(name, frame, distinct[column], transform, expected, options).astype(dtype)
    for column in frame.columns:
        if column not in schema.all_columns and column != LINE:
            frame[column] = _maybe_numeric(frame[column], options, (numeric or {}).get(str(column)))
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
        sex = per_distinct(frame["sex"], lambda v: v.map(lambda x: cell_text(x).casefold(), na_action="ignore"))
        _fail(name, frame, sex.notna() & ~sex.isin(SEX_VALUES), "sex",
              "expected a sex coded F or M (female/male; X, other or diverse)", recode=True)
    if name == "treatments":
        bad = frame["end_date"].notna() & (frame["end_date"] < frame["start_date"])
        _fail(name, frame, bad, "end_date", "expected an end date on or after start_date")
        courses = frame.assign(_treatment=per_distinct(frame["treatment"], lambda t: t.astype(str).str.strip().str.casefold()))
        _check_conflicts(name, courses, ["patient_id", "_treatment", "start_date"], ["end_date", "stop_reason"],
                         "end_date and stop_reason per patient, treatment and start date")
    if name == "edss":
        on_grid = np.isin(frame["score"].to_numpy(), EDSS_GRID)
        _fail(name, frame, ~pd.Series(on_grid, index=frame.index), "score",
              "expected an EDSS score on the grid 0, 1.0, 1.5, ..., 9.5, 10 (0.5 is not a score)")
    if name == "administrations":
        _fail(name, frame, frame["dose"] < 0, "dose", "expected a number >= 0")
    if name == "measurements":  # scale names compared without case; timed tests in seconds, SDMT 0-110
        frame["scale"] = per_distinct(frame["scale"], lambda t: t.astype(TEXT).str.strip().str.casefold())
        value, scale = frame["value"], frame["scale"]
        _fail(name, frame, value < 0, "value", "expected a number >= 0")
        _fail(name, frame, scale.isin(TIMED_SCALES) & (value <= 0), "value", "expected a time in seconds > 0 (t25fw, 9hpt)")
        _fail(name, frame, (scale == "sdmt") & (value > 110), "value", "expected an SDMT score 0-110")
    if name == "titers":
        value = per_distinct(frame["titer"], lambda t: parse_titers(t)[0]).astype(float)
        negative = per_distinct(frame["titer"], lambda t: parse_titers(t)[1]).fillna(False).astype(bool)
        valid = value.notna()
        _fail(name, frame, ~valid, "titer", "expected a titer such as 1:480, 480, negative, neg or <1:10", recode=True)
        frame["titer_value"] = value
        frame["titer_negative"] = negative
    if name == "adverse_events":
        grade = frame["grade"]
        bad = grade.notna() & ~grade.isin([1, 2, 3, 4, 5])
        _fail(name, frame, bad, "grade", "expected a grade 1, 2, 3, 4 or 5", recode=True)


def prepare_tables(frames: Iterable[tuple[str, pd.DataFrame]],
                   columns: dict[str, dict[str, str]] | None = None, reading: DataReading | None = None) -> dict[str, pd.DataFrame]:
    """``prepare_table`` for each (name, raw frame), patients first: every later table's patient_id
    must be one of its ids, and each record gets its patient's row (``PATIENT_ROW``). A frame may
    carry in its attrs its origin (``ORIGIN``, named in errors), how its records are numbered
    (``UNIT``: row or line) and the whole table's typing of its extra columns (``NUMERIC``)."""
    tables: dict[str, pd.DataFrame] = {}
    known: pd.Index | None = None
    for name, frame in frames:
        if name != "patients" and known is None:
            raise ValueError(f"prepare_tables: {name} given before patients")
        options, values = (reading or DataReading()).typing(name)
        origin = frame.attrs.get(ORIGIN)
        try:
            tables[name] = prepare_table(name, frame, (columns or {}).get(name), known, options, values, frame.attrs.get(NUMERIC))
        except DataError as exc:
            if not origin:
                raise
            raise DataError(f"{name} ({origin})", exc.message, exc.line, exc.column, unit=frame.attrs.get(UNIT, "row")) from None
        if name == "patients":
            known = pd.Index(tables[name]["patient_id"].to_numpy(dtype=object))  # unique: checked
    return tables


def patients_first(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda name: name != "patients")


def tables_needed(endpoint_requires: list[tuple[str, ...]], endpoint_uses: list[tuple[str, ...]] = ()) -> tuple[list[str], list[str]]:
    """(required, optional) tables for a set of endpoints: what they require, plus the cohort's
    own tables and those they use when present. Nothing else is read, so a file that sits in the
    folder unasked changes nothing."""
    required = list(ALWAYS_REQUIRED)
    for requires in endpoint_requires:
        for table in requires:
            if table not in TABLES:
                raise SpecError("endpoints", f"an endpoint requires unknown table '{table}'")
            if table not in required:
                required.append(table)
    optional = list(dict.fromkeys(t for t in (*COHORT_OPTIONAL, *(t for uses in endpoint_uses for t in uses))
                                  if t in TABLES and t not in required))
    return required, optional


def _reader(source, reading: DataReading):
    """``source.read_table`` with the spec's request for each table; a plugin source written for the
    two-argument hook (root, table) is called as before."""
    try:
        takes_request = len(inspect.signature(source.read_table).parameters) >= 3
    except (TypeError, ValueError):
        takes_request = False
    if takes_request:
        return lambda root, name: source.read_table(root, name, reading.request(name))
    return source.read_table


def load_data(source, path: Path, required: list[str], optional: list[str], columns: dict[str, dict[str, str]],
              reading: DataReading | None = None, read_table: Callable | None = None, partial: bool = False) -> CohortData:
    """Read every needed table through ``source`` and validate it; ``read_table(path, name)``
    replaces the source's own reader (one partition's, with ``partial``: a table may then be empty)."""
    reading = reading or DataReading()
    if getattr(source, "needs_path", True) and not path.exists():
        raise DataError("data", f"data folder not found: {path}")
    checksums: dict[str, str] = {}
    read_table = read_table or _reader(source, reading)

    def read():  # one table at a time, so that each raw file is released once it is typed
        for name in patients_first(required + optional):
            raw = read_table(path, name)
            if raw is None:
                if name in required:
                    raise DataError(name, f"table not found in {path} (expected {_described(source, name, reading)}); "
                                          "it is required by the chosen endpoints")
                continue
            frame, checksums[name] = raw
            if frame.empty and name in ("patients", "treatments") and not partial:
                raise DataError(name, "the table has no rows")
            yield name, frame

    tables = prepare_tables(read(), columns, reading)
    return CohortData(tables=tables, checksums=checksums, source=source.name, path=path)


def _described(source, name: str, reading: DataReading) -> str:
    own = reading.tables.get(name)
    return own if own else source.describe(name)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

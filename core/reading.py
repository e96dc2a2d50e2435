"""Reading options from the spec: ``data.tables``, ``data.read`` and ``data.values``.

They are validated with the rest of the spec (errors name ``data.read.edss.decimal``) and handed to
the source (file names, delimiter, encoding) and to the shared typing layer in core/data.py
(decimal mark, date formats, missing-value codes, recoding), so that every source gets them alike.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from .errors import SpecError, suggest

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAMPLE = dt.datetime(2019, 3, 7)


@dataclass(frozen=True)
class ReadOptions:
    """How one table's text is read (every key of ``data.read``; defaults = the canonical CSV)."""

    delimiter: str = ","  # or "auto": sniffed among , ; tab |
    encoding: str = "utf-8"
    decimal: str = "."
    date_format: tuple[str, ...] = ("%Y-%m-%d",)
    missing: tuple[str, ...] = ()

    @property
    def canonical_dates(self) -> bool:
        return self.date_format == ("%Y-%m-%d",)

    def date_expectation(self) -> str:
        shown = " or ".join(_SAMPLE.strftime(f) for f in self.date_format)
        return f"expected a date like {shown} that exists" if not self.canonical_dates else "expected a date YYYY-MM-DD that exists"


@dataclass(frozen=True)
class Request:
    """What a source is asked for one table: its own name for it (``data.tables``, None = the
    default), the reading options, and the database URL (``data.url``, sql sources)."""

    name: str | None = None
    options: ReadOptions = ReadOptions()
    url: str | None = None


READ_KEYS = tuple(f.name for f in dataclasses.fields(ReadOptions))


def _delimiter(value: Any, path: str) -> str:
    if value == "auto" or (isinstance(value, str) and len(value) == 1 and value.isascii() and value not in "\"\r\n"):
        return value
    raise SpecError(path, f"expected auto or one character such as ',' ';' '\\t' '|', got {value!r}")


def _encoding(value: Any, path: str) -> str:
    try:
        return codecs.lookup(value).name if isinstance(value, str) else ""
    except LookupError:
        return ""


def _checked_encoding(value: Any, path: str) -> str:
    name = _encoding(value, path)
    if not name:
        raise SpecError(path, f"expected a text encoding such as utf-8, cp1252, latin-1, got {value!r}")
    return name


def _decimal(value: Any, path: str) -> str:
    if value in (".", ","):
        return value
    raise SpecError(path, f"expected '.' or ',', got {value!r}")


def _date_format(value: Any, path: str) -> tuple[str, ...]:
    formats = value if isinstance(value, list) else [value]
    if not formats:
        raise SpecError(path, "expected a date format such as '%d.%m.%Y' or a list of them, got []")
    for i, fmt in enumerate(formats):
        where = f"{path}[{i}]" if isinstance(value, list) else path
        try:
            ok = isinstance(fmt, str) and dt.datetime.strptime(_SAMPLE.strftime(fmt), fmt).date() == _SAMPLE.date()
        except ValueError:
            ok = False
        if not ok:
            raise SpecError(where, f"expected a date format with day, month and year such as '%d.%m.%Y' or '%Y-%m-%d', got {fmt!r}")
    return tuple(formats)


def _missing(value: Any, path: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
        raise SpecError(path, f"expected a list of texts that mean 'no value', such as ['', 'k.A.'], got {value!r}")
    return tuple(str(v) for v in values)


_CHECKS = {"delimiter": _delimiter, "encoding": _checked_encoding, "decimal": _decimal, "date_format": _date_format, "missing": _missing}


def _options(raw: dict, path: str, base: ReadOptions) -> ReadOptions:
    values = {}
    for key, value in raw.items():
        values[key] = _CHECKS[key](value, f"{path}.{key}")
    return dataclasses.replace(base, **values)


def read_options(raw: Any, tables: tuple[str, ...]) -> dict[str, ReadOptions]:
    """``data.read`` as options per table: the top-level keys for every table, a table's own
    mapping (``edss: {decimal: "."}``) overriding them."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError("data.read", f"expected a mapping of reading options, got {raw!r}")
    common = {k: v for k, v in raw.items() if k in READ_KEYS}
    for key in raw:
        if key not in READ_KEYS and key not in tables:
            raise SpecError(f"data.read.{key}", f"unknown option or table{suggest(key, (*READ_KEYS, *tables))}; "
                                                f"options: {', '.join(READ_KEYS)}; tables: {', '.join(tables)}")
    base = _options(common, "data.read", ReadOptions())
    per_table = {}
    for table in tables:
        own = raw.get(table, {})
        if not isinstance(own, dict):
            raise SpecError(f"data.read.{table}", f"expected a mapping of reading options for {table}, got {own!r}")
        for key in own:
            if key not in READ_KEYS:
                raise SpecError(f"data.read.{table}.{key}", f"unknown option{suggest(key, READ_KEYS)}; options: {', '.join(READ_KEYS)}")
        per_table[table] = _options(own, f"data.read.{table}", base)
    return per_table


def _text(value: Any) -> str:
    """A YAML scalar as the text a cell would hold (true -> 'true', 1 -> '1')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def recodings(raw: Any, columns: dict[str, tuple[str, ...]]) -> dict[str, dict[str, dict[str, str]]]:
    """``data.values``: per table and canonical column, code -> value (all as text, recoded before
    typing: ``{"1": "M", "2": "F"}``, ``{ja: true}``)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("data.values", f"expected a mapping table -> column -> {{code: value}}, got {raw!r}")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for table, by_column in raw.items():
        if table not in columns:
            raise SpecError(f"data.values.{table}", f"unknown table{suggest(table, columns)}; tables: {', '.join(columns)}")
        if not isinstance(by_column, dict):
            raise SpecError(f"data.values.{table}", f"expected a mapping column -> {{code: value}}, got {by_column!r}")
        for column, codes in by_column.items():
            path = f"data.values.{table}.{column}"
            if column not in columns[table]:
                raise SpecError(path, f"not a canonical column of {table}{suggest(column, columns[table])}; "
                                      f"columns: {', '.join(columns[table])}")
            if not isinstance(codes, dict) or not codes:
                raise SpecError(path, f"expected a mapping code -> value such as {{'1': M, '2': F}}, got {codes!r}")
            for code, value in codes.items():
                if value is not None and not isinstance(value, str | int | float | bool):
                    raise SpecError(f"{path}.{code}", f"expected a value (text, number, true/false or null), got {value!r}")
            out.setdefault(table, {})[column] = {_text(k): (None if v is None else _text(v)) for k, v in codes.items()}
    return out


def table_names(raw: Any, tables: tuple[str, ...]) -> dict[str, str]:
    """``data.tables``: canonical table -> the source's own name (file, sheet, database table or query)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("data.tables", f"expected a mapping canonical table -> file, sheet or table name, got {raw!r}")
    for table, name in raw.items():
        if table not in tables:
            raise SpecError(f"data.tables.{table}", f"unknown table{suggest(table, tables)}; tables: {', '.join(tables)}")
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"data.tables.{table}", f"expected a file, sheet or table name (or a SELECT query), got {name!r}")
    return {str(k): v.strip() for k, v in raw.items()}


@dataclass(frozen=True)
class DataReading:
    """Everything the spec says about how to read the tables (validated)."""

    tables: dict[str, str] = dataclasses.field(default_factory=dict)
    options: dict[str, ReadOptions] = dataclasses.field(default_factory=dict)
    values: dict[str, dict[str, dict[str, str]]] = dataclasses.field(default_factory=dict)
    url: str | None = None

    def request(self, table: str) -> Request:
        return Request(name=self.tables.get(table), options=self.options.get(table, ReadOptions()), url=self.url)

    def typing(self, table: str) -> tuple[ReadOptions, dict[str, dict[str, str]]]:
        """What the shared typing layer applies to a table: its options and its recodings."""
        return self.options.get(table, ReadOptions()), self.values.get(table, {})


def data_reading(tables: Any, read: Any, values: Any, url: str | None, schema: dict[str, tuple[str, ...]]) -> DataReading:
    """Validate ``data.tables``, ``data.read`` and ``data.values`` (``schema``: table -> canonical columns)."""
    names = tuple(schema)
    return DataReading(tables=table_names(tables, names), options=read_options(read, names),
                       values=recodings(values, schema), url=url)

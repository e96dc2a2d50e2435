"""Sources whose cells arrive typed: an Excel/ODS workbook, a folder of Parquet files, a SQL database.

Each hands over the raw table (dates as dates, numbers as numbers, text as text) with where its
records came from; core/data.py maps, recodes, types and validates it exactly as it does a CSV file,
and names the sheet, file or database table and the row in its errors.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from endpointkit import hookimpl
from endpointkit.data import LINE, ORIGIN
from endpointkit.errors import DataError
from endpointkit.partitioned_dataset import column_values, is_partitioned, read_part, read_whole
from endpointkit.plugins.sources import _categorical, read_regular_file
from endpointkit.reading import Request

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")


def _missing_extra(package: str, extra: str, source: str) -> DataError:
    return DataError("data", f"the {source} source needs the package '{package}': pip install 'endpointkit[{extra}]'")


def _numbered(frame: pd.DataFrame, origin: str, first_row: int) -> pd.DataFrame:
    """Rows numbered as their origin shows them, and the origin recorded for error messages."""
    frame.columns = [str(c).strip() for c in frame.columns]
    frame[LINE] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    frame.attrs[ORIGIN] = origin
    return frame


def _from_arrow(table) -> pd.DataFrame:
    """An Arrow table as the frame the typing layer works on: text columns dictionary-encoded (each
    distinct text once, as the CSV source hands them over), dates as datetime64, numbers as numbers."""
    import pyarrow as pa

    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns[name] = _categorical(column)
        else:
            columns[name] = column.to_pandas(date_as_object=False)
    return pd.DataFrame(columns)


def _frame_digest(frame: pd.DataFrame) -> str:
    """A checksum of a table's content (a database has no file to hash): each column's buffers as
    they are (codes and texts of dictionary-encoded text), so no copy of the table as text is made."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            digest.update(np.asarray(column.cat.codes).tobytes())
            digest.update(pd.util.hash_pandas_object(pd.Series(column.cat.categories), index=False).to_numpy().tobytes())
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biufmM":
            digest.update(column.dtype.str.encode() + column.to_numpy().tobytes())
        else:
            digest.update(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())
    return digest.hexdigest()


class Workbook:
    """An Excel (``.xlsx``, ``.xlsm``, ``.xls``) or OpenDocument (``.ods``) workbook, one sheet per
    table, read by python-calamine (Rust; fast, no formula evaluation, reads every format)."""

    name = "excel"
    description = "An .xlsx/.xlsm/.ods workbook (data.path), one sheet per canonical table (named as the table, or by data.tables)."

    def describe(self, table: str) -> str:
        return f"a sheet named '{table}'"

    def read_table(self, root: Path, table: str, request: Request | None = None) -> tuple[pd.DataFrame, str] | None:
        request = request or Request()
        if not root.is_file() or root.suffix.lower() not in WORKBOOK_SUFFIXES:
            raise DataError("data", f"expected a workbook file ({', '.join(WORKBOOK_SUFFIXES)}) as data.path, got {root}")
        try:
            from python_calamine import CalamineWorkbook
        except ImportError:
            raise _missing_extra("python-calamine", "excel", "excel") from None
        raw = read_regular_file(root, table)
        sheet = request.name or table
        try:
            workbook = CalamineWorkbook.from_filelike(io.BytesIO(raw))
        except Exception as exc:  # calamine's own error types: a damaged or non-workbook file
            raise DataError("data", f"cannot read the workbook {root.name}: {exc}") from None
        if sheet not in workbook.sheet_names:
            if request.name:
                raise DataError(table, f"no sheet '{sheet}' in {root.name} (named in data.tables.{table}); sheets: {', '.join(workbook.sheet_names)}")
            return None
        rows = workbook.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
        while rows and all(cell in ("", None) for cell in rows[-1]):
            rows.pop()
        start = next((i for i, row in enumerate(rows) if any(cell not in ("", None) for cell in row)), None)
        if start is None:
            raise DataError(table, f"sheet '{sheet}' of {root.name} is empty; expected a header row with the column names")
        header = [str(c).strip() for c in rows[start]]
        while header and not header[-1]:
            header.pop()
        body = rows[start + 1:]  # calamine's rows are as wide as the used area: cut only past the header
        if len(rows[start]) > len(header):
            body = [row[:len(header)] for row in body]
        frame = pd.DataFrame(body, columns=header, dtype=object).replace({"": None})
        frame = frame[frame.notna().any(axis=1)] if len(frame) else frame  # a blank row is no record
        lines = frame.index.to_numpy() + start + 2  # sheet rows count from 1, the header is row start + 1
        frame = _numbered(frame.reset_index(drop=True), f"sheet '{sheet}'", 0)
        frame[LINE] = lines.astype(np.int64)
        if len(set(header)) != len(header):
            raise DataError(f"{table} (sheet '{sheet}')", "a column name appears twice in the header row; expected unique names", line=start + 1, unit="row")
        return frame, hashlib.sha256(raw).hexdigest()


class ParquetFolder:
    """A folder of Parquet files, ``<table>.parquet`` (or the names in ``data.tables``), or a dataset
    written by ``endpointkit partition`` (read whole, or one partition at a time by a run's tasks)."""

    name = "parquet"
    description = ("A folder of Parquet files, one per canonical table (patients.parquet, ... or the names in data.tables), "
                   "or a partitioned dataset written by endpointkit partition.")

    def describe(self, table: str) -> str:
        return f"{table}.parquet"

    def read_table(self, root: Path, table: str, request: Request | None = None) -> tuple[pd.DataFrame, str] | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        request = request or Request()
        if root.is_file():
            raise DataError("data", f"expected a folder of Parquet files, got a file: {root}")
        if is_partitioned(root):  # written by endpointkit partition: every partition, in the original order
            return read_whole(root, table)
        path = root / (request.name or f"{table}.parquet")
        if not path.exists():
            if request.name:
                raise DataError(table, f"file not found: {path} (named in data.tables.{table})")
            return None
        raw = read_regular_file(path, table)
        try:
            arrow = pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(table, f"{path.name} is not a Parquet file: {exc}") from None
        return _numbered(_from_arrow(arrow), path.name, 1), hashlib.sha256(raw).hexdigest()

    def reads_partitions(self, root: Path) -> bool:
        """A dataset written by ``endpointkit partition`` is read one partition at a time."""
        return is_partitioned(root)

    def read_partition(self, root: Path, table: str, request: Request | None, part: int, parts: int) -> tuple[pd.DataFrame, str] | None:
        """Partition ``part`` of ``parts`` of a partitioned dataset's table (raw, as its source gave it)."""
        return read_part(root, table, part, parts)

    def column_values(self, root: Path, table: str, columns: list[str]) -> dict[str, pd.Series]:
        """The distinct raw values of some columns over the whole table (all partitions)."""
        return column_values(root, table, columns)


_QUERY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class SqlDatabase:
    """Any database SQLAlchemy reaches (``data.url``): a table, or a SELECT query, per canonical table."""

    name = "sql"
    description = "A SQL database (data.url, any SQLAlchemy URL): a table named as the canonical table, or a table or SELECT query in data.tables."
    needs_path = False

    def describe(self, table: str) -> str:
        return f"a database table named '{table}'"

    def read_table(self, root: Path, table: str, request: Request | None = None) -> tuple[pd.DataFrame, str] | None:
        request = request or Request()
        if not request.url:
            raise DataError("data", "the sql source needs data.url, e.g. sqlite:///registry.db or postgresql://user@host/db")
        try:
            import sqlalchemy as sa
        except ImportError:
            raise _missing_extra("sqlalchemy", "sql", "sql") from None
        what = request.name or table
        try:
            engine = sa.create_engine(request.url)
            with engine.connect() as connection:
                if _QUERY.match(what):
                    statement, origin = sa.text(what), "query"
                else:
                    if not sa.inspect(connection).has_table(what):
                        if request.name:
                            raise DataError(table, f"no database table '{what}' (named in data.tables.{table})")
                        return None
                    statement, origin = sa.select(sa.text("*")).select_from(sa.table(what)), f"database table '{what}'"
                frame = _fetch(connection, statement)
        except DataError:
            raise
        except ImportError as exc:  # the URL's driver (psycopg2, duckdb_engine, ...) is not installed
            raise DataError("data", f"data.url: the database driver is not installed: {exc}") from None
        except sa.exc.ArgumentError as exc:
            raise DataError("data", f"data.url: not a database URL: {exc}") from None
        except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
            cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
            detail = str(getattr(cause, "orig", None) or cause).splitlines()[0]
            raise DataError(table, f"cannot read {what!r} from the database: {detail}") from None
        finally:
            if "engine" in locals():
                engine.dispose()
        return _numbered(frame, origin, 1), _frame_digest(frame)


def _fetch(connection, statement) -> pd.DataFrame:
    """The result as a frame: DuckDB hands it over columnar (Arrow), ten times faster than fetching
    rows; every other database through pandas' ``read_sql_query``."""
    if connection.dialect.name == "duckdb":

        sql = str(statement.compile(connection, compile_kwargs={"literal_binds": True}))
        with warnings.catch_warnings():  # "an extra copy of the rows": still ten times faster than rows
            warnings.simplefilter("ignore", UserWarning)
            arrow = connection.connection.driver_connection.execute(sql).to_arrow_table()
        return _from_arrow(arrow)
    return pd.read_sql_query(statement, connection)


@hookimpl
def register_sources():
    return [Workbook(), ParquetFolder(), SqlDatabase()]

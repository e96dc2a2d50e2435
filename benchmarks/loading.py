"""Loading the same simulated registry from each source: CSV, Parquet, DuckDB, SQLite (100,000
patients) and an xlsx workbook (10,000 patients). Times ``load_data`` for all seven tables (read,
map, type, validate), in-process after a warm-up, best of ``--repeat`` runs.

``python benchmarks/loading.py [--patients 100000] [--xlsx-patients 10000] [--repeat 3]``
(copies are written once to the git-ignored benchmarks/data/).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TABLES, ensure_registry  # noqa: E402

from endpointkit.data import TABLES as SCHEMA  # noqa: E402
from endpointkit.data import load_data  # noqa: E402
from endpointkit.manager import get_plugin_manager  # noqa: E402
from endpointkit.reading import DataReading, ReadOptions  # noqa: E402


def typed(folder: Path, table: str) -> pd.DataFrame:
    frame = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False, na_values=[""])
    for column in SCHEMA[table].dates:
        frame[column] = pd.to_datetime(frame[column], format="%Y-%m-%d")
    for column in SCHEMA[table].numbers:
        frame[column] = pd.to_numeric(frame[column])
    return frame


def copies(folder: Path, xlsx_folder: Path) -> dict[str, Path]:
    out = {"parquet": folder / "parquet", "duckdb": folder / "registry.duckdb", "sqlite": folder / "registry.db",
           "xlsx": xlsx_folder / "registry.xlsx"}
    if not out["parquet"].exists():
        out["parquet"].mkdir()
        for table in TABLES:
            typed(folder, table).to_parquet(out["parquet"] / f"{table}.parquet", index=False)
    if not out["duckdb"].exists():
        import duckdb

        connection = duckdb.connect(str(out["duckdb"]))
        for table in TABLES:
            frame = typed(folder, table)
            connection.register("frame", frame)
            connection.execute(f"CREATE TABLE {table} AS SELECT * FROM frame")
            connection.unregister("frame")
        connection.close()
    if not out["sqlite"].exists():
        with sqlite3.connect(out["sqlite"]) as connection:
            for table in TABLES:
                pd.read_csv(folder / f"{table}.csv", dtype=str).to_sql(table, connection, index=False)
    if not out["xlsx"].exists():
        with pd.ExcelWriter(out["xlsx"], engine="openpyxl") as writer:
            for table in TABLES:
                typed(xlsx_folder, table).to_excel(writer, sheet_name=table, index=False)
    return out


def best(load, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--xlsx-patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder, _ = ensure_registry(args.patients)
    xlsx_folder, _ = ensure_registry(args.xlsx_patients)
    paths = copies(folder, xlsx_folder)
    sources = get_plugin_manager(entrypoints=False).sources.items
    required, optional = list(TABLES), []
    iso = DataReading(options={t: ReadOptions() for t in TABLES})

    def loader(source: str, path: Path, url: str | None = None):
        reading = DataReading(options=iso.options, url=url)
        return lambda: load_data(sources[source], path, required, optional, {}, reading)

    cases = [
        ("csv", args.patients, loader("csv", folder)),
        ("parquet", args.patients, loader("parquet", paths["parquet"])),
        ("duckdb (sql)", args.patients, loader("sql", folder, f"duckdb:///{paths['duckdb']}")),
        ("sqlite (sql)", args.patients, loader("sql", folder, f"sqlite:///{paths['sqlite']}")),
        ("csv", args.xlsx_patients, loader("csv", xlsx_folder)),
        ("xlsx (excel)", args.xlsx_patients, loader("excel", paths["xlsx"])),
    ]
    print(f"| source | patients | rows | load seconds (best of {args.repeat}) |")
    print("|---|---:|---:|---:|")
    for name, n, load in cases:
        data = load()  # warm-up, and the row count
        rows = sum(len(t) for t in data.tables.values())
        print(f"| {name} | {n:,} | {rows:,} | {best(load, args.repeat):.2f} |", flush=True)


if __name__ == "__main__":
    main()

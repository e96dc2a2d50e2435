"""The built-in sources: a German-style CSV export, an Excel workbook, Parquet files and SQL databases
(SQLite, DuckDB, PostgreSQL) holding the demo's records give the demo's results, and a bad value in
any of them is named by its sheet, file or database table and row."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from paths import DEMO_SPEC

EXAMPLES = DEMO_SPEC.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import build_examples  # noqa: E402  (the examples' own builder: the typed tables)


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory) -> pd.DataFrame:
    from endpointkit.cli import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["run", str(DEMO_SPEC), "-o", str(out), "--quiet"]) == 0
    return pd.read_csv(out / "results.csv")


def run(cli, spec: Path, out: Path) -> pd.DataFrame:
    status, _, err = cli("run", spec, "-o", out, "--quiet")
    assert status == 0, err
    return pd.read_csv(out / "results.csv")


@pytest.mark.parametrize("example", ["german_export", "excel", "sqlite", "parquet"])
def test_each_example_export_gives_the_demo_results(cli, tmp_path, demo_results, example):
    results = run(cli, EXAMPLES / f"{example}.yaml", tmp_path)
    pd.testing.assert_frame_equal(results, demo_results)


def test_the_example_files_are_what_the_builder_writes(tmp_path):
    """The committed CSV export is reproducible from the demo data by build_examples.py."""
    build_examples.write_csv(tmp_path)
    for path in (EXAMPLES / "german_export").iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def _spec_for(tmp_path: Path, data: dict) -> Path:
    raw = yaml.safe_load((EXAMPLES / "german_export.yaml").read_text())
    raw.pop("extends")
    base = yaml.safe_load(DEMO_SPEC.read_text())
    base["data"] = {**raw["data"], **data}
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump(base, sort_keys=False, allow_unicode=True))
    return spec


SHEETS = {table: name for table, (name, _) in build_examples.GERMAN.items()}


def test_duckdb_through_its_sqlalchemy_url_gives_the_demo_results(cli, tmp_path, demo_results):
    duckdb = pytest.importorskip("duckdb")
    database = tmp_path / "registry.duckdb"
    connection = duckdb.connect(str(database))
    for table, name in SHEETS.items():
        frame = build_examples.typed(table)  # DATE and DOUBLE columns: typed cells
        connection.register("frame", frame)
        connection.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')
        connection.unregister("frame")
    connection.close()
    spec = _spec_for(tmp_path, {"source": "sql", "url": f"duckdb:///{database}", "tables": SHEETS,
                                "read": {"missing": ["", "k.A."]}})
    pd.testing.assert_frame_equal(run(cli, spec, tmp_path / "out"), demo_results)


def test_a_table_may_be_a_select_query(cli, tmp_path, demo_results):
    shutil.copy(EXAMPLES / "registry.db", tmp_path / "registry.db")
    tables = {**SHEETS, "relapses": "SELECT * FROM Schuebe ORDER BY PatNr, Beginn"}
    spec = _spec_for(tmp_path, {"source": "sql", "url": "sqlite:///registry.db", "tables": tables,
                                "read": {"date_format": "%Y-%m-%d", "missing": ["", "k.A."]}})
    pd.testing.assert_frame_equal(run(cli, spec, tmp_path / "out"), demo_results)


def _refused(cli, spec: Path, out: Path, *fragments: str) -> None:
    status, _, err = cli("run", spec, "-o", out, "--quiet")
    assert status == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err}"


def test_a_bad_value_in_a_workbook_names_the_sheet_and_row(cli, tmp_path):
    frames = {table: build_examples.typed(table) for table in SHEETS}
    frames["edss"].loc[2, "EDSS"] = 0.5  # the sheet's row 4 (header row 1)
    with pd.ExcelWriter(tmp_path / "registry.xlsx", engine="openpyxl") as writer:
        for table, frame in frames.items():
            frame.to_excel(writer, sheet_name=SHEETS[table], index=False)
    spec = _spec_for(tmp_path, {"source": "excel", "path": "registry.xlsx", "tables": SHEETS})
    _refused(cli, spec, tmp_path / "out", "edss (sheet 'EDSS'), row 4, column 'score': expected an EDSS score on the grid")


def test_a_missing_sheet_is_refused_listing_the_sheets(cli, tmp_path):
    shutil.copy(EXAMPLES / "registry.xlsx", tmp_path / "registry.xlsx")
    spec = _spec_for(tmp_path, {"source": "excel", "path": "registry.xlsx", "tables": {**SHEETS, "edss": "Edss-Werte"}})
    _refused(cli, spec, tmp_path / "out", "edss: no sheet 'Edss-Werte' in registry.xlsx (named in data.tables.edss); sheets: Patienten")


def test_a_bad_value_in_a_database_names_the_table_and_row(cli, tmp_path):
    shutil.copy(EXAMPLES / "registry.db", tmp_path / "registry.db")
    with sqlite3.connect(tmp_path / "registry.db") as connection:
        connection.execute("UPDATE Patienten SET Geschlecht = '3' WHERE PatNr = 'P02'")
    spec = _spec_for(tmp_path, {"source": "sql", "url": "sqlite:///registry.db", "tables": SHEETS,
                                "read": {"date_format": "%Y-%m-%d", "missing": ["", "k.A."]}})
    _refused(cli, spec, tmp_path / "out", "patients (database table 'Patienten'), row 2, column 'sex': expected a sex coded F or M",
             "values not recognised: '3' (1 row)")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"source": "sql"}, "the sql source needs data.url"),
        ({"source": "sql", "url": "nonsense"}, "data.url: not a database URL"),
        ({"source": "sql", "url": "sqlite:///registry.db", "tables": {"patients": "Kranke"}}, "no database table 'Kranke'"),
        ({"source": "sql", "url": "sqlite:///registry.db", "tables": {"patients": "SELECT * FROM Nirgends"}},
         "patients: cannot read 'SELECT * FROM Nirgends' from the database: no such table: Nirgends"),
        ({"source": "excel", "path": "german_export"}, "expected a workbook file"),
        ({"source": "parquet", "path": "registry.xlsx"}, "expected a folder of Parquet files"),
    ],
)
def test_a_source_setting_that_cannot_work_is_refused(cli, tmp_path, data, expected):
    shutil.copy(EXAMPLES / "registry.db", tmp_path / "registry.db")
    shutil.copy(EXAMPLES / "registry.xlsx", tmp_path / "registry.xlsx")
    shutil.copytree(EXAMPLES / "german_export", tmp_path / "german_export")
    _refused(cli, _spec_for(tmp_path, data), tmp_path / "out", expected)


def test_a_parquet_date_column_holding_numbers_is_refused(cli, tmp_path):
    shutil.copytree(EXAMPLES / "parquet", tmp_path / "parquet")
    frame = build_examples.typed("edss")
    frame["Datum"] = frame["Datum"].dt.year  # an integer column where dates belong
    frame.to_parquet(tmp_path / "parquet" / "EDSS.parquet", index=False)
    tables = {table: f"{name}.parquet" for table, name in SHEETS.items()}
    spec = _spec_for(tmp_path, {"source": "parquet", "path": "parquet", "tables": tables})
    _refused(cli, spec, tmp_path / "out", "edss (EDSS.parquet), row 1, column 'date': expected a date like 07.03.2019 that exists, got 2019")


# --------------------------------------------------------------------------- a real PostgreSQL server

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on a free local port (Debian's postgresql package); a machine
    without one skips the test, saying so in the pytest summary."""
    import os
    import socket
    import tempfile

    if not PG_BIN:
        pytest.skip("no PostgreSQL server installed (Debian package postgresql): the PostgreSQL source test did not run")
    pytest.importorskip("psycopg2", reason="psycopg2 not installed: the PostgreSQL source test did not run")
    root = Path(tempfile.mkdtemp(prefix="endpointkit-pg-"))  # not under pytest's 0700 root: the server's user reads it
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # the server refuses to run as root
    if user:
        shutil.chown(root, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, bin_dir = root / "data", PG_BIN[-1]
    try:
        for command in ([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                        [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                         "-o", f"-p {port} -k {root} -h 127.0.0.1", "start"]):
            done = subprocess.run([*user, *command], capture_output=True, text=True)
            if done.returncode:
                shutil.rmtree(root, ignore_errors=True)
                pytest.skip(f"could not start a PostgreSQL server ({command[0]}: {(done.stderr or done.stdout).strip()[:200]}): "
                            "the PostgreSQL source test did not run")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_gives_the_demo_results(cli, tmp_path, demo_results, postgres):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres)
    with engine.begin() as connection:
        for table, name in SHEETS.items():
            build_examples.typed(table).to_sql(name, connection, index=False, if_exists="replace")
    engine.dispose()
    spec = _spec_for(tmp_path, {"source": "sql", "url": postgres, "tables": SHEETS, "read": {"missing": ["", "k.A."]}})
    pd.testing.assert_frame_equal(run(cli, spec, tmp_path / "out"), demo_results)

"""Build the "bring your own data" examples from the demo data (specs/data/ivig_nmosd).

The same records, written as a hospital would export them:

* ``german_export/``: semicolon-separated cp1252 CSV files with German names (Patienten.csv, ...),
  dates dd.mm.yyyy, decimal commas, sex coded 1/2, ja/nein, 'k.A.' for unknown, stop reason 'Rückfall';
* ``registry.xlsx``: the same tables as sheets of a workbook, dates as Excel date cells;
* ``registry.db``: the same tables in a SQLite database (dates as ISO text, as SQLite stores them);
* ``parquet/``: the same tables as typed Parquet files.

Each is read by a short spec next to it (german_export.yaml, excel.yaml, sqlite.yaml, parquet.yaml)
and gives the demo's results. Run ``python specs/examples/build_examples.py`` to rebuild them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "data" / "ivig_nmosd"

# canonical table -> (German name, canonical column -> German column)
GERMAN = {
    "patients": ("Patienten", {"patient_id": "PatNr", "sex": "Geschlecht", "birth_date": "Geburtsdatum",
                               "onset_date": "Erstmanifestation", "diagnosis": "Diagnose",
                               "antibody_status": "Antikoerper", "last_followup_date": "Letzter Kontakt"}),
    "treatments": ("Therapien", {"patient_id": "PatNr", "treatment": "Therapie", "start_date": "Beginn",
                                 "end_date": "Ende", "stop_reason": "Abbruchgrund"}),
    "administrations": ("Infusionen", {"patient_id": "PatNr", "treatment": "Therapie", "date": "Datum", "dose": "Dosis g/kg"}),
    "relapses": ("Schuebe", {"patient_id": "PatNr", "onset_date": "Beginn", "confirmed": "Bestaetigt",
                             "severity": "Schwere", "pseudo": "Pseudoschub"}),
    "edss": ("EDSS", {"patient_id": "PatNr", "date": "Datum", "score": "EDSS"}),
    "titers": ("Titer", {"patient_id": "PatNr", "date": "Datum", "titer": "Titer", "assay": "Test"}),
    "adverse_events": ("Nebenwirkungen", {"patient_id": "PatNr", "onset_date": "Beginn", "term": "Ereignis",
                                          "grade": "Grad", "serious": "Schwerwiegend", "related": "Zusammenhang",
                                          "action": "Massnahme", "treatment": "Therapie"}),
}
DATES = {"patients": ["birth_date", "onset_date", "last_followup_date"], "treatments": ["start_date", "end_date"],
         "administrations": ["date"], "relapses": ["onset_date"], "edss": ["date"], "titers": ["date"],
         "adverse_events": ["onset_date"]}
NUMBERS = {"administrations": ["dose"], "edss": ["score"], "adverse_events": ["grade"]}
YES_NO = {"relapses": ["confirmed", "pseudo"], "adverse_events": ["serious", "related"]}


def german(table: str) -> pd.DataFrame:
    """A demo table with the export's codes (still canonical column names)."""
    frame = pd.read_csv(DEMO / f"{table}.csv", dtype=str, keep_default_na=False)
    if table == "patients":
        frame["sex"] = frame["sex"].map({"F": "2", "M": "1"})
    if table == "treatments":
        frame["stop_reason"] = frame["stop_reason"].replace({"relapse": "Rückfall"})
        frame["end_date"] = frame["end_date"].replace({"": "k.A."})
    for column in YES_NO.get(table, []):
        frame[column] = frame[column].replace({"yes": "ja", "no": "nein", "true": "ja", "false": "nein"})
    return frame


def typed(table: str) -> pd.DataFrame:
    """The export with real dates and numbers (what a workbook, database or Parquet file holds)."""
    frame = german(table).replace({"": None, "k.A.": None})
    for column in DATES[table]:
        frame[column] = pd.to_datetime(frame[column], format="%Y-%m-%d")
    for column in NUMBERS.get(table, []):
        frame[column] = pd.to_numeric(frame[column])
    return frame.rename(columns=GERMAN[table][1])


def write_csv(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for table, (name, columns) in GERMAN.items():
        frame = german(table)
        for column in DATES[table]:
            dates = pd.to_datetime(frame[column].replace({"k.A.": None, "": None}), format="%Y-%m-%d")
            frame[column] = dates.dt.strftime("%d.%m.%Y").where(dates.notna(), frame[column])
        for column in NUMBERS.get(table, []):
            frame[column] = frame[column].str.replace(".", ",", regex=False)
        frame.rename(columns=columns).to_csv(folder / f"{name}.csv", sep=";", index=False, encoding="cp1252", lineterminator="\r\n")


def write_workbook(path: Path) -> None:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for table, (name, _) in GERMAN.items():
            typed(table).to_excel(writer, sheet_name=name, index=False)


def write_sqlite(path: Path) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        for table, (name, _) in GERMAN.items():
            frame = typed(table)
            for column in DATES[table]:
                frame[GERMAN[table][1][column]] = frame[GERMAN[table][1][column]].dt.strftime("%Y-%m-%d")
            frame.to_sql(name, connection, index=False)


def write_parquet(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for table, (name, _) in GERMAN.items():
        typed(table).to_parquet(folder / f"{name}.parquet", index=False)


def main() -> None:
    write_csv(HERE / "german_export")
    write_workbook(HERE / "registry.xlsx")
    write_sqlite(HERE / "registry.db")
    write_parquet(HERE / "parquet")


if __name__ == "__main__":
    main()

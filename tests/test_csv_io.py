"""Reading and writing CSV: the Arrow paths give what pandas' own reader and writer would.

The CSV source reads with Arrow (text dictionary-encoded) and falls back to pandas for files Arrow
refuses; frames are written with Arrow's C++ writer. These tests hold both paths to pandas called
directly, on files with the usual mess: a byte-order mark, CRLF line ends, blank lines, leading
spaces, quoted commas, quotes and line breaks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from endpointkit.data import LINE, PATIENT_ROW, prepare_table
from endpointkit.errors import DataError
from endpointkit.output import _write_csv
from endpointkit.plugins.sources import CsvFolder

MESSY = (
    "\ufeffpatient_id, sex ,birth_date,group\r\n"
    "P1,F,1980-01-02, a\r\n"
    "\r\n"
    " P2,, 1975-05-06,\"b, c\"\r\n"
    "P3,M,,\"say \"\"hi\"\"\"\r\n"
    "P4, ,1990-12-31,\"two\r\nlines\"\r\n"
)


def pandas_reference(path) -> pd.DataFrame:
    """What pandas itself reads from the file (every value as text)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
                        skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    return frame


PLAIN = "patient_id,sex,birth_date\n\nP1, F,1980-01-02\n P2,,\n\n"


@pytest.mark.parametrize("text", [MESSY, MESSY.replace("\r\n", "\n"), PLAIN],
                         ids=["crlf-quoted", "lf-quoted", "no-quotes"])
def test_the_csv_source_reads_what_pandas_reads(tmp_path, text):
    (tmp_path / "patients.csv").write_bytes(text.encode("utf-8"))
    frame, _ = CsvFolder().read_table(tmp_path, "patients")
    expected = pandas_reference(tmp_path / "patients.csv")
    got = prepare_table("patients", frame.drop(columns=[LINE]))
    want = prepare_table("patients", expected)
    pd.testing.assert_frame_equal(got.drop(columns=[LINE]), want.drop(columns=[LINE]), check_dtype=False)


def test_record_lines_count_blank_lines_and_quoted_line_breaks(tmp_path):
    (tmp_path / "patients.csv").write_bytes(MESSY.encode("utf-8"))
    frame, _ = CsvFolder().read_table(tmp_path, "patients")
    assert frame[LINE].tolist() == [2, 4, 5, 6]  # line 3 is blank; P4's record starts on line 6


def test_line_numbers_of_a_plain_file_are_its_row_numbers(tmp_path):
    rows = "".join(f"P{i},F,1980-01-01\n" for i in range(1, 1001))
    (tmp_path / "patients.csv").write_text("patient_id,sex,birth_date\n" + rows)
    frame, _ = CsvFolder().read_table(tmp_path, "patients")
    assert frame[LINE].tolist() == list(range(2, 1002))


@pytest.mark.parametrize("row, found", [("P2,F,1980-01-01,extra", 4), ("P2,F", 2)])
def test_a_ragged_row_is_named_by_its_line(tmp_path, row, found):
    (tmp_path / "patients.csv").write_text(f"patient_id,sex,birth_date\nP1,F,1980-01-01\n\n{row}\nP3,M,1970-01-01\n")
    with pytest.raises(DataError) as error:
        CsvFolder().read_table(tmp_path, "patients")
    assert error.value.line == 4
    assert f"expected 3 fields as in the header, found {found}" in str(error.value)


def test_a_line_of_spaces_counts_as_blank(tmp_path):
    (tmp_path / "patients.csv").write_text("patient_id,sex\nP1,F\n   \nP2,M\n")
    frame, _ = CsvFolder().read_table(tmp_path, "patients")
    assert frame["patient_id"].tolist() == ["P1", "P2"]
    assert frame[LINE].tolist() == [2, 4]


def test_written_csv_reads_back_to_the_same_values(tmp_path):
    frame = pd.DataFrame({
        "patient_id": ["P1", "P2", "P3"],
        "text": ["plain", "comma, quote \" and\nbreak", None],
        "ratio": [1 / 3, math.nan, 2.5e-12],
        "count": [3.0, 10240.0, -1.0],
        "flag": [True, False, True],
        "maybe": pd.array([True, None, False], dtype="boolean"),
        "date": pd.to_datetime(["2020-01-02", None, "2021-12-31"]),
        "n": np.array([1, 2, 3], dtype=np.int64),
    })
    path = tmp_path / "out.csv"
    _write_csv(frame, str(path))
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert back["patient_id"].tolist() == ["P1", "P2", "P3"]
    assert back["text"].tolist()[:2] == ["plain", "comma, quote \" and\nbreak"] and pd.isna(back["text"][2])
    assert back["ratio"][0] == 1 / 3 and math.isnan(back["ratio"][1]) and back["ratio"][2] == 2.5e-12  # exact
    assert back["count"].tolist() == [3.0, 10240.0, -1.0]
    assert back["flag"].tolist() == [True, False, True]
    assert back["maybe"].tolist()[0] is True and pd.isna(back["maybe"][1])
    assert path.read_text().splitlines()[1].split(",")[6] == "2020-01-02"  # a date, no time
    assert back["n"].tolist() == [1, 2, 3]


def test_written_csv_quotes_only_when_a_value_needs_it(tmp_path):
    path = tmp_path / "out.csv"
    _write_csv(pd.DataFrame({"a b": ["x", "y"], "flag": [True, False]}), str(path))
    assert path.read_text() == "a b,flag\nx,True\ny,False\n"


def test_a_header_with_a_quoted_line_break_is_still_read(tmp_path):
    (tmp_path / "patients.csv").write_text('patient_id,"sex\nof patient"\nP1,F\n')
    frame, _ = CsvFolder().read_table(tmp_path, "patients")
    assert frame["patient_id"].tolist() == ["P1"]
    assert frame[LINE].tolist() == [3]


def test_a_source_may_hand_over_ids_as_numbers():
    patients = prepare_table("patients", pd.DataFrame({"patient_id": [1, 2], "sex": ["F", "M"]}))
    known = pd.Index(patients["patient_id"].to_numpy(dtype=object))
    treatments = prepare_table("treatments", pd.DataFrame(
        {"patient_id": [2, 1], "treatment": ["IVIG", "IVIG"], "start_date": ["2020-01-01", "2021-01-01"]}), known_ids=known)
    assert patients["patient_id"].tolist() == ["1", "2"]
    assert treatments[PATIENT_ROW].tolist() == [1, 0]


def _mixed_frame(rows: int = 25) -> pd.DataFrame:
    """Every kind of column a per-patient file holds, with what differs between slices of 7 rows:
    a timestamp at midnight except in the last slice, a comma (which quotes all text) only in the
    third slice, a column blank in the first slice only, formula-like text, missing values."""
    index = np.arange(rows)
    midnight = pd.to_datetime("2020-01-01") + pd.to_timedelta(index, unit="D")
    late = pd.Series(midnight).where(index < rows - 1, pd.Timestamp("2021-03-04 10:30"))
    return pd.DataFrame({
        "patient_id": pd.Series([f"P{i:03d}" for i in index], dtype="str"),
        "dates": pd.Series(midnight).where(index % 5 != 0),
        "late": late,
        "flag": index % 2 == 0,
        "maybe": pd.array([None if i % 4 == 0 else i % 3 == 0 for i in index], dtype="boolean"),
        "count": pd.array([None if i % 6 == 0 else i for i in index], dtype="Int64"),
        "value": np.where(index % 7 == 3, np.nan, index / 3),
        "kind": pd.Categorical(np.array(["a", "b", "=c"])[index % 3]),
        "note": [("a, b" if i == 15 else "=cmd" if i == 9 else None if i % 2 else "plain") for i in index],
        "later": [None if i < 7 else "text" for i in index],
    })


@pytest.mark.parametrize("rows", [25, 6])
def test_a_large_frame_written_in_slices_gives_the_text_written_whole(tmp_path, monkeypatch, rows):
    from endpointkit import output

    frame = _mixed_frame(rows)
    _write_csv(frame, str(tmp_path / "whole.csv"))
    monkeypatch.setattr(output, "SLICE_ROWS", 7)
    _write_csv(frame, str(tmp_path / "sliced.csv"))
    _write_csv(frame.drop(columns="later"), str(tmp_path / "sliced_same_types.csv"))
    monkeypatch.setattr(output, "SLICE_ROWS", 10**9)
    _write_csv(frame.drop(columns="later"), str(tmp_path / "whole_same_types.csv"))
    assert (tmp_path / "sliced.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert (tmp_path / "sliced_same_types.csv").read_bytes() == (tmp_path / "whole_same_types.csv").read_bytes()
    text = (tmp_path / "whole.csv").read_text()
    if rows == 25:
        assert "2021-03-04 10:30:00" in text and "2020-01-02 00:00:00" in text  # one late time: the column keeps times
        assert '"\'=cmd"' in text  # a comma in one slice quotes every text value of the file

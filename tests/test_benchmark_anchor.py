"""The DuckDB anchor of the ARR benchmark (benchmarks/arr_duckdb.py) computes the same per-patient
frame as ``endpointkit run specs/registry.yaml --only arr``: it stays an independent check of the
arr endpoint, on simulated data and on a registry written to hit each cohort and ARR rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from paths import ROOT, SPECS

duckdb = pytest.importorskip("duckdb")

SPEC = SPECS / "registry.yaml"


def _anchor():
    spec = importlib.util.spec_from_file_location("arr_duckdb", ROOT / "benchmarks" / "arr_duckdb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


anchor = _anchor()


def _run_arr(cli, data: Path, out: Path) -> None:
    status, _, err = cli("run", SPEC, "--data", data, "--only", "arr", "-o", out, "--quiet")
    assert status == 0, err


def _differences(data: Path, out: Path) -> tuple[list[str], duckdb.DuckDBPyConnection]:
    con, numbers = anchor.compute(data, None)
    return anchor.differences(con, out) + anchor.summary_differences(numbers, out), con


def test_anchor_matches_endpointkit_on_a_simulated_registry(cli, tmp_path):
    data, out = tmp_path / "registry", tmp_path / "out"
    status, _, err = cli("simulate", "--patients", "300", "--seed", "7", "-o", data)
    assert status == 0, err
    _run_arr(cli, data, out)
    problems, con = _differences(data, out)
    assert problems == []
    assert con.execute("SELECT count(*) FROM arr").fetchone()[0] == 300


# One patient per rule (dates as in the CSV): the expected windows and counts are worked out by hand.
EDGE_CASES = {
    "patients": """patient_id,sex,birth_date,onset_date,last_followup_date
P1,F,1980-01-01,2010-01-01,2020-01-01
P2,F,1975-06-01,,2013-04-15
P3,M,1970-01-01,2005-01-01,2019-01-01
P4,F,1850-01-01,2016-05-01,
P5,M,1982-02-02,,2019-01-01
P6,F,1979-09-09,2008-08-08,2016-01-01
P7,F,1990-01-01,2099-01-01,2018-01-01
""",
    "treatments": """patient_id,treatment,start_date,end_date,stop_reason
P1,IVIG,2015-01-01,2017-01-01,patient choice
P1,IVIG,2017-06-01,2018-01-01,
P3,azathioprine,2010-01-01,,
P4, IVIG,2016-05-01,,
P5,Ivig,2015-01-01,9999-12-31,
P6,IVIG,2014-01-01,2014-01-01,
P7,IVIG,2013-01-01,2014-01-01,
""",
    "administrations": """patient_id,treatment,date,dose
P2,ivig,2013-01-01,30
P2,ivig,2013-02-01,30
P2,ivig,2013-03-01,30
P4,IVIG,2016-05-01,30
P4,IVIG,2016-06-01,30
P1,rituximab,2021-01-01,1000
""",
    "relapses": """patient_id,onset_date,confirmed,severity,pseudo
P1,2010-01-01,true,severe,false
P1,2012-01-01,true,mild,false
P1,2012-01-20,true,mild,false
P1,2015-01-01,,,
P1,2016-01-01,true,mild,true
P1,2016-06-01,true,mild,no
P1,2018-01-01,true,mild,false
P2,2011-03-01,,,
P2,2011-03-25,,,
P2,2011-04-05,,,
P2,2014-02-01,,,
P2,2013-04-15,,,
P4,1990-01-01,,,
P4,2017-02-01,,,
P7,1989-01-01,,,
P7,2012-05-05,,,
P7,2013-06-01,,,yes
""",
}


def test_anchor_matches_endpointkit_on_each_cohort_and_relapse_rule(cli, tmp_path):
    data, out = tmp_path / "edge", tmp_path / "out"
    data.mkdir()
    for table, text in EDGE_CASES.items():
        (data / f"{table}.csv").write_text(text)
    _run_arr(cli, data, out)
    problems, con = _differences(data, out)
    assert problems == []
    frame = {row[0]: row[1:] for row in con.execute(
        "SELECT patient_id, pre_start::VARCHAR, post_end::VARCHAR, pre_days, post_days, pre_relapses, post_relapses, "
        "exclusion_reason FROM arr").fetchall()}
    # P3 never had IVIG and P6's follow-up ends on its index date: not in the cohort
    assert sorted(frame) == ["P1", "P2", "P4", "P5", "P7"]
    # onset attack and index-day relapse are pre, a relapse 19 days after a kept one merges, pseudo dropped
    assert frame["P1"] == ("2010-01-01", "2017-01-01", 1826, 731, 3, 1, None)
    # index = first administration; end = last one + 90 days capped at last follow-up; onset = first
    # relapse; 03-25 merges into 03-01, and 04-05 (35 days after the kept 03-01) stays
    assert frame["P2"] == ("2011-03-01", "2013-04-15", 672, 104, 2, 1, None)
    # onset on the index date: a 0-day pre window
    assert frame["P4"][2:] == (0, 121, 0, 0, anchor.PRE_REASON)
    # no onset date and no relapse; the course ends 9999-12-31 (open): follow-up to last follow-up
    assert frame["P5"] == (None, "2019-01-01", None, 1461, 0, 0, anchor.NO_ONSET)
    # an onset date in the future is not used: the first relapse after birth opens the window
    assert frame["P7"][:1] + frame["P7"][4:] == ("2012-05-05", 1, 0, None)

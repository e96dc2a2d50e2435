"""An independent DuckDB computation of the ``arr_change`` endpoint (annualised relapse rate), the
anchor of the performance target for ``endpointkit run specs/registry.yaml --only arr``.

It reads the registry's CSV files with DuckDB and derives, in SQL only, every column of
``per_patient/arr.csv`` and the simple summary numbers of ``results.csv`` (median and IQR of the
pre and post ARRs, responders), for the default settings of specs/registry.yaml:

* cohort: index date = start of the first IVIG course (treatment name without case or surrounding
  spaces), else the first IVIG administration; follow-up end = treatment end = the course's
  end_date (9999-12-31 = open), else the last IVIG administration on or after the index date + 90
  days capped at the last follow-up, else the last follow-up; a blank last_followup_date is the
  latest date recorded for the patient in the tables an ARR-only run reads (patients, treatments,
  administrations, relapses); patients without an index date or with follow-up end not after it
  leave the cohort. Implausible birth and onset dates (before 1900, in the future, birth after
  index or more than 120 years before it, onset before birth) are set blank first;
* relapses: those dated before the patient's birth or disease onset are ignored, pseudo relapses
  dropped, and an onset fewer than 30 days after the last *kept* onset of the patient merged into it;
* ARR: pre window [onset_date (else the earliest relapse), index], post window (index, follow-up
  end], ARR = relapses / (days / 365.25), the difference post - pre as the exact fraction rounded
  once, responder = post rate below pre rate compared in integers.

Nothing of endpointkit is imported: the script is a second implementation of the documented rules,
so that agreement with endpointkit's output is evidence for both. It assumes data that endpointkit
accepts (canonical CSV, dates YYYY-MM-DD); rejecting bad data is endpointkit's job, not the anchor's.

    python benchmarks/arr_duckdb.py DATA -o OUT_DIR          # writes OUT_DIR/arr.csv, prints the summary
    python benchmarks/arr_duckdb.py DATA --check RUN_OUT     # compares with RUN_OUT/per_patient/arr.csv
    python benchmarks/arr_duckdb.py DATA --time              # best-of-3 wall times of both, and the ratio
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "specs" / "registry.yaml"
INDEX_TREATMENT = "ivig"  # cohort.index.treatment of specs/registry.yaml, compared without case
GRACE_DAYS = 90  # cohort.grace_days
MERGE_WITHIN_DAYS = 30  # cohort.relapses.merge_within_days
YEAR_NUM, YEAR_DEN = 1461, 4  # year_days 365.25 as an exact fraction
MAX_AGE_DAYS = 120 * 365.25
TRUE_TEXT = ("true", "t", "yes", "y", "1")
FALSE_TEXT = ("false", "f", "no", "n", "0")
PRE_REASON = "pre window of 0 days or shorter than min_pre_days (0)"
POST_REASON = "post window of 0 days or shorter than min_post_days (0)"
NO_ONSET = "no onset date and no relapse to date the onset"
COLUMNS = ("patient_id", "pre_start", "pre_end", "post_start", "post_end", "pre_days", "post_days", "pre_relapses",
           "post_relapses", "included", "exclusion_reason", "pre_arr", "post_arr", "arr_difference", "responder")
# how each column of endpointkit's per_patient/arr.csv is read for the comparison
CSV_TYPES = {"pre_start": "DATE", "pre_end": "DATE", "post_start": "DATE", "post_end": "DATE", "pre_days": "DOUBLE",
             "post_days": "DOUBLE", "pre_relapses": "BIGINT", "post_relapses": "BIGINT", "included": "BOOLEAN",
             "exclusion_reason": "VARCHAR", "pre_arr": "DOUBLE", "post_arr": "DOUBLE", "arr_difference": "DOUBLE",
             "responder": "BOOLEAN"}


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _text_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _csv(data: Path, table: str) -> str:
    """A table's CSV as text columns (typed below, as the canonical CSV defines them)."""
    return f"read_csv({_quoted(data / f'{table}.csv')}, all_varchar = true, header = true)"


def derive(con: duckdb.DuckDBPyConnection, data: Path) -> None:
    """Create the table ``arr``: one row per analysed patient, in the order of patients.csv."""
    con.execute(f"""
    CREATE OR REPLACE MACRO day_of(x) AS CAST(strptime(NULLIF(trim(x), ''), '%Y-%m-%d') AS DATE);
    CREATE OR REPLACE MACRO flag(x) AS CASE
        WHEN lower(trim(x)) IN ({_text_list(TRUE_TEXT)}) THEN true
        WHEN lower(trim(x)) IN ({_text_list(FALSE_TEXT)}) THEN false
        WHEN NULLIF(trim(x), '') IS NULL THEN NULL
        ELSE error('relapses.pseudo: expected true/false, got ' || x) END;

    CREATE OR REPLACE TEMP TABLE patients AS
    SELECT row_number() OVER () AS pos, trim(patient_id) AS pid, day_of(birth_date) AS birth,
           day_of(onset_date) AS onset, day_of(last_followup_date) AS last_followup_date
    FROM {_csv(data, 'patients')};

    CREATE OR REPLACE TEMP TABLE treatments AS
    SELECT trim(patient_id) AS pid, lower(trim(treatment)) AS treatment, day_of(start_date) AS start_date,
           NULLIF(day_of(end_date), DATE '9999-12-31') AS end_date
    FROM {_csv(data, 'treatments')};

    CREATE OR REPLACE TEMP TABLE administrations AS
    SELECT trim(patient_id) AS pid, lower(trim(treatment)) AS treatment, day_of(date) AS day
    FROM {_csv(data, 'administrations')};

    CREATE OR REPLACE TEMP TABLE relapses AS
    SELECT trim(patient_id) AS pid, day_of(onset_date) AS onset, coalesce(flag(pseudo), false) AS pseudo
    FROM {_csv(data, 'relapses')};
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE cohort AS
    WITH first_course AS (  -- the first course of the index treatment (same-day courses agree on end_date)
        SELECT pid, start_date AS first_start, end_date AS course_end FROM treatments
        WHERE treatment = '{INDEX_TREATMENT}'
        QUALIFY row_number() OVER (PARTITION BY pid ORDER BY start_date) = 1
    ), first_admin AS (
        SELECT pid, min(day) AS first_admin FROM administrations WHERE treatment = '{INDEX_TREATMENT}' GROUP BY pid
    ), indexed AS (
        SELECT p.*, coalesce(c.first_start, a.first_admin) AS index_date, c.course_end
        FROM patients p LEFT JOIN first_course c USING (pid) LEFT JOIN first_admin a USING (pid)
    ), plausible AS (  -- implausible birth and onset dates are not used (each check on the dates as recorded)
        SELECT *,
            CASE WHEN coalesce(birth < DATE '1900-01-01' OR birth > current_date OR birth > index_date
                               OR (index_date - birth) > {MAX_AGE_DAYS}, false) THEN NULL ELSE birth END AS birth_ok,
            CASE WHEN coalesce(onset < DATE '1900-01-01' OR onset > current_date OR onset < birth, false)
                 THEN NULL ELSE onset END AS onset_ok
        FROM indexed
    ), recorded AS (  -- every date of the tables an ARR-only run reads
        SELECT pid, start_date AS d FROM treatments UNION ALL SELECT pid, end_date FROM treatments
        UNION ALL SELECT pid, day FROM administrations UNION ALL SELECT pid, onset FROM relapses
    ), latest AS (
        SELECT pid, max(d) AS latest FROM (
            SELECT pid, d FROM recorded
            UNION ALL SELECT pid, birth_ok FROM plausible UNION ALL SELECT pid, onset_ok FROM plausible
        ) GROUP BY pid
    ), followed AS (
        SELECT q.*, coalesce(q.last_followup_date, l.latest) AS last_followup FROM plausible q LEFT JOIN latest l USING (pid)
    ), last_admin AS (  -- the last administration of the index treatment on or after the index date
        SELECT a.pid, max(a.day) AS last_admin FROM administrations a JOIN followed f USING (pid)
        WHERE a.treatment = '{INDEX_TREATMENT}' AND a.day >= f.index_date GROUP BY a.pid
    )
    SELECT f.pos, f.pid, f.index_date, f.birth_ok AS birth, f.onset_ok AS onset,
        coalesce(f.course_end, CASE
            WHEN l.last_admin IS NULL THEN f.last_followup
            WHEN f.last_followup IS NULL OR l.last_admin + {GRACE_DAYS} <= f.last_followup THEN l.last_admin + {GRACE_DAYS}
            ELSE f.last_followup END) AS followup_end
    FROM followed f LEFT JOIN last_admin l USING (pid);
    DELETE FROM cohort WHERE index_date IS NULL OR followup_end IS NULL OR followup_end <= index_date;
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE clean AS  -- the analysed patients' relapses, dated plausibly, not pseudo
    SELECT r.pid, r.onset FROM relapses r JOIN cohort c USING (pid)
    WHERE NOT r.pseudo AND NOT coalesce(r.onset < c.birth, false) AND NOT coalesce(r.onset < c.onset, false);

    -- Merging: an onset at least {MERGE_WITHIN_DAYS} days after the previous one is always kept; a run of
    -- closer onsets (a cluster, led by a kept onset) is walked in date order, keeping an onset only
    -- when it is at least {MERGE_WITHIN_DAYS} days after the last kept one.
    CREATE OR REPLACE TEMP TABLE clustered AS
    SELECT pid, onset, cluster, row_number() OVER (PARTITION BY pid, cluster ORDER BY onset) AS k,
           count(*) OVER (PARTITION BY pid, cluster) AS size
    FROM (
        SELECT pid, onset, sum(CASE WHEN gap IS NULL OR gap >= {MERGE_WITHIN_DAYS} THEN 1 ELSE 0 END)
                   OVER (PARTITION BY pid ORDER BY onset ROWS UNBOUNDED PRECEDING) AS cluster
        FROM (SELECT pid, onset, onset - lag(onset) OVER (PARTITION BY pid ORDER BY onset) AS gap FROM clean)
    );
    CREATE OR REPLACE TEMP TABLE kept AS
    WITH RECURSIVE walk(pid, cluster, k, onset, last_kept, kept) AS (
        SELECT pid, cluster, k, onset, onset, true FROM clustered WHERE k = 1 AND size > 1
        UNION ALL
        SELECT c.pid, c.cluster, c.k, c.onset,
               CASE WHEN c.onset - w.last_kept >= {MERGE_WITHIN_DAYS} THEN c.onset ELSE w.last_kept END,
               c.onset - w.last_kept >= {MERGE_WITHIN_DAYS}
        FROM walk w JOIN clustered c ON c.pid = w.pid AND c.cluster = w.cluster AND c.k = w.k + 1
    )
    SELECT pid, onset FROM clustered WHERE size = 1
    UNION ALL SELECT pid, onset FROM walk WHERE kept;
    """)
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE arr AS
    WITH windows AS (
        SELECT c.pos, c.pid, coalesce(c.onset, e.earliest) AS pre_start, c.index_date AS pre_end,
               c.index_date AS post_start, c.followup_end AS post_end
        FROM cohort c LEFT JOIN (SELECT pid, min(onset) AS earliest FROM kept GROUP BY pid) e USING (pid)
    ), counts AS (
        SELECT w.pid,
               count(*) FILTER (WHERE k.onset >= w.pre_start AND k.onset <= w.pre_end) AS pre_relapses,
               count(*) FILTER (WHERE k.onset > w.post_start AND k.onset <= w.post_end) AS post_relapses
        FROM kept k JOIN windows w USING (pid) GROUP BY w.pid
    ), days AS (
        SELECT w.*, w.pre_end - w.pre_start AS pre_days, w.post_end - w.post_start AS post_days,
               coalesce(n.pre_relapses, 0) AS pre_relapses, coalesce(n.post_relapses, 0) AS post_relapses
        FROM windows w LEFT JOIN counts n USING (pid)
    ), reasons AS (
        SELECT *, CASE WHEN pre_start IS NULL THEN '{NO_ONSET}'
                       WHEN pre_days <= 0 THEN '{PRE_REASON}'
                       WHEN post_days <= 0 THEN '{POST_REASON}' END AS exclusion_reason
        FROM days
    )
    SELECT pos, pid AS patient_id, pre_start, pre_end, post_start, post_end, pre_days, post_days,
           pre_relapses, post_relapses, exclusion_reason IS NULL AS included, exclusion_reason,
           CASE WHEN exclusion_reason IS NULL THEN pre_relapses::DOUBLE / (pre_days::DOUBLE / 365.25::DOUBLE) END AS pre_arr,
           CASE WHEN exclusion_reason IS NULL THEN post_relapses::DOUBLE / (post_days::DOUBLE / 365.25::DOUBLE) END AS post_arr,
           -- integers below 2^53 are exact doubles, so this division is rounded once, like the exact fraction
           CASE WHEN exclusion_reason IS NULL THEN
               ({YEAR_NUM} * (post_relapses * pre_days - pre_relapses * post_days))::DOUBLE
               / ({YEAR_DEN} * post_days * pre_days)::DOUBLE END AS arr_difference,
           CASE WHEN exclusion_reason IS NULL THEN post_relapses * pre_days < pre_relapses * post_days END AS responder
    FROM reasons ORDER BY pos;
    """)


def summary(con: duckdb.DuckDBPyConnection) -> dict[str, float | int]:
    """The simple numbers of results.csv: median [IQR] of each ARR and the responders."""
    row = con.execute("""
        SELECT count(*) AS n,
               quantile_cont(pre_arr, 0.5), quantile_cont(pre_arr, 0.25), quantile_cont(pre_arr, 0.75),
               quantile_cont(post_arr, 0.5), quantile_cont(post_arr, 0.25), quantile_cont(post_arr, 0.75),
               count(*) FILTER (WHERE responder)
        FROM arr WHERE included
    """).fetchone()
    keys = ("n", "pre_median", "pre_q1", "pre_q3", "post_median", "post_q1", "post_q3", "responders")
    return dict(zip(keys, row, strict=True))


def write(con: duckdb.DuckDBPyConnection, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "arr.csv"
    con.execute(f"COPY (SELECT {', '.join(COLUMNS)} FROM arr ORDER BY pos) TO {_quoted(path)} (HEADER, DELIMITER ',')")
    return path


def differences(con: duckdb.DuckDBPyConnection, run_out: Path, shown: int = 5) -> list[str]:
    """Every column on which some patient differs from endpointkit's per_patient/arr.csv (values
    compared as typed: dates, integers, exact doubles, flags, texts), patients missing on either
    side, and a different patient order; empty when the two frames are the same."""
    theirs = run_out / "per_patient" / "arr.csv"
    if not theirs.is_file():
        return [f"{theirs} not found: run endpointkit run specs/registry.yaml --data DATA --only arr -o {run_out}"]
    header = con.execute(f"SELECT * FROM read_csv({_quoted(theirs)}, all_varchar = true, header = true) LIMIT 0").description
    found = [column[0] for column in header]
    problems = []
    if found != list(COLUMNS):
        problems.append(f"columns: endpointkit has {found}, the anchor {list(COLUMNS)}")
    typed = ", ".join(f"TRY_CAST(NULLIF(\"{c}\", '') AS {CSV_TYPES[c]}) AS \"{c}\"" for c in COLUMNS[1:] if c in found)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE theirs AS SELECT row_number() OVER () AS pos, patient_id, {typed}
                    FROM read_csv({_quoted(theirs)}, all_varchar = true, header = true)""")
    for side, other, name in (("arr", "theirs", "endpointkit"), ("theirs", "arr", "the anchor")):
        missing = con.execute(f"SELECT patient_id FROM {side} ANTI JOIN {other} USING (patient_id) ORDER BY patient_id").fetchall()
        if missing:
            problems.append(f"{len(missing)} patients missing in {name}'s frame: {', '.join(m[0] for m in missing[:shown])}")
    for column in COLUMNS[1:]:
        if column not in found:
            continue
        rows = con.execute(f"""
            SELECT a.patient_id, a."{column}"::VARCHAR, t."{column}"::VARCHAR FROM arr a JOIN theirs t USING (patient_id)
            WHERE a."{column}" IS DISTINCT FROM t."{column}" ORDER BY a.pos""").fetchall()
        if rows:
            examples = "; ".join(f"{pid}: anchor {mine}, endpointkit {yours}" for pid, mine, yours in rows[:shown])
            problems.append(f"{column}: {len(rows)} patients differ ({examples})")
    order = con.execute("""
        WITH common AS (SELECT a.patient_id, a.pos AS mine, t.pos AS yours FROM arr a JOIN theirs t USING (patient_id))
        SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY mine) AS i, row_number() OVER (ORDER BY yours) AS j FROM common)
        WHERE i <> j""").fetchone()[0]
    if order:
        problems.append(f"patient order: {order} patients at another row than in endpointkit's frame")
    return problems


def summary_differences(numbers: dict[str, float | int], run_out: Path) -> list[str]:
    """The summary numbers against results.csv (quantiles to 1e-12 relative: numpy and DuckDB may
    interpolate in another order of operations; counts exactly)."""
    path = run_out / "results.csv"
    if not path.is_file():
        return [f"{path} not found"]
    con = duckdb.connect()
    rows = {(m, s): (n, c, e, lo, hi) for m, s, n, c, e, lo, hi in con.execute(f"""
        SELECT measure, stat, TRY_CAST(n AS BIGINT), TRY_CAST(count AS BIGINT), TRY_CAST(estimate AS DOUBLE),
               TRY_CAST(low AS DOUBLE), TRY_CAST(high AS DOUBLE)
        FROM read_csv({_quoted(path)}, all_varchar = true, header = true) WHERE endpoint = 'arr' AND variant = 'primary'
    """).fetchall()}
    expected = []
    for window in ("pre", "post"):
        row = rows.get((window, "median"))
        if row is None:
            return [f"results.csv has no arr {window} median row"]
        expected += [(f"{window} n", row[0], numbers["n"]), (f"{window} median", row[2], numbers[f"{window}_median"]),
                     (f"{window} Q1", row[3], numbers[f"{window}_q1"]), (f"{window} Q3", row[4], numbers[f"{window}_q3"])]
    responders = rows.get(("responders", "proportion"))
    if responders is None:
        return ["results.csv has no arr responders row"]
    expected += [("responders", responders[1], numbers["responders"]), ("responders n", responders[0], numbers["n"])]
    problems = []
    for name, theirs, mine in expected:
        same = theirs == mine if isinstance(mine, int) else theirs is not None and math.isclose(theirs, mine, rel_tol=1e-12, abs_tol=1e-15)
        if not same:
            problems.append(f"summary {name}: anchor {mine}, endpointkit {theirs}")
    return problems


def compute(data: Path, out: Path | None) -> tuple[duckdb.DuckDBPyConnection, dict[str, float | int]]:
    con = duckdb.connect()
    derive(con, data)
    if out is not None:
        write(con, out)
    return con, summary(con)


def endpointkit_command() -> list[str]:
    script = Path(sys.executable).with_name("endpointkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "endpointkit"]


def best_of(command: list[str], repeats: int) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system, less sensitive to other jobs on a shared
    machine) of ``command`` in fresh processes; a failure stops the timing."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def time_both(data: Path, repeats: int) -> int:
    """Wall times of the anchor and of ``endpointkit run --only arr`` (best of ``repeats`` each),
    their ratio, and a check that the two agree on the timed data."""
    work = Path(tempfile.mkdtemp(prefix="arr_anchor_"))
    try:
        anchor = [sys.executable, str(Path(__file__).resolve()), str(data), "-o", str(work / "anchor")]
        run = [*endpointkit_command(), "run", str(SPEC), "--data", str(data), "--only", "arr", "-o", str(work / "run"), "--quiet"]
        load = os.getloadavg()
        (t_anchor, cpu_anchor), (t_run, cpu_run) = best_of(anchor, repeats), best_of(run, repeats)
        after = os.getloadavg()
        print(f"data: {data}; best of {repeats} each, in fresh interpreters")
        print(f"load average (1 min) before {load[0]:.2f}, after {after[0]:.2f} ({os.cpu_count()} cores)")
        print(f"anchor (DuckDB {duckdb.__version__}): {t_anchor:.2f} s wall, {cpu_anchor:.2f} s CPU   {' '.join(anchor)}")
        print(f"endpointkit --only arr: {t_run:.2f} s wall, {cpu_run:.2f} s CPU   {' '.join(run)}")
        print(f"ratio endpointkit / anchor: {t_run / t_anchor:.2f} wall (target <= 1.5), {cpu_run / cpu_anchor:.2f} CPU")
        con, numbers = compute(data, None)
        problems = differences(con, work / "run") + summary_differences(numbers, work / "run")
        print("per-patient frames and summary: identical" if not problems else "\n".join(problems))
        return 1 if problems else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="registry folder (patients.csv, treatments.csv, administrations.csv, relapses.csv)")
    parser.add_argument("-o", "--out", type=Path, help="write the per-patient frame to OUT/arr.csv")
    parser.add_argument("--check", type=Path, metavar="RUN_OUT",
                        help="compare with RUN_OUT/per_patient/arr.csv and RUN_OUT/results.csv of endpointkit run --only arr")
    parser.add_argument("--time", action="store_true", help="time this script and endpointkit run --only arr, best of --repeats")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for table in ("patients", "treatments", "administrations", "relapses"):
        if not (args.data / f"{table}.csv").is_file():
            parser.error(f"{args.data / f'{table}.csv'} not found")
    if args.time:
        return time_both(args.data, args.repeats)
    con, numbers = compute(args.data, args.out)
    print(f"ARR (n = {numbers['n']}): before {numbers['pre_median']:.3g} [{numbers['pre_q1']:.3g}-{numbers['pre_q3']:.3g}], "
          f"after {numbers['post_median']:.3g} [{numbers['post_q1']:.3g}-{numbers['post_q3']:.3g}]; "
          f"responders {numbers['responders']}")
    if args.check is None:
        return 0
    problems = differences(con, args.check) + summary_differences(numbers, args.check)
    if problems:
        print("differences from endpointkit:\n  " + "\n  ".join(problems))
        return 1
    print(f"identical to {args.check / 'per_patient' / 'arr.csv'} (every patient and column) and to the summary in results.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Endpoints on partitions of the patients give the files of one run, byte for byte.

An endpoint that derives per-patient frames (on each partition) and summarises the merged frame
must write, with ``--partitions 3`` or ``8``, every output file exactly as ``--partitions 1`` does.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from endpointkit.partitioning import partition_of
from endpointkit.plugins.arr_change import ArrChange
from endpointkit.plugins.characteristics import Characteristics
from endpointkit.plugins.discontinuation import Discontinuation
from endpointkit.plugins.relapse_free import RelapseFree
from endpointkit.plugins.safety import Safety

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------
# characteristics, arr_change, relapse_free, discontinuation, safety and the example plugin
# (specs/plugins/severe_relapse_rate.py)
# ---------------------------------------------------------------------------------------------------

SPLIT = (Characteristics, ArrChange, RelapseFree, Discontinuation, Safety)

OUTCOMES_ENDPOINTS = """
endpoints:
  - {id: patients, plugin: characteristics, params: {variables: [diagnosis, antibody_status, group, bmi, female]}}
  - {id: arr, plugin: arr_change}
  - id: arr_crude
    plugin: arr_change
    params: {summary: crude, rate_ratio_ci: robust, min_pre_days: 100, exclude_index_relapse_days: 14, post_lag_days: 30}
  - id: arr_prior
    plugin: arr_change
    params: {pre_window: since_prior_treatment, prior_treatment: azathioprine, summary: mean_sd, responder: halved}
  - {id: relapse_free, plugin: relapse_free, params: {method: km, landmarks_months: [6, 12, 24], post_lag_days: 30}}
  - id: discontinuation
    plugin: discontinuation
    params: {reasons: [Relapse, " adverse event"], method: km, landmarks_months: [12, 36]}
  - {id: safety, plugin: safety}
  - {id: safety_terms, plugin: safety, params: {by_term: true, denominator: per_100_patient_years, severe: grade_ge3}}
  - {id: safety_serious, plugin: safety, params: {by_term: true, te_window_days: 0, severe: serious}}
  - {id: severe_arr, plugin: severe_relapse_rate, params: {severity: severe, post_lag_days: 14}}
"""

OUTCOMES_VARIANTS = """
sensitivity:
  - {name: summaries only, set: {patients.summary: mean_sd, patients.categorical: [bmi], arr.summary: crude,
                                 arr.responder: relapse_free, relapse_free.method: crude, safety.denominator: per_100_patient_years}}
  - {name: follow-up to last visit, set: {cohort.follow_up_end: last_followup}}
  - {name: 365-day years, set: {statistics.year_days: 365}}
"""


def outcomes_spec(data: Path) -> str:
    plugin = ROOT / "specs" / "plugins" / "severe_relapse_rate.py"
    return f"""
study: {{id: partitions-outcomes, title: Outcome endpoints on partitions}}
data: {{source: csv, path: {data}}}
plugins: [{plugin}]
cohort:
  index: {{treatment: IVIG}}
{OUTCOMES_ENDPOINTS}{OUTCOMES_VARIANTS}"""


def _vary(data: Path) -> None:
    """What the simulation does not produce: adverse-event terms spelled differently (the first
    spelling in the file names the term, whichever patient or partition it belongs to), the
    adverse events out of patient order, missing grades and serious flags, and extra patient columns
    (a number with blanks, and one named like a column the endpoint computes)."""
    rng = np.random.default_rng(11)
    ae = pd.read_csv(data / "adverse_events.csv", dtype=str, keep_default_na=False)
    style = rng.integers(0, 4, len(ae))
    term = ae["term"]
    ae["term"] = np.select([style == 0, style == 1, style == 2], [term.str.upper(), term.str.title(), " " + term + " "], term)
    ae.loc[rng.random(len(ae)) < 0.1, "grade"] = ""
    ae.loc[rng.random(len(ae)) < 0.1, "serious"] = ""
    ae.iloc[rng.permutation(len(ae))].to_csv(data / "adverse_events.csv", index=False)
    patients = pd.read_csv(data / "patients.csv", dtype=str, keep_default_na=False)
    bmi = np.round(rng.normal(25, 4, len(patients)), 1).astype(str)
    patients["bmi"] = np.where(rng.random(len(patients)) < 0.15, "", bmi)
    patients["female"] = np.where(rng.random(len(patients)) < 0.5, "yes", "no")
    patients.to_csv(data / "patients.csv", index=False)


@pytest.fixture(scope="module")
def outcome_registries(tmp_path_factory) -> dict[str, Path]:
    """The specs of a 400-patient and a 6-patient simulated registry (8 partitions of 6 patients leave some empty)."""
    from endpointkit.cli import main

    root = tmp_path_factory.mktemp("outcome_registries")
    specs = {}
    for name, patients in (("registry_400", 400), ("registry_6", 6)):
        data = root / name
        assert main(["simulate", "--patients", str(patients), "--seed", "3", "-o", str(data)]) == 0
        _vary(data)
        spec = root / f"{name}.yaml"
        spec.write_text(outcomes_spec(data))
        specs[name] = spec
    return specs


def _run_outcomes(spec: Path, partitions: int, where: Path, on_disk: bool = False) -> Path:
    """A run's output folder; ``on_disk``: with a memory budget of 0, so that every per-patient
    frame (each partition's, each merged, each written) goes through a file."""
    from endpointkit import spill
    from endpointkit.cli import main

    work = where / "out"  # the same output path for every run: it is recorded in results.json
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        if on_disk:
            mp.setattr(spill, "DEFAULT_MEMORY_BUDGET", 0)
        assert main(["run", str(spec), "-o", str(work), "--quiet", "--partitions", str(partitions)]) == 0
    final = where / f"partitions_{partitions}{'_on_disk' if on_disk else ''}"
    shutil.move(work, final)
    return final


@pytest.fixture(scope="module")
def outcome_runs(outcome_registries, tmp_path_factory) -> dict[tuple[str, int], Path]:
    out = {}
    for name, spec in outcome_registries.items():
        where = tmp_path_factory.mktemp(f"runs_{name}")
        for partitions in (1, 3, 8):
            out[name, partitions] = _run_outcomes(spec, partitions, where)
        out[name, "8 on disk"] = _run_outcomes(spec, 8, where, on_disk=True)
    return out


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_outcome_endpoints_split_and_no_longer_compute():
    for cls in SPLIT:
        assert cls.splits(), cls.name
        assert "compute" not in vars(cls), cls.name  # the base compute: derive, then summarise


def test_the_example_plugin_splits(outcome_registries):
    from endpointkit.spec import load_spec

    spec = load_spec(outcome_registries["registry_6"])
    assert spec.plugins.endpoints.items["severe_relapse_rate"].splits()


def test_the_outcome_registries_interleave_and_leave_partitions_empty(outcome_registries):
    for name, size in (("registry_400", 400), ("registry_6", 6)):
        ids = pd.read_csv(outcome_registries[name].parent / name / "patients.csv", dtype=str)["patient_id"]
        assert len(ids) == size
        if size == 400:  # the merge must put the partitions' patients back in order
            assert (np.diff(partition_of(ids, 3)) != 0).sum() > 100
        else:
            assert len(set(partition_of(ids, 8))) <= 6


@pytest.mark.parametrize("registry", ["registry_400", "registry_6"])
def test_outcome_endpoints_on_partitions_write_the_same_files(registry, outcome_runs):
    one = outcome_runs[registry, 1]
    files = _all_files(one)
    results = pd.read_csv(one / "results.csv")
    ids = [line.split("id: ")[1].split(",")[0] for line in OUTCOMES_ENDPOINTS.splitlines()
           if line.lstrip().startswith(("- {id: ", "- id: "))]
    assert {f"per_patient/{i}.csv" for i in ids} <= set(files)
    assert results.groupby("variant")["endpoint"].nunique().eq(len(ids)).all()  # no endpoint failed
    for partitions in (3, 8, "8 on disk"):
        other = outcome_runs[registry, partitions]
        assert _all_files(other) == files
        differ = [f for f in files if not filecmp.cmp(one / f, other / f, shallow=False)]
        assert differ == [], f"--partitions {partitions}: {differ}"


def test_the_term_rows_are_named_by_the_first_spelling_in_the_file(outcome_registries, outcome_runs):
    """Computed here from the adverse-events file: each term's first spelling (CSV order, among
    the analysed patients) and its number of patients with a treatment-emergent event."""
    one = outcome_runs["registry_400", 1]
    frame = pd.read_csv(one / "per_patient" / "safety_terms.csv", parse_dates=["index_date", "followup_end"])
    ae = pd.read_csv(outcome_registries["registry_400"].parent / "registry_400" / "adverse_events.csv",
                     dtype={"term": str}, parse_dates=["onset_date"])
    ae = ae.merge(frame[["patient_id", "index_date", "followup_end"]], on="patient_id")
    ae["key"] = ae["term"].str.strip().str.casefold()
    first = ae.drop_duplicates("key").set_index("key")["term"].str.strip()
    te = ae[(ae["onset_date"] >= ae["index_date"]) & (ae["onset_date"] <= ae["followup_end"] + pd.Timedelta(days=30))]
    with_term = te.groupby("key")["patient_id"].nunique()
    results = pd.read_csv(one / "results.csv")
    rows = results[(results["variant"] == "primary") & (results["endpoint"] == "safety_terms")
                   & results["measure"].str.startswith("term:") & ~results["measure"].str.endswith(":grade_ge3")]
    expected = {f"term:{first[key]}": n for key, n in with_term.items()}
    assert dict(zip(rows["measure"], rows["count"])) == expected
    assert len({m.casefold() for m in expected}) == len(expected) > 5
    assert any(name != name.lower() for name in first)  # the spellings vary, so the choice matters
    for name in first[with_term.index]:
        assert f"term:{name}:events" in frame.columns
    assert not [c for c in frame.columns if c.startswith("__")]  # the helper columns are dropped


def test_the_outside_window_note_adds_up_from_the_partitions(outcome_runs):
    one = outcome_runs["registry_400", 8]
    frame = pd.read_csv(one / "per_patient" / "safety.csv")
    outside = int(frame["events_outside_window"].sum())
    assert outside > 0
    assert f"{outside} adverse event(s) outside the treatment-emergent window not counted" in (one / "table.md").read_text()


def test_summary_settings_reuse_the_derived_frame(outcome_registries, monkeypatch):
    """A variant that changes only summary settings derives nothing again: each endpoint derives
    once per distinct cohort and params it reads (here one cohort, the other variants removed)."""
    from endpointkit.engine import run

    calls: dict[str, int] = {}
    for cls in SPLIT:
        original = cls.derive

        def counted(self, cohort, params, ctx, _original=original, _name=cls.name):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(self, cohort, params, ctx)

        monkeypatch.setattr(cls, "derive", counted)
    text = outcome_registries["registry_6"].read_text()
    spec = outcome_registries["registry_6"].with_name("summaries.yaml")
    spec.write_text(text[:text.index("sensitivity:")] + OUTCOMES_VARIANTS.split("\n  - {name: follow-up")[0] + "\n")
    results = run(spec)
    assert set(results.frame["variant"]) == {"primary", "summaries only"}
    assert not results.failures
    # one derive per endpoint of the spec: the variant changes only summary params
    assert calls == {"characteristics": 1, "arr_change": 3, "relapse_free": 1, "discontinuation": 1, "safety": 3}


def test_frames_beyond_the_memory_budget_go_to_disk_and_come_back_exactly(tmp_path):
    """The store keeps frames in memory up to its budget and pickles the rest; every dtype
    (text, nullable integers and booleans, dates, categories) comes back as it went in, and the
    parts of a frame come back in the order of their ``order`` column whichever store held them."""
    from endpointkit.spill import FrameStore, assemble

    frame = pd.DataFrame({
        "patient_id": pd.Series(["p3", "p1", "p2", "p4"], dtype="str"),
        "count": pd.array([1, None, 3, 4], dtype="Int64"),
        "flag": pd.array([True, None, False, True], dtype="boolean"),
        "date": pd.to_datetime(["2020-01-01", None, "2021-05-06", "2022-02-02"]),
        "kind": pd.Categorical(["a", "b", "a", "c"]),
        "line": [30, 10, 20, 40],
    })
    store = FrameStore(memory_budget=frame.memory_usage(deep=True).sum() + 1)
    kept, spilled = store.put(frame.iloc[:2]), store.put(frame.iloc[2:])
    assert not kept.spilled and spilled.spilled and store.spilled > 0
    pd.testing.assert_frame_equal(spilled.load(), frame.iloc[2:])
    merged = assemble([kept, spilled], "line")
    expected = frame.sort_values("line", kind="stable").drop(columns="line").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, expected)


def test_parts_with_different_categories_come_back_as_one_sorted_categorical():
    """Each partition's data-quality report knows only its own tables and actions: the merged
    column stays a categorical (as objects it would take many times the memory), with the sorted
    categories a one-partition report has."""
    from endpointkit.spill import StoredFrame, assemble

    first = pd.DataFrame({"table": pd.Categorical(["relapses", "titers"]), "order": [3, 1]})
    second = pd.DataFrame({"table": pd.Categorical(["patients"]), "order": [2]})
    merged = assemble([StoredFrame.held(first), StoredFrame.held(second)], "order")
    assert list(merged["table"]) == ["titers", "patients", "relapses"]
    assert list(merged["table"].cat.categories) == ["patients", "relapses", "titers"]


def test_the_data_quality_report_is_compact_and_typed_alike_for_any_partitioning(outcome_registries):
    """Millions of records: table and action as categories, the line as nullable integers (a
    Python object per record costs five times the memory); 1 or 3 partitions, the same frame."""
    from endpointkit.engine import run
    from endpointkit.executors import ExecutorSettings

    one = run(outcome_registries["registry_400"], variant="primary").data_quality
    three = run(outcome_registries["registry_400"], variant="primary", executor=ExecutorSettings(partitions=3)).data_quality
    pd.testing.assert_frame_equal(one, three)
    assert len(one) and one["line"].dtype == "Int64" and one["line"].isna().any()  # endpoint exclusions have no line
    for name in ("table", "action"):
        assert list(one[name].cat.categories) == sorted(one[name].unique())


def test_variants_that_change_only_summary_settings_share_their_frames(outcome_registries):
    """A quantile method changes no per-patient value and excludes no one else: the variant keeps
    the primary's per-patient frames and data-quality report, not a copy of each."""
    from endpointkit.engine import run

    text = outcome_registries["registry_400"].read_text()
    spec = outcome_registries["registry_400"].with_name("quantiles.yaml")
    spec.write_text(text[:text.index("sensitivity:")]
                    + "sensitivity:\n  - {name: weibull, set: {statistics.quantile_method: weibull}}\n")
    primary, weibull = run(spec).variants
    assert primary.frame["display"].tolist() != weibull.frame["display"].tolist()  # the medians did change
    assert weibull.quality is primary.quality and len(primary.quality.load())
    for endpoint in primary.per_patient:
        assert weibull.per_patient.stored(endpoint) is primary.per_patient.stored(endpoint), endpoint


def test_freed_memory_is_given_back_once_enough_has_been_freed(monkeypatch):
    """A full garbage collection costs tens of milliseconds in a large process: small frames freed
    one by one wait until RELEASE_AFTER bytes have been freed; a release asked for outright is done."""
    from endpointkit import spill

    collections = []
    monkeypatch.setattr(spill.gc, "collect", lambda: collections.append(1))
    monkeypatch.setattr(spill, "_freed", 0)
    for _ in range(3):
        spill.release_memory(spill.RELEASE_AFTER // 4)
    assert collections == []
    spill.release_memory(spill.RELEASE_AFTER // 4)
    assert collections == [1]
    spill.release_memory()
    assert collections == [1, 1]


def test_a_frames_size_is_estimated_close_to_its_measured_memory():
    """The budget counts text columns from a sample of their values: close to pandas' full count."""
    from endpointkit.spill import frame_bytes

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({
        "patient_id": pd.Series([f"P{i:08d}" for i in range(20_000)], dtype="str"),
        "note": pd.Series(["x" * int(n) for n in rng.integers(0, 40, 20_000)], dtype=object),
        "value": rng.normal(size=20_000),
        "when": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, 20_000), unit="D"),
    })
    measured = int(frame.memory_usage(deep=True).sum())
    assert abs(frame_bytes(frame) - measured) < 0.1 * measured


@pytest.mark.parametrize("second_reason", ["plain", 'a reason with a comma, and "quotes"'])
def test_a_report_kept_in_parts_is_written_as_its_concatenation(tmp_path, second_reason):
    """The cohort's data-quality records and the endpoints' exclusions stay two parts: the file
    written part after part is byte for byte the file of the concatenated frame, also when only
    a later part needs quoting; the whole frame is the concatenation."""
    from endpointkit.cohort import compact_quality, concat_quality
    from endpointkit.output import _write_csv, _write_csv_pieces
    from endpointkit.spill import FrameParts, FrameStore

    cohort = compact_quality(pd.DataFrame({"table": ["relapses", "patients"], "line": [4, pd.NA], "patient_id": ["p1", "p2"],
                                           "reason": ["pseudo relapse", "no date"], "action": ["dropped", "replaced"]}))
    excluded = compact_quality(pd.DataFrame({"table": "endpoint arr", "line": pd.NA, "patient_id": ["p3"],
                                             "reason": second_reason, "action": "excluded"}))
    store = FrameStore(memory_budget=0)  # both parts on disk
    parts = FrameParts((store.put(cohort), store.put(excluded)), concat_quality)
    _write_csv_pieces(parts.slices, str(tmp_path / "parts.csv"), parts.load)
    _write_csv(concat_quality([cohort, excluded]), str(tmp_path / "whole.csv"))
    assert (tmp_path / "parts.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    pd.testing.assert_frame_equal(parts.load(), concat_quality([cohort, excluded]))
    assert parts.rows == 3 and parts.spilled


def test_the_reports_data_quality_counts_add_up_over_parts_and_slices(monkeypatch):
    """The report counts records per table, reason and action a slice at a time and part by part:
    the counts, and their order of first appearance, are those of the whole report."""
    from endpointkit import report
    from endpointkit.cohort import compact_quality, concat_quality
    from endpointkit.spill import FrameParts, StoredFrame

    def records(tables, reasons):
        return compact_quality(pd.DataFrame({"table": tables, "line": range(len(tables)), "patient_id": "p",
                                             "reason": reasons, "action": "dropped"}))

    first = records(["relapses", "patients", "relapses", "relapses", "titers"], ["a", "b", "a", "c", "a"])
    second = records(["endpoint arr", "relapses"], ["x", "a"])
    whole = concat_quality([first, second])
    expected = whole.groupby(["table", "reason", "action"], sort=False, observed=True).size().reset_index(name="records")
    monkeypatch.setattr(report, "SUMMARY_ROWS", 2)
    counted = report._quality_summary(FrameParts((StoredFrame.held(first), StoredFrame.held(second)), concat_quality))
    assert counted.astype(str).values.tolist() == expected.astype(str).values.tolist()
    assert counted["records"].tolist() == [3, 1, 1, 1, 1] and counted["records"].sum() == len(whole)


def test_the_report_counts_reasons_without_the_dates_and_lines_of_single_records():
    """A merged relapse's reason names its record; the report counts them as one reason (the CSV
    keeps every record as it is)."""
    from endpointkit.cohort import compact_quality
    from endpointkit.report import _quality_summary

    reasons = ["onset within 30 days of the relapse of 2019-01-05 (line 12); merged into it",
               "onset within 30 days of the relapse of 2020-03-01 (line 40); merged into it", "pseudo relapse"]
    quality = compact_quality(pd.DataFrame({"table": "relapses", "line": [13, 41, 50], "patient_id": ["a", "b", "c"],
                                            "reason": reasons, "action": ["merged", "merged", "dropped"]}))
    counted = _quality_summary(quality)
    assert counted.values.tolist() == [
        ["relapses", "onset within 30 days of the relapse of <date> (line <n>); merged into it", "merged", 2],
        ["relapses", "pseudo relapse", "dropped", 1]]


def test_a_large_frame_on_disk_is_kept_in_slices_and_written_from_them(tmp_path, monkeypatch):
    """A frame of more than SLICE_ROWS rows goes to disk a slice per file (pickling a whole frame
    holds a copy of all its text at once); it comes back exactly (index, labels, dtypes, attrs), and
    its CSV, written a slice at a time, is the CSV of the whole frame: timestamps print as dates
    only if every slice's are at midnight."""
    from endpointkit import spill
    from endpointkit.output import _write_csv, _write_csv_pieces

    monkeypatch.setattr(spill, "SLICE_ROWS", 3)
    frame = pd.DataFrame({
        "patient_id": pd.Series([f"p{i}" for i in range(8)], dtype="str"),
        "count": pd.array([1, None, 3, 4, 5, 6, None, 8], dtype="Int64"),
        "kind": pd.Categorical(list("abcabcab")),
        "day": pd.to_datetime(["2020-01-01 00:00"] * 7 + ["2020-01-02 10:30"]),  # only the last slice has a time
        "value": np.linspace(0, 1, 8),
    }, index=pd.RangeIndex(10, 18))
    frame.attrs["unit"] = "days"
    stored = spill.FrameStore(memory_budget=0).put(frame)
    assert stored.spilled and len(stored._paths) == 3
    pd.testing.assert_frame_equal(stored.load(), frame)
    assert stored.load().attrs == {"unit": "days"}
    _write_csv_pieces(stored.slices, str(tmp_path / "slices.csv"), stored.load)
    _write_csv(frame, str(tmp_path / "whole.csv"))
    assert (tmp_path / "slices.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert "2020-01-01 00:00:00" in (tmp_path / "slices.csv").read_text()

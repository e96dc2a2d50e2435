"""``endpointkit partition``: a registry as a hash-partitioned Parquet dataset, read whole or by partition."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from endpointkit.cli import main
from endpointkit.engine import load_spec_data, partition_reader
from endpointkit.errors import DataError
from endpointkit.partitioned_dataset import MANIFEST, read_manifest
from endpointkit.partitioning import partition_of, split_data
from endpointkit.spec import load_spec

from .paths import SPECS

PLUGIN = '''
import pandas as pd
from endpointkit import Endpoint, EndpointResult, Row, hookimpl


class RelapseCount(Endpoint):
    """Relapse records per cohort patient (derive), their mean (summarise)."""

    name = "relapse_count"
    title = "Relapses per patient"
    requires = ("relapses",)

    def derive(self, cohort, params, ctx):
        ids = cohort.patients["patient_id"].to_numpy()
        counts = cohort.table("relapses").groupby("patient_id").size()
        return pd.DataFrame({"patient_id": ids, "relapses": counts.reindex(ids).fillna(0).to_numpy(dtype=float)})

    def summarise(self, per_patient, params, ctx):
        row = Row(measure="mean_relapses", stat="mean", estimate=float(per_patient["relapses"].mean()), n=len(per_patient))
        return EndpointResult(rows=[row], per_patient=per_patient)


@hookimpl
def register_endpoints():
    return [RelapseCount]
'''

SPEC = """study: {id: sim}
data: {source: csv, path: data}
plugins: [plug.py]
cohort: {index: {treatment: IVIG}}
endpoints:
  - {id: count, plugin: relapse_count}
  - {id: arr, plugin: arr_change}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A simulated registry (CSV), a spec with a splittable plugin, and its dataset in 8 partitions."""
    root = tmp_path_factory.mktemp("study")
    assert main(["simulate", "--patients", "300", "--seed", "3", "-o", str(root / "data")]) == 0
    (root / "plug.py").write_text(PLUGIN)
    (root / "study.yaml").write_text(SPEC)
    assert main(["partition", str(root / "study.yaml"), "-o", str(root / "ds"), "--partitions", "8"]) == 0
    return root


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _without_location(text: bytes) -> dict:
    """results.json less what names the data's location and the command (they differ by design)."""
    doc = json.loads(text)
    doc["provenance"]["run"].pop("command", None)
    doc["provenance"]["data"].pop("path", None)
    doc["provenance"]["data"].pop("source", None)
    for variant in doc["provenance"]["variants"]:
        variant["resolved"]["data"].pop("path", None)
    doc["files"] = [f for f in doc["files"] if f["path"] != "report.html"]  # the report shows the provenance
    return doc


# --------------------------------------------------------------------------- the dataset


def test_layout_manifest_and_summary(study, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["partition", str(study / "study.yaml"), "-o", str(out), "--partitions", "3"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("endpointkit: partitioned 300 patients (7 tables,")
    assert err[0].endswith(f"into 3 partitions in {err[0].split(' in ')[-1].split(' s:')[0]} s: wrote {out}")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["partitions"] == 3 and manifest["source"] == "csv" and "siphash" in manifest["hash"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *manifest["tables"]])  # no staging left
    for name, entry in manifest["tables"].items():
        original = study / "data" / f"{name}.csv"
        assert entry["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
        assert entry["rows"] == len(pd.read_csv(original, dtype=str)) == sum(p["rows"] for p in entry["parts"])
        assert entry["origin"] == f"{name}.csv" and entry["unit"] == "line"
        assert sorted(p.name for p in (out / name).iterdir()) == [f"part-{k:05d}.parquet" for k in range(3)]
    # each record is in its patient's partition: the hash of its id, as partition_of computes it
    patients = pd.read_parquet(out / "patients" / "part-00001.parquet")
    assert len(patients) and (partition_of(patients["patient_id"], 3) == 1).all()
    relapses = pd.read_parquet(out / "relapses" / "part-00002.parquet")
    assert len(relapses) and (partition_of(relapses["patient_id"], 3) == 2).all()
    # the original line numbers travel with the records
    csv = pd.read_csv(study / "data" / "relapses.csv", dtype=str, keep_default_na=False)
    first = relapses.iloc[0]
    assert csv.iloc[int(first["_line"]) - 2]["patient_id"] == first["patient_id"]


def test_read_whole_gives_the_same_tables_and_checksums(study):
    spec = load_spec(study / "study.yaml")
    original = load_spec_data(spec, spec.plugins)
    spec_ds = load_spec(study / "study.yaml", data=study / "ds")
    whole = load_spec_data(spec_ds, spec_ds.plugins)
    assert whole.source == "parquet" and whole.checksums == original.checksums
    assert list(whole.tables) == list(original.tables)
    for name, frame in original.tables.items():
        pd.testing.assert_frame_equal(whole.tables[name], frame, check_exact=True)


@pytest.mark.parametrize("parts", [8, 4, 3, 1])
def test_read_by_partition_gives_each_patient_once_with_its_records(study, parts):
    spec = load_spec(study / "study.yaml", data=study / "ds")
    original = load_spec_data(load_spec(study / "study.yaml"), spec.plugins)
    read = partition_reader(spec, spec.plugins)
    pieces = [read(k, parts) for k in range(parts)]
    for name, frame in original.tables.items():
        got = pd.concat([p.tables[name] for p in pieces]).sort_values("_line", kind="stable")
        pd.testing.assert_frame_equal(got.drop(columns="_patient_row").reset_index(drop=True),
                                      frame.drop(columns="_patient_row").reset_index(drop=True), check_exact=True)
    assert all(p.checksums == original.checksums for p in pieces)  # the original tables', whatever the split
    if 8 % parts == 0:  # files j % parts == k: the same patients as splitting the loaded data in `parts`
        for piece, split in zip(pieces, split_data(original, parts), strict=True):
            assert piece.tables["patients"]["patient_id"].tolist() == split.tables["patients"]["patient_id"].tolist()


def test_more_tasks_than_partition_files_is_refused(study, capsys):
    assert main(["run", str(study / "study.yaml"), "--data", str(study / "ds"), "--only", "count",
                 "--partitions", "9", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--partitions 9: the dataset" in err and "written with 8 partition(s); run it with --partitions 8" in err


# --------------------------------------------------------------------------- runs


def test_whole_dataset_gives_the_csv_results(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert main(["run", str(study / "study.yaml"), "-o", str(tmp_path / "csv"), "--quiet"]) == 0
    assert main(["run", str(study / "study.yaml"), "--data", str(study / "ds"), "-o", str(tmp_path / "ds"), "--quiet"]) == 0
    assert (tmp_path / "ds" / "results.csv").read_bytes() == (tmp_path / "csv" / "results.csv").read_bytes()
    csv, ds = (_without_location((tmp_path / f / "results.json").read_bytes()) for f in ("csv", "ds"))
    assert ds == csv  # the same checksums (the original files'), counts and results


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_partitioned_runs_are_byte_identical_to_the_csv_run(study, tmp_path, capsys, monkeypatch, parts):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    reference = tmp_path / "csv"
    assert main(["run", str(study / "study.yaml"), "--only", "count", "-o", str(reference), "--quiet"]) == 0
    out = tmp_path / f"ds{parts}"
    assert main(["run", str(study / "study.yaml"), "--data", str(study / "ds"), "--only", "count",
                 "--partitions", str(parts), "-o", str(out), "--quiet"]) == 0
    expected, got = _outputs(reference), _outputs(out)
    assert sorted(got) == sorted(expected)
    for name in expected:
        if name not in ("results.json", "report.html"):  # these two name the data's folder
            assert got[name] == expected[name], name
    assert _without_location(got["results.json"]) == _without_location(expected["results.json"])
    # the mean, independently: relapse records per cohort patient, counted with numpy
    per_patient = pd.read_csv(out / "per_patient" / "count.csv", dtype={"patient_id": str})
    relapses = pd.read_csv(study / "data" / "relapses.csv", dtype=str)
    counts = np.array([(relapses["patient_id"] == pid).sum() for pid in per_patient["patient_id"]], dtype=float)
    assert np.all(counts >= per_patient["relapses"].to_numpy())  # the cohort drops late and pseudo relapses only
    results = pd.read_csv(out / "results.csv")
    estimate = results.loc[results["measure"] == "mean_relapses", "estimate"].iloc[0]
    assert estimate == pytest.approx(np.mean(per_patient["relapses"].to_numpy()), rel=1e-9)


def test_worker_processes_read_their_own_partitions(study, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for name, extra in (("serial", []), ("procs", ["--executor", "processes", "--jobs", "2"])):
        assert main(["run", str(study / "study.yaml"), "--data", str(study / "ds"), "--only", "count",
                     "--partitions", "8", "-o", str(tmp_path / name), "--quiet", *extra]) == 0
    assert _outputs(tmp_path / "procs")["results.csv"] == _outputs(tmp_path / "serial")["results.csv"]


# --------------------------------------------------------------------------- other sources


@pytest.mark.parametrize("example", ["german_export", "excel", "parquet", "sqlite"])
def test_every_source_round_trips(example, tmp_path):
    """Typed workbook cells, Parquet columns and database values come back as the source gave them."""
    pytest.importorskip("python_calamine")
    pytest.importorskip("sqlalchemy")
    spec_path = SPECS / "examples" / f"{example}.yaml"
    assert main(["partition", str(spec_path), "-o", str(tmp_path / "ds"), "--partitions", "4"]) == 0
    spec = load_spec(spec_path)
    original = load_spec_data(spec, spec.plugins)
    spec_ds = load_spec(spec_path, data=tmp_path / "ds")
    whole = load_spec_data(spec_ds, spec_ds.plugins)
    assert whole.checksums == original.checksums
    for name, frame in original.tables.items():
        pd.testing.assert_frame_equal(whole.tables[name], frame, check_exact=True)
    read = partition_reader(spec_ds, spec_ds.plugins)
    for k, split in enumerate(split_data(original, 4)):
        piece = read(k, 4)
        for name, frame in split.tables.items():
            pd.testing.assert_frame_equal(piece.tables[name].drop(columns="_patient_row").reset_index(drop=True),
                                          frame.drop(columns="_patient_row").reset_index(drop=True), check_exact=True)


def test_extra_columns_are_typed_as_in_the_whole_table(study, tmp_path):
    """A column that is a number in some partitions only is text in every partition, as in the whole."""
    data = tmp_path / "data"
    shutil.copytree(study / "data", data)
    patients = pd.read_csv(data / "patients.csv", dtype=str, keep_default_na=False)
    patients["site"] = [str(i % 7) for i in range(len(patients))]
    odd = int(np.flatnonzero(partition_of(patients["patient_id"], 4) == 3)[0])
    patients.loc[odd, "site"] = "Berlin"  # text in partition 3 only
    patients["weight"] = [f"{60 + i % 30}" for i in range(len(patients))]  # numbers everywhere
    patients.to_csv(data / "patients.csv", index=False)
    (tmp_path / "plug.py").write_text(PLUGIN)
    (tmp_path / "study.yaml").write_text(SPEC)
    assert main(["partition", str(tmp_path / "study.yaml"), "-o", str(tmp_path / "ds"), "--partitions", "4"]) == 0
    spec = load_spec(tmp_path / "study.yaml", data=tmp_path / "ds")
    whole = load_spec_data(spec, spec.plugins).tables["patients"]
    assert whole["weight"].dtype == float and whole["site"].dtype != float
    read = partition_reader(spec, spec.plugins)
    for k in range(4):
        part = read(k, 4).tables["patients"]
        assert part["site"].dtype == whole["site"].dtype and part["weight"].dtype == whole["weight"].dtype


# --------------------------------------------------------------------------- errors


def _partition_ids(frame: pd.DataFrame, parts: int, part: int) -> list[str]:
    return frame.loc[partition_of(frame["patient_id"], parts) == part, "patient_id"].tolist()


def test_a_data_error_in_partition_2_names_the_original_file_and_line(study, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(study / "data", data)
    relapses = pd.read_csv(data / "relapses.csv", dtype=str, keep_default_na=False)
    target = _partition_ids(relapses, 3, 2)[5]
    row = int(np.flatnonzero(relapses["patient_id"] == target)[0])
    relapses.loc[row, "onset_date"] = "2019-02-30"
    relapses.to_csv(data / "relapses.csv", index=False)
    (tmp_path / "plug.py").write_text(PLUGIN)
    (tmp_path / "study.yaml").write_text(SPEC)
    assert main(["partition", str(tmp_path / "study.yaml"), "-o", str(tmp_path / "ds"), "--partitions", "3"]) == 0
    spec = load_spec(tmp_path / "study.yaml", data=tmp_path / "ds")
    read = partition_reader(spec, spec.plugins)
    read(0, 3), read(1, 3)  # the other partitions are clean
    with pytest.raises(DataError) as caught:
        read(2, 3)
    assert str(caught.value).startswith(f"relapses (relapses.csv), line {row + 2}, column 'onset_date': expected a date")
    capsys.readouterr()
    assert main(["run", str(tmp_path / "study.yaml"), "--data", str(tmp_path / "ds"), "--only", "count",
                 "--partitions", "3", "--quiet"]) == 2
    assert f"relapses (relapses.csv), line {row + 2}, column 'onset_date'" in capsys.readouterr().err


def test_output_folder_that_is_not_empty_is_refused(study, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["partition", str(study / "study.yaml"), "-o", str(out), "--partitions", "2"]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_failed_partition_writes_nothing(study, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(study / "data", data)
    (data / "treatments.csv").unlink()
    (tmp_path / "plug.py").write_text(PLUGIN)
    (tmp_path / "study.yaml").write_text(SPEC)
    assert main(["partition", str(tmp_path / "study.yaml"), "-o", str(tmp_path / "ds"), "--partitions", "2"]) == 2
    assert "treatments: table not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "plug.py", "study.yaml"]  # no ds, no staging
    assert main(["partition", str(tmp_path / "study.yaml"), "--data", str(tmp_path / "nowhere"),
                 "-o", str(tmp_path / "ds"), "--partitions", "2"]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_bad_partition_count(study, tmp_path, capsys):
    assert main(["partition", str(study / "study.yaml"), "-o", str(tmp_path / "ds"), "--partitions", "0"]) == 2
    assert "--partitions: expected a number of partitions from 1 to 4096, got 0" in capsys.readouterr().err


@pytest.fixture
def copy(study, tmp_path) -> Path:
    shutil.copytree(study / "ds", tmp_path / "ds")
    return tmp_path / "ds"


def _run(study: Path, data: Path, parts: int = 8) -> int:
    return main(["run", str(study / "study.yaml"), "--data", str(data), "--only", "count", "--partitions", str(parts), "--quiet"])


def test_a_missing_partition_file(study, copy, capsys):
    (copy / "relapses" / "part-00005.parquet").unlink()
    assert _run(study, copy) == 2
    err = capsys.readouterr().err
    assert "relapses: partition file missing: relapses/part-00005.parquet" in err and "the manifest lists 8 partitions" in err
    assert _run(study, copy, 1) == 2  # read whole too


def test_a_changed_partition_file(study, copy, capsys):
    shutil.copy(copy / "relapses" / "part-00001.parquet", copy / "relapses" / "part-00002.parquet")
    spec = load_spec(study / "study.yaml", data=copy)
    with pytest.raises(DataError, match=r"relapses: relapses/part-00002.parquet in .* does not match the manifest"):
        load_spec_data(spec, spec.plugins)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(partitions=5), "tables.patients.parts: expected one entry (rows, sha256) per partition (5)"),
    (lambda m: m["tables"]["patients"].update(rows=1), "the partitions' rows do not add up to the table's rows"),
    (lambda m: m.update(format="other"), "not a manifest of endpointkit partition"),
    (lambda m: m.update(version=99), "manifest version 99; this endpointkit reads version 1"),
    (lambda m: m["tables"].pop("patients"), "expected \"tables\" with at least patients"),
    (lambda m: m["tables"]["relapses"].pop("sha256"), "tables.relapses: expected rows, sha256, origin, unit, columns and parts"),
    (lambda m: m["tables"]["relapses"]["parts"][2].update(rows="7"), "tables.relapses.parts: expected one entry (rows, sha256)"),
    (lambda m: m["tables"]["edss"]["columns"].update(date="text"), "tables.edss.columns: expected column -> one of"),
    (lambda m: m["tables"].update(vitals=m["tables"]["edss"]), "unknown table 'vitals'"),
])
def test_a_manifest_that_disagrees(study, copy, capsys, change, message):
    manifest = json.loads((copy / MANIFEST).read_text())
    change(manifest)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert _run(study, copy) == 2
    err = capsys.readouterr().err
    assert message in err and "write the dataset again with endpointkit partition" in err


def test_a_manifest_that_is_not_json(copy):
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match="cannot read the manifest"):
        read_manifest(copy)


def test_a_table_folder_is_not_a_dataset(study, capsys):
    """Pointing at one table's folder (no manifest) reads it as a plain folder: the tables are missing."""
    assert main(["run", str(study / "study.yaml"), "--data", str(study / "ds" / "patients"), "--quiet"]) == 2
    assert "patients: table not found" in capsys.readouterr().err




# --------------------------------------------------------------------------- simulate --format parquet


def test_simulate_writes_the_partitioned_dataset_of_its_csv_registry(study, tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--patients", "300", "--seed", "3", "--format", "parquet", "--partitions", "8", "-o", str(out)]) == 0
    assert capsys.readouterr().err.strip().endswith(f"wrote 8 partition(s) and truth.json to {out}")
    ours, partitioned = (json.loads((folder / MANIFEST).read_text()) for folder in (out, study / "ds"))
    assert ours["tables"] == partitioned["tables"]  # the same files, line numbers and CSV checksums
    assert (out / "truth.json").read_bytes() == (study / "data" / "truth.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]  # no scratch CSV folder left


def test_simulate_partitions_need_parquet_and_a_new_folder(tmp_path, capsys):
    assert main(["simulate", "--patients", "10", "--partitions", "2", "-o", str(tmp_path / "a")]) == 2
    assert "--partitions: a partitioned dataset is written with --format parquet" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    assert main(["simulate", "--patients", "10", "--format", "parquet", "-o", str(tmp_path / "b")]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert main(["simulate", "--patients", "10", "--format", "parquet", "--partitions", "0", "-o", str(tmp_path / "c")]) == 2
    assert "expected a number of partitions from 1 to 4096, got 0" in capsys.readouterr().err


def test_a_spec_that_reads_other_patient_ids_is_refused(study, tmp_path, capsys):
    """Written with one id column, read with another: no silent split of a patient's records."""
    data = tmp_path / "data"
    shutil.copytree(study / "data", data)
    patients = pd.read_csv(data / "patients.csv", dtype=str, keep_default_na=False).rename(columns={"patient_id": "pid"})
    patients["other_id"] = patients["pid"].iloc[::-1].to_numpy()  # the same ids, on other rows
    patients.to_csv(data / "patients.csv", index=False)
    (tmp_path / "plug.py").write_text(PLUGIN)
    for name, column in (("study", "pid"), ("other", "other_id")):
        (tmp_path / f"{name}.yaml").write_text(SPEC.replace("path: data}", f"path: data, columns: {{patients: {{patient_id: {column}}}}}}}"))
    assert main(["partition", str(tmp_path / "study.yaml"), "-o", str(tmp_path / "ds"), "--partitions", "4"]) == 0
    assert main(["run", str(tmp_path / "study.yaml"), "--data", str(tmp_path / "ds"), "--only", "count",
                 "--partitions", "4", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "other.yaml"), "--data", str(tmp_path / "ds"), "--only", "count",
                 "--partitions", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "endpointkit: error: patients, line" in err
    assert "a patient id is stored in another partition than it hashes to" in err and "write it again with this spec" in err


def test_a_fresh_worker_rebuilds_the_run_and_reads_only_its_partition(study):
    """What a Dask worker does: the run rebuilt from its recipe, then one partition read and mapped."""
    from endpointkit.executors import _JOBS, Task, recipe_of, run_task
    from endpointkit.mapreduce import plan_run

    spec = load_spec(study / "study.yaml", data=study / "ds")
    plan = plan_run([spec], spec.plugins, ("count",), 8)
    try:
        output = run_task("fresh-worker", Task(3, 8, tuple(plan.cohorts)), recipe_of(spec, [spec], ("count",), 8))
    finally:
        _JOBS.pop("fresh-worker", None)
    manifest = read_manifest(study / "ds")
    (cohort,) = output.cohorts.values()
    assert cohort.patients == manifest.tables["patients"]["parts"][3]["rows"]  # every simulated patient is analysed
    assert output.checksums == {name: manifest.tables[name]["sha256"] for name in output.checksums}
    assert set(output.checksums) == {"patients", "treatments", "administrations", "relapses"}


def test_a_dataset_partitioned_again_is_the_dataset_of_the_original(study, tmp_path):
    assert main(["partition", str(study / "study.yaml"), "--data", str(study / "ds"), "-o", str(tmp_path / "ds3"), "--partitions", "3"]) == 0
    assert main(["partition", str(study / "study.yaml"), "-o", str(tmp_path / "direct"), "--partitions", "3"]) == 0
    again, direct = (json.loads((tmp_path / f / MANIFEST).read_text()) for f in ("ds3", "direct"))
    assert again["source"] == "parquet" and list(again["tables"]) == list(direct["tables"])
    for name, entry in direct["tables"].items():  # the same records, lines, origins and original checksums
        same = {key: value for key, value in entry.items() if key != "parts"}
        assert {key: value for key, value in again["tables"][name].items() if key != "parts"} == same
        for k in range(3):
            read = [pd.read_parquet(tmp_path / f / name / f"part-{k:05d}.parquet") for f in ("ds3", "direct")]
            pd.testing.assert_frame_equal(read[0], read[1], check_categorical=False)

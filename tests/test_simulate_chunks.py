"""``endpointkit simulate --chunk-patients``: a registry generated and written a chunk at a time.

Each chunk is drawn from a random stream of its own (the chunk's child of ``SeedSequence(seed)``),
so the chunked registry is fixed by (seed, chunk size) and differs from the unchunked one, which
stays exactly what it was. Written as CSV, the tables are the chunks' CSV files put end to end;
written as a partitioned dataset, they are the dataset ``endpointkit partition`` writes from those
files (same records, line numbers, checksums), and truth.json counts the whole registry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from endpointkit.cli import main
from endpointkit.errors import UsageError
from endpointkit.partitioned_dataset import MANIFEST, read_whole
from endpointkit.plugins.sources import CsvFolder
from endpointkit.simulate import (
    TABLE_NAMES,
    YEAR,
    _generate,
    chunk_generators,
    make_parameters,
    simulate_chunks,
    simulate_registry,
    write_registry,
)

from .paths import SPECS

N, CHUNK, SEED = 600, 200, 3
ARMS = {"arms": True, "arm_b_rate_ratio": 0.5, "arm_b_stop_hazard_ratio": 0.7}


@pytest.fixture(scope="module")
def chunked():
    return simulate_registry(N, SEED, ARMS, chunk_patients=CHUNK)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """The same chunked registry written by the command as CSV files and as a 4-partition dataset."""
    root = tmp_path_factory.mktemp("chunked")
    common = ["simulate", "--patients", str(N), "--seed", str(SEED), "--chunk-patients", str(CHUNK),
              *(f"--set={name}={value}" for name, value in ARMS.items())]
    assert main([*common, "-o", str(root / "csv")]) == 0
    assert main([*common, "--format", "parquet", "--partitions", "4", "-o", str(root / "pq")]) == 0
    return root


def _digest(sim) -> str:
    """Tables and truth (less the generator's version) of a registry, as one checksum."""
    truth = {key: value for key, value in sim.truth.items() if key != "generator"}
    text = b"".join(frame.to_csv(index=False, lineterminator="\n").encode() for frame in sim.tables.values())
    return hashlib.sha256(text + json.dumps(truth, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- the registry


def test_unchunked_output_is_unchanged():
    """Checksums of registries as the simulator wrote them before chunks existed."""
    assert _digest(simulate_registry(300, 5)) == "4ec47b76e7bebfd4627ab8708a80d35452d0ef6a562104b15ba28fa2c7036cf6"
    assert _digest(simulate_registry(200, 9, {"arms": True, "arm_b_rate_ratio": 0.5})) == "3165cc1170f830f8294c6148cfe1bb1560e773090c0e6e219b0bce496ec28aef"


def test_chunked_registry_is_fixed_by_seed_and_chunk_size(chunked):
    again = simulate_registry(N, SEED, ARMS, chunk_patients=CHUNK)
    assert _digest(again) == _digest(chunked)
    for other in (simulate_registry(N, SEED, ARMS, chunk_patients=300), simulate_registry(N, SEED, ARMS),
                  simulate_registry(N, SEED + 1, ARMS, chunk_patients=CHUNK)):
        assert not other.tables["patients"].equals(chunked.tables["patients"])
    assert chunked.truth["chunk_patients"] == CHUNK and chunked.truth["chunks"] == 3
    assert "chunk_patients" not in simulate_registry(50, SEED).truth


def test_patient_ids_are_unique_and_numbered_as_without_chunks(chunked):
    ids = chunked.tables["patients"]["patient_id"]
    assert ids.tolist() == [f"P{k:05d}" for k in range(1, N + 1)]
    for name in TABLE_NAMES:  # every record belongs to a patient, records of a patient together
        assert set(chunked.tables[name]["patient_id"]) <= set(ids)
        assert chunked.tables[name]["patient_id"].is_monotonic_increasing
    wide = simulate_registry(123_456, 1, chunk_patients=100_000)
    assert wide.tables["patients"]["patient_id"].iloc[[0, -1]].tolist() == ["P000001", "P123456"]


def test_chunks_are_independent_generations_put_end_to_end(chunked):
    """Chunk c is its own registry of patients c*CHUNK+1.. drawn from chunk_generators(seed, c),
    whatever the other chunks; the last chunk holds the rest."""
    chunks = list(simulate_chunks(N + 50, SEED, ARMS, CHUNK))
    assert [len(c.tables["patients"]) for c in chunks] == [200, 200, 200, 50]
    for name in TABLE_NAMES:
        together = pd.concat([c.tables[name] for c in chunks[:3]], ignore_index=True)
        pd.testing.assert_frame_equal(together, chunked.tables[name])
    # chunk 1 alone, from its own two streams, is the registry's patients 201-400
    alone = _generate(make_parameters(ARMS), CHUNK, *chunk_generators(SEED, 1), CHUNK, 5)
    for name in TABLE_NAMES:
        rows = chunked.tables[name]["patient_id"].between("P00201", "P00400")
        pd.testing.assert_frame_equal(alone.tables[name], chunked.tables[name][rows].reset_index(drop=True))


def test_truth_counts_the_whole_registry(chunked):
    """Every realised figure of truth.json, recomputed from the concatenated tables and hidden truth."""
    realized, hidden, kinds = chunked.truth["realized"], chunked.patients, chunked.relapse_kind
    assert chunked.truth["n_patients"] == N == len(hidden)
    assert realized["rows"] == {name: len(frame) for name, frame in chunked.tables.items()}
    for window in ("pre", "post", "off"):
        assert realized["person_years"][window] == pytest.approx(hidden[f"{window}_days"].sum() / YEAR, rel=1e-12)
        assert realized["relapses"][window] == hidden[f"{window}_relapses"].sum() == (kinds == window).sum()
    assert realized["relapses"]["onset"] == (kinds == "onset").sum() == N
    assert realized["duplicate_rows"] == (kinds == "duplicate").sum()
    assert realized["pseudo_rows"] == (kinds == "pseudo").sum() == (chunked.tables["relapses"]["pseudo"] == "true").sum()
    ivig = chunked.tables["treatments"].query("treatment == 'IVIG'")
    assert realized["discontinued"] == ivig["end_date"].notna().sum() == hidden["stopped"].sum()
    assert realized["stop_reasons"] == {r: int((ivig["stop_reason"] == r).sum()) for r in realized["stop_reasons"]}
    assert realized["missing_last_followup_date"] == chunked.tables["patients"]["last_followup_date"].isna().sum()
    # true relapses fewer than 30 days after the previous true relapse of the same patient
    relapses = chunked.tables["relapses"].assign(kind=kinds)
    true = relapses[relapses["kind"].isin(["onset", "pre", "post", "off"])]
    gap = pd.to_datetime(true["onset_date"]).groupby(true["patient_id"]).diff().dt.days
    assert realized["relapses_within_30_days"] == {w: int(((gap < 30) & (true["kind"] == w)).sum()) for w in ("pre", "post", "off")}
    for arm, rows in hidden.groupby("arm"):
        got = chunked.truth["arms"]["realized"][arm]
        assert got["patients"] == len(rows) == (chunked.tables["patients"]["group"] == arm).sum()
        assert got["post_relapses"] == rows["post_relapses"].sum() and got["discontinued"] == rows["stopped"].sum()
        assert got["post_person_years"] == pytest.approx(rows["post_days"].sum() / YEAR, rel=1e-12)


def test_cleaned_counts_of_a_chunked_registry_are_what_arr_change_counts(chunked, tmp_path):
    import endpointkit

    write_registry(chunked.tables, chunked.truth, tmp_path / "data")
    spec = tmp_path / "study.yaml"
    spec.write_text(f"study: {{id: sim}}\ndata: {{source: csv, path: {tmp_path / 'data'}}}\n"
                    "cohort: {index: {treatment: IVIG}}\n"
                    "endpoints:\n  - {id: arr, plugin: arr_change, params: {pre_window: since_onset_excl_first}}\n")
    per_patient = endpointkit.run(spec).per_patient["arr"]
    cleaned = chunked.truth["realized"]["after_cohort_cleaning"]["relapses"]
    assert (per_patient["pre_relapses"].sum(), per_patient["post_relapses"].sum()) == (cleaned["pre"], cleaned["post"])


# --------------------------------------------------------------------------- what the command writes


def test_csv_files_are_the_registry_the_python_api_gives(chunked, written, tmp_path):
    """One header, then each chunk's rows: byte for byte the files of the whole chunked registry."""
    write_registry(chunked.tables, chunked.truth, tmp_path / "api")
    assert sorted(p.name for p in (written / "csv").iterdir()) == sorted([*(f"{n}.csv" for n in TABLE_NAMES), "truth.json"])
    for name in TABLE_NAMES:
        assert (written / "csv" / f"{name}.csv").read_bytes() == (tmp_path / "api" / f"{name}.csv").read_bytes()
    ours, api = (json.loads((folder / "truth.json").read_text()) for folder in (written / "csv", tmp_path / "api"))
    assert ours == api


def test_dataset_is_the_partitioned_dataset_of_the_csv_files(written, tmp_path):
    """Checksums, rows, origins and columns as endpointkit partition writes them from the CSV files;
    each table read back whole is the table read from its CSV file (values and line numbers)."""
    spec = SPECS / "registry.yaml"
    assert main(["partition", str(spec), "--data", str(written / "csv"), "-o", str(tmp_path / "ds"), "--partitions", "4"]) == 0
    ours, theirs = (json.loads((folder / MANIFEST).read_text()) for folder in (written / "pq", tmp_path / "ds"))
    assert ours["partitions"] == 4 and ours["source"] == "csv" and list(ours["tables"]) == list(theirs["tables"])
    for name, entry in theirs["tables"].items():
        assert entry["sha256"] == hashlib.sha256((written / "csv" / f"{name}.csv").read_bytes()).hexdigest()
        assert {k: v for k, v in ours["tables"][name].items() if k != "parts"} == {k: v for k, v in entry.items() if k != "parts"}
        assert [p["rows"] for p in ours["tables"][name]["parts"]] == [p["rows"] for p in entry["parts"]]
        whole, checksum = read_whole(written / "pq", name)
        original, original_checksum = CsvFolder().read_table(written / "csv", name)
        assert checksum == original_checksum
        pd.testing.assert_frame_equal(whole, original, check_categorical=False)
    assert (written / "pq" / "truth.json").read_bytes() == (written / "csv" / "truth.json").read_bytes()
    assert sorted(p.name for p in written.iterdir()) == ["csv", "pq"]  # no staging or scratch folder left


def test_a_run_gives_the_same_results_for_any_partitions(written, tmp_path, capsys):
    spec = str(SPECS / "registry.yaml")
    for label, options in (("p1", ["--data", str(written / "pq"), "--partitions", "1"]),
                           ("p4", ["--data", str(written / "pq"), "--partitions", "4"]),
                           ("csv", ["--data", str(written / "csv")])):
        assert main(["run", spec, *options, "--quiet", "--format", "plain", "-o", str(tmp_path / label)]) == 0
    results = [(tmp_path / label / "results.csv").read_bytes() for label in ("p1", "p4", "csv")]
    assert results[0] == results[1] == results[2]
    assert f"{N},{float(N)}" in results[0].decode()  # every simulated patient is in the cohort


def test_the_command_reports_each_chunk_and_the_whole(tmp_path, capsys):
    assert main(["simulate", "--patients", "250", "--chunk-patients", "100", "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" in ")[0] for line in err[:3]] == [
        "endpointkit: simulated chunk 1 of 3 (100 of 250 patients)",
        "endpointkit: simulated chunk 2 of 3 (200 of 250 patients)",
        "endpointkit: simulated chunk 3 of 3 (250 of 250 patients)"]
    assert err[3].startswith("endpointkit: simulated 250 patients (seed 1, 3 chunks of 100) in ")


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("value, message", [
    ("0", "--chunk-patients: expected a number of patients per chunk >= 1, got 0"),
    ("-5", "--chunk-patients: expected a number of patients per chunk >= 1, got -5"),
    ("many", "argument --chunk-patients: invalid int value: 'many'"),
])
def test_bad_chunk_sizes_are_refused_with_exit_2(value, message, tmp_path, capsys):
    try:
        code = main(["simulate", "--patients", "10", "--chunk-patients", value, "-o", str(tmp_path / "r")])
    except SystemExit as exit_:  # argparse's own refusal of a value that is not a number
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_bad_chunk_size_from_python_is_a_usage_error():
    with pytest.raises(UsageError, match="--chunk-patients: expected a number of patients per chunk >= 1, got 0"):
        simulate_registry(10, 1, chunk_patients=0)


def test_a_registry_too_large_for_memory_at_once_names_the_option(tmp_path, capsys, monkeypatch):
    import endpointkit.simulate as simulate_module

    monkeypatch.setattr(simulate_module, "_available_memory", lambda: 4 * 2**30)
    assert main(["simulate", "--patients", "10000000", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--patients 10,000,000: generating the registry at once needs about 75 GiB of memory, more than the 4 GiB available" in err
    assert "add --chunk-patients 250000" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_failure_part_way_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    import endpointkit.simulate as simulate_module

    real = simulate_module.write_registry
    calls = []

    def disk_full_at_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(simulate_module, "write_registry", disk_full_at_the_second_chunk)
    for options in ([], ["--format", "parquet", "--partitions", "3"]):
        calls.clear()
        assert main(["simulate", "--patients", "30", "--chunk-patients", "10", *options, "-o", str(tmp_path / "r")]) == 2
        assert "No space left on device" in capsys.readouterr().err
        assert [p.name for p in tmp_path.iterdir()] in ([], ["r"])  # no staging, scratch or temporary file left
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

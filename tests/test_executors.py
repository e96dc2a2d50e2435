"""Executors and partitions never change a result.

The same study run serially, on 1, 3 and 8 partitions of the patients, in forked worker processes
and on a real Dask cluster (a LocalCluster of two worker processes talking TCP on the loopback
interface: a real scheduler and real workers) writes byte-identical files. A worker that dies has
its task retried; an endpoint that raises still fails only its own rows.
"""

from __future__ import annotations

import filecmp
import os
import textwrap
from pathlib import Path

import pytest

from endpointkit.cli import main

distributed = pytest.importorskip("distributed")

COUNT_PLUGIN = '''
import os
from pathlib import Path

import pandas as pd

from endpointkit import Endpoint, EndpointResult, hookimpl
from endpointkit.stats import median_row


class RelapseCount(Endpoint):
    """Relapses after the index date per patient (the map), their median (the reduce)."""

    name = "relapse_count"
    title = "Relapses after index"
    requires = ("relapses",)
    headline = ("after",)

    def derive(self, cohort, params, ctx):
        marker = os.environ.get("ENDPOINTKIT_TEST_DIE_ONCE")
        if marker and not Path(marker).exists():  # the first worker to get here dies, as if OOM-killed
            Path(marker).write_text("died")
            os._exit(9)
        patients = cohort.patients
        relapses = cohort.table("relapses")
        index = relapses["patient_id"].map(patients.set_index("patient_id")["index_date"])
        counts = relapses[relapses["onset_date"] > index].groupby("patient_id", observed=True).size()
        return pd.DataFrame({"patient_id": patients["patient_id"].to_numpy(),
                             "relapses_after": patients["patient_id"].map(counts).fillna(0).astype(int).to_numpy()})

    def summarise(self, per_patient, params, ctx):
        rows = [median_row("after", per_patient["relapses_after"], ctx.quantile_method)]
        return EndpointResult(rows=rows, per_patient=per_patient)


class Broken(Endpoint):
    name = "broken"
    title = "A plugin with a bug"

    def derive(self, cohort, params, ctx):
        raise ZeroDivisionError("bug in the plugin")

    def summarise(self, per_patient, params, ctx):
        return EndpointResult(rows=[], per_patient=per_patient)


class WholeOnly(Endpoint):
    name = "whole_only"
    title = "An endpoint with compute() only"

    def compute(self, cohort, params, ctx):
        return EndpointResult(rows=[], per_patient=cohort.patients[["patient_id"]])


@hookimpl
def register_endpoints():
    return [RelapseCount, Broken, WholeOnly]
'''

SPEC = """
study: {id: executors, title: Executors}
data: {source: csv, path: registry}
cohort: {index: {treatment: IVIG}}
plugins: [count_plugin.py]
endpoints:
  - {id: count, plugin: relapse_count}
sensitivity:
  - {name: cut-off 2018, set: {data.cutoff: 2018-01-01}}
  - {name: weibull quantiles, set: {statistics.quantile_method: weibull}}
  - {name: last follow-up, set: {cohort.follow_up_end: last_followup}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("executors")
    assert main(["simulate", "--patients", "400", "--seed", "3", "-o", str(root / "registry")]) == 0
    (root / "count_plugin.py").write_text(COUNT_PLUGIN)
    (root / "study.yaml").write_text(SPEC)
    return root


@pytest.fixture(scope="module")
def cluster():
    """A real Dask cluster: a scheduler and two single-threaded worker processes over TCP on 127.0.0.1."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  protocol="tcp://", dashboard_address=None) as local:
        yield local


def run_in(folder: Path, study: Path, *options: str) -> int:
    """Run the study writing to ``folder/out``; the same relative output path makes results.json's
    recorded command identical across runs."""
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(["run", str(study / "study.yaml"), "-o", "out", "--quiet", *options])
    finally:
        os.chdir(cwd)


def assert_same_files(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    different = [str(f) for f in files_a if not filecmp.cmp(a / f, b / f, shallow=False)]
    assert different == [], f"files differ from the serial run: {different}"


@pytest.fixture(scope="module")
def serial(study, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serial")
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    assert run_in(folder, study) == 0
    return folder / "out"


@pytest.mark.parametrize("options", [
    ("--partitions", "1"),
    ("--partitions", "3"),
    ("--partitions", "8"),
    ("--executor", "processes", "--jobs", "2", "--partitions", "3"),
    ("--executor", "processes", "--jobs", "2"),  # one partition: the variants' cohorts spread over the workers
], ids=lambda o: " ".join(o))
def test_every_partition_count_and_worker_processes_write_identical_files(study, serial, tmp_path, options):
    assert run_in(tmp_path, study, *options) == 0
    assert_same_files(serial, tmp_path / "out")


@pytest.mark.parametrize("partitions", ["1", "3", "8"])
def test_a_dask_cluster_writes_identical_files(study, serial, cluster, tmp_path, partitions):
    assert run_in(tmp_path, study, "--executor", "dask", "--scheduler", cluster.scheduler_address,
                  "--partitions", partitions) == 0
    assert_same_files(serial, tmp_path / "out")


def test_a_dask_worker_that_dies_has_its_task_retried(study, serial, cluster, tmp_path):
    marker = tmp_path / "died"
    with distributed.Client(cluster) as client:  # the workers' environment is theirs: set it there too
        client.run(lambda: os.environ.update(ENDPOINTKIT_TEST_DIE_ONCE=str(marker)))
    assert run_in(tmp_path, study, "--executor", "dask", "--scheduler", cluster.scheduler_address, "--partitions", "3") == 0
    assert marker.exists()  # a worker did die
    assert_same_files(serial, tmp_path / "out")


def test_an_endpoint_that_raises_fails_only_its_own_rows_on_dask(study, cluster, tmp_path, capsys):
    spec = study / "broken.yaml"
    spec.write_text(SPEC.replace("  - {id: count, plugin: relapse_count}",
                                 "  - {id: count, plugin: relapse_count}\n  - {id: bug, plugin: broken}"))
    status = main(["run", str(spec), "-o", str(tmp_path / "out"), "--quiet", "--executor", "dask",
                   "--scheduler", cluster.scheduler_address, "--partitions", "3"])
    assert status == 3
    err = capsys.readouterr().err
    assert "endpoint 'bug' (broken, variant primary) failed: ZeroDivisionError: bug in the plugin" in err
    assert "count" in (tmp_path / "out" / "results.csv").read_text()


def test_an_endpoint_with_compute_only_refuses_more_than_one_partition(study, tmp_path, capsys):
    spec = study / "whole.yaml"
    spec.write_text(SPEC.replace("plugin: relapse_count}", "plugin: whole_only}"))
    assert main(["run", str(spec), "-o", str(tmp_path / "one"), "--quiet"]) == 0
    assert main(["run", str(spec), "-o", str(tmp_path / "three"), "--quiet", "--partitions", "3"]) == 2
    err = capsys.readouterr().err
    assert "--partitions 3: endpoint 'count' (plugin whole_only" in err
    assert "implements only compute()" in err and "Traceback" not in err
    assert not (tmp_path / "three").exists()


def test_an_unreachable_scheduler_is_a_clear_error(study, tmp_path, capsys):
    status = main(["run", str(study / "study.yaml"), "-o", str(tmp_path / "out"), "--quiet", "--executor", "dask",
                   "--scheduler", "tcp://127.0.0.1:9"])
    assert status == 2
    err = capsys.readouterr().err
    assert "--scheduler tcp://127.0.0.1:9: cannot reach a Dask scheduler there" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    (("--scheduler", "tcp://127.0.0.1:8786"), "a scheduler address is for --executor dask"),
    (("--partitions", "0"), "--partitions: expected a number of partitions from 1 to 4096, got 0"),
])
def test_execution_options_are_checked(study, tmp_path, capsys, options, message):
    assert main(["run", str(study / "study.yaml"), "-o", str(tmp_path / "out"), "--quiet", *options]) == 2
    assert message in capsys.readouterr().err


def test_the_spec_can_choose_the_executor_and_the_command_line_wins(study, tmp_path):
    spec = study / "study.yaml"
    text = spec.read_text()
    try:
        spec.write_text(text + textwrap.dedent("""
            executor: {name: processes, partitions: 3, workers: 2}
        """))
        assert run_in(tmp_path / "spec", study) == 0
        assert run_in(tmp_path / "cli", study, "--executor", "serial", "--partitions", "1") == 0
    finally:
        spec.write_text(text)
    assert_same_files(tmp_path / "cli" / "out", tmp_path / "spec" / "out")


@pytest.mark.parametrize("executor", ["serial", "processes", "dask"])
def test_independent_items_run_on_every_executor_in_order(cluster, executor):
    """Simulation studies run their replicate cohorts as items (benchmarks/recovery.py)."""
    import math

    from endpointkit.executors import ExecutorSettings, map_items

    settings = ExecutorSettings(executor, workers=2, scheduler=cluster.scheduler_address if executor == "dask" else None)
    seen = []
    assert map_items(math.factorial, list(range(12)), settings, progress=lambda done, total, _: seen.append((done, total))) == [
        math.factorial(n) for n in range(12)]
    assert seen[-1] == (12, 12)


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_work_beside_the_run_goes_to_a_worker_process_when_there_are_workers(executor):
    """With worker processes, the report's figures are drawn in one while the run renders its
    tables; otherwise the work runs here, when its result is asked for."""
    from endpointkit.executors import ExecutorSettings, in_background

    data = {"values": list(range(10))}  # the worker sees this process's data (forked), unsent
    result = in_background(lambda: (os.getpid(), sum(data["values"])), ExecutorSettings(executor, workers=2))
    pid, total = result()
    assert total == 45
    assert (pid != os.getpid()) == (executor == "processes")


# --------------------------------------------------------------------------- the studies themselves

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(scope="module")
def registry_20000(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("registry_20000") / "data"
    assert main(["simulate", "--patients", "20000", "--seed", "11", "-o", str(folder)]) == 0
    return folder


def run_study(folder: Path, argv: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["run", *argv, "-o", "out", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return folder / "out"


@pytest.mark.parametrize("name", ["demo", "sensitivity grid", "20,000-patient registry"])
def test_the_studies_run_on_a_dask_cluster_as_on_one_process(name, cluster, registry_20000, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    argv = {"demo": [str(SPECS / "ivig_nmosd.yaml")],
            "sensitivity grid": [str(SPECS / "ivig_nmosd_sensitivity.yaml")],
            "20,000-patient registry": [str(SPECS / "registry.yaml"), "--data", str(registry_20000)]}[name]
    serial = run_study(tmp_path / "serial", argv)
    on_dask = run_study(tmp_path / "dask", [*argv, "--executor", "dask", "--scheduler", cluster.scheduler_address,
                                            "--partitions", "3"])
    assert_same_files(serial, on_dask)

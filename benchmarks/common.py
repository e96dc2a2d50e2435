"""Shared helpers of the benchmarks: paths, simulated registries, timed subprocesses, machine facts."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
DATA = BENCH / "data"  # git-ignored: simulated registries, run outputs, the pymsprog venv
SPEC = REPO / "specs" / "registry.yaml"
GRID_SPEC = BENCH / "registry_grid.yaml"
TABLES = ("patients", "treatments", "administrations", "relapses", "edss", "titers", "adverse_events")


def endpointkit_command() -> list[str]:
    """The ``endpointkit`` console script of this interpreter's environment (as a user runs it)."""
    script = Path(sys.executable).with_name("endpointkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "endpointkit.cli"]


# --------------------------------------------------------------------------- simulated registries


def registry_dir(n: int, seed: int = 1, settings: dict | None = None) -> Path:
    name = f"registry_{n}" + ("" if seed == 1 else f"_seed{seed}")
    name += "".join(f"_{k}-{v}" for k, v in sorted((settings or {}).items()))
    return DATA / name


def ensure_registry(n: int, seed: int = 1, settings: dict | None = None) -> tuple[Path, bool]:
    """The folder of a simulated registry, reused when its truth.json matches (n, seed, parameters,
    generator version) and every table is there; else simulated afresh. Returns (folder, reused)."""
    from endpointkit.simulate import make_parameters, simulate_registry, write_registry

    folder = registry_dir(n, seed, settings)
    params = make_parameters(settings or {})
    expected = simulate_registry(1, seed, params).truth  # the parameters block and generator as written now
    truth_file = folder / "truth.json"
    if truth_file.exists() and all((folder / f"{t}.csv").exists() for t in TABLES):
        try:
            truth = json.loads(truth_file.read_text())
        except ValueError:
            truth = {}
        if (truth.get("n_patients") == n and truth.get("seed") == seed
                and truth.get("parameters") == expected["parameters"] and truth.get("generator") == expected["generator"]):
            return folder, True
    sim = simulate_registry(n, seed, params)
    write_registry(sim.tables, sim.truth, folder)
    return folder, False


# --------------------------------------------------------------------------- timed subprocesses


@dataclass
class Timed:
    """One subprocess: wall seconds, peak resident memory (MiB, the largest of the process and the
    children it waited for), exit code, and the tail of its stderr."""

    seconds: float
    peak_mib: float
    returncode: int
    stderr: str = ""


def run_timed(command: list[str], cwd: Path = REPO, env: dict | None = None) -> Timed:
    """Run a command to completion, measuring its wall time and its own peak RSS (``os.wait4``)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode("utf-8", "replace")[-2000:]
    return Timed(seconds=seconds, peak_mib=usage.ru_maxrss / 1024, returncode=proc.returncode, stderr=tail)


@dataclass
class Series:
    """Repeated runs of one command."""

    runs: list[Timed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.returncode == 0 for r in self.runs)

    @property
    def best(self) -> float:
        return min(r.seconds for r in self.runs)

    @property
    def peak_mib(self) -> float:
        return max(r.peak_mib for r in self.runs)

    @property
    def error(self) -> str:
        bad = [r for r in self.runs if r.returncode != 0]
        return f"exit {bad[0].returncode}: {bad[0].stderr.strip()[-500:]}" if bad else ""


def repeat(command: list[str], times: int) -> Series:
    series = Series()
    for _ in range(times):
        series.runs.append(run_timed(command))
        if series.runs[-1].returncode != 0:
            break
    return series


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    import numpy
    import pandas
    import scipy

    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_name(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None

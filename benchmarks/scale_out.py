"""Scale-out benchmark of the executors (`make bench-scale`, writes benchmarks/SCALE_RESULTS.md).

1. 100,000 patients from CSV: ``--executor serial`` against ``dask`` (a LocalCluster, ``--jobs 2``, 2 and
   8 partitions) and ``processes`` (``--jobs 2 --partitions 8``): wall time, ratio to serial, and every
   output file compared byte for byte (same relative ``-o`` path, ``SOURCE_DATE_EPOCH`` pinned).
2. 1,000,000 patients simulated straight to a 32-partition Parquet dataset, run with serial, processes
   and dask: wall time and the peak resident memory of every process of the run; plus the one-process
   run from CSV of the same registry.
3. Optionally (``--largest N``) a larger registry, simulated 250,000 patients at a time
   (``--chunk-patients``: the simulator holds one chunk, whatever N) into N / 31,250 partitions (at
   least 32), and run with dask on as many partitions.

How memory is measured: each run is a subprocess of this script. While it runs, a sampler thread walks
the process tree under it every 0.2 s (parent ids from /proc/PID/stat) and keeps, for every process
it has seen, the largest ``VmHWM`` (the kernel's own high-water mark of resident memory, so a peak
between two samples is not missed; only the last < 0.2 s of a process's life can be) and the largest
sum of ``VmRSS`` over the tree (memory the whole run held at once). After the run, ``os.wait4`` gives
the kernel's ``ru_maxrss`` of the subprocess, which is the largest of the process itself and every
descendant it waited for: an independent check of the sampled maximum. The sampler also stops a run
(SIGKILL to its process group) if the tree holds more than ``--memory-cap`` GiB or the machine's
available memory falls under 2 GiB, so that the benchmark cannot take the shared machine down.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH, DATA, SPEC, endpointkit_command, machine_info

SCALE = DATA / "scale"
WORK = SCALE / "work"  # every run writes to WORK/out (the same relative -o path), then it is moved
RESULTS = BENCH / "SCALE_RESULTS.md"
EPOCH = "1767225600"  # 2026-01-01: results.json's timestamp is pinned, so outputs can be compared byte for byte
LARGEST_CHUNK = 250_000  # --largest: patients simulated at a time (about 2.2 GiB for the simulator)
GIB = 1024**3


# --------------------------------------------------------------------------- measuring a process tree


def _status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process in bytes (empty when it has gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _label(pid: int, root: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode("utf-8", "replace") for w in raw if w]
    text = " ".join(Path(words[0]).name if i == 0 else w for i, w in enumerate(words[:6]))
    if "multiprocessing" in text or "spawn_main" in text or "forkserver" in text:
        return "worker (multiprocessing child)"
    if "endpointkit" in text:
        command = "endpointkit " + text.split("endpointkit", 1)[1].split()[0]
        return command + (" (the calling process)" if pid == root else " (forked worker)")
    return text[:70]


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Measured:
    label: str
    command: list[str]
    seconds: float = 0.0
    returncode: int = 0
    wait4_maxrss: int = 0  # bytes: largest of the subprocess and its waited-for descendants
    cpu: float = 0.0  # user + system seconds of the subprocess and its waited-for descendants
    peaks: dict[int, tuple[str, int]] = field(default_factory=dict)  # pid -> (label, VmHWM bytes)
    tree_peak: int = 0  # largest sum of VmRSS over the tree at one sample
    killed: str = ""
    stderr: str = ""
    stdout: str = ""
    load_before: str = ""
    load_after: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.killed

    @property
    def max_process(self) -> int:
        return max([hwm for _, hwm in self.peaks.values()] + [self.wait4_maxrss])


def measure(label: str, command: list[str], cwd: Path, memory_cap: float, env: dict | None = None) -> Measured:
    """Run ``command`` to completion, sampling its process tree (see the module docstring)."""
    m = Measured(label=label, command=command, load_before=_load())
    stop = threading.Event()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True)

        def sample() -> None:
            while not stop.is_set():
                children = _children_map()
                tree, todo = [], [proc.pid]
                while todo:
                    pid = todo.pop()
                    tree.append(pid)
                    todo.extend(children.get(pid, []))
                total = 0
                for pid in tree:
                    st = _status(pid)
                    if not st:
                        continue
                    total += st.get("VmRSS", 0)
                    old = m.peaks.get(pid)
                    if old is None or st.get("VmHWM", 0) > old[1]:
                        m.peaks[pid] = (old[0] if old else _label(pid, proc.pid), st.get("VmHWM", 0))
                m.tree_peak = max(m.tree_peak, total)
                if total > memory_cap * GIB or _available() < 2 * GIB:
                    m.killed = f"stopped: tree {total / GIB:.1f} GiB, machine available {_available() / GIB:.1f} GiB"
                    with contextlib.suppress(OSError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    return
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        m.seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        proc.returncode = m.returncode = os.waitstatus_to_exitcode(status)
        m.wait4_maxrss = usage.ru_maxrss * 1024
        m.cpu = usage.ru_utime + usage.ru_stime
        err.seek(0)
        m.stderr = err.read().decode("utf-8", "replace")[-1500:]
        out.seek(0)
        m.stdout = out.read().decode("utf-8", "replace")[-20000:]
    m.load_after = _load()
    return m


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- data and runs


def simulate(n: int, folder: Path, memory_cap: float, partitions: int | None = None, chunk: int | None = None) -> Measured | None:
    """Simulate a registry once (reused when its truth.json is there); None when reused. ``chunk``:
    generated that many patients at a time (another registry than the unchunked one of the seed)."""
    if (folder / "truth.json").exists():
        return None
    if folder.exists():
        shutil.rmtree(folder)
    command = [*endpointkit_command(), "simulate", "--patients", str(n), "--seed", "1", "-o", str(folder)]
    if partitions:
        command += ["--format", "parquet", "--partitions", str(partitions)]
    if chunk:
        command += ["--chunk-patients", str(chunk)]
    return measure(f"simulate {n:,}" + (f" to {partitions} Parquet partitions" if partitions else " to CSV")
                   + (f", {chunk:,} at a time" if chunk else ""),
                   command, SCALE, memory_cap)


def run_study(label: str, data: Path, options: list[str], memory_cap: float, keep_as: str | None = None) -> Measured:
    out = WORK / "out"
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    command = [*endpointkit_command(), "run", str(SPEC), "--data", str(data), "-o", "out", "--quiet", *options]
    m = measure(label, command, WORK, memory_cap, env=env)
    if keep_as and out.exists():
        kept = WORK / keep_as
        if kept.exists():
            shutil.rmtree(kept)
        out.rename(kept)
    return m


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def compare(reference: Path, other: Path, ignore: tuple[str, ...] = ()) -> str:
    a, b = tree_digest(reference), tree_digest(other)
    a, b = ({k: v for k, v in d.items() if k not in ignore} for d in (a, b))
    if a == b:
        return f"identical ({len(a)} files" + (f"; {', '.join(ignore)} name the other source and folder)" if ignore else ")")
    missing = sorted(set(a) ^ set(b))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return f"DIFFERENT: {len(differ)} files differ {differ[:5]}, {len(missing)} only on one side {missing[:5]}"


# --------------------------------------------------------------------------- where the calling process's memory goes


def probe_phases(data: Path, partitions: int) -> None:
    """The serial run's calling process, phase by phase (the steps of ``engine.run_spec``): resident
    memory now and its high-water mark during each phase (each endpoint's summary its own line), and the bytes of what is held (the
    partitions' maps, the merged per-patient frames). Prints one line per phase."""
    import gc

    from endpointkit.data import CohortData
    from endpointkit.disclosure import apply_disclosure
    from endpointkit.engine import (
        data_source,
        executor_settings,
        job_from_recipe,
        merge,
        partition_reader,
        plan_run,
        recipe_of,
        reduce_variant,
        select_variants,
    )
    from endpointkit.executors import execute, tasks_for
    from endpointkit.mapreduce import keep_output
    from endpointkit.results import Results
    from endpointkit.spec import load_spec
    from endpointkit.spill import FrameStore, release_memory

    def show(phase: str, held: str = "") -> None:
        st = _status(os.getpid())
        print(f"| {phase} | {mib(st['VmRSS'])} | {mib(st['VmHWM'])} | {held} |", flush=True)
        with contextlib.suppress(OSError):  # the next line's high-water mark is that phase's own (Linux)
            Path("/proc/self/clear_refs").write_text("5")

    import endpointkit.engine as engine

    summarise = engine._summarise

    def summarise_shown(endpoint_cls, step_result, params, ctx):
        result = summarise(endpoint_cls, step_result, params, ctx)
        show(f"  {endpoint_cls.name} summarised", f"{mib(store.held)} in memory, {mib(store.spilled)} on disk")
        return result

    engine._summarise = summarise_shown

    show("imports done")
    spec = load_spec(SPEC, data=data)
    settings = executor_settings(spec, 1, "serial", partitions, None)
    variants = select_variants(spec, None)
    plan = plan_run(variants, spec.plugins, (), partitions)
    job = job_from_recipe("probe", recipe_of(spec, variants, (), partitions))
    job.plan, job.read = plan, partition_reader(spec, spec.plugins, ())
    one = job.read(0, partitions)
    show("one partition read", f"its tables {mib(sum(int(t.memory_usage(deep=True).sum()) for t in one.tables.values()))}")
    del one
    gc.collect()
    store = FrameStore()
    outputs = execute(job, tasks_for(plan, partitions, 1), settings, keep=lambda output: keep_output(output, store))
    show(f"map of all {partitions} partitions done", f"per-patient frames and data-quality records: {mib(store.held)} "
                                                     f"in memory, {mib(store.spilled)} on disk")
    merged = merge(outputs, plan, store)
    del outputs
    release_memory()
    show("merged (attrition, data quality)", f"{mib(store.held)} in memory, {mib(store.spilled)} on disk")
    cache: dict = {}
    results = [reduce_variant(v, plan, merged, spec.plugins, cache, (), store) for v in variants]
    show("summaries (reduce) done", f"{sum(len(r.frame) for r in results)} result rows; per-patient frames: "
                                    f"{mib(store.held)} in memory, {mib(store.spilled)} on disk")
    described = CohortData(tables={}, source=data_source(spec, spec.plugins).name, path=spec.data_path,
                           checksums=merged.checksums)
    everything = apply_disclosure(Results.from_variants(spec, spec.plugins, described, results))
    with tempfile.TemporaryDirectory() as folder:
        everything.write(Path(folder) / "out")
        show("outputs written (-o)", f"{mib(store.held)} in memory, {mib(store.spilled)} on disk")


# --------------------------------------------------------------------------- report


def mib(b: int) -> str:
    return f"{b / 2**20:,.0f} MiB"


def process_table(m: Measured) -> list[str]:
    rows = ["| process (pid) | peak RSS (VmHWM) |", "|---|---|"]
    for pid, (label, hwm) in sorted(m.peaks.items(), key=lambda kv: -kv[1][1]):
        if hwm >= 20 * 2**20:  # leave out shells and tiny helpers
            rows.append(f"| `{label}` ({pid}) | {mib(hwm)} |")
    rows.append(f"| `wait4` ru_maxrss of the run (largest of it and its waited-for descendants) | {mib(m.wait4_maxrss)} |")
    rows.append(f"| all processes of the run at once (largest sampled sum of VmRSS) | {mib(m.tree_peak)} |")
    return rows


def status(m: Measured) -> str:
    if m.killed:
        return m.killed
    return "ok" if m.returncode == 0 else f"exit {m.returncode}: {m.stderr.strip()[-300:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each 100,000-patient configuration (best kept)")
    parser.add_argument("--skip-million", action="store_true", help="only the 100,000-patient comparison")
    parser.add_argument("--skip-csv-million", action="store_true", help="leave out the one-process run from CSV at 1,000,000")
    parser.add_argument("--largest", type=int, default=0, help="also simulate and run this many patients (e.g. 10000000)")
    parser.add_argument("--memory-cap", type=float, default=18.0, help="GiB: a run whose processes hold more is stopped")
    parser.add_argument("--probe", type=Path, metavar="DATA", help=argparse.SUPPRESS)  # internal: probe_phases in this process
    parser.add_argument("--probe-partitions", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe_phases(args.probe, args.probe_partitions)
        return 0

    SCALE.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    started = time.perf_counter()
    lines: list[str] = []
    command_line = " ".join(["python benchmarks/scale_out.py", *sys.argv[1:]])
    sims: list[Measured] = []

    # 1. 100,000 patients from CSV
    csv100k = SCALE / "registry_100000_csv"
    sims += [s for s in [simulate(100_000, csv100k, args.memory_cap)] if s]
    configs = [
        ("serial", ["--executor", "serial"]),
        ("dask, --jobs 2, 2 partitions", ["--executor", "dask", "--jobs", "2", "--partitions", "2"]),
        ("dask, --jobs 2, 8 partitions", ["--executor", "dask", "--jobs", "2", "--partitions", "8"]),
        ("processes, --jobs 2, 8 partitions", ["--executor", "processes", "--jobs", "2", "--partitions", "8"]),
    ]
    small: list[tuple[str, list[Measured], str]] = []
    for i, (label, options) in enumerate(configs):
        runs = [run_study(label, csv100k, options, args.memory_cap, keep_as=f"out_100k_{i}") for _ in range(args.repeat)]
        same = "reference" if i == 0 else compare(WORK / "out_100k_0", WORK / f"out_100k_{i}")
        small.append((label, runs, same))
        print(f"100k {label}: {[round(r.seconds, 2) for r in runs]} {same}", flush=True)
    serial_best = min(r.seconds for r in small[0][1])

    lines += ["# Scale-out: executors and partitions (`make bench-scale`)", "",
              f"Command: `{command_line}` (`benchmarks/scale_out.py`; the study is `specs/registry.yaml`, all seven "
              "built-in endpoints, with `--quiet -o out`).", "",
              f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB memory shared with other "
              f"sessions, Python {info['python']}, pandas {info['pandas']}, {info['date']}. Load average (1, 5, 15 min) "
              f"at the start: **{info['load_average']}**; at the end: **LOAD_END**. Other processes were loading the same 2 "
              "cores, so every time here is noisy (each run's load is in the tables).", "",
              "Memory: " + " ".join(__doc__.split("How memory is measured:")[1].split("\n\n")[0].split()), "",
              "## 1. 100,000 patients from CSV", "",
              f"Best of {args.repeat} runs each; every run writes `-o out` from the same working folder with "
              f"`SOURCE_DATE_EPOCH={EPOCH}`, and every output file is compared with the serial run's.", "",
              "| executor | runs (s) | best (s) | vs serial | CPU s (all processes) | largest process | outputs vs serial | load before → after |",
              "|---|---|---|---|---|---|---|---|"]
    for label, runs, same in small:
        best = min(r.seconds for r in runs) if all(r.ok for r in runs) else float("nan")
        bad = next((r for r in runs if not r.ok), None)
        lines.append(f"| {label} | {', '.join(f'{r.seconds:.1f}' for r in runs)} | {best:.2f} | {best / serial_best:.2f}x | "
                     f"{min(r.cpu for r in runs):.1f} | {mib(max(r.max_process for r in runs))} | {same if bad is None else status(bad)} | "
                     f"{runs[0].load_before.split()[0]} → {runs[-1].load_after.split()[0]} |")
    dask_ratio = max(min(r.seconds for r in runs) for label, runs, _ in small if label.startswith("dask")) / serial_best
    lines += ["", f"Target: dask ≤ 1.5x serial: **{'met' if dask_ratio <= 1.5 else 'missed'}** "
              f"(worst dask configuration {dask_ratio:.2f}x).", ""]

    big: list[Measured] = []
    if not args.skip_million:
        pq1m = SCALE / "registry_1000000_parquet32"
        sims += [s for s in [simulate(1_000_000, pq1m, args.memory_cap, partitions=32)] if s]
        for label, options in [("serial, 32 partitions", ["--executor", "serial", "--partitions", "32"]),
                               ("processes, --jobs 2, 32 partitions", ["--executor", "processes", "--jobs", "2", "--partitions", "32"]),
                               ("dask, --jobs 2, 32 partitions", ["--executor", "dask", "--jobs", "2", "--partitions", "32"])]:
            big.append(run_study(label, pq1m, options, args.memory_cap, keep_as=f"out_1m_{len(big)}"))
            print(f"1M {label}: {big[-1].seconds:.1f} s, max process {mib(big[-1].max_process)} {status(big[-1])}", flush=True)
        if not args.skip_csv_million:
            csv1m = SCALE / "registry_1000000_csv"
            sims += [s for s in [simulate(1_000_000, csv1m, args.memory_cap)] if s]
            big.append(run_study("one process from CSV (serial, 1 partition)", csv1m, ["--executor", "serial"],
                                 args.memory_cap, keep_as=f"out_1m_{len(big)}"))
            print(f"1M CSV: {big[-1].seconds:.1f} s, max process {mib(big[-1].max_process)} {status(big[-1])}", flush=True)
        lines += ["## 2. 1,000,000 patients from a 32-partition Parquet dataset", "",
                  "| run | wall (s) | vs 100,000 serial | CPU s (all processes) | largest process | all processes at once | "
                  "outputs vs serial | load before → after | status |", "|---|---|---|---|---|---|---|---|---|"]
        for i, m in enumerate(big):
            ignore = ("report.html", "results.json") if "CSV" in m.label else ()  # they record the data's source and path
            same = "reference" if i == 0 else (compare(WORK / "out_1m_0", WORK / f"out_1m_{i}", ignore) if m.ok and big[0].ok else "-")
            lines.append(f"| {m.label} | {m.seconds:.1f} | {m.seconds / serial_best:.1f}x | {m.cpu:.0f} | {mib(m.max_process)} | "
                         f"{mib(m.tree_peak)} | {same} | {m.load_before.split()[0]} → {m.load_after.split()[0]} | {status(m)} |")
        lines += [""]
        for m in big:
            lines += [f"### Processes of: {m.label}", "", *process_table(m), ""]
        probe = measure("phases of the serial run", [sys.executable, str(Path(__file__).resolve()), "--probe", str(pq1m)],
                        BENCH, args.memory_cap)
        lines += ["### Where the calling process's memory goes (serial, 32 partitions)", "",
                  "The steps of `engine.run_spec` replayed in one process (`scale_out.py --probe`), with the process's "
                  f"resident memory after each ({probe.seconds:.0f} s, {status(probe)}):", "",
                  "| after | RSS now | RSS high-water mark since the line before | held |", "|---|---|---|---|", probe.stdout.strip(), ""]
        print(probe.stdout, flush=True)
        runs32 = big[:3]
        within = all(m.ok and m.max_process <= 2 * GIB for m in runs32)
        tenfold = all(m.ok and m.seconds <= 10 * serial_best for m in runs32)
        faster = runs32[1].ok and runs32[0].ok and runs32[1].seconds < runs32[0].seconds
        lines += ["Targets with 32 partitions:", "",
                  f"* peak memory of every process ≤ 2 GiB: **{'met' if within else 'missed'}** "
                  f"(largest: {', '.join(f'{m.label}: {mib(m.max_process)}' for m in runs32)})",
                  f"* time ≤ 10x the 100,000-patient serial run ({10 * serial_best:.0f} s): **{'met' if tenfold else 'missed'}**",
                  f"* processes with 2 workers faster than serial: **{'met' if faster else 'missed'}** "
                  f"({runs32[1].seconds:.1f} s vs {runs32[0].seconds:.1f} s)", ""]

    if args.largest:
        n = args.largest
        partitions = max(32, n // 31250)
        folder = SCALE / f"registry_{n}_chunked_parquet{partitions}"
        sim = simulate(n, folder, args.memory_cap, partitions=partitions, chunk=LARGEST_CHUNK)
        if sim:
            sims.append(sim)
        lines += [f"## 3. {n:,} patients", ""]
        if sim is not None and not sim.ok:
            lines += [f"Simulating {n:,} patients did not complete: {status(sim)} (the simulator holds one chunk "
                      f"of {LARGEST_CHUNK:,} patients at a time).", ""]
        else:
            m = run_study(f"dask, --jobs 2, {partitions} partitions, {n:,}", folder,
                          ["--executor", "dask", "--jobs", "2", "--partitions", str(partitions)], args.memory_cap)
            lines += [f"{m.label}: {m.seconds:.1f} s, largest process {mib(m.max_process)}, all at once {mib(m.tree_peak)}: "
                      f"{status(m)}", "", *process_table(m), ""]

    if sims:
        lines += ["## Simulating the registries (for scale; not a target)", "",
                  "| step | wall (s) | largest process | status |", "|---|---|---|---|"]
        lines += [f"| {s.label} | {s.seconds:.0f} | {mib(s.max_process)} | {status(s)} |" for s in sims]
        lines += [""]
    lines += [f"Total benchmark time: {time.perf_counter() - started:.0f} s.", ""]
    text = "\n".join(lines).replace("LOAD_END", _load())
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

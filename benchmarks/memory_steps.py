"""The calling process's memory, step by step, during a real ``endpointkit run``.

Runs ``endpointkit run ARGS`` in this process with the engine's steps wrapped: before and after each
(the map, the merge, each endpoint's merge of its per-patient parts, summary and store, each frame
of more than a million rows stored, the rendering, each CSV written from disk) it prints the
resident memory now and its high-water mark since the previous line (Linux: the mark is reset
through ``/proc/self/clear_refs`` at each line), so the largest mark printed is the run's peak.

    python benchmarks/memory_steps.py run specs/registry.yaml --data benchmarks/data/pq10m \\
        --partitions 320 --executor dask --jobs 2 -o OUT --quiet > steps.txt
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from endpointkit import cli, engine, mapreduce, output, spill

STARTED = time.perf_counter()


def _memory() -> tuple[int, int]:
    fields = {}
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0]) // 1024
    return fields["VmRSS"], fields["VmHWM"]


def show(label: str) -> None:
    now, peak = _memory()
    print(f"{time.perf_counter() - STARTED:7.1f} s  {label}: now {now:,} MiB, peak since the line before {peak:,} MiB",
          file=sys.stderr, flush=True)
    Path("/proc/self/clear_refs").write_text("5")


def wrapped(function, label: str):
    def step(*args, **kwargs):
        show(f"before {label}")
        result = function(*args, **kwargs)
        show(f"after {label}")
        return result
    return step


def main() -> int:
    engine.execute = wrapped(engine.execute, "map")
    engine.merge = wrapped(engine.merge, "merge")
    engine._summarise = wrapped(engine._summarise, "summarise")
    output.render_files = wrapped(output.render_files, "render files")
    output._write_csv_pieces = wrapped(output._write_csv_pieces, "write a CSV file from disk")
    mapreduce.DerivedParts.frame = wrapped(mapreduce.DerivedParts.frame, "merge an endpoint's per-patient parts")
    put = spill.FrameStore.put

    def store(self, frame):
        return (wrapped(put, f"store {len(frame):,} rows") if len(frame) > 1_000_000 else put)(self, frame)

    spill.FrameStore.put = store
    return cli.main(sys.argv[1:])


if __name__ == "__main__":  # Dask's worker processes import this file again: they must not run it
    sys.exit(main())

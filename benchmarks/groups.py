"""The cost of subgroups: the default study (specs/registry.yaml) on a simulated 100,000-patient
registry, ungrouped and with ``by: sex`` (2 groups), each run as a user runs it (a subprocess).
Target: the grouped run costs at most 1.5x the ungrouped one. Writes benchmarks/GROUPS_RESULTS.md.

``python benchmarks/groups.py [--patients N] [--repeats K]`` from the repository root; not part of the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH,
    DATA,
    SPEC,
    endpointkit_command,
    ensure_registry,
    fresh_dir,
    machine_info,
    repeat,
)

TARGET = 1.5


def grouped_spec(by: str) -> Path:
    """specs/registry.yaml with a top-level ``by:`` (the benchmark's own spec file, git-ignored)."""
    path = DATA / f"registry_by_{by}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"extends: {SPEC}\nby: {by}\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    folder, _ = ensure_registry(args.patients)
    command = endpointkit_command()
    out = DATA / "groups_out"
    timings = {}
    for name, spec in (("ungrouped", SPEC), ("by: sex (2 groups)", grouped_spec("sex"))):
        series = repeat([*command, "run", str(spec), "--data", str(folder), "-o", str(fresh_dir(out)), "--quiet"], args.repeats)
        if not series.ok:
            print(f"{name}: {series.error}", file=sys.stderr)
            return 1
        timings[name] = series
    plain, grouped = timings["ungrouped"], timings["by: sex (2 groups)"]
    ratio = grouped.best / plain.best
    machine = machine_info()
    lines = [
        "# Subgroups: the cost of `by:`",
        "",
        f"`python benchmarks/groups.py` ({machine['date']}, {machine['nproc']} CPUs): `specs/registry.yaml` (all built-in "
        f"endpoints at their defaults) on a simulated registry of {args.patients:,} patients (seed 1), best of "
        f"{args.repeats} runs each, a whole `endpointkit run -o` as a subprocess.",
        "",
        "| run | seconds (best) | peak memory (MiB) |",
        "|---|---|---|",
        *(f"| {name} | {s.best:.1f} | {s.peak_mib:.0f} |" for name, s in timings.items()),
        "",
        f"Grouped / ungrouped: **{ratio:.2f}x** (target at most {TARGET}x: {'met' if ratio <= TARGET else 'missed'}).",
        "",
        "A grouped run summarises each endpoint's per-patient frame once per group (nothing is derived",
        "again); an endpoint that implements only `compute` is computed once more on each group's patients.",
        "",
    ]
    (BENCH / "GROUPS_RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

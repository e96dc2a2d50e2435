"""Writing files atomically: every file goes to a temporary name in its folder and is renamed into
place only when all are written, so a failure or an interrupt leaves no partial output.

Large frames are written as CSV by two processes (about half the cells in a forked helper) when
that is safe; the files are byte-identical either way.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
import threading
from pathlib import Path

import pandas as pd

from .errors import UsageError
from .results import Results

HELPER_MIN_CELLS = 2_000_000


def check_writable(out_dir: Path, option: str = "-o") -> None:
    """Fail early (before any computation) when the output folder cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: it is a file, expected a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".endpointkit-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")  # dates without a time print as YYYY-MM-DD


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        frame.to_csv(stream, index=False, lineterminator="\n")


def _write_csvs(jobs: list[tuple[pd.DataFrame, str]]) -> None:
    for frame, path in jobs:
        _write_csv(frame, path)


def _split_for_helper(frames: dict[str, pd.DataFrame]) -> set[str]:
    """Frames for a forked helper process (about half the cells), or none.

    Only with the ``fork`` start method (the child inherits the frames: nothing is pickled), from a
    single-threaded process (where forking is safe), on two or more cores, for large outputs.
    """
    cells = {name: frame.size for name, frame in frames.items()}
    if sum(cells.values()) < HELPER_MIN_CELLS or threading.active_count() > 1 or (os.cpu_count() or 1) < 2:
        return set()
    if "fork" not in multiprocessing.get_all_start_methods():
        return set()
    helper: set[str] = set()
    loads = [0, 0]  # helper, this process
    for name in sorted(cells, key=lambda name: -cells[name]):
        side = 0 if loads[0] <= loads[1] else 1
        loads[side] += cells[name]
        if side == 0:
            helper.add(name)
    return helper


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _clean_json(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        return _clean_json(value.item())
    return value


def render_files(results: Results, fmt: str) -> dict[str, str | pd.DataFrame]:
    """Every output file's relative path and content (text, or a frame written as CSV)."""
    renderer = results.plugins.renderers.get(fmt, "--format")
    files: dict[str, str | pd.DataFrame] = {
        "results.csv": _csv(results.frame),
        f"table.{renderer.suffix}": results.table(fmt),
        "attrition.csv": _csv(results.attrition),
        "data_quality.csv": _csv(results.data_quality),
    }
    for endpoint_id, frame in results.per_patient.items():
        files[f"per_patient/{endpoint_id}.csv"] = frame
    if len(results.variants) > 1:
        files[f"side_by_side.{renderer.suffix}"] = results.side_by_side(fmt)
        files["what_moves.csv"] = _csv(results.what_moves())
    records = results.frame.astype(object).where(results.frame.notna(), None).to_dict(orient="records")
    payload = {
        "results": records,
        "attrition": results.attrition.to_dict(orient="records"),
        "failures": [{k: v for k, v in f.items() if k != "detail"} for f in results.failures],
        "provenance": results.provenance,
    }
    files["results.json"] = json.dumps(_clean_json(payload), indent=2, default=str) + "\n"
    return files


def write_files(out_dir: Path, files: dict[str, str | pd.DataFrame], option: str = "-o") -> list[Path]:
    """Write every file (text as is, frames as CSV) to a temporary name beside its target, then
    rename all into place; on any failure or interrupt, remove the temporary files."""
    staged: list[tuple[str, Path]] = []
    helper = None
    try:
        for relative in files:
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".endpointkit-", suffix=".tmp")
            os.close(handle)
            staged.append((temp, target))
        temps = dict(zip(files, (temp for temp, _ in staged), strict=True))
        frames = {name: content for name, content in files.items() if isinstance(content, pd.DataFrame)}
        delegated = _split_for_helper(frames)
        if delegated:
            jobs = [(frames[name], temps[name]) for name in delegated]
            helper = multiprocessing.get_context("fork").Process(target=_write_csvs, args=(jobs,), daemon=True)
            helper.start()
        for name, content in files.items():
            if name in delegated:
                continue
            if isinstance(content, pd.DataFrame):
                _write_csv(content, temps[name])
            else:
                with open(temps[name], "w", encoding="utf-8", newline="") as stream:
                    stream.write(content)
        if helper is not None:
            helper.join()
            failed, helper = helper.exitcode, None
            if failed:
                raise UsageError(f"{option}: writing {', '.join(sorted(delegated))} to {out_dir} failed (exit status {failed})")
        mode = _file_mode()
        for temp, target in staged:
            os.chmod(temp, mode)  # mkstemp makes 0600 files; give them the usual permissions
            os.replace(temp, target)
        written = [target for _, target in staged]
        staged = []
        return written
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None
    finally:
        if helper is not None:
            helper.terminate()
            helper.join()
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)

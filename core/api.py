"""The Python API for notebooks and scripts: :func:`run` a spec (a file, a mapping or YAML text) on
data from a folder or from DataFrames already in memory, then write, plot or display the results."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .errors import DataError, UsageError
from .results import Results
from .spec import Spec

if TYPE_CHECKING:
    from .data import CohortData


def _looks_like_yaml(text: str) -> bool:
    """YAML text rather than a file name: it has a line break, or a ``key:`` and no spec suffix."""
    if "\n" in text:
        return True
    return ":" in text and not text.strip().lower().endswith((".yaml", ".yml")) and not Path(text).exists()


def load(spec, *, data=None, base: str | os.PathLike[str] | None = None) -> Spec:
    """A validated :class:`~endpointkit.spec.Spec` from a file path, a mapping or YAML text.

    ``data`` (a folder) replaces ``data.path``; ``base`` is the folder against which a mapping's or
    YAML text's relative paths resolve (default: the working folder)."""
    from .spec import Spec, load_spec, load_spec_mapping, parse_yaml

    folder = data if isinstance(data, str | os.PathLike) else None
    if isinstance(spec, Spec):
        return load_spec(spec.path, data=folder) if folder is not None and spec.path is not None else spec
    if isinstance(spec, Mapping):
        return load_spec_mapping(dict(spec), base=base, data=folder)
    if isinstance(spec, str) and _looks_like_yaml(spec):
        return load_spec_mapping(parse_yaml(spec, "<spec text>"), base=base, data=folder)
    if isinstance(spec, str | os.PathLike):
        return load_spec(Path(spec), data=folder)
    raise UsageError(f"spec: expected a path, a mapping or YAML text, got {type(spec).__name__}")


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """A user's DataFrame as the text a CSV file would hold (dates as YYYY-MM-DD, blanks missing),
    so that it is checked exactly like a loaded file."""
    out = {}
    for name, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column):
            text = column.dt.strftime("%Y-%m-%d")
        elif pd.api.types.is_bool_dtype(column):
            text = column.map({True: "true", False: "false"})
        else:
            text = column.astype(object).map(lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
        out[str(name)] = text.where(column.notna(), None).astype(object)
    return pd.DataFrame(out, index=range(len(frame)))


def frames_data(frames: Mapping[str, pd.DataFrame], spec: Spec) -> CohortData:
    """CohortData from a mapping of canonical table name -> DataFrame, validated like files."""
    from .data import TABLES, CohortData, patients_first, prepare_tables
    from .engine import needed_tables

    unknown = [name for name in frames if name not in TABLES]
    if unknown:
        raise UsageError(f"data: unknown table '{unknown[0]}'; tables: {', '.join(TABLES)}")
    for name, frame in frames.items():
        if not isinstance(frame, pd.DataFrame):
            raise UsageError(f"data['{name}']: expected a pandas DataFrame, got {type(frame).__name__}")
    required, optional = needed_tables(spec, spec.plugins)
    checksums = {}

    def read():
        for name in patients_first(required + optional):
            if name not in frames:
                if name in required:
                    raise DataError(name, "table not given in data; it is required by the chosen endpoints")
                continue
            text = _text(frames[name])
            if text.empty and name in ("patients", "treatments"):
                raise DataError(name, "the table has no rows")
            checksums[name] = hashlib.sha256(pd.util.hash_pandas_object(text, index=False).to_numpy().tobytes()).hexdigest()
            yield name, text

    tables = prepare_tables(read(), spec.data.columns)
    return CohortData(tables=tables, checksums=checksums, source="dataframes", path=Path("<in memory>"))


def run(
    spec: str | os.PathLike[str] | Mapping[str, object] | Spec,
    data: str | os.PathLike[str] | Mapping[str, pd.DataFrame] | None = None,
    *,
    only: str | Sequence[str] | None = None,
    variant: str | None = None,
    jobs: int = 1,
    base: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Results:
    """Run a study and return its :class:`~endpointkit.results.Results`.

    :param spec: a spec file's path, a mapping (as ``yaml.safe_load`` gives) or YAML text.
    :param data: a data folder replacing ``data.path``, or a mapping of canonical table name
        (``patients``, ``treatments``, ``relapses``, ...) to a DataFrame, checked as files are.
    :param only: an endpoint id, or a list of ids, to run alone.
    :param variant: run only this sensitivity variant (``"primary"`` for the main analysis).
    :param jobs: worker processes for sensitivity variants.
    :param base: folder for a mapping's or YAML text's relative paths (default: the working folder).
    :param progress: called as ``progress(done, total, variant name)`` after each variant.
    :raises endpointkit.errors.EndpointkitError: a bad spec, data or argument (its message names where).
    """
    from .engine import run_spec

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs: expected a number of worker processes >= 1, got {jobs!r}")
    ids = (only,) if isinstance(only, str) else tuple(only or ())
    loaded = load(spec, data=data, base=base)
    cohort = frames_data(data, loaded) if isinstance(data, Mapping) else None
    return run_spec(loaded, loaded.plugins, only=ids, variant=variant, jobs=jobs, progress=progress, data=cohort)


def write(results: Results, folder: str | os.PathLike[str], formats: str | Sequence[str] = (), *,
          figures: bool | Sequence[str] = True, csv_excel: bool = False) -> list[Path]:
    """Write a run's files into ``folder`` as ``endpointkit run -o`` does (one unit: all or none).

    ``formats``: table formats (``github``, ``docx``, ``xlsx``, ...; default ``table.format``), each
    written as ``table.<suffix>``; ``figures``: also write every figure under ``figures/`` (True =
    PNG, or a list of png/svg/pdf)."""
    from .figures import check_formats, figure_files
    from .outdir import OutputFolder
    from .output import render_files

    chosen = [formats] if isinstance(formats, str) else list(formats) or [results.spec.table.format]
    for fmt in chosen:
        results.plugins.renderers.get(fmt, "formats")
    files = render_files(results, chosen[0], excel_csv=csv_excel)
    for fmt in chosen[1:]:
        renderer = results.plugins.renderers.get(fmt, "formats")
        render_results = getattr(renderer, "render_results", None)
        files[f"table.{renderer.suffix}"] = render_results(results) if render_results else results.table(fmt)
        if len(results.variants) > 1:
            files[f"side_by_side.{renderer.suffix}"] = results.side_by_side(fmt)
    if figures:
        kinds = ("png",) if figures is True else check_formats(",".join(figures))
        files.update({f"figures/{name}": image for name, image in figure_files(results, kinds).items()})
    folder = OutputFolder(Path(folder), option="folder").open()
    try:
        folder.commit(files)
    finally:
        folder.close()
    return [folder.path / name for name in files]

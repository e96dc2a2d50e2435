"""``--plot FILE``: the forest plot of one estimate across variants, written to a PNG, SVG or PDF file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from .results import Results

SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_path(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--plot: expected a .png, .svg or .pdf file name, got {path.name}")


def forest_plot(results: Results, path: Path, measure: str | None = None) -> None:
    """Draw :func:`endpointkit.figures.forest_figure` into ``path`` (format from its suffix)."""
    from .figures import forest_figure, save
    from .output import write_files

    check_plot_path(path)
    content = save(forest_figure(results, measure), path.suffix.lower().lstrip("."))
    write_files(path.parent, {path.name: content}, "--plot")

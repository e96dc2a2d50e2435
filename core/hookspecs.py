"""Hook specifications: one ``register_*`` hook per extension point.

Each hook takes no arguments and returns an iterable of classes (or objects) that the plugin
manager stamps with their provider and files into a registry by ``name``. A name registered twice
is an error naming both providers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

NAME = "endpointkit"
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec
def register_endpoints() -> Iterable[Any]:
    """Register endpoint classes (subclasses of :class:`endpointkit.Endpoint`).

    :returns: an iterable of endpoint classes; each ``name`` is what a spec's ``plugin:`` names.
    """


@hookspec
def register_sources() -> Iterable[Any]:
    """Register data sources: classes with ``name`` and ``load(path, tables, spec) -> dict``.

    :returns: an iterable of source classes; ``data.source`` in a spec names one.
    """


@hookspec
def register_criteria() -> Iterable[Any]:
    """Register cohort criteria: classes with ``name`` (the criterion's key in
    ``cohort.criteria[i]``), ``Params`` or a value type, and ``keep(cohort_frame, value, ctx)``.

    :returns: an iterable of criterion classes.
    """


@hookspec
def register_renderers() -> Iterable[Any]:
    """Register table renderers: classes with ``name``, ``suffix`` and ``render(table, spec)``.

    :returns: an iterable of renderer classes; ``--format`` and ``table.format`` name one.
    """

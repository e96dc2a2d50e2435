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
    """Register data sources: objects with ``name``, ``description``, ``describe(table) -> str`` and
    ``read_table(root, table) -> (DataFrame of text, sha256) | None`` (None when the table is absent).
    A source that can read one partition of the patients without the others (so that no process
    holds the whole registry) also has ``reads_partitions`` (True, or a method of the data path:
    ``reads_partitions(root) -> bool``), ``read_partition(root, table, request, part, parts)`` (as
    ``read_table``, the whole table's checksum) and ``column_values(root, table, columns)`` (each
    column's distinct raw values over the whole table, so that every partition types it alike).

    :returns: an iterable of sources; ``data.source`` in a spec names one.
    """


@hookspec
def register_criteria() -> Iterable[Any]:
    """Register cohort criteria: objects with ``name`` (the criterion's key in
    ``cohort.criteria[i]``), ``description``, ``validate(value, path) -> value``,
    ``keep(patients, value) -> boolean Series`` and optionally ``json_schema`` (for ``endpointkit schema``).

    :returns: an iterable of criteria.
    """


@hookspec
def register_renderers() -> Iterable[Any]:
    """Register table renderers: objects with ``name``, ``suffix``, ``description`` and ``render(table)``
    returning text, or bytes when the renderer sets ``binary = True`` (docx, xlsx); an optional
    ``render_results(results)`` renders a whole run for ``table.<suffix>``.

    :returns: an iterable of renderers; ``--format`` and ``table.format`` name one.
    """

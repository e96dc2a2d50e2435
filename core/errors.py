"""User-facing errors: each names where the problem is and what was expected.

The CLI turns these into a message and an exit status, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EndpointkitError(Exception):
    """Base class of every error a user can cause (exit status 2)."""

    exit_status = 2


class SpecError(EndpointkitError):
    """A problem in the study spec, located by its path (``endpoints[2].params.pre_window``)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class DataError(EndpointkitError):
    """A problem in the data, located by table, CSV line and column."""

    def __init__(self, table: str, message: str, line: int | None = None, column: str | None = None, unit: str = "line"):
        self.table, self.line, self.column, self.message, self.unit = table, line, column, message, unit
        where = table
        if line is not None:
            where += f", {unit} {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")


class UsageError(EndpointkitError):
    """A bad command-line argument or output location."""


class SpecErrors(SpecError):
    """Several spec problems found in one validation pass, reported together."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        EndpointkitError.__init__(self, "\n".join(str(e) for e in errors))
        self.path, self.message = errors[0].path, errors[0].message


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid choice, or ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[object]) -> str:
    return "one of " + ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)

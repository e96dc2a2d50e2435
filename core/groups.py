"""Subgroups: the spec's ``by:`` and ``compare:`` settings and each patient's group.

``by`` splits the patients by a patient column (``by: sex``) or by named subgroups, each a
``where`` expression (``by: {name: age, groups: {"under 50": "age_at_index < 50", ...}}``).
Every endpoint is then summarised within each group as well as overall. A patient's group is a
function of that patient's own row only, so it is computed in the map, partition by partition, and
the merge stays exact. A patient whose grouping value is missing (or who fits no named subgroup)
is in the group ``missing``: its own group (``missing: own_group``) or left out of the groups
(``missing: exclude``); counted in the attrition per group and in the overall column either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecError, suggest
from .expr import Expression

MISSING = "missing"  # the group of a patient without a grouping value
OVERALL = "all"  # the group of the overall rows
MISSING_CHOICES = ("own_group", "exclude")
BY_KEYS = ("column", "name", "groups", "missing")


@dataclass(frozen=True)
class Grouping:
    """A validated ``by:``: a patient ``column``, or named ``groups`` (label, where-expression text)
    in the order written; ``path`` is the spec path errors name."""

    name: str
    column: str | None = None
    groups: tuple[tuple[str, str], ...] = ()
    missing: str = "own_group"
    path: str = "by"

    @property
    def key(self) -> str:
        """What the patients' groups depend on (the spec path does not change them)."""
        return json.dumps([self.column, [list(g) for g in self.groups], self.missing])

    def labels(self, patients: pd.DataFrame) -> pd.Series:
        """Each patient's group (text; ``missing`` where the value is missing or no subgroup fits).

        Named subgroups: the first whose expression holds (as SQL's CASE WHEN)."""
        if self.column is not None:
            if self.column not in patients.columns:
                visible = [str(c) for c in patients.columns if not str(c).startswith("_")]
                raise SpecError(self.path, f"unknown patient column '{self.column}'{suggest(self.column, visible)}; "
                                           f"columns: {', '.join(visible)}")
            values = patients[self.column]
            codes, uniques = pd.factorize(values, use_na_sentinel=True)  # text once per distinct value
            texts = np.array([_as_written(v) for v in uniques] + [MISSING], dtype=object)
            return pd.Series(texts[codes], index=patients.index, dtype=object)
        out = np.full(len(patients), MISSING, dtype=object)
        free = np.ones(len(patients), dtype=bool)
        for label, text in self.groups:
            mask = Expression(text, f"{self.path}.groups.{label}").evaluate(patients).to_numpy(dtype=bool) & free
            out[mask] = label
            free &= ~mask
        return pd.Series(out, index=patients.index, dtype=object)

    def levels(self, present: Iterable[str]) -> list[str]:
        """The groups in order: named subgroups as written, column values in sort order (numbers
        by value, before text), ``missing`` last; only those ``present``."""
        present = set(present)
        if self.column is None:
            order = [label for label, _ in self.groups if label in present]
        else:
            values = [v for v in present if v != MISSING]
            order = sorted(values, key=_sort_key)
        return order + ([MISSING] if MISSING in present else [])

    def analysed(self, levels: list[str]) -> list[str]:
        """The groups that get results: ``missing`` only under ``missing: own_group``."""
        return [level for level in levels if level != MISSING or self.missing == "own_group"]

    def describe(self) -> str:
        if self.column is not None:
            return self.column
        return f"{self.name} ({'; '.join(f'{label}: {text}' for label, text in self.groups)})"

    def plain(self) -> Any:
        """The setting as the spec would write it (provenance)."""
        if self.column is not None and self.missing == "own_group":
            return self.column
        if self.column is not None:
            return {"column": self.column, "missing": self.missing}
        return {"name": self.name, "groups": dict(self.groups), "missing": self.missing}


@dataclass(frozen=True)
class Comparing:
    """A validated ``compare:``: between-group comparisons against ``reference`` (None: the first
    group in order)."""

    reference: str | None = None
    path: str = "compare"

    def plain(self) -> Any:
        return True if self.reference is None else {"reference": self.reference}

    def ordered(self, levels: list[str]) -> list[str]:
        """``levels`` with the reference first (an unknown reference is the spec's mistake)."""
        if self.reference is None:
            return list(levels)
        if self.reference not in levels:
            raise SpecError(f"{self.path}.reference", f"unknown group '{self.reference}'{suggest(self.reference, levels)}; "
                                                      f"groups: {', '.join(levels)}")
        return [self.reference] + [level for level in levels if level != self.reference]


def _as_written(value: Any) -> str:
    """A grouping value as the data write it (a whole number without '.0')."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)


def _sort_key(text: str) -> tuple:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def comparison_label(level: str, reference: str) -> str:
    """The ``group`` of a comparison row (contract): ``M vs F``."""
    return f"{level} vs {reference}"


def parse_by(value: Any, path: str) -> Grouping | None:
    """``by:`` as written: a column name, or {column | name + groups, missing}; null = no grouping."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise SpecError(path, "expected a patient column such as sex, or {name, groups}")
        return Grouping(name=value, column=value, path=path)
    if not isinstance(value, dict):
        raise SpecError(path, f"expected a patient column such as sex, or {{name: age, groups: {{label: where-expression}}}}, got {value!r}")
    for key in value:
        if key not in BY_KEYS:
            raise SpecError(f"{path}.{key}", f"unknown key{suggest(str(key), BY_KEYS)}; valid keys: {', '.join(BY_KEYS)}")
    missing = value.get("missing", "own_group")
    if missing not in MISSING_CHOICES:
        raise SpecError(f"{path}.missing", f"expected one of {', '.join(MISSING_CHOICES)}, got {missing!r}"
                                           + suggest(str(missing), MISSING_CHOICES))
    if ("column" in value) == ("groups" in value):
        raise SpecError(path, "expected exactly one of 'column' (a patient column) or 'groups' (named where-expressions)")
    if "column" in value:
        column = value["column"]
        if not isinstance(column, str) or not column.strip():
            raise SpecError(f"{path}.column", f"expected a patient column such as sex, got {column!r}")
        return Grouping(name=str(value.get("name") or column), column=column, missing=missing, path=path)
    groups = value["groups"]
    if not isinstance(groups, dict) or not groups:
        raise SpecError(f"{path}.groups", "expected a mapping of group labels to where-expressions, "
                                          "e.g. {\"under 50\": \"age_at_index < 50\"}")
    parsed = []
    for label, text in groups.items():
        where = f"{path}.groups.{label}"
        if not isinstance(label, str) or not label.strip():
            raise SpecError(where, f"expected a group label (text), got {label!r}")
        if label in (OVERALL, MISSING) or " vs " in label:
            raise SpecError(where, f"the label '{label}' is reserved ('all' = overall, 'missing', 'A vs B' = comparisons)")
        if not isinstance(text, str):
            raise SpecError(where, f"expected a where-expression such as \"age_at_index < 50\", got {text!r}")
        Expression(text, where)  # a syntax error names its path now, before any data is read
        parsed.append((label, text))
    name = value.get("name", "group")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{path}.name", f"expected a name for the grouping (text), got {name!r}")
    return Grouping(name=name, groups=tuple(parsed), missing=missing, path=path)


def parse_compare(value: Any, path: str) -> Comparing | None:
    """``compare:``: true, false/null, or {reference: level}."""
    if value is None or value is False:
        return None
    if value is True:
        return Comparing(path=path)
    if isinstance(value, dict):
        for key in value:
            if key != "reference":
                raise SpecError(f"{path}.{key}", f"unknown key{suggest(str(key), ['reference'])}; valid keys: reference")
        reference = value.get("reference")
        if reference is not None and not isinstance(reference, str | int | float):
            raise SpecError(f"{path}.reference", f"expected a group level such as F, got {reference!r}")
        return Comparing(reference=None if reference is None else _as_written(reference), path=path)
    raise SpecError(path, f"expected true, false or {{reference: <group>}}, got {value!r}")


def group_codes(labels: pd.Series, levels: list[str]) -> np.ndarray:
    """Each label's position in ``levels`` (-1: not one of them), for bincounts."""
    return pd.Index(levels).get_indexer(labels.to_numpy(dtype=object)) if len(labels) else np.zeros(0, dtype=np.intp)

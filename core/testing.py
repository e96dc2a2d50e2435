"""Helpers to build small cohorts in code, for tests and plugin authors.

>>> cohort = make_cohort(
...     patients=[{"patient_id": "p1", "sex": "F", "onset_date": "2010-01-01"}],
...     treatments=[{"patient_id": "p1", "treatment": "IVIG", "start_date": "2015-01-01", "end_date": "2017-01-01"}],
...     relapses=[{"patient_id": "p1", "onset_date": "2012-03-01"}],
... )

Every value is given as it would appear in a CSV file (text); the tables go through the same
validation and cohort building as a real run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .cohort import Cohort, build_cohort
from .data import TABLES, CohortData, patients_first, prepare_tables
from .endpoint import Context
from .manager import get_plugin_manager
from .params import build_params
from .spec import CohortSettings, RelapseSection
from .stats import PairedTestSettings


def _frame(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    return frame.astype(object).where(frame.notna(), None).map(lambda v: None if v is None else str(v)).replace({"": None})


def make_data(**tables: list[dict[str, Any]] | pd.DataFrame) -> CohortData:
    """Validated canonical tables from lists of records (values as CSV text)."""
    frames = {}
    for name, rows in tables.items():
        if name not in TABLES:
            raise ValueError(f"unknown table {name}")
        frame = _frame(rows)
        frames[name] = pd.DataFrame(columns=list(TABLES[name].required)) if frame.empty else frame
    frames.setdefault("treatments", pd.DataFrame(columns=list(TABLES["treatments"].required)))
    prepared = prepare_tables((name, frames[name]) for name in patients_first(frames))
    return CohortData(tables=prepared)


def make_settings(
    *, index_treatment: str = "IVIG", index_event: str = "first_start", follow_up_end: str = "treatment_end", grace_days: int = 90,
    merge_within_days: int = 30, exclude_pseudo: bool = True, only_confirmed: bool = False,
    cutoff: str | None = None, criteria: tuple = (),
) -> CohortSettings:
    import datetime as dt

    return CohortSettings(
        index_treatment=index_treatment, index_event=index_event, criteria=criteria,
        follow_up_end=follow_up_end, grace_days=grace_days,
        relapses=RelapseSection(merge_within_days=merge_within_days, exclude_pseudo=exclude_pseudo, only_confirmed=only_confirmed),
        cutoff=dt.date.fromisoformat(cutoff) if cutoff else None,
    )


def make_cohort(settings: CohortSettings | None = None, **tables) -> Cohort:
    """A cohort built from in-memory tables with the default (or given) cohort settings."""
    plugins = get_plugin_manager(entrypoints=False)
    return build_cohort(make_data(**tables), settings or make_settings(), plugins.criteria)


def make_context(quantile_method: str = "linear", year_days: float = 365.25, **paired_test) -> Context:
    return Context(quantile_method=quantile_method, paired_test=PairedTestSettings(**paired_test), year_days=year_days)


def params_for(endpoint_cls: type, **values) -> Any:
    """Validated Params of an endpoint, from keyword values as they would appear in YAML."""
    return build_params(endpoint_cls.Params, values, "params")


def row(result, measure: str, group: str = "all"):
    """The Row of a result with this measure (and group)."""
    for r in result.rows:
        if r.measure == measure and r.group == group:
            return r
    raise KeyError(f"no row {measure!r}; rows: {[r.measure for r in result.rows]}")


__all__ = ["make_cohort", "make_context", "make_data", "make_settings", "params_for", "row"]

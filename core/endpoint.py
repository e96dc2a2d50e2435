"""What an endpoint plugin is and what it returns.

An endpoint is a class registered through the ``register_endpoints`` hook. It declares its name,
the tables it needs and a ``Params`` dataclass (validated before any data is read), and turns an
analysed :class:`~endpointkit.cohort.Cohort` into an :class:`EndpointResult`: result rows (numbers
only; the core adds variant, endpoint id and display) plus a per-patient frame.

It does so in two steps, so that a cohort can be split by patient (partitions on several processes
or machines) and so that a summary setting re-derives nothing:

* ``derive`` (the map) computes per-patient values from any subset of the cohort's patients: a
  patient's values depend on that patient's own records only;
* ``summarise`` (the reduce) turns the per-patient values of all patients into rows.

An endpoint that implements only ``compute`` still runs, on the whole cohort in one process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

if TYPE_CHECKING:
    from .cohort import Cohort
    from .stats import PairedTestSettings


@dataclass(frozen=True, kw_only=True)
class Row:
    """One reported quantity (one row of the results frame, before the core adds its context).

    ``estimate`` is in the measure's own unit (a proportion in 0-1, not a percentage; a rate per
    person-year; a time in months), ``low``/``high`` its interval of kind ``interval`` (``IQR``,
    ``range``, ``SD``, ``95% CI``), ``n`` the patients or pairs it is computed on, ``count`` the
    numerator of a proportion or the events of a rate. Build rows with :mod:`endpointkit.stats`.
    """

    measure: str
    stat: str
    estimate: float | None
    n: int | None = None
    count: int | None = None
    low: float | None = None
    high: float | None = None
    interval: str | None = None
    p_value: float | None = None
    test: str | None = None
    group: str = "all"
    label: str | None = None  # default row label in the table
    unit: str = ""  # e.g. "years", "months"; informs the label only
    display: str | None = None  # set only when the generic formatter cannot show it (titers)


@dataclass(kw_only=True)
class EndpointResult:
    """What ``Endpoint.compute`` returns.

    ``excluded`` maps a reason to the patient ids the endpoint could not analyse; the core reports
    each in the data-quality report. ``notes`` are footnotes that state the definitions used.
    ``curves`` maps a title to a Kaplan-Meier fit (:class:`endpointkit.stats.KaplanMeier`): each
    is drawn by ``--figures`` with its number-at-risk table, and shown in ``report.html``.
    """

    rows: list[Row]
    per_patient: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    excluded: dict[str, list[Any]] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)


def excluded_by_reason(patient_ids: pd.Series, reasons: pd.Series) -> dict[str, list[Any]]:
    """``EndpointResult.excluded`` from a per-patient reason (missing = analysed), in order of appearance."""
    return {reason: patient_ids[reasons == reason].tolist() for reason in reasons.dropna().unique()}


@dataclass(frozen=True)
class Context:
    """Study-wide settings an endpoint needs besides its own params.

    ``quantile_method``: numpy method for every median/IQR; ``paired_test``: the Wilcoxon settings;
    ``year_days``: days in a year for annualised rates and ages (365.25).
    """

    quantile_method: str
    paired_test: PairedTestSettings
    year_days: float = 365.25
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Memoise a derivation across sensitivity variants (key = what it depends on)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


@dataclass(frozen=True)
class NoParams:
    """For endpoints without parameters."""


class Endpoint:
    """Base class of every endpoint plugin.

    Subclasses set ``name`` (the spec's ``plugin:`` value), ``title``, ``requires`` (canonical tables
    beyond ``patients`` and ``treatments``), ``Params`` and ``headline`` (the measures the
    side-by-side sensitivity table shows), and implement :meth:`derive` and :meth:`summarise` (or,
    for an endpoint that cannot be split by patient, only :meth:`compute`).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    # tables read when the data have them (relapses, to ignore scores near one): loaded for this
    # endpoint whichever other endpoints run, so its result never depends on the rest of the spec
    uses: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type] = NoParams
    headline: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "outcome"  # "descriptive" for Table 1 endpoints (show_ci: outcomes skips them)
    # linear relations between rows' counts, for secondary suppression under disclosure control:
    # (total, parts) = the parts' counts add up to the total's count ("n": the rows' common n)
    partitions: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    # params that only summarise() reads: variants differing only in these reuse the derived frame
    summary_params: ClassVar[tuple[str, ...]] = ()
    # set by the plugin manager: who registered it
    provider: ClassVar[str] = ""

    def derive(self, cohort: Cohort, params: Any, ctx: Context) -> pd.DataFrame:  # pragma: no cover
        """The map: per-patient values of this cohort's patients (first column ``patient_id``; one
        row per patient, or per record of a patient, in the cohort's patient order).

        Called on the whole cohort or on any part of it (a partition of patients), and the parts'
        frames are concatenated: a row may depend only on its own patient's records, on ``params``
        other than ``summary_params`` and on ``ctx.year_days``, never on other patients or on
        ``ctx.quantile_method``/``ctx.paired_test``. Keep only what ``summarise`` needs.
        """
        raise NotImplementedError

    def summarise(self, per_patient: pd.DataFrame, params: Any, ctx: Context) -> EndpointResult:  # pragma: no cover
        """The reduce: result rows, notes and exclusions from the per-patient values of all
        analysed patients (the concatenated ``derive`` frames). ``EndpointResult.per_patient`` is
        that frame, with any columns the summary adds (a responder flag, say)."""
        raise NotImplementedError

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: Any,
                ctx: Context) -> list[Row]:
        """Between-group comparisons (``compare:`` in the spec): rows whose ``group`` is
        ``"<level> vs <reference>"`` (e.g. ``M vs F``), each with its estimate, 95% CI, p-value and
        the method in ``test``.

        ``per_patient`` is the endpoint's summarised per-patient frame (the patients of every
        compared group), ``groups`` each of its rows' group (aligned with it), ``levels`` the groups
        in order with the reference first. The default compares nothing: an endpoint gets its
        numbers within each group for free and implements this only to add its own estimates
        (the statistics are in :mod:`endpointkit.comparisons`)."""
        return []

    def compute(self, cohort: Cohort, params: Any, ctx: Context) -> EndpointResult:
        """Derive and summarise on one whole cohort. Override only for an endpoint that cannot be
        split by patient: it then runs in one process on the whole cohort."""
        return self.summarise(self.derive(cohort, params, ctx), params, ctx)

    @classmethod
    def splits(cls) -> bool:
        """True when the endpoint implements derive and summarise (it can run on partitions)."""
        return cls.derive is not Endpoint.derive and cls.summarise is not Endpoint.summarise

    @classmethod
    def requires_for(cls, params: Any) -> tuple[str, ...]:
        """Tables needed under these params (override when they depend on params)."""
        return cls.requires

    @classmethod
    def headline_for(cls, params: Any) -> tuple[str, ...]:
        """Headline measures under these params (override when they depend on params)."""
        return cls.headline

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.Params)]

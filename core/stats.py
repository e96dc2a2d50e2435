"""Statistics used by the endpoints, each a thin, recorded wrapper around SciPy/numpy.

Every helper returns a :class:`~endpointkit.endpoint.Row`, so endpoints report quantities the same
way and the test settings and quantile method always travel with the number.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .endpoint import Row

__all__ = [
    "QUANTILE_METHODS", "KaplanMeier", "PairedTestSettings", "count_row", "exact_proportion_ci", "km_landmark_row",
    "km_median_row", "median_row", "paired_test_row", "poisson_rate_row", "proportion_row", "quartiles",
    "resolve_wilcoxon_method", "signed_rank_row",
]

def scipy_stats():
    """``scipy.stats``, imported on first use: the import takes most of a second, which ``validate``,
    ``plugins`` and every run's start need not pay."""
    from scipy import stats

    return stats


QUANTILE_METHODS = (
    "linear",
    "weibull",
    "averaged_inverted_cdf",
    "inverted_cdf",
    "closest_observation",
    "interpolated_inverted_cdf",
    "hazen",
    "median_unbiased",
    "normal_unbiased",
    "lower",
    "higher",
    "midpoint",
    "nearest",
)


@dataclass(frozen=True)
class PairedTestSettings:
    """``statistics.paired_test``: the scipy.stats.wilcoxon settings (zero_method, method, correction)."""

    zero_method: str = "wilcox"
    method: str = "auto"
    correction: bool = False


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def quartiles(values: Sequence[float] | np.ndarray, method: str = "linear") -> tuple[float, float, float]:
    """(Q1, median, Q3) of the non-missing values, in their unit, with numpy's quantile ``method``
    (linear = R type 7, weibull = SPSS, averaged_inverted_cdf = SAS/Stata); NaNs when there are none."""
    array = _clean(values)
    if array.size == 0:
        return (np.nan, np.nan, np.nan)
    q1, med, q3 = np.quantile(array, [0.25, 0.5, 0.75], method=method)
    return float(q1), float(med), float(q3)


def median_row(measure: str, values, method: str, *, summary: str = "median_iqr", label: str | None = None, unit: str = "") -> Row:
    """Median [IQR] (``summary='median_iqr'``), median (range) or mean (SD) of the non-missing values.

    The row keeps the values' unit (say so in ``label``/``unit``: "years", "months"); ``method`` is a
    numpy quantile method (``ctx.quantile_method``); ``n`` counts the non-missing values.
    """
    array = _clean(values)
    n = int(array.size)
    if summary == "mean_sd":
        mean = float(array.mean()) if n else None
        sd = float(array.std(ddof=1)) if n > 1 else None
        return Row(measure=measure, stat="mean", n=n, estimate=mean, low=sd, high=None, interval="SD", label=label, unit=unit)
    if n == 0:
        return Row(measure=measure, stat="median", n=0, estimate=None, interval="IQR", label=label, unit=unit)
    if summary == "median_range":
        med = float(np.quantile(array, 0.5, method=method))
        return Row(measure=measure, stat="median", n=n, estimate=med, low=float(array.min()), high=float(array.max()), interval="range", label=label, unit=unit)
    q1, med, q3 = quartiles(array, method)
    return Row(measure=measure, stat="median", n=n, estimate=med, low=q1, high=q3, interval="IQR", label=label, unit=unit)


def proportion_row(measure: str, count: int, n: int, *, label: str | None = None) -> Row:
    """``count``/``n`` (a proportion in 0-1, not a percentage) with the exact Clopper-Pearson 95% CI
    of ``scipy.stats.binomtest(count, n).proportion_ci()``; n = 0 gives a blank estimate."""
    count, n = int(count), int(n)
    if n == 0:
        return Row(measure=measure, stat="proportion", count=0, n=0, estimate=None, interval="95% CI", label=label)
    low, high = exact_proportion_ci(count, n)
    return Row(
        measure=measure, stat="proportion", count=count, n=n, estimate=count / n,
        low=low, high=high, interval="95% CI", label=label,
    )


@functools.lru_cache(maxsize=4096)
def exact_proportion_ci(count: int, n: int) -> tuple[float, float]:
    """(low, high) Clopper-Pearson 95% CI of count/n, as proportions in 0-1; cached because variants
    repeat the same (count, n) many times."""
    ci = scipy_stats().binomtest(count, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def count_row(measure: str, count: int, n: int, *, label: str | None = None) -> Row:
    """A count (``estimate`` = count) over ``n`` patients, e.g. events or patients analysed."""
    return Row(measure=measure, stat="count", n=int(n), estimate=float(count), label=label)


def poisson_rate_row(measure: str, events: int, person_years: float, n: int, *, label: str | None = None, per: float = 1.0, unit: str = "") -> Row:
    """Crude rate Σevents / Σperson-years (years, not days), times ``per`` (100 for "per 100
    patient-years"), with the exact Poisson 95% CI (chi-square limits; lower limit 0 without events)."""
    if person_years <= 0:
        return Row(measure=measure, stat="rate", n=n, count=events, estimate=None, interval="95% CI", label=label, unit=unit)
    low = scipy_stats().chi2.ppf(0.025, 2 * events) / (2 * person_years) if events > 0 else 0.0
    high = scipy_stats().chi2.ppf(0.975, 2 * events + 2) / (2 * person_years)
    return Row(
        measure=measure, stat="rate", n=int(n), count=int(events), estimate=per * events / person_years,
        low=per * float(low), high=per * float(high), interval="95% CI", label=label, unit=unit,
    )


def resolve_wilcoxon_method(diff: np.ndarray, settings: PairedTestSettings) -> str:
    """The method scipy's ``method='auto'`` picks (SciPy 1.17 rule), so the row can record it.

    Exact when n <= 50 with no ties and no zeros; with ties or zeros, an exhaustive permutation for
    n <= 13, otherwise asymptotic.
    """
    if settings.method != "auto":
        return settings.method
    n = diff.size
    if n > 50:
        return "asymptotic"
    zeros = int((diff == 0).sum())
    nonzero = np.abs(diff[diff != 0]) if settings.zero_method == "wilcox" else np.abs(diff)
    ties = np.unique(nonzero).size < nonzero.size
    if zeros == 0 and not ties:
        return "exact"
    return "permutation" if n <= 13 else "asymptotic"


def _signed_rank_permutation_p(diff: np.ndarray, zero_method: str) -> float:
    """The p-value of scipy.stats.wilcoxon's permutation method, with a vectorised statistic.

    scipy's wilcoxon evaluates its permutation null one resample at a time (seconds for n = 13);
    flipping signs never changes the ranks of |d|, so the positive-rank sum is a dot product and
    ``scipy.stats.permutation_test`` can evaluate all sign flips at once. Exhaustive (hence exact)
    for n <= 13, as scipy's ``method='auto'``; seeded otherwise.
    """
    keep = diff != 0 if zero_method == "wilcox" else np.ones(diff.size, dtype=bool)
    d = diff[keep]
    if np.count_nonzero(d) < 2:  # one sign flip or none: both tails hold everything (scipy gives 1)
        return 1.0
    ranks = scipy_stats().rankdata(np.abs(d))

    def positive_rank_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(np.where(x > 0, ranks, 0.0), axis=axis)

    result = scipy_stats().permutation_test(
        (d,), positive_rank_sum, permutation_type="samples", vectorized=True, n_resamples=9999,
        alternative="two-sided", rng=np.random.default_rng(20200101),
    )
    return float(result.pvalue)


def paired_test_row(measure: str, pre, post, settings: PairedTestSettings, *, label: str | None = None) -> Row:
    """Wilcoxon signed-rank on ``post - pre`` over complete pairs (scipy.stats.wilcoxon), two-sided.

    For values whose difference is exact in floating point (EDSS steps of 0.5). Where a difference
    must be computed exactly first (rates, log ratios), compute it and call :func:`signed_rank_row`.
    ``pre`` and ``post`` are aligned per patient (NaN = missing; the pair is dropped); ``n`` = complete
    pairs, zero differences included; ``estimate`` = the statistic. ``test`` records the settings,
    the method that actually ran, the pairs and the zero differences.
    """
    pre_a, post_a = np.asarray(pre, dtype=float), np.asarray(post, dtype=float)
    keep = ~(np.isnan(pre_a) | np.isnan(post_a))
    return signed_rank_row(measure, post_a[keep] - pre_a[keep], settings, label=label)


def signed_rank_row(measure: str, diff, settings: PairedTestSettings, *, label: str | None = None) -> Row:
    """Wilcoxon signed-rank on paired differences (NaN = incomplete pair, left out).

    ``test`` records the settings, the method that actually ran, the pairs and the zero differences.
    """
    diff = np.asarray(diff, dtype=float)
    diff = diff[~np.isnan(diff)]
    n, zeros = int(diff.size), int((diff == 0).sum())
    nonzero_for_test = n - zeros if settings.zero_method == "wilcox" else n
    if nonzero_for_test == 0 or (diff == 0).all():
        return Row(
            measure=measure, stat="test", n=n, estimate=None, p_value=None, label=label,
            test=f"Wilcoxon signed-rank not computable: {n} pairs, {zeros} zero differences",
        )
    ran = resolve_wilcoxon_method(diff, settings)
    if ran == "permutation":
        statistic = scipy_stats().wilcoxon(diff, zero_method=settings.zero_method, correction=settings.correction, method="asymptotic").statistic
        result = scipy_stats()._morestats.WilcoxonResult(statistic=statistic, pvalue=_signed_rank_permutation_p(diff, settings.zero_method))
    else:
        result = scipy_stats().wilcoxon(diff, zero_method=settings.zero_method, correction=settings.correction, method=ran)
    test = (
        f"Wilcoxon signed-rank (scipy.stats.wilcoxon: zero_method={settings.zero_method}, "
        f"correction={str(settings.correction).lower()}, method={settings.method} -> {ran}); "
        f"{n} pairs, {zeros} zero differences"
    )
    return Row(
        measure=measure, stat="test", n=n, estimate=float(result.statistic),
        p_value=float(result.pvalue), test=test, label=label,
    )


# --------------------------------------------------------------------------- Kaplan-Meier


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier fit from ``scipy.stats.ecdf`` on right-censored data, log-log 95% CI.

    Times are in months (days / (365.25/12)): the landmark and median rows built from a fit say
    "months", so times in days would print a median of 1861 days as "1861.0 months".
    """

    times: np.ndarray
    events: np.ndarray
    sf_times: np.ndarray  # step points of S(t)
    sf: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def fit(cls, times, events) -> KaplanMeier:
        """Fit S(t) from each patient's time in months and whether it ended in the event (True)
        or was censored (False)."""
        t = np.asarray(times, dtype=float)
        e = np.asarray(events, dtype=bool)
        if t.size == 0:
            empty = np.array([])
            return cls(t, e, empty, empty, empty, empty)
        data = scipy_stats().CensoredData(uncensored=t[e], right=t[~e])
        result = scipy_stats().ecdf(data).sf
        ci = result.confidence_interval(confidence_level=0.95, method="log-log")
        points = result.quantiles
        with np.errstate(all="ignore"):
            lower = ci.low.evaluate(points)
            upper = ci.high.evaluate(points)
        return cls(t, e, points, result.probabilities, np.asarray(lower, float), np.asarray(upper, float))

    def _step(self, values: np.ndarray, t: float, before: float) -> float:
        i = np.searchsorted(self.sf_times, t, side="right") - 1
        return before if i < 0 else float(values[i])

    def survival(self, t: float) -> tuple[float, float, float]:
        """S(t) at ``t`` months and its log-log 95% CI (1, nan, nan before the first event)."""
        s = self._step(self.sf, t, 1.0)
        low = self._step(self.lower, t, np.nan)
        high = self._step(self.upper, t, np.nan)
        if s == 1.0:
            low = high = np.nan
        return s, low, high

    def at_risk(self, t: float) -> int:
        """Patients whose time is at least ``t`` months."""
        return int((self.times >= t).sum())

    def _first_time_at_or_below_half(self, curve: np.ndarray) -> float | None:
        hits = np.nonzero(np.nan_to_num(curve, nan=1.0) <= 0.5)[0]
        return float(self.sf_times[hits[0]]) if hits.size else None

    def median(self) -> tuple[float | None, float | None, float | None]:
        """Median time in months and its CI: the first times at which S, the lower band and the
        upper band reach <= 0.5 (None where a curve never does)."""
        if self.sf.size == 0:
            return None, None, None
        return (
            self._first_time_at_or_below_half(self.sf),
            self._first_time_at_or_below_half(self.lower),
            self._first_time_at_or_below_half(self.upper),
        )


def km_landmark_row(measure: str, km: KaplanMeier, t: float, *, label: str | None = None) -> Row:
    """S(t) at ``t`` months (the fit's time unit) with its log-log 95% CI; n = patients at risk at t."""
    s, low, high = km.survival(t)
    return Row(
        measure=measure, stat="km", n=km.at_risk(t), estimate=s if km.times.size else None,
        low=None if np.isnan(low) else low, high=None if np.isnan(high) else high, interval="95% CI",
        label=label, test="Kaplan-Meier (scipy.stats.ecdf), log-log 95% CI; n = patients at risk",
    )


def km_median_row(measure: str, km: KaplanMeier, *, label: str | None = None, unit: str = "months") -> Row:
    """Median time in months (the fit's time unit) with its CI; count = events, n = patients."""
    med, low, high = km.median()
    return Row(
        measure=measure, stat="km_median", n=int(km.times.size), count=int(km.events.sum()), estimate=med,
        low=low, high=high, interval="95% CI", label=label, unit=unit,
        test="Kaplan-Meier median: first time S(t) <= 0.5; CI from the log-log bands",
    )

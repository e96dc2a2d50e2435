"""Between-group comparisons: each non-reference group against the reference group, as result rows.

Every function takes per-patient values, a group label per patient and the group ``levels``
(reference first), and returns one :class:`~endpointkit.endpoint.Row` per non-reference level (per
variable for :func:`smd_rows`), with ``group = "<level> vs <reference>"`` and ``test`` naming the
method, its settings and the library that computed it. Estimates come from SciPy and statsmodels;
only the standardized mean difference is a formula of our own (numpy), because no maintained library
computes it: it follows tableone's definition so that tables agree with it.

Patients whose group is missing or not among ``levels`` are left out; so are missing values. An
input the method cannot use (a group without patients, without events, identical values) gives a
row with a blank estimate and a ``test`` text that says why: these functions do not raise on data.
They raise ``ValueError`` only on a programming mistake (fewer than two levels, arrays of
different lengths, an unknown option).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, stats

from .endpoint import Row

__all__ = [
    "hazard_ratio_rows", "labelled", "km_difference_rows", "logrank_rows", "mann_whitney_rows",
    "proportion_difference_rows", "rate_ratio_rows", "ratio_of_rate_ratios_rows", "smd_rows",
]

Z95 = float(stats.norm.ppf(0.975))
RATE_MODELS = ("negative_binomial", "poisson_robust")
ROR_MODELS = ("poisson_gee", "negative_binomial_cluster")
MW_ESTIMATES = ("median_difference", "hodges_lehmann")
MAX_HL_PAIRS = 50_000_000  # pairwise differences held in memory for the Hodges-Lehmann estimate
NO_FIT = "no finite estimate (too few patients or events for the model, or complete separation)"
FIT_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


# --------------------------------------------------------------------------- common helpers


def _codes(group: Any, levels: Sequence[Any], size: int | None = None) -> np.ndarray:
    """Position of each patient's group in ``levels`` (-1: missing or another group)."""
    if len(levels) < 2 or len(set(levels)) != len(levels):
        raise ValueError(f"levels: expected at least two distinct groups, reference first; got {list(levels)!r}")
    codes = pd.Index(list(levels), dtype=object).get_indexer(pd.Series(group, dtype=object)).astype(np.int64)
    if size is not None and codes.size != size:
        raise ValueError(f"group: expected one label per patient ({size}), got {codes.size}")
    return codes


def _floats(values: Any, name: str, size: int | None = None) -> np.ndarray:
    array = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    if size is not None and array.size != size:
        raise ValueError(f"{name}: expected one value per patient ({size}), got {array.size}")
    return array


def _pair(levels: Sequence[Any], k: int) -> str:
    return f"{levels[k]} vs {levels[0]}"


def _blank(measure: str, stat: str, levels: Sequence[Any], k: int, why: str, *, n: int | None = None,
           count: int | None = None, interval: str | None = "95% CI", label: str | None = None, unit: str = "") -> Row:
    """The row of a comparison that cannot be computed: blank estimate, the reason in ``test``."""
    return Row(measure=measure, stat=stat, estimate=None, n=n, count=count, interval=interval,
               test=f"not computed: {why}", group=_pair(levels, k), label=label, unit=unit)


def _empty_reason(levels: Sequence[Any], k: int, sizes: np.ndarray, what: str = "patients") -> str | None:
    """Why the pair (level k, reference) has no data, or None."""
    missing = [str(levels[j]) for j in (0, k) if sizes[j] == 0]
    return f"no {what} in group {' and '.join(missing)}" if missing else None


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def labelled(rows: list[Row], label: str, measure: str | None = None) -> list[Row]:
    """``rows`` with the table label (and measure name) an endpoint gives its comparison."""
    return [dataclasses.replace(row, label=label, measure=measure or row.measure) for row in rows]


# --------------------------------------------------------------------------- categorical tests


def _contingency_p(table: np.ndarray) -> tuple[float | None, str]:
    """p-value of a categories x groups table, as tableone tests it: Fisher exact for a 2x2 table
    with an expected count below 5, else Pearson chi-square (Yates continuity correction on 2x2).
    Rows and columns without patients are dropped first."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return None, "no test: a single category or a single group with patients"
    expected = stats.contingency.expected_freq(table)
    if table.shape == (2, 2) and expected.min() < 5:
        p = stats.fisher_exact(table).pvalue
        return float(p), "Fisher exact test (scipy.stats.fisher_exact, two-sided; an expected count < 5)"
    result = stats.chi2_contingency(table, correction=True)
    small = " (expected counts < 5: approximate)" if expected.min() < 5 else ""
    yates = ", Yates continuity correction" if table.shape == (2, 2) else ""
    return float(result.pvalue), (
        f"Pearson chi-square (scipy.stats.chi2_contingency{yates}), {table.shape[0]} categories x "
        f"{table.shape[1]} groups{small}"
    )


# --------------------------------------------------------------------------- SMD (Table 1 balance)


def _continuous_smd(x: np.ndarray, ref: np.ndarray) -> tuple[float | None, str]:
    m1, m0 = x.mean(), ref.mean()
    s1, s0 = x.std(ddof=1), ref.std(ddof=1)
    pooled = math.sqrt((s1 ** 2 + s0 ** 2) / 2)
    if pooled == 0:
        return None, "both groups have zero SD (identical values): SMD undefined"
    return float((m1 - m0) / pooled), ""


def _categorical_smd(x: np.ndarray, ref: np.ndarray, categories: np.ndarray) -> tuple[float | None, str]:
    """Yang & Dalton's multivariate SMD over the category proportions, the first category dropped
    (they sum to 1), with the generalized inverse of the mean covariance (as R tableone)."""
    p1 = (x[:, None] == categories[None, :]).mean(axis=0)[1:]
    p0 = (ref[:, None] == categories[None, :]).mean(axis=0)[1:]
    s = ((np.diag(p1) - np.outer(p1, p1)) + (np.diag(p0) - np.outer(p0, p0))) / 2
    d = p1 - p0
    if not d.size or not np.any(d):
        return 0.0, ""
    inverse = linalg.pinvh(s, atol=0.0, rtol=math.sqrt(np.finfo(float).eps))
    if not np.allclose(s @ inverse @ d, d, atol=1e-10):
        return None, "the groups share no varying category (no within-group variation): SMD undefined"
    return float(math.sqrt(max(float(d @ inverse @ d), 0.0))), ""


def smd_rows(data: pd.DataFrame, group: Any, levels: Sequence[Any], *, continuous: Sequence[str] = (),
             categorical: Sequence[str] = ()) -> list[Row]:
    """Standardized mean differences between groups (Table 1 balance), one row per variable and
    non-reference level, with the p-value of the usual Table 1 test in the same row.

    Continuous: (mean_level - mean_ref) / sqrt((SD_level² + SD_ref²) / 2), SDs with n - 1, signed
    (tableone prints its absolute value); p from Mann-Whitney U (two levels) or Kruskal-Wallis
    across all levels (more than two: the same overall p on every pair's row, as tableone's one
    p column). Categorical: Yang & Dalton's SMD, sqrt(d' S⁻ d), d the differences of the category
    proportions without the first category, S the mean of the two groups' multinomial covariances
    (always >= 0); p from a chi-square test over all levels, Fisher exact for a 2x2 table with an
    expected count below 5. Missing values are left out of both.
    """
    codes = _codes(group, levels, len(data))
    rows: list[Row] = []
    for column in continuous:
        values = _floats(data[column], f"data[{column!r}]")
        keep = (codes >= 0) & ~np.isnan(values)
        by_level = [values[keep & (codes == j)] for j in range(len(levels))]
        p, test = _continuous_p(by_level, levels)
        rows += _smd_level_rows(column, "continuous", by_level, levels, p, test, _continuous_smd)
    for column in categorical:
        series = pd.Series(data[column], dtype=object)
        present = series.notna().to_numpy()
        keep = (codes >= 0) & present
        categories = np.asarray(pd.unique(series[keep]), dtype=object)
        categories = np.asarray(sorted(categories, key=str), dtype=object)
        values = series.to_numpy(dtype=object)
        by_level = [values[keep & (codes == j)] for j in range(len(levels))]
        table = np.array([[np.sum(v == c) for v in by_level] for c in categories], dtype=np.int64).reshape(len(categories), len(levels))
        p, test = _contingency_p(table)
        rows += _smd_level_rows(
            column, "categorical", by_level, levels, p, test,
            lambda x, ref, categories=categories: _categorical_smd(x, ref, categories),
        )
    return rows


def _continuous_p(by_level: list[np.ndarray], levels: Sequence[Any]) -> tuple[float | None, str]:
    present = [v for v in by_level if v.size]
    if len(present) < 2:
        return None, "no test: fewer than two groups with values"
    pooled = np.concatenate(present)
    if np.all(pooled == pooled[0]):
        return None, "no test: all values identical"
    if len(levels) == 2:
        result = stats.mannwhitneyu(by_level[1], by_level[0], alternative="two-sided", method="auto")
        ties = np.unique(pooled).size < pooled.size
        ran = "asymptotic" if (by_level[0].size > 8 and by_level[1].size > 8) or ties else "exact"
        return float(result.pvalue), f"Mann-Whitney U (scipy.stats.mannwhitneyu, two-sided, method=auto -> {ran})"
    result = stats.kruskal(*present)
    return float(result.pvalue), f"Kruskal-Wallis across {len(present)} groups (scipy.stats.kruskal; one p for all pairs)"


def _smd_level_rows(column, kind, by_level, levels, p, test, smd) -> list[Row]:
    formula = ("(mean1 - mean0) / sqrt((SD1² + SD0²) / 2)" if kind == "continuous"
               else "Yang & Dalton multivariate SMD, generalized inverse")
    rows = []
    for k in range(1, len(levels)):
        x, ref = by_level[k], by_level[0]
        n = int(x.size + ref.size)
        why = _empty_reason(levels, k, np.array([v.size for v in by_level]), "values")
        if why is None and kind == "continuous" and min(x.size, ref.size) < 2:
            why = "fewer than two values in a group (no SD)"
        estimate, reason = (None, why) if why else smd(x, ref)
        text = f"SMD {kind} ({formula}, as tableone); {test}"
        if estimate is None:
            text = f"not computed: {reason}; {test}"
        rows.append(Row(measure=column, stat="smd", estimate=estimate, n=n, interval=None, p_value=p,
                        test=text, group=_pair(levels, k)))
    return rows


# --------------------------------------------------------------------------- rate ratios


def _design(codes: np.ndarray, levels_used: list[int]) -> np.ndarray:
    """Intercept + one indicator per non-reference level in ``levels_used`` (reference coded 0)."""
    return np.column_stack([np.ones(codes.size)] + [(codes == j).astype(float) for j in levels_used if j != 0])


ALPHA_BOUNDARY = 1e-4  # an NB2 alpha below this at a non-converged fit is the boundary 0 (no over-dispersion)


def _nb_family(y: np.ndarray, x: np.ndarray, offset: np.ndarray):
    """The GLM family of an NB2 model whose dispersion alpha is the maximum-likelihood estimate of
    statsmodels' discrete NegativeBinomial model (beta and alpha jointly; BFGS on log alpha, then
    Nelder-Mead), with a text saying how alpha was found; (None, why) when it was not.

    The search starts from the Poisson GLM's coefficients and alpha = 0.5: statsmodels' own start
    (a moment estimate of alpha) can be infinite with a person-time offset, and the fit then fails.

    Without over-dispersion the likelihood is largest at alpha -> 0, where the optimiser stops
    short of converging: there the NB2 model is the Poisson model, and that family is returned.
    """
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            start = np.r_[sm.GLM(y, x, family=sm.families.Poisson(), offset=offset).fit().params, 0.5]
        except FIT_ERRORS:
            return None, "the Poisson start of the negative binomial model did not converge"
    for method in ("bfgs", "nm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = NegativeBinomial(y, x, loglike_method="nb2", offset=offset).fit(
                    start_params=start, method=method, maxiter=5000, disp=0)
            except FIT_ERRORS:
                continue
        alpha = float(fit.params[-1])
        if not (np.isfinite(alpha) and alpha >= 0):
            continue
        if alpha < ALPHA_BOUNDARY:
            return sm.families.Poisson(), (
                "NB2 with alpha at its lower bound 0 by maximum likelihood (statsmodels discrete NegativeBinomial): "
                "no over-dispersion, so the Poisson GLM")
        if fit.mle_retvals.get("converged", False):
            return sm.families.NegativeBinomial(link=sm.families.links.Log(), alpha=alpha), (
                f"NB2, alpha = {_fmt(alpha)} by maximum likelihood (statsmodels discrete NegativeBinomial, {method})")
    return None, "the negative binomial model did not converge"




def _wald(result, columns: dict[int, int]) -> dict[int, tuple[float, float, float, float]]:
    """exp(beta), exp(CI) and p per level (``columns``: level -> coefficient position) from a
    fitted statsmodels result; a level whose numbers are not all finite is left out."""
    with np.errstate(all="ignore"):
        params, ci, p = np.asarray(result.params), np.asarray(result.conf_int(alpha=0.05)), np.asarray(result.pvalues)
        out = {}
        for k, i in columns.items():
            numbers = (float(np.exp(params[i])), float(np.exp(ci[i, 0])), float(np.exp(ci[i, 1])), float(p[i]))
            if all(np.isfinite(numbers)) and numbers[0] > 0 and abs(params[i]) < 50:
                out[k] = numbers
    return out


def rate_ratio_rows(counts: Any, person_years: Any, group: Any, levels: Sequence[Any], *,
                    model: str = "negative_binomial", measure: str = "rate_ratio") -> list[Row]:
    """Ratio of event rates (events per person-year) of each level to the reference, from one
    regression of the counts on the group with a log(person-years) offset.

    ``model="negative_binomial"`` (default): NB2 GLM whose dispersion alpha is the maximum-likelihood
    estimate of statsmodels' discrete NegativeBinomial model (over-dispersion between patients, as
    relapse counts have); ``model="poisson_robust"``: Poisson GLM with HC0 robust (sandwich) errors.
    Estimate exp(beta) with its Wald 95% CI and p. Patients without person-time are left out;
    levels without patients or without events are left out of the fit and get a blank row.
    """
    if model not in RATE_MODELS:
        raise ValueError(f"model: expected one of {', '.join(RATE_MODELS)}, got {model!r}")
    import statsmodels.api as sm

    y = _floats(counts, "counts")
    t = _floats(person_years, "person_years", y.size)
    codes = _codes(group, levels, y.size)
    keep = (codes >= 0) & ~np.isnan(y) & (t > 0)
    y, t, codes = y[keep], t[keep], codes[keep]
    nk = len(levels)
    sizes = np.bincount(codes, minlength=nk)
    events = np.bincount(codes, weights=y, minlength=nk)
    usable = [j for j in range(nk) if sizes[j] > 0 and events[j] > 0]
    stat, blank = "rate_ratio", {}
    for k in range(1, nk):
        why = _empty_reason(levels, k, sizes) or _empty_reason(levels, k, events, "events")
        if why:
            blank[k] = why + " (no finite rate ratio)" if "events" in why else why
    fitted = [k for k in range(1, nk) if k not in blank]
    results: dict[int, tuple[float, float, float, float]] = {}
    test = ""
    if fitted:
        fit_mask = np.isin(codes, usable)
        yf, tf, cf = y[fit_mask], t[fit_mask], codes[fit_mask]
        x = _design(cf, usable)
        offset = np.log(tf)
        columns = {k: i for i, k in enumerate(fitted, start=1)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if model == "negative_binomial":
                    family, how = _nb_family(yf, x, offset)
                    if family is None:
                        blank.update({k: how for k in fitted})
                    else:
                        results = _wald(sm.GLM(yf, x, family=family, offset=offset).fit(), columns)
                        test = f"negative binomial GLM ({how}), log person-time offset, Wald 95% CI (statsmodels)"
                else:
                    result = sm.GLM(yf, x, family=sm.families.Poisson(), offset=offset).fit(cov_type="HC0")
                    results = _wald(result, columns)
                    test = "Poisson GLM, log person-time offset, HC0 robust errors, Wald 95% CI (statsmodels)"
            except FIT_ERRORS:
                results = {}
    rows = []
    for k in range(1, nk):
        pair = (codes == 0) | (codes == k)
        n, count = int(pair.sum()), int(y[pair].sum())
        if k in blank or k not in results:
            rows.append(_blank(measure, stat, levels, k, blank.get(k, NO_FIT), n=n, count=count))
            continue
        est, low, high, p = results[k]
        rows.append(Row(measure=measure, stat=stat, estimate=est, n=n, count=count, low=low, high=high,
                        interval="95% CI", p_value=p, test=test, group=_pair(levels, k)))
    return rows


def ratio_of_rate_ratios_rows(pre_count: Any, pre_years: Any, post_count: Any, post_years: Any, group: Any,
                              levels: Sequence[Any], *, model: str = "poisson_gee",
                              measure: str = "ratio_of_rate_ratios") -> list[Row]:
    """For add-on designs: (post/pre rate ratio of a level) / (post/pre rate ratio of the reference),
    the period x group interaction of a count model on two records per patient (pre, post) with a
    log person-time offset.

    ``model="poisson_gee"`` (default): Poisson GEE, exchangeable working correlation within patient,
    robust errors (statsmodels GEE); ``model="negative_binomial_cluster"``: NB2 GLM (alpha by maximum
    likelihood as in :func:`rate_ratio_rows`) with errors clustered by patient. A period without
    person-time is left out of that patient's records. Estimate exp(interaction), Wald 95% CI, p.
    """
    if model not in ROR_MODELS:
        raise ValueError(f"model: expected one of {', '.join(ROR_MODELS)}, got {model!r}")
    import statsmodels.api as sm

    y0 = _floats(pre_count, "pre_count")
    size = y0.size
    t0, y1, t1 = (_floats(v, name, size) for v, name in ((pre_years, "pre_years"), (post_count, "post_count"), (post_years, "post_years")))
    codes = _codes(group, levels, size)
    patient = np.arange(size)
    y = np.concatenate([y0, y1])
    t = np.concatenate([t0, t1])
    period = np.repeat([0.0, 1.0], size)
    code = np.concatenate([codes, codes])
    cluster = np.concatenate([patient, patient])
    keep = (code >= 0) & ~np.isnan(y) & (t > 0)
    y, t, period, code, cluster = y[keep], t[keep], period[keep], code[keep], cluster[keep]
    nk = len(levels)
    stat = "ratio_of_rate_ratios"
    analysed = np.zeros(size, dtype=bool)
    analysed[cluster] = True
    sizes = np.bincount(codes[analysed], minlength=nk)
    cells = {(j, p): float(y[(code == j) & (period == p)].sum()) for j in range(nk) for p in (0.0, 1.0)}
    blank: dict[int, str] = {}
    for k in range(1, nk):
        why = _empty_reason(levels, k, sizes)
        if why is None:
            empty = [f"{'pre' if p == 0 else 'post'} events in group {levels[j]}" for j in (0, k) for p in (0.0, 1.0) if cells[(j, p)] == 0]
            if empty:
                why = "no " + " and no ".join(empty) + " (no finite ratio)"
        if why:
            blank[k] = why
    usable = [0] + [k for k in range(1, nk) if k not in blank]
    fitted = usable[1:]
    results: dict[int, tuple[float, float, float, float]] = {}
    test = ""
    if fitted and all(cells[(0, p)] > 0 for p in (0.0, 1.0)):
        mask = np.isin(code, usable)
        yf, tf, pf, cf, gf = y[mask], t[mask], period[mask], code[mask], cluster[mask]
        order = np.argsort(gf, kind="stable")
        yf, tf, pf, cf, gf = yf[order], tf[order], pf[order], cf[order], gf[order]
        dummies = [(cf == j).astype(float) for j in fitted]
        x = np.column_stack([np.ones(yf.size), pf, *dummies, *[pf * d for d in dummies]])
        offset = np.log(tf)
        result = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if model == "poisson_gee":
                    result = sm.GEE(yf, x, groups=gf, family=sm.families.Poisson(),
                                    cov_struct=sm.cov_struct.Exchangeable(), offset=offset).fit()
                    test = ("Poisson GEE, exchangeable working correlation within patient, robust errors, log "
                            "person-time offset; period x group interaction, Wald 95% CI (statsmodels)")
                else:
                    family, how = _nb_family(yf, x, offset)
                    if family is None:
                        blank.update({k: how for k in fitted})
                    else:
                        result = sm.GLM(yf, x, family=family, offset=offset).fit(cov_type="cluster", cov_kwds={"groups": gf})
                        test = (f"negative binomial GLM ({how}), errors clustered by patient, log person-time "
                                "offset; period x group interaction, Wald 95% CI (statsmodels)")
                if result is not None:
                    results = _wald(result, {k: 2 + len(fitted) + i for i, k in enumerate(fitted)})
            except FIT_ERRORS:
                results = {}
    elif fitted:
        blank.update({k: "no events in a period of the reference group" for k in fitted})
    rows = []
    for k in range(1, nk):
        in_pair = (code == 0) | (code == k)
        n, count = int(np.unique(cluster[in_pair]).size), int(y[in_pair].sum())
        if k not in results:
            rows.append(_blank(measure, stat, levels, k, blank.get(k, NO_FIT), n=n, count=count))
            continue
        est, low, high, p = results[k]
        rows.append(Row(measure=measure, stat=stat, estimate=est, n=n, count=count, low=low, high=high,
                        interval="95% CI", p_value=p, test=test, group=_pair(levels, k)))
    return rows


# --------------------------------------------------------------------------- time to event


def _survival_inputs(time: Any, event: Any, group: Any, levels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = _floats(time, "time")
    e = _floats(event, "event", t.size)
    codes = _codes(group, levels, t.size)
    keep = (codes >= 0) & ~np.isnan(t) & ~np.isnan(e) & (t >= 0)
    return t[keep], (e[keep] != 0).astype(float), codes[keep]


def logrank_rows(time: Any, event: Any, group: Any, levels: Sequence[Any], *, measure: str = "logrank") -> list[Row]:
    """Log-rank test of each level against the reference, on the patients of those two groups
    (statsmodels ``survdiff``); estimate = the chi-square statistic (1 df), count = events."""
    from statsmodels.duration.survfunc import survdiff

    t, e, codes = _survival_inputs(time, event, group, levels)
    nk = len(levels)
    sizes = np.bincount(codes, minlength=nk)
    rows = []
    for k in range(1, nk):
        pair = (codes == 0) | (codes == k)
        n, count = int(pair.sum()), int(e[pair].sum())
        why = _empty_reason(levels, k, sizes) or ("no events in either group" if count == 0 else None)
        if why:
            rows.append(_blank(measure, "logrank", levels, k, why, n=n, count=count, interval=None))
            continue
        try:
            with np.errstate(all="ignore"):
                chisq, p = survdiff(t[pair], e[pair], (codes[pair] == k).astype(int))
        except np.linalg.LinAlgError:
            chisq = p = math.nan
        if not (np.isfinite(chisq) and np.isfinite(p)):
            why = "zero variance: no event time with patients of both groups at risk"
            rows.append(_blank(measure, "logrank", levels, k, why, n=n, count=count, interval=None))
            continue
        rows.append(Row(measure=measure, stat="logrank", estimate=float(chisq), n=n, count=count, p_value=float(p),
                        interval=None, group=_pair(levels, k),
                        test=f"log-rank test (statsmodels survdiff), {levels[k]} vs {levels[0]} only; estimate = chi-square, 1 df"))
    return rows


def hazard_ratio_rows(time: Any, event: Any, group: Any, levels: Sequence[Any], *, measure: str = "hazard_ratio") -> list[Row]:
    """Hazard ratio of each level to the reference from one Cox model with the group as indicators
    (statsmodels PHReg, Efron ties); Wald 95% CI and p. Levels without patients or events are left
    out of the model and get a blank row (a hazard ratio of 0 has no Wald CI)."""
    from statsmodels.duration.hazard_regression import PHReg

    t, e, codes = _survival_inputs(time, event, group, levels)
    nk = len(levels)
    sizes = np.bincount(codes, minlength=nk)
    events = np.bincount(codes, weights=e, minlength=nk)
    blank = {k: why for k in range(1, nk)
             if (why := _empty_reason(levels, k, sizes) or _empty_reason(levels, k, events, "events"))}
    fitted = [k for k in range(1, nk) if k not in blank]
    results: dict[int, tuple[float, float, float, float]] = {}
    if fitted:
        mask = np.isin(codes, [0, *fitted])
        x = np.column_stack([(codes[mask] == k).astype(float) for k in fitted])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = PHReg(t[mask], x, status=e[mask], ties="efron").fit()
                results = _wald(result, {k: i for i, k in enumerate(fitted)})
            except FIT_ERRORS:
                results = {}
    rows = []
    for k in range(1, nk):
        pair = (codes == 0) | (codes == k)
        n, count = int(pair.sum()), int(e[pair].sum())
        if k not in results:
            rows.append(_blank(measure, "hazard_ratio", levels, k, blank.get(k, NO_FIT), n=n, count=count))
            continue
        est, low, high, p = results[k]
        rows.append(Row(measure=measure, stat="hazard_ratio", estimate=est, n=n, count=count, low=low, high=high,
                        interval="95% CI", p_value=p, group=_pair(levels, k),
                        test="Cox proportional hazards (statsmodels PHReg, Efron ties), Wald 95% CI"))
    return rows


def _km_at(t: np.ndarray, e: np.ndarray, landmark: float) -> tuple[float | None, float, str | None]:
    """S(landmark) and its Greenwood SE (statsmodels SurvfuncRight), or None and why."""
    from statsmodels.duration.survfunc import SurvfuncRight

    if not np.any(e):
        return (1.0, 0.0, None) if t.max() >= landmark else (None, math.nan, "follow-up ends before the landmark")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = SurvfuncRight(t, e)
        times, surv = np.asarray(fit.surv_times), np.asarray(fit.surv_prob)
        se = np.asarray(fit.surv_prob_se, dtype=float)
    i = int(np.searchsorted(times, landmark, side="right")) - 1
    s = 1.0 if i < 0 else float(surv[i])
    if t.max() < landmark and s > 0:
        return None, math.nan, "follow-up ends before the landmark"
    return s, (0.0 if i < 0 else float(se[i])), None


def km_difference_rows(time: Any, event: Any, group: Any, levels: Sequence[Any], landmark: float, *,
                       measure: str = "km_difference", unit: str = "months") -> list[Row]:
    """Difference S_level(landmark) - S_ref(landmark) of Kaplan-Meier survival at a landmark time
    (in the unit of ``time``), with a Wald 95% CI and p from the groups' Greenwood variances
    (statsmodels SurvfuncRight); count = events up to the landmark."""
    t, e, codes = _survival_inputs(time, event, group, levels)
    nk = len(levels)
    sizes = np.bincount(codes, minlength=nk)
    at = {}
    for j in range(nk):
        at[j] = _km_at(t[codes == j], e[codes == j], landmark) if sizes[j] else (None, math.nan, "no patients")
    rows = []
    for k in range(1, nk):
        pair = (codes == 0) | (codes == k)
        n, count = int(pair.sum()), int(e[pair & (t <= landmark)].sum())
        why = _empty_reason(levels, k, sizes)
        if why is None:
            bad = [f"{at[j][2]} in group {levels[j]}" for j in (0, k) if at[j][0] is None]
            why = "; ".join(bad) or None
        if why:
            rows.append(_blank(measure, "km_difference", levels, k, why, n=n, count=count, unit=unit))
            continue
        (s1, se1, _), (s0, se0, _) = at[k], at[0]
        d, se = s1 - s0, math.hypot(se1, se0)
        test = (f"difference in Kaplan-Meier survival at {landmark:g} {unit} (statsmodels SurvfuncRight), "
                "Greenwood variances, Wald 95% CI")
        if not np.isfinite(se) or se == 0:
            rows.append(Row(measure=measure, stat="km_difference", estimate=d, n=n, count=count, interval="95% CI",
                            group=_pair(levels, k), unit=unit,
                            test=test + "; no CI: the Greenwood variance of the difference is 0 or undefined"))
            continue
        p = float(2 * stats.norm.sf(abs(d) / se))
        rows.append(Row(measure=measure, stat="km_difference", estimate=d, n=n, count=count, low=d - Z95 * se,
                        high=d + Z95 * se, interval="95% CI", p_value=p, test=test, group=_pair(levels, k), unit=unit))
    return rows


# --------------------------------------------------------------------------- proportions, location


def proportion_difference_rows(success: Any, group: Any, levels: Sequence[Any], *,
                               measure: str = "proportion_difference") -> list[Row]:
    """Difference of proportions p_level - p_ref (0-1 scale) with Newcombe's hybrid-score 95% CI
    (statsmodels ``confint_proportions_2indep(method="newcomb")``), and the Fisher exact (an
    expected count < 5) or Yates chi-square p. ``success``: True/False per patient (missing = left
    out); count = successes in both groups."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    flags = pd.Series(success)
    missing = flags.isna().to_numpy()
    s = np.where(missing, np.nan, flags.where(~missing, False).astype(bool).to_numpy(dtype=float))
    codes = _codes(group, levels, s.size)
    keep = (codes >= 0) & ~np.isnan(s)
    s, codes = s[keep], codes[keep]
    nk = len(levels)
    sizes = np.bincount(codes, minlength=nk)
    hits = np.bincount(codes, weights=s, minlength=nk).astype(np.int64)
    rows = []
    for k in range(1, nk):
        n, count = int(sizes[0] + sizes[k]), int(hits[0] + hits[k])
        why = _empty_reason(levels, k, sizes)
        if why:
            rows.append(_blank(measure, "proportion_difference", levels, k, why, n=n, count=count))
            continue
        x1, n1, x0, n0 = int(hits[k]), int(sizes[k]), int(hits[0]), int(sizes[0])
        low, high = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=0.05)
        p, test = _contingency_p(np.array([[x1, x0], [n1 - x1, n0 - x0]]))
        rows.append(Row(measure=measure, stat="proportion_difference", estimate=x1 / n1 - x0 / n0, n=n, count=count,
                        low=float(low), high=float(high), interval="95% CI", p_value=p, group=_pair(levels, k),
                        test=f"difference in proportions ({x1}/{n1} vs {x0}/{n0}), Newcombe hybrid-score 95% CI "
                             f"(statsmodels confint_proportions_2indep, newcomb); {test}"))
    return rows


def mann_whitney_rows(values: Any, group: Any, levels: Sequence[Any], *, estimate: str = "median_difference",
                      quantile_method: str = "linear", measure: str = "mann_whitney", unit: str = "") -> list[Row]:
    """Mann-Whitney U test of a continuous value (a change, say) between each level and the
    reference (scipy.stats.mannwhitneyu, two-sided, method=auto); the estimate is the difference
    of medians (numpy ``quantile_method``) or, with ``estimate="hodges_lehmann"``, the median of
    all level - reference differences. No CI."""
    if estimate not in MW_ESTIMATES:
        raise ValueError(f"estimate: expected one of {', '.join(MW_ESTIMATES)}, got {estimate!r}")
    v = _floats(values, "values")
    codes = _codes(group, levels, v.size)
    keep = (codes >= 0) & ~np.isnan(v)
    v, codes = v[keep], codes[keep]
    nk = len(levels)
    sizes = np.bincount(codes, minlength=nk)
    stat = estimate
    rows = []
    for k in range(1, nk):
        x, ref = v[codes == k], v[codes == 0]
        n = int(x.size + ref.size)
        why = _empty_reason(levels, k, sizes, "values")
        if why is None and np.all(np.r_[x, ref] == ref[0]):
            why = "all values identical in both groups"
        if why is None and estimate == "hodges_lehmann" and x.size * ref.size > MAX_HL_PAIRS:
            why = f"more than {MAX_HL_PAIRS:,} pairs for the Hodges-Lehmann estimate"
        if why:
            rows.append(_blank(measure, stat, levels, k, why, n=n, interval=None, unit=unit))
            continue
        result = stats.mannwhitneyu(x, ref, alternative="two-sided", method="auto")
        pooled = np.r_[x, ref]
        ties = np.unique(pooled).size < pooled.size
        ran = "asymptotic" if (x.size > 8 and ref.size > 8) or ties else "exact"
        if estimate == "hodges_lehmann":
            value = float(np.median(np.subtract.outer(x, ref)))
            what = "Hodges-Lehmann estimate (median of all pairwise differences)"
        else:
            value = float(np.quantile(x, 0.5, method=quantile_method) - np.quantile(ref, 0.5, method=quantile_method))
            what = f"difference in medians (numpy quantile method {quantile_method})"
        rows.append(Row(measure=measure, stat=stat, estimate=value, n=n, interval=None, p_value=float(result.pvalue),
                        group=_pair(levels, k), unit=unit,
                        test=f"{what}; Mann-Whitney U = {_fmt(float(result.statistic))} (scipy.stats.mannwhitneyu, "
                             f"two-sided, method=auto -> {ran}, continuity correction)"))
    return rows

"""``arr_change``: annualized relapse rate before vs after the index date."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import pandas as pd

from endpointkit import Duration, Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.endpoint import excluded_by_reason
from endpointkit.errors import SpecError
from endpointkit.stats import (
    median_row,
    poisson_rate_row,
    proportion_row,
    scipy_stats,
    signed_rank_row,
)

PreWindow = Literal["since_onset", "since_onset_excl_first", "last_12m", "last_24m", "since_prior_treatment"]
LOOKBACK_DAYS = {"last_12m": Duration(12, "months").days, "last_24m": Duration(24, "months").days}


@dataclass(frozen=True)
class ArrParams:
    pre_window: PreWindow | Duration = param("since_onset", "Pre-treatment window: since_onset, since_onset_excl_first, last_12m, last_24m, since_prior_treatment, or a duration such as '18 months'.")
    prior_treatment: str | None = param(None, "Background treatment whose first start opens the pre window under since_prior_treatment.")
    exclude_index_relapse_days: int = param(0, "Relapses fewer than this many days before index (index day included) are not counted.")
    post_lag_days: int = param(0, "Days after index left out of the post window (numerator and person-time).")
    min_pre_days: int = param(0, "Patients with a shorter pre window are excluded from this endpoint (counted).")
    min_post_days: int = param(0, "Patients with a shorter post window are excluded from this endpoint (counted).")
    summary: Literal["median_iqr", "mean_sd", "median_range", "crude"] = param("median_iqr", "Cohort summary of the per-patient ARRs; crude = sum of relapses / sum of person-years with exact Poisson CI.")
    responder: Literal["reduced", "halved", "relapse_free"] = param("reduced", "Responder: post < pre, post <= pre/2, or no relapse after index.")
    compare_model: Literal["negative_binomial", "poisson_robust"] = param("negative_binomial", "Between-group comparisons (compare:): model of the post-index rate ratio, negative binomial (over-dispersed counts) or Poisson with robust errors; the ratio of the groups' post/pre rate ratios uses the matching two-period model (negative binomial clustered by patient, or Poisson GEE).")
    rate_ratio_ci: Literal["exact", "robust"] = param("exact", "95% CI of the crude post/pre rate ratio (summary: crude): exact = conditional binomial (Poisson counts); robust = patient-clustered sandwich, for relapse rates that vary between patients.")

    def check(self, path: str) -> None:
        if self.pre_window == "since_prior_treatment" and not self.prior_treatment:
            raise SpecError(f"{path}.prior_treatment", "required when pre_window is since_prior_treatment (e.g. azathioprine)")


def earliest_onset(row: np.ndarray, onset: np.ndarray, n: int) -> np.ndarray:
    """Each patient's earliest relapse onset (NaT without one), from each relapse's patient row
    (-1: not an analysed patient): integer minima instead of a group-by on the text patient_id."""
    onset = onset.astype("datetime64[ns]", copy=False)
    days = onset.view(np.int64)
    ok = (row >= 0) & ~np.isnat(onset)
    none = np.iinfo(np.int64).max
    out = np.full(n, none, dtype=np.int64)
    np.minimum.at(out, row[ok], days[ok])
    earliest = out.view("datetime64[ns]").copy()
    earliest[out == none] = np.datetime64("NaT")
    return earliest


def window_starts(cohort, params: ArrParams, relapses: pd.DataFrame, row: np.ndarray | None = None) -> tuple[pd.Series, pd.Series]:
    """Start of each patient's pre window and the reason a patient has none (``row``: each
    relapse's row in ``cohort.patients``, as :meth:`Cohort.patient_rows` gives it)."""
    patients = cohort.patients
    row = cohort.patient_rows(relapses) if row is None else row
    earliest = earliest_onset(row, relapses["onset_date"].to_numpy(dtype="datetime64[ns]"), len(patients))
    onset = patients["onset_date"].fillna(pd.Series(earliest, index=patients.index))
    index = patients["index_date"]
    window = params.pre_window
    reason = pd.Series(pd.NA, index=patients.index, dtype="object")
    if window in ("since_onset", "since_onset_excl_first"):
        start = onset
        reason[start.isna()] = "no onset date and no relapse to date the onset"
    elif window == "since_prior_treatment":
        treatments = cohort.table("treatments")
        wanted = params.prior_treatment.strip().casefold()
        prior = treatments[treatments["treatment"].astype(str).str.strip().str.casefold() == wanted]
        first_start = prior.groupby("patient_id")["start_date"].min()  # reindex, not map: an empty partition works too
        start = pd.Series(first_start.reindex(patients["patient_id"]).to_numpy(), index=patients.index).astype("datetime64[ns]")
        reason[start.isna()] = f"no {params.prior_treatment} start"
        start = start.where(onset.isna() | (start >= onset), onset)
    else:
        days = LOOKBACK_DAYS[window] if isinstance(window, str) else window.days
        start = index - pd.Timedelta(days=days)
        start = start.where(onset.isna() | (start >= onset), onset)
    return start, reason


def compute_arr(cohort, params: ArrParams, year_days: float) -> pd.DataFrame:
    """Per-patient windows, relapse counts and ARRs (vectorised)."""
    patients = cohort.patients
    relapses = cohort.table("relapses")[["patient_id", "onset_date"]]
    row = cohort.patient_rows(relapses)  # each relapse's patient, as a row of `patients`
    start, reason = window_starts(cohort, params, relapses, row)
    if params.pre_window == "since_onset_excl_first":  # sorted by onset already
        later = pd.Series(row).groupby(row).cumcount().to_numpy() > 0
        relapses, row = relapses[later], row[later]
    index = patients["index_date"]
    post_start = index + pd.Timedelta(days=params.post_lag_days)
    end = patients["followup_end"]
    frame = pd.DataFrame({
        "patient_id": patients["patient_id"], "pre_start": start, "pre_end": index,
        "post_start": post_start, "post_end": end,
    })
    known = row >= 0
    onset, row = relapses["onset_date"].to_numpy(dtype="datetime64[ns]")[known], row[known]

    def at(column: str) -> np.ndarray:  # a per-patient date on each relapse's row (NaT compares False)
        return frame[column].to_numpy(dtype="datetime64[ns]")[row]

    days_before = (at("pre_end") - onset) / np.timedelta64(1, "D")
    in_pre = (onset >= at("pre_start")) & (onset <= at("pre_end")) & ~(days_before < params.exclude_index_relapse_days)
    in_post = (onset > at("post_start")) & (onset <= at("post_end"))
    n = len(frame)
    frame["pre_days"] = (frame["pre_end"] - frame["pre_start"]).dt.days
    frame["post_days"] = (frame["post_end"] - frame["post_start"]).dt.days
    frame["pre_relapses"] = np.bincount(row[in_pre], minlength=n).astype(int)
    frame["post_relapses"] = np.bincount(row[in_post], minlength=n).astype(int)
    reason = reason.copy()
    short_pre = reason.isna() & ((frame["pre_days"] <= 0) | (frame["pre_days"] < params.min_pre_days))
    reason[short_pre] = f"pre window of 0 days or shorter than min_pre_days ({params.min_pre_days})"
    short_post = reason.isna() & ((frame["post_days"] <= 0) | (frame["post_days"] < params.min_post_days))
    reason[short_post] = f"post window of 0 days or shorter than min_post_days ({params.min_post_days})"
    frame["included"] = reason.isna()
    frame["exclusion_reason"] = reason
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["pre_arr"] = (frame["pre_relapses"] / (frame["pre_days"] / year_days)).where(frame["included"])
        frame["post_arr"] = (frame["post_relapses"] / (frame["post_days"] / year_days)).where(frame["included"])
    return frame


def exact_rate_difference(frame: pd.DataFrame, year_days: float) -> np.ndarray:
    """post ARR - pre ARR per patient, computed as an exact fraction and rounded once to a double.

    ARR = count * year_days / days. The difference is
    year_days * (post_count * pre_days - pre_count * post_days) / (post_days * pre_days): the integer
    products and Python's correctly rounded int / int division make two equal rates an exact 0,
    whatever order floating-point evaluation would take. NaN where a window is missing.
    """
    p, q = Fraction(year_days).as_integer_ratio()
    columns = ("pre_relapses", "pre_days", "post_relapses", "post_days")
    valid = frame[list(columns)].notna().all(axis=1).to_numpy() & frame["included"].to_numpy(dtype=bool)
    pre_c, pre_d, post_c, post_d = (frame[c].to_numpy()[valid].astype(np.int64) for c in columns)
    diff = np.full(len(frame), np.nan)
    if not valid.any():
        return diff
    cross = post_c * pre_d - pre_c * post_d  # counts and days are far below 2**31: exact in int64
    days = post_d * pre_d
    exact_in_doubles = 2**53  # integers below this are exact doubles, and IEEE division rounds correctly once
    if p * int(np.abs(cross).max()) < exact_in_doubles and q * int(days.max()) < exact_in_doubles and days.min() > 0:
        diff[valid] = (p * cross).astype(float) / (q * days).astype(float)  # the same double as int / int, vectorised
    else:  # a year length with a long binary fraction: Python's unbounded integers
        numerator = p * cross.astype(object)
        denominator = q * days.astype(object)
        diff[valid] = (numerator / denominator).astype(float)
    return diff


def responder_mask(used: pd.DataFrame, rule: str) -> pd.Series:
    """Responders decided exactly: rates compared as integer cross-products (the year length cancels)."""
    pre_c, pre_d = used["pre_relapses"].astype(np.int64), used["pre_days"].astype(np.int64)
    post_c, post_d = used["post_relapses"].astype(np.int64), used["post_days"].astype(np.int64)
    if rule == "reduced":  # post_c / post_d < pre_c / pre_d
        return post_c * pre_d < pre_c * post_d
    if rule == "halved":  # post_c / post_d <= pre_c / (2 pre_d)
        return 2 * post_c * pre_d <= pre_c * post_d
    return post_c == 0


RATE_RATIO_LABEL = "Rate ratio post/pre (crude)"
ROBUST_RATE_RATIO_TEST = (
    "patient-clustered sandwich (Poisson GEE with period indicator, independence; delta method on log rate ratio), "
    "n/(n-1) correction, t quantile with n-1 df"
)


def rate_ratio_row(pre_events: int, pre_years: float, post_events: int, post_years: float, n: int) -> Row:
    """Crude post/pre rate ratio; exact CI from the conditional binomial of post events among all."""
    total = pre_events + post_events
    if total == 0 or pre_events == 0 or pre_years <= 0 or post_years <= 0:
        return Row(measure="rate_ratio", stat="rate_ratio", n=n, estimate=None, interval="95% CI", label=RATE_RATIO_LABEL)
    ci = scipy_stats().binomtest(post_events, total).proportion_ci(confidence_level=0.95, method="exact")
    scale = pre_years / post_years

    def to_ratio(p: float) -> float:
        return float("inf") if p >= 1 else p / (1 - p) * scale

    high = to_ratio(ci.high)
    return Row(
        measure="rate_ratio", stat="rate_ratio", n=n, estimate=(post_events / post_years) / (pre_events / pre_years),
        low=to_ratio(ci.low), high=None if np.isinf(high) else high, interval="95% CI",
        label=RATE_RATIO_LABEL, test="exact conditional binomial CI (binomtest(k_post, k_pre + k_post).proportion_ci)",
    )


def robust_rate_ratio_row(pre_events: np.ndarray, pre_days: np.ndarray, post_events: np.ndarray, post_days: np.ndarray,
                          year_days: float = 365.25) -> Row:
    """Crude post/pre rate ratio with a patient-clustered (sandwich) 95% CI.

    RR = (Σy1/Σt1) / (Σy0/Σt0) is the GEE estimate of a Poisson model with a period indicator and
    log person-time offset (independence working correlation), and its patient-clustered sandwich
    variance of log RR is Σu², u = (y1/Σy1 - t1/Σt1) - (y0/Σy0 - t0/Σt0) per patient (delta method:
    the correlation of a patient's pre and post counts and the between-patient variation in rates
    are taken from the data, not assumed Poisson). Times n/(n-1), CI log RR ± t(0.975, n-1) SE.
    The CI is left blank without relapses after index or with fewer than 2 patients.
    """
    y0, t0, y1, t1 = (np.asarray(a, dtype=float) for a in (pre_events, pre_days, post_events, post_days))
    n = y0.size
    Y0, T0, Y1, T1 = y0.sum(), t0.sum(), y1.sum(), t1.sum()
    if Y0 == 0 or T0 <= 0 or T1 <= 0:
        return Row(measure="rate_ratio", stat="rate_ratio", n=n, estimate=None, interval="95% CI", label=RATE_RATIO_LABEL)
    estimate = float((Y1 / (T1 / year_days)) / (Y0 / (T0 / year_days)))  # as rate_ratio_row: the same float
    if Y1 == 0 or n < 2:
        return Row(measure="rate_ratio", stat="rate_ratio", n=n, estimate=estimate, interval="95% CI", label=RATE_RATIO_LABEL,
                   test=ROBUST_RATE_RATIO_TEST + " (not estimable: no relapse after index or fewer than 2 patients)")
    u = (y1 / Y1 - t1 / T1) - (y0 / Y0 - t0 / T0)
    se = float(np.sqrt(n / (n - 1) * np.dot(u, u)))
    half = float(scipy_stats().t.ppf(0.975, n - 1)) * se
    log_rr = float(np.log(Y1 / T1) - np.log(Y0 / T0))
    return Row(
        measure="rate_ratio", stat="rate_ratio", n=n, estimate=estimate, low=float(np.exp(log_rr - half)),
        high=float(np.exp(log_rr + half)), interval="95% CI", label=RATE_RATIO_LABEL, test=ROBUST_RATE_RATIO_TEST,
    )


class ArrChange(Endpoint):
    name = "arr_change"
    title = "Annualized relapse rate"
    description = "Per-patient ARR before vs after the index date, paired Wilcoxon test, responders."
    requires = ("relapses",)
    Params = ArrParams
    headline = ("pre", "post", "paired_test", "responders")
    summary_params = ("summary", "responder", "rate_ratio_ci", "compare_model")

    def derive(self, cohort, params: ArrParams, ctx) -> pd.DataFrame:
        """Each patient's windows, relapse counts, ARRs and exclusion reason (their own records only)."""
        return compute_arr(cohort, params, ctx.year_days)

    def summarise(self, frame: pd.DataFrame, params: ArrParams, ctx) -> EndpointResult:
        """Summaries of the ARRs, the paired test and responders; adds ``arr_difference`` and ``responder``."""
        # the summary's columns of the analysed patients (a copy of the whole frame would double it)
        used = frame.loc[frame["included"], ["pre_days", "post_days", "pre_relapses", "post_relapses", "pre_arr", "post_arr"]]
        n = len(used)
        if params.summary == "crude":
            pre_years = used["pre_days"].sum() / ctx.year_days
            post_years = used["post_days"].sum() / ctx.year_days
            rows = [
                poisson_rate_row("pre", int(used["pre_relapses"].sum()), pre_years, n, label="ARR before, crude (95% CI)"),
                poisson_rate_row("post", int(used["post_relapses"].sum()), post_years, n, label="ARR after, crude (95% CI)"),
            ]
        else:
            words = {"median_iqr": "median [IQR]", "mean_sd": "mean (SD)", "median_range": "median (range)"}[params.summary]
            rows = [
                median_row("pre", used["pre_arr"], ctx.quantile_method, summary=params.summary, label=f"ARR before, {words}"),
                median_row("post", used["post_arr"], ctx.quantile_method, summary=params.summary, label=f"ARR after, {words}"),
            ]
        frame["arr_difference"] = exact_rate_difference(frame, ctx.year_days)
        rows.append(signed_rank_row("paired_test", frame.loc[used.index, "arr_difference"], ctx.paired_test, label="ARR change, p"))
        responders = responder_mask(used, params.responder)
        words = {"reduced": "post-index ARR below pre-index ARR", "halved": "post-index ARR at most half the pre-index ARR",
                 "relapse_free": "no relapse after index"}[params.responder]
        frame["responder"] = responders.reindex(frame.index)
        rows.append(proportion_row("responders", int(responders.sum()), n, label=f"Responders ({params.responder}), n (%)"))
        if params.summary == "crude" and params.rate_ratio_ci == "robust":
            rows.append(robust_rate_ratio_row(used["pre_relapses"].to_numpy(), used["pre_days"].to_numpy(),
                                              used["post_relapses"].to_numpy(), used["post_days"].to_numpy(), ctx.year_days))
        elif params.summary == "crude":
            rows.append(rate_ratio_row(int(used["pre_relapses"].sum()), used["pre_days"].sum() / ctx.year_days,
                                       int(used["post_relapses"].sum()), used["post_days"].sum() / ctx.year_days, n))
        window = params.pre_window if isinstance(params.pre_window, str) else f"last {params.pre_window}"
        if params.pre_window == "since_prior_treatment":
            window = f"since the first start of {params.prior_treatment}"
        skipped = params.exclude_index_relapse_days
        skip_text = f"; relapses fewer than {skipped} days before index not counted" if skipped else ""
        notes = [
            f"ARR = relapses / (days / {ctx.year_days:g}) per patient; pre window {window}, [start, index] "
            f"(a relapse on the index day is pre){skip_text}; "
            f"post window (index + {params.post_lag_days} days, follow-up end]. Responder: {words}. Rates are compared "
            "and subtracted exactly (as fractions), so an unchanged rate is neither a responder nor a non-zero difference."
        ]
        if params.summary == "crude":
            notes.append(
                "Rate ratio post/pre = (Σ post relapses / Σ post years) / (Σ pre relapses / Σ pre years); 95% CI "
                + ("patient-clustered sandwich on the log ratio (patients as independent units, n/(n-1), t with n-1 df): "
                   "allows relapse rates to vary between patients." if params.rate_ratio_ci == "robust" else
                   "exact conditional binomial of post among all relapses: assumes Poisson counts, too narrow when "
                   "relapse rates vary between patients (rate_ratio_ci: robust).")
            )
        excluded = excluded_by_reason(frame["patient_id"], frame["exclusion_reason"])
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, excluded=excluded)

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: ArrParams, ctx) -> list[Row]:
        """Ratio of post-index relapse rates between groups (count model, log person-time offset) and
        the ratio of the groups' post/pre rate ratios (period x group), on the analysed patients."""
        from endpointkit.comparisons import labelled, rate_ratio_rows, ratio_of_rate_ratios_rows

        used = per_patient["included"].to_numpy(dtype=bool)
        frame, group = per_patient[used], groups[used]
        pre_years, post_years = frame["pre_days"] / ctx.year_days, frame["post_days"] / ctx.year_days
        words = {"negative_binomial": "negative binomial", "poisson_robust": "Poisson, robust SE"}[params.compare_model]
        two_period = {"negative_binomial": "negative_binomial_cluster", "poisson_robust": "poisson_gee"}[params.compare_model]
        post = rate_ratio_rows(frame["post_relapses"], post_years, group, levels, model=params.compare_model)
        ratio = ratio_of_rate_ratios_rows(frame["pre_relapses"], pre_years, frame["post_relapses"], post_years, group, levels,
                                          model=two_period)
        return (labelled(post, f"Post-index ARR, rate ratio ({words}, 95% CI)", "post_rate_ratio")
                + labelled(ratio, "Post/pre rate ratio, ratio between groups (95% CI)", "ratio_of_rate_ratios"))


@hookimpl
def register_endpoints():
    return [ArrChange]

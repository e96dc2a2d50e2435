"""``titer_reduction``: antibody titers before vs after the index date.

Definitions (docs/endpoints/titer_reduction.md):

* pre = the last titer in ``[index - pre_window_days, index]`` (a titer on the index day is pre);
  post = the last titer in ``(index, follow-up end]``, or under ``nadir`` the lowest (a negative ranks
  below every positive), the earlier on a tie.
* values: reciprocal (``1:480`` -> 480); negatives are 0 (``zero_rank``), lod/2 (``lod_half``) or lod
  (``lod``). Medians/IQR use the study quantile method on these values, or on their log2 (a 0 being
  -inf; a quantile touching -inf is ``negative``) and are back-transformed (2**x, 0 for -inf).
* the paired Wilcoxon test is on log2 values of complete pairs, negatives at log2(lod/2) (log2(lod)
  under ``lod``), each difference computed as log2(post / pre) so that equal fold changes tie exactly.

Choices where the contract is silent (also stated in the notes):

* same-day duplicate titers of a patient: the last by CSV line is used, the others are ignored and
  counted (per-patient column ``same_day_duplicates_ignored``);
* ``became_negative`` is a proportion row: count = positive before and negative after, n = patients
  positive before who have a post titer;
* nadir ranks titers by their reciprocal (negatives lowest) whatever ``negative_value`` says;
* display ``1:N`` rounds N half up; a positive value below 0.5 shows ``1:<1``;
* geometric means (``lod_*`` only): 2**mean(log2 value), 95% CI from the t distribution on the log2
  scale (``scipy.stats.t``), back-transformed; they use the same patients as the medians;
* ``pre_timepoint`` has the single value ``last`` (the contract names no alternative).

``derive`` picks each cohort patient's titers and their values (one row per patient, from that
patient's titers only); ``summarise`` adds the summary populations (``population``) and computes the
rows, so variants that differ only in ``population`` or ``median_scale`` share one derivation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.data import LINE
from endpointkit.endpoint import excluded_by_reason
from endpointkit.errors import SpecError
from endpointkit.stats import median_row, proportion_row, scipy_stats, signed_rank_row

DASH = "\u2013"
POSITIVE_BEFORE = "_positive_before"  # a column of the derived frame only


@dataclass(frozen=True)
class TiterParams:
    pre_timepoint: Literal["last"] = param("last", "Pre-index titer: the last titer on or before index within pre_window_days.")
    pre_window_days: int = param(365, "Days before index searched for the pre titer: [index - days, index].")
    post_timepoint: Literal["last", "nadir"] = param("last", "Post-index titer in (index, follow-up end]: the last one, or the lowest (nadir; the earlier on a tie).")
    negative_value: Literal["zero_rank", "lod_half", "lod"] = param("zero_rank", "Value of a negative titer: 0 (ranks below every positive), lod/2, or lod.")
    lod: float = param(10, "Reciprocal limit of detection (10 = 1:10) for lod_half, lod and the log2 values of the paired test.")
    population: Literal["all_available", "paired_complete"] = param("all_available", "Medians over every patient with that titer (the test on complete pairs), or everything on complete pairs.")
    median_scale: Literal["reciprocal", "log2"] = param("reciprocal", "Median [IQR] of the reciprocal titers, or of their log2 (back-transformed).")

    def check(self, path: str) -> None:
        if self.lod <= 0:
            raise SpecError(f"{path}.lod", f"expected a positive reciprocal limit of detection such as 10, got {self.lod!r}")


# --------------------------------------------------------------------------- display


def titer_text(value: float | None) -> str:
    """``1:N`` with N rounded half up, ``negative`` for 0, ``NA`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if value <= 0:
        return "negative"
    n = math.floor(value + 0.5)
    return f"1:{n}" if n >= 1 else "1:<1"


def median_display(row: Row) -> str:
    if row.estimate is None:
        return "NA"
    return f"{titer_text(row.estimate)} [{titer_text(row.low)}{DASH}{titer_text(row.high)}]"


def mean_display(row: Row) -> str:
    if row.estimate is None:
        return "NA"
    text = titer_text(row.estimate)
    if row.low is not None and row.high is not None:
        text += f" [95% CI {titer_text(row.low)}{DASH}{titer_text(row.high)}]"
    return text


# --------------------------------------------------------------------------- statistics


def titer_median_row(measure: str, values: pd.Series, scale: str, method: str, label: str) -> Row:
    """Median [IQR] of titer values (reciprocal units; 0 = negative) on the chosen scale.

    On the log2 scale a 0 is -inf. A quantile is a weighted combination of two order statistics, so
    it "touches" -inf when moving the -inf values changes it: the quartiles are computed twice, with
    -inf replaced by two different values below every finite one, and a quartile that differs is -inf.
    Estimates are back-transformed to reciprocal units (2**x, 0 for -inf).
    """
    values = values.dropna().astype(float)
    if scale == "reciprocal":
        row = median_row(measure, values, method, label=label)
    else:
        with np.errstate(divide="ignore"):
            logs = np.log2(values.to_numpy())
        finite = logs[np.isfinite(logs)]
        floor = float(finite.min()) if finite.size else 0.0
        first = median_row(measure, np.where(np.isinf(logs), floor - 1.0, logs), method, label=label)
        second = median_row(measure, np.where(np.isinf(logs), floor - 2.0, logs), method, label=label)

        def back(a: float | None, b: float | None) -> float | None:
            if a is None:
                return None
            return 0.0 if a != b else float(2.0**a)

        row = dataclasses.replace(
            first, estimate=back(first.estimate, second.estimate), low=back(first.low, second.low),
            high=back(first.high, second.high),
        )
    return dataclasses.replace(row, display=median_display(row))


def geometric_mean_row(measure: str, values: pd.Series, label: str) -> Row:
    """2**mean(log2 x) with the t-based 95% CI on the log2 scale, back-transformed (values > 0)."""
    logs = np.log2(values.dropna().astype(float).to_numpy())
    n = int(logs.size)
    if n == 0:
        row = Row(measure=measure, stat="geometric_mean", n=0, estimate=None, interval="95% CI", label=label)
    else:
        mean = float(logs.mean())
        low = high = None
        if n > 1:
            half = float(scipy_stats().t.ppf(0.975, n - 1)) * float(logs.std(ddof=1)) / math.sqrt(n)
            low, high = float(2.0 ** (mean - half)), float(2.0 ** (mean + half))
        row = Row(measure=measure, stat="geometric_mean", n=n, estimate=float(2.0**mean), low=low, high=high,
                  interval="95% CI", label=label, test="2**mean(log2 titer); 95% CI from the t distribution on log2")
    return dataclasses.replace(row, display=mean_display(row))


# --------------------------------------------------------------------------- per-patient titers


def pick_titers(cohort, params: TiterParams) -> tuple[pd.DataFrame, int]:
    """Per-patient pre and post titers (vectorised) and the number of same-day duplicates ignored."""
    patients = cohort.patients[["patient_id", "index_date", "followup_end"]]
    titers = cohort.table("titers")[["patient_id", "date", "titer", "titer_value", "titer_negative", LINE]]
    titers = titers.sort_values(["patient_id", "date", LINE], kind="stable")
    duplicate = titers.duplicated(["patient_id", "date"], keep="last")
    duplicates_per_patient = titers[duplicate].groupby("patient_id").size()
    titers = titers[~duplicate].merge(patients, on="patient_id", how="inner")
    window_start = titers["index_date"] - pd.Timedelta(days=params.pre_window_days)
    in_pre = (titers["date"] >= window_start) & (titers["date"] <= titers["index_date"])
    in_post = (titers["date"] > titers["index_date"]) & (titers["date"] <= titers["followup_end"])

    columns = ["patient_id", "date", "titer", "titer_value", "titer_negative", LINE]
    pre = titers.loc[in_pre, columns].drop_duplicates("patient_id", keep="last")  # sorted by date
    post = titers.loc[in_post, columns]
    if params.post_timepoint == "last":
        post = post.drop_duplicates("patient_id", keep="last")
    else:  # nadir: lowest reciprocal (negatives = 0 lowest), the earlier date on a tie
        post = post.sort_values(["patient_id", "titer_value", "date"], kind="stable").drop_duplicates("patient_id", keep="first")

    frame = patients.copy()
    for prefix, picked in (("pre", pre), ("post", post)):
        picked = picked.rename(columns={
            "date": f"{prefix}_date", "titer": f"{prefix}_titer", "titer_value": f"{prefix}_reciprocal",
            "titer_negative": f"{prefix}_negative", LINE: f"{prefix}_line",
        })
        frame = frame.merge(picked, on="patient_id", how="left")
        frame[f"{prefix}_line"] = frame[f"{prefix}_line"].astype("Int64")
        frame[f"{prefix}_negative"] = frame[f"{prefix}_negative"].astype("boolean")
    frame["pre_window_start"] = frame["index_date"] - pd.Timedelta(days=params.pre_window_days)
    frame["same_day_duplicates_ignored"] = frame["patient_id"].map(duplicates_per_patient).fillna(0).astype(int)
    return frame, int(duplicate.sum())


def analysis_values(reciprocal: pd.Series, negative: pd.Series, params: TiterParams) -> tuple[pd.Series, pd.Series]:
    """(value for medians, value for the paired test) of picked titers (NaN when none).

    The test value is the reciprocal titer with negatives at lod/2 (lod under ``lod``): never 0, so
    its log2 and fold changes are finite.
    """
    is_negative = negative.astype("boolean").fillna(False).astype(bool)
    substitute = {"zero_rank": 0.0, "lod_half": params.lod / 2, "lod": params.lod}[params.negative_value]
    value = reciprocal.where(~is_negative, substitute)
    test_negative = params.lod if params.negative_value == "lod" else params.lod / 2
    test_value = reciprocal.where(~is_negative, test_negative).astype(float)
    return value.astype(float), test_value.where(reciprocal.notna())


def log2_fold_change(pre_test_value: pd.Series, post_test_value: pd.Series) -> pd.Series:
    """log2(post / pre): one rounding, so equal fold changes tie exactly (480->120 and 40->10 are -2).

    log2(post) - log2(pre) rounds twice and can differ in the last bit between equal fold changes.
    """
    return np.log2(post_test_value.astype(float) / pre_test_value.astype(float))


# --------------------------------------------------------------------------- endpoint


class TiterReduction(Endpoint):
    name = "titer_reduction"
    title = "Antibody titers"
    description = "Median titer before vs after the index date, paired Wilcoxon on log2 titers, patients becoming negative."
    requires = ("titers",)
    Params = TiterParams
    headline = ("pre", "post", "paired_test", "became_negative")

    summary_params = ("population", "median_scale")

    def derive(self, cohort, params: TiterParams, ctx) -> pd.DataFrame:
        """One row per cohort patient: the picked pre and post titers and their analysis values."""
        frame, _ = pick_titers(cohort, params)
        frame["pre_value"], pre_test_value = analysis_values(frame["pre_reciprocal"], frame["pre_negative"], params)
        frame["post_value"], post_test_value = analysis_values(frame["post_reciprocal"], frame["post_negative"], params)
        frame["pre_log2"], frame["post_log2"] = np.log2(pre_test_value), np.log2(post_test_value)
        frame["log2_fold_change"] = log2_fold_change(pre_test_value, post_test_value)
        frame["pair"] = frame["pre_reciprocal"].notna() & frame["post_reciprocal"].notna()
        pre_negative = frame["pre_negative"].astype("boolean")
        post_negative = frame["post_negative"].astype("boolean")
        positive_before = frame["pair"] & ~pre_negative.fillna(True).astype(bool)
        frame["became_negative"] = (post_negative & ~pre_negative).where(positive_before).astype("boolean")
        frame[POSITIVE_BEFORE] = positive_before  # the became_negative denominator; not in the output
        return frame

    def summarise(self, per_patient: pd.DataFrame, params: TiterParams, ctx) -> EndpointResult:
        frame = per_patient.copy(deep=False)  # columns are added below
        has_pre, has_post = frame["pre_reciprocal"].notna(), frame["post_reciprocal"].notna()
        pair = frame["pair"]
        if params.population == "all_available":
            frame["in_pre_summary"], frame["in_post_summary"] = has_pre, has_post
        else:
            frame["in_pre_summary"], frame["in_post_summary"] = pair, pair
        positive_before = frame[POSITIVE_BEFORE]
        duplicates = int(frame["same_day_duplicates_ignored"].sum())

        pre_values = frame.loc[frame["in_pre_summary"], "pre_value"]
        post_values = frame.loc[frame["in_post_summary"], "post_value"]
        scale = "median [IQR]" if params.median_scale == "reciprocal" else "median [IQR] on log2, back-transformed"
        who = "complete pairs, " if params.population == "paired_complete" else ""
        post_word = "last" if params.post_timepoint == "last" else "nadir"
        rows = [
            titer_median_row("pre", pre_values, params.median_scale, ctx.quantile_method,
                             f"Titer before index, {scale} ({who}n = {len(pre_values)})"),
            titer_median_row("post", post_values, params.median_scale, ctx.quantile_method,
                             f"Titer after index ({post_word}), {scale} ({who}n = {len(post_values)})"),
        ]
        pairs = frame.loc[pair, "log2_fold_change"]  # not a copy of every column
        rows.append(signed_rank_row("paired_test", pairs, ctx.paired_test,
                                    label=f"Titer change (log2), p (n = {len(pairs)} pairs)"))
        n_positive = int(positive_before.sum())
        rows.append(proportion_row("became_negative", int(frame["became_negative"].fillna(False).sum()), n_positive,
                                   label=f"Became negative, n (%) of patients positive before with a post titer (n = {n_positive})"))
        if params.negative_value != "zero_rank":
            rows.append(geometric_mean_row("geometric_mean_pre", pre_values,
                                           f"Titer before index, geometric mean (95% CI) ({who}n = {len(pre_values)})"))
            rows.append(geometric_mean_row("geometric_mean_post", post_values,
                                           f"Titer after index ({post_word}), geometric mean (95% CI) ({who}n = {len(post_values)})"))

        negative_words = {
            "zero_rank": "0 (below every positive)", "lod_half": f"lod/2 = {params.lod / 2:g}", "lod": f"lod = {params.lod:g}",
        }[params.negative_value]
        test_negative = params.lod if params.negative_value == "lod" else params.lod / 2
        notes = [
            f"Titers as reciprocals (1:480 = 480); pre = last titer in [index - {params.pre_window_days} days, index] "
            f"(a titer on the index day is pre); post = {'last titer' if params.post_timepoint == 'last' else 'lowest titer (the earlier on a tie; negatives lowest)'} "
            "in (index, follow-up end].",
            f"Negative titers count as {negative_words}; medians [IQR] "
            + ("of the reciprocal values" if params.median_scale == "reciprocal" else "of log2 values (a 0 is -inf), back-transformed")
            + ", shown as 1:N with N rounded half up, 'negative' for 0; "
            + ("pre and post medians over every patient with that titer, the test on complete pairs."
               if params.population == "all_available" else "everything on complete pairs."),
            f"Paired test on log2(post / pre) of complete pairs (equal fold changes tie exactly), negatives at {test_negative:g}. "
            "Became negative: positive before and negative after, over patients positive before with a post titer.",
        ]
        if params.negative_value != "zero_rank":
            notes.append("Geometric mean titer = 2^mean(log2 titer), 95% CI from the t distribution on the log2 scale.")
        if duplicates:
            notes.append(f"{duplicates} same-day duplicate titer record(s) ignored: the last by CSV line of each patient and date is used.")

        frame = frame[[
            "patient_id", "index_date", "followup_end", "pre_window_start",
            "pre_date", "pre_titer", "pre_line", "pre_reciprocal", "pre_negative", "pre_value", "pre_log2",
            "post_date", "post_titer", "post_line", "post_reciprocal", "post_negative", "post_value", "post_log2", "log2_fold_change",
            "pair", "in_pre_summary", "in_post_summary", "became_negative", "same_day_duplicates_ignored",
        ]]
        partly = params.population == "all_available"
        reasons = pd.Series(pd.NA, index=frame.index, dtype="object")
        reasons[~has_pre & ~has_post] = "no titer in the pre or the post window"
        reasons[~has_pre & has_post] = "no titer in the pre window" + (" (not paired; still in the post median)" if partly else "")
        reasons[has_pre & ~has_post] = "no titer in the post window" + (" (not paired; still in the pre median)" if partly else "")
        excluded = excluded_by_reason(frame["patient_id"], reasons)
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, excluded=excluded)

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: TiterParams, ctx) -> list[Row]:
        """Between groups: the difference in the proportion becoming negative (its own denominator:
        positive before, with a post titer) and Mann-Whitney on log2(post / pre) of complete pairs."""
        from endpointkit.comparisons import labelled, mann_whitney_rows, proportion_difference_rows

        rows = labelled(proportion_difference_rows(per_patient["became_negative"], groups, levels),
                        "Became negative, difference in proportions (95% CI)", "became_negative_difference")
        pair = per_patient["pair"].to_numpy(dtype=bool)
        rows += labelled(mann_whitney_rows(per_patient.loc[pair, "log2_fold_change"], groups[pair], levels,
                                           quantile_method=ctx.quantile_method),
                         "Titer change (log2 fold), difference in medians (Mann-Whitney)", "log2_fold_change_mann_whitney")
        return rows


@hookimpl
def register_endpoints():
    return [TiterReduction]

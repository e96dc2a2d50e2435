"""``relapse_free``: patients without a relapse after the index date (crude, or Kaplan-Meier).

Definitions (docs/endpoints/relapse_free.md):

* post window = ``(index + post_lag_days, follow-up end]``; crude relapse-free = no relapse onset in it,
  a proportion over every patient of the endpoint with the exact Clopper-Pearson 95% CI;
* ``followup_months`` = median [IQR] of ``(follow-up end - index)`` days / (365.25/12);
* KM: time from ``index + lag`` to the first onset in the post window (event) or to follow-up end
  (censored), in months; landmark ``m`` months is evaluated at ``round(m x 365.25/12)`` days (as every
  duration in months), log-log 95% CI, n = patients whose time is >= the landmark.

Choices where the contract is silent:

* a patient whose post window is empty (follow-up end not after ``index + post_lag_days``) is excluded
  from this endpoint and counted, as in ``arr_change``; with ``post_lag_days: 0`` nobody is;
* ``followup_months`` is computed over the patients of the endpoint (from index, not index + lag);
* ``landmarks_months`` only applies under ``km`` and is ignored (with a note) under ``crude``;
* the class ``headline`` is ``("relapse_free",)``; :meth:`RelapseFree.headline_for` adds the first
  landmark under ``km``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from endpointkit import Duration, Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.errors import SpecError
from endpointkit.params import MONTH_DAYS
from endpointkit.stats import (
    KaplanMeier,
    km_landmark_row,
    km_median_row,
    median_row,
    proportion_row,
)


def check_landmarks(landmarks: list[float], path: str) -> None:
    """Landmarks must be positive numbers of months."""
    for i, m in enumerate(landmarks):
        if not m > 0:
            raise SpecError(f"{path}.landmarks_months[{i}]", f"expected a positive number of months, got {m!r}")


def unique_landmarks(landmarks: list[float]) -> list[float]:
    """The landmarks in the order given, each once."""
    return list(dict.fromkeys(float(m) for m in landmarks))


def landmark_label(m: float) -> str:
    """``12.0`` -> ``12``, ``1.5`` -> ``1.5`` (integer months where integral)."""
    return f"{m:g}"


def months_words(m: float) -> str:
    """``1 month``, ``12 months``."""
    return f"{landmark_label(m)} month{'' if m == 1 else 's'}"


def landmark_months(m: float) -> float:
    """The KM time (in months) at which landmark ``m`` is read: ``round(m x 365.25/12)`` days."""
    return Duration(m, "months").days / MONTH_DAYS


def landmark_rows(prefix: str, km: KaplanMeier, landmarks: list[float], words: str) -> list:
    """One ``<prefix>_<m>m`` KM survival row per landmark (unique, in the order given)."""
    return [
        km_landmark_row(f"{prefix}_{landmark_label(m)}m", km, landmark_months(m), label=f"{words} at {months_words(m)}, KM (95% CI)")
        for m in unique_landmarks(landmarks)
    ]


def fit_km(times: pd.Series, events: pd.Series) -> KaplanMeier:
    """KaplanMeier.fit, without SciPy's notice that the log-log CI is undefined where S(t) = 0."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The confidence interval is undefined", category=RuntimeWarning)
        return KaplanMeier.fit(times.to_numpy(dtype=float), events.to_numpy(dtype=bool))


def survival_comparisons(times: pd.Series, events: pd.Series, groups: pd.Series, levels: list[str],
                         landmarks: list[float], words: str, prefix: str) -> list[Row]:
    """Log-rank test, Cox hazard ratio and the difference in KM survival at each landmark (read at
    the same time as the endpoint's own landmark rows), between groups."""
    from endpointkit.comparisons import (
        hazard_ratio_rows,
        km_difference_rows,
        labelled,
        logrank_rows,
    )

    time, event = times.to_numpy(dtype=float), events.astype(bool).to_numpy(dtype=float)
    rows = labelled(logrank_rows(time, event, groups, levels), f"{words}, log-rank chi-square")
    rows += labelled(hazard_ratio_rows(time, event, groups, levels), f"{words}, hazard ratio (Cox, 95% CI)")
    for m in unique_landmarks(landmarks):
        rows += labelled(km_difference_rows(time, event, groups, levels, landmark_months(m)),
                         f"{prefix} at {months_words(m)}, KM difference (95% CI)", f"km_difference_{landmark_label(m)}m")
    return rows


@dataclass(frozen=True)
class RelapseFreeParams:
    method: Literal["crude", "km"] = param("crude", "crude: no relapse in the post window (proportion, exact CI); km: Kaplan-Meier of time to first relapse, censored at follow-up end.")
    landmarks_months: list[float] = param([], "KM only: months after index + lag at which to report relapse-free survival with its 95% CI, e.g. [12, 24].")
    post_lag_days: int = param(0, "Days after index left out of the post window: relapses in (index, index + lag] do not count and KM time starts at index + lag.")

    def check(self, path: str) -> None:
        check_landmarks(self.landmarks_months, path)


PER_PATIENT = [
    "patient_id", "index_date", "post_start", "followup_end", "followup_months", "post_days", "post_relapses",
    "first_relapse_date", "relapse_free", "km_time_months", "km_event", "included", "exclusion_reason",
]


def compute_relapse_free(cohort, params: RelapseFreeParams) -> pd.DataFrame:
    """Per-patient post window, first relapse in it, crude flag and KM time/event (vectorised)."""
    patients = cohort.patients
    index = patients["index_date"]
    frame = pd.DataFrame({
        "patient_id": patients["patient_id"],
        "index_date": index,
        "followup_end": patients["followup_end"],
        "followup_months": (patients["followup_end"] - index).dt.days / MONTH_DAYS,
        "post_start": index + pd.Timedelta(days=params.post_lag_days),
    })
    frame["post_days"] = (frame["followup_end"] - frame["post_start"]).dt.days
    relapses = cohort.table("relapses")
    row = cohort.patient_rows(relapses)  # each relapse's patient, as a row of `patients`
    known = row >= 0
    onset, row = relapses["onset_date"].to_numpy(dtype="datetime64[ns]")[known], row[known]
    post_start = frame["post_start"].to_numpy(dtype="datetime64[ns]")[row]
    end = frame["followup_end"].to_numpy(dtype="datetime64[ns]")[row]
    in_post = (onset > post_start) & (onset <= end)  # NaT compares False
    frame["post_relapses"] = np.bincount(row[in_post], minlength=len(frame)).astype(int)
    first = np.full(len(frame), np.iinfo(np.int64).max)
    np.minimum.at(first, row[in_post], onset[in_post].view(np.int64))
    frame["first_relapse_date"] = np.where(first == np.iinfo(np.int64).max, np.datetime64("NaT", "ns"),
                                           first.view("datetime64[ns]"))

    included = frame["post_days"] > 0
    frame["included"] = included
    frame["exclusion_reason"] = pd.Series(pd.NA, index=frame.index, dtype="object")
    frame.loc[~included, "exclusion_reason"] = f"no post window: follow-up end not after index + {params.post_lag_days} days"
    frame["relapse_free"] = (frame["post_relapses"] == 0).astype("boolean").where(included)
    km_end = frame["first_relapse_date"].fillna(frame["followup_end"])
    frame["km_time_months"] = ((km_end - frame["post_start"]).dt.days / MONTH_DAYS).where(included)
    frame["km_event"] = frame["first_relapse_date"].notna().astype("boolean").where(included)
    return frame[PER_PATIENT]


class RelapseFree(Endpoint):
    name = "relapse_free"
    title = "Relapse-free after index"
    description = "Patients without relapse after index: crude proportion with exact CI, or Kaplan-Meier with landmarks and median."
    requires = ("relapses",)
    Params = RelapseFreeParams
    headline = ("relapse_free",)
    summary_params = ("method", "landmarks_months")

    @classmethod
    def headline_for(cls, params: RelapseFreeParams) -> tuple[str, ...]:
        """``relapse_free``, plus the first landmark under ``km``."""
        landmarks = unique_landmarks(params.landmarks_months)
        if params.method == "km" and landmarks:
            return (*cls.headline, f"relapse_free_at_{landmark_label(landmarks[0])}m")
        return cls.headline

    def derive(self, cohort, params: RelapseFreeParams, ctx) -> pd.DataFrame:
        """Each patient's post window, first relapse in it, crude flag and KM time/event."""
        return compute_relapse_free(cohort, params)

    def summarise(self, frame: pd.DataFrame, params: RelapseFreeParams, ctx) -> EndpointResult:
        """The crude proportion, follow-up, the KM fit and its landmarks, from the per-patient frame."""
        # the summary's columns of the analysed patients (a copy of the whole frame would double it)
        used = frame.loc[frame["included"], ["relapse_free", "followup_months", "km_time_months", "km_event"]]
        n = len(used)
        free = int(used["relapse_free"].sum())
        window = f"(index + {params.post_lag_days} days, follow-up end]"
        rows = [
            proportion_row("relapse_free", free, n, label="Relapse-free after index, n (%)"),
            median_row("followup_months", used["followup_months"], ctx.quantile_method,
                       label="Follow-up, months, median [IQR]", unit="months"),
        ]
        notes = [
            f"Relapse-free = no relapse onset in the post window {window}, over all {n} patients of the "
            f"endpoint (exact Clopper-Pearson 95% CI). Follow-up = follow-up end - index in months "
            f"(days / {MONTH_DAYS:g}), median [IQR] with quantile method {ctx.quantile_method}."
        ]
        landmarks = unique_landmarks(params.landmarks_months)
        km = fit_km(used["km_time_months"], used["km_event"])  # drawn by --figures under either method
        if params.method == "km":
            rows += landmark_rows("relapse_free_at", km, landmarks, "Relapse-free")
            rows.append(km_median_row("median_time_to_relapse_months", km,
                                      label="Time to first relapse, months, KM median (95% CI)"))
            notes.append(
                "Kaplan-Meier (scipy.stats.ecdf) of time from index + lag to the first relapse onset in the "
                "post window, censored at follow-up end; 95% CI log-log (Greenwood); a landmark of m months is "
                "read at round(m x 365.25/12) days, with n = patients whose time is at least that long. "
                "Median = first time S(t) <= 0.5, its CI = first times the lower/upper band reach <= 0.5 "
                "(blank where never reached)."
            )
        elif landmarks:
            notes.append("landmarks_months apply to method km only and were not used (method crude).")
        excluded_ids = frame.loc[~frame["included"], "patient_id"].tolist()
        excluded = {frame.loc[~frame["included"], "exclusion_reason"].iloc[0]: excluded_ids} if excluded_ids else {}
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, excluded=excluded,
                              curves={"Relapse-free survival": km})

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: RelapseFreeParams,
                ctx) -> list[Row]:
        """Time to first relapse between groups (analysed patients): log-rank, Cox HR, and under
        ``km`` the difference in relapse-free survival at each landmark."""
        used = per_patient["included"].to_numpy(dtype=bool)
        frame = per_patient[used]
        landmarks = params.landmarks_months if params.method == "km" else []
        return survival_comparisons(frame["km_time_months"], frame["km_event"], groups[used], levels, landmarks,
                                    "Time to first relapse", "Relapse-free")


@hookimpl
def register_endpoints():
    return [RelapseFree]

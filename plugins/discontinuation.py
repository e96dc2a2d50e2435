"""``discontinuation``: stopping the index treatment (descriptive, or Kaplan-Meier persistence).

Definitions (docs/endpoints/discontinuation.md):

* the index course *ended* when its ``end_date`` is on or before follow-up end;
* *stopped* (= discontinued) = ended and, when ``reasons`` is given, ``stop_reason`` matches one of them
  case-insensitively (both sides stripped of surrounding whitespace);
* time to stop = ``(end_date - index)`` days / (365.25/12), in months;
* ``discontinued`` is a proportion over every patient of the endpoint; ``time_to_discontinuation_months``
  the median [IQR] among the stoppers (``statistics.quantile_method``).

Choices where the contract is silent:

* ``reason:<value>`` rows: one per distinct ``stop_reason`` among *all* patients whose course ended
  (whatever ``reasons`` says, so the reasons block always adds up to all stops), the value stripped and
  lower-cased, a blank reason as ``reason:unspecified``; each a proportion over every patient; ordered by
  count (most frequent first), then by name;
* KM persistence (``km``): event = stopped for a matching reason at its time to stop; everyone else is
  censored at follow-up end, as the contract says, including a patient whose course ended for another
  reason (under the default ``treatment_end`` rule that end *is* their follow-up end); landmark ``m`` months is read at ``round(m x 365.25/12)`` days, log-log 95% CI,
  n = patients whose time is >= the landmark;
* ``landmarks_months`` only applies under ``km`` and is ignored (with a note) under ``descriptive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.params import MONTH_DAYS
from endpointkit.plugins.relapse_free import (
    check_landmarks,
    fit_km,
    landmark_rows,
    survival_comparisons,
    unique_landmarks,
)
from endpointkit.stats import median_row, proportion_row

UNSPECIFIED = "unspecified"
PER_PATIENT = [
    "patient_id", "index_date", "index_end_date", "followup_end", "stop_reason", "reason_value", "course_ended",
    "reason_matches", "discontinued", "time_to_discontinuation_months", "km_time_months", "km_event",
]


@dataclass(frozen=True)
class DiscontinuationParams:
    reasons: list[str] = param([], "Stop reasons that count as discontinuation, matched case-insensitively against stop_reason; [] = any reason.")
    method: Literal["descriptive", "km"] = param("descriptive", "descriptive: proportion stopped and median [IQR] time among stoppers; km: adds Kaplan-Meier persistence at landmarks_months.")
    landmarks_months: list[float] = param([], "KM only: months after index at which to report persistence (still on treatment) with its 95% CI, e.g. [12, 36].")

    def check(self, path: str) -> None:
        check_landmarks(self.landmarks_months, path)


def normalise_reason(values: pd.Series) -> pd.Series:
    """Stripped, lower-cased stop reasons; blank or missing -> ``unspecified``."""
    text = values.astype("string").str.strip().str.lower()
    return text.mask(text.isna() | (text == ""), UNSPECIFIED).astype(object)


def compute_discontinuation(cohort, params: DiscontinuationParams) -> pd.DataFrame:
    """Per-patient course end, reason, stop flag, time to stop and KM time/event (vectorised)."""
    patients = cohort.patients
    index, end, fu_end = patients["index_date"], patients["index_end_date"], patients["followup_end"]
    frame = pd.DataFrame({
        "patient_id": patients["patient_id"], "index_date": index, "index_end_date": end,
        "followup_end": fu_end, "stop_reason": patients["index_stop_reason"],
    })
    ended = (end.notna() & (end <= fu_end)).to_numpy()
    reason = normalise_reason(frame["stop_reason"])
    frame["reason_value"] = reason.where(ended)
    frame["course_ended"] = ended
    wanted = {r.strip().lower() for r in params.reasons}
    matches = reason.isin(wanted).to_numpy() if wanted else np.ones(len(frame), dtype=bool)
    frame["reason_matches"] = matches
    stopped = ended & matches
    frame["discontinued"] = stopped
    stop_months = (end - index).dt.days / MONTH_DAYS
    frame["time_to_discontinuation_months"] = stop_months.where(stopped)
    # KM: a matching stop is the event; everyone else is censored at follow-up end (docs/endpoints/discontinuation.md)
    frame["km_time_months"] = stop_months.where(stopped, (fu_end - index).dt.days / MONTH_DAYS)
    frame["km_event"] = stopped
    return frame[PER_PATIENT]


class Discontinuation(Endpoint):
    name = "discontinuation"
    title = "Discontinuation of the index treatment"
    description = "Patients who stopped the index treatment (for given reasons), time to stop, reasons, KM persistence."
    Params = DiscontinuationParams
    headline = ("discontinued", "time_to_discontinuation_months")
    summary_params = ("method", "landmarks_months")

    def derive(self, cohort, params: DiscontinuationParams, ctx) -> pd.DataFrame:
        """Each patient's course end, stop reason, stop flag, time to stop and KM time/event."""
        return compute_discontinuation(cohort, params)

    def summarise(self, frame: pd.DataFrame, params: DiscontinuationParams, ctx) -> EndpointResult:
        """Proportion stopped, time to stop, the reasons block and KM persistence, over every patient of the frame."""
        n = len(frame)
        which = "for " + " or ".join(r.strip().lower() for r in params.reasons) if params.reasons else "for any reason"
        rows = [
            proportion_row("discontinued", int(frame["discontinued"].sum()), n, label=f"Discontinued ({which}), n (%)"),
            median_row("time_to_discontinuation_months", frame["time_to_discontinuation_months"], ctx.quantile_method,
                       label="Time to discontinuation, months, median [IQR]", unit="months"),
        ]
        counts = frame["reason_value"].dropna().value_counts()
        for value, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            rows.append(proportion_row(f"reason:{value}", int(count), n, label=f"Stop reason: {value}, n (%)"))
        notes = [
            f"Discontinued = the index course ended on or before follow-up end {which} (stop_reason matched "
            f"case-insensitively), over all {n} patients; time to discontinuation = end date - index in months "
            f"(days / {MONTH_DAYS:g}), median [IQR] among those who stopped, quantile method {ctx.quantile_method}. "
            "Stop reasons: every course that ended on or before follow-up end, whatever its reason, "
            f"n (%) of all patients (blank = {UNSPECIFIED})."
        ]
        landmarks = unique_landmarks(params.landmarks_months)
        km = fit_km(frame["km_time_months"], frame["km_event"])  # drawn by --figures under either method
        if params.method == "km":
            rows += landmark_rows("persistent_at", km, landmarks, "Persistent")
            notes.append(
                f"Persistence: Kaplan-Meier (scipy.stats.ecdf) of time from index to discontinuation ({which}); "
                "everyone else censored at follow-up end; "
                "95% CI log-log (Greenwood); a landmark of m months is read at round(m x 365.25/12) days, "
                "n = patients whose time is at least that long."
            )
        elif landmarks:
            notes.append("landmarks_months apply to method km only and were not used (method descriptive).")
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, curves={"Persistence on treatment": km})

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: DiscontinuationParams,
                ctx) -> list[Row]:
        """Time to discontinuation between groups (every patient): log-rank, Cox HR, and under
        ``km`` the difference in persistence at each landmark."""
        landmarks = params.landmarks_months if params.method == "km" else []
        return survival_comparisons(per_patient["km_time_months"], per_patient["km_event"], groups, levels, landmarks,
                                    "Time to discontinuation", "Persistent")


@hookimpl
def register_endpoints():
    return [Discontinuation]

"""``safety``: treatment-emergent adverse events.

Definitions (docs/endpoints/safety.md) and the choices made where the contract is silent:

* An event is treatment-emergent when its onset lies in ``[index, follow-up end + te_window_days]``
  (both ends included). Events outside the window are not counted; their number is stated in the notes
  and per patient (``events_outside_window``). Every treatment-emergent event counts, whatever its
  ``related`` or ``treatment`` column says (those columns are not used).
* Severe per ``severe``: ``grade >= 3`` and/or ``serious``; a missing grade or serious flag does not
  meet that part of the rule. ``serious_ae`` always uses the serious flag alone.
* Led to discontinuation: ``action`` equals ``discontinued`` (case-insensitive, surrounding spaces
  stripped). ``severe_ae_led_to_discontinuation`` needs one event that is both severe and led to
  discontinuation (not a severe event and, separately, another event that led to discontinuation).
* Proportions are over every patient of the endpoint (patients without adverse-event records count as
  having none); nobody is excluded.
* ``per_100_patient_years``: person-years = sum of (follow-up end - index) / year_days. The exposure does
  NOT include ``te_window_days`` (the window only decides which events are treatment-emergent), so the
  numerator counts events up to follow-up end + window over follow-up time only.
* ``by_term``: terms match case-insensitively after stripping and show the first spelling seen in the
  adverse-events file (CSV line order). For each term with a treatment-emergent event: ``term:<term>``
  (patients with the term, each counted once) and ``term:<term>:grade_ge3`` (patients whose worst grade
  for that term is >= 3; a missing grade is not >= 3), both n (%) of all patients; terms are ordered by
  descending number of patients, then alphabetically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from endpointkit import Endpoint, EndpointResult, hookimpl, param
from endpointkit.stats import count_row, poisson_rate_row, proportion_row

SEVERE_WORDS = {
    "grade_ge3_or_serious": "grade >= 3 or serious",
    "grade_ge3": "grade >= 3",
    "serious": "serious",
}
FLAGS = ("any_ae", "severe_ae", "serious_ae", "ae_led_to_discontinuation", "severe_ae_led_to_discontinuation")


@dataclass(frozen=True)
class SafetyParams:
    te_window_days: int = param(30, "Days after follow-up end during which an adverse event still counts as treatment-emergent.")
    severe: Literal["grade_ge3_or_serious", "grade_ge3", "serious"] = param(
        "grade_ge3_or_serious", "Severe adverse event: grade >= 3 or serious, grade >= 3 only, or serious only.")
    by_term: bool = param(False, "Add one row per adverse-event term (patients with the term, and with the term at worst grade >= 3).")
    denominator: Literal["patients", "per_100_patient_years"] = param(
        "patients", "patients: proportions of patients only; per_100_patient_years: also events per 100 patient-years of follow-up.")


def classify_events(cohort, params: SafetyParams) -> pd.DataFrame:
    """Every adverse event of the analysed patients with its window and severity flags."""
    patients = cohort.patients[["patient_id", "index_date", "followup_end"]]
    ae = cohort.table("adverse_events").merge(patients, on="patient_id", how="inner")
    te_end = ae["followup_end"] + pd.Timedelta(days=params.te_window_days)
    ae["before_index"] = ae["onset_date"] < ae["index_date"]
    ae["after_window"] = ae["onset_date"] > te_end
    ae["treatment_emergent"] = ~(ae["before_index"] | ae["after_window"])
    grade_ge3 = ae["grade"].astype(float).ge(3)
    serious = ae["serious"].astype("boolean").fillna(False).astype(bool)
    if params.severe == "grade_ge3_or_serious":
        severe = grade_ge3 | serious
    elif params.severe == "grade_ge3":
        severe = grade_ge3
    else:
        severe = serious
    action = ae["action"].astype("string").str.strip().str.casefold()
    ae["grade_ge3"] = grade_ge3
    ae["serious_flag"] = serious
    ae["severe"] = severe
    ae["discontinued"] = action.eq("discontinued").fillna(False).astype(bool)
    ae["severe_discontinued"] = ae["severe"] & ae["discontinued"]
    ae["term_key"] = ae["term"].astype(str).str.strip().str.casefold()
    return ae


def per_patient_frame(cohort, events: pd.DataFrame, params: SafetyParams, year_days: float) -> pd.DataFrame:
    """One row per patient: event counts, flags, worst grade and exposure (vectorised groupby)."""
    patients = cohort.patients
    pid = patients["patient_id"]
    te = events[events["treatment_emergent"]]
    by_patient = te.groupby("patient_id").agg(
        te_events=("treatment_emergent", "size"),
        severe_events=("severe", "sum"),
        serious_events=("serious_flag", "sum"),
        severe_ae=("severe", "any"),
        serious_ae=("serious_flag", "any"),
        ae_led_to_discontinuation=("discontinued", "any"),
        severe_ae_led_to_discontinuation=("severe_discontinued", "any"),
        worst_grade=("grade", "max"),
    )
    by_patient = by_patient.reindex(pid)  # one alignment on patient_id (missing = no TE event)
    outside = events[~events["treatment_emergent"]].groupby("patient_id").size().reindex(pid)
    frame = pd.DataFrame({
        "patient_id": pid,
        "index_date": patients["index_date"],
        "followup_end": patients["followup_end"],
        "te_window_end": patients["followup_end"] + pd.Timedelta(days=params.te_window_days),
        "exposure_years": (patients["followup_end"] - patients["index_date"]).dt.days / year_days,
    })
    for column in ("te_events", "severe_events", "serious_events"):
        frame[column] = by_patient[column].fillna(0).to_numpy(dtype=int)
    frame["events_outside_window"] = outside.fillna(0).to_numpy(dtype=int)
    frame["any_ae"] = frame["te_events"] > 0
    for column in FLAGS[1:]:
        frame[column] = by_patient[column].eq(True).to_numpy(dtype=bool)
    frame["worst_grade"] = by_patient["worst_grade"].to_numpy(dtype=float)
    return frame


def term_rows(events: pd.DataFrame, frame: pd.DataFrame, n: int) -> tuple[list, pd.DataFrame]:
    """``term:<term>`` and ``term:<term>:grade_ge3`` rows plus per-patient term columns."""
    te = events[events["treatment_emergent"]]
    if te.empty:
        return [], frame
    first_seen = events.sort_values("_line", kind="stable").drop_duplicates("term_key")
    spelling = dict(zip(first_seen["term_key"], first_seen["term"].astype(str).str.strip()))
    per_term = te.groupby(["patient_id", "term_key"]).agg(events=("term_key", "size"), worst_grade=("grade", "max"))
    patients_with = per_term.groupby("term_key").size()
    patients_ge3 = per_term[per_term["worst_grade"] >= 3].groupby("term_key").size()
    summary = pd.DataFrame({"patients": patients_with, "ge3": patients_ge3}).fillna(0).astype(int)
    summary["name"] = [spelling[k] for k in summary.index]
    summary["sort_name"] = summary["name"].str.casefold()
    summary = summary.sort_values(["patients", "sort_name"], ascending=[False, True], kind="stable")
    # one alignment on patient_id for all terms (patients x terms), then plain column picks
    counts = per_term["events"].unstack("term_key").reindex(frame["patient_id"]).fillna(0).astype(int)
    grades = per_term["worst_grade"].unstack("term_key").reindex(frame["patient_id"])
    columns = {}
    rows = []
    for key, info in summary.iterrows():  # one loop step per term, not per patient
        name = info["name"]
        rows.append(proportion_row(f"term:{name}", info["patients"], n, label=f"{name}, n (%)"))
        rows.append(proportion_row(f"term:{name}:grade_ge3", info["ge3"], n, label=f"{name}, worst grade >= 3, n (%)"))
        columns[f"term:{name}:events"] = counts[key].to_numpy()
        columns[f"term:{name}:worst_grade"] = grades[key].to_numpy(dtype=float)
    return rows, pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)


class Safety(Endpoint):
    name = "safety"
    title = "Adverse events"
    description = "Treatment-emergent adverse events: any, severe, serious, leading to discontinuation; events, rates, terms."
    requires = ("adverse_events",)
    Params = SafetyParams
    headline = ("any_ae", "severe_ae", "severe_ae_led_to_discontinuation")

    def compute(self, cohort, params: SafetyParams, ctx) -> EndpointResult:
        def derive():
            events = classify_events(cohort, params)
            return events, per_patient_frame(cohort, events, params, ctx.year_days)

        events, frame = cohort.memo(ctx, ("safety", repr(params), ctx.year_days), derive)  # shared by variants
        frame = frame.copy(deep=False)
        n = len(frame)
        severe_words = SEVERE_WORDS[params.severe]
        labels = {
            "any_ae": "Any adverse event, n (%)",
            "severe_ae": f"Severe adverse event ({severe_words}), n (%)",
            "serious_ae": "Serious adverse event, n (%)",
            "ae_led_to_discontinuation": "Adverse event leading to discontinuation, n (%)",
            "severe_ae_led_to_discontinuation": "Severe adverse event leading to discontinuation, n (%)",
        }
        rows = [proportion_row(flag, int(frame[flag].sum()), n, label=labels[flag]) for flag in FLAGS]
        total_events = int(frame["te_events"].sum())
        rows.append(count_row("events", total_events, n, label="Treatment-emergent adverse events, n"))
        notes = [
            f"Treatment-emergent adverse event: onset in [index, follow-up end + {params.te_window_days} days]; "
            f"severe = {severe_words} (a missing grade or serious flag does not qualify); led to discontinuation = "
            "action 'discontinued' (case-insensitive), and for severe ones the same event must be severe; "
            f"n (%) of all {n} patients; the related and treatment columns are not used.",
        ]
        outside = events[~events["treatment_emergent"]]
        if not outside.empty:
            notes.append(
                f"{len(outside)} adverse event(s) outside the treatment-emergent window not counted "
                f"({int(outside['before_index'].sum())} before index, {int(outside['after_window'].sum())} "
                f"after follow-up end + {params.te_window_days} days)."
            )
        if params.denominator == "per_100_patient_years":
            person_years = float(frame["exposure_years"].sum())
            rows.append(poisson_rate_row("events_per_100py", total_events, person_years, n, per=100,
                                         label="Adverse events per 100 patient-years (95% CI)", unit="per 100 patient-years"))
            rows.append(poisson_rate_row("severe_events_per_100py", int(frame["severe_events"].sum()), person_years, n, per=100,
                                         label="Severe adverse events per 100 patient-years (95% CI)", unit="per 100 patient-years"))
            notes.append(
                f"Events per 100 patient-years = 100 x events / person-years, exact Poisson 95% CI; person-years = "
                f"sum of (follow-up end - index) / {ctx.year_days:g} = {person_years:.2f}, without the "
                f"{params.te_window_days}-day treatment-emergent window."
            )
        if params.by_term:
            extra, frame = term_rows(events, frame, n)
            rows.extend(extra)
            notes.append(
                "By term: terms matched case-insensitively (first spelling shown); patients with the term and "
                "patients whose worst grade for the term is >= 3, each counted once per term, n (%) of all patients."
            )
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, excluded={})


@hookimpl
def register_endpoints():
    return [Safety]

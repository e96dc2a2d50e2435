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

import numpy as np
import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.stats import count_row, poisson_rate_row, proportion_row

SEVERE_WORDS = {
    "grade_ge3_or_serious": "grade >= 3 or serious",
    "grade_ge3": "grade >= 3",
    "serious": "serious",
}
# helper columns of the derived frame (what the summary needs beyond the per-patient output), dropped by summarise
HELPER = "__safety:"
BEFORE_INDEX, AFTER_WINDOW = HELPER + "events_before_index", HELPER + "events_after_window"
TERM_EVENTS, TERM_GRADE = HELPER + "term_events:", HELPER + "term_worst_grade:"
TERM_LINE, TERM_SPELLING = HELPER + "term_first_line:", HELPER + "term_first_spelling:"
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


def term_columns(cohort, events: pd.DataFrame) -> pd.DataFrame:
    """What the by-term rows need, per patient and term (by its key), from the patient's own records:
    treatment-emergent events and their worst grade, and the CSV line and spelling of the patient's
    first record of the term (in or out of the window; the earliest line of all patients names it)."""
    ids = cohort.patients["patient_id"]
    columns: dict[str, np.ndarray] = {}
    te = events[events["treatment_emergent"]]
    if not te.empty:
        per_term = te.groupby(["patient_id", "term_key"]).agg(events=("term_key", "size"), worst_grade=("grade", "max"))
        # one alignment on patient_id for all terms (patients x terms), then plain column picks
        counts = per_term["events"].unstack("term_key").reindex(ids).fillna(0).astype(int)
        grades = per_term["worst_grade"].unstack("term_key").reindex(ids)
        for key in counts.columns:  # one loop step per term, not per patient
            columns[TERM_EVENTS + key] = counts[key].to_numpy()
            columns[TERM_GRADE + key] = grades[key].to_numpy(dtype=float)
    if not events.empty:
        first = events.sort_values("_line", kind="stable").drop_duplicates(["patient_id", "term_key"])
        first = first.assign(spelling=first["term"].astype(str).str.strip())
        lines = first.pivot(index="patient_id", columns="term_key", values="_line").reindex(ids)
        spellings = first.pivot(index="patient_id", columns="term_key", values="spelling").reindex(ids)
        for key in lines.columns:
            columns[TERM_LINE + key] = lines[key].to_numpy(dtype=float)
            columns[TERM_SPELLING + key] = spellings[key].to_numpy(dtype=object)
    return pd.DataFrame(columns, index=ids.index)


def term_rows(frame: pd.DataFrame, n: int) -> tuple[list, pd.DataFrame]:
    """``term:<term>`` and ``term:<term>:grade_ge3`` rows and the per-patient term columns, from the
    columns of :func:`term_columns` of every patient (a patient without a term has none: blank)."""
    keys = sorted(c[len(TERM_EVENTS):] for c in frame.columns if c.startswith(TERM_EVENTS))
    if not keys:
        return [], pd.DataFrame(index=frame.index)
    counts = {key: frame[TERM_EVENTS + key].fillna(0).astype(int) for key in keys}
    grades = {key: frame[TERM_GRADE + key].astype(float) for key in keys}
    summary = pd.DataFrame({
        "patients": pd.Series({key: int((counts[key] > 0).sum()) for key in keys}, dtype=int),
        "ge3": pd.Series({key: int((grades[key] >= 3).sum()) for key in keys}, dtype=int),
    }).sort_index()
    summary["name"] = [_first_spelling(frame, key) for key in summary.index]
    summary["sort_name"] = summary["name"].str.casefold()
    summary = summary.sort_values(["patients", "sort_name"], ascending=[False, True], kind="stable")
    columns = {}
    rows = []
    for key, info in summary.iterrows():  # one loop step per term, not per patient
        name = info["name"]
        rows.append(proportion_row(f"term:{name}", info["patients"], n, label=f"{name}, n (%)"))
        rows.append(proportion_row(f"term:{name}:grade_ge3", info["ge3"], n, label=f"{name}, worst grade >= 3, n (%)"))
        columns[f"term:{name}:events"] = counts[key].to_numpy()
        columns[f"term:{name}:worst_grade"] = grades[key].to_numpy(dtype=float)
    return rows, pd.DataFrame(columns, index=frame.index)


def _first_spelling(frame: pd.DataFrame, key: str) -> str:
    """The term as first spelled in the adverse-events file (earliest CSV line of any patient)."""
    spelled = frame[TERM_SPELLING + key].notna()
    first = frame.loc[spelled, TERM_LINE + key].sort_values(kind="stable").index[0]
    return frame.at[first, TERM_SPELLING + key]


class Safety(Endpoint):
    name = "safety"
    title = "Adverse events"
    description = "Treatment-emergent adverse events: any, severe, serious, leading to discontinuation; events, rates, terms."
    requires = ("adverse_events",)
    Params = SafetyParams
    headline = ("any_ae", "severe_ae", "severe_ae_led_to_discontinuation")
    summary_params = ("denominator",)

    def derive(self, cohort, params: SafetyParams, ctx) -> pd.DataFrame:
        """Each patient's event counts, flags, worst grade and exposure; the events outside the window
        before index and after it, and (``by_term``) the term columns, as helper columns."""
        events = classify_events(cohort, params)
        frame = per_patient_frame(cohort, events, params, ctx.year_days)
        outside = events[~events["treatment_emergent"]]
        rows = cohort.patient_rows(outside)
        frame[BEFORE_INDEX] = np.bincount(rows[outside["before_index"].to_numpy(dtype=bool)], minlength=len(frame))
        frame[AFTER_WINDOW] = np.bincount(rows[outside["after_window"].to_numpy(dtype=bool)], minlength=len(frame))
        if params.by_term:
            frame = pd.concat([frame, term_columns(cohort, events)], axis=1)
        return frame

    def summarise(self, frame: pd.DataFrame, params: SafetyParams, ctx) -> EndpointResult:
        """Proportions over every patient of the frame, event counts and rates, the by-term rows."""
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
        outside = int(frame["events_outside_window"].sum())
        if outside:
            notes.append(
                f"{outside} adverse event(s) outside the treatment-emergent window not counted "
                f"({int(frame[BEFORE_INDEX].sum())} before index, {int(frame[AFTER_WINDOW].sum())} "
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
        per_patient = frame.drop(columns=[c for c in frame.columns if c.startswith(HELPER)])
        if params.by_term:
            extra, columns = term_rows(frame, n)
            rows.extend(extra)
            if len(columns.columns):
                per_patient = pd.concat([per_patient, columns], axis=1)
            notes.append(
                "By term: terms matched case-insensitively (first spelling shown); patients with the term and "
                "patients whose worst grade for the term is >= 3, each counted once per term, n (%) of all patients."
            )
        return EndpointResult(rows=rows, per_patient=per_patient, notes=notes, excluded={})

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: SafetyParams, ctx) -> list[Row]:
        """Between groups, over every patient: differences in the headline proportions (any, severe,
        severe leading to discontinuation), Newcombe CI."""
        from endpointkit.comparisons import labelled, proportion_difference_rows

        words = {"any_ae": "Any adverse event", "severe_ae": f"Severe adverse event ({SEVERE_WORDS[params.severe]})",
                 "severe_ae_led_to_discontinuation": "Severe adverse event leading to discontinuation"}
        rows = []
        for flag in self.headline:
            rows += labelled(proportion_difference_rows(per_patient[flag].astype(bool), groups, levels),
                             f"{words[flag]}, difference in proportions (95% CI)", f"{flag}_difference")
        return rows


@hookimpl
def register_endpoints():
    return [Safety]

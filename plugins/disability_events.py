"""``disability_events``: confirmed disability worsening (CDW) and improvement (CDI), PIRA and RAW, over time.

Each patient's EDSS visits run from the baseline score that ``edss_progression`` picks (the same
``baseline_score`` and ``baseline_window_days`` rules) to follow-up end; relapses are the cohort's
cleaned relapses. The confirmed-event engine (``disability_engine``) scans them the way pymsprog
does. Two steps, so that the per-patient part can run on any subset of patients:

* :func:`derive_events`: one patient's visits and relapses -> that patient's rows (one per event, or
  one row with ``event_number`` 0 for a patient without event or excluded);
* :func:`summarise_events`: the rows -> proportions, Kaplan-Meier rows and event rates.

Pinned readings (also in the result's notes and the README):

* ``time_to_<type>_at_<m>m`` is the Kaplan-Meier *cumulative probability* of a first event of that
  type by m months, 1 - S(m), with the log-log 95% CI of S turned round; time runs from the baseline
  score's date to the first such event's (onset) date, censored at the last visit used;
* ``events_per_patient_year`` (``multiple``): CDW events / patient-years from the baseline score to the
  last visit used, exact Poisson 95% CI;
* ``cdw_type`` is blank unless CDW events are classified (``pira_raw``, ``first_pira``, ``first_raw``);
* a patient needs a baseline score and at least one later score up to follow-up end, else excluded
  and counted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.errors import SpecError
from endpointkit.params import MONTH_DAYS
from endpointkit.plugins.disability_engine import (
    LOWER_IS_WORSE,
    THRESHOLD_BANDS,
    EventSettings,
    MilestoneSettings,
    detect_events,
    detect_milestone,
)
from endpointkit.plugins.edss_progression import (
    AFTER_INDEX_DAYS,
    EdssParams,
    pick_baseline,
    usable_scores,
)
from endpointkit.plugins.relapse_free import (
    check_landmarks,
    fit_km,
    landmark_label,
    landmark_months,
    unique_landmarks,
)
from endpointkit.stats import km_landmark_row, km_median_row, poisson_rate_row, proportion_row

Window = float | list[float]

EVENT_TYPES = {  # which event types each ``event`` setting can report (PIRA/RAW added with pira_raw)
    "first_cdw": ("cdw",), "first_cdi": ("cdi",), "first": ("cdw", "cdi"), "multiple": ("cdw", "cdi"),
    "first_pira": ("pira",), "first_raw": ("raw",),
}
TYPE_WORDS = {"cdw": "confirmed worsening (CDW)", "cdi": "confirmed improvement (CDI)",
              "pira": "PIRA", "raw": "RAW"}
RELAPSES_LOADED = "_relapses_loaded"  # a column of the derived frame only (for the notes)
PER_PATIENT = [
    "patient_id", "event_number", "event_type", "cdw_type", "date", "baseline_date", "baseline_value", "value",
    "confirmation_date", "confirmation_value", "pira_confirmation_date", "first_visit_date", "last_visit_date",
    "visits", "included", "exclusion_reason",
]


def check_windows(params, path: str, distances: tuple[str, ...], pairs: tuple[str, ...]) -> None:
    """Lists of the right length: periods, tolerance [left, right], distances d or [last, next], windows [a, b]."""
    periods = params.confirmation_days
    if isinstance(periods, list) and not 1 <= len(periods) <= 20:
        raise SpecError(f"{path}.confirmation_days", f"expected a number or a list of 1 to 20 numbers, got {periods!r}")
    for name in distances:
        value = getattr(params, name)
        if isinstance(value, list) and not 1 <= len(value) <= 2:
            raise SpecError(f"{path}.{name}", f"expected a number or a list of 1 or 2 numbers, got {value!r}")
    for name in ("confirmation_tolerance_days", *pairs):
        value = getattr(params, name)
        if len(value) not in ((1, 2) if name == "confirmation_tolerance_days" else (2,)):
            raise SpecError(f"{path}.{name}", f"expected [before, after] in days, got {value!r}")
    if params.confirmation_tolerance_days[0] == "inf":
        raise SpecError(f"{path}.confirmation_tolerance_days[0]", "expected a number of days (only the right end may be 'inf')")
    check_landmarks(params.landmarks_months, path)


@dataclass(frozen=True)
class DisabilityParams:
    event: Literal["first_cdw", "first_cdi", "first", "multiple", "first_pira", "first_raw"] = param("first_cdw", "Events reported: the first CDW, the first CDI, the first of either, every event in order (multiple), the first PIRA or the first RAW.")
    baseline: Literal["fixed", "roving", "roving_worsening", "roving_improvement"] = param("fixed", "Reference for changes: the baseline score throughout (fixed), or moved after every confirmed event (roving), only after worsenings, or only after improvements.")
    proceed_from: Literal["confirmation", "event"] = param("confirmation", "After a confirmed event the search (and a roving baseline) moves to the first confirmation visit, or to the event visit.")
    confirmation_days: Window = param(84, "Confirmation period(s), days (84 = 12 weeks); a list confirms over any of them.", min=1)
    confirmation_tolerance_days: list[float | Literal["inf"]] = param([7, 730.5], "Tolerance [left, right] around each period: a confirmation visit lies C - left to C + right days after the change ('inf' = no right limit).")
    check_intermediate: bool = param(True, "Every visit from the change up to the confirmation visit must meet the change (false: only the confirmation visit).")
    sustained_days: float | Literal["end"] = param(0, "A confirmed event must hold at every visit for this many days (0 = not required; 'end' = to the last visit).")
    relapse_to_baseline_days: Window = param(30, "Minimum distance of the baseline visit from the last relapse (a number) or [from the last, to the next] relapse; the baseline moves to the next visit otherwise.")
    relapse_to_event_days: Window = param(0, "Minimum distance of an event visit from a relapse: a number (the last relapse) or [last, next].")
    relapse_to_confirmation_days: Window = param(30, "Minimum distance of a confirmation visit from a relapse: a number (the last relapse) or [last, next].")
    pira_raw: bool = param(False, "Classify each CDW as RAW (a relapse within relapse_assoc_days of the event), PIRA (no relapse in the PIRA windows) or undefined.")
    relapse_assoc_days: Window = param(90, "RAW: a relapse at most this many days before the event (a number) or [before, after].")
    pira_preceding_days: list[float] = param([0, 0], "PIRA: no relapse in [baseline - a, baseline + b] ([0, 0] = not checked).")
    pira_event_days: list[float] = param([90, 30], "PIRA: no relapse in [event - a, event + b].")
    pira_confirmation_days: list[float] = param([90, 30], "PIRA: no relapse in [confirmation - a, confirmation + b] for at least one confirmation visit.")
    threshold_rule: Literal["ms_standard", "nmosd_trials", "pymsprog", "fixed_1.0", "any_increase"] = param("ms_standard", "Minimum change by the reference score: ms_standard (+1.5 from 0, +1.0 from 1.0-5.5, +0.5 from 6.0), nmosd_trials (+2.0 / +1.0 up to 5.0 / +0.5 from 5.5), pymsprog (+1.5 from 0, +1.0 from 1.0-5.0, +0.5 from 5.5), fixed_1.0, any_increase.")
    last_visit: Literal["never", "always"] = param("never", "A worsening at the last visit (which cannot be confirmed): never counts, or always counts as a CDW.")
    landmarks_months: list[float] = param([12, 24], "Months at which the KM cumulative probability of each event type is reported.")
    scale: Literal["edss", "t25fw", "9hpt", "sdmt"] = param("edss", "The scale scanned: EDSS (the edss table), or the measurements table's timed 25-foot walk (t25fw), 9-hole peg test (9hpt) or SDMT (sdmt); threshold_rule applies to EDSS only.")
    timed_change_percent: float = param(20, "t25fw and 9hpt: a change of at least this % of the reference time counts (higher is worse).", min=0.1, max=1000)
    sdmt_change_points: float = param(4, "sdmt: a drop (worsening) or rise (improvement) of at least this many points counts, or of sdmt_change_percent, whichever is smaller.", min=0.1, max=110)
    sdmt_change_percent: float = param(10, "sdmt: a change of at least this % of the reference score counts (or sdmt_change_points, whichever is smaller).", min=0.1, max=100)
    baseline_score: Literal["last_before_index", "nearest_index"] = param("last_before_index", "Which score starts the visits, as edss_progression's baseline: the latest in [index - baseline_window_days, index], else the earliest in (index, index + 30 days]; or the nearest to index.")
    baseline_window_days: int = param(365, "How far before index the baseline score may lie (days).")

    def check(self, path: str) -> None:
        check_windows(self, path, ("relapse_to_baseline_days", "relapse_to_event_days", "relapse_to_confirmation_days",
                                   "relapse_assoc_days"), ("pira_preceding_days", "pira_event_days", "pira_confirmation_days"))

    def settings(self) -> EventSettings:
        """The engine's settings (a single number d for a relapse distance means [d, 0], as pymsprog)."""
        def pair(value: Window) -> tuple[float, float]:
            values = [float(v) for v in (value if isinstance(value, list) else [value])]
            return (values[0], values[1] if len(values) > 1 else 0.0)

        tol = [float("inf") if v == "inf" else float(v) for v in self.confirmation_tolerance_days]
        periods = self.confirmation_days if isinstance(self.confirmation_days, list) else [self.confirmation_days]
        return EventSettings(
            event=self.event, baseline=self.baseline, proceed_from=self.proceed_from,
            confirmation_days=tuple(float(c) for c in periods), tolerance=(tol[0], tol[-1]),
            check_intermediate=self.check_intermediate,
            sustained_days=float("inf") if self.sustained_days == "end" else float(self.sustained_days),
            relapse_to_baseline=pair(self.relapse_to_baseline_days), relapse_to_event=pair(self.relapse_to_event_days),
            relapse_to_confirmation=pair(self.relapse_to_confirmation_days), pira_raw=self.pira_raw,
            relapse_assoc=pair(self.relapse_assoc_days), pira_preceding=pair(self.pira_preceding_days),
            pira_event=pair(self.pira_event_days), pira_confirmation=pair(self.pira_confirmation_days),
            threshold_rule=self.threshold_rule, last_visit=self.last_visit, scale=self.scale,
            change_percent=float(self.sdmt_change_percent if self.scale == "sdmt" else self.timed_change_percent),
            change_points=float(self.sdmt_change_points) if self.scale == "sdmt" else float("inf"),
        )

    def event_types(self) -> tuple[str, ...]:
        """The event types this setting reports rows for."""
        extra = ("pira", "raw") if self.pira_raw and self.event in ("first_cdw", "first", "multiple") else ()
        return EVENT_TYPES[self.event] + extra


def _days(values) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers as dates; negative (= none) as NaT."""
    days = np.asarray(days, dtype=np.int64)
    out = days.astype("datetime64[D]").astype("datetime64[ns]")
    out[days < 0] = np.datetime64("NaT")
    return out


@dataclass
class EngineInput:
    """What the engine scans: the visits of the included patients (sorted by patient row, day) and relapses."""

    code: np.ndarray  # patient row in cohort.patients
    day: np.ndarray
    value: np.ndarray
    relapse_code: np.ndarray
    relapse_day: np.ndarray
    n: int
    has_base: np.ndarray  # per patient
    included: np.ndarray  # per patient: a baseline score and a later one
    visits: np.ndarray  # per patient: scores from the baseline score to follow-up end


SCALE_WORDS = {"edss": "EDSS score", "t25fw": "T25FW time", "9hpt": "9HPT time", "sdmt": "SDMT score"}


def scale_table(cohort, scale: str) -> tuple[pd.DataFrame | None, str]:
    """(table, value column) holding the scale's values: the edss table, or the scale's measurements."""
    if scale == "edss":
        return None, "score"
    measurements = cohort.table("measurements")
    return measurements[measurements["scale"] == scale], "value"


def exclusion_reasons(params, has_base: np.ndarray, included: np.ndarray) -> np.ndarray:
    """Why each patient is not analysed (None = analysed)."""
    words = SCALE_WORDS[getattr(params, "scale", "edss")]
    reason = np.full(has_base.size, None, dtype=object)
    reason[~has_base] = (f"no {words} in the baseline window [index - {params.baseline_window_days} days, "
                         f"index + {AFTER_INDEX_DAYS} days]")
    later = "score" if words == SCALE_WORDS["edss"] else words
    reason[has_base & ~included] = f"no {words} after the baseline {later} up to follow-up end"
    return reason


def engine_input(cohort, params: DisabilityParams) -> EngineInput:
    """Each patient's scores from its baseline score (edss_progression's rule) to follow-up end, and its relapses."""
    patients = cohort.patients
    n = len(patients)
    edss_params = EdssParams(baseline=params.baseline_score, baseline_window_days=params.baseline_window_days)
    s = usable_scores(cohort, edss_params, n, *scale_table(cohort, getattr(params, "scale", "edss")))
    base = pick_baseline(s, edss_params, _days(patients["index_date"]), n)
    has_base = base >= 0
    base_day = np.full(n, np.iinfo(np.int64).max)
    base_day[has_base] = s.day[base[has_base]]
    end_day = _days(patients["followup_end"])
    rows = np.arange(s.code.size)
    in_fu = (s.day >= base_day[s.code]) & ((s.day <= end_day[s.code]) | (rows == base[s.code]))
    visits = np.bincount(s.code[in_fu], minlength=n)
    included = has_base & (visits >= 2)
    use = in_fu & included[s.code]
    relapses = cohort.table("relapses")
    r_code = cohort.patient_rows(relapses)
    known = r_code >= 0
    return EngineInput(s.code[use], s.day[use], s.score[use], r_code[known].astype(np.int64),
                       _days(relapses["onset_date"])[known], n, has_base, included, visits)


def derive_events(cohort, params: DisabilityParams) -> pd.DataFrame:
    """Every patient's rows (``PER_PATIENT``): its events in order, or one row without event."""
    patients = cohort.patients
    x = engine_input(cohort, params)
    n, code, day, has_base, included, visits = x.n, x.code, x.day, x.has_base, x.included, x.visits
    events = detect_events(code, day, x.value, n, x.relapse_code, x.relapse_day, params.settings())

    first_day = np.full(n, -1, dtype=np.int64)
    last_day = np.full(n, -1, dtype=np.int64)
    if code.size:
        first_day[code[::-1]] = day[::-1]  # the earliest visit wins (assigned last)
        last_day[code] = day
    reason = exclusion_reasons(params, has_base, included)

    quiet = np.setdiff1d(np.arange(n), events["code"].to_numpy(dtype=np.int64))
    blank = pd.DataFrame({"code": quiet, "event_number": 0, "event_type": None, "cdw_type": None, "day": -1,
                          "value": np.nan, "baseline_day": -1, "baseline_value": np.nan, "confirmation_day": -1,
                          "confirmation_value": np.nan, "pira_confirmation_day": -1})
    both = pd.concat([events.astype({"code": "int64"}), blank], ignore_index=True) if len(events) else blank
    both = both.sort_values(["code", "event_number"], kind="stable").reset_index(drop=True)
    c = both["code"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame({
        "patient_id": patients["patient_id"].to_numpy()[c],
        "event_number": both["event_number"].to_numpy(dtype=np.int64),
        "event_type": both["event_type"].astype(object).where(both["event_type"].notna(), None).to_numpy(),
        "cdw_type": both["cdw_type"].astype(object).where(both["cdw_type"].notna(), None).to_numpy(),
        "date": _dates(both["day"].to_numpy(dtype=np.int64)),
        "baseline_date": _dates(both["baseline_day"].to_numpy(dtype=np.int64)),
        "baseline_value": both["baseline_value"].to_numpy(dtype=float),
        "value": both["value"].to_numpy(dtype=float),
        "confirmation_date": _dates(both["confirmation_day"].to_numpy(dtype=np.int64)),
        "confirmation_value": both["confirmation_value"].to_numpy(dtype=float),
        "pira_confirmation_date": _dates(both["pira_confirmation_day"].to_numpy(dtype=np.int64)),
        "first_visit_date": _dates(np.where(included, first_day, -1)[c]),
        "last_visit_date": _dates(np.where(included, last_day, -1)[c]),
        "visits": np.where(included, visits, 0)[c],
        "included": included[c],
        "exclusion_reason": reason[c],
    })
    return frame[PER_PATIENT]


def _first_event_times(frame: pd.DataFrame, kind: str) -> tuple[pd.Series, pd.Series]:
    """Per included patient: months from the baseline score to the first event of ``kind`` (or to the last visit) and whether it occurred."""
    used = frame[frame["included"]]
    hit = (used["event_type"] == kind) | (used["cdw_type"] == kind)
    first = used[hit].groupby("patient_id", sort=False)["date"].min()
    patients = used.drop_duplicates("patient_id").set_index("patient_id")
    event_date = first.reindex(patients.index)
    end = event_date.fillna(patients["last_visit_date"])
    months = (end - patients["first_visit_date"]).dt.days / MONTH_DAYS
    return months, event_date.notna()


def _cumulative(row):
    """A KM survival row turned into the cumulative probability 1 - S(t) (CI limits swapped)."""
    def flip(v: float | None) -> float | None:
        return None if v is None else 1.0 - v

    return dataclasses.replace(row, estimate=flip(row.estimate), low=flip(row.high), high=flip(row.low),
                               test="Kaplan-Meier (scipy.stats.ecdf) cumulative probability 1 - S(t), log-log 95% CI; n = patients at risk")


def summarise_events(frame: pd.DataFrame, params: DisabilityParams) -> list:
    """Rows from the per-patient frame: proportions, KM landmarks and median per event type, event rate."""
    used = frame[frame["included"]]
    patients = used.drop_duplicates("patient_id")
    n = len(patients)
    rows = []
    for kind in params.event_types():
        hit = (used["event_type"] == kind) | (used["cdw_type"] == kind)
        count = int(used.loc[hit, "patient_id"].nunique())
        rows.append(proportion_row(kind, count, n, label=f"Patients with {TYPE_WORDS[kind]}, n (%)"))
    for kind in params.event_types():
        months, occurred = _first_event_times(frame, kind)
        km = fit_km(months, occurred)
        for m in unique_landmarks(params.landmarks_months):
            label = f"{TYPE_WORDS[kind]} by {landmark_label(m)} months, KM % (95% CI)"
            rows.append(_cumulative(km_landmark_row(f"time_to_{kind}_at_{landmark_label(m)}m", km, landmark_months(m), label=label)))
        rows.append(km_median_row(f"median_time_to_{kind}_months", km,
                                  label=f"Time to first {TYPE_WORDS[kind]}, months, KM median (95% CI)"))
    if params.event == "multiple":
        years = float(((patients["last_visit_date"] - patients["first_visit_date"]).dt.days / 365.25).sum())
        cdw = int((used["event_type"] == "cdw").sum())
        rows.append(poisson_rate_row("events_per_patient_year", cdw, years, n,
                                     label="CDW events per patient-year (95% CI)"))
    return rows


class DisabilityEvents(Endpoint):
    name = "disability_events"
    title = "Confirmed disability events (EDSS)"
    description = ("Confirmed disability worsening/improvement, PIRA and RAW, roving baselines, KM time to first event (as pymsprog); "
                   "on EDSS or, with `scale`, on the measurements table's T25FW, 9HPT or SDMT.")
    requires = ("edss",)
    uses = ("relapses",)  # scores near a relapse are ignored when the data have relapses
    Params = DisabilityParams
    headline = ("cdw",)
    summary_params = ("landmarks_months",)  # read by summarise only

    @classmethod
    def requires_for(cls, params: DisabilityParams) -> tuple[str, ...]:
        return cls.requires if params.scale == "edss" else ("measurements",)

    @classmethod
    def headline_for(cls, params: DisabilityParams) -> tuple[str, ...]:
        """Every proportion row, then the first type's first KM landmark."""
        kinds = params.event_types()
        landmarks = unique_landmarks(params.landmarks_months)
        return (*kinds, f"time_to_{kinds[0]}_at_{landmark_label(landmarks[0])}m") if landmarks else kinds

    def derive(self, cohort, params: DisabilityParams, ctx) -> pd.DataFrame:
        """Each patient's event rows (:func:`derive_events`), with whether relapses were loaded (for the notes)."""
        return derive_events(cohort, params).assign(**{RELAPSES_LOADED: "relapses" in cohort.tables})

    def summarise(self, per_patient: pd.DataFrame, params: DisabilityParams, ctx) -> EndpointResult:
        relapses_loaded = bool(per_patient[RELAPSES_LOADED].all())
        frame = per_patient.drop(columns=RELAPSES_LOADED)
        rows = summarise_events(frame, params)
        first = frame.drop_duplicates("patient_id")
        excluded = {r: first.loc[first["exclusion_reason"] == r, "patient_id"].tolist()
                    for r in first["exclusion_reason"].dropna().unique()}
        return EndpointResult(rows=rows, per_patient=frame, notes=_notes(params, relapses_loaded), excluded=excluded)

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: DisabilityParams,
                ctx) -> list[Row]:
        """Between groups, on the analysed patients: the difference in the proportion with each
        reported event type (Newcombe CI); the frame has a row per event, so patients are counted once."""
        from endpointkit.comparisons import labelled, proportion_difference_rows

        used = per_patient["included"].to_numpy(dtype=bool)
        frame = per_patient[used]
        group = groups[used].groupby(frame["patient_id"].to_numpy(), sort=False).first()
        rows = []
        for kind in params.event_types():
            hit = ((frame["event_type"] == kind) | (frame["cdw_type"] == kind)).to_numpy(dtype=bool)
            patient_hit = pd.Series(hit).groupby(frame["patient_id"].to_numpy(), sort=False).any()
            rows += labelled(proportion_difference_rows(patient_hit.reindex(group.index), group, levels),
                             f"Patients with {TYPE_WORDS[kind]}, difference in proportions (95% CI)", f"{kind}_difference")
        return rows


def _visits_words(params: DisabilityParams) -> str:
    if params.scale == "edss":
        return "EDSS scores"
    return f"the measurements table's {params.scale} values ({SCALE_WORDS[params.scale]}s)"


def _threshold_words(params: DisabilityParams) -> str:
    """The change rule in words: EDSS bands, a percentage, or SDMT's points-or-percentage."""
    if params.scale == "edss":
        bands = ", ".join(f"+{step:g} from {low:g}" for low, step in THRESHOLD_BANDS[params.threshold_rule])
        return f"{params.threshold_rule}: {bands}"
    if params.scale in LOWER_IS_WORSE:
        return (f"{params.sdmt_change_points:g} points or {params.sdmt_change_percent:g}% of the reference score, whichever "
                "is smaller; a drop is a worsening, a rise an improvement")
    return (f"{params.timed_change_percent:g}% of the reference time; a longer time is a worsening, a shorter one an "
            "improvement")


def _notes(params: DisabilityParams, relapses_loaded: bool) -> list[str]:
    s = params.settings()
    periods = ", ".join(f"{c:g}" for c in s.confirmation_days)
    right = "no limit" if s.tolerance[1] == float("inf") else f"+{s.tolerance[1]:g}"
    notes = [
        f"Visits: {_visits_words(params)} from the baseline score ({params.baseline_score}) to follow-up end. Events "
        f"({params.event}, baseline {params.baseline}, proceeding from the {params.proceed_from}): a change of at least "
        f"the threshold ({_threshold_words(params)}) from the reference score, confirmed {'over every visit up to' if s.check_intermediate else 'at'} "
        f"the first visit {periods} days later (tolerance -{s.tolerance[0]:g}/{right} days); relapse distances (days, "
        f"[last, next]): baseline {list(s.relapse_to_baseline)}, event {list(s.relapse_to_event)}, confirmation "
        f"{list(s.relapse_to_confirmation)}; relapses before the first visit minus {s.relapse_to_baseline[0]:g} days are not used (as pymsprog)."
        + (f" Events must be sustained for {s.sustained_days:g} days." if 0 < s.sustained_days < float("inf") else "")
        + (" Events must be sustained to the last visit." if s.sustained_days == float("inf") else "")
        + (" A worsening at the last visit counts unconfirmed." if s.last_visit == "always" else ""),
        "Proportions over patients with a baseline score and a later score; time_to_<type>_at_<m>m = Kaplan-Meier "
        "cumulative probability of a first event by m months (1 - S), time from the baseline score to the event "
        "onset, censored at the last visit; log-log 95% CI.",
    ]
    if s.classify:
        notes.append(f"RAW: a relapse within {list(s.relapse_assoc)} days [before, after] the event; PIRA: no relapse in "
                     f"[event - {s.pira_event[0]:g}, + {s.pira_event[1]:g}] days, [baseline - {s.pira_preceding[0]:g}, "
                     f"+ {s.pira_preceding[1]:g}] (not checked if zero) and, for at least one confirmation visit, "
                     f"[confirmation - {s.pira_confirmation[0]:g}, + {s.pira_confirmation[1]:g}]; otherwise undefined.")
    if params.event == "multiple":
        notes.append("events_per_patient_year: CDW events / patient-years from the baseline score to the last visit (exact Poisson CI).")
    if not relapses_loaded:
        notes.append("No relapses table was loaded: relapse distances and PIRA/RAW see no relapse.")
    return notes


@dataclass(frozen=True)
class MilestoneParams:
    milestone: float = param(6.0, "The EDSS value to reach (time to the first confirmed score >= this).")
    confirmation_days: Window = param(84, "Confirmation period(s), days; a list confirms over any of them.", min=1)
    confirmation_tolerance_days: list[float | Literal["inf"]] = param([7, 730.5], "Tolerance [left, right] around each period ('inf' = no right limit).")
    sustained_days: float | Literal["end"] = param(0, "The milestone must hold this many days (0 = not required; 'end' = to the last visit).")
    relapse_to_event_days: Window = param(0, "Minimum distance of the milestone visit from a relapse: a number (the last relapse) or [last, next].")
    relapse_to_confirmation_days: Window = param(30, "Minimum distance of a confirmation visit from a relapse: a number or [last, next].")
    landmarks_months: list[float] = param([12, 24], "Months at which the KM cumulative probability of reaching the milestone is reported.")
    baseline_score: Literal["last_before_index", "nearest_index"] = param("last_before_index", "Which score starts the visits (edss_progression's baseline rule).")
    baseline_window_days: int = param(365, "How far before index the baseline score may lie (days).")

    def check(self, path: str) -> None:
        check_windows(self, path, ("relapse_to_event_days", "relapse_to_confirmation_days"), ())

    def settings(self) -> MilestoneSettings:
        shared = DisabilityParams(confirmation_days=self.confirmation_days,
                                  confirmation_tolerance_days=self.confirmation_tolerance_days,
                                  sustained_days=self.sustained_days, relapse_to_event_days=self.relapse_to_event_days,
                                  relapse_to_confirmation_days=self.relapse_to_confirmation_days).settings()
        return MilestoneSettings(milestone=self.milestone, confirmation_days=shared.confirmation_days,
                                 tolerance=shared.tolerance, sustained_days=shared.sustained_days,
                                 relapse_to_event=shared.relapse_to_event,
                                 relapse_to_confirmation=shared.relapse_to_confirmation)


MILESTONE_PER_PATIENT = ["patient_id", "reached", "date", "value", "first_visit_date", "last_visit_date",
                         "time_months", "visits", "included", "exclusion_reason"]


def derive_milestone(cohort, params: MilestoneParams) -> pd.DataFrame:
    """One row per patient: the first confirmed score >= the milestone (date, value) and the KM time."""
    x = engine_input(cohort, params)
    hit = detect_milestone(x.code, x.day, x.value, x.n, x.relapse_code, x.relapse_day, params.settings())
    first_day = np.full(x.n, -1, dtype=np.int64)
    last_day = np.full(x.n, -1, dtype=np.int64)
    if x.code.size:
        first_day[x.code[::-1]] = x.day[::-1]
        last_day[x.code] = x.day
    reached = hit >= 0
    event_day = np.where(reached, x.day[np.clip(hit, 0, None)] if x.day.size else -1, -1)
    reason = np.full(x.n, None, dtype=object)
    reason[~x.has_base] = (f"no EDSS score in the baseline window [index - {params.baseline_window_days} days, "
                           f"index + {AFTER_INDEX_DAYS} days]")
    reason[x.has_base & ~x.included] = "no EDSS score after the baseline score up to follow-up end"
    end = np.where(reached, event_day, last_day)
    frame = pd.DataFrame({
        "patient_id": cohort.patients["patient_id"].to_numpy(),
        "reached": pd.Series(reached, dtype="boolean").where(x.included, pd.NA),
        "date": _dates(event_day),
        "value": np.where(reached, x.value[np.clip(hit, 0, None)] if x.value.size else np.nan, np.nan),
        "first_visit_date": _dates(np.where(x.included, first_day, -1)),
        "last_visit_date": _dates(np.where(x.included, last_day, -1)),
        "time_months": np.where(x.included, (end - first_day) / MONTH_DAYS, np.nan),
        "visits": np.where(x.included, x.visits, 0),
        "included": x.included,
        "exclusion_reason": reason,
    })
    return frame[MILESTONE_PER_PATIENT]


class DisabilityMilestone(Endpoint):
    name = "disability_milestone"
    title = "Time to a confirmed EDSS milestone"
    description = "Time to the first confirmed EDSS score at or above a milestone (e.g. 6.0), Kaplan-Meier (as pymsprog's value_milestone)."
    requires = ("edss",)
    uses = ("relapses",)  # scores near a relapse are ignored when the data have relapses
    Params = MilestoneParams
    headline = ("milestone",)
    summary_params = ("landmarks_months",)  # read by summarise only

    @classmethod
    def headline_for(cls, params: MilestoneParams) -> tuple[str, ...]:
        landmarks = unique_landmarks(params.landmarks_months)
        return ("milestone", f"time_to_milestone_at_{landmark_label(landmarks[0])}m") if landmarks else ("milestone",)

    def derive(self, cohort, params: MilestoneParams, ctx) -> pd.DataFrame:
        """One row per cohort patient (:func:`derive_milestone`)."""
        return derive_milestone(cohort, params)

    def summarise(self, per_patient: pd.DataFrame, params: MilestoneParams, ctx) -> EndpointResult:
        frame = per_patient
        used = frame[frame["included"]]
        words = f"EDSS >= {params.milestone:g}"
        rows = [proportion_row("milestone", int(used["reached"].sum()), len(used), label=f"Confirmed {words}, n (%)")]
        km = fit_km(used["time_months"], used["reached"].astype(bool))
        for m in unique_landmarks(params.landmarks_months):
            rows.append(_cumulative(km_landmark_row(f"time_to_milestone_at_{landmark_label(m)}m", km, landmark_months(m),
                                                    label=f"Confirmed {words} by {landmark_label(m)} months, KM % (95% CI)")))
        rows.append(km_median_row("median_time_to_milestone_months", km, label=f"Time to confirmed {words}, months, KM median (95% CI)"))
        s = params.settings()
        right = "no limit" if s.tolerance[1] == float("inf") else f"+{s.tolerance[1]:g}"
        notes = [f"Milestone {words}: the first visit from the baseline score on at or above it (relapse distance "
                 f"{list(s.relapse_to_event)} days), confirmed over every visit up to the first visit "
                 f"{', '.join(f'{c:g}' for c in s.confirmation_days)} days later (tolerance -{s.tolerance[0]:g}/{right} days, "
                 f"relapse distance {list(s.relapse_to_confirmation)}); time from the baseline score, censored at the last "
                 "visit; time_to_milestone_at_<m>m = KM cumulative probability 1 - S(m), log-log 95% CI."]
        excluded = {r: frame.loc[frame["exclusion_reason"] == r, "patient_id"].tolist()
                    for r in frame["exclusion_reason"].dropna().unique()}
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, excluded=excluded)

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: MilestoneParams,
                ctx) -> list[Row]:
        """Between groups, on the analysed patients: the difference in the proportion reaching the
        milestone (Newcombe CI)."""
        from endpointkit.comparisons import labelled, proportion_difference_rows

        used = per_patient["included"].to_numpy(dtype=bool)
        return labelled(proportion_difference_rows(per_patient.loc[used, "reached"].astype(bool), groups[used], levels),
                        f"Confirmed EDSS >= {params.milestone:g}, difference in proportions (95% CI)", "milestone_difference")


@hookimpl
def register_endpoints():
    return [DisabilityEvents, DisabilityMilestone]

"""``edss_progression``: disability (EDSS) at baseline and at the last follow-up, worsening and improvement.

Definitions follow docs/endpoints/edss_progression.md. Choices where the
contract is silent (each also stated in the result's ``notes``):

* Several scores of one patient on the same day: the one on the later CSV line is used (counted per
  patient in ``same_day_scores_dropped``), so every date carries one score.
* Confirmation (C > 0 months = round(C x 365.25/12) days) uses only the scores in
  ``(baseline date, follow-up end]``: the confirming score must lie in follow-up too. A worsening that
  cannot be confirmed before follow-up ends does not count (the patient is not excluded).
* ``roving``: after each confirmed worsening or improvement the reference becomes the confirming score
  (its date and value) and the threshold is looked up again from that new reference score; the next
  event is sought among the scores dated after it.
* With ``confirmation_months: 0`` the final score is compared with the baseline, so ``reference``
  has no effect.

Everything is vectorised over patients: scores are sorted by (patient, date) and handled as numpy
arrays; the roving reference is a loop over rounds, each round finding the next confirmed event of
every patient at once.

``derive`` computes one row per cohort patient from that patient's scores (and relapses) only, so it
runs on any partition of the patients; ``summarise`` computes the rows, the notes' counts and the
exclusions from those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from endpointkit import Endpoint, EndpointResult, Row, hookimpl, param
from endpointkit.params import MONTH_DAYS
from endpointkit.plugins.disability_engine import THRESHOLD_BANDS, threshold
from endpointkit.stats import median_row, paired_test_row, proportion_row

ThresholdRule = Literal["ms_standard", "nmosd_trials", "fixed_1.0", "any_increase"]

AFTER_INDEX_DAYS = 30  # a baseline may lie up to 30 days after index
_SHIFT = np.int64(2**31)  # day numbers shifted to be non-negative inside a (patient, day) key
_BLOCK = np.int64(2**32)  # key = patient code * _BLOCK + shifted day
NO_FINAL = "no EDSS score after the baseline score up to follow-up end"
RELAPSES_LOADED = "_relapses_loaded"  # a column of the derived frame only (summarise drops it)


@dataclass(frozen=True)
class EdssParams:
    baseline: Literal["last_before_index", "nearest_index"] = param("last_before_index", "Baseline score: the latest in [index - baseline_window_days, index], else the earliest in (index, index + 30 days]; or the score nearest to index in [index - window, index + 30 days] (the earlier on a tie).")
    baseline_window_days: int = param(365, "How far before index a baseline score may lie (days).")
    final: Literal["last_on_followup"] = param("last_on_followup", "Final score: the latest in (baseline date, follow-up end].")
    threshold_rule: ThresholdRule = param("ms_standard", "Worsening threshold by baseline score: ms_standard (+1.5 from 0, +1.0 from 1.0-5.5, +0.5 from 6.0), nmosd_trials (+2.0 from 0, +1.0 from 1.0-5.0, +0.5 from 5.5), fixed_1.0 (+1.0), any_increase (+0.5).")
    improvement: Literal["same_as_threshold", "any_decrease"] = param("same_as_threshold", "Improvement: a decrease of at least the threshold, or any decrease.")
    confirmation_months: float = param(0, "0 = compare the final with the baseline score; > 0 = a worsening (improvement) must still hold at every score up to the first one at least this many months later.")
    reference: Literal["fixed", "roving"] = param("fixed", "With confirmation: measure every score against the baseline (fixed), or move the reference to the confirming score after each confirmed event (roving).")
    exclude_within_relapse_days: int = param(0, "Scores dated in [relapse onset, onset + this many days] are not used (0 = use all).")


def _no_baseline(params: EdssParams) -> str:
    return (f"no EDSS score in the baseline window [index - {params.baseline_window_days} days, "
            f"index + {AFTER_INDEX_DAYS} days]")


def confirmation_days(params: EdssParams) -> int:
    """The confirmation period in whole days (0 = no confirmation)."""
    return int(round(params.confirmation_months * MONTH_DAYS))


def _rule_text(rule: str) -> str:
    bands = THRESHOLD_BANDS[rule]
    if len(bands) == 1:
        return f"+{bands[0][1]:.1f} from any score"
    parts = []
    for i, (low, step) in enumerate(bands):
        if i + 1 < len(bands):
            upper = bands[i + 1][0] - 0.5
            span = f"{low:g}" if upper < 1 else f"{max(low, 1.0):.1f}-{upper:.1f}"
            parts.append(f"+{step:.1f} from {span}")
        else:
            parts.append(f"+{step:.1f} from >= {low:.1f}")
    return ", ".join(parts)


def _days(values: pd.Series | np.ndarray) -> np.ndarray:
    """Dates as whole day numbers (int64)."""
    return np.asarray(values, dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def _dates(days: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.where(valid, days, 0).astype("datetime64[D]").astype("datetime64[ns]")
    out[~valid] = np.datetime64("NaT")
    return out


def _key(code: np.ndarray, day: np.ndarray) -> np.ndarray:
    return code.astype(np.int64) * _BLOCK + (day + _SHIFT)


def _first_per_code(code: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """For ``rows`` grouped by ``code`` (sorted by code): the first row of each code, -1 if none."""
    out = np.full(n, -1, dtype=np.int64)
    if rows.size:
        start = np.r_[True, code[1:] != code[:-1]]
        out[code[start]] = rows[start]
    return out


def _last_per_code(code: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    if rows.size:
        end = np.r_[code[1:] != code[:-1], True]
        out[code[end]] = rows[end]
    return out


def _next_failure(meets: np.ndarray) -> np.ndarray:
    """For each position, the first position at or after it where ``meets`` is False (len if none)."""
    n = meets.size
    fail = np.where(meets, n, np.arange(n))
    return np.minimum.accumulate(fail[::-1])[::-1]


@dataclass
class Scores:
    """The usable scores, sorted by (patient code, day), one per patient and day."""

    code: np.ndarray
    day: np.ndarray
    score: np.ndarray
    ignored_near_relapse: np.ndarray  # per patient
    same_day_dropped: np.ndarray  # per patient
    relapses_loaded: bool


def usable_scores(cohort, params: EdssParams, n_patients: int, table: pd.DataFrame | None = None,
                  column: str = "score") -> Scores:
    """EDSS scores (or ``table[column]``, e.g. one scale's measurements) minus those near a relapse
    onset, one per day (the later CSV line), sorted."""
    ids = pd.Index(cohort.patients["patient_id"])
    edss = cohort.table("edss") if table is None else table
    code = ids.get_indexer(edss["patient_id"])
    known = code >= 0
    code = code[known].astype(np.int64)
    day = _days(edss["date"])[known]
    score = edss[column].to_numpy(dtype=float)[known]
    line = edss["_line"].to_numpy(dtype=np.int64)[known] if "_line" in edss else np.arange(code.size)

    ignored = np.zeros(n_patients, dtype=np.int64)
    relapses_loaded = "relapses" in cohort.tables
    if params.exclude_within_relapse_days > 0 and code.size:
        relapses = cohort.table("relapses")
        r_code = ids.get_indexer(relapses["patient_id"])
        r_ok = r_code >= 0
        r_key = np.sort(_key(r_code[r_ok], _days(relapses["onset_date"])[r_ok]))
        if r_key.size:
            # latest onset on or before each score's date, same patient
            pos = np.searchsorted(r_key, _key(code, day), side="right") - 1
            hit = pos >= 0
            onset_key = r_key[np.clip(pos, 0, None)]
            same = hit & (onset_key // _BLOCK == code)
            onset_day = onset_key % _BLOCK - _SHIFT
            near = same & (day - onset_day <= params.exclude_within_relapse_days)
            ignored = np.bincount(code[near], minlength=n_patients)
            code, day, score, line = code[~near], day[~near], score[~near], line[~near]

    order = np.lexsort((line, day, code))
    code, day, score = code[order], day[order], score[order]
    keep = np.r_[(code[1:] != code[:-1]) | (day[1:] != day[:-1]), True] if code.size else np.zeros(0, bool)
    dropped = np.bincount(code[~keep], minlength=n_patients)
    return Scores(code[keep], day[keep], score[keep], ignored, dropped, relapses_loaded)


def pick_baseline(s: Scores, params: EdssParams, index_day: np.ndarray, n: int) -> np.ndarray:
    """Row (into ``s``) of each patient's baseline score, -1 if none."""
    rows = np.arange(s.code.size)
    rel = s.day - index_day[s.code]
    before = (rel >= -params.baseline_window_days) & (rel <= 0)
    after = (rel > 0) & (rel <= AFTER_INDEX_DAYS)
    if params.baseline == "last_before_index":
        latest_before = _last_per_code(s.code[before], rows[before], n)
        earliest_after = _first_per_code(s.code[after], rows[after], n)
        return np.where(latest_before >= 0, latest_before, earliest_after)
    cand = rows[before | after]
    order = np.lexsort((rel[cand], np.abs(rel[cand]), s.code[cand]))  # nearest, then earlier
    cand = cand[order]
    return _first_per_code(s.code[cand], cand, n)


@dataclass
class Events:
    """Per patient: first confirmed worsening and improvement (score date, confirming date, -1 = none)."""

    w_row: np.ndarray
    w_conf: np.ndarray
    i_row: np.ndarray
    i_conf: np.ndarray
    w_count: np.ndarray | None = None
    i_count: np.ndarray | None = None
    ref_day: np.ndarray | None = None
    ref_score: np.ndarray | None = None


def _meets(score, ref, thr, improvement: str) -> tuple[np.ndarray, np.ndarray]:
    worse = score - ref >= thr
    better = (ref - score >= thr) if improvement == "same_as_threshold" else (score < ref)
    return worse, better


def confirm_fixed(code, day, score, base_score, thr, params: EdssParams, c_days: int, n: int) -> Events:
    """Fixed reference: every follow-up score against the baseline; first confirmed event of each kind."""
    key = _key(code, day)
    j = np.searchsorted(key, key + c_days, side="left")  # first score at or after t + C
    jc = np.minimum(j, max(code.size - 1, 0))
    has_j = (j < code.size) & (code[jc] == code)
    worse, better = _meets(score, base_score[code], thr[code], params.improvement)
    out = []
    for meets in (worse, better):
        ok = meets & has_j & (_next_failure(meets) > j)
        rows = np.nonzero(ok)[0]
        first = _first_per_code(code[rows], rows, n)
        conf = np.where(first >= 0, j[np.clip(first, 0, None)] if j.size else -1, -1)
        out += [first, conf]
    return Events(*out)


def confirm_roving(code, day, score, base_day, base_score, active, params: EdssParams, c_days: int, n: int) -> Events:
    """Roving reference, in rounds: each round finds every active patient's next confirmed event."""
    size = code.size
    key = _key(code, day)
    j_all = np.searchsorted(key, key + c_days, side="left")
    has_all = (j_all < size) & (code[np.minimum(j_all, max(size - 1, 0))] == code)
    ref_day, ref_score = base_day.copy(), base_score.copy()
    ref_thr = threshold(params.threshold_rule, ref_score)
    active = active.copy()
    w_row, w_conf, i_row, i_conf = (np.full(n, -1, dtype=np.int64) for _ in range(4))
    w_count, i_count = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    while True:
        idx = np.nonzero(active[code] & (day > ref_day[code]))[0]
        if idx.size == 0:
            break
        c = code[idx]
        worse, better = _meets(score[idx], ref_score[c], ref_thr[c], params.improvement)
        j_local = np.searchsorted(idx, j_all[idx])  # exact for every row whose J exists
        has = has_all[idx]
        cw = worse & has & (_next_failure(worse) > j_local)
        cb = better & has & (_next_failure(better) > j_local)
        ev = np.nonzero(cw | cb)[0]
        first = ev[np.r_[True, c[ev][1:] != c[ev][:-1]]] if ev.size else ev
        pat, t_row, j_row = c[first], idx[first], j_all[idx[first]]
        is_w = cw[first]
        for mask, row, conf, count in ((is_w, w_row, w_conf, w_count), (~is_w, i_row, i_conf, i_count)):
            p = pat[mask]
            new = row[p] < 0
            row[p[new]] = t_row[mask][new]
            conf[p[new]] = j_row[mask][new]
            count[p] += 1
        active[:] = False
        active[pat] = True
        ref_day[pat] = day[j_row]
        ref_score[pat] = score[j_row]
        ref_thr[pat] = threshold(params.threshold_rule, score[j_row])
    return Events(w_row, w_conf, i_row, i_conf, w_count, i_count, ref_day, ref_score)


class EdssProgression(Endpoint):
    name = "edss_progression"
    title = "Disability (EDSS)"
    description = "EDSS at baseline and last follow-up, paired Wilcoxon test, progressed / improved / stable."
    requires = ("edss",)
    uses = ("relapses",)  # scores near a relapse are ignored when the data have relapses
    Params = EdssParams
    headline = ("no_progression", "improved", "paired_test")
    partitions = (("n", ("progressed", "stable", "improved")), ("no_progression", ("stable", "improved")))

    def derive(self, cohort, params: EdssParams, ctx) -> pd.DataFrame:
        """One row per cohort patient: baseline and final scores, events and flags (none excluded)."""
        patients = cohort.patients
        n = len(patients)
        index_day = _days(patients["index_date"])
        end_day = _days(patients["followup_end"])
        s = cohort.memo(ctx, ("edss_progression.usable_scores", params.exclude_within_relapse_days),
                        lambda: usable_scores(cohort, params, n))  # read-only below; shared by variants

        base = pick_baseline(s, params, index_day, n)
        has_base = base >= 0
        bsafe = np.clip(base, 0, None)
        base_day = np.where(has_base, s.day[bsafe] if s.day.size else 0, 0)
        base_score = np.where(has_base, s.score[bsafe] if s.score.size else np.nan, np.nan)

        # follow-up scores: (baseline date, follow-up end]
        fu = has_base[s.code] & (s.day > base_day[s.code]) & (s.day <= end_day[s.code])
        fu_rows = np.nonzero(fu)[0]
        code, day, score = s.code[fu_rows], s.day[fu_rows], s.score[fu_rows]
        last = _last_per_code(code, np.arange(code.size), n)
        has_final = last >= 0
        lsafe = np.clip(last, 0, None)
        final_day = np.where(has_final, day[lsafe] if day.size else 0, 0)
        final_score = np.where(has_final, score[lsafe] if score.size else np.nan, np.nan)
        included = has_base & has_final

        thr = threshold(params.threshold_rule, np.nan_to_num(base_score))
        change = final_score - base_score
        c_days = confirmation_days(params)
        events = None
        if c_days <= 0:
            progressed = included & (change >= thr)
            better = (-change >= thr) if params.improvement == "same_as_threshold" else (change < 0)
            improved = included & ~progressed & better
        else:
            if params.reference == "fixed":
                events = confirm_fixed(code, day, score, base_score, thr, params, c_days, n)
            else:
                events = confirm_roving(code, day, score, base_day, base_score, included, params, c_days, n)
            progressed = included & (events.w_row >= 0)
            improved = included & ~progressed & (events.i_row >= 0)
        stable = included & ~progressed & ~improved

        reason = np.full(n, None, dtype=object)
        reason[~has_base] = _no_baseline(params)
        reason[has_base & ~has_final] = NO_FINAL

        def flag(values: np.ndarray) -> pd.Series:
            return pd.Series(values, dtype="boolean").where(included, pd.NA)

        frame = pd.DataFrame({
            "patient_id": patients["patient_id"].to_numpy(),
            "index_date": patients["index_date"].to_numpy(),
            "followup_end": patients["followup_end"].to_numpy(),
            "baseline_date": _dates(base_day, has_base),
            "baseline_days_from_index": pd.Series(base_day - index_day).where(has_base).astype("Int64"),
            "baseline_score": base_score,
            "threshold": np.where(has_base, thr, np.nan),
            "final_date": _dates(final_day, has_final),
            "final_score": final_score,
            "change": change,
            "scores_on_followup": np.bincount(code, minlength=n),
            "scores_ignored_near_relapse": s.ignored_near_relapse,
            "same_day_scores_dropped": s.same_day_dropped,
        })
        for label, row, conf in (
            ("worsening", None if events is None else events.w_row, None if events is None else events.w_conf),
            ("improvement", None if events is None else events.i_row, None if events is None else events.i_conf),
        ):
            if row is None:
                frame[f"{label}_date"] = _dates(np.zeros(n, np.int64), np.zeros(n, bool))
                frame[f"{label}_confirmed_date"] = frame[f"{label}_date"]
            else:
                ok = row >= 0
                frame[f"{label}_date"] = _dates(day[np.clip(row, 0, None)] if day.size else np.zeros(n, np.int64), ok)
                frame[f"{label}_confirmed_date"] = _dates(day[np.clip(conf, 0, None)] if day.size else np.zeros(n, np.int64), ok)
        if events is not None and events.w_count is not None:
            frame["roving_worsenings"] = np.where(included, events.w_count, 0)
            frame["roving_improvements"] = np.where(included, events.i_count, 0)
            frame["last_reference_date"] = _dates(events.ref_day, included)
            frame["last_reference_score"] = np.where(included, events.ref_score, np.nan)
        frame["progressed"] = flag(progressed)
        frame["improved"] = flag(improved)
        frame["stable"] = flag(stable)
        frame["no_progression"] = flag(stable | improved)
        frame["included"] = included
        frame["exclusion_reason"] = reason

        frame[RELAPSES_LOADED] = s.relapses_loaded  # for the notes; dropped by summarise
        return frame

    def summarise(self, per_patient: pd.DataFrame, params: EdssParams, ctx) -> EndpointResult:
        relapses_loaded = bool(per_patient[RELAPSES_LOADED].all())
        frame = per_patient.drop(columns=RELAPSES_LOADED)
        included = frame["included"].to_numpy(dtype=bool)
        progressed = frame["progressed"].fillna(False).to_numpy(dtype=bool)
        improved = frame["improved"].fillna(False).to_numpy(dtype=bool)
        stable = frame["stable"].fillna(False).to_numpy(dtype=bool)
        reason = frame["exclusion_reason"]
        used = frame.loc[included, ["baseline_score", "final_score"]]  # not a copy of every column
        k = len(used)
        method = ctx.quantile_method
        rows = [
            median_row("baseline", used["baseline_score"], method, label="EDSS at baseline, median [IQR]"),
            median_row("final", used["final_score"], method, label="EDSS at last follow-up, median [IQR]"),
            paired_test_row("paired_test", used["baseline_score"], used["final_score"], ctx.paired_test, label="EDSS change, p"),
            proportion_row("progressed", int(progressed.sum()), k, label="Disability worsening, n (%)"),
            proportion_row("no_progression", int((stable | improved).sum()), k, label="No worsening (stable or improved), n (%)"),
            proportion_row("improved", int(improved.sum()), k, label="Improved, n (%)"),
            proportion_row("stable", int(stable.sum()), k, label="Stable, n (%)"),
        ]
        excluded = {r: frame.loc[reason == r, "patient_id"].tolist() for r in (_no_baseline(params), NO_FINAL)
                    if (reason == r).any()}
        notes = self._notes(params, int(frame["scores_ignored_near_relapse"].sum()), relapses_loaded,
                            int(frame["same_day_scores_dropped"].sum()))
        return EndpointResult(rows=rows, per_patient=frame, notes=notes, excluded=excluded)

    def compare(self, per_patient: pd.DataFrame, groups: pd.Series, levels: list[str], params: EdssParams, ctx) -> list[Row]:
        """Between groups, on the analysed patients: differences in the proportions without worsening
        and improved (Newcombe CI), and Mann-Whitney on the EDSS change (final - baseline)."""
        from endpointkit.comparisons import labelled, mann_whitney_rows, proportion_difference_rows

        used = per_patient["included"].to_numpy(dtype=bool)
        frame, group = per_patient[used], groups[used]
        rows = []
        for flag, words in (("no_progression", "No worsening"), ("improved", "Improved")):
            rows += labelled(proportion_difference_rows(frame[flag].astype(bool), group, levels),
                             f"{words}, difference in proportions (95% CI)", f"{flag}_difference")
        rows += labelled(mann_whitney_rows(frame["change"], group, levels, quantile_method=ctx.quantile_method),
                         "EDSS change, difference in medians (Mann-Whitney)", "change_mann_whitney")
        return rows

    @staticmethod
    def _notes(params: EdssParams, ignored: int, relapses_loaded: bool, dropped: int) -> list[str]:
        c_days = confirmation_days(params)
        if params.baseline == "last_before_index":
            baseline = (f"the latest score in [index - {params.baseline_window_days} days, index], else the "
                        f"earliest in (index, index + {AFTER_INDEX_DAYS} days]")
        else:
            baseline = (f"the score nearest to index in [index - {params.baseline_window_days} days, "
                        f"index + {AFTER_INDEX_DAYS} days], the earlier on a tie")
        better = "a decrease of at least the same threshold" if params.improvement == "same_as_threshold" else "any decrease"
        notes = [
            f"EDSS baseline: {baseline}; final: the latest score in (baseline date, follow-up end]. "
            f"Worsening: an increase of at least the threshold looked up from the baseline score "
            f"({params.threshold_rule}: {_rule_text(params.threshold_rule)}); improvement: {better}. "
            "No progression = stable + improved; proportions over patients with a baseline and a final score."
        ]
        months = f"{params.confirmation_months:g}"
        if c_days <= 0:
            notes.append("No confirmation: the final score is compared with the baseline score (reference setting not used).")
        else:
            ref = ("fixed reference: every score is measured against the baseline" if params.reference == "fixed" else
                   "roving reference: after each confirmed worsening or improvement the reference moves to the "
                   "confirming score and the threshold is looked up again from that score")
            notes.append(
                f"Confirmed over {months} months ({c_days} days): a worsening (improvement) at a score dated t counts "
                f"when a score exists on or after t + {c_days} days and every score from t up to and including the "
                f"first such score still meets it; only scores in (baseline date, follow-up end] are used; {ref}. "
                "Progressed = any confirmed worsening; improved = a confirmed improvement and no confirmed worsening."
            )
        if params.exclude_within_relapse_days > 0:
            text = (f"Scores dated 0-{params.exclude_within_relapse_days} days after a relapse onset are not used "
                    f"({ignored} ignored).")
            if not relapses_loaded:
                text += " No relapses table was loaded, so none was ignored."
            notes.append(text)
        if dropped:
            notes.append(f"Several scores on one day: the one on the later CSV line is used "
                         f"({dropped} dropped).")
        return notes


@hookimpl
def register_endpoints():
    return [EdssProgression]

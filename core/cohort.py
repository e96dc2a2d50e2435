"""From loaded tables to the analysed cohort: index date, follow-up, criteria, clean relapses.

Every patient and record that does not make it through is counted: patients in the attrition
flow (and listed in the data-quality report), records in the data-quality report with their
table, CSV line, patient and reason. All derivations are vectorised over patients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .data import LINE, PATIENT_ROW, TABLES, CohortData, empty_table
from .errors import SpecError
from .params import MONTH_DAYS
from .spec import CohortSettings

QUALITY_COLUMNS = ["table", "line", "patient_id", "reason", "action"]


@dataclass
class QualityLog:
    """Collects every dropped, merged, replaced or ignored record."""

    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, table: str, rows: pd.DataFrame, reason: str | pd.Series, action: str) -> None:
        if rows.empty:
            return
        self.parts.append(
            pd.DataFrame({
                "table": table,
                "line": rows[LINE].to_numpy() if LINE in rows else pd.NA,
                "patient_id": rows["patient_id"].to_numpy(),
                "reason": reason.to_numpy() if isinstance(reason, pd.Series) else reason,
                "action": action,
            })
        )

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=QUALITY_COLUMNS)
        return in_report_order(compact_quality(pd.concat(self.parts, ignore_index=True)[QUALITY_COLUMNS]))


QUALITY_CATEGORIES = ("table", "action")  # a handful of values over millions of records


def compact_quality(quality: pd.DataFrame) -> pd.DataFrame:
    """Data-quality records in dtypes that keep millions of them small: ``table`` and ``action`` as
    categories (sorted, so that the reports of any partitioning have the same dtype once
    concatenated) and ``line`` as nullable integers, where a Python object per record would cost
    five times the memory. The CSV text is the same."""
    columns = {}
    for name, column in quality.items():
        if name in QUALITY_CATEGORIES and not isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(pd.CategoricalDtype(sorted(column.dropna().unique())))
        elif name == "line" and column.dtype != "Int64":
            column = column.astype("Int64")
        columns[name] = column
    return pd.DataFrame(columns, index=quality.index, copy=False)


def concat_quality(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Data-quality records of several reports, one after the other, in the compact dtypes."""
    frames = [compact_quality(frame) for frame in frames if not frame.empty]
    if len(frames) <= 1:
        return frames[0] if frames else pd.DataFrame(columns=QUALITY_COLUMNS)
    for name in QUALITY_CATEGORIES:  # one sorted set of categories, so that pandas keeps them
        union = pd.CategoricalDtype(sorted(set().union(*(frame[name].cat.categories for frame in frames if name in frame))))
        frames = [frame.astype({name: union}) if name in frame else frame for frame in frames]
    return pd.concat(frames, ignore_index=True)


def report_order(quality: pd.DataFrame) -> np.ndarray:
    """Each data-quality record's place in the report: by table (canonical order, others after),
    then source line (records without one last), as one sortable integer."""
    rank = {name: i for i, name in enumerate(TABLES)}
    table = quality["table"].map(rank).fillna(len(rank)).to_numpy(dtype=np.int64)
    line = pd.to_numeric(quality["line"], errors="coerce").to_numpy(dtype=float)
    line = np.where(np.isnan(line), 2**40 - 1, np.clip(line, 0, 2**40 - 2)).astype(np.int64)
    return table * 2**40 + line


def in_report_order(quality: pd.DataFrame) -> pd.DataFrame:
    """The data-quality report in its one order (:func:`report_order`); a record reported twice
    keeps the order of its checks. Each record is checked in the partition of its patient, so the
    reports of partitions concatenated and put in this order are the report of the whole data,
    whatever the number of partitions."""
    if quality.empty:
        return quality.reset_index(drop=True)
    order = np.argsort(report_order(quality), kind="stable")
    return quality.iloc[order].reset_index(drop=True)


@dataclass(frozen=True)
class Refusal:
    """A cohort-wide error that one partition of the patients cannot decide alone (nobody received
    the index treatment; a criterion excludes every remaining patient): it is raised when it holds
    for the whole cohort, with the message built from every partition's ``evidence`` rows."""

    path: str
    step: int  # attrition step after which nobody remains
    kind: str  # "index" | "criterion"
    evidence: pd.DataFrame
    name: str = ""


def refusal_error(refusal: Refusal, remaining_before: int, evidence: pd.DataFrame, settings: CohortSettings) -> SpecError:
    """The SpecError a whole-cohort build raises, from the merged evidence of the partitions."""
    if refusal.kind == "index":
        return SpecError(refusal.path, f"no patient received '{settings.index_treatment}' (no course in treatments, "
                                       f"no administration); {_holdings_of(evidence)}")
    return SpecError(refusal.path, f"criterion '{refusal.name}' excludes every remaining patient "
                                   f"({remaining_before} -> 0); {_what_it_sees(evidence, _criterion(settings, refusal).value)}")


def _criterion(settings: CohortSettings, refusal: Refusal):
    return settings.criteria[int(refusal.path.rsplit("[", 1)[1].rstrip("]"))]


@dataclass
class Cohort:
    """The analysed patients (one row each) and their records.

    ``patients`` holds the patient columns plus ``index_date``, ``followup_end`` (under the spec's
    rule), ``treatment_end``, ``last_followup``, ``index_end_date``, ``index_stop_reason``,
    ``age_at_index`` and ``disease_duration_at_index`` (years).
    """

    patients: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    attrition: pd.DataFrame
    quality: pd.DataFrame
    settings: CohortSettings
    refusals: list[Refusal] = field(default_factory=list)  # partial builds only (build_cohort(partial=True))
    # every patient of the data (with the derived columns) and the attrition step at which each
    # left the cohort (len(attrition) = analysed): the attrition flow of any subgroup
    everyone: pd.DataFrame | None = None
    exits: np.ndarray | None = None

    def table(self, name: str) -> pd.DataFrame:
        """A canonical table restricted to the analysed patients (relapses already cleaned)."""
        return self.tables.get(name, empty_table(name))

    def memo(self, ctx, key: tuple, compute):
        """``ctx.cached(key, compute)`` for a derivation from this cohort (its per-patient frame, say).

        The key is extended with this cohort's identity, and the cache holds the cohort with the
        value, so the identity cannot be reused while the entry exists. Sensitivity variants that
        share the cohort and the settings in ``key`` reuse the derivation. Treat the value as
        read-only (copy a frame before adding columns).
        """
        return ctx.cached(("cohort.memo", id(self), *key), lambda: (self, compute()))[1]

    def with_table(self, name: str, frame: pd.DataFrame) -> Cohort:
        """A copy of the cohort with one table replaced (e.g. only severe relapses)."""
        return dataclasses.replace(self, tables={**self.tables, name: frame})

    def subset(self, keep: np.ndarray | pd.Series) -> Cohort:
        """The cohort of some of its patients (``keep``: a mask over ``patients``), each with all
        their records; attrition and quality stay those of the whole cohort."""
        keep = np.asarray(keep, dtype=bool)
        patients = self.patients[keep].reset_index(drop=True)
        ids = pd.Index(patients["patient_id"])
        tables = {name: frame[ids.get_indexer(frame["patient_id"]) >= 0] for name, frame in self.tables.items()}
        return dataclasses.replace(self, patients=patients, tables=tables)

    def split(self, labels: np.ndarray, levels: list[str]) -> dict[str, Cohort]:
        """``subset`` for each group of patients at once (``labels``: each patient's group): each
        table's records are matched to their patients once, not once per group."""
        labels = np.asarray(labels, dtype=object)
        rows = {name: self.patient_rows(frame) for name, frame in self.tables.items()}
        out = {}
        for level in levels:
            keep = labels == level
            tables = {}
            for name, frame in self.tables.items():
                codes = rows[name]
                wanted = (codes >= 0) & keep[np.clip(codes, 0, None)] if len(keep) else np.zeros(len(codes), dtype=bool)
                tables[name] = frame[wanted]
            out[level] = dataclasses.replace(self, patients=self.patients[keep].reset_index(drop=True), tables=tables)
        return out

    def patient_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """Each record's row in ``patients`` (-1: not an analysed patient): integer keys for
        ``np.bincount`` and numpy indexing instead of joins and group-bys on the text patient_id."""
        return pd.Index(self.patients["patient_id"]).get_indexer(frame["patient_id"])

    def with_patient_columns(self, name: str, *columns: str) -> pd.DataFrame:
        """A table with per-patient columns (e.g. ``index_date``) merged onto each record."""
        return self.table(name).merge(self.patients[["patient_id", *columns]], on="patient_id", how="inner")


def _lookup(ids: pd.Series, values: pd.Series) -> pd.Series:
    """``values`` (indexed by patient id) aligned to ``ids``; empty lookups keep their dtype."""
    return pd.Series(values.reindex(ids.to_numpy()).to_numpy(), index=ids.index, dtype=values.dtype)


def _at_rows(values: pd.Series, rows: np.ndarray, index: pd.Index) -> pd.Series:
    """``values`` placed at the patient ``rows`` (positions in a frame with ``index``), missing
    elsewhere: what :func:`_lookup` gives, without looking the text ids up."""
    where = np.full(len(index), -1, dtype=np.intp)
    where[rows] = np.arange(len(rows))
    return pd.Series(pd.api.extensions.take(values.array, where, allow_fill=True), index=index, dtype=values.dtype)


def id_order(ids: pd.Series) -> np.ndarray:
    """Each patient's place in patient_id order: integer keys that sort records as their text
    ids would, so that only the patients' ids are compared as text, once, not every record's."""
    order = np.empty(len(ids), dtype=np.int64)
    order[np.argsort(ids.to_numpy(dtype=object), kind="stable")] = np.arange(len(ids))
    return order


def _patient_keys(id_places: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each record's patient's place in patient_id order (-1: not a patient)."""
    return np.where(codes >= 0, id_places[np.clip(codes, 0, None)], -1) if codes.size else np.zeros(0, dtype=np.int64)


def _by_patient_and_date(frame: pd.DataFrame, keys: np.ndarray | None, column: str) -> np.ndarray | None:
    """Row positions of ``frame`` sorted as ``sort_values(["patient_id", column, LINE], kind="stable")``
    would sort it, from integer patient ``keys``; None where they cannot stand in for that sort
    (a record of no patient, a blank date, no integer line numbers)."""
    if keys is None or (keys < 0).any() or not pd.api.types.is_integer_dtype(frame[LINE].dtype):
        return None
    dates = frame[column].to_numpy(dtype="datetime64[ns]")
    if np.isnat(dates).any():
        return None
    return np.lexsort((frame[LINE].to_numpy(dtype=np.int64), dates.view(np.int64), keys))


def _days(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (later - earlier).dt.days


def _latest_record_date(tables: dict[str, pd.DataFrame], patients: pd.DataFrame,
                        codes: dict[str, np.ndarray], wanted: np.ndarray) -> pd.Series:
    """Latest date recorded in any table for the ``wanted`` patients (a mask over ``patients``;
    ``codes`` gives each table's rows as positions in ``patients``), for a missing last_followup_date."""
    parts = []
    for name, frame in tables.items():
        rows = _take_codes(codes[name], wanted)
        for column in TABLES[name].dates:
            if column in frame:
                parts.append(frame[["patient_id", column]].iloc[rows].rename(columns={column: "d"}))
    for column in TABLES["patients"].dates:
        parts.append(patients[["patient_id", column]][wanted].rename(columns={column: "d"}))
    stacked = pd.concat(parts, ignore_index=True).dropna(subset=["d"])
    return stacked.groupby("patient_id")["d"].max()


def _take_codes(codes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row positions whose patient (a position in the patients table, -1 = unknown) is wanted."""
    return np.flatnonzero((codes >= 0) & wanted[np.clip(codes, 0, None)]) if codes.size else np.zeros(0, dtype=np.int64)


def _named(values: pd.Series, wanted: str) -> np.ndarray:
    """``values.astype(str).str.strip().str.casefold() == wanted``, evaluated once per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    matches = (pd.Series(uniques, dtype=values.dtype).astype(str).str.strip().str.casefold() == wanted).to_numpy(dtype=bool)
    return matches[codes] if codes.size else np.zeros(0, dtype=bool)


def _group_extreme(codes: np.ndarray, days: pd.Series, n: int, largest: bool) -> pd.Series:
    """Earliest (or latest) date per patient position (NaT where none), from rows coded by patient."""
    values = days.to_numpy(dtype="datetime64[ns]")
    ok = (codes >= 0) & ~np.isnat(values)
    as_int = values[ok].view(np.int64)
    fill = np.iinfo(np.int64).min if largest else np.iinfo(np.int64).max
    out = np.full(n, fill, dtype=np.int64)
    (np.maximum if largest else np.minimum).at(out, codes[ok], as_int)
    result = out.view("datetime64[ns]").copy()
    result[out == fill] = np.datetime64("NaT")
    return pd.Series(result)


def clean_relapses(relapses: pd.DataFrame, settings, quality: QualityLog, keys: np.ndarray | None = None) -> pd.DataFrame:
    """Drop pseudo (and, if asked, unconfirmed) relapses; merge onsets greedily.

    An onset fewer than ``merge_within_days`` after the last *kept* onset of the same patient
    merges into it (sorted by date); the loop runs over relapse rank, vectorised over patients.
    ``keys``: each record's patient's place in patient_id order (:func:`id_order`), which sorts
    the records without comparing their text ids.
    """
    if settings.exclude_pseudo:
        pseudo = relapses["pseudo"].fillna(False).astype(bool)
        quality.add("relapses", relapses[pseudo], "pseudo relapse (cohort.relapses.exclude_pseudo)", "dropped")
        relapses = relapses[~pseudo]
        keys = None if keys is None else keys[~pseudo.to_numpy()]
    if settings.only_confirmed:
        confirmed = relapses["confirmed"].fillna(False).astype(bool)
        quality.add("relapses", relapses[~confirmed], "not confirmed (cohort.relapses.only_confirmed)", "dropped")
        relapses = relapses[confirmed]
        keys = None if keys is None else keys[confirmed.to_numpy()]
    order = _by_patient_and_date(relapses, keys, "onset_date")
    if order is None:
        relapses = relapses.sort_values(["patient_id", "onset_date", LINE], kind="stable").reset_index(drop=True)
    else:
        relapses = relapses.iloc[order].reset_index(drop=True)
    n = len(relapses)
    if n == 0 or settings.merge_within_days <= 0:
        return relapses
    codes = pd.factorize(relapses["patient_id"])[0] if order is None else keys[order]  # one integer per patient
    rank = relapses.groupby(codes).cumcount().to_numpy()
    day = relapses["onset_date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    kept = np.zeros(n, dtype=bool)
    merged_into = np.full(n, -1)
    last_day = np.full(codes.max() + 1, np.iinfo(np.int64).min // 2)
    last_row = np.full(codes.max() + 1, -1)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(rank.max() + 2))
    for k in range(rank.max() + 1):
        rows = order[bounds[k]:bounds[k + 1]]
        patient = codes[rows]
        new = day[rows] - last_day[patient] >= settings.merge_within_days
        kept[rows[new]] = True
        last_day[patient[new]] = day[rows[new]]
        last_row[patient[new]] = rows[new]
        merged_into[rows[~new]] = last_row[patient[~new]]
    merged = relapses[~kept]
    if not merged.empty:
        target = relapses.iloc[merged_into[~kept]]
        reason = (
            f"onset within {settings.merge_within_days} days of the relapse of "
            + target["onset_date"].dt.strftime("%Y-%m-%d").to_numpy().astype(object)
            + " (line " + target[LINE].astype(str).to_numpy().astype(object) + "); merged into it"
        )
        quality.add("relapses", merged, pd.Series(reason, index=merged.index), "merged")
    return relapses[kept].reset_index(drop=True)


def _after_birth_and_onset(name: str, column: str, frame: pd.DataFrame, codes: np.ndarray, born: np.ndarray,
                           disease_onset: np.ndarray, quality: QualityLog) -> np.ndarray:
    """Which records are dated on or after their patient's birth and disease onset; the others are
    impossible (a relapse or an EDSS score before the disease began), reported and not used."""
    day = frame[column].to_numpy(dtype="datetime64[ns]")
    known = codes >= 0
    row = np.clip(codes, 0, None)
    before_birth = known & (day < born[row])  # NaT compares False: a missing date checks nothing
    before_onset = known & ~before_birth & (day < disease_onset[row])
    quality.add(name, frame[before_birth], f"{column} before the patient's birth_date", "ignored")
    quality.add(name, frame[before_onset], f"{column} before the patient's onset_date (disease onset)", "ignored")
    return ~(before_birth | before_onset)


def _holdings(treatments: pd.DataFrame, admins: pd.DataFrame) -> pd.DataFrame:
    """Each patient's treatments (courses and administrations), the evidence of :func:`_holdings_of`."""
    return pd.concat([treatments[["patient_id", "treatment"]], admins[["patient_id", "treatment"]]])


def _holdings_of(both: pd.DataFrame) -> str:
    """'the data hold: IVIG (20 patients), azathioprine (15 patients)' (courses and administrations)."""
    counts = both.groupby("treatment")["patient_id"].nunique().sort_values(ascending=False, kind="stable")
    if counts.empty:
        return "the treatments table holds no treatment"
    shown = ", ".join(f"{name} ({n} patient{'s' if n != 1 else ''})" for name, n in counts.head(12).items())
    return f"the data hold: {shown}" + (f" and {len(counts) - 12} more" if len(counts) > 12 else "")


def _what_it_sees(patients: pd.DataFrame, value) -> str:
    """The values of the columns a criterion looks at, with counts, so that a user sees why nothing matched."""
    columns = sorted(value.columns()) if hasattr(value, "columns") else ["treatment_months"]
    parts = []
    for column in columns:
        if column not in patients:
            continue
        series = patients[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
            shown = f"from {_show(series.min())} to {_show(series.max())}" if series.notna().any() else "blank"
        else:
            counts = series.astype(object).where(series.notna(), "(blank)").value_counts()
            shown = ", ".join(f"{v!r} ({n})" for v, n in counts.head(8).items())
        parts.append(f"{column}: {shown}")
    return "the remaining patients have " + "; ".join(parts) if parts else "no patient met it"


def _show(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return f"{value:.4g}" if isinstance(value, float) else str(value)


EARLIEST_PLAUSIBLE = pd.Timestamp("1900-01-01")
MAX_AGE_YEARS = 120


def _implausible_patient_dates(patients: pd.DataFrame, quality: QualityLog) -> None:
    """Birth and onset dates that cannot be right are reported and set blank (in place), so that no
    age or disease duration is computed from them: a birth after the index date or in the future, an
    age over 120 at index, an onset before birth or in the future, either before 1900."""
    today = pd.Timestamp.today().normalize()
    birth, onset, index = patients["birth_date"], patients["onset_date"], patients["index_date"]
    age_days = (index - birth).dt.days
    checks = [
        ("birth_date", birth < EARLIEST_PLAUSIBLE, "birth_date before 1900"),
        ("birth_date", birth > today, "birth_date in the future"),
        ("birth_date", birth > index, "birth_date after the index date"),
        ("birth_date", age_days > MAX_AGE_YEARS * 365.25, f"age over {MAX_AGE_YEARS} years at the index date"),
        ("onset_date", onset < EARLIEST_PLAUSIBLE, "onset_date before 1900"),
        ("onset_date", onset > today, "onset_date in the future"),
        ("onset_date", onset < birth, "onset_date before birth_date"),
    ]
    blank = {"birth_date": pd.Series(False, index=patients.index), "onset_date": pd.Series(False, index=patients.index)}
    effect = {"birth_date": "birth_date not used: age not computed", "onset_date": "onset_date not used: disease duration not computed"}
    for column, mask, reason in checks:
        new = mask.fillna(False).astype(bool) & ~blank[column]
        quality.add("patients", patients[new], reason, effect[column])
        blank[column] |= new
    for column, mask in blank.items():
        if mask.any():
            patients.loc[mask, column] = pd.NaT


def build_cohort(data: CohortData, settings: CohortSettings, criteria_registry, *, partial: bool = False) -> Cohort:
    """Apply the cohort definition of the spec to the loaded data.

    ``partial``: the data are one partition of the patients; a cohort-wide error is recorded in
    ``Cohort.refusals`` (decided once the partitions are merged) instead of raised.
    """
    quality = QualityLog()
    refusals: list[Refusal] = []
    patients = data.table("patients").copy()
    steps = [("patients in data", len(patients))]
    cutoff = pd.Timestamp(settings.cutoff) if settings.cutoff else None

    tables: dict[str, pd.DataFrame] = {}
    for name, frame in data.tables.items():
        if name == "patients":
            continue
        column = TABLES[name].date_column
        if cutoff is not None and column:
            after = frame[column] > cutoff
            quality.add(name, frame[after], f"{column} after the data cut-off {settings.cutoff}", "ignored")
            frame = frame[~after]
        tables[name] = frame

    # every record's patient as a position in `patients` (-1: not a patient), computed once;
    # patient ids are unique (checked when the data were loaded)
    patients = patients.reset_index(drop=True)
    pid = patients["patient_id"]
    n_all = len(patients)
    ids = pd.Index(pid)
    loaded_order = PATIENT_ROW in patients and np.array_equal(patients[PATIENT_ROW].to_numpy(), np.arange(n_all))
    codes = {name: frame[PATIENT_ROW].to_numpy() if loaded_order and PATIENT_ROW in frame else ids.get_indexer(frame["patient_id"])
             for name, frame in tables.items()}

    # index date: first course start, else first administration (index.event first_start), or the reverse
    treatments = tables["treatments"]
    wanted = settings.index_treatment.strip().casefold()
    is_index = _named(treatments["treatment"], wanted)
    id_places = id_order(pid)
    courses = treatments[is_index]
    course_codes = codes["treatments"][is_index]
    order = _by_patient_and_date(courses, _patient_keys(id_places, course_codes), "start_date")
    if order is None:
        courses = courses.sort_values(["patient_id", "start_date", LINE], kind="stable")
        restart = courses["patient_id"].duplicated(keep="first").to_numpy()
    else:  # sorted by patient: a later course follows its patient's first
        courses, course_codes = courses.iloc[order], course_codes[order]
        restart = np.append(False, course_codes[1:] == course_codes[:-1]) if len(order) else np.zeros(0, dtype=bool)
    quality.add("treatments", courses[restart], f"later course of {settings.index_treatment}; only the first course is analysed", "ignored")
    first = courses[~restart]
    if order is None:
        first = first.set_index("patient_id")
        first_course = {column: _lookup(pid, first[column]) for column in ("start_date", "end_date", "stop_reason")}
    else:
        first_course = {column: _at_rows(first[column], course_codes[~restart], pid.index)
                        for column in ("start_date", "end_date", "stop_reason")}
    admins = tables.get("administrations", empty_table("administrations"))
    admin_is_index = _named(admins["treatment"], wanted)
    index_admins = admins[admin_is_index]
    index_admin_codes = codes.get("administrations", np.zeros(0, dtype=np.intp))[admin_is_index]
    first_admin_by_row = _group_extreme(index_admin_codes, index_admins["date"], n_all, largest=False)

    first_start = first_course["start_date"]
    if settings.index_event == "first_administration":
        index_date = first_admin_by_row.fillna(first_start)
    else:
        index_date = first_start.fillna(first_admin_by_row)
    patients["index_date"] = index_date.astype("datetime64[ns]")
    patients["index_end_date"] = first_course["end_date"].astype("datetime64[ns]")
    patients["index_stop_reason"] = first_course["stop_reason"]
    if patients["index_date"].isna().all():
        refusal = Refusal("cohort.index.treatment", 1, "index", _holdings(treatments, admins))
        if not partial:
            raise refusal_error(refusal, len(patients), refusal.evidence, settings)
        refusals.append(refusal)
    _implausible_patient_dates(patients, quality)
    born = patients["birth_date"].to_numpy(dtype="datetime64[ns]")
    disease_onset = patients["onset_date"].to_numpy(dtype="datetime64[ns]")

    # last follow-up: missing -> latest date recorded anywhere (reported); only needed where missing
    blank_fu = patients["last_followup_date"].isna().to_numpy()
    latest_dates = _latest_record_date(tables, patients, codes, blank_fu)
    latest = _lookup(pid, latest_dates).astype("datetime64[ns]")
    missing_fu = patients["last_followup_date"].isna() & latest.notna()
    quality.add("patients", patients[missing_fu], "last_followup_date missing; replaced by the latest date recorded for the patient", "replaced")
    last_followup = patients["last_followup_date"].fillna(latest)
    if cutoff is not None:
        last_followup = last_followup.clip(upper=cutoff)
    patients["last_followup"] = last_followup

    # treatment end: end_date, else last administration + grace (capped at last follow-up), else last follow-up
    index_day = patients["index_date"].to_numpy(dtype="datetime64[ns]")
    known = index_admin_codes >= 0
    on_or_after = np.zeros(index_admin_codes.size, dtype=bool)
    admin_day = index_admins["date"].to_numpy(dtype="datetime64[ns]")
    on_or_after[known] = admin_day[known] >= index_day[index_admin_codes[known]]  # NaT compares False
    last_admin = _group_extreme(np.where(on_or_after, index_admin_codes, -1), index_admins["date"], n_all, largest=True)
    by_admin = (last_admin + pd.Timedelta(days=settings.grace_days)).where(
        last_followup.isna() | (last_admin + pd.Timedelta(days=settings.grace_days) <= last_followup), last_followup
    )
    treatment_end = patients["index_end_date"].fillna(by_admin.where(last_admin.notna(), last_followup))
    if cutoff is not None:
        treatment_end = treatment_end.clip(upper=cutoff)
    patients["treatment_end"] = treatment_end
    patients["followup_end"] = treatment_end if settings.follow_up_end == "treatment_end" else last_followup
    year = 365.25
    patients["age_at_index"] = _days(patients["index_date"], patients["birth_date"]) / year
    patients["disease_duration_at_index"] = _days(patients["index_date"], patients["onset_date"]) / year
    patients["treatment_months"] = _days(patients["treatment_end"], patients["index_date"]) / MONTH_DAYS
    patients["followup_months"] = _days(patients["followup_end"], patients["index_date"]) / MONTH_DAYS

    everyone = patients
    exits = np.full(n_all, -1, dtype=np.int64)

    def exclude(mask: pd.Series, step: str) -> None:
        nonlocal patients
        quality.add("patients", patients[mask], f"did not meet criterion '{step}'", "excluded")
        exits[patients.index.to_numpy()[mask.to_numpy(dtype=bool)]] = len(steps)
        patients = patients[~mask]
        steps.append((step, len(patients)))

    exclude(patients["index_date"].isna(), f"received {settings.index_treatment}")
    ends_ok = patients["followup_end"].notna() & (patients["followup_end"] > patients["index_date"])
    exclude(~ends_ok, "follow-up end after the index date")
    for i, criterion in enumerate(settings.criteria):
        keep = criteria_registry.get(criterion.kind, "cohort.criteria").keep(patients, criterion.value).astype(bool)
        if len(patients) and not keep.any():
            refusal = Refusal(f"cohort.criteria[{i}]", len(steps), "criterion", patients, criterion.name)
            if not partial:
                raise refusal_error(refusal, len(patients), patients, settings)
            refusals.append(refusal)
        exclude(~keep, criterion.name)

    kept = np.zeros(n_all, dtype=bool)  # the analysed patients' records, from the codes
    kept[patients.index.to_numpy()] = True
    for name, frame in tables.items():
        if not (kept.all() and (codes[name] >= 0).all()):
            rows = _take_codes(codes[name], kept)
            tables[name], codes[name] = frame.iloc[rows], codes[name][rows]
        else:
            tables[name] = frame.copy(deep=False)
    patients = patients.reset_index(drop=True)
    for name, column in (("relapses", "onset_date"), ("edss", "date")):
        if name in tables and len(tables[name]):
            keep = _after_birth_and_onset(name, column, tables[name], codes[name], born, disease_onset, quality)
            tables[name], codes[name] = tables[name][keep], codes[name][keep]
    if "relapses" in tables:
        tables["relapses"] = clean_relapses(tables["relapses"], settings.relapses, quality,
                                            _patient_keys(id_places, codes["relapses"]))
    for name in ("edss", "titers"):  # the endpoints use the later CSV line of a same-day pair
        if name in tables and len(tables[name]):
            frame = tables[name]
            pairs = pd.DataFrame({"patient": codes[name], "date": frame["date"].to_numpy()}).duplicated(keep=False).to_numpy()
            same_day = frame[pairs].sort_values(["patient_id", "date", LINE], kind="stable")
            earlier = same_day.duplicated(["patient_id", "date"], keep="last")
            quality.add(name, same_day[earlier], "another record of the patient on the same day; the later CSV line is used", "ignored")

    attrition = pd.DataFrame(steps, columns=["step", "remaining"])
    attrition["excluded"] = (-attrition["remaining"].diff()).fillna(0).astype(int)
    exits[exits < 0] = len(steps)
    return Cohort(patients=patients, tables=tables, attrition=attrition, quality=quality.frame(), settings=settings,
                  refusals=refusals, everyone=everyone, exits=exits)

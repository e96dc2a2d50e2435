"""A seeded synthetic patient registry in the canonical tables, with the truth written beside it.

``endpointkit simulate --patients N [--seed S] -o DIR [--set name=value ...]`` writes
``patients.csv``, ``treatments.csv``, ``administrations.csv``, ``relapses.csv``, ``edss.csv``,
``titers.csv``, ``adverse_events.csv`` and ``truth.json`` (every parameter, the seed and the true
values an analysis should recover). From Python: :func:`simulate` (the tables),
:func:`simulate_registry` (tables, truth and the hidden per-patient truth) and
:func:`write_registry`.

The model (all times are whole days; a year is 365.25 days, as in the endpoints):

* Each patient has an onset date (the onset attack is a row in ``relapses``), a background
  treatment (azathioprine) started between onset and index, and the index treatment (IVIG)
  started at the index date, ``disease_years_min`` + Exponential years after onset.
* Relapses: a gamma frailty ``f ~ Gamma(frailty_shape, mean 1)`` per patient multiplies every rate
  of that patient, so the rate ratio ``post_rate / pre_rate`` holds within every patient. Relapses
  are Poisson processes: ``pre_rate * f`` in the pre window ``(onset, index]``, ``post_rate * f``
  in the post window ``(index, treatment end]``, ``off_rate * f`` after a stop ``(end, last
  follow-up]``. The onset attack is not part of the pre-window process: ``since_onset`` counts it,
  ``since_onset_excl_first`` recovers ``pre_rate``.
* Choice (stated in truth.json): events of a Poisson process may fall fewer than 30 days apart; the
  cohort's 30-day merge then counts them as one, so an analysis with merging sees fewer relapses
  than the process generated: at the defaults about 12% fewer before index (high-frailty patients)
  and 3% fewer after. ``realized.after_cohort_cleaning`` gives the exact counts left by the
  cohort's cleaning, the target of a pipeline check; the process counts are the truth for rates.
* Treatment persistence: time to stop ~ Exponential(``stop_rate`` per year), independent of
  relapses and frailty; a stop before last follow-up gets an ``end_date`` and a reason (relapse /
  adverse event / patient choice / other, drawn independently of the relapse history); the rest are
  ongoing (blank ``end_date``) with administrations every 4-8 weeks up to last follow-up, so the
  cohort's grace rule (last administration + 90 days, capped at last follow-up) ends an ongoing
  course at last follow-up, as the truth does.
* Realistic mess: extra relapse rows 0-29 days after a true relapse (``duplicate_fraction``), rows
  flagged ``pseudo`` (``pseudo_fraction``), blank ``last_followup_date`` (``missing_followup_fraction``),
  titers in mixed formats (``1:480``, ``480``, ``negative``, ``neg``, ``<1:10``), a few blank doses.

Everything is vectorised numpy (counts by ``rng.poisson``, expanded with ``np.repeat``); the same
seed and parameters give byte-identical files.

Large registries (``--chunk-patients C``, :func:`simulate_chunks`, :func:`write_chunked_registry`):
C patients at a time, chunk ``c`` from its own child of ``SeedSequence(seed)``, each chunk written
before the next is made. The registry is then fixed by (seed, C) and differs from the unchunked one;
the truth is counted over all chunks (:func:`add_tally`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UsageError, suggest
from .params import param

YEAR = 365.25
TABLE_NAMES = ("patients", "treatments", "administrations", "relapses", "edss", "titers", "adverse_events")
STOP_REASONS = ("relapse", "adverse event", "patient choice", "other")
RELAPSE_KINDS = ("onset", "pre", "post", "off", "duplicate", "pseudo")  # sort order on a tie


# --------------------------------------------------------------------------- true parameters


@dataclass(frozen=True)
class TrueParameters:
    """The known truth of a simulated registry; every field can be set with ``--set name=value``."""

    pre_rate: float = param(1.0, "Relapses per patient-year before index (onset, index], for a patient of frailty 1.", kind="rate")
    post_rate: float = param(0.3, "Relapses per patient-year on the index treatment (index, treatment end].", kind="rate")
    off_rate: float | None = param(None, "Relapses per patient-year after a stop (end, last follow-up]; blank/none = pre_rate.", kind="optional_rate")
    frailty_shape: float = param(2.0, "Shape k of the gamma frailty (mean 1, variance 1/k); inf = no between-patient variation.", kind="positive")
    onset_relapse: bool = param(True, "Write the onset attack as a relapse row at onset_date.", kind="bool")
    disease_years_mean: float = param(4.0, "Mean years from onset to index (minimum + exponential).", kind="positive")
    disease_years_min: float = param(0.5, "Minimum years from onset to index.", kind="positive")
    followup_years_mean: float = param(4.0, "Mean potential years from index to last follow-up (minimum + exponential, cut at extract_date).", kind="positive")
    followup_years_min: float = param(0.25, "Minimum potential years from index to last follow-up.", kind="positive")
    stop_rate: float = param(0.15, "Hazard of stopping the index treatment, per year (exponential time to stop).", kind="rate")
    stop_relapse: float = param(0.5, "Probability that a stop is for 'relapse'.", kind="probability")
    stop_adverse_event: float = param(0.15, "Probability that a stop is for 'adverse event'.", kind="probability")
    stop_patient_choice: float = param(0.2, "Probability that a stop is for 'patient choice' (the rest: 'other').", kind="probability")
    admin_weeks_min: float = param(4.0, "Shortest interval between administrations, weeks.", kind="positive")
    admin_weeks_max: float = param(8.0, "Longest interval between administrations, weeks (at most 12, below the 90-day grace).", kind="positive")
    edss_onset_mean: float = param(2.5, "Mean EDSS after the onset attack (rounded to the EDSS grid).", kind="nonnegative")
    edss_onset_sd: float = param(1.0, "SD of the EDSS after the onset attack.", kind="nonnegative")
    edss_steps_per_relapse: float = param(1.0, "Mean residual EDSS worsening per relapse, in grid steps (Poisson; a step is 0.5, or 0 -> 1.0).", kind="nonnegative")
    edss_improve_prob: float = param(0.25, "Probability that a patient improves by 1-2 grid steps from 6 months after index.", kind="probability")
    antibody_positive: float = param(0.92, "Proportion of patients with antibody_status positive.", kind="probability")
    titer_median: float = param(480.0, "Median reciprocal titer before treatment (positive patients; log2-normal).", kind="positive")
    titer_log2_sd: float = param(1.5, "Between-patient SD of the log2 titer before treatment.", kind="nonnegative")
    titer_log2_drop: float = param(2.0, "Mean fall of the log2 titer on treatment (2 = a quarter: 1:480 -> 1:120).", kind="real")
    titer_drop_sd: float = param(1.5, "Between-patient SD of that fall.", kind="nonnegative")
    titer_drop_months: float = param(12.0, "Months after index over which the fall is reached (linearly).", kind="positive")
    female: float = param(0.85, "Proportion of women.", kind="probability")
    onset_age_mean: float = param(40.0, "Mean age at onset, years.", kind="positive")
    onset_age_sd: float = param(13.0, "SD of the age at onset, years (cut to 10-80).", kind="nonnegative")
    ae_rate: float = param(0.5, "Adverse events per patient-year on the index treatment.", kind="rate")
    background_ae_rate: float = param(0.1, "Adverse events per patient-year on the background treatment before index.", kind="rate")
    duplicate_fraction: float = param(0.03, "Probability that a relapse gets an extra row 0-29 days later (to be merged).", kind="probability")
    pseudo_fraction: float = param(0.03, "Extra rows flagged pseudo=true, per true relapse row.", kind="probability")
    missing_followup_fraction: float = param(0.01, "Proportion of patients with a blank last_followup_date.", kind="probability")
    index_first: str = param("2008-01-01", "Earliest index date (YYYY-MM-DD).", kind="date")
    extract_date: str = param("2019-12-31", "Data extract date: last follow-up is at most this (YYYY-MM-DD).", kind="date")
    index_treatment: str = param("IVIG", "Name of the index treatment.", kind="name")
    background_treatment: str = param("azathioprine", "Name of the background treatment started before index.", kind="name")
    arms: bool = param(False, "Two-arm design: each patient is in arm A or B (patients.group), arm B with the two ratios below.", kind="bool")
    arm_b_fraction: float = param(0.5, "Probability that a patient is in arm B (two-arm design).", kind="probability")
    arm_b_rate_ratio: float = param(1.0, "Arm B's relapse rate on the index treatment over arm A's (two-arm design).", kind="positive")
    arm_b_stop_hazard_ratio: float = param(1.0, "Arm B's hazard of stopping the index treatment over arm A's (two-arm design).", kind="positive")

    @property
    def resolved_off_rate(self) -> float:
        return self.pre_rate if self.off_rate is None else self.off_rate

    @property
    def stop_other(self) -> float:
        return max(0.0, 1.0 - self.stop_relapse - self.stop_adverse_event - self.stop_patient_choice)


PARAMETER_NAMES = tuple(f.name for f in dataclasses.fields(TrueParameters))

_EXPECTED = {
    "rate": "a number >= 0",
    "optional_rate": "a number >= 0 or none",
    "positive": "a number > 0",
    "nonnegative": "a number >= 0",
    "real": "a number",
    "probability": "a number between 0 and 1",
    "bool": "true or false",
    "date": "a date YYYY-MM-DD",
    "name": "a non-empty name",
}


def _option(name: str, value: Any) -> str:
    return f"--set {name}={value}"


def _coerce(name: str, kind: str, value: Any) -> Any:
    """One parameter value from text (the command line) or a Python value; None when invalid."""
    text = str(value).strip()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if kind == "date":
        try:
            return text if str(np.datetime64(text, "D")) == text else None
        except ValueError:
            return None
    if kind == "name":
        return text or None
    if kind == "optional_rate" and (value is None or text.lower() in ("", "none", "null")):
        return "none"
    if isinstance(value, bool):
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if math.isnan(number):
        return None
    ok = {
        "rate": number >= 0 and math.isfinite(number),
        "optional_rate": number >= 0 and math.isfinite(number),
        "positive": number > 0,
        "nonnegative": number >= 0 and math.isfinite(number),
        "real": math.isfinite(number),
        "probability": 0 <= number <= 1,
    }[kind]
    if not ok or (number == math.inf and name != "frailty_shape"):
        return None
    return number


def make_parameters(values: Mapping[str, Any] | None = None) -> TrueParameters:
    """TrueParameters from ``{name: value}`` (text or Python values), validated.

    Raises :class:`UsageError` naming the ``--set`` option, with the valid names for a typo.
    """
    fields = {f.name: f for f in dataclasses.fields(TrueParameters)}
    chosen: dict[str, Any] = {}
    for name, value in (values or {}).items():
        if name not in fields:
            raise UsageError(
                f"{_option(name, value)}: unknown parameter '{name}'{suggest(name, fields)}; "
                f"valid names: {', '.join(PARAMETER_NAMES)}"
            )
        kind = fields[name].metadata["kind"]
        coerced = _coerce(name, kind, value)
        if coerced is None:
            raise UsageError(f"{_option(name, value)}: expected {_EXPECTED[kind]}")
        chosen[name] = None if coerced == "none" else coerced
    params = TrueParameters(**chosen)
    _check_together(params)
    return params


def _check_together(p: TrueParameters) -> None:
    def fail(names: str, message: str) -> None:
        raise UsageError(f"--set {names}: {message}")

    if p.stop_relapse + p.stop_adverse_event + p.stop_patient_choice > 1 + 1e-12:
        fail("stop_relapse/stop_adverse_event/stop_patient_choice", "the stop-reason probabilities add up to more than 1")
    if p.disease_years_mean <= p.disease_years_min:
        fail("disease_years_mean", f"expected more than disease_years_min ({p.disease_years_min:g})")
    if p.followup_years_mean <= p.followup_years_min:
        fail("followup_years_mean", f"expected more than followup_years_min ({p.followup_years_min:g})")
    if not 0 < p.admin_weeks_min <= p.admin_weeks_max <= 12:
        fail("admin_weeks_min/admin_weeks_max", "expected 0 < admin_weeks_min <= admin_weeks_max <= 12 (below the 90-day grace)")
    if _day(p.extract_date) - 180 < _day(p.index_first):
        fail("index_first", f"expected at least 180 days before extract_date ({p.extract_date})")
    if not p.arms and (p.arm_b_rate_ratio != 1.0 or p.arm_b_stop_hazard_ratio != 1.0):
        fail("arms", "arm_b_rate_ratio and arm_b_stop_hazard_ratio need arms=true")


def parse_settings(items: list[str]) -> TrueParameters:
    """TrueParameters from the command line's ``--set name=value`` items."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {item}: expected NAME=VALUE, e.g. post_rate=0.3; valid names: {', '.join(PARAMETER_NAMES)}")
        values[name.strip()] = value.strip()
    return make_parameters(values)


def _resolve(params: TrueParameters | Mapping[str, Any] | None) -> TrueParameters:
    if isinstance(params, TrueParameters):
        _check_together(params)
        return params
    return make_parameters(params)


# --------------------------------------------------------------------------- vectorised helpers


def _day(iso: str) -> int:
    return int(np.datetime64(iso, "D").astype(np.int64))


def _iso(days: np.ndarray) -> np.ndarray:
    """Whole days since 1970-01-01 -> 'YYYY-MM-DD' (object array; through a lookup of the days spanned)."""
    days = np.asarray(days, dtype=np.int64)
    if days.size == 0:
        return np.empty(0, dtype=object)
    first = int(days.min())
    span = np.arange(first, int(days.max()) + 1).astype("datetime64[D]")
    return np.datetime_as_string(span, unit="D").astype(object)[days - first]


def _iso_or_blank(days: np.ndarray, present: np.ndarray) -> np.ndarray:
    text = _iso(np.where(present, days, 0))
    text[~present] = None
    return text


def _events(rng: np.random.Generator, counts: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Event days of Poisson counts placed uniformly in each window (start, start + length]."""
    who = np.repeat(np.arange(counts.size), counts)
    day = start[who] + np.floor(rng.random(who.size) * length[who]).astype(np.int64) + 1
    return who, day


def _recurring(rng: np.random.Generator, start: np.ndarray, end: np.ndarray, lo: int | np.ndarray, hi: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Visits from ``start`` every lo..hi days (inclusive; per patient or one for all) up to ``end``."""
    span = end - start
    slots = np.where(span >= 0, span // lo + 1, 0)
    who = np.repeat(np.arange(start.size), slots)
    if np.ndim(lo) == 0:
        gaps = rng.integers(lo, hi + 1, who.size)
    else:
        gaps = rng.integers(lo[who], hi[who] + 1)
    present = slots > 0
    first = (np.cumsum(slots) - slots)[present]
    gaps[first] = 0
    total = np.cumsum(gaps)
    day = start[who] + total - np.repeat(total[first], slots[present])
    keep = day <= end[who]
    return who[keep], day[keep]


def _merge_within(who: np.ndarray, day: np.ndarray, gap: int) -> np.ndarray:
    """The cohort's relapse merge: rows sorted by patient and day; True where a row is kept.

    A row fewer than ``gap`` days after the last kept row of its patient merges into it (greedy);
    the loop runs over rank within patient, vectorised over patients.
    """
    kept = np.zeros(who.size, dtype=bool)
    if who.size == 0:
        return kept
    position = np.arange(who.size)
    first = np.r_[True, who[1:] != who[:-1]]
    rank = position - np.maximum.accumulate(np.where(first, position, 0))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))
    last_kept = np.full(int(who.max()) + 1, np.iinfo(np.int64).min // 2)
    for r in range(rank.max() + 1):
        rows = by_rank[bounds[r]:bounds[r + 1]]
        new = day[rows] - last_kept[who[rows]] >= gap
        kept[rows[new]] = True
        last_kept[who[rows[new]]] = day[rows[new]]
    return kept


def _pick(choices: tuple[str, ...], code: np.ndarray) -> np.ndarray:
    """Text by code (object array, as pandas keeps it): ``_pick(("false", "true"), flags)``."""
    return np.array(choices, dtype=object)[np.asarray(code, dtype=np.int64)]


def _order(*keys: np.ndarray) -> np.ndarray:
    """Stable sort order by several non-negative integer keys, the first most significant."""
    combined = np.zeros(keys[0].size, dtype=np.int64)
    for key in keys:
        key = np.asarray(key, dtype=np.int64)
        low = int(key.min()) if key.size else 0
        width = (int(key.max()) - low + 1) if key.size else 1
        combined = combined * width + (key - low)
    return np.argsort(combined, kind="stable")


# --------------------------------------------------------------------------- the generator


@dataclass
class Simulation:
    """A simulated registry: the canonical tables (CSV text), the truth and the hidden per-patient truth.

    ``relapse_kind`` is aligned with ``tables['relapses']``: onset, pre, post, off (the true
    relapses), duplicate or pseudo (the extra rows).
    """

    tables: dict[str, pd.DataFrame]
    truth: dict
    patients: pd.DataFrame
    relapse_kind: np.ndarray
    tally: dict = dataclasses.field(default_factory=dict)  # the counts behind the truth (see add_tally)


def simulate(n_patients: int, seed: int = 1, params: TrueParameters | Mapping[str, Any] | None = None,
             chunk_patients: int | None = None) -> dict[str, pd.DataFrame]:
    """The canonical tables of a synthetic registry (values as they appear in the CSV files)."""
    return simulate_registry(n_patients, seed, params, chunk_patients).tables


def _checked(n_patients: int, seed: int, chunk_patients: int | None) -> tuple[int, int, int | None]:
    if isinstance(n_patients, bool) or int(n_patients) < 1:
        raise UsageError(f"--patients: expected a number of patients >= 1, got {n_patients}")
    if isinstance(seed, bool) or int(seed) < 0:
        raise UsageError(f"--seed: expected a whole number >= 0, got {seed}")
    if chunk_patients is not None and (isinstance(chunk_patients, bool) or int(chunk_patients) < 1):
        raise UsageError(f"--chunk-patients: expected a number of patients per chunk >= 1, got {chunk_patients}")
    return int(n_patients), int(seed), None if chunk_patients is None else int(chunk_patients)


def simulate_registry(n_patients: int, seed: int = 1, params: TrueParameters | Mapping[str, Any] | None = None,
                      chunk_patients: int | None = None) -> Simulation:
    """Tables, truth and per-patient truth of a synthetic registry (see the module docstring).

    With ``chunk_patients`` the registry is the chunks of :func:`simulate_chunks` put end to end,
    with the truth of all of them: another registry than the seed's unchunked one (each chunk has a
    random stream of its own), the same for the same seed and chunk size."""
    n, seed, chunk = _checked(n_patients, seed, chunk_patients)
    p = _resolve(params)
    if chunk is None:
        sim = _generate(p, n, np.random.default_rng(seed), np.random.default_rng((seed, 1)), 0, _id_width(n))
        sim.truth = _truth(p, seed, sim.tally)
        return sim
    tally: dict = {}
    pieces = []
    for piece in simulate_chunks(n, seed, p, chunk):
        add_tally(tally, piece.tally)
        pieces.append(piece)
    tables = {name: pd.concat([s.tables[name] for s in pieces], ignore_index=True) for name in TABLE_NAMES}
    return Simulation(
        tables=tables, truth=_truth(p, seed, tally, chunk),
        patients=pd.concat([s.patients for s in pieces], ignore_index=True),
        relapse_kind=np.concatenate([s.relapse_kind for s in pieces]), tally=tally,
    )


def chunk_generators(seed: int, chunk: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The random streams of chunk ``chunk`` (0, 1, ...): the chunk's child of ``SeedSequence(seed)``
    (what ``SeedSequence(seed).spawn`` gives it), split in two: the main stream and the arms' stream."""
    main, arms = np.random.SeedSequence(int(seed), spawn_key=(int(chunk),)).spawn(2)
    return np.random.default_rng(main), np.random.default_rng(arms)


def simulate_chunks(n_patients: int, seed: int = 1, params: TrueParameters | Mapping[str, Any] | None = None,
                    chunk_patients: int = 250_000) -> Iterator[Simulation]:
    """The registry of ``n_patients`` generated ``chunk_patients`` at a time, one chunk in memory.

    Chunk ``c`` holds patients ``c * chunk_patients + 1`` onwards (ids as without chunks, unique
    across chunks, numbered to the width of ``n_patients``), drawn from :func:`chunk_generators`
    ``(seed, c)``; each chunk's ``truth`` is that of the chunk alone and its ``tally`` the counts
    behind it, which :func:`add_tally` adds up exactly for the whole registry's truth
    (:func:`registry_truth`)."""
    n, seed, chunk = _checked(n_patients, seed, chunk_patients)
    if chunk is None:
        raise UsageError("--chunk-patients: expected a number of patients per chunk >= 1, got None")
    p = _resolve(params)
    width = _id_width(n)
    for index, first in enumerate(range(0, n, chunk)):
        yield _chunk(p, seed, index, first, min(chunk, n - first), width, chunk)


def _chunk(p: TrueParameters, seed: int, index: int, first: int, size: int, width: int, chunk: int) -> Simulation:
    sim = _generate(p, size, *chunk_generators(seed, index), first, width)
    sim.truth = _truth(p, seed, sim.tally, chunk)
    return sim


def add_tally(total: dict, part: Mapping) -> dict:
    """Add a chunk's tally (nested counts, all whole numbers) into ``total``, in place."""
    for key, value in part.items():
        if isinstance(value, Mapping):
            add_tally(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def registry_truth(params: TrueParameters | Mapping[str, Any] | None, seed: int, tally: Mapping,
                   chunk_patients: int | None = None) -> dict:
    """truth.json of a registry from its tally (the chunks' tallies added up with :func:`add_tally`)."""
    return _truth(_resolve(params), int(seed), tally, chunk_patients)


def _id_width(n: int) -> int:
    return max(5, len(str(n)))


def _generate(p: TrueParameters, n: int, rng: np.random.Generator, arm_rng: np.random.Generator, first: int,
              width: int) -> Simulation:
    """``n`` patients, ids ``first + 1`` on, drawn from ``rng`` (the arms from ``arm_rng``); the
    truth is left to the caller, which knows whether this is the registry or a chunk of it."""
    every = np.arange(n)
    # two-arm design: arms from a generator of their own, so that everything else is drawn as without arms
    arm_b = (arm_rng.random(n) < p.arm_b_fraction) if p.arms else np.zeros(n, dtype=bool)

    # ---- patients and their time line
    extract, first_index = _day(p.extract_date), _day(p.index_first)
    index = rng.integers(first_index, extract - 180 + 1, n)
    pre_days = np.maximum(1, np.round((p.disease_years_min + rng.exponential(p.disease_years_mean - p.disease_years_min, n)) * YEAR)).astype(np.int64)
    onset = index - pre_days
    onset_age = np.clip(rng.normal(p.onset_age_mean, p.onset_age_sd, n), 10, 80)
    birth = onset - np.round(onset_age * YEAR).astype(np.int64)
    potential = np.round((p.followup_years_min + rng.exponential(p.followup_years_mean - p.followup_years_min, n)) * YEAR).astype(np.int64)
    last_fu = np.minimum(index + np.maximum(potential, 1), extract)
    if p.stop_rate > 0:
        stop_days = rng.exponential(YEAR / p.stop_rate, n)
        if p.arms:  # hazard x ratio = time / ratio
            stop_days = np.where(arm_b, stop_days / p.arm_b_stop_hazard_ratio, stop_days)
        stop_after = np.maximum(1, np.ceil(stop_days)).astype(np.int64)
    else:
        stop_after = np.full(n, np.iinfo(np.int64).max // 4)
    stopped = index + stop_after < last_fu
    end = np.where(stopped, index + stop_after, last_fu)
    reason_code = rng.choice(len(STOP_REASONS), size=n, p=_probabilities(p))
    if math.isinf(p.frailty_shape):
        frailty = np.ones(n)
    else:
        frailty = rng.gamma(p.frailty_shape, 1.0 / p.frailty_shape, n)
    post_days, off_days = end - index, last_fu - end
    background_start = onset + np.floor(pre_days * rng.uniform(0.1, 0.8, n)).astype(np.int64)
    female = rng.random(n) < p.female
    positive = rng.random(n) < p.antibody_positive
    group = rng.choice(np.array(["A", "B", "C", "D"], dtype=object), size=n, p=[0.4, 0.3, 0.2, 0.1])
    if p.arms:
        group = np.where(arm_b, "B", "A").astype(object)
    missing_fu = rng.random(n) < p.missing_followup_fraction

    pid = np.char.add("P", np.char.zfill(np.arange(first + 1, first + n + 1).astype(str), width)).astype(object)

    # ---- relapses: onset attack + Poisson processes in three windows, same frailty
    off_rate = p.resolved_off_rate
    parts = []  # (who, day, kind)
    if p.onset_relapse:
        parts.append((every, onset.copy(), 0))
    post_rate = np.where(arm_b, p.post_rate * p.arm_b_rate_ratio, p.post_rate) if p.arms else p.post_rate
    for kind, rate, start, length in ((1, p.pre_rate, onset, pre_days), (2, post_rate, index, post_days), (3, off_rate, end, off_days)):
        counts = rng.poisson(rate * frailty * length / YEAR)
        who, day = _events(rng, counts, start, length)
        parts.append((who, day, kind))
    true_who = np.concatenate([w for w, _, _ in parts])
    true_day = np.concatenate([d for _, d, _ in parts])
    true_kind = np.concatenate([np.full(w.size, k, dtype=np.int8) for w, _, k in parts])
    true_confirmed = rng.random(true_who.size) < 0.9
    true_severity = rng.choice(3, size=true_who.size, p=[0.3, 0.5, 0.2])

    dup = rng.random(true_who.size) < p.duplicate_fraction
    dup_who = true_who[dup]
    dup_day = np.minimum(true_day[dup] + rng.integers(0, 30, dup_who.size), last_fu[dup_who])
    pseudo_src = rng.random(true_who.size) < p.pseudo_fraction
    pseudo_who = true_who[pseudo_src]
    observed = last_fu[pseudo_who] - onset[pseudo_who]
    pseudo_day = onset[pseudo_who] + np.floor(rng.random(pseudo_who.size) * (observed + 1)).astype(np.int64)

    r_who = np.concatenate([true_who, dup_who, pseudo_who])
    r_day = np.concatenate([true_day, dup_day, pseudo_day])
    r_kind = np.concatenate([true_kind, np.full(dup_who.size, 4, np.int8), np.full(pseudo_who.size, 5, np.int8)])
    r_conf = np.concatenate([true_confirmed, true_confirmed[dup], np.zeros(pseudo_who.size, bool)])
    r_sev = np.concatenate([true_severity, true_severity[dup], np.zeros(pseudo_who.size, np.int64)])
    order = _order(r_who, r_day, r_kind)
    r_who, r_day, r_kind, r_conf, r_sev = (a[order] for a in (r_who, r_day, r_kind, r_conf, r_sev))
    relapses = pd.DataFrame({
        "patient_id": pid[r_who],
        "onset_date": _iso(r_day),
        "confirmed": _pick(("false", "true"), r_conf),
        "severity": np.array(["mild", "moderate", "severe"], dtype=object)[r_sev],
        "pseudo": _pick(("false", "true"), r_kind == 5),
    })

    # ---- EDSS: baseline after onset, residual steps at true relapses (not the onset attack)
    grid = np.array([0.0] + [x / 2 for x in range(2, 21)])
    onset_score = np.clip(rng.normal(p.edss_onset_mean, p.edss_onset_sd, n), 0, 10)
    base_step = np.clip(np.round(2 * onset_score - 1), 0, 19).astype(np.int64)
    improver = rng.random(n) < p.edss_improve_prob
    improvement = rng.integers(1, 3, n) * improver
    later = true_kind > 0
    step_who, step_day = true_who[later], true_day[later]
    steps = rng.poisson(p.edss_steps_per_relapse, step_who.size)
    v_onset = onset + rng.integers(7, 61, n)
    s_who, s_day = _recurring(rng, onset + rng.integers(300, 431, n), last_fu, 300, 430)
    at_index = rng.random(n) < 0.9
    i_who = every[at_index]
    i_day = index[at_index] - rng.integers(0, 61, i_who.size)
    seen = rng.random(step_who.size) < 0.7
    a_who, a_day = step_who[seen], step_day[seen] + rng.integers(3, 22, int(seen.sum()))
    calm = np.concatenate([every, s_who, i_who])
    calm_day = np.concatenate([v_onset, s_day, i_day])
    noise = rng.choice(np.array([-1, 0, 1]), size=calm.size, p=[0.1, 0.8, 0.1])
    acute = 1 + rng.poisson(1.0, a_who.size)
    e_who = np.concatenate([step_who, calm, a_who])
    e_day = np.concatenate([step_day, calm_day, a_day])
    e_visit = np.concatenate([np.zeros(step_who.size, np.int8), np.ones(calm.size + a_who.size, np.int8)])
    e_step = np.concatenate([steps, np.zeros(calm.size + a_who.size, np.int64)])
    e_extra = np.concatenate([np.zeros(step_who.size, np.int64), noise, acute])
    order = _order(e_who, e_day, e_visit)
    e_who, e_day, e_visit, e_step, e_extra = (a[order] for a in (e_who, e_day, e_visit, e_step, e_extra))
    total = np.cumsum(e_step)
    starts = np.flatnonzero(np.r_[True, e_who[1:] != e_who[:-1]])
    sizes = np.diff(np.r_[starts, e_who.size])
    accumulated = total - np.repeat(total[starts] - e_step[starts], sizes)
    improved = improvement[e_who] * (e_day >= index[e_who] + 182)
    level = np.clip(base_step[e_who] + accumulated - improved + e_extra, 0, 19)
    keep = (e_visit == 1) & (e_day <= last_fu[e_who])
    e_who, e_day, level = e_who[keep], e_day[keep], level[keep]
    first_of_day = np.r_[True, (e_who[1:] != e_who[:-1]) | (e_day[1:] != e_day[:-1])]
    e_who, e_day, level = e_who[first_of_day], e_day[first_of_day], level[first_of_day]
    edss = pd.DataFrame({"patient_id": pid[e_who], "date": _iso(e_day), "score": grid[level]})

    # ---- titers: log2-normal, falling after index; two labs with their dilution grids
    lab = rng.integers(0, 2, n)  # 0: 1:10, 1:20, ...; 1: 1:15, 1:30, ...
    log2_level = rng.normal(math.log2(p.titer_median), p.titer_log2_sd, n)
    drop = rng.normal(p.titer_log2_drop, p.titer_drop_sd, n)
    t_pre = rng.random(n) < 0.9
    t_early = (rng.random(n) < 0.4) & positive
    p1_who, p1_day = every[t_pre], index[t_pre] - rng.integers(0, 301, int(t_pre.sum()))
    p2_who, p2_day = every[t_early], onset[t_early] + rng.integers(0, 91, int(t_early.sum()))
    q_who, q_day = _recurring(rng, index + rng.integers(60, 201, n), last_fu, 150, 400)
    q_keep = positive[q_who] | (rng.random(q_who.size) < 0.3)
    q_who, q_day = q_who[q_keep], q_day[q_keep]
    t_who = np.concatenate([p2_who, p1_who, q_who])
    t_day = np.concatenate([p2_day, p1_day, q_day])
    order = _order(t_who, t_day)
    t_who, t_day = t_who[order], t_day[order]
    fall_years = p.titer_drop_months / 12
    on_treatment = np.clip((t_day - index[t_who]) / YEAR / fall_years, 0, 1)
    x = log2_level[t_who] - drop[t_who] * on_treatment + rng.normal(0, 0.5, t_who.size)
    base = np.where(lab[t_who] == 0, 10, 15)
    k = np.round(x - np.log2(base)).astype(np.int64)
    is_positive = positive[t_who] & (k >= 0)
    plain = rng.random(t_who.size) < 0.2
    short_negative = rng.random(t_who.size) < 0.2
    # every text a titer can take, by (lab, format, dilution step); negatives at step 15
    dilutions = [[*(f"{'' if plain_format else '1:'}{base_value * 2 ** step}" for step in range(15)),
                  "<1:10" if base_value == 10 else negative_word]
                 for base_value in (10, 15) for plain_format, negative_word in ((False, "negative"), (True, "neg"))]
    texts = np.array(dilutions, dtype=object).ravel()
    step = np.where(is_positive, np.clip(k, 0, 14), 15)
    form = np.where(is_positive, plain, short_negative)
    text = texts[(lab[t_who] * 2 + form) * 16 + step]
    titers = pd.DataFrame({
        "patient_id": pid[t_who],
        "date": _iso(t_day),
        "titer": text,
        "assay": _pick(("CBA lab 1", "CBA lab 2"), lab[t_who]),
    })

    # ---- treatments and administrations
    treatments = pd.DataFrame({
        "patient_id": np.repeat(pid, 2),
        "treatment": np.tile(np.array([p.background_treatment, p.index_treatment], dtype=object), n),
        "start_date": _iso(np.column_stack([background_start, index]).ravel()),
        "end_date": np.column_stack([np.full(n, None, dtype=object), _iso_or_blank(end, stopped)]).ravel(),
        "stop_reason": np.column_stack([
            np.full(n, None, dtype=object),
            np.where(stopped, np.array(STOP_REASONS, dtype=object)[reason_code], None),
        ]).ravel(),
    })
    typical = rng.integers(round(p.admin_weeks_min * 7), round(p.admin_weeks_max * 7) + 1, n)
    lo = np.maximum(round(p.admin_weeks_min * 7), typical - 7)
    hi = np.minimum(round(p.admin_weeks_max * 7), typical + 7)
    adm_who, adm_day = _recurring(rng, index, end, np.maximum(lo, 1), np.maximum(hi, 1))
    weight = np.clip(rng.normal(68, 13, n), 40, 130)
    dose = (np.round(2.0 * weight / 5) * 5).astype(np.int64)  # 2 g/kg per course (0.4 g/kg/day x 5 days)
    dose_column = pd.array(dose[adm_who], dtype="Int64")
    dose_column[rng.random(adm_who.size) < 0.01] = pd.NA
    administrations = pd.DataFrame({
        "patient_id": pid[adm_who],
        "treatment": np.full(adm_who.size, p.index_treatment, dtype=object),
        "date": _iso(adm_day),
        "dose": dose_column,
    })

    # ---- adverse events: on the index treatment, the stop for an adverse event, on background
    ae_counts = rng.poisson(p.ae_rate * post_days / YEAR)
    ae_who, ae_day = _events(rng, ae_counts, index - 1, post_days + 1)  # [index, treatment end]
    ae_term, ae_grade = _ae_terms(rng, ae_who.size, _IVIG_TERMS)
    ae_serious = (ae_grade >= 3) | (rng.random(ae_who.size) < 0.03)
    ae_action = np.where(ae_grade >= 3, 2, (rng.random(ae_who.size) < 0.1).astype(np.int64))  # none, dose reduced, interrupted
    stop_ae = stopped & (reason_code == 1)
    x_who = every[stop_ae]
    x_day = np.maximum(index[x_who], end[x_who] - rng.integers(0, 15, x_who.size))
    x_term, x_grade = _ae_terms(rng, x_who.size, _STOP_TERMS)
    bg_counts = rng.poisson(p.background_ae_rate * (index - background_start) / YEAR)
    bg_who, bg_day = _events(rng, bg_counts, background_start - 1, index - background_start)  # [start, index)
    bg_term, bg_grade = _ae_terms(rng, bg_who.size, _BACKGROUND_TERMS)
    a_who = np.concatenate([ae_who, x_who, bg_who])
    a_day = np.concatenate([ae_day, x_day, bg_day])
    a_term = np.concatenate([ae_term, x_term, bg_term])
    a_grade = np.concatenate([ae_grade, x_grade, bg_grade])
    a_serious = np.concatenate([ae_serious, x_grade >= 3, bg_grade >= 3])
    a_action = np.concatenate([ae_action, np.full(x_who.size, 3), (bg_grade >= 2).astype(np.int64)])
    a_treatment = np.concatenate([
        np.full(ae_who.size + x_who.size, p.index_treatment, dtype=object),
        np.full(bg_who.size, p.background_treatment, dtype=object),
    ])
    a_related = rng.random(a_who.size) < 0.8
    order = _order(a_who, a_day)
    adverse_events = pd.DataFrame({
        "patient_id": pid[a_who[order]],
        "onset_date": _iso(a_day[order]),
        "term": a_term[order],
        "grade": a_grade[order],
        "serious": _pick(("false", "true"), a_serious[order]),
        "related": _pick(("false", "true"), a_related[order]),
        "action": _pick(("none", "dose reduced", "interrupted", "discontinued"), a_action[order]),
        "treatment": a_treatment[order],
    })

    patients = pd.DataFrame({
        "patient_id": pid,
        "sex": _pick(("M", "F"), female),
        "birth_date": _iso(birth),
        "onset_date": _iso(onset),
        "diagnosis": np.full(n, "NMOSD", dtype=object),
        "antibody_status": _pick(("negative", "positive"), positive),
        "last_followup_date": _iso_or_blank(last_fu, ~missing_fu),
        "group": group,
    })
    tables = {
        "patients": patients, "treatments": treatments, "administrations": administrations,
        "relapses": relapses, "edss": edss, "titers": titers, "adverse_events": adverse_events,
    }

    counts = {kind: np.bincount(true_who[true_kind == code], minlength=n) for code, kind in enumerate(RELAPSE_KINDS[:4])}
    hidden = pd.DataFrame({
        "patient_id": pid, "frailty": frailty, "onset_date": _iso(onset), "index_date": _iso(index),
        "treatment_end": _iso(end), "last_followup": _iso(last_fu), "stopped": stopped,
        "pre_days": pre_days, "post_days": post_days, "off_days": off_days,
        "pre_relapses": counts["pre"], "post_relapses": counts["post"], "off_relapses": counts["off"],
        "arm": np.where(arm_b, "B", "A").astype(object),
    })
    kinds = np.array(RELAPSE_KINDS, dtype=object)[r_kind]
    # what the cohort's cleaning (pseudo dropped, 30-day merge) leaves, by window
    real = r_kind != 5
    c_who, c_day, c_kind = r_who[real], r_day[real], r_kind[real]
    kept = _merge_within(c_who, c_day, 30)
    c_who, c_day, c_kind = c_who[kept], c_day[kept], c_kind[kept]
    is_onset = c_kind == 0
    cleaned = {
        "onset": int(is_onset.sum()),
        "pre": int(np.sum(~is_onset & (c_day <= index[c_who]))),
        "post": int(np.sum((c_day > index[c_who]) & (c_day <= end[c_who]))),
        "off": int(np.sum(c_day > end[c_who])),
    }
    # true relapses (onset, pre, post, off) fewer than 30 days after the previous true relapse
    true_rows = np.isin(kinds, RELAPSE_KINDS[:4])
    who, day, kind = r_who[true_rows], r_day[true_rows], kinds[true_rows]
    close_to_previous = (who[1:] == who[:-1]) & (day[1:] - day[:-1] < 30)
    tally = {
        "patients": n,
        "days": {w: int(hidden[f"{w}_days"].sum()) for w in ("pre", "post", "off")},
        "relapses": {**{w: int(hidden[f"{w}_relapses"].sum()) for w in ("pre", "post", "off")}, "onset": int(np.sum(kinds == "onset"))},
        "within_30_days": {w: int(np.sum(close_to_previous & (kind[1:] == w))) for w in ("pre", "post", "off")},
        "cleaned": cleaned,
        "duplicate_rows": int(np.sum(kinds == "duplicate")),
        "pseudo_rows": int(np.sum(kinds == "pseudo")),
        "discontinued": int(stopped.sum()),
        "stop_reasons": {reason: int(np.sum(stopped & (reason_code == i))) for i, reason in enumerate(STOP_REASONS)},
        "missing_last_followup_date": int(missing_fu.sum()),
        "adverse_events_on_index_treatment": int(ae_who.size + x_who.size),
        "rows": {name: len(frame) for name, frame in tables.items()},
    }
    if p.arms:
        tally["arms"] = {
            arm: {"patients": len(rows), "post_days": int(rows["post_days"].sum()),
                  "post_relapses": int(rows["post_relapses"].sum()), "discontinued": int(rows["stopped"].sum())}
            for arm, rows in hidden.groupby("arm", sort=True)
        }
    return Simulation(tables=tables, truth={}, patients=hidden, relapse_kind=kinds, tally=tally)


def _probabilities(p: TrueParameters) -> list[float]:
    probs = np.array([p.stop_relapse, p.stop_adverse_event, p.stop_patient_choice, p.stop_other])
    return list(probs / probs.sum()) if probs.sum() > 0 else [0.0, 0.0, 0.0, 1.0]


# term: (probability, grade 1..4 probabilities)
_IVIG_TERMS = {
    "headache": (0.40, (0.70, 0.25, 0.05, 0.0)),
    "fever": (0.10, (0.70, 0.28, 0.02, 0.0)),
    "rash": (0.10, (0.75, 0.23, 0.02, 0.0)),
    "nausea": (0.10, (0.80, 0.18, 0.02, 0.0)),
    "fatigue": (0.12, (0.80, 0.19, 0.01, 0.0)),
    "infusion-related reaction": (0.12, (0.50, 0.40, 0.10, 0.0)),
    "aseptic meningitis": (0.03, (0.0, 0.40, 0.60, 0.0)),
    "thrombosis": (0.015, (0.0, 0.20, 0.60, 0.20)),
    "acute kidney injury": (0.015, (0.0, 0.40, 0.50, 0.10)),
}
_STOP_TERMS = {
    "infusion-related reaction": (0.4, (0.0, 0.6, 0.4, 0.0)),
    "aseptic meningitis": (0.2, (0.0, 0.4, 0.6, 0.0)),
    "thrombosis": (0.2, (0.0, 0.2, 0.6, 0.2)),
    "acute kidney injury": (0.2, (0.0, 0.4, 0.5, 0.1)),
}
_BACKGROUND_TERMS = {
    "leukopenia": (0.4, (0.5, 0.4, 0.1, 0.0)),
    "elevated liver enzymes": (0.4, (0.6, 0.3, 0.1, 0.0)),
    "nausea": (0.2, (0.8, 0.2, 0.0, 0.0)),
}


def _ae_terms(rng: np.random.Generator, size: int, terms: dict) -> tuple[np.ndarray, np.ndarray]:
    names = np.array(list(terms), dtype=object)
    weights = np.array([w for w, _ in terms.values()])
    which = rng.choice(names.size, size=size, p=weights / weights.sum())
    grades = np.array([g for _, g in terms.values()])
    cumulative = np.cumsum(grades / grades.sum(axis=1, keepdims=True), axis=1)
    grade = 1 + (rng.random(size)[:, None] > cumulative[which]).sum(axis=1)
    return names[which], np.minimum(grade, 4).astype(np.int64)


# --------------------------------------------------------------------------- truth


def _truth(p: TrueParameters, seed: int, tally: Mapping, chunk_patients: int | None = None) -> dict:
    """truth.json from the parameters and a registry's tally: every realised figure is a sum of
    whole numbers over patients, so the truth of a chunked registry is exact, not an average of chunks."""
    from . import __version__

    n = tally["patients"]
    years = {w: float(tally["days"][w] / YEAR) for w in ("pre", "post", "off")}
    events = {w: tally["relapses"][w] for w in ("pre", "post", "off")}
    cleaned = tally["cleaned"]
    rates = {"pre": p.pre_rate, "post": p.post_rate, "off": p.resolved_off_rate}
    k = p.frailty_shape

    def relapse_free(t_years: float) -> float:
        if math.isinf(k):
            return math.exp(-p.post_rate * t_years)
        return (1 + p.post_rate * t_years / k) ** (-k)

    values = {}
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        values[f.name] = "inf" if isinstance(value, float) and math.isinf(value) else value
    values["off_rate"] = p.resolved_off_rate
    truth = {
        "generator": f"endpointkit.simulate {__version__}",
        "seed": seed,
        **({"chunk_patients": chunk_patients, "chunks": -(-n // chunk_patients)} if chunk_patients else {}),
        "n_patients": n,
        "parameters": values,
        "true_values": {
            "pre_rate": p.pre_rate,
            "post_rate": p.post_rate,
            "off_rate": p.resolved_off_rate,
            "rate_ratio": p.post_rate / p.pre_rate if p.pre_rate > 0 else None,
            "frailty_variance": 0.0 if math.isinf(k) else 1 / k,
            "relapse_free_at_12m": relapse_free(1.0),
            "relapse_free_at_24m": relapse_free(2.0),
            "persistence_at_12m": math.exp(-p.stop_rate),
            "persistence_at_24m": math.exp(-2 * p.stop_rate),
            "median_time_to_discontinuation_months": 12 * math.log(2) / p.stop_rate if p.stop_rate > 0 else None,
            "stop_reason_probabilities": dict(zip(STOP_REASONS, _probabilities(p), strict=True)),
            "titer_median_pre": p.titer_median,
            "titer_median_post": p.titer_median / 2 ** p.titer_log2_drop,
            "adverse_events_per_100_patient_years": 100 * p.ae_rate,
        },
        "expected": {
            "pre_relapses": rates["pre"] * years["pre"],
            "post_relapses": rates["post"] * years["post"],
            "off_treatment_relapses": rates["off"] * years["off"],
            "onset_attacks": n if p.onset_relapse else 0,
            "adverse_events_on_index_treatment": p.ae_rate * years["post"],
        },
        "realized": {
            "person_years": years,
            "relapses": {**events, "onset": tally["relapses"]["onset"]},
            "crude_rates": {w: (events[w] / years[w] if years[w] > 0 else None) for w in ("pre", "post", "off")},
            "crude_rate_ratio": (events["post"] / years["post"]) / (events["pre"] / years["pre"]) if events["pre"] and years["post"] > 0 else None,
            "relapses_within_30_days": dict(tally["within_30_days"]),
            "after_cohort_cleaning": {
                "relapses": dict(cleaned),
                "crude_rates": {w: (cleaned[w] / years[w] if years[w] > 0 else None) for w in ("pre", "post", "off")},
                "crude_rate_ratio": (cleaned["post"] / years["post"]) / (cleaned["pre"] / years["pre"]) if cleaned["pre"] and years["post"] > 0 else None,
            },
            "duplicate_rows": tally["duplicate_rows"],
            "pseudo_rows": tally["pseudo_rows"],
            "discontinued": tally["discontinued"],
            "stop_reasons": {reason: tally["stop_reasons"][reason] for reason in STOP_REASONS},
            "missing_last_followup_date": tally["missing_last_followup_date"],
            "adverse_events_on_index_treatment": tally["adverse_events_on_index_treatment"],
            "rows": {name: tally["rows"][name] for name in TABLE_NAMES},
        },
        "definitions": [
            "Times are whole days; a year is 365.25 days. Person-time: pre = index - onset, post = treatment end - index, "
            "off = last follow-up - treatment end (stopped courses only), as arr_change measures windows.",
            "Patient rate = base rate x frailty, frailty ~ Gamma(frailty_shape, mean 1), the same frailty in every window: "
            "the rate ratio post/pre holds within every patient.",
            "Relapses are Poisson processes in (onset, index], (index, treatment end] and (treatment end, last follow-up]; "
            "the onset attack is an extra row at onset_date (counted by since_onset, dropped by since_onset_excl_first).",
            "Expected counts are conditional on the simulated windows (averaged over the frailty).",
            "relapses_within_30_days counts true relapses fewer than 30 days after the previous one: the cohort's 30-day "
            "merge counts them as one, so a merged analysis sees fewer relapses than the Poisson process generated "
            "(more so where rates are high). after_cohort_cleaning gives the counts left after dropping pseudo rows and "
            "the greedy 30-day merge (before any data cut-off or replacement of a blank last_followup_date): the exact "
            "target of arr_change (crude, since_onset_excl_first; pre excludes the onset attack) on all patients.",
            "Treatment end = end_date of a stopped course, else last follow-up (ongoing: administrations continue to last "
            "follow-up). Stopping is independent of relapses, so criteria on treatment length do not bias the rates.",
            "relapse_free_at_t = (1 + post_rate t / k)^-k (gamma frailty), from index without lag; "
            "persistence_at_t = exp(-stop_rate t).",
            "Titers: log2 titer ~ Normal(log2 titer_median, titer_log2_sd) before index, falling linearly by a "
            "patient's drop ~ Normal(titer_log2_drop, titer_drop_sd) over titer_drop_months, plus measurement noise "
            "(SD 0.5), reported on a lab's dilution grid (1:10, 1:20, ... or 1:15, 1:30, ...); titer_median_post is "
            "the median once the fall is complete. Antibody-negative patients have only negative titers.",
            "EDSS: a grid position after the onset attack, Poisson(edss_steps_per_relapse) residual grid steps at each "
            "later relapse, an acute rise at visits shortly after a relapse, +-1 step noise at routine visits, and "
            "1-2 steps of improvement from 6 months after index for a fraction edss_improve_prob of patients.",
            "Extra rows: duplicates 0-29 days after a true relapse (merged by the cohort), pseudo=true rows (dropped), "
            "blank last_followup_date (replaced by the latest record).",
        ],
    }
    if chunk_patients:
        truth["definitions"].append(
            f"Generated in chunks of {chunk_patients} patients, each from a random stream of its own (the chunk's child "
            "of SeedSequence(seed)): another registry than the seed's unchunked one, the same for the same seed and "
            "chunk size. Every realised figure is counted over the whole registry.")
    if p.arms:
        truth["arms"] = _arms_truth(p, tally["arms"])
    return truth


def _arms_truth(p: TrueParameters, arms: Mapping[str, Mapping[str, int]]) -> dict:
    """The two-arm design's truth: the between-arm ratios and what was realised in each arm."""
    realized = {}
    for arm in sorted(arms):
        years = float(arms[arm]["post_days"] / YEAR)
        events = arms[arm]["post_relapses"]
        realized[arm] = {
            "patients": arms[arm]["patients"], "post_person_years": years, "post_relapses": events,
            "post_crude_rate": events / years if years > 0 else None, "discontinued": arms[arm]["discontinued"],
        }
    return {
        "true_values": {
            "arm_b_fraction": p.arm_b_fraction,
            "relapse_rate_ratio_b_vs_a": p.arm_b_rate_ratio,
            "stop_hazard_ratio_b_vs_a": p.arm_b_stop_hazard_ratio,
            "post_rate_a": p.post_rate,
            "post_rate_b": p.post_rate * p.arm_b_rate_ratio,
        },
        "realized": realized,
        "definitions": [
            "Arm B (patients.group = B, probability arm_b_fraction, drawn from a generator of its own) has the post "
            "window relapse rate post_rate x arm_b_rate_ratio x frailty and the stopping hazard stop_rate x "
            "arm_b_stop_hazard_ratio; everything else as arm A. Arm A is patients.group = A.",
            "A negative binomial regression of post-window relapses on arm with a log(post person-years) offset is "
            "correctly specified (gamma frailty: NB2 with alpha = 1/frailty_shape), as is a Cox model of time to "
            "stopping (index to treatment end, censored at last follow-up) on arm.",
        ],
    }


# --------------------------------------------------------------------------- writing


def write_registry(tables: Mapping[str, pd.DataFrame], truth: Mapping | None, out_dir: str | Path) -> list[Path]:
    """Write ``<table>.csv`` for each table (pandas ``to_csv``) and ``truth.json``, atomically
    (:func:`endpointkit.output.write_files`: large registries are written by two processes)."""
    from .output import check_writable, write_files

    out_dir = Path(out_dir)
    check_writable(out_dir)
    files: dict[str, str | pd.DataFrame] = {f"{name}.csv": frame for name, frame in tables.items()}
    if truth is not None:
        files["truth.json"] = json.dumps(truth, indent=2, allow_nan=False) + "\n"
    return write_files(out_dir, files)


def write_partitioned_registry(tables: Mapping[str, pd.DataFrame], truth: Mapping | None, out_dir: str | Path,
                               partitions: int) -> str:
    """The registry as the partitioned Parquet dataset ``endpointkit partition`` would write from its
    CSV files (the same line numbers and checksums), with truth.json beside the manifest.

    The CSV files are written to a scratch folder and partitioned from there: an unchunked registry
    is one draw from one random stream, generated whole (a chunked one is written chunk by chunk by
    :func:`write_chunked_registry`)."""
    import shutil
    import tempfile

    from .partitioned_dataset import write_partitioned
    from .plugins.sources import CsvFolder

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.csv-"))
    try:
        write_registry(tables, None, scratch)
        extra = {"truth.json": json.dumps(truth, indent=2, allow_nan=False) + "\n"} if truth is not None else {}
        write_partitioned(CsvFolder(), scratch, {}, None, out_dir, partitions, extra_files=extra)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"{partitions} partition(s) and truth.json to {out_dir}"


def write_chunked_registry(n_patients: int, seed: int, params: TrueParameters | Mapping[str, Any] | None,
                           chunk_patients: int, out_dir: str | Path, fmt: str = "csv", partitions: int = 1,
                           progress: bool = False) -> tuple[dict, str]:
    """Simulate ``chunk_patients`` at a time (:func:`simulate_chunks`) and write each chunk before the
    next is generated: memory holds one chunk's tables, whatever ``n_patients``.

    The registry's tables are the chunks' CSV files put end to end (one header, then each chunk's
    rows in chunk order): ``fmt="csv"`` writes exactly those files; ``fmt="parquet"`` writes the
    dataset ``endpointkit partition`` would write from them (a :class:`ChunkedDataset`: the same
    records in the same partition files, line numbers continuing across chunks, the checksums of
    those files). truth.json is counted over the whole registry. Returns (truth, what was written)."""
    import hashlib
    import os
    import shutil
    import tempfile

    from .data import LINE
    from .output import check_writable, file_mode
    from .partitioned_dataset import ChunkedDataset
    from .plugins.sources import CsvFolder

    n, seed, chunk = _checked(n_patients, seed, chunk_patients)
    if chunk is None:
        raise UsageError("--chunk-patients: expected a number of patients per chunk >= 1, got None")
    p = _resolve(params)
    out_dir = Path(out_dir)
    check_writable(out_dir)
    chunks = -(-n // chunk)
    dataset = (ChunkedDataset(out_dir, partitions, CsvFolder.name, f"endpointkit simulate --patients {n} --seed {seed} "
                              f"--chunk-patients {chunk}") if fmt == "parquet" else None)
    started = time.perf_counter()
    sinks: dict[str, tuple[Path, Any]] = {}  # csv: table -> (temporary file beside its target, open handle)
    scratch = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.chunk-"))
        if dataset is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in TABLE_NAMES:
                handle, temp = tempfile.mkstemp(dir=out_dir, prefix=".endpointkit-", suffix=".tmp")
                sinks[name] = (Path(temp), os.fdopen(handle, "wb"))
        source = CsvFolder()
        hashes = {name: hashlib.sha256() for name in TABLE_NAMES}
        headers: dict[str, bytes] = {}
        lines = dict.fromkeys(TABLE_NAMES, 0)  # lines of each table written so far, less its header
        tally: dict = {}
        index = -1
        for sim in simulate_chunks(n, seed, p, chunk):  # not enumerate: it would hold the chunk until the next is made
            index += 1
            add_tally(tally, sim.tally)
            write_registry(sim.tables, None, scratch)
            del sim  # only one chunk's tables in memory: released before the next chunk is generated
            for name in TABLE_NAMES:
                data = (scratch / f"{name}.csv").read_bytes()
                cut = data.index(b"\n") + 1
                if headers.setdefault(name, data[:cut]) != data[:cut]:
                    raise RuntimeError(f"chunk {index}: {name}.csv has another header than the first chunk's")
                body = data if index == 0 else data[cut:]
                hashes[name].update(body)
                if dataset is None:
                    sinks[name][1].write(body)
                else:
                    frame, _ = source.read_table(scratch, name)
                    frame[LINE] += lines[name]  # the chunk's file's own line numbers, continued
                    dataset.add(name, frame, source.describe(name))
                    del frame
                lines[name] += data.count(b"\n") - 1
                del data, body
            if progress and chunks > 1:
                print(f"endpointkit: simulated chunk {index + 1} of {chunks} ({min(n, (index + 1) * chunk):,} of {n:,} "
                      f"patients) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        truth = _truth(p, seed, tally, chunk)
        truth_text = json.dumps(truth, indent=2, allow_nan=False) + "\n"
        if dataset is not None:
            dataset.finish({name: hashes[name].hexdigest() for name in TABLE_NAMES}, {"truth.json": truth_text})
            return truth, f"{partitions} partition(s) and truth.json to {out_dir}"
        handle, temp = tempfile.mkstemp(dir=out_dir, prefix=".endpointkit-", suffix=".tmp")
        sinks["truth"] = (Path(temp), os.fdopen(handle, "wb"))
        sinks["truth"][1].write(truth_text.encode("utf-8"))
        for temp, stream in sinks.values():
            stream.close()
            os.chmod(temp, file_mode())
        for name, (temp, _) in sinks.items():
            os.replace(temp, out_dir / ("truth.json" if name == "truth" else f"{name}.csv"))
        sinks = {}
        return truth, f"{out_dir}/truth.json"
    except OSError as exc:
        raise UsageError(f"-o: cannot write to the output folder {out_dir}: {exc.strerror or exc}") from None
    finally:
        for temp, stream in sinks.values():
            stream.close()
            temp.unlink(missing_ok=True)
        if dataset is not None:
            dataset.discard()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


BYTES_PER_PATIENT = 8_000  # peak memory of generating and writing a registry at once, per patient (measured: 1M ~ 7.4 GiB)


def _available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where there is no such file."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_fits(patients: int) -> None:
    """A registry generated at once that would need more memory than the machine has available is
    refused before any work, with the option that bounds the memory."""
    need, available = patients * BYTES_PER_PATIENT, _available_memory()
    if available is not None and need > available:
        raise UsageError(
            f"--patients {patients:,}: generating the registry at once needs about {need / 2**30:.0f} GiB of memory, "
            f"more than the {available / 2**30:.0f} GiB available; add --chunk-patients 250000 to generate it 250,000 "
            "patients at a time (about 2 GiB), written as each chunk is done (the registry then differs from the "
            "seed's unchunked one: see endpointkit simulate --help)")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def simulate_command(args) -> int:
    """``endpointkit simulate --patients N [--seed S] -o DIR [--set name=value ...] [--chunk-patients C]``."""
    started = time.perf_counter()
    if args.patients < 1:
        raise UsageError(f"--patients: expected a number of patients >= 1, got {args.patients}")
    if args.seed < 0:
        raise UsageError(f"--seed: expected a whole number >= 0, got {args.seed}")
    chunk = getattr(args, "chunk_patients", None)
    if chunk is not None and chunk < 1:
        raise UsageError(f"--chunk-patients: expected a number of patients per chunk >= 1, got {chunk}")
    params = parse_settings(list(args.set))
    from .output import check_writable

    fmt = getattr(args, "format", "csv") or "csv"
    given = getattr(args, "partitions", None)
    if given is not None and fmt != "parquet":
        raise UsageError("--partitions: a partitioned dataset is written with --format parquet")
    partitions = 1 if given is None else given
    check_writable(Path(args.output))
    if fmt == "parquet":
        from .partitioned_dataset import MAX_PARTITIONS, check_new_folder

        check_new_folder(Path(args.output))
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise UsageError(f"--partitions: expected a number of partitions from 1 to {MAX_PARTITIONS}, got {partitions}")
    if chunk is not None:
        truth, wrote = write_chunked_registry(args.patients, args.seed, params, chunk, args.output, fmt, partitions,
                                              progress=True)
    else:
        _check_fits(args.patients)
        sim = simulate_registry(args.patients, args.seed, params)
        truth = sim.truth
        if fmt == "parquet":
            wrote = write_partitioned_registry(sim.tables, sim.truth, args.output, partitions)
        else:
            write_registry(sim.tables, sim.truth, args.output)
            wrote = f"{args.output}/truth.json"
        del sim
    rows = truth["realized"]["rows"]
    rates = truth["realized"]["crude_rates"]
    chunked = f", {truth['chunks']:,} chunks of {chunk:,}" if chunk is not None else ""
    print(
        f"endpointkit: simulated {args.patients:,} patients (seed {args.seed}{chunked}) in {time.perf_counter() - started:.1f} s: "
        f"{rows['relapses']:,} relapse rows, {rows['administrations']:,} administrations, {rows['edss']:,} EDSS, "
        f"{rows['titers']:,} titers, {rows['adverse_events']:,} adverse events; true ARR {params.pre_rate:g} -> "
        f"{params.post_rate:g} (crude {_number(rates['pre'])} -> {_number(rates['post'])}); wrote {wrote}",
        file=sys.stderr,
    )
    return 0

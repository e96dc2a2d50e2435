"""The confirmed-event engine: confirmed disability worsening (CDW) and improvement (CDI), PIRA and RAW.

It follows the scan that pymsprog (the Python port of R msprog) runs for one patient, step for step,
so that the same settings give the same events:

1. the baseline is the first visit, moved forward while it lies too close to a relapse
   (``relapse_to_baseline``); the search starts at the visit after it;
2. the next *change* is the first visit from the search position whose distance from the baseline
   value reaches the threshold (looked up from the baseline value: EDSS bands, or a percentage /
   points on the other scales, where SDMT worsens downwards) and that lies far enough from a
   relapse (``relapse_to_event``);
3. it is *confirmed* by the first visit whose distance from the change lies in any confirmation
   window ``[C - left, C + right]`` and that lies far enough from a relapse (``relapse_to_confirmation``);
   with ``check_intermediate`` every visit from the change up to that one must still meet the change,
   otherwise only that visit must; a worsening at the last visit counts unconfirmed with
   ``last_visit = "always"``;
4. an event must be sustained for ``sustained_days`` (inf = to the last visit);
5. a CDW is RAW when a relapse lies within ``relapse_assoc`` of the change, PIRA when no relapse lies
   in the windows around the baseline, the change and at least one confirmation visit, else undefined;
6. after a confirmed change the search resumes after the confirmation visit (``proceed_from =
   "confirmation"``) or after the change (``"event"``), and a roving baseline moves there.

Vectorised: the scan runs in rounds, each round taking one step (steps 1-6) for every patient still
scanning at once (numpy over all visits); a patient's events depend on its own visits and relapses only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_BLOCK = np.int64(2**32)
_SHIFT = np.int64(2**31)
INF = float("inf")

# Minimum change (EDSS points) that counts as worsening, by the baseline (or reference) score:
# each band is (lowest score of the band, threshold); a score belongs to the last band whose
# lower bound it reaches. 0.5 is not an EDSS score, so "from 1.0" starts right after 0.
# edss_progression uses the same table (its params do not offer the pymsprog rule).
THRESHOLD_BANDS: dict[str, tuple[tuple[float, float], ...]] = {
    "ms_standard": ((0.0, 1.5), (1.0, 1.0), (6.0, 0.5)),
    "nmosd_trials": ((0.0, 2.0), (1.0, 1.0), (5.5, 0.5)),
    "pymsprog": ((0.0, 1.5), (1.0, 1.0), (5.5, 0.5)),  # pymsprog's compute_delta: 5.5 takes +0.5
    "fixed_1.0": ((0.0, 1.0),),
    "any_increase": ((0.0, 0.5),),
}


def threshold(rule: str, values: np.ndarray) -> np.ndarray:
    """The minimum change that counts from each reference value under ``rule``."""
    bands = THRESHOLD_BANDS[rule]
    lower = np.array([b[0] for b in bands])
    step = np.array([b[1] for b in bands])
    band = np.searchsorted(lower, np.asarray(values, dtype=float), side="right") - 1
    return step[np.clip(band, 0, None)]


SCALES = ("edss", "t25fw", "9hpt", "sdmt")
LOWER_IS_WORSE = ("sdmt",)  # on the other scales a higher value is worse
_EPS = 1e-9  # so that 20% of 6.5 s is met by 7.8 s despite binary rounding


def change_threshold(s: EventSettings, values: np.ndarray) -> np.ndarray:
    """The minimum change that counts from each reference value on the settings' scale.

    EDSS: the ``threshold_rule`` bands. T25FW and 9HPT: ``change_percent`` % of the reference.
    SDMT: ``change_points`` or ``change_percent`` % of the reference, whichever is smaller (either
    change counts). Never below a tiny positive amount, so that an unchanged value is no event.
    """
    values = np.asarray(values, dtype=float)
    if s.scale == "edss":
        return threshold(s.threshold_rule, values)
    relative = s.change_percent / 100 * np.abs(values)
    if s.scale in LOWER_IS_WORSE:
        relative = np.minimum(relative, s.change_points)
    return np.maximum(relative - _EPS, _EPS)


@dataclass(frozen=True)
class EventSettings:
    """The engine's settings (days; pairs are (before, after) an anchor)."""

    event: str = "first_cdw"  # first_cdw | first_cdi | first | multiple | first_pira | first_raw
    baseline: str = "fixed"  # fixed | roving | roving_worsening | roving_improvement
    proceed_from: str = "confirmation"  # confirmation | event
    confirmation_days: tuple[float, ...] = (84.0,)
    tolerance: tuple[float, float] = (7.0, 730.5)
    check_intermediate: bool = True
    sustained_days: float = 0.0  # 0 = not required, inf = to the last visit
    relapse_to_baseline: tuple[float, float] = (30.0, 0.0)
    relapse_to_event: tuple[float, float] = (0.0, 0.0)
    relapse_to_confirmation: tuple[float, float] = (30.0, 0.0)
    pira_raw: bool = False
    relapse_assoc: tuple[float, float] = (90.0, 0.0)
    pira_preceding: tuple[float, float] = (0.0, 0.0)
    pira_event: tuple[float, float] = (90.0, 30.0)
    pira_confirmation: tuple[float, float] = (90.0, 30.0)
    threshold_rule: str = "ms_standard"
    last_visit: str = "never"  # never | always
    scale: str = "edss"  # edss | t25fw | 9hpt | sdmt
    change_percent: float = 20.0  # t25fw, 9hpt, sdmt: % of the reference value
    change_points: float = INF  # sdmt: points (the smaller of points and percent counts)

    @property
    def classify(self) -> bool:
        """Whether CDW events are classified as PIRA / RAW (always when only PIRA or RAW is sought)."""
        return self.pira_raw or self.event in ("first_pira", "first_raw")


EVENT_COLUMNS = ["code", "event_number", "event_type", "cdw_type", "day", "value", "baseline_day",
                 "baseline_value", "confirmation_day", "confirmation_value", "pira_confirmation_day"]


def _key(code: np.ndarray, day: np.ndarray) -> np.ndarray:
    return code.astype(np.int64) * _BLOCK + (np.asarray(day, dtype=np.int64) + _SHIFT)


def _next_true(ok: np.ndarray) -> np.ndarray:
    """For each position (and one past the end), the first position at or after it where ``ok`` holds."""
    n = ok.size
    pos = np.where(np.r_[ok, True], np.arange(n + 1), n)
    return np.minimum.accumulate(pos[::-1])[::-1]


def _first_per(code: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    if rows.size:
        first = np.r_[True, code[rows][1:] != code[rows][:-1]]
        out[code[rows][first]] = rows[first]
    return out


class _Relapses:
    """Relapse onsets sorted by (patient, day): distances and counts in windows, per visit or per patient."""

    def __init__(self, code: np.ndarray, day: np.ndarray):
        self.key = np.sort(_key(code, day))

    def distances(self, code: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Days since the latest onset on or before, and until the earliest onset on or after (inf if none)."""
        k = _key(code, day)
        before = np.full(code.size, INF)
        after = np.full(code.size, INF)
        if self.key.size:
            i = np.searchsorted(self.key, k, side="right") - 1
            ok = (i >= 0) & (self.key[np.clip(i, 0, None)] // _BLOCK == code)
            before[ok] = (k - self.key[np.clip(i, 0, None)])[ok]
            j = np.searchsorted(self.key, k, side="left")
            jc = np.minimum(j, self.key.size - 1)
            ok = (j < self.key.size) & (self.key[jc] // _BLOCK == code)
            after[ok] = (self.key[jc] - k)[ok]
        return before, after

    def any_in(self, code: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Whether the patient has an onset in [start, stop] (days, inclusive)."""
        if not self.key.size:
            return np.zeros(code.size, dtype=bool)
        lo = np.searchsorted(self.key, _key(code, np.floor(start)), side="left")
        hi = np.searchsorted(self.key, _key(code, np.floor(stop)), side="right")
        return hi > lo


def _window_free(rel: _Relapses, code: np.ndarray, day: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """No onset in [day - before, day + after]; a window of zero length is not checked (as pymsprog)."""
    before, after = window
    if not after + before > 0:
        return np.ones(code.size, dtype=bool)
    return ~rel.any_in(code, day - before, day + after)


def patient_bounds(code: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's first and one-past-last position in visits sorted by code (start = size when none)."""
    size = code.size
    start = np.full(n, size, dtype=np.int64)
    end = np.zeros(n, dtype=np.int64)
    if size:
        first = np.r_[True, code[1:] != code[:-1]]
        start[code[first]] = np.flatnonzero(first)
        last = np.r_[code[1:] != code[:-1], True]
        end[code[last]] = np.flatnonzero(last) + 1
    return start, end


def detect_events(code: np.ndarray, day: np.ndarray, value: np.ndarray, n: int,
                  relapse_code: np.ndarray, relapse_day: np.ndarray, s: EventSettings) -> pd.DataFrame:
    """Every patient's confirmed events (``EVENT_COLUMNS``), from visits sorted by (code, day), one a day.

    ``code`` numbers the patients 0..n-1; ``day`` are whole day numbers. A relapse counts when it is
    dated on or after the patient's first visit minus ``relapse_to_baseline[0]`` (as pymsprog).
    """
    size = code.size
    code = code.astype(np.int64)
    day = day.astype(np.int64)
    value = value.astype(float)
    start, end = patient_bounds(code, n)
    has = start < size
    first_day = np.where(has, day[np.minimum(start, max(size - 1, 0))] if size else 0, 0)
    keep = has[relapse_code] & (relapse_day >= first_day[relapse_code] - s.relapse_to_baseline[0])
    rel = _Relapses(relapse_code[keep], relapse_day[keep])
    r_before, r_after = rel.distances(code, day)

    def far(dist: tuple[float, float]) -> np.ndarray:
        return (r_before >= dist[0]) & (r_after >= dist[1])

    next_bl = _next_true(far(s.relapse_to_baseline))
    conf_ok = far(s.relapse_to_confirmation)
    next_conf = _next_true(conf_ok)
    next_pconf = _next_true(conf_ok & _window_free(rel, code, day, s.pira_confirmation)) if s.classify else None
    event_far = far(s.relapse_to_event)
    key = _key(code, day)
    periods = sorted(float(c) for c in s.confirmation_days)
    roving_w = s.baseline in ("roving", "roving_worsening")
    roving_i = s.baseline in ("roving", "roving_improvement")

    bl = start.copy()
    search = start + 1
    active = has.copy()
    events: list[dict[str, np.ndarray]] = []
    while active.any():
        # 1. baseline out of relapse influence
        p = np.nonzero(active)[0]
        b = next_bl[bl[p]]
        alive = b < end[p] - 1
        active[p[~alive]] = False
        p, b = p[alive], b[alive]
        if not p.size:
            break
        bl[p] = b
        search[p] = np.maximum(search[p], b + 1)

        # 2. next change from the baseline value, over the visits of the scanning patients only
        # (``sel``: their visits, still contiguous per patient, so local = lch + (global - ch))
        sel = np.nonzero(active[code])[0]
        lcode = code[sel]
        ref = np.full(n, np.nan)
        ref[p] = value[b]
        thr = np.full(n, np.nan)
        thr[p] = change_threshold(s, value[b])
        ref_x, thr_x = ref[lcode], thr[lcode]
        rise = (value[sel] - ref_x) * (-1.0 if s.scale in LOWER_IS_WORSE else 1.0)  # > 0: worse
        worse_x = rise >= thr_x
        better_x = -rise >= thr_x
        cand = (worse_x | better_x) & (sel >= search[lcode]) & event_far[sel]
        local = _first_per(lcode, np.nonzero(cand)[0], n)[p]
        found = local >= 0
        active[p[~found]] = False
        p, b, lch = p[found], b[found], local[found]
        if not p.size:
            break
        ch = sel[lch]
        e_end = end[p]
        is_w = worse_x[lch]

        # 3. confirmation: first valid visit in any window
        conf = np.full(p.size, size, dtype=np.int64)
        per_period = []
        for c in periods:
            lo = np.maximum(np.searchsorted(key, key[ch] + int(np.ceil(c - s.tolerance[0])), side="left"), ch + 1)
            f = next_conf[lo]
            ok = f < e_end
            ok[ok] = day[f[ok]] - day[ch[ok]] <= c + s.tolerance[1]
            f = np.where(ok, f, size)
            per_period.append((lo, f))
            conf = np.minimum(conf, f)
        has_conf = conf < size
        dir_w = np.zeros(n, dtype=bool)
        dir_w[p] = is_w
        meets = np.where(dir_w[lcode], worse_x, better_x)
        next_fail = _next_true(~meets)  # local positions

        shift = lch - ch  # global visit position + shift = local position (same patient)
        lconf = np.where(has_conf, conf, ch) + shift
        inter = next_fail[lch + 1] > lconf if s.check_intermediate else meets[lconf]
        confirmed = has_conf & inter
        imputed = ~has_conf & is_w & (s.last_visit == "always") & (ch == e_end - 1)
        event = confirmed | imputed

        # 4. sustained
        after_conf = np.where(imputed, e_end, ch + (next_fail[lconf + 1] - lch))
        nonsust = np.minimum(after_conf, e_end)  # e_end = sustained to the last visit
        valid = event.copy()
        if s.sustained_days:
            if s.check_intermediate:
                lasting = nonsust >= e_end
                lasting[~lasting] = day[nonsust[~lasting]] - day[ch[~lasting]] >= s.sustained_days
            else:
                span = day[e_end - 1] - day[ch]
                target = np.searchsorted(key, key[ch] + int(np.ceil(min(s.sustained_days, 2**30))), side="left")
                sust_vis = np.where(span >= s.sustained_days, target, e_end - 1)
                lasting = meets[sust_vis + shift]
            valid &= lasting

        # 5. RAW / PIRA
        cdw_type = np.full(p.size, "", dtype=object)
        pira_conf = np.full(p.size, size, dtype=np.int64)
        if s.classify:
            w = np.nonzero(valid & is_w)[0]
            raw = (r_before[ch[w]] <= s.relapse_assoc[0]) | (r_after[ch[w]] <= s.relapse_assoc[1])
            clean = _window_free(rel, p[w], day[bl[p[w]]].astype(float), s.pira_preceding)
            clean &= _window_free(rel, p[w], day[ch[w]].astype(float), s.pira_event)
            pc = np.full(w.size, size, dtype=np.int64)
            for (lo, _), c in zip(per_period, periods, strict=True):
                g = next_pconf[lo[w]]
                ok = (g < nonsust[w]) & (g < e_end[w])
                ok[ok] = day[g[ok]] - day[ch[w][ok]] <= c + s.tolerance[1]
                pc = np.minimum(pc, np.where(ok, g, size))
            # a worsening counted at the last visit is its own confirmation visit (as pymsprog)
            at_last = imputed[w] & _window_free(rel, p[w], day[ch[w]].astype(float), s.pira_confirmation)
            pc = np.where(at_last, ch[w], pc)
            pira = ~raw & clean & (pc < size)
            cdw_type[w] = np.where(raw, "raw", np.where(pira, "pira", "undefined"))
            pira_conf[w] = np.where(pira, pc, size)
        include = valid.copy()
        if s.event == "first_pira" and s.baseline in ("fixed", "roving_improvement"):
            include &= ~is_w | (cdw_type == "pira")
        if s.event == "first_raw" and s.baseline in ("fixed", "roving_improvement"):
            include &= ~is_w | (cdw_type == "raw")

        rec = np.nonzero(include)[0]
        if rec.size:
            ci = conf[rec]
            cok = ci < size
            pci = pira_conf[rec]
            events.append({
                "code": p[rec], "event_type": np.where(is_w[rec], "cdw", "cdi"), "cdw_type": cdw_type[rec],
                "day": day[ch[rec]], "value": value[ch[rec]], "baseline_day": day[b[rec]], "baseline_value": value[b[rec]],
                "confirmation_day": np.where(cok, day[np.minimum(ci, size - 1)], -1),
                "confirmation_value": np.where(cok, value[np.minimum(ci, size - 1)], np.nan),
                "pira_confirmation_day": np.where(pci < size, day[np.minimum(pci, size - 1)], -1),
                "_change": ch[rec],
            })

        # 6. where the scan goes on
        newref = conf if s.proceed_from == "confirmation" else ch
        move = confirmed & np.where(is_w, roving_w, roving_i)
        resume = np.where(confirmed & (move | include), newref, ch) + 1
        bl[p[move]] = newref[move]
        search[p] = resume
        done = np.zeros(p.size, dtype=bool)
        if s.event == "first_cdw":
            done = include & is_w
        elif s.event == "first_cdi":
            done = include & ~is_w
        elif s.event == "first":
            done = include
        elif s.event == "first_pira":
            done = include & (cdw_type == "pira")
        elif s.event == "first_raw":
            done = include & (cdw_type == "raw")
        active[p[done]] = False

    return _collect(events, s)


def _collect(events: list[dict[str, np.ndarray]], s: EventSettings) -> pd.DataFrame:
    """One frame, in (patient, change) order, keeping the events the ``event`` setting reports."""
    if not events:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("code", "event_number", "day") else object)
                             for c in EVENT_COLUMNS})
    frame = pd.DataFrame({k: np.concatenate([e[k] for e in events]) for k in events[0]})
    frame = frame.sort_values(["code", "_change"], kind="stable")
    wanted = {"first_cdw": frame["event_type"] == "cdw", "first_cdi": frame["event_type"] == "cdi",
              "first_pira": frame["cdw_type"] == "pira", "first_raw": frame["cdw_type"] == "raw"}
    if s.event in wanted:
        frame = frame[wanted[s.event].to_numpy()]
    if s.event != "multiple":
        frame = frame.drop_duplicates("code", keep="first")
    frame = frame.drop(columns="_change").reset_index(drop=True)
    frame["event_number"] = frame.groupby("code").cumcount() + 1
    frame["cdw_type"] = frame["cdw_type"].replace("", None)
    return frame[EVENT_COLUMNS]


@dataclass(frozen=True)
class MilestoneSettings:
    """Settings of the milestone scan (days; pairs are (before, after) a relapse)."""

    milestone: float = 6.0
    confirmation_days: tuple[float, ...] = (84.0,)
    tolerance: tuple[float, float] = (7.0, 730.5)
    sustained_days: float = 0.0
    relapse_to_event: tuple[float, float] = (0.0, 0.0)
    relapse_to_confirmation: tuple[float, float] = (30.0, 0.0)


def detect_milestone(code: np.ndarray, day: np.ndarray, value: np.ndarray, n: int,
                     relapse_code: np.ndarray, relapse_day: np.ndarray, s: MilestoneSettings) -> np.ndarray:
    """Per patient, the visit position of the first confirmed value >= ``milestone`` (-1 if none).

    pymsprog's ``value_milestone`` scan: the first visit at or above the milestone (far enough from a
    relapse) counts when the first confirmation visit in a window exists and every visit up to it
    stays at or above; an unconfirmed one sends the search past the next visit below the milestone,
    one not sustained for ``sustained_days`` past the first visit that no longer holds. Visits sorted
    by (code, day), one a day; a relapse counts from the first visit minus ``relapse_to_event[0]``.
    """
    size = code.size
    code = code.astype(np.int64)
    day = day.astype(np.int64)
    start, end = patient_bounds(code, n)
    has = start < size
    first_day = np.where(has, day[np.minimum(start, max(size - 1, 0))] if size else 0, 0)
    keep = has[relapse_code] & (relapse_day >= first_day[relapse_code] - s.relapse_to_event[0])
    r_before, r_after = _Relapses(relapse_code[keep], relapse_day[keep]).distances(code, day)
    meets = np.asarray(value, dtype=float) >= s.milestone
    cand_ok = meets & (r_before >= s.relapse_to_event[0]) & (r_after >= s.relapse_to_event[1])
    next_conf = _next_true((r_before >= s.relapse_to_confirmation[0]) & (r_after >= s.relapse_to_confirmation[1]))
    next_fail = _next_true(~meets)
    key = _key(code, day)

    found = np.full(n, -1, dtype=np.int64)
    search = start.copy()
    active = has.copy()
    while active.any():
        sel = np.nonzero(active[code] & cand_ok)[0]
        sel = sel[sel >= search[code[sel]]]
        hit = _first_per(code, sel, n)
        p = np.nonzero(active)[0]
        m = hit[p]
        active[p[m < 0]] = False
        p, m = p[m >= 0], m[m >= 0]
        if not p.size:
            break
        e_end = end[p]
        conf = np.full(p.size, size, dtype=np.int64)
        for c in sorted(s.confirmation_days):
            lo = np.maximum(np.searchsorted(key, key[m] + int(np.ceil(c - s.tolerance[0])), side="left"), m + 1)
            f = next_conf[lo]
            ok = f < e_end
            ok[ok] = day[f[ok]] - day[m[ok]] <= c + s.tolerance[1]
            conf = np.minimum(conf, np.where(ok, f, size))
        confirmed = (conf < size) & (next_fail[m + 1] > conf)
        nonsust = np.minimum(next_fail[np.minimum(conf + 1, size)], e_end)
        lasting = confirmed.copy()
        if s.sustained_days:
            short = confirmed & (nonsust < e_end)
            short[short] = day[nonsust[short]] - day[m[short]] < s.sustained_days
            lasting &= ~short
        found[p[lasting]] = m[lasting]
        active[p[lasting]] = False
        below = np.minimum(next_fail[m + 1], e_end)  # unconfirmed: past the next visit below the milestone
        search[p] = np.where(confirmed, nonsust, below) + 1
        active[p[search[p] >= e_end]] = False
    return found

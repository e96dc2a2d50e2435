"""Build the synthetic IVIG-NMOSD demo cohort (no real patient data).

Run ``python specs/data/build_ivig_nmosd.py`` to regenerate ``specs/data/ivig_nmosd/*.csv``; a test
checks the committed files equal what this script writes.

How it was built: each of the 20 analysed patients is given, by design, a target value for every
figure of the published abstract (Mult Scler Relat Disord 2020;42:102109), and the dates are derived from
those targets:

* pre-IVIG ARR (since onset, onset attack included): ``pre_relapses`` onsets spread over a window of
  ``pre_relapses / ARR`` years ending at IVIG start (the last one 20-75 days before, a breakthrough);
* follow-up on IVIG (months) and post-IVIG relapses: 7 patients relapse-free, 13 with 1-2 relapses,
  6 of whom stopped IVIG for relapse after 9, 14, 19.2, 35.8, 45.8 and 52 months (median 27.5, R-type-7
  IQR 15.3-43.3); the others are still on IVIG (no end date; infusions every 60 days until 60 days
  before last follow-up, so the treatment end = last follow-up);
* EDSS at baseline (25 days before IVIG) and last on follow-up, chosen so that both medians are 4.0,
  4 progress (ms_standard thresholds), 5 improve, 11 stay stable;
* NMO-IgG titers: 19 before IVIG (median 1:480), 13 after (median 1:120), 3 turning negative, chosen
  so that the Wilcoxon signed-rank test on log2(post/pre) of the 13 pairs gives p = 0.006 (ties exact:
  scipy method auto -> exhaustive permutation, p = 0.0061);
* infusion-related adverse events, one grade 3 (not leading to discontinuation).

Three more patients are excluded by the cohort definition (antibody negative, under 6 months of IVIG,
never on IVIG), and a few messy records exercise the data-quality report: a pseudo relapse, a
duplicate relapse entry within 30 days, a later IVIG restart, records after the data cut-off.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

OUT = Path(__file__).parent / "ivig_nmosd"
CUTOFF = dt.date(2019, 12, 31)
MONTH = 365.25 / 12

# id, sex, age, pre ARR, follow-up months, post relapses, stopped for relapse,
# EDSS baseline -> final, titer pre -> post (None = not measured, 0 = negative)
PATIENTS = [
    ("P01", "F", 51.6, 1.20, 9.0, 1, True, (2.0, 3.0), (480, 0)),
    ("P02", "F", 45.0, 1.80, 14.0, 1, True, (4.0, 5.0), (960, 0)),
    ("P03", "F", 58.0, 1.38, 19.2, 1, True, (6.5, 5.5), (480, 0)),
    ("P04", "M", 62.0, 1.45, 35.8, 2, True, (4.0, 3.0), (480, 30)),
    ("P05", "F", 39.0, 1.25, 45.8, 2, True, (6.0, 6.5), (960, 60)),
    ("P06", "F", 67.0, 1.12, 52.0, 2, True, (5.0, 4.0), (240, 60)),
    ("P07", "F", 31.0, 2.60, 24.0, 2, False, (3.5, 2.5), (960, 120)),
    ("P08", "F", 52.4, 2.10, 30.0, 2, False, (7.0, 6.5), (960, 240)),
    ("P09", "F", 48.0, 1.08, 38.0, 1, False, (3.0, 4.0), (1920, 240)),
    ("P10", "F", 53.0, 0.62, 42.0, 1, False, (4.0, 4.0), (240, 480)),
    ("P11", "F", 57.0, 0.60, 44.0, 1, False, (4.0, 4.5), (3840, 480)),
    ("P12", "F", 42.0, 0.55, 60.0, 1, False, (4.5, 4.5), (120, 960)),
    ("P13", "F", 60.0, 0.50, 66.0, 1, False, (3.5, 4.0), (3840, 1920)),
    ("P14", "F", 36.0, 1.60, 41.0, 0, False, (5.5, 5.5), (60, None)),
    ("P15", "F", 55.0, 1.30, 43.0, 0, False, (2.5, 2.5), (120, None)),
    ("P16", "F", 47.0, 1.00, 48.0, 0, False, (4.0, 4.0), (320, None)),
    ("P17", "F", 64.0, 0.90, 55.0, 0, False, (1.5, 2.0), (480, None)),
    ("P18", "F", 50.0, 0.80, 62.0, 0, False, (6.5, 6.5), (1920, None)),
    ("P19", "F", 71.0, 0.45, 70.0, 0, False, (3.0, 3.0), (7680, None)),
    ("P20", "F", 51.0, 0.35, 74.0, 0, False, (5.0, 5.0), (None, None)),
]
TITER_TEXT = {0: "negative", 30: "1:30", 60: "60", 120: "1:120", 240: "1:240", 320: "1:320", 480: "1:480",
              960: "1:960", 1920: "1:1920", 3840: "1:3840", 7680: "1:7680"}


def iso(day: dt.date) -> str:
    return day.isoformat()


def build() -> dict[str, pd.DataFrame]:
    patients, treatments, admins, relapses, edss, titers, aes = [], [], [], [], [], [], []
    for i, (pid, sex, age, pre_arr, fu_months, post_n, stopped, (edss0, edss1), (t_pre, t_post)) in enumerate(PATIENTS):
        fu_days = round(fu_months * MONTH)
        index = CUTOFF - dt.timedelta(days=fu_days + 30 + 37 * i)
        end = index + dt.timedelta(days=fu_days)
        pre_n = max(2, round(pre_arr * 3))
        pre_days = round(pre_n * 365.25 / pre_arr)
        onset = index - dt.timedelta(days=pre_days)
        birth = index - dt.timedelta(days=round(age * 365.25))
        last_followup = min(end + dt.timedelta(days=120), CUTOFF) if stopped else end
        patients.append({"patient_id": pid, "sex": sex, "birth_date": iso(birth), "onset_date": iso(onset),
                         "diagnosis": "NMOSD", "antibody_status": "positive", "last_followup_date": iso(last_followup)})
        aza_start = index - dt.timedelta(days=min(round(pre_days * 0.6), 3 * 365))
        treatments.append({"patient_id": pid, "treatment": "azathioprine", "start_date": iso(aza_start), "end_date": "", "stop_reason": ""})
        treatments.append({"patient_id": pid, "treatment": "IVIG", "start_date": iso(index),
                           "end_date": iso(end) if stopped else "", "stop_reason": "relapse" if stopped else ""})
        last_infusion = end - dt.timedelta(days=20 if stopped else 60)
        day = index
        while day < last_infusion:
            admins.append({"patient_id": pid, "treatment": "IVIG", "date": iso(day), "dose": "2.0"})
            day += dt.timedelta(days=60)
        admins.append({"patient_id": pid, "treatment": "IVIG", "date": iso(last_infusion), "dose": "2.0"})
        # pre relapses: the onset attack, evenly spaced ones, the last 20-75 days before IVIG
        last_gap = 20 + (i * 11) % 56
        span = pre_days - last_gap
        for k in range(pre_n):
            offset = round(span * k / (pre_n - 1))
            severity = "severe" if k in (0, pre_n - 1) and i % 2 == 0 else "moderate"
            relapses.append({"patient_id": pid, "onset_date": iso(onset + dt.timedelta(days=offset)), "confirmed": "yes", "severity": severity, "pseudo": ""})
        # post relapses: evenly spaced; for those who stopped, the last one 20 days before stopping
        for k in range(post_n):
            if stopped and k == post_n - 1:
                when = end - dt.timedelta(days=20)
            else:
                when = index + dt.timedelta(days=round(fu_days * (k + 1) / (post_n + 1)))
            relapses.append({"patient_id": pid, "onset_date": iso(when), "confirmed": "yes", "severity": "severe" if k == 0 and i % 3 == 0 else "moderate", "pseudo": ""})
        # EDSS: baseline 25 days before IVIG, a mid-course visit, the last 10 days before follow-up end
        edss.append({"patient_id": pid, "date": iso(index - dt.timedelta(days=25)), "score": f"{edss0:.1f}"})
        edss.append({"patient_id": pid, "date": iso(index + dt.timedelta(days=fu_days // 2)), "score": f"{max(edss0, edss1):.1f}"})
        edss.append({"patient_id": pid, "date": iso(end - dt.timedelta(days=10)), "score": f"{edss1:.1f}"})
        if t_pre is not None:
            titers.append({"patient_id": pid, "date": iso(index - dt.timedelta(days=40)), "titer": TITER_TEXT[t_pre], "assay": "CBA"})
            titers.append({"patient_id": pid, "date": iso(index - dt.timedelta(days=800)), "titer": TITER_TEXT[t_pre], "assay": "CBA"})
        if t_post is not None:
            titers.append({"patient_id": pid, "date": iso(end - dt.timedelta(days=30)), "titer": TITER_TEXT[t_post], "assay": "CBA"})
    # the data-quality exhibits
    relapses.append({"patient_id": "P03", "onset_date": iso(dt.date.fromisoformat(patients[2]["onset_date"]) + dt.timedelta(days=200)), "confirmed": "no", "severity": "mild", "pseudo": "yes"})
    first_p07 = dt.date.fromisoformat(patients[6]["onset_date"])
    relapses.append({"patient_id": "P07", "onset_date": iso(first_p07 + dt.timedelta(days=12)), "confirmed": "yes", "severity": "moderate", "pseudo": ""})
    relapses.append({"patient_id": "P19", "onset_date": "2020-02-03", "confirmed": "yes", "severity": "moderate", "pseudo": ""})
    treatments.append({"patient_id": "P06", "treatment": "IVIG", "start_date": iso(dt.date.fromisoformat(treatments[11]["end_date"]) + dt.timedelta(days=90)), "end_date": "", "stop_reason": ""})
    titers.append({"patient_id": "P12", "date": "2020-01-15", "titer": "1:240", "assay": "CBA"})
    # adverse events (treatment-emergent unless noted)
    def ae(pid: str, days: int, term: str, grade: int, serious: str = "no", action: str = "none", treatment: str = "IVIG") -> None:
        index = next(dt.date.fromisoformat(t["start_date"]) for t in treatments if t["patient_id"] == pid and t["treatment"] == "IVIG")
        aes.append({"patient_id": pid, "onset_date": iso(index + dt.timedelta(days=days)), "term": term, "grade": str(grade),
                    "serious": serious, "related": "yes" if treatment == "IVIG" else "no", "action": action, "treatment": treatment})
    for pid in ("P02", "P05", "P09", "P14", "P17"):
        ae(pid, 1, "Headache", 1)
    ae("P06", 62, "Rash", 2, action="infusion slowed")
    ae("P11", 121, "Rash", 2)
    ae("P08", 180, "Aseptic meningitis", 3, action="infusion slowed")
    ae("P04", -400, "Leukopenia", 2, action="dose reduced", treatment="azathioprine")
    # three patients the cohort definition excludes
    extra = [
        ("P21", "negative", dt.date(2015, 3, 1), dt.date(2017, 3, 1)),
        ("P22", "positive", dt.date(2016, 5, 1), dt.date(2016, 8, 29)),
        ("P23", "positive", None, None),
    ]
    for pid, status, start, stop in extra:
        patients.append({"patient_id": pid, "sex": "F", "birth_date": "1970-06-15", "onset_date": "2010-04-01",
                         "diagnosis": "NMOSD", "antibody_status": status, "last_followup_date": "2019-06-30"})
        treatments.append({"patient_id": pid, "treatment": "azathioprine", "start_date": "2012-01-10", "end_date": "", "stop_reason": ""})
        relapses.append({"patient_id": pid, "onset_date": "2010-04-01", "confirmed": "yes", "severity": "moderate", "pseudo": ""})
        if start:
            treatments.append({"patient_id": pid, "treatment": "IVIG", "start_date": iso(start), "end_date": iso(stop),
                               "stop_reason": "adverse event" if pid == "P22" else "patient choice"})
    return {
        "patients": pd.DataFrame(patients), "treatments": pd.DataFrame(treatments), "administrations": pd.DataFrame(admins),
        "relapses": pd.DataFrame(relapses), "edss": pd.DataFrame(edss), "titers": pd.DataFrame(titers),
        "adverse_events": pd.DataFrame(aes),
    }


def write(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in build().items():
        frame.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    write()

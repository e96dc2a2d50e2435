"""The disability and titer endpoints on partitions of the patients give the files of one run.

``edss_progression``, ``titer_reduction``, ``disability_events`` and ``disability_milestone`` derive
per-patient frames on each partition and summarise the merged frame, so a run with
``--partitions 3`` or ``8`` must write every output file byte for byte as ``--partitions 1`` does.
The data are a simulated registry (400 patients) with a few additions that reach the code paths the
simulation does not: same-day EDSS and titer records (dropped, counted in the notes and the
per-patient frames, in CSV-line order) and a ``measurements`` table (T25FW, 9HPT, SDMT) derived from
the EDSS scores. A second registry of 6 patients on 8 partitions leaves some partitions without any
patient.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from endpointkit.partitioning import partition_of
from endpointkit.plugins.disability_events import DisabilityEvents, DisabilityMilestone
from endpointkit.plugins.edss_progression import EdssProgression
from endpointkit.plugins.titer_reduction import TiterReduction

ENDPOINTS = """
endpoints:
  - {id: edss, plugin: edss_progression}
  - {id: edss_roving, plugin: edss_progression, params: {confirmation_months: 6, reference: roving, improvement: any_decrease}}
  - id: edss_fixed
    plugin: edss_progression
    params: {baseline: nearest_index, confirmation_months: 3, threshold_rule: nmosd_trials, exclude_within_relapse_days: 30}
  - {id: titer, plugin: titer_reduction}
  - id: titer_nadir
    plugin: titer_reduction
    params: {post_timepoint: nadir, negative_value: lod_half, median_scale: log2, population: paired_complete}
  - {id: titer_lod, plugin: titer_reduction, params: {negative_value: lod, pre_window_days: 730}}
  - {id: cdw, plugin: disability_events}
  - {id: multiple, plugin: disability_events, params: {event: multiple, baseline: roving, pira_raw: true}}
  - id: first
    plugin: disability_events
    params: {event: first, baseline: roving_worsening, proceed_from: event, sustained_days: 168,
             check_intermediate: false, last_visit: always, confirmation_days: [84, 168]}
  - {id: pira, plugin: disability_events, params: {event: first_pira, relapse_to_baseline_days: [30, 30]}}
  - {id: t25fw, plugin: disability_events, params: {scale: t25fw}}
  - {id: sdmt, plugin: disability_events, params: {scale: sdmt, event: multiple, baseline: roving}}
  - {id: hpt, plugin: disability_events, params: {scale: 9hpt, event: first_cdi}}
  - {id: milestone4, plugin: disability_milestone, params: {milestone: 4.0}}
  - id: milestone6
    plugin: disability_milestone
    params: {milestone: 6.0, sustained_days: end, relapse_to_event_days: 30, landmarks_months: [6, 36]}
"""

VARIANTS = """
sensitivity:
  - {name: titers on complete pairs, set: {titer.population: paired_complete, titer.median_scale: log2}}
  - {name: weibull quantiles, set: {statistics.quantile_method: weibull}}
  - {name: follow-up to last visit, set: {cohort.follow_up_end: last_followup}}
  - {name: 24-week CDW, set: {cdw.confirmation_days: 168, edss.threshold_rule: any_increase}}
"""


# The endpoints above do not require the relapses table (they use it when it is loaded): this one
# does, so that the 400-patient run loads it; the 6-patient run goes without it.
RELAPSE_PLUGIN = '''
import numpy as np
import pandas as pd

from endpointkit import Endpoint, EndpointResult, hookimpl
from endpointkit.stats import median_row


class RelapseCount(Endpoint):
    name = "relapse_count"
    requires = ("relapses",)

    def derive(self, cohort, params, ctx):
        rows = cohort.patient_rows(cohort.table("relapses"))
        counts = np.bincount(rows[rows >= 0], minlength=len(cohort.patients))
        return pd.DataFrame({"patient_id": cohort.patients["patient_id"].to_numpy(), "relapses": counts})

    def summarise(self, per_patient, params, ctx):
        return EndpointResult(rows=[median_row("relapses", per_patient["relapses"], ctx.quantile_method)],
                              per_patient=per_patient)


@hookimpl
def register_endpoints():
    return [RelapseCount]
'''


def spec_text(data: Path, relapses: bool) -> str:
    plugin = "plugins: [relapse_count.py]\n" if relapses else ""
    endpoint = "  - {id: relapses, plugin: relapse_count}\n" if relapses else ""
    return f"""
study: {{id: partitions, title: Disability endpoints on partitions}}
data: {{source: csv, path: {data}}}
{plugin}cohort:
  index: {{treatment: IVIG}}
{ENDPOINTS}{endpoint}{VARIANTS}"""


def _augment(data: Path) -> None:
    """Same-day EDSS and titer records, out of CSV-line order, and a measurements table from EDSS."""
    edss = pd.read_csv(data / "edss.csv", dtype=str)
    rng = np.random.default_rng(7)
    picked = edss.iloc[rng.choice(len(edss), size=min(40, len(edss)), replace=False)].copy()
    picked["score"] = [f"{min(float(s) + 0.5, 10):g}" if float(s) > 0 else "1" for s in picked["score"]]  # on the grid
    pd.concat([picked.iloc[:20], edss, picked.iloc[20:]]).to_csv(data / "edss.csv", index=False)

    titers = pd.read_csv(data / "titers.csv", dtype=str)
    again = titers.iloc[rng.choice(len(titers), size=min(30, len(titers)), replace=False)].copy()
    again["titer"] = "1:40"
    pd.concat([titers, again]).to_csv(data / "titers.csv", index=False)

    score = edss["score"].astype(float)
    measurements = pd.concat([
        pd.DataFrame({"patient_id": edss["patient_id"], "date": edss["date"], "scale": "t25fw",
                      "value": (5 + 1.6 * score).round(1)}),
        pd.DataFrame({"patient_id": edss["patient_id"], "date": edss["date"], "scale": "9hpt",
                      "value": (18 + 2.5 * score).round(1)}),
        pd.DataFrame({"patient_id": edss["patient_id"], "date": edss["date"], "scale": "sdmt",
                      "value": (62 - 5 * score).clip(0, 110).round()}),
    ])
    measurements.to_csv(data / "measurements.csv", index=False)


@pytest.fixture(scope="module")
def registries(tmp_path_factory) -> dict[str, Path]:
    from endpointkit.cli import main

    root = tmp_path_factory.mktemp("registries")
    (root / "relapse_count.py").write_text(RELAPSE_PLUGIN)
    out = {}
    for name, patients in (("registry_400", 400), ("registry_6", 6)):
        data = root / name
        assert main(["simulate", "--patients", str(patients), "--seed", "3", "-o", str(data)]) == 0
        _augment(data)
        spec = root / f"{name}.yaml"
        spec.write_text(spec_text(data, relapses=patients > 6))
        out[name] = spec
    return out


def _run(spec: Path, partitions: int, where: Path) -> Path:
    """One run into a fixed output folder (its path is written into results.json), then moved."""
    from endpointkit.cli import main

    work = where / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        assert main(["run", str(spec), "-o", str(work), "--quiet", "--partitions", str(partitions)]) == 0
    final = where / f"partitions_{partitions}"
    shutil.move(work, final)
    return final


@pytest.fixture(scope="module")
def runs(registries, tmp_path_factory) -> dict[tuple[str, int], Path]:
    """Each registry's outputs with 1, 3 and 8 partitions."""
    out = {}
    for name, spec in registries.items():
        where = tmp_path_factory.mktemp(name)
        for partitions in (1, 3, 8):
            out[name, partitions] = _run(spec, partitions, where)
    return out


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _ids(spec: Path) -> list[str]:
    lines = spec.read_text().splitlines()
    return [line.split("id: ")[1].split(",")[0] for line in lines if line.lstrip().startswith(("- {id: ", "- id: "))]


def test_the_endpoints_split():
    assert all(cls.splits() for cls in (EdssProgression, TiterReduction, DisabilityEvents, DisabilityMilestone))


def test_the_partitions_interleave_and_some_are_empty(registries):
    """The 400 patients alternate between partitions in the patients table (the merge must reorder
    them); 6 patients leave at least 2 of 8 partitions empty."""
    for name, size in (("registry_400", 400), ("registry_6", 6)):
        ids = pd.read_csv(registries[name].parent / name / "patients.csv", dtype=str)["patient_id"]
        assert len(ids) == size
        if size == 400:
            assert (np.diff(partition_of(ids, 3)) != 0).sum() > 100
        else:
            assert len(set(partition_of(ids, 8))) <= 6


@pytest.mark.parametrize("registry", ["registry_400", "registry_6"])
def test_partitions_write_the_same_files(registry, registries, runs):
    one = runs[registry, 1]
    files = _files(one)
    ids = _ids(registries[registry])
    assert {f"per_patient/{i}.csv" for i in ids} <= set(files)
    results = pd.read_csv(one / "results.csv")
    assert set(results["endpoint"]) == set(ids)  # every endpoint ran in every variant: no failure
    assert results.groupby("variant")["endpoint"].nunique().eq(len(ids)).all()
    for partitions in (3, 8):
        other = runs[registry, partitions]
        assert _files(other) == files
        differ = [f for f in files if not filecmp.cmp(one / f, other / f, shallow=False)]
        assert differ == [], f"--partitions {partitions}: {differ}"


def test_the_additions_reach_the_notes_and_frames(runs):
    """The same-day records and the measurements are used (else the comparison above proves less)."""
    one = runs["registry_400", 1]
    edss = pd.read_csv(one / "per_patient" / "edss.csv")
    assert edss["same_day_scores_dropped"].sum() > 0
    assert pd.read_csv(one / "per_patient" / "edss_fixed.csv")["scores_ignored_near_relapse"].sum() > 0
    assert pd.read_csv(one / "per_patient" / "titer.csv")["same_day_duplicates_ignored"].sum() > 0
    multiple = pd.read_csv(one / "per_patient" / "multiple.csv")
    assert (multiple["event_number"] > 1).any()  # several rows for one patient
    assert multiple["cdw_type"].notna().any()
    for scale in ("t25fw", "sdmt", "hpt"):
        assert pd.read_csv(one / "per_patient" / f"{scale}.csv")["included"].any()
    assert "No relapses table was loaded" not in (one / "table.md").read_text()
    assert "_relapses_loaded" not in pd.read_csv(one / "per_patient" / "cdw.csv").columns
    assert "_relapses_loaded" not in pd.read_csv(one / "per_patient" / "edss.csv").columns
    assert "_positive_before" not in pd.read_csv(one / "per_patient" / "titer.csv").columns


def test_summary_settings_reuse_the_derived_frame(registries, monkeypatch, tmp_path):
    """Variants that differ only in a summary setting (titer population and median scale, KM
    landmarks) derive once; any other setting derives again."""
    from endpointkit import run

    calls: dict[str, int] = {}
    for cls in (TiterReduction, DisabilityEvents, DisabilityMilestone):
        original = cls.derive

        def counted(self, cohort, params, ctx, _original=original, _name=cls.name):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(self, cohort, params, ctx)

        monkeypatch.setattr(cls, "derive", counted)
    data = registries["registry_6"].parent / "registry_6"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
study: {{id: reuse, title: Reuse}}
data: {{source: csv, path: {data}}}
cohort: {{index: {{treatment: IVIG}}}}
endpoints:
  - {{id: titer, plugin: titer_reduction}}
  - {{id: cdw, plugin: disability_events}}
  - {{id: milestone, plugin: disability_milestone}}
sensitivity:
  - {{name: pairs, set: {{titer.population: paired_complete, titer.median_scale: log2}}}}
  - {{name: landmarks, set: {{cdw.landmarks_months: [6], milestone.landmarks_months: [36]}}}}
  - {{name: nadir, set: {{titer.post_timepoint: nadir, cdw.confirmation_days: 168, milestone.milestone: 3}}}}
""")
    results = run(spec)
    assert calls == {"titer_reduction": 2, "disability_events": 2, "disability_milestone": 2}
    assert results.frame.groupby("variant")["endpoint"].nunique().to_dict() == {
        "primary": 3, "pairs": 3, "landmarks": 3, "nadir": 3}
    landmarks = results.frame[results.frame["variant"] == "landmarks"]["measure"]
    assert {"time_to_cdw_at_6m", "time_to_milestone_at_36m"} <= set(landmarks)

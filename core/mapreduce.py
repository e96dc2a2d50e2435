"""The map step of a run and the exact merge of its partitions.

A run is planned once (:func:`plan_run`): the distinct cohorts its variants build, and the distinct
derivations (an endpoint's ``derive`` under one cohort and the params it reads). Each partition of
the patients is then mapped (:func:`map_partition`): it builds each cohort on its own patients and
derives each endpoint's per-patient frame. :func:`merge` puts the partitions together exactly:
attrition counts add up, data-quality records and per-patient rows are concatenated and put in
the order of the source lines, so that any number of partitions gives the result of one.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .cohort import QUALITY_COLUMNS, Refusal, build_cohort, refusal_error, report_order
from .data import LINE, CohortData
from .endpoint import Context, EndpointResult
from .errors import EndpointkitError, SpecError, UsageError
from .groups import Grouping
from .manager import Plugins
from .params import params_dict
from .spec import CohortSettings, Spec
from .spill import FrameStore, StoredFrame, assemble

ORDER = "__source_line"  # the patient's line in the patients table: the order of merged per-patient rows


def cohort_key(spec: Spec) -> str:
    """What a cohort depends on: the resolved cohort settings and the data cut-off."""
    resolved = spec.resolved()["cohort"]
    return json.dumps([resolved, str(spec.cohort.cutoff)], sort_keys=True, default=str)


def _settings_text(params: Any, leave_out: tuple[str, ...] = ()) -> str:
    if not dataclasses.is_dataclass(params):
        return repr(params)
    return json.dumps({k: v for k, v in params_dict(params).items() if k not in leave_out}, sort_keys=True, default=str)


def derive_key(cohort: str, plugin: str, endpoint_cls: type, params: Any, year_days: float) -> tuple:
    """What an endpoint's derived frame depends on: the cohort, the plugin, the params it reads, the year length."""
    return ("derive", cohort, plugin, type(params).__qualname__, _settings_text(params, endpoint_cls.summary_params), year_days)


def result_key(cohort: str, plugin: str, params: Any, ctx: Context) -> tuple:
    """What an endpoint's result depends on: the cohort, the plugin, all its params, the statistics settings."""
    return ("endpoint", cohort, plugin, type(params).__qualname__, _settings_text(params),
            ctx.quantile_method, repr(ctx.paired_test), ctx.year_days)


def context_of(spec: Spec, cache: dict | None = None) -> Context:
    return Context(quantile_method=spec.statistics.quantile_method, paired_test=spec.paired_test,
                   year_days=spec.statistics.year_days, cache={} if cache is None else cache)


@dataclass(frozen=True)
class Step:
    """One endpoint computation of the map: a ``derive`` (``whole`` False) or, for an endpoint
    that only implements ``compute``, its whole result (one partition only)."""

    cohort: str
    plugin: str
    params: Any
    ctx: Context
    whole: bool = False


@dataclass
class Plan:
    """The cohorts and endpoint computations a run needs, each once."""

    cohorts: dict[str, CohortSettings]
    steps: dict[tuple, Step]
    # per cohort, the groupings (``by:``) its variants and endpoints use, by Grouping.key
    groupings: dict[str, dict[str, Grouping]] = field(default_factory=dict)
    # per whole-cohort step (a compute-only endpoint), the groupings to compute it within
    whole_groups: dict[tuple, dict[str, Grouping]] = field(default_factory=dict)

    def steps_of(self, cohort: str) -> list[tuple[tuple, Step]]:
        return [(key, step) for key, step in self.steps.items() if step.cohort == cohort]


def plan_run(variants: list[Spec], plugins: Plugins, only: tuple[str, ...], partitions: int) -> Plan:
    """The distinct cohorts and derivations of these variants; an endpoint that cannot be split by
    patient refuses more than one partition."""
    cohorts: dict[str, CohortSettings] = {}
    steps: dict[tuple, Step] = {}
    groupings: dict[str, dict[str, Grouping]] = {}
    whole_groups: dict[tuple, dict[str, Grouping]] = {}
    for variant in variants:
        key = cohort_key(variant)
        cohorts.setdefault(key, variant.cohort)
        ctx = context_of(variant)
        if variant.by is not None:
            groupings.setdefault(key, {}).setdefault(variant.by.key, variant.by)
        for endpoint in variant.endpoints:
            if only and endpoint.id not in only:
                continue
            if endpoint.by is not None:
                groupings.setdefault(key, {}).setdefault(endpoint.by.key, endpoint.by)
            endpoint_cls = plugins.endpoints.items[endpoint.plugin]
            if endpoint_cls.splits():
                steps.setdefault(derive_key(key, endpoint.plugin, endpoint_cls, endpoint.params, ctx.year_days),
                                 Step(key, endpoint.plugin, endpoint.params, ctx))
            elif partitions > 1:
                raise UsageError(
                    f"--partitions {partitions}: endpoint '{endpoint.id}' (plugin {endpoint.plugin}, from "
                    f"{endpoint_cls.provider or 'a plugin'}) implements only compute(), so it cannot run on partitions "
                    "of the patients; run it with --partitions 1, or leave it out with --only, or give the plugin "
                    "derive() and summarise() (see the plugin guide)")
            else:
                step_key = result_key(key, endpoint.plugin, endpoint.params, ctx)
                steps.setdefault(step_key, Step(key, endpoint.plugin, endpoint.params, ctx, whole=True))
                if endpoint.by is not None:
                    whole_groups.setdefault(step_key, {}).setdefault(endpoint.by.key, endpoint.by)
    return Plan(cohorts=cohorts, steps=steps, groupings=groupings, whole_groups=whole_groups)


@dataclass(frozen=True)
class Failure:
    """A step that raised: a user's mistake (``spec``: exit 2 with the endpoint's spec path) or a
    plugin's bug (the endpoint's rows fail, exit 3)."""

    reason: str
    detail: str = ""
    spec_path: str | None = None  # set for a user's mistake (EndpointkitError): the path under endpoints[i]


@dataclass
class GroupPart:
    """One grouping of one partition's patients: each patient's group (every patient of the data,
    ``analysed`` or not, with its source line) and the attrition flow of each group."""

    labels: pd.DataFrame  # patient_id, group, analysed, ORDER
    flow: dict[str, np.ndarray]  # group -> patients remaining after each attrition step


@dataclass
class CohortPart:
    """One cohort built on one partition: what the merge needs of it."""

    steps: list[tuple[str, int]] = field(default_factory=list)
    quality: pd.DataFrame | StoredFrame = field(default_factory=lambda: pd.DataFrame(columns=QUALITY_COLUMNS))
    refusals: list[Refusal] = field(default_factory=list)
    failure: Failure | None = None
    patients: int = 0
    groups: dict[str, GroupPart] = field(default_factory=dict)


@dataclass
class WholeGroups:
    """A compute-only endpoint's results within each group of one grouping (one partition only)."""

    results: dict[str, EndpointResult | Failure]


def group_part(cohort, grouping: Grouping) -> GroupPart:
    """Each patient's group and the attrition flow per group, from this cohort's patients
    (vectorised: one bincount per group)."""
    everyone, exits = cohort.everyone, cohort.exits
    labels = grouping.labels(everyone)
    lines = everyone[LINE].to_numpy(dtype=np.int64) if LINE in everyone else np.arange(len(everyone))
    steps = len(cohort.attrition)
    codes, uniques = pd.factorize(labels)
    flow = {}
    for code, level in enumerate(uniques):
        left = np.bincount(exits[codes == code], minlength=steps + 1)  # patients leaving at each step
        flow[str(level)] = (left[::-1].cumsum()[::-1][1:] + 0).astype(np.int64)  # remaining after step k: exits > k
    frame = pd.DataFrame({"patient_id": everyone["patient_id"].to_numpy(), "group": labels.to_numpy(dtype=object),
                          "analysed": exits == steps, ORDER: lines})
    return GroupPart(labels=frame, flow=flow)


@dataclass
class PartitionOutput:
    """The map of one partition (or of some cohorts of one partition)."""

    part: int
    cohorts: dict[str, CohortPart]
    results: dict[tuple, pd.DataFrame | EndpointResult | Failure]
    checksums: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def failure_of(exc: BaseException) -> Failure:
    """What an exception raised by a plugin means for its rows: a user's mistake (an EndpointkitError,
    with its spec path) or a plugin's bug (its type and message, and the last frames of its traceback)."""
    if isinstance(exc, EndpointkitError):
        return Failure(getattr(exc, "message", str(exc)), spec_path=getattr(exc, "path", "") or "")
    if isinstance(exc, SystemExit):
        return Failure(f"the plugin called sys.exit({exc.code!r}); a plugin must raise an exception instead",
                       traceback.format_exc(limit=-3))
    return Failure(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=-3))


def map_partition(data: CohortData, part: int, plan: Plan, cohort_keys: list[str], plugins: Plugins) -> PartitionOutput:
    """Build each cohort on this partition's patients and run its steps."""
    started = time.perf_counter()
    cohorts: dict[str, CohortPart] = {}
    results: dict[tuple, Any] = {}
    for key in cohort_keys:
        try:
            cohort = build_cohort(data, plan.cohorts[key], plugins.criteria, partial=True)
        except EndpointkitError:
            raise
        except (Exception, SystemExit) as exc:  # a criterion plugin's bug: the variants of this cohort fail
            failure = failure_of(exc)
            cohorts[key] = CohortPart(failure=dataclasses.replace(failure, reason=f"building the cohort failed: {failure.reason}"))
            continue
        groups = {gkey: group_part(cohort, grouping) for gkey, grouping in plan.groupings.get(key, {}).items()}
        cohorts[key] = CohortPart(steps=list(cohort.attrition[["step", "remaining"]].itertuples(index=False, name=None)),
                                  quality=cohort.quality, refusals=cohort.refusals, patients=len(cohort.patients),
                                  groups=groups)
        lines = cohort.patients[LINE].to_numpy(dtype=np.int64) if LINE in cohort.patients else np.arange(len(cohort.patients))
        cache: dict = {}  # what the steps memoise, within this partition
        splits: dict[str, dict] = {}  # each grouping's cohorts, built once for every compute-only step
        for step_key, step in plan.steps_of(key):
            endpoint = plugins.endpoints.items[step.plugin]()
            ctx = dataclasses.replace(step.ctx, cache=cache)
            try:
                if step.whole:
                    results[step_key] = endpoint.compute(cohort, step.params, ctx)
                    for gkey, grouping in plan.whole_groups.get(step_key, {}).items():
                        if gkey not in splits:
                            splits[gkey] = _split(cohort, groups[gkey], grouping)
                        results[(*step_key, "by", gkey)] = _compute_within(endpoint, splits[gkey], step, ctx)
                    continue
                frame = endpoint.derive(cohort, step.params, ctx)
                if not isinstance(frame, pd.DataFrame) or not len(frame.columns) or frame.columns[0] != "patient_id":
                    results[step_key] = Failure(f"derive() must return a DataFrame whose first column is patient_id, got "
                                                f"{type(frame).__name__}")
                    continue
                rows = cohort.patient_rows(frame)
                results[step_key] = frame.assign(**{ORDER: np.where(rows >= 0, lines[np.clip(rows, 0, None)], -1)})
            except (Exception, SystemExit) as exc:  # noqa: PERF203 - one step's failure must not stop the others
                results[step_key] = failure_of(exc)
    return PartitionOutput(part=part, cohorts=cohorts, results=results, checksums=dict(data.checksums),
                           seconds=time.perf_counter() - started)


def _split(cohort, part: GroupPart, grouping: Grouping) -> dict:
    """The cohort of each group's analysed patients (``Cohort.split``), for compute-only endpoints."""
    analysed = part.labels[part.labels["analysed"].to_numpy()]
    group_of = pd.Series(analysed["group"].to_numpy(), index=analysed["patient_id"].to_numpy())
    groups = group_of.reindex(cohort.patients["patient_id"].to_numpy()).to_numpy(dtype=object)
    return cohort.split(groups, grouping.analysed(grouping.levels(set(groups))))


def _compute_within(endpoint, cohorts: dict, step: Step, ctx: Context) -> WholeGroups:
    """A compute-only endpoint on each group's patients."""
    out: dict[str, EndpointResult | Failure] = {}
    for level, subset in cohorts.items():
        try:
            out[level] = endpoint.compute(subset, step.params, ctx)
        except (Exception, SystemExit) as exc:  # noqa: PERF203 - one group's failure must not stop the others
            out[level] = failure_of(exc)
    return WholeGroups(results=out)


@dataclass
class MergedGroups:
    """One grouping of a whole cohort: every patient's group, the groups in order, the analysed
    patients per group and the attrition flow per group."""

    grouping: Grouping
    labels: pd.Series  # group by patient_id, every patient of the data
    analysed: pd.Series  # group by patient_id, the analysed patients in cohort order
    levels: list[str]  # every group of the data, in order
    sizes: dict[str, int]  # analysed patients per group
    attrition: pd.DataFrame  # group, step, remaining, excluded


@dataclass
class MergedCohort:
    """A cohort put together from its partitions."""

    attrition: pd.DataFrame
    quality: pd.DataFrame | StoredFrame
    patients: int
    failure: Failure | None = None
    error: SpecError | None = None  # a refusal that holds for the whole cohort
    groups: dict[str, MergedGroups] = field(default_factory=dict)


@dataclass
class Merged:
    cohorts: dict[str, MergedCohort]
    results: dict[tuple, DerivedParts | EndpointResult | WholeGroups | Failure]
    checksums: dict[str, str]


def _merge_cohort(parts: list[CohortPart], settings: CohortSettings, groupings: dict[str, Grouping],
                  store: FrameStore | None) -> MergedCohort:
    failed = next((p.failure for p in parts if p.failure is not None), None)
    if failed is not None:
        empty = pd.DataFrame(columns=["step", "remaining", "excluded"])
        return MergedCohort(attrition=empty, quality=pd.DataFrame(columns=QUALITY_COLUMNS), patients=0, failure=failed)
    names = [name for name, _ in parts[0].steps]
    remaining = np.sum([[n for _, n in p.steps] for p in parts], axis=0)
    attrition = pd.DataFrame({"step": names, "remaining": remaining.astype(np.int64)})
    attrition["excluded"] = (-attrition["remaining"].diff()).fillna(0).astype(int)
    qualities = [p.quality if isinstance(p.quality, StoredFrame) else _kept_quality(p.quality)
                 for p in parts if isinstance(p.quality, StoredFrame) or not p.quality.empty]
    quality = assemble(qualities, REPORT_ORDER) if qualities else parts[0].quality
    error = None
    refusals = sorted((r for p in parts for r in p.refusals), key=lambda r: r.step)
    for refusal in refusals:  # the first step after which nobody remains in the whole cohort
        if attrition["remaining"].iloc[refusal.step] == 0 and attrition["remaining"].iloc[refusal.step - 1] > 0:
            evidence = pd.concat([r.evidence for r in refusals if r.path == refusal.path], ignore_index=True)
            error = refusal_error(refusal, int(attrition["remaining"].iloc[refusal.step - 1]), evidence, settings)
            break
    groups = {gkey: _merge_groups([p.groups[gkey] for p in parts], groupings[gkey], names) for gkey in groupings}
    return MergedCohort(attrition=attrition, quality=store.put(quality) if store is not None else quality,
                        patients=int(remaining[-1]), error=error, groups=groups)


def _merge_groups(parts: list[GroupPart], grouping: Grouping, steps: list[str]) -> MergedGroups:
    """The groups of every partition's patients, in source-line order, and the attrition per group
    (each partition's counts added: exact for any number of partitions)."""
    labels = _merge_frames([p.labels for p in parts])
    flows: dict[str, np.ndarray] = {}
    for part in parts:
        for level, counts in part.flow.items():
            flows[level] = flows[level] + counts if level in flows else counts.copy()
    levels = grouping.levels(flows)
    analysed = labels[labels["analysed"].to_numpy()]
    analysed_groups = pd.Series(analysed["group"].to_numpy(), index=analysed["patient_id"].to_numpy(), dtype=object)
    sizes = analysed_groups.value_counts().to_dict()
    records = []
    for level in levels:
        remaining = flows[level]
        excluded = np.concatenate([[0], -np.diff(remaining)])
        records.append(pd.DataFrame({"group": level, "step": steps, "remaining": remaining.astype(np.int64),
                                     "excluded": excluded.astype(int)}))
    attrition = pd.concat(records, ignore_index=True) if records else pd.DataFrame(columns=["group", "step", "remaining", "excluded"])
    return MergedGroups(grouping=grouping, labels=pd.Series(labels["group"].to_numpy(), index=labels["patient_id"].to_numpy(), dtype=object),
                        analysed=analysed_groups, levels=levels, sizes={level: int(sizes.get(level, 0)) for level in levels},
                        attrition=attrition)


def _merge_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-patient rows of every partition, in the order of their patients' source lines (a
    patient's own rows keep their order)."""
    return assemble([StoredFrame.held(f) for f in frames], ORDER)


@dataclass
class DerivedParts:
    """An endpoint's derived per-patient frames, one per partition (in memory or on disk): merged
    only when its summary needs them, so that a run holds one endpoint's frame at a time."""

    parts: list[StoredFrame]

    def frame(self) -> pd.DataFrame:
        """The partitions' rows in the order of their patients' source lines (exact: the frame one
        partition would have derived)."""
        return assemble(self.parts, ORDER)


REPORT_ORDER = "__report_order"  # a data-quality record's place in the merged report


def keep_output(output: PartitionOutput, store: FrameStore) -> PartitionOutput:
    """A partition's map as it arrives: its per-patient frames and data-quality records handed to
    the store (which writes them to disk beyond its memory budget)."""
    for key, value in output.results.items():
        if isinstance(value, pd.DataFrame):
            output.results[key] = store.put(value)
    for part in output.cohorts.values():
        if isinstance(part.quality, pd.DataFrame) and not part.quality.empty:
            part.quality = _kept_quality(part.quality, store)
    return output


def _kept_quality(quality: pd.DataFrame, store: FrameStore | None = None) -> StoredFrame:
    frame = quality.assign(**{REPORT_ORDER: report_order(quality)})
    return store.put(frame) if store is not None else StoredFrame.held(frame)


def merge(outputs: list[PartitionOutput], plan: Plan, store: FrameStore | None = None) -> Merged:
    """The partitions' maps as the map of the whole data (exact: counts add, rows concatenate).

    An endpoint's per-patient frames stay in their parts (:class:`DerivedParts`) until its summary
    asks for them; each cohort's merged data-quality records go to ``store``, if given."""
    outputs = sorted(outputs, key=lambda o: o.part)
    cohorts = {}
    for key, settings in plan.cohorts.items():
        parts = [o.cohorts[key] for o in outputs if key in o.cohorts]
        cohorts[key] = _merge_cohort(parts, settings, plan.groupings.get(key, {}), store)
    results: dict[tuple, Any] = {}
    for key in plan.steps:
        parts = [o.results.pop(key) for o in outputs if key in o.results]
        failed = next((p for p in parts if isinstance(p, Failure)), None)
        if failed is not None:
            results[key] = failed
        elif parts and isinstance(parts[0], EndpointResult):
            results[key] = parts[0]  # a whole-cohort compute: one partition only
        elif parts:
            results[key] = DerivedParts([p if isinstance(p, StoredFrame) else StoredFrame.held(p) for p in parts])
        for gkey in plan.whole_groups.get(key, {}):
            within = [o.results[(*key, "by", gkey)] for o in outputs if (*key, "by", gkey) in o.results]
            if within:
                results[(*key, "by", gkey)] = within[0]
    checksums = outputs[0].checksums if outputs else {}
    return Merged(cohorts=cohorts, results=results, checksums=checksums)

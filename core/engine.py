"""The pipeline: spec -> data -> cohort -> endpoints -> results, for the primary run and every variant.

Variants share the loaded data; the cohort and any derivation an endpoint memoises through
``Context.cached`` are rebuilt only when a setting they depend on changes. An endpoint's result is a
function of the cohort, its params and the statistics settings only, so a variant that changes none
of them for an endpoint reuses the result already computed (a 32-variant grid over four settings
computes each endpoint only once per distinct combination of the settings it depends on).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .cohort import build_cohort, concat_quality
from .data import CohortData, load_data, tables_needed
from .endpoint import Context, EndpointResult
from .errors import SpecError, UsageError
from .executors import DaskStart, ExecutorSettings, Job, Recipe, execute, recipe_of, tasks_for
from .groups import comparison_label
from .manager import Plugins
from .mapreduce import (
    DerivedParts,
    Failure,
    Merged,
    MergedGroups,
    Plan,
    WholeGroups,
    cohort_key,
    context_of,
    derive_key,
    failure_of,
    keep_output,
    merge,
    plan_run,
    result_key,
)
from .partitioning import split_data
from .results import RESULT_COLUMNS, VariantResult, check_rows, rows_to_frame
from .spec import Spec, load_spec
from .spill import FrameParts, FrameStore, PerPatientFrames, StoredFrame, as_frame, release_memory


def needed_tables(spec: Spec, plugins: Plugins, only: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The tables a run reads: those its endpoints (``--only``: those endpoints) require, and those
    they use when the data have them."""
    chosen = [e for s in (spec, *spec.variants) for e in s.endpoints if not only or e.id in only]
    requires = [plugins.endpoints.items[e.plugin].requires_for(e.params) for e in chosen]
    uses = [plugins.endpoints.items[e.plugin].uses for e in chosen]
    if any(s.cohort.index_event == "first_administration" for s in (spec, *spec.variants)):
        requires.append(("administrations",))  # the index date is read from it
    return tables_needed(requires, uses)


def data_source(spec: Spec, plugins: Plugins):
    """The source that reads the spec's data: ``data.source``, except that a dataset written by
    ``endpointkit partition`` is read by the parquet source whatever source it was written from."""
    from .partitioned_dataset import is_partitioned

    if "parquet" in plugins.sources.items and is_partitioned(spec.data_path):
        return plugins.sources.items["parquet"]
    return plugins.sources.items[spec.data.source]


def load_spec_data(spec: Spec, plugins: Plugins, only: tuple[str, ...] = ()) -> CohortData:
    required, optional = needed_tables(spec, plugins, only)
    return load_data(data_source(spec, plugins), spec.data_path, required, optional, spec.data.columns, spec.reading)


def reads_partitions(spec: Spec, plugins: Plugins) -> bool:
    """Whether the spec's source reads one partition of the patients without the others: a
    ``reads_partitions`` attribute, or a method of the data path (a source that can for some data)."""
    reads = getattr(data_source(spec, plugins), "reads_partitions", False)
    return bool(reads(spec.data_path) if callable(reads) else reads)


def partition_reader(spec: Spec, plugins: Plugins, only: tuple[str, ...] = ()) -> Callable[[int, int], CohortData]:
    """Reads (and validates) partition ``part`` of ``parts`` through the spec's source."""
    required, optional = needed_tables(spec, plugins, only)
    source = data_source(spec, plugins)

    def read(part: int, parts: int) -> CohortData:
        from .partitioning import load_partition

        return load_partition(source, spec.data_path, required, optional, spec.data.columns, spec.reading, part, parts)

    return read


def check_cohorts(spec: Spec, data: CohortData, plugins: Plugins) -> None:
    """Build the cohort of the primary spec and of each variant with distinct cohort settings, so
    that the spec's every ``where`` column, index treatment, criterion and grouping (``by``) is checked
    against the data (``validate``): what would stop ``run`` stops here."""
    seen: set[str] = set()
    cohorts = {}
    for variant in (spec, *spec.variants):
        key = cohort_key(variant)
        if key not in seen:
            seen.add(key)
            cohorts[key] = build_cohort(data, variant.cohort, plugins.criteria)
        for grouping in (variant.by, *(e.by for e in variant.endpoints)):
            if grouping is not None:  # an unknown column or expression names its spec path
                grouping.labels(cohorts[key].everyone)


def _shared(result: EndpointResult) -> EndpointResult:
    """A cached result for another variant: its own (copy-on-write) per-patient frame and lists."""
    per_patient = result.per_patient.copy(deep=False) if isinstance(result.per_patient, pd.DataFrame) else result.per_patient
    return dataclasses.replace(result, rows=list(result.rows), per_patient=per_patient, notes=list(result.notes),
                               excluded=dict(result.excluded), curves=dict(result.curves))


def _loaded(value):
    """A frame kept by the run's store (or an endpoint's derived parts) as a frame; anything else as it is."""
    return value.frame() if isinstance(value, DerivedParts) else as_frame(value)


def _kept(result: EndpointResult, store: FrameStore, cache: dict, derivation: tuple) -> EndpointResult:
    """A result to cache: its per-patient frame handed to the store (on disk beyond its budget).

    Variants that differ only in summary settings (a quantile method, a test's options) mostly
    summarise into the same per-patient frame: one equal to a frame already kept for the same
    ``derivation`` is kept once (compared with a frame on disk only when a quarter of the store's
    memory budget holds it, so that a comparison never holds two large frames)."""
    frame = result.per_patient
    kept = cache.setdefault(("per-patient frames", derivation), [])
    for stored in kept:
        comparable = stored.rows == len(frame) and (not stored.spilled or stored.nbytes <= store.memory_budget // 4)
        if comparable and _same_frame(stored.load(), frame):
            return dataclasses.replace(result, per_patient=stored)
    stored = store.put(frame)
    kept.append(stored)
    return dataclasses.replace(result, per_patient=stored)


def _same_frame(one: pd.DataFrame, other: pd.DataFrame) -> bool:
    """Equal labels, dtypes and values (missing values in the same places)."""
    return (one.shape == other.shape and one.columns.equals(other.columns) and one.index.equals(other.index)
            and list(one.dtypes) == list(other.dtypes) and one.equals(other))


def _summarise(endpoint_cls, step_result, params, ctx: Context) -> EndpointResult | Failure:
    """An endpoint's result from its merged map: summarise the per-patient frame (a copy the
    summary may add columns to), or the whole-cohort result of a compute-only endpoint."""
    if isinstance(step_result, Failure):
        return step_result
    if isinstance(step_result, EndpointResult):
        return step_result
    try:
        return endpoint_cls().summarise(step_result.copy(deep=False), params, ctx)
    except (Exception, SystemExit) as exc:  # a plugin's bug (or its sys.exit()) must not take the run down
        return failure_of(exc)


def _checked(result: EndpointResult | Failure | None) -> EndpointResult | Failure:
    if result is None:
        return Failure("no result")
    if not isinstance(result, Failure):
        problem = _check_result(result)
        return Failure(problem) if problem else result
    return result


def _within_groups(endpoint_cls, endpoint_spec, step_key, step_result, merged: Merged, groups: MergedGroups, ctx: Context,
                   cache: dict, summary_key: tuple, store: FrameStore) -> dict[str, EndpointResult | Failure]:
    """An endpoint's result within each group: its per-patient frame's rows of each group's
    patients summarised (nothing derived again), or, for a compute-only endpoint, its compute on
    each group's patients (done in the map)."""
    grouping = groups.grouping
    levels = grouping.analysed([level for level in groups.levels if groups.sizes.get(level, 0)])
    out: dict[str, EndpointResult | Failure] = {}
    if isinstance(step_result, Failure):
        return out
    if not endpoint_cls.splits():
        within = merged.results.get((*step_key, "by", grouping.key))
        for level in levels:
            result = within.results.get(level) if isinstance(within, WholeGroups) else None
            out[level] = _checked(result) if result is not None else Failure(f"no result for group '{level}'")
        return out
    row_groups = groups.analysed.reindex(step_result["patient_id"].to_numpy()).to_numpy(dtype=object)
    for level in levels:
        key = (*summary_key, "by", grouping.key, level)
        if key in cache:
            out[level] = _shared(cache[key])
            continue
        rows = step_result[row_groups == level].reset_index(drop=True)
        result = _checked(_summarise(endpoint_cls, rows, endpoint_spec.params, ctx))
        if not isinstance(result, Failure):
            result = cache[key] = _kept(result, store, cache, (*step_key, level))
        out[level] = result
    return out


def _comparisons(endpoint_cls, endpoint_spec, result: EndpointResult, groups: MergedGroups, levels: list[str],
                 ctx: Context, cache: dict, summary_key: tuple) -> list | Failure:
    """The endpoint's between-group rows (``compare:``), the reference group first; each row's
    group must read '<level> vs <reference>'."""
    ordered = endpoint_spec.compare.ordered(levels)
    key = (*summary_key, "compare", groups.grouping.key, tuple(ordered))
    if key in cache:
        return list(cache[key])
    if len(ordered) < 2:
        return []
    per_patient = _loaded(result.per_patient)
    row_groups = groups.analysed.reindex(per_patient["patient_id"].to_numpy())
    keep = row_groups.isin(ordered).to_numpy()
    frame = per_patient[keep].reset_index(drop=True)
    aligned = pd.Series(row_groups.to_numpy(dtype=object)[keep], index=frame.index, dtype=object, name="group")
    try:
        rows = endpoint_cls().compare(frame, aligned, ordered, endpoint_spec.params, ctx)
    except (Exception, SystemExit) as exc:
        return failure_of(exc)
    problem = check_rows(rows)
    allowed = {comparison_label(level, ordered[0]) for level in ordered[1:]}
    if problem is None:
        wrong = [row.group for row in rows if row.group not in allowed]
        if wrong:
            problem = f"compare() returned a row of group '{wrong[0]}'; expected one of: {', '.join(sorted(allowed))}"
    if problem:
        return Failure(problem)
    cache[key] = list(rows)
    return list(rows)


def _with_group(frame: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """The frame with each row's group (``labels``: group by patient_id) right after its patient_id."""
    frame = frame.copy(deep=False)
    values = labels.reindex(frame["patient_id"].to_numpy()).to_numpy(dtype=object)
    if "group" in frame.columns:
        frame["group"] = values
    else:
        frame.insert(list(frame.columns).index("patient_id") + 1, "group", values)
    return frame


def _in_group(rows: list, level: str) -> list:
    return [dataclasses.replace(row, group=level if row.group == "all" else f"{level}: {row.group}") for row in rows]


def reduce_variant(spec: Spec, plan: Plan, merged: Merged, plugins: Plugins, cache: dict, only: tuple[str, ...] = (),
                   store: FrameStore | None = None) -> VariantResult:
    """One variant's results from the merged map: each endpoint's summary (computed once per
    distinct setting: ``cache`` is shared by the variants of a run), attrition and data quality.

    One endpoint's per-patient frames are held at a time: its derived frame is merged when its
    summary needs it, and its summarised frame handed to ``store`` (on disk beyond its budget)."""
    store = store or FrameStore()
    started = time.perf_counter()
    key = cohort_key(spec)
    cohort = merged.cohorts[key]
    if cohort.error is not None:
        raise cohort.error
    if cohort.failure is not None:
        return failed_variant(spec, cohort.failure.reason, only, cohort.failure.detail)
    ctx = context_of(spec, cache)
    frames, per_patient, labels, notes, failures, curves = [], {}, {}, {}, [], {}
    group_sizes: dict[str, int] = {}
    if spec.by is not None:
        group_sizes.update(cohort.groups[spec.by.key].sizes)
    exclusions: list[tuple] = []  # (endpoint id, ((reason, ids), ...)): data-quality records of excluded patients
    for position, endpoint_spec in enumerate(spec.endpoints):
        if only and endpoint_spec.id not in only:
            continue
        endpoint_cls = plugins.endpoints.items[endpoint_spec.plugin]
        spilled_before = store.spilled
        summary_key = result_key(key, endpoint_spec.plugin, endpoint_spec.params, ctx)
        step_key = (derive_key(key, endpoint_spec.plugin, endpoint_cls, endpoint_spec.params, ctx.year_days)
                    if endpoint_cls.splits() else summary_key)

        derived = None  # the endpoint's merged derived frame, when this variant needs it
        if endpoint_spec.by is not None or summary_key not in cache:
            derived = _loaded(merged.results.get(step_key))
        if summary_key in cache:
            result = _shared(cache[summary_key])
        else:
            result = _summarise(endpoint_cls, derived, endpoint_spec.params, ctx)
            if not isinstance(result, Failure):
                problem = _check_result(result)
                result = Failure(problem) if problem else result
            if not isinstance(result, Failure):
                result = cache[summary_key] = _kept(result, store, cache, step_key)
        if isinstance(result, Failure):
            _record(result, "", spec, position, endpoint_spec, endpoint_cls, failures)
            continue
        all_rows = list(result.rows)
        endpoint_per_patient = result.per_patient
        group_curves: dict = {}  # each group's Kaplan-Meier fits: figures of their own, after the overall ones
        if endpoint_spec.by is not None:
            groups = cohort.groups[endpoint_spec.by.key]
            within = _within_groups(endpoint_cls, endpoint_spec, step_key, derived, merged, groups,
                                    ctx, cache, summary_key, store)
            for level, group_result in within.items():
                if isinstance(group_result, Failure):
                    _record(group_result, f"group '{level}': ", spec, position, endpoint_spec, endpoint_cls, failures)
                    continue
                all_rows.extend(_in_group(group_result.rows, level))
                group_curves.update({(endpoint_spec.id, f"{name} ({level})"): curve for name, curve in group_result.curves.items()})
            for level, size in groups.sizes.items():
                group_sizes.setdefault(level, size)
            if endpoint_spec.compare is not None:
                compared = _comparisons(endpoint_cls, endpoint_spec, result, groups,
                                        [level for level, r in within.items() if not isinstance(r, Failure)],
                                        ctx, cache, summary_key)
                if isinstance(compared, Failure):
                    _record(compared, "compare: ", spec, position, endpoint_spec, endpoint_cls, failures)
                else:
                    all_rows.extend(compared)
            endpoint_per_patient = _with_group(_loaded(result.per_patient), groups.analysed)
        del derived
        frames.append(rows_to_frame(all_rows, variant=spec.variant, endpoint=endpoint_spec.id, table=spec.table,
                                    kind=endpoint_cls.kind))
        per_patient[endpoint_spec.id] = (endpoint_per_patient if isinstance(endpoint_per_patient, StoredFrame)
                                         else store.put(endpoint_per_patient))
        for name, curve in result.curves.items():
            curves[(endpoint_spec.id, name)] = curve
        curves.update(group_curves)
        for row in all_rows:
            labels[(endpoint_spec.id, row.measure, row.group)] = row.label or row.measure.replace("_", " ")
        endpoint_notes = list(result.notes)
        for reason, ids in result.excluded.items():
            if len(ids):
                endpoint_notes.append(f"{len(ids)} patient(s) excluded from this endpoint: {reason}.")
        excluded = tuple((reason, tuple(ids)) for reason, ids in result.excluded.items() if len(ids))
        if excluded:
            exclusions.append((endpoint_spec.id, excluded))
        notes[endpoint_spec.id] = endpoint_notes
        if store.spilled > spilled_before:  # a large run: this endpoint's frames are gone, give their memory back
            release_memory(store.spilled - spilled_before)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    group_attrition = None
    if spec.by is not None:
        group_attrition = cohort.groups[spec.by.key].attrition
    quality_frame = cohort.quality  # as merged: kept by the store, and loaded only when it changes
    if exclusions or spec.by is not None:
        # variants with the same cohort, grouping and exclusions share one report
        quality_key = ("data quality", key, spec.by.key if spec.by is not None else None, tuple(exclusions))
        if quality_key not in cache:
            cache[quality_key] = _quality_with(quality_frame, exclusions,
                                               cohort.groups[spec.by.key].labels if spec.by is not None else None, store)
        quality_frame = cache[quality_key]
    return VariantResult(
        name=spec.variant, spec=spec, frame=frame, per_patient=PerPatientFrames(per_patient), labels=labels, notes=notes,
        attrition=cohort.attrition, quality=quality_frame, failures=failures, curves=curves,
        seconds=time.perf_counter() - started, group_attrition=group_attrition, group_sizes=group_sizes,
    )


def _quality_with(quality: pd.DataFrame | StoredFrame, exclusions: list[tuple], labels: pd.Series | None,
                  store: FrameStore) -> StoredFrame | FrameParts:
    """The cohort's data-quality records, then a record per patient an endpoint excluded (by
    endpoint, then reason), with each patient's group when the variant is grouped.

    Ungrouped, the cohort's records (millions, in a registry) and the endpoints' are kept as two
    parts, never concatenated in memory unless the whole report is asked for."""
    excluded = concat_quality([
        pd.DataFrame({"table": f"endpoint {endpoint_id}", "line": pd.NA, "patient_id": list(ids),
                      "reason": f"excluded from endpoint: {reason}", "action": "excluded"})
        for endpoint_id, by_reason in exclusions for reason, ids in by_reason])
    if labels is not None:
        return store.put(_with_group(concat_quality([as_frame(quality), excluded]), labels))
    cohort_records = quality if isinstance(quality, StoredFrame) else StoredFrame.held(quality)
    if excluded.empty:
        return cohort_records
    if not cohort_records.rows:
        return store.put(excluded)
    return FrameParts((cohort_records, store.put(excluded)), concat_quality)


def _record(failure: Failure, prefix: str, spec: Spec, position: int, endpoint_spec, endpoint_cls, failures: list[dict]) -> None:
    """A user's mistake found while computing: exit 2 with its spec path; else a plugin's failure,
    recorded (its variant's other endpoints stand)."""
    if failure.spec_path is not None:
        raise SpecError(f"endpoints[{position}]" + (f".{failure.spec_path}" if failure.spec_path else ""), failure.reason)
    failures.append({
        "variant": spec.variant, "endpoint": endpoint_spec.id, "plugin": endpoint_spec.plugin,
        "provider": endpoint_cls.provider, "reason": prefix + failure.reason, "detail": failure.detail,
    })


def failed_variant(spec: Spec, reason: str, only: tuple[str, ...] = (), detail: str = "", provider: str = "cohort") -> VariantResult:
    """A variant none of whose endpoints could run: each is recorded as a failure with the reason."""
    failures = [{"variant": spec.variant, "endpoint": e.id, "plugin": e.plugin, "provider": provider,
                 "reason": reason, "detail": detail}
                for e in spec.endpoints if not only or e.id in only]
    empty = pd.DataFrame(columns=["step", "remaining", "excluded"])
    return VariantResult(name=spec.variant, spec=spec, frame=pd.DataFrame(columns=RESULT_COLUMNS), per_patient={},
                         labels={}, notes={}, attrition=empty, quality=pd.DataFrame(), failures=failures)


def _check_result(result: object) -> str | None:
    if not isinstance(result, EndpointResult):
        return f"summarise() must return an EndpointResult, got {type(result).__name__}"
    problem = check_rows(result.rows)
    if problem:
        return problem
    per_patient = result.per_patient
    if not isinstance(per_patient, pd.DataFrame) or (len(per_patient.columns) and per_patient.columns[0] != "patient_id"):
        return "per_patient must be a DataFrame whose first column is patient_id"
    return None


def select_variants(spec: Spec, variant: str | None) -> list[Spec]:
    everything = [spec, *spec.variants]
    if variant is None:
        return everything
    names = [s.variant for s in everything]
    if variant not in names:
        from .errors import suggest

        raise UsageError(f"--variant: unknown variant '{variant}'{suggest(variant, names)}; variants: {', '.join(names)}")
    return [everything[names.index(variant)]]


def executor_settings(spec: Spec, jobs: int = 1, executor: str | None = None, partitions: int | None = None,
                      scheduler: str | None = None) -> ExecutorSettings:
    """The executor of a run: the command line's choices over the spec's ``executor:`` section;
    ``--jobs N`` alone (N > 1) means worker processes, as before there were executors."""
    section = spec.executor
    name = executor or section.name or ("processes" if jobs > 1 else "serial")
    workers = jobs if jobs > 1 or not section.workers else section.workers
    settings = ExecutorSettings(name=name, partitions=partitions or section.partitions, workers=workers,
                                scheduler=scheduler or section.scheduler)
    settings.check()
    return settings


def job_from_recipe(key: str, recipe: Recipe) -> Job:
    """A run rebuilt in a fresh process (a Dask worker) from its recipe: the spec and its plugin
    files loaded again, the same plan, and a reader of this worker's own partitions."""
    from .spec import load_origin

    spec = load_origin(recipe.origin)
    by_name = {v.variant: v for v in (spec, *spec.variants)}
    variants = [by_name[name] for name in recipe.variants]
    plan = plan_run(variants, spec.plugins, recipe.only, recipe.partitions)
    read = partition_reader(spec, spec.plugins, recipe.only) if reads_partitions(spec, spec.plugins) else None
    return Job(key=key, recipe=recipe, plan=plan, plugins=spec.plugins, read=read)


def run_spec(
    spec: Spec,
    plugins: Plugins,
    *,
    only: tuple[str, ...] = (),
    variant: str | None = None,
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
    data: CohortData | None = None,
    executor: ExecutorSettings | None = None,
    memory_budget: int | None = None,
):
    """Run the primary spec and its variants; returns :class:`~endpointkit.results.Results`.

    The map (cohorts and per-patient derivations) runs per partition of the patients on the
    executor; the merge and the summaries (the reduce) run here.
    """
    from .disclosure import apply_disclosure
    from .results import Results

    if only:
        ids = {e.id for e in spec.endpoints}
        unknown = [o for o in only if o not in ids]
        if unknown:
            from .errors import suggest

            raise UsageError(f"--only: unknown endpoint id '{unknown[0]}'{suggest(unknown[0], ids)}; ids: {', '.join(sorted(ids))}")
    variants = select_variants(spec, variant)
    settings = executor or executor_settings(spec, jobs)
    parts = settings.partitions
    plan = plan_run(variants, plugins, only, parts)
    recipe = recipe_of(spec, variants, only, parts)
    job = Job(key=uuid.uuid4().hex, recipe=recipe, plan=plan, plugins=plugins)
    if settings.name == "dask":
        if spec.origin is None:
            raise UsageError("--executor dask: the spec must come from a file, a mapping or YAML text (its workers load it again)")
        job.cluster = DaskStart(settings, job.key, recipe)  # starts while the data are read
    try:
        if data is None and parts > 1 and reads_partitions(spec, plugins):
            job.read = partition_reader(spec, plugins, only)
            described = CohortData(tables={}, source=data_source(spec, plugins).name, path=spec.data_path)
        else:
            if data is None:
                data = load_spec_data(spec, plugins, only)
            job.parts = split_data(data, parts) if parts > 1 else [data]
            described = data
        store = FrameStore(memory_budget)
        outputs = execute(job, tasks_for(plan, parts, settings.workers), settings, progress,
                          keep=lambda output: keep_output(output, store))
    finally:
        if job.cluster is not None:
            job.cluster.cancel()  # closes it if the run never got to use it
    merged = merge(outputs, plan, store)
    read_by_tasks = not job.parts
    del outputs, job  # the partitions' maps (and any partitions split here) are no longer needed
    if store.spilled:
        release_memory()
    if read_by_tasks:  # the checksums the tasks saw
        described = dataclasses.replace(described, checksums=merged.checksums)
    cache: dict = {}
    results = [reduce_variant(v, plan, merged, plugins, cache, only, store) for v in variants]
    return apply_disclosure(Results.from_variants(spec, plugins, described, results))


def run(spec: str | Path | Spec, data: str | Path | None = None, **kwargs):
    """Python API: run a study spec (path or loaded :class:`Spec`) and return its Results."""
    if not isinstance(spec, Spec) or data is not None:
        spec = load_spec(spec.path if isinstance(spec, Spec) else spec, data=data)
    return run_spec(spec, spec.plugins, **kwargs)

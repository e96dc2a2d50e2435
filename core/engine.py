"""The pipeline: spec -> data -> cohort -> endpoints -> results, for the primary run and every variant.

Variants share the loaded data; the cohort and any derivation an endpoint memoises through
``Context.cached`` are rebuilt only when a setting they depend on changes. An endpoint's result is a
function of the cohort, its params and the statistics settings only, so a variant that changes none
of them for an endpoint reuses the result already computed (a 32-variant grid over four settings
computes each endpoint only once per distinct combination of the settings it depends on).
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .cohort import Cohort, build_cohort
from .data import CohortData, load_data, tables_needed
from .endpoint import Context, EndpointResult
from .errors import EndpointkitError, SpecError, UsageError
from .manager import Plugins
from .params import params_dict
from .results import RESULT_COLUMNS, VariantResult, check_rows, rows_to_frame
from .spec import Spec, load_spec


def needed_tables(spec: Spec, plugins: Plugins, only: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The tables a run reads: those its endpoints (``--only``: those endpoints) require."""
    requires = [plugins.endpoints.items[e.plugin].requires_for(e.params) for s in (spec, *spec.variants) for e in s.endpoints
                if not only or e.id in only]
    if any(s.cohort.index_event == "first_administration" for s in (spec, *spec.variants)):
        requires.append(("administrations",))  # the index date is read from it
    return tables_needed(requires)


def load_spec_data(spec: Spec, plugins: Plugins, only: tuple[str, ...] = ()) -> CohortData:
    required, optional = needed_tables(spec, plugins, only)
    source = plugins.sources.items[spec.data.source]
    return load_data(source, spec.data_path, required, optional, spec.data.columns, spec.reading)


def check_cohorts(spec: Spec, data: CohortData, plugins: Plugins) -> None:
    """Build the cohort of the primary spec and of each variant with distinct cohort settings, so
    that the spec's every ``where`` column, index treatment and criterion is checked against the
    data (``validate``): what would stop ``run`` stops here."""
    seen: set[str] = set()
    for variant in (spec, *spec.variants):
        key = _cohort_key(variant)
        if key not in seen:
            seen.add(key)
            build_cohort(data, variant.cohort, plugins.criteria)


def _cohort_key(spec: Spec) -> str:
    resolved = spec.resolved()["cohort"]
    return json.dumps([resolved, str(spec.cohort.cutoff)], sort_keys=True, default=str)


def _result_key(cohort_key: str, plugin: str, params, ctx: Context) -> tuple:
    """What an endpoint's result depends on: the cohort, the plugin, its params, the statistics settings."""
    settings = json.dumps(params_dict(params), sort_keys=True, default=str) if dataclasses.is_dataclass(params) else repr(params)
    return ("endpoint", cohort_key, plugin, type(params).__qualname__, settings,
            ctx.quantile_method, repr(ctx.paired_test), ctx.year_days)


def _shared(result: EndpointResult) -> EndpointResult:
    """A cached result for another variant: its own (copy-on-write) per-patient frame and lists."""
    per_patient = result.per_patient.copy(deep=False) if isinstance(result.per_patient, pd.DataFrame) else result.per_patient
    return dataclasses.replace(result, rows=list(result.rows), per_patient=per_patient, notes=list(result.notes),
                               excluded=dict(result.excluded), curves=dict(result.curves))


def run_variant(spec: Spec, data: CohortData, plugins: Plugins, cache: dict, only: tuple[str, ...] = ()) -> VariantResult:
    """Run every endpoint of one (validated) variant spec on the loaded data.

    ``cache`` is shared by the variants of a run: it holds the cohort (by cohort settings) and each
    endpoint result (by :func:`_result_key`), so a result is computed once per distinct setting.
    """
    started = time.perf_counter()
    cohort_key = _cohort_key(spec)
    key = ("cohort", cohort_key)
    if key not in cache:
        try:
            cache[key] = build_cohort(data, spec.cohort, plugins.criteria)
        except EndpointkitError:
            raise
        except (Exception, SystemExit) as exc:  # a criterion plugin's bug: this variant fails, the others go on
            return failed_variant(spec, f"building the cohort failed: {_describe(exc)}", only, traceback.format_exc(limit=-3))
    cohort: Cohort = cache[key]
    ctx = Context(
        quantile_method=spec.statistics.quantile_method, paired_test=spec.paired_test,
        year_days=spec.statistics.year_days, cache=cache,
    )
    frames, per_patient, labels, notes, failures, curves = [], {}, {}, {}, [], {}
    quality = [cohort.quality]
    for position, endpoint_spec in enumerate(spec.endpoints):
        if only and endpoint_spec.id not in only:
            continue
        endpoint_cls = plugins.endpoints.items[endpoint_spec.plugin]
        result_key = _result_key(cohort_key, endpoint_spec.plugin, endpoint_spec.params, ctx)
        try:
            if result_key in cache:
                result, problem = _shared(cache[result_key]), None
            else:
                result = endpoint_cls().compute(cohort, endpoint_spec.params, ctx)
                problem = _check_result(result)
                if not problem:
                    cache[result_key] = result
        except EndpointkitError as exc:  # a user's mistake found while computing: exit 2
            where = getattr(exc, "path", "") or ""
            raise SpecError(f"endpoints[{position}]" + (f".{where}" if where else ""), getattr(exc, "message", str(exc))) from None
        except (Exception, SystemExit) as exc:  # a plugin's bug (or its sys.exit()) must not take the run down
            problem = _describe(exc)
            detail = traceback.format_exc(limit=-3)
        else:
            detail = ""
        if problem:
            failures.append({
                "variant": spec.variant, "endpoint": endpoint_spec.id, "plugin": endpoint_spec.plugin,
                "provider": endpoint_cls.provider, "reason": problem, "detail": detail,
            })
            continue
        frames.append(rows_to_frame(result.rows, variant=spec.variant, endpoint=endpoint_spec.id, table=spec.table,
                                    kind=endpoint_cls.kind))
        per_patient[endpoint_spec.id] = result.per_patient
        for name, curve in result.curves.items():
            curves[(endpoint_spec.id, name)] = curve
        for row in result.rows:
            labels[(endpoint_spec.id, row.measure, row.group)] = row.label or row.measure.replace("_", " ")
        endpoint_notes = list(result.notes)
        for reason, ids in result.excluded.items():
            if len(ids):
                endpoint_notes.append(f"{len(ids)} patient(s) excluded from this endpoint: {reason}.")
                quality.append(pd.DataFrame({
                    "table": f"endpoint {endpoint_spec.id}", "line": pd.NA, "patient_id": list(ids),
                    "reason": f"excluded from endpoint: {reason}", "action": "excluded",
                }))
        notes[endpoint_spec.id] = endpoint_notes
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    quality_frame = pd.concat([q for q in quality if not q.empty], ignore_index=True) if any(not q.empty for q in quality) else cohort.quality
    return VariantResult(
        name=spec.variant, spec=spec, frame=frame, per_patient=per_patient, labels=labels, notes=notes,
        attrition=cohort.attrition, quality=quality_frame, failures=failures, curves=curves,
        seconds=time.perf_counter() - started,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the plugin called sys.exit({exc.code!r}); a plugin must raise an exception instead"
    return f"{type(exc).__name__}: {exc}"


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
        return f"compute() must return an EndpointResult, got {type(result).__name__}"
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


def run_spec(
    spec: Spec,
    plugins: Plugins,
    *,
    only: tuple[str, ...] = (),
    variant: str | None = None,
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
    data: CohortData | None = None,
):
    """Run the primary spec and its variants; returns :class:`~endpointkit.results.Results`."""
    from .disclosure import apply_disclosure
    from .parallel import run_variants
    from .results import Results

    if only:
        ids = {e.id for e in spec.endpoints}
        unknown = [o for o in only if o not in ids]
        if unknown:
            from .errors import suggest

            raise UsageError(f"--only: unknown endpoint id '{unknown[0]}'{suggest(unknown[0], ids)}; ids: {', '.join(sorted(ids))}")
    variants = select_variants(spec, variant)
    if data is None:
        data = load_spec_data(spec, plugins, only)
    outputs = run_variants(variants, data, plugins, only=only, jobs=jobs, progress=progress)
    return apply_disclosure(Results.from_variants(spec, plugins, data, outputs))


def run(spec: str | Path | Spec, data: str | Path | None = None, **kwargs):
    """Python API: run a study spec (path or loaded :class:`Spec`) and return its Results."""
    if not isinstance(spec, Spec) or data is not None:
        spec = load_spec(spec.path if isinstance(spec, Spec) else spec, data=data)
    return run_spec(spec, spec.plugins, **kwargs)

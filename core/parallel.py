"""Run variants serially (sharing one derivation cache) or in worker processes.

Workers are forked after the data is loaded, so they share it copy-on-write; each worker keeps its
own cache. Results come back in variant order, so ``--jobs N`` output equals ``--jobs 1``.

Variants are grouped by their cohort settings. The primary's group runs here, after the primary,
on the warm cache (its cohort and every endpoint result already computed); each other group runs
in one worker, so its variants share that worker's cache. Sending a variant's results back costs
about as much as computing it on a warm cache (its per-patient frames are pickled), so a grid that
only varies endpoint or statistics settings runs in this process whatever ``--jobs`` says.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from .data import CohortData
from .manager import Plugins
from .results import VariantResult

_SHARED: dict = {}


def _worker_setup() -> None:
    """In each worker: end with the parent (Linux PR_SET_PDEATHSIG), leave Ctrl-C to the parent
    (which ends its workers), and die on SIGTERM without the parent's handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent still ends its workers
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (Python 3.11's executor has no terminate; 3.14 adds terminate_workers)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _retry_alone(index: int, variants: list, data: CohortData, plugins: Plugins, only: tuple[str, ...]) -> VariantResult:
    """Run one variant whose worker died in a fresh worker of its own; if that dies too, the variant
    fails (recorded, named) and the others stand."""
    from .engine import failed_variant

    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_worker_setup)
    try:
        result = pool.submit(_work, [index]).result()[0]
        return dataclasses.replace(result, spec=variants[index])
    except BrokenProcessPool:
        return failed_variant(variants[index], "the worker process running this variant died twice (killed, e.g. by the "
                              "out-of-memory killer); run it alone with --variant or with fewer --jobs", only,
                              provider="worker")
    finally:
        pool.shutdown(wait=True)


def _work(indices: list[int]) -> list[VariantResult]:
    """Run a group of variants in a worker; the spec (which holds the plugin manager) stays behind."""
    from .engine import run_variant

    state = _SHARED
    results = []
    for index in indices:
        result = run_variant(state["variants"][index], state["data"], state["plugins"], state["cache"], state["only"])
        results.append(dataclasses.replace(result, spec=None))
    return results


def run_variants(
    variants: list,
    data: CohortData,
    plugins: Plugins,
    *,
    only: tuple[str, ...] = (),
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[VariantResult]:
    from .engine import run_variant

    total = len(variants)
    cache: dict = {}
    jobs = max(1, min(jobs, total, os.cpu_count() or 1)) if jobs > 0 else 1
    if jobs == 1 or "fork" not in multiprocessing.get_all_start_methods():
        outputs = []
        for i, spec in enumerate(variants):
            outputs.append(run_variant(spec, data, plugins, cache, only))
            if progress:
                progress(i + 1, total, spec.variant)
        return outputs
    # the primary (first) runs here to fill the cohort cache before forking
    from .engine import _cohort_key

    _SHARED.update(variants=variants, data=data, plugins=plugins, only=only, cache=cache)
    first = run_variant(variants[0], data, plugins, cache, only)
    done = 1
    if progress:
        progress(done, total, variants[0].variant)
    outputs: list[VariantResult | None] = [first] + [None] * (total - 1)
    groups: dict[str, list[int]] = {}
    for i in range(1, total):
        groups.setdefault(_cohort_key(variants[i]), []).append(i)
    local = groups.pop(_cohort_key(variants[0]), [])
    pool = None
    futures: dict = {}
    died: list[int] = []
    try:
        if groups:
            context = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=context, initializer=_worker_setup)
            futures = {pool.submit(_work, indices): indices for indices in groups.values()}
        for i in local:  # on the warm cache, while the workers run the other cohorts
            outputs[i] = run_variant(variants[i], data, plugins, cache, only)
            done += 1
            if progress:
                progress(done, total, variants[i].variant)
        for future in as_completed(futures):
            try:
                results = future.result()
            except BrokenProcessPool:  # a worker died (OOM killer, a signal): retried below, one by one
                died.extend(futures[future])
                continue
            for index, result in zip(futures[future], results, strict=True):
                outputs[index] = dataclasses.replace(result, spec=variants[index])
                done += 1
                if progress:
                    progress(done, total, variants[index].variant)
        if pool is not None:
            pool.shutdown(wait=True)
            pool = None
        for index in sorted(died):
            outputs[index] = _retry_alone(index, variants, data, plugins, only)
            done += 1
            if progress:
                progress(done, total, variants[index].variant)
    except BaseException:
        if pool is not None:  # interrupted (Ctrl-C, SIGTERM) or failed: no worker outlives the run
            _end_workers(pool)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        _SHARED.clear()
    return outputs  # type: ignore[return-value]

"""Run variants serially (sharing one derivation cache) or in worker processes.

Workers are forked after the data is loaded, so they share it copy-on-write; each worker keeps its
own cache. Results come back in variant order, so ``--jobs N`` output equals ``--jobs 1``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from .data import CohortData
from .manager import Plugins
from .results import VariantResult

_SHARED: dict = {}


def _work(index: int) -> VariantResult:
    """Run one variant in a worker; the spec (which holds the plugin manager) stays behind."""
    from .engine import run_variant

    state = _SHARED
    result = run_variant(state["variants"][index], state["data"], state["plugins"], state["cache"], state["only"])
    return dataclasses.replace(result, spec=None)


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
    _SHARED.update(variants=variants, data=data, plugins=plugins, only=only, cache=cache)
    first = run_variant(variants[0], data, plugins, cache, only)
    if progress:
        progress(1, total, variants[0].variant)
    outputs: list[VariantResult | None] = [first] + [None] * (total - 1)
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_work, i): i for i in range(1, total)}
            done = 1
            from concurrent.futures import as_completed

            for future in as_completed(futures):
                index = futures[future]
                outputs[index] = dataclasses.replace(future.result(), spec=variants[index])
                done += 1
                if progress:
                    progress(done, total, variants[futures[future]].variant)
    finally:
        _SHARED.clear()
    return outputs  # type: ignore[return-value]

"""Where the map tasks of a run execute: here (``serial``), in forked worker processes
(``processes``), or on a Dask cluster (``dask``: an existing scheduler, or a ``LocalCluster``).

A task maps one partition of the patients (or some cohorts of it): it reads its partition or gets
it from this process, builds the cohorts and derives the per-patient frames, and sends back only
those frames and the cohorts' counts (:class:`~endpointkit.mapreduce.PartitionOutput`). The
executor never changes a result: tasks are merged in partition order, whatever order they finish in.

In a worker, a task finds its run in ``_JOBS`` (put there before the workers were forked); a Dask
worker that does not have it rebuilds it from the :class:`Recipe` (it loads the spec and its plugin
files itself, and reads its own partition).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .data import CohortData
from .errors import UsageError
from .mapreduce import CohortPart, Failure, PartitionOutput, Plan, map_partition
from .spec import Spec

EXECUTORS = ("serial", "processes", "dask")


@dataclass(frozen=True)
class ExecutorSettings:
    """``--executor``, ``--partitions``, ``--jobs`` (workers) and ``--scheduler`` (Dask only)."""

    name: str = "serial"
    partitions: int = 1
    workers: int = 1
    scheduler: str | None = None

    def check(self, where: str = "--executor") -> None:
        if self.name not in EXECUTORS:
            raise UsageError(f"{where}: expected one of {', '.join(EXECUTORS)}, got '{self.name}'")
        if self.scheduler and self.name != "dask":
            raise UsageError(f"--scheduler {self.scheduler}: a scheduler address is for --executor dask")


@dataclass(frozen=True)
class Recipe:
    """What a fresh process needs to rebuild a run: the spec's origin, the variants and endpoints."""

    origin: tuple
    variants: tuple[str, ...]
    only: tuple[str, ...]
    partitions: int


@dataclass
class Job:
    """One run's map, as every task sees it."""

    key: str
    recipe: Recipe
    plan: Plan
    plugins: Any
    read: Callable[[int, int], CohortData] | None = None  # reads one partition (sources that can)
    parts: list[CohortData] = field(default_factory=list)  # or the partitions, split in this process
    cluster: DaskStart | None = None  # a Dask client started while this process reads the data


@dataclass(frozen=True)
class Task:
    part: int
    parts: int
    cohorts: tuple[str, ...]


_JOBS: dict[str, Job] = {}


_REBUILT: dict[str, Job] = {}  # runs a Dask worker rebuilt from their recipes (the last few)


def run_task(key: str, task: Task, recipe: Recipe | None = None, data: CohortData | None = None) -> PartitionOutput:
    """A map task, in whichever process runs it."""
    job = _JOBS.get(key) or _rebuilt(key, recipe)
    if data is None:
        data = job.parts[task.part] if job.parts else job.read(task.part, task.parts)
    return map_partition(data, task.part, job.plan, list(task.cohorts), job.plugins)


def _rebuilt(key: str, recipe: Recipe) -> Job:
    """A Dask worker's copy of a run, rebuilt from its recipe once per worker process and run."""
    job = _REBUILT.get(key)
    if job is None:
        from .engine import job_from_recipe

        while len(_REBUILT) >= 4:  # a long-lived worker keeps only the last few runs
            _REBUILT.pop(next(iter(_REBUILT)))
        job = _REBUILT[key] = job_from_recipe(key, recipe)
    return job


def _warm(key: str, recipe: Recipe) -> None:
    """Rebuild the run on a worker ahead of its tasks; a failure here is left for the task to raise."""
    with contextlib.suppress(Exception):
        _rebuilt(key, recipe)


def tasks_for(plan: Plan, partitions: int, workers: int) -> list[Task]:
    """One task per partition with all its cohorts; with fewer partitions than workers, one task
    per partition and cohort, so that the variants of a grid also spread over the workers."""
    keys = tuple(plan.cohorts)
    if partitions >= workers or len(keys) == 1:
        return [Task(k, partitions, keys) for k in range(partitions)]
    return [Task(k, partitions, (c,)) for k in range(partitions) for c in keys]


def _worker_died(task: Task, reason: str) -> PartitionOutput:
    failure = Failure(reason)
    return PartitionOutput(part=task.part, cohorts={c: CohortPart(failure=failure) for c in task.cohorts}, results={})


Progress = Callable[[int, int, str], None] | None


def execute(job: Job, tasks: list[Task], settings: ExecutorSettings, progress: Progress = None,
            keep: Callable[[PartitionOutput], PartitionOutput] = lambda output: output) -> list[PartitionOutput]:
    """Run every task on the chosen executor; outputs in task order, each passed through ``keep``
    as it arrives (which may move its frames to disk)."""
    workers = max(1, settings.workers)
    _JOBS[job.key] = job
    try:
        if settings.name == "dask":
            done = _dask(job, tasks, settings)
        elif settings.name == "serial" or workers == 1 or len(tasks) == 1 or "fork" not in multiprocessing.get_all_start_methods():
            done = ((i, run_task(job.key, t)) for i, t in enumerate(tasks))
        else:
            done = _processes(job, tasks, min(workers, len(tasks)))
        return _ordered(tasks, ((i, keep(output)) for i, output in done), progress)
    finally:
        _JOBS.pop(job.key, None)


def _ordered(tasks: list[Task], done: Iterator[tuple[int, PartitionOutput]], progress: Progress) -> list[PartitionOutput]:
    return _in_order(len(tasks), done, progress, lambda i: f"partition {tasks[i].part + 1}/{tasks[i].parts}")


# --------------------------------------------------------------------------- processes


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


def _fork_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_setup)


def _retry_alone(job: Job, task: Task) -> PartitionOutput:
    """A task whose worker died runs again in a fresh worker of its own; if that dies too, its
    cohorts' variants fail (recorded, named) and the others stand."""
    pool = _fork_pool(1)
    try:
        return pool.submit(run_task, job.key, task).result()
    except BrokenProcessPool:
        return _worker_died(task, "the worker process running this partition died twice (killed, e.g. by the "
                                  "out-of-memory killer); run with fewer --jobs or more --partitions")
    finally:
        pool.shutdown(wait=True)


def _processes(job: Job, tasks: list[Task], workers: int) -> Iterator[tuple[int, PartitionOutput]]:
    """Tasks in forked workers, which share this process's data copy-on-write."""
    pool: ProcessPoolExecutor | None = _fork_pool(workers)
    died: list[int] = []
    try:
        futures = {pool.submit(run_task, job.key, task): i for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    yield futures[future], future.result()
                except BrokenProcessPool:  # a worker died (OOM killer, a signal): retried below, one by one
                    died.append(futures[future])
        pool.shutdown(wait=True)
        pool = None
        for index in sorted(died):
            yield index, _retry_alone(job, tasks[index])
    except BaseException:
        if pool is not None:  # interrupted (Ctrl-C, SIGTERM) or failed: no worker outlives the run
            _end_workers(pool)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


# --------------------------------------------------------------------------- dask


def dask_client(settings: ExecutorSettings):
    """A client of the cluster at ``--scheduler``, or of a new LocalCluster (one single-threaded
    worker process per --jobs); closed by the caller."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--executor dask needs Dask: pip install 'endpointkit[dask]'") from None
    if settings.scheduler:
        try:
            return Client(settings.scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--scheduler {settings.scheduler}: cannot reach a Dask scheduler there ({exc})") from None
    workers = settings.workers if settings.workers > 1 else (os.cpu_count() or 1)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    client.close_cluster = True  # ours: closed with the client
    return client


class DaskStart:
    """A Dask client (and the LocalCluster it starts) made in a background thread while the calling
    process reads the data, its workers rebuilding the run from its recipe meanwhile: the cluster's
    start-up and the workers' imports overlap the reading instead of following it."""

    def __init__(self, settings: ExecutorSettings, key: str, recipe: Recipe) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="endpointkit-dask-start")
        self._future = self._pool.submit(self._start, settings, key, recipe)
        self._taken = False

    @staticmethod
    def _start(settings: ExecutorSettings, key: str, recipe: Recipe):
        client = dask_client(settings)
        with contextlib.suppress(Exception):  # warming up is an optimisation: the tasks rebuild what it could not
            client.run(_warm, key, recipe)
        return client

    def client(self):
        """The client (raises what starting it raised); the caller now closes it."""
        self._taken = True
        try:
            return self._future.result()
        finally:
            self._pool.shutdown(wait=False)

    def cancel(self) -> None:
        """Close the client and its cluster if the run ended before using them (e.g. a data error)."""
        if self._taken:
            return
        self._taken = True
        with contextlib.suppress(Exception):
            _close(self._future.result())
        self._pool.shutdown(wait=False)


def _close(client) -> None:
    cluster = client.cluster if getattr(client, "close_cluster", False) else None
    client.close()
    if cluster is not None:
        cluster.close()


@contextlib.contextmanager
def dask_session(settings: ExecutorSettings, started: DaskStart | None = None, close_behind: bool = False) -> Iterator[Any]:
    """A Dask client for the run (``started`` in the background, or made now); a LocalCluster it
    started is closed with it. ``close_behind``: closed in a thread (which the interpreter waits for
    at exit) while the caller goes on with the results; a cluster takes about a second to stop."""
    client = started.client() if started is not None else dask_client(settings)
    try:
        yield client
    finally:
        if close_behind:
            threading.Thread(target=_close, args=(client,), name="endpointkit-dask-close").start()
        else:
            _close(client)


def _dask(job: Job, tasks: list[Task], settings: ExecutorSettings) -> Iterator[tuple[int, PartitionOutput]]:
    """Tasks on a Dask cluster: each worker reads its own partition, or, when the source cannot be
    read by partition, gets it inside its task (not scattered: scattered data dies with its worker,
    and a task that carries its data can be retried on another); a task whose worker dies is
    retried by Dask."""
    from distributed import as_completed as dask_completed

    with dask_session(settings, job.cluster, close_behind=True) as client, warnings.catch_warnings():
        # partitions held here travel inside their tasks, by design (see above): not a mistake to warn of
        warnings.filterwarnings("ignore", message=".*(large graph|Large object)", category=UserWarning)
        futures = {}
        for i, task in enumerate(tasks):
            data = job.parts[task.part] if job.parts else None
            futures[client.submit(run_task, job.key, task, job.recipe, data, pure=False, retries=2,
                                  key=f"endpointkit-map-{job.key[:12]}-{i}")] = i
        for future in dask_completed(futures):
            index = futures.pop(future)
            if future.status == "error":
                exc = future.exception()
                from distributed.scheduler import KilledWorker

                if isinstance(exc, KilledWorker):
                    yield index, _worker_died(tasks[index], "the Dask workers running this partition "
                                                            f"died ({exc}); run with more --partitions")
                    continue
                raise exc
            output = future.result()
            future.release()  # the worker holding this result may now drop it
            del future
            yield index, output


def recipe_of(spec: Spec, variants: list[Spec], only: tuple[str, ...], partitions: int) -> Recipe:
    return Recipe(origin=spec.origin, variants=tuple(v.variant for v in variants), only=only, partitions=partitions)


# --------------------------------------------------------------------------- independent items


def map_items(function: Callable[[Any], Any], items: list[Any], settings: ExecutorSettings, progress: Progress = None,
              *, send_module: bool = False) -> list[Any]:
    """``[function(item) for item in items]`` on the chosen executor, results in item order: for
    independent jobs such as the replicate cohorts of a simulation study. ``function`` is a
    module-level function; ``send_module``: Dask workers cannot import its module (a script), so
    the module travels by value."""
    workers = max(1, settings.workers)
    if settings.name == "dask":
        import cloudpickle
        from distributed import as_completed as dask_completed

        if send_module and function.__module__ != "__main__":  # __main__ always travels by value
            cloudpickle.register_pickle_by_value(sys.modules[function.__module__])
        with dask_session(settings) as client:
            futures = {client.submit(function, item, pure=False, retries=2): i for i, item in enumerate(items)}
            return _in_order(len(items), ((futures[f], f.result()) for f in dask_completed(futures)), progress)
    if settings.name == "serial" or workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return _in_order(len(items), ((i, function(item)) for i, item in enumerate(items)), progress)
    pool = _fork_pool(min(workers, len(items)))
    try:
        futures = {pool.submit(function, item): i for i, item in enumerate(items)}
        results = _in_order(len(items), ((futures[f], f.result()) for f in as_completed(futures)), progress)
    except BaseException:
        _end_workers(pool)
        raise
    pool.shutdown(wait=True)
    return results


def _in_order(count: int, done: Iterator[tuple[int, Any]], progress: Progress,
              label: Callable[[int], str] = lambda i: f"item {i + 1}") -> list[Any]:
    """The results of ``done`` ((index, result) pairs, in any order) in index order, with progress."""
    results: list[Any] = [None] * count
    for finished, (index, value) in enumerate(done, start=1):
        results[index] = value
        if progress:
            progress(finished, count, label(index))
    return results


# --------------------------------------------------------------------------- work beside the caller

_BACKGROUND: dict[int, Callable[[], Any]] = {}  # what a forked worker runs, found by key after the fork


def _run_background(key: int) -> Any:
    return _BACKGROUND[key]()


def in_background(function: Callable[[], Any], settings: ExecutorSettings) -> Callable[[], Any]:
    """``function()`` started in a forked worker while this process goes on, with ``processes``
    and two or more workers: the returned callable waits for its result (and runs ``function``
    here if the worker died). With one worker, or another executor, the callable is ``function``
    itself, run when called. The worker shares this process's data copy-on-write and sends back
    only the result, so ``function`` should return something small (figures as bytes)."""
    if settings.name != "processes" or settings.workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return function
    key = id(function)
    _BACKGROUND[key] = function
    pool = _fork_pool(1)
    try:
        future = pool.submit(_run_background, key)  # the worker is forked here, with the function in _BACKGROUND
    finally:
        del _BACKGROUND[key]

    def result() -> Any:
        try:
            value = future.result()
        except BrokenProcessPool:
            value = function()
        except BaseException:
            _end_workers(pool)
            raise
        pool.shutdown(wait=True)
        return value

    return result

"""Running a trial's tasks: in this process, on local worker processes, or on a Dask cluster.

Tasks are independent and write their own files; only a small record comes back. The result does not depend on
how the tasks ran (chunks are fixed by the trial spec, never by the number of workers).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence


class SchedulerError(RuntimeError):
    """The Dask scheduler cannot be reached or dask.distributed is not installed."""


def execute(fn: Callable, tasks: Sequence, *, workers: int = 1, scheduler=None, progress=None) -> float:
    """Run ``fn(task)`` for every task; returns the total patient-days. ``scheduler``: a Dask scheduler address
    (``tcp://host:port``), a ``dask.distributed.Client`` or a ``LocalCluster``; else ``workers`` local
    processes (1 = in this process, with progress inside tasks)."""
    total = 0.0

    def done(record: dict) -> None:
        nonlocal total
        total += float(record.get("patient_days", 0.0))
        if progress is not None:
            progress(record)

    if scheduler is not None:
        _run_dask(fn, tasks, scheduler, done)
    elif workers <= 1 or len(tasks) <= 1:
        advance = getattr(progress, "advance", None)
        for task in tasks:
            done(fn(task, advance) if advance is not None else fn(task))
    else:
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
            futures = [pool.submit(fn, task) for task in tasks]
            for fut in as_completed(futures):
                done(fut.result())
    return total


def _run_dask(fn: Callable, tasks: Sequence, scheduler, done: Callable[[dict], None]) -> None:
    try:
        from dask.distributed import Client, as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - dask is a declared dependency of trials
        raise SchedulerError("dask.distributed is not installed (pip install 'twinloop[trials]')") from exc
    own = False
    if isinstance(scheduler, Client):
        client = scheduler
    else:
        address = getattr(scheduler, "scheduler_address", scheduler)
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        own = True
    try:
        futures = client.map(fn, list(tasks), pure=False)
        for fut in dask_completed(futures):
            done(fut.result())
    finally:
        if own:
            client.close()

"""Running a trial's tasks: in this process, on local worker processes, or on a Dask cluster.

Tasks are independent and write their own files; only a small record comes back. The result does not depend on
how the tasks ran (chunks are fixed by the trial spec, never by the number of workers).
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
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
        _run_local(fn, tasks, workers, done, getattr(progress, "advance", None))
    return total


_PROGRESS_QUEUE = None


def _init_worker(queue) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = queue


def _report(patient_days: float) -> None:
    if _PROGRESS_QUEUE is not None:
        _PROGRESS_QUEUE.put(patient_days)


def _call_with_progress(fn: Callable, task):
    return fn(task, _report)


def _run_local(fn: Callable, tasks: Sequence, workers: int, done: Callable[[dict], None], advance) -> None:
    """Tasks on local worker processes; patient-days done inside tasks come back through a queue for the bar."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    queue = ctx.Queue() if advance is not None else None
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                advance(queue.get(timeout=0.2))
            except Exception:  # noqa: BLE001 - queue.Empty, or the queue closed at the end
                continue

    reader = threading.Thread(target=drain, daemon=True) if queue is not None else None
    if reader is not None:
        reader.start()
    call = functools.partial(_call_with_progress, fn) if queue is not None else fn
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(queue,)) as pool:
            futures = [pool.submit(call, task) for task in tasks]
            for fut in as_completed(futures):
                done(fut.result())
    finally:
        stop.set()
        if reader is not None:
            reader.join(timeout=1.0)


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

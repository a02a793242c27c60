"""A periodic scheduler that sleeps to absolute deadlines.

The scheduler runs in its own thread (which the runtime may raise to SCHED_FIFO), sleeps with
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` to ``start + k * period`` and records how late each wake-up was.
A late cycle never shifts the schedule; when a deadline is missed by more than a whole period the missed ticks are
counted and skipped (no burst of catch-up ticks). Each tick calls ``on_tick(k, deadline_s, lateness_s)``; the
runtime's tick only posts to its asyncio loop (``call_soon_threadsafe``), so wake-up latency is never behind I/O.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from twinloop.runtime import realtime

TickCallback = Callable[[int, float, float], None]


@dataclass(frozen=True, slots=True)
class LatenessStats:
    """Wake-up lateness in microseconds over ``count`` ticks."""

    count: int
    p50_us: float
    p99_us: float
    max_us: float
    missed: int

    def as_dict(self) -> dict:
        return {"count": self.count, "p50_us": self.p50_us, "p99_us": self.p99_us, "max_us": self.max_us,
                "missed": self.missed}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class PeriodicScheduler:
    """Calls ``on_tick`` every ``period_s`` real seconds at absolute deadlines, in a daemon thread.

    Args:
        period_s: period in real seconds (> 0).
        on_tick: called in the scheduler thread after each wake-up; must be short (post work elsewhere).
        priority: SCHED_FIFO priority for the scheduler thread (0 = inherit the process policy).
        history: how many lateness samples to keep.
        start_s: ``time.monotonic()`` of the first deadline (default: one period from :meth:`start`).
    """

    def __init__(self, period_s: float, on_tick: TickCallback | None = None, *, priority: int = 0,
                 history: int = 100_000, start_s: float | None = None, name: str = "twinloop-scheduler") -> None:
        if not period_s > 0.0:
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        self.period_s = float(period_s)
        self.on_tick = on_tick
        self.priority = int(priority)
        self.lateness_s: deque[float] = deque(maxlen=history)
        self.missed = 0
        self.ticks = 0
        self.priority_error: str | None = None
        self._start_s = start_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "PeriodicScheduler":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def run_for(self, ticks: int) -> LatenessStats:
        """Run ``ticks`` ticks in the calling thread (benchmarks); return the lateness statistics."""
        self._run(max_ticks=ticks)
        return self.stats()

    def _run(self, max_ticks: int | None = None) -> None:
        if self.priority > 0:
            try:
                realtime.set_fifo(self.priority)
            except OSError as exc:
                self.priority_error = str(exc)
        period = self.period_s
        deadline = (time.monotonic() + period) if self._start_s is None else self._start_s
        k = 0
        while not self._stop.is_set():
            realtime.sleep_until(deadline)
            woke = time.monotonic()
            lateness = woke - deadline
            self.lateness_s.append(lateness)
            self.ticks += 1
            if self.on_tick is not None:
                self.on_tick(k, deadline, lateness)
            k += 1
            if max_ticks is not None and k >= max_ticks:
                return
            deadline += period
            now = time.monotonic()
            if now - deadline > period:  # overran by more than a period: skip, do not burst
                skipped = int((now - deadline) // period)
                self.missed += skipped
                deadline += skipped * period
                k += skipped

    def stats(self) -> LatenessStats:
        samples_us = [x * 1e6 for x in self.lateness_s]
        return LatenessStats(
            count=len(samples_us),
            p50_us=percentile(samples_us, 50),
            p99_us=percentile(samples_us, 99),
            max_us=max(samples_us) if samples_us else math.nan,
            missed=self.missed,
        )

"""Real-time setup for the runtime process: SCHED_FIFO, mlockall, CPU affinity, a frozen garbage collector, and
sleeping to absolute deadlines.

Every step is attempted independently. When a step is not permitted (no CAP_SYS_NICE / RLIMIT_RTPRIO, no
CAP_IPC_LOCK / RLIMIT_MEMLOCK, a CPU that does not exist, no ``clock_nanosleep`` in libc) the runtime says so
once, in one log line, and runs without it: a board without a PREEMPT_RT kernel still doses, only with more jitter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gc
import logging
import os
import time
from dataclasses import dataclass, field

log = logging.getLogger("twinloop.realtime")

CLOCK_MONOTONIC = 1
TIMER_ABSTIME = 1
MCL_CURRENT = 1
MCL_FUTURE = 2
_NS_PER_S = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()
_CLOCK_NANOSLEEP = getattr(_LIBC, "clock_nanosleep", None) if _LIBC is not None else None
if _CLOCK_NANOSLEEP is not None:
    _CLOCK_NANOSLEEP.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Timespec), ctypes.POINTER(_Timespec)]
    _CLOCK_NANOSLEEP.restype = ctypes.c_int


def has_abstime_sleep() -> bool:
    """True when ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` is callable through ctypes."""
    return _CLOCK_NANOSLEEP is not None


def sleep_until(deadline_s: float) -> None:
    """Block the calling thread until ``time.monotonic() >= deadline_s`` (seconds, CLOCK_MONOTONIC).

    Uses ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` (the GIL is released during the call), so a late start
    never shifts the deadline; falls back to a relative sleep recomputed from the deadline on every wake-up.
    """
    if _CLOCK_NANOSLEEP is not None:
        ns = int(deadline_s * _NS_PER_S)
        ts = _Timespec(ns // _NS_PER_S, ns % _NS_PER_S)
        while True:
            rc = _CLOCK_NANOSLEEP(CLOCK_MONOTONIC, TIMER_ABSTIME, ctypes.byref(ts), None)
            if rc != errno.EINTR:
                return
    while True:
        remaining = deadline_s - time.monotonic()
        if remaining <= 0.0:
            return
        time.sleep(remaining)


@dataclass
class RealtimeOptions:
    """What to ask for. ``priority`` 0 or ``enabled=False`` means no SCHED_FIFO."""

    enabled: bool = True
    priority: int = 50
    cpus: tuple[int, ...] = ()
    lock_memory: bool = True
    freeze_gc: bool = True


@dataclass
class RealtimeReport:
    """What was applied and what was refused (with the reason)."""

    applied: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def fully_applied(self) -> bool:
        return not self.refused

    def summary(self) -> str:
        parts = []
        if self.applied:
            parts.append("applied: " + ", ".join(self.applied))
        if self.refused:
            parts.append("not available: " + "; ".join(f"{k} ({v})" for k, v in self.refused.items()))
        return "real-time setup " + (" | ".join(parts) if parts else "skipped (disabled)")


def _rt_kernel() -> bool:
    try:
        with open("/sys/kernel/realtime") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return "PREEMPT_RT" in os.uname().version


def set_fifo(priority: int, pid: int = 0) -> None:
    """SCHED_FIFO at ``priority`` for ``pid`` (0 = the calling thread). Raises OSError when not permitted."""
    os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))


def lock_memory() -> None:
    """mlockall(MCL_CURRENT | MCL_FUTURE). Raises OSError when not permitted."""
    if _LIBC is None:
        raise OSError(errno.ENOSYS, "libc not found")
    if _LIBC.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def freeze_gc() -> None:
    """Move everything allocated so far out of the collector's reach and stop automatic collection; the runtime
    collects explicitly in slack time (:func:`collect_in_slack`)."""
    gc.collect()
    gc.freeze()
    gc.disable()


def collect_in_slack(generation: int = 2) -> float:
    """Run one explicit collection (call it right after a cycle, far from the next deadline); return seconds spent."""
    t0 = time.perf_counter()
    gc.collect(generation)
    return time.perf_counter() - t0


def apply(options: RealtimeOptions, logger: logging.Logger | None = None) -> RealtimeReport:
    """Apply the real-time options to this process (the calling thread for SCHED_FIFO) and log one summary line."""
    logger = logger or log
    report = RealtimeReport()
    if not options.enabled:
        logger.info("real-time setup disabled by configuration")
        return report
    if options.cpus:
        try:
            os.sched_setaffinity(0, set(options.cpus))
            report.applied.append(f"affinity {sorted(options.cpus)}")
        except (OSError, ValueError) as exc:
            report.refused["cpu affinity"] = str(exc)
    if options.priority > 0:
        try:
            set_fifo(options.priority)
            report.applied.append(f"SCHED_FIFO {options.priority}")
        except (OSError, AttributeError) as exc:
            report.refused["SCHED_FIFO"] = str(exc)
    if options.lock_memory:
        try:
            lock_memory()
            report.applied.append("mlockall")
        except OSError as exc:
            report.refused["mlockall"] = str(exc)
    if options.freeze_gc:
        freeze_gc()
        report.applied.append("gc frozen")
    if not has_abstime_sleep():
        report.refused["clock_nanosleep"] = "not in libc; relative sleeps recomputed from absolute deadlines"
    if not _rt_kernel():
        report.refused["PREEMPT_RT kernel"] = "not running on a real-time kernel"
    if report.refused:
        logger.warning("%s; running anyway", report.summary())
    else:
        logger.info(report.summary())
    return report

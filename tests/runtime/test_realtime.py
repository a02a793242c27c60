"""Real-time setup: absolute-deadline sleeping, graceful refusal, gc freezing."""

from __future__ import annotations

import gc
import logging
import os
import time

import pytest

from twinloop.runtime import realtime
from twinloop.runtime.realtime import RealtimeOptions


def test_sleep_until_absolute_deadline():
    deadline = time.monotonic() + 0.02
    realtime.sleep_until(deadline)
    now = time.monotonic()
    assert now >= deadline
    assert now - deadline < 0.02


def test_sleep_until_past_deadline_returns_immediately():
    t0 = time.monotonic()
    realtime.sleep_until(t0 - 1.0)
    assert time.monotonic() - t0 < 0.01


def test_sleep_until_relative_fallback(monkeypatch):
    monkeypatch.setattr(realtime, "_CLOCK_NANOSLEEP", None)
    deadline = time.monotonic() + 0.01
    realtime.sleep_until(deadline)
    assert time.monotonic() >= deadline


def test_refused_steps_are_reported_once_and_run(monkeypatch, caplog):
    def deny(*_a, **_k):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(realtime, "set_fifo", deny)
    monkeypatch.setattr(realtime, "lock_memory", deny)
    with caplog.at_level(logging.INFO, logger="twinloop.realtime"):
        report = realtime.apply(RealtimeOptions(priority=10, cpus=(0,), freeze_gc=False))
    assert "SCHED_FIFO" in report.refused and "mlockall" in report.refused
    assert "affinity [0]" in report.applied
    lines = [r for r in caplog.records if "not available" in r.getMessage()]
    assert len(lines) == 1  # said once
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def test_disabled_does_nothing():
    report = realtime.apply(RealtimeOptions(enabled=False))
    assert report.applied == [] and report.refused == {}


def test_bad_cpu_refused():
    before = os.sched_getaffinity(0)
    report = realtime.apply(RealtimeOptions(priority=0, cpus=(4096,), lock_memory=False, freeze_gc=False))
    assert "cpu affinity" in report.refused
    assert os.sched_getaffinity(0) == before


def test_freeze_gc_and_collect_in_slack():
    was_enabled = gc.isenabled()
    try:
        realtime.freeze_gc()
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert realtime.collect_in_slack(0) >= 0.0
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


@pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="no SCHED_FIFO")
def test_fifo_in_a_thread_when_permitted():
    import threading
    result = {}

    def body():
        try:
            realtime.set_fifo(1)
            result["policy"] = os.sched_getscheduler(0)
        except PermissionError as exc:
            result["error"] = exc
    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in result:
        pytest.skip("SCHED_FIFO not permitted here")
    assert result["policy"] == os.SCHED_FIFO
    assert os.sched_getscheduler(0) != os.SCHED_FIFO  # only the thread was raised

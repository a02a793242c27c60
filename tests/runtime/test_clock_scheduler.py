"""Clocks and the absolute-deadline periodic scheduler."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from twinloop.runtime.clock import AcceleratedClock, ManualClock, RealClock, clock_from_args
from twinloop.runtime.scheduler import PeriodicScheduler, percentile


def test_accelerated_clock_shared_across_instances():
    epoch = time.monotonic() - 60.0  # anchored one real minute ago
    a = AcceleratedClock(60, start_min=100.0, epoch_s=epoch)
    b = clock_from_args(sim_clock=a.spec())
    assert abs(a.now_min() - 160.0) < 0.1
    assert abs(a.now_min() - b.now_min()) < 0.01
    assert a.real_s(60) == pytest.approx(60.0)
    assert a.monotonic_at(160.0) == pytest.approx(epoch + 60.0)


def test_clock_from_args():
    assert isinstance(clock_from_args(), RealClock)
    c = clock_from_args(speed=60)
    assert isinstance(c, AcceleratedClock) and c.speed == 60
    with pytest.raises(ValueError, match="--sim-clock"):
        clock_from_args(sim_clock="garbage")
    with pytest.raises(ValueError):
        AcceleratedClock(0)


def test_manual_clock():
    c = ManualClock(10.0)
    asyncio.run(c.sleep_min(5))
    assert c.now_min() == 15.0


def test_real_clock_minutes():
    assert abs(RealClock().now_min() - time.time() / 60) < 0.01


def test_percentile_nearest_rank():
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 99) == 4
    assert math.isnan(percentile([], 50))


def test_scheduler_ticks_at_absolute_deadlines():
    ticks = []
    s = PeriodicScheduler(0.005, lambda k, d, late: ticks.append((k, d, late)))
    stats = s.run_for(40)
    assert stats.count == 40
    deadlines = [d for _, d, _ in ticks]
    diffs = [b - a for a, b in zip(deadlines, deadlines[1:])]
    assert all(abs(x - 0.005) < 1e-9 for x in diffs)  # the schedule never drifts
    assert all(late >= 0 for _, _, late in ticks)
    assert stats.p50_us < 5000


def test_scheduler_skips_missed_ticks_without_burst():
    seen = []

    def slow(k, d, late):
        seen.append(k)
        if k == 2:
            time.sleep(0.035)  # overrun by several periods
    s = PeriodicScheduler(0.01, slow)
    s.run_for(8)
    assert s.missed >= 2
    assert seen[3] > 3  # the next tick index jumped


def test_scheduler_thread_start_stop():
    hits = []
    s = PeriodicScheduler(0.002, lambda k, d, late: hits.append(k)).start()
    time.sleep(0.05)
    s.stop()
    assert hits and not s.running

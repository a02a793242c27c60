"""The loop on the real safety kernel: SQLite journal, supervisor, insulin on board, and a baseline controller."""

from __future__ import annotations

import asyncio

import pytest

from safety.commands import DeliveryStatus, Resume
from safety.readings import GlucoseReading
from twinloop.runtime.clock import ManualClock
from twinloop.runtime.loop import LoopOptions, Runtime

from .fakes import FakePump, TempController, settings

journal_mod = pytest.importorskip("safety.journal")
kernel = pytest.importorskip("twinloop.runtime.kernel")


def make(path, pump, clock):
    rt = Runtime(settings(), TempController(), kernel.safety_gate(), journal_mod.Journal(path), pump, clock,
                 LoopOptions(pump_timeout_s=0.5))
    rt.restore()
    return rt


def test_real_kernel_cycle_restart_and_cgm_loss(tmp_path):
    path = tmp_path / "journal.db"
    clock = ManualClock(10_000.0)
    pump = FakePump()
    rt = make(path, pump, clock)
    for k in range(4):
        clock.set(10_000.0 + 5 * k)
        res = asyncio.run(rt.on_reading(GlucoseReading(clock.now_min(), 150.0 + k, sequence=k)))
        assert res.error is None, res.error
    assert res.verdict.commands and res.deliveries[0].status == DeliveryStatus.CONFIRMED
    kinds = [e.kind for e in rt.journal.events()]
    assert {"reading", "decision", "verdict", "command_sent", "ack", "cycle"} <= set(kinds)

    # the pump stops answering: the delivery is uncertain, then the process "dies" (no close)
    pump.mode = "uncertain"
    clock.set(10_020.0)
    res = asyncio.run(rt.on_reading(GlucoseReading(clock.now_min(), 160.0, sequence=4)))
    assert res.deliveries[0].status == DeliveryStatus.UNCERTAIN
    del rt

    clock.set(10_021.0)
    rt2 = make(path, FakePump(), clock)
    assert rt2.restored["uncertain"] >= 1
    assert len(rt2.readings) == 5
    assert rt2.controller_state["decisions"] == 5
    clock.set(10_025.0)
    res = asyncio.run(rt2.on_reading(GlucoseReading(clock.now_min(), 170.0, sequence=5)))
    for c in res.verdict.commands:  # while uncertain: nothing but suspend/resume
        assert type(c.command).__name__ in ("Suspend", "Resume")
    # CGM lost: timer cycles; the supervisor reverts to the programmed basal within 20 minutes
    resumed = None
    for minute in range(1, 26):
        clock.set(10_025.0 + minute)
        r = asyncio.run(rt2.on_timer())
        if r and any(isinstance(c.command, Resume) for c in r.verdict.commands):
            resumed = minute
            break
    assert resumed is not None and resumed <= 20
    assert rt2.journal.verify().ok

"""The production loop with in-memory devices: cycles, journaling, fallbacks, uncertain deliveries, restart."""

from __future__ import annotations

import asyncio

import pytest

from safety.commands import DeliveryStatus, Resume, TempBasal
from safety.readings import GlucoseReading
from twinloop.runtime.clock import ManualClock
from twinloop.runtime.loop import LoopOptions, Runtime

from .fakes import FakeGate, FakePump, MemoryJournal, TempController, settings

STAGES = {"queue", "snapshot", "decide", "supervise", "pump", "journal", "total"}


def make(journal=None, pump=None, clock=None, controller=None):
    clock = clock or ManualClock(1000.0)
    rt = Runtime(settings(), controller or TempController(), FakeGate(), journal or MemoryJournal(),
                 pump or FakePump(), clock, LoopOptions(pump_timeout_s=0.5))
    return rt, clock


def run(coro):
    return asyncio.run(coro)


def test_reading_runs_a_full_cycle_and_journals_every_stage():
    rt, clock = make()
    result = run(rt.on_reading(GlucoseReading(1000.0, 150.0, sequence=1)))
    assert result.error is None
    assert [type(c.command) for c in result.verdict.commands] == [TempBasal]
    assert result.deliveries[0].status == DeliveryStatus.CONFIRMED
    kinds = rt.journal.kinds()
    assert kinds == ["reading", "decision", "verdict", "command_sent", "ack", "cycle"]
    cycle = rt.journal.of("cycle")[0]
    assert set(cycle["latency_ms"]) == STAGES
    assert cycle["latency_ms"]["total"] >= cycle["latency_ms"]["decide"]
    assert rt.journal.of("decision")[0]["snapshot_ref"]["n_readings"] == 1


def test_duplicate_reading_is_journaled_but_not_decided():
    rt, clock = make()
    run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    assert run(rt.on_reading(GlucoseReading(1000.0, 150.0))) is None
    assert rt.journal.kinds().count("decision") == 1
    assert rt.journal.kinds().count("reading_duplicate") == 1


def test_timer_fallback_reaches_scheduled_basal_within_20_minutes():
    rt, clock = make()
    run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    resumed_at = None
    for minute in range(1, 30):
        clock.set(1000.0 + minute)
        res = run(rt.on_timer())
        if res and any(isinstance(c.command, Resume) for c in res.verdict.commands):
            resumed_at = minute
            break
    assert resumed_at is not None and resumed_at <= 20
    assert any(a["message"] == "CGM lost" for a in rt.alarms)
    assert "timer" in {c["trigger"] for c in rt.journal.of("cycle")}


def test_no_timer_cycle_while_readings_flow():
    rt, clock = make()
    run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    clock.set(1004.0)
    assert run(rt.on_timer()) is None


def test_no_new_insulin_while_delivery_uncertain_then_reconciled():
    pump = FakePump()
    pump.mode = "uncertain"
    rt, clock = make(pump=pump)
    first = run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    assert first.deliveries[0].status == DeliveryStatus.UNCERTAIN
    assert rt.uncertain
    clock.set(1005.0)
    second = run(rt.on_reading(GlucoseReading(1005.0, 160.0)))
    assert second.verdict.commands == ()  # held: the gate saw the uncertain record
    assert rt.gate.calls[-1][1].uncertain
    assert len(pump.received) == 1
    pump.mode = "ok"
    clock.set(1010.0)
    third = run(rt.on_reading(GlucoseReading(1010.0, 160.0)))
    assert not rt.uncertain
    assert third.verdict.commands
    assert any(p.get("reconciled") for p in rt.journal.of("delivery"))


def test_pump_timeout_leaves_an_uncertain_record():
    pump = FakePump()

    async def hang(command):
        await asyncio.sleep(10)
    pump.execute = hang
    rt, clock = make(pump=pump)
    res = run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    assert res.deliveries[0].status == DeliveryStatus.UNCERTAIN
    assert any("uncertain" in a["message"] for a in rt.alarms)


def test_controller_exception_never_crashes_the_loop():
    ctl = TempController()
    ctl.raise_next = True
    rt, clock = make(controller=ctl)
    res = run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    assert res.error is None
    assert res.proposal.error.startswith("controller_exception")
    assert res.verdict.commands == ()  # basal=None: the pump keeps its programmed basal
    clock.set(1005.0)
    assert run(rt.on_reading(GlucoseReading(1005.0, 150.0))).verdict.commands


def test_journal_failure_sends_nothing():
    journal = MemoryJournal()
    rt, clock = make(journal=journal)
    journal.fail = True
    assert run(rt.on_reading(GlucoseReading(1000.0, 150.0))) is None
    assert rt.pump.received == [] and not rt.journal_ok


def test_restart_restores_deliveries_state_and_uncertainty():
    journal = MemoryJournal()
    pump = FakePump()
    rt, clock = make(journal=journal, pump=pump)
    run(rt.on_reading(GlucoseReading(1000.0, 150.0, sequence=7)))
    # simulate a kill between the write-ahead "command" event and the pump's answer
    journal.append("command_sent", 1005.0, {"delivery": {
        "type": "delivery", "command_id": "in-flight", "kind": "bolus", "start_min": 1005.0, "end_min": 1005.0,
        "amount_u": 1.0, "status": "commanded", "rate_u_per_h": None}})
    rt2, _ = make(journal=journal, pump=FakePump(), clock=ManualClock(1006.0))
    summary = rt2.restore()
    assert summary["uncertain"] == 1 and summary["deliveries"] == 1
    assert rt2.controller_state == {"decisions": 1}
    assert [r.sequence for r in rt2.readings] == [7]
    assert [r.command_id for r in rt2.uncertain] == ["in-flight"]
    res = run(rt2.on_reading(GlucoseReading(1006.0, 150.0)))
    assert res.verdict.commands == ()  # no insulin until the in-flight command is reconciled


def test_user_bolus_passes_the_gate_and_status_reports():
    rt, clock = make()
    run(rt.on_reading(GlucoseReading(1000.0, 150.0)))
    res = run(rt.request_bolus(9.0))
    assert res.verdict.commands[-1].command.bolus_u == 5.0  # capped by the gate
    st = rt.status()
    assert st["last_reading"]["glucose_mg_dl"] == 150.0
    assert st["iob_u"] == 5.0
    assert st["last_command"]["status"] == "confirmed"
    assert st["tir_24h"] == 1.0
    assert st["latency"]["cycles"] == 1


def test_meal_is_recorded_before_the_cycle():
    rt, clock = make()
    res = run(rt.request_meal(45))
    kinds = rt.journal.kinds()
    assert kinds.index("meal") < kinds.index("decision")
    assert rt.meals[0].carbs_g == 45.0 and res.trigger == "meal"

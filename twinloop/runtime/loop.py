"""The production loop: CGM reading -> snapshot -> decide -> supervise -> pump -> journal.

:class:`Runtime` holds what the loop knows (recent readings, deliveries, meals, controller and supervisor state)
and runs one *cycle* per new reading, plus timer cycles when readings stop so the supervisor's CGM-loss fallback
happens on time. Every step is journaled before it has an effect (write-ahead: a command is journaled before it is
sent), every cycle's latency is journaled split by stage, and nothing in a cycle can crash the loop: an error is
recorded and the supervisor's fallback applies. The asyncio wiring (device tasks, scheduler, watchdog, control
socket) lives in :mod:`twinloop.runtime.service`.

Stages of a cycle (latency keys, milliseconds): ``queue`` (reading received -> cycle starts), ``snapshot``,
``decide``, ``supervise``, ``pump`` (commands sent -> acknowledged), ``journal`` (time spent appending), ``total``
(reading received -> last command acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from safety.deliveries import planned_record, reduced_deliveries
from safety.commands import (
    ApprovedCommand, Bolus, BolusKind, DeliveryKind, DeliveryRecord, DeliveryStatus, Proposal,
)
from safety.readings import GlucoseReading, MealAnnouncement
from safety.settings import TherapySettings
from safety.snapshot import Snapshot
from twinloop.runtime.clock import Clock
from twinloop.runtime.kernel import GateVerdict, PumpView, SafetyGate, to_jsonable

log = logging.getLogger("twinloop.loop")

TIR_LOW_MG_DL = 70.0
TIR_HIGH_MG_DL = 180.0


@dataclass
class LoopOptions:
    cgm_interval_min: float = 5.0
    timer_fallback_min: float = 1.0
    """When readings stop, decide every this many simulated minutes (after one interval + 1 min of silence)."""
    history_h: float = 24.0
    pump_timeout_s: float = 10.0
    """Real-time bound on one pump call (the driver's own timeouts are shorter; this is the last resort)."""
    status_refresh_min: float = 1.0


@dataclass
class CycleResult:
    trigger: str
    now_min: float
    proposal: Proposal | None
    verdict: GateVerdict | None
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class JournalFailure(RuntimeError):
    """The journal could not record an event: the loop sends nothing it cannot record."""


class Runtime:
    """State and cycles of the production loop.

    Args:
        settings: validated therapy settings.
        controller: a :class:`controller.api.Controller`.
        gate: the safety gate (:class:`twinloop.runtime.kernel.SupervisorGate` in production).
        journal: append-only journal (``append(kind, t_min, payload) -> seq``; ``restore()`` optional).
        pump: a :class:`drivers.interfaces.PumpLink` (may be None until connected).
        clock: the runtime's clock.
    """

    def __init__(self, settings: TherapySettings, controller: Any, gate: SafetyGate, journal: Any, pump: Any,
                 clock: Clock, options: LoopOptions | None = None) -> None:
        self.settings = settings
        self.controller = controller
        self.gate = gate
        self.journal = journal
        self.pump = pump
        self.clock = clock
        self.opts = options or LoopOptions()
        self.controller_state: Any = controller.initial_state(settings)
        keep = int(self.opts.history_h * 60 / max(self.opts.cgm_interval_min, 1.0)) + 64
        self.readings: deque[GlucoseReading] = deque(maxlen=max(keep, 64))
        self.deliveries: dict[str, DeliveryRecord] = {}
        self.meals: list[MealAnnouncement] = []
        self.alarms: deque[dict] = deque(maxlen=50)
        self.latencies: deque[dict] = deque(maxlen=2000)
        self.pump_status: Any = None
        self.pump_status_at_min: float = -math.inf
        self.pump_reachable = True  # unknown until the first status; execute() tells
        self.last_cycle_min: float = -math.inf
        self.last_reading_min: float = -math.inf
        self.last_command: dict | None = None
        self.cycles = 0
        self.errors = 0
        self.journal_ok = True
        self.journal_error: str | None = None
        self.cycle_started_mono: float | None = None
        self.restored: dict = {}
        self.automatic_dosing = True
        self._orphan_commands: dict[str, ApprovedCommand] = {}
        self._adopted: set[str] = set()
        self.devices: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._journal_ms = 0.0

    # ------------------------------------------------------------------------------------------------ journal

    def record(self, kind: str, t_min: float, payload: Any) -> int | None:
        """Append one event; on failure mark the journal unhealthy and raise :class:`JournalFailure`."""
        t0 = time.perf_counter()
        try:
            seq = self.journal.append(kind, float(t_min), to_jsonable(payload))
        except Exception as exc:
            self.journal_ok = False
            self.journal_error = f"{type(exc).__name__}: {exc}"
            log.error("journal append failed (%s): %s", kind, exc)
            raise JournalFailure(self.journal_error) from exc
        finally:
            self._journal_ms += (time.perf_counter() - t0) * 1e3
        self.journal_ok = True
        return seq

    def record_quietly(self, kind: str, t_min: float, payload: Any) -> int | None:
        try:
            return self.record(kind, t_min, payload)
        except JournalFailure:
            return None

    # ------------------------------------------------------------------------------------------------ restore

    def restore(self) -> dict:
        """Restore from the journal; a restore that fails leaves automatic dosing off (never crashes the start)."""
        try:
            return self._restore()
        except Exception as exc:
            log.exception("restore from the journal failed")
            self.automatic_dosing = False
            self._alarm(self.clock.now_min(), "journal", f"restore failed ({type(exc).__name__}: {exc}): automatic "
                        f"dosing refused until an operator acts", "critical")
            self.restored = {"restored": False, "automatic_dosing": False, "error": str(exc)}
            return self.restored

    def _restore(self) -> dict:
        """Restore deliveries (insulin on board), uncertain deliveries, controller and supervisor state from the
        journal. A journal that does not verify leaves automatic dosing off until an operator acts."""
        restore = getattr(self.journal, "restore", None)
        summary: dict = {"restored": False}
        if restore is None:
            return summary
        if getattr(self.journal, "refuse_automatic_dosing", False):
            corruption = getattr(self.journal, "corruption", None)
            self.automatic_dosing = False
            self._alarm(self.clock.now_min(), "journal",
                        f"journal failed verification ({corruption}): automatic dosing refused until an operator "
                        f"acknowledges it", "critical")
            self.restored = {"restored": False, "automatic_dosing": False, "corruption": str(corruption)}
            return self.restored
        restored = restore()
        events_fn = getattr(self.journal, "events", None)
        deliveries = tuple(getattr(restored, "deliveries", ()) or ())
        uncertain = tuple(getattr(restored, "uncertain_deliveries", None) or getattr(restored, "uncertain", ()) or ())
        for rec in deliveries + uncertain:
            self.deliveries[rec.command_id or f"pump@{rec.start_min}"] = rec
        state = getattr(restored, "controller_state", None)
        if state is not None:
            self.controller_state = state
        sup_state = getattr(restored, "supervisor_state", None)
        if sup_state is not None:
            self.gate.restore_state(sup_state)
        if uncertain and events_fn is not None:
            wanted = {r.command_id for r in uncertain}
            from safety.serialization import from_jsonable
            for ev in events_fn(kinds=("command_sent",)):
                cmd = ev.payload.get("command")
                if isinstance(cmd, dict) and cmd.get("command_id") in wanted:
                    try:
                        self._orphan_commands[cmd["command_id"]] = from_jsonable("approved_command", cmd)
                    except Exception as exc:
                        log.warning("cannot restore command %s: %s", cmd.get("command_id"), exc)
        readings = list(getattr(restored, "readings", ()) or ())
        meals = list(getattr(restored, "meals", ()) or ())
        events = getattr(self.journal, "events", None)
        if not readings and events is not None:
            readings, meals = self._recent_inputs(events, getattr(restored, "last_t_min", None))
        for reading in readings:
            self._add_reading(reading)
        self.meals.extend(meals)
        for alarm in getattr(restored, "alarms", ()) or ():
            if isinstance(alarm, dict) and "message" in alarm:
                self.alarms.append(alarm)
        ok = getattr(restored, "ok", None)
        if ok is None:
            ok = not bool(getattr(restored, "corrupt", False))
        self.automatic_dosing = bool(ok) and not getattr(self.journal, "refuse_automatic_dosing", False)
        summary = {"restored": True, "deliveries": len(deliveries), "uncertain": len(uncertain),
                   "controller_state": state is not None, "supervisor_state": sup_state is not None,
                   "readings": len(self.readings), "automatic_dosing": self.automatic_dosing}
        if not self.automatic_dosing:
            reason = getattr(restored, "problem", None) or getattr(restored, "error", None) or "journal corrupt"
            self._alarm(self.clock.now_min(), "journal", f"automatic dosing refused: {reason}")
        self.restored = summary
        return summary

    def _recent_inputs(self, events: Any, last_t_min: float | None) -> tuple[list, list]:
        from safety.serialization import from_jsonable
        horizon = -math.inf if last_t_min is None else last_t_min - self.opts.history_h * 60.0
        readings, meals = [], []
        for ev in events(kinds=("reading", "meal")):
            if ev.t_min < horizon:
                continue
            try:
                if ev.kind == "reading":
                    readings.append(from_jsonable("reading", ev.payload))
                else:
                    meals.append(from_jsonable("meal", ev.payload))
            except Exception as exc:  # a payload this version cannot read is reported, never fatal
                log.warning("cannot restore %s event %s: %s", ev.kind, ev.seq, exc)
        return readings, meals

    # ------------------------------------------------------------------------------------------------ inputs

    def _add_reading(self, reading: GlucoseReading) -> bool:
        if self.readings:
            last = self.readings[-1]
            if reading.t_min <= last.t_min:
                if any(abs(r.t_min - reading.t_min) < 1e-6 for r in self.readings):
                    return False  # duplicate
                ordered = sorted([*self.readings, reading], key=lambda r: r.t_min)  # back-filled reading
                self.readings.clear()
                self.readings.extend(ordered)
                return True
        self.readings.append(reading)
        self.last_reading_min = max(self.last_reading_min, reading.t_min)
        return True

    def announce_meal(self, carbs_g: float, now_min: float | None = None) -> MealAnnouncement:
        now = self.clock.now_min() if now_min is None else now_min
        meal = MealAnnouncement(t_min=now, carbs_g=float(carbs_g), announced_at_min=now,
                                entry_id=uuid.uuid4().hex[:12])
        self.record("meal", now, meal)
        self.meals.append(meal)
        return meal

    # ------------------------------------------------------------------------------------------------ views

    @property
    def uncertain(self) -> tuple[DeliveryRecord, ...]:
        return tuple(r for r in self.deliveries.values() if r.status == DeliveryStatus.UNCERTAIN)

    def snapshot(self, now_min: float) -> Snapshot:
        horizon = max(self.settings.insulin_curve.duration_min, 24 * 60.0)
        # reduced once here, so the controller's and the supervisor's insulin-on-board sums share one set of arrays
        deliveries = reduced_deliveries(sorted((r for r in self.deliveries.values() if r.end_min >= now_min - horizon),
                                               key=lambda r: r.start_min))
        readings = tuple(r for r in self.readings if r.t_min <= now_min + 1e-9)
        meals = tuple(m for m in self.meals if m.announced_at_min <= now_min and m.t_min >= now_min - 12 * 60)
        return Snapshot(now_min=now_min, readings=readings, deliveries=deliveries, meals=meals,
                        settings=self.settings)

    def _alarm(self, t_min: float, source: str, message: str, severity: str = "warning") -> None:
        entry = {"t_min": t_min, "source": source, "reason": source, "message": message, "severity": severity}
        recent = [a for a in self.alarms if a["message"] == message and t_min - a["t_min"] < 30]
        if recent:
            return  # the same alarm within 30 min is recorded once
        self.alarms.append(entry)
        self.record_quietly("alarm", t_min, entry)

    # ------------------------------------------------------------------------------------------------ cycles

    async def on_reading(self, reading: GlucoseReading, received_perf: float | None = None) -> CycleResult | None:
        """A new reading arrived: journal it and run a cycle (a duplicate is journaled and ignored)."""
        received_perf = time.perf_counter() if received_perf is None else received_perf
        async with self._lock:
            now = self.clock.now_min()
            new = self._add_reading(reading)
            try:
                self.record("reading" if new else "reading_duplicate", now, reading)
            except JournalFailure:
                return None
            if not new:
                return None
            if now - reading.t_min > self.opts.cgm_interval_min:
                return None  # back-filled after a gap: recorded; the timer cycles decide until a fresh reading
            return await self._cycle("reading", now, received_perf, reading=reading)

    async def on_timer(self) -> CycleResult | None:
        """Timer tick: when readings have stopped, run a timer cycle every ``timer_fallback_min``."""
        now = self.clock.now_min()
        silence = now - self.last_reading_min
        if silence < self.opts.cgm_interval_min + 1.0 or now - self.last_cycle_min < self.opts.timer_fallback_min:
            return None
        if self._lock.locked():
            return None
        async with self._lock:
            return await self._cycle("timer", self.clock.now_min(), time.perf_counter())

    async def request_bolus(self, bolus_u: float) -> CycleResult:
        """A person asked for a bolus: it passes the supervisor like any other command."""
        async with self._lock:
            now = self.clock.now_min()
            proposal = Proposal(now_min=now, basal=None, bolus=Bolus(float(bolus_u), BolusKind.USER),
                                reason=f"user requested {bolus_u} U", controller="user")
            return await self._cycle("user_bolus", now, time.perf_counter(), proposal=proposal)

    async def request_meal(self, carbs_g: float) -> CycleResult:
        """A person announced a meal: recorded, then a cycle decides (and the supervisor gates) what to give."""
        async with self._lock:
            now = self.clock.now_min()
            self.announce_meal(carbs_g, now)
            return await self._cycle("meal", now, time.perf_counter())

    async def _cycle(self, trigger: str, now: float, received_perf: float,
                     proposal: Proposal | None = None, reading: GlucoseReading | None = None) -> CycleResult:
        t_start = time.perf_counter()
        self.cycle_started_mono = time.monotonic()
        self._journal_ms = 0.0
        lat: dict[str, float] = {"queue": (t_start - received_perf) * 1e3}
        result = CycleResult(trigger, now, proposal, None)
        try:
            await self._maybe_reconcile(now)
            t0 = time.perf_counter()
            snap = self.snapshot(now)
            lat["snapshot"] = (time.perf_counter() - t0) * 1e3

            t0 = time.perf_counter()
            if proposal is None:
                proposal = self._decide(snap)
            lat["decide"] = (time.perf_counter() - t0) * 1e3
            if not self.automatic_dosing and proposal.controller != "user":
                proposal = Proposal(now_min=now, basal=None, reason="automatic dosing refused (journal)",
                                    controller=proposal.controller, error="journal_corrupt")
            result.proposal = proposal
            self.record("decision", now, {"trigger": trigger, "proposal": proposal,
                                          "controller_state": self.controller_state,
                                          "snapshot_ref": self._snapshot_ref(snap)})

            t0 = time.perf_counter()
            view = PumpView(self.pump_status, self.uncertain, self.pump_reachable)
            verdict = self.gate.supervise(proposal, snap, view)
            lat["supervise"] = (time.perf_counter() - t0) * 1e3
            result.verdict = verdict
            if verdict.raw is not None and hasattr(verdict.raw, "to_dict"):
                self.record("verdict", now, verdict.raw.to_dict())
            else:
                self.record("verdict", now, {"commands": verdict.commands, "interventions": verdict.interventions,
                                             "alarms": verdict.alarms, "fallback": verdict.fallback,
                                             "state": self.gate.state_jsonable()})
            for alarm in verdict.alarms:
                self._alarm(now, "supervisor", alarm)

            t0 = time.perf_counter()
            context = {"trigger": trigger, "reading_sequence": None if reading is None else reading.sequence,
                       "reading_t_min": None if reading is None else reading.t_min}
            for command in verdict.commands:
                result.deliveries.append(await self._execute(command, now, context))
            lat["pump"] = (time.perf_counter() - t0) * 1e3
        except JournalFailure as exc:
            result.error = f"journal: {exc}"
        except Exception as exc:  # a cycle never crashes the loop
            self.errors += 1
            result.error = f"{type(exc).__name__}: {exc}"
            log.exception("cycle failed")
            self.record_quietly("error", now, {"trigger": trigger, "error": result.error})
        end = time.perf_counter()
        lat["journal"] = self._journal_ms
        lat["total"] = (end - received_perf) * 1e3
        result.latency_ms = {k: round(v, 3) for k, v in lat.items()}
        self.latencies.append({"t_min": now, "trigger": trigger, **result.latency_ms})
        self.record_quietly("cycle", now, {"trigger": trigger, "latency_ms": result.latency_ms,
                                           "reading_sequence": None if reading is None else reading.sequence,
                                           "commands": len(result.deliveries), "error": result.error})
        self.cycles += 1
        self.last_cycle_min = now
        self.cycle_started_mono = None
        return result

    def _decide(self, snap: Snapshot) -> Proposal:
        try:
            state, proposal = self.controller.decide(self.controller_state, snap)
        except Exception as exc:
            self.errors += 1
            log.exception("controller failed")
            name = getattr(self.controller, "name", "controller")
            return Proposal(now_min=snap.now_min, basal=None, reason=f"controller raised {type(exc).__name__}",
                            controller=name, error=f"controller_exception: {exc}")
        self.controller_state = state
        return proposal

    @staticmethod
    def _snapshot_ref(snap: Snapshot) -> dict:
        """The snapshot by reference: every reading, delivery and meal in it is its own journal event."""
        return {"now_min": snap.now_min, "n_readings": len(snap.readings),
                "readings_from_min": snap.readings[0].t_min if snap.readings else None,
                "readings_to_min": snap.readings[-1].t_min if snap.readings else None,
                "deliveries": [r.command_id for r in snap.deliveries if r.command_id],
                "meals": [m.entry_id for m in snap.meals]}

    async def _execute(self, command: ApprovedCommand, now: float, context: dict | None = None) -> DeliveryRecord:
        """Write-ahead journal, send, journal the outcome. Anything but a confirmation leaves an explicit record."""
        self.record("command_sent", now, {"command": command,
                                          "delivery": planned_record(command, DeliveryStatus.COMMANDED),
                                          **(context or {})})
        self.last_command = {"command_id": command.command_id, "t_min": now, "command": to_jsonable(command.command),
                             "status": "commanded"}
        try:
            if self.pump is None:
                raise ConnectionError("pump not connected")
            record = await asyncio.wait_for(self.pump.execute(command), self.opts.pump_timeout_s)
        except Exception as exc:
            record = self._record_for_failure(command, now, exc)
        self.deliveries[command.command_id] = record
        self.last_command["status"] = record.status.value
        kind = "ack" if record.status in (DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED) else "delivery"
        self.record(kind, self.clock.now_min(), {"delivery": record})
        if record.status == DeliveryStatus.UNCERTAIN:
            self._alarm(now, "pump", f"delivery uncertain for {command.command_id}: no insulin until reconciled")
        elif record.status == DeliveryStatus.FAILED:
            self._alarm(now, "pump", f"command {command.command_id} refused by the pump")
        return record

    def _record_for_failure(self, command: ApprovedCommand, now: float, exc: BaseException) -> DeliveryRecord:
        from drivers.interfaces import DeliveryUncertainError
        name = type(exc).__name__
        from drivers.interfaces import DeviceError
        if isinstance(exc, (DeliveryUncertainError, ConnectionError, TypeError)) or (
                isinstance(exc, DeviceError) and "not open" in str(exc)):
            status = DeliveryStatus.FAILED  # refused before anything was sent
        else:
            status = DeliveryStatus.UNCERTAIN  # sent (or maybe sent) and not confirmed
        self.record_quietly("error", now, {"command_id": command.command_id, "error": f"{name}: {exc}",
                                           "status": status.value})
        if status == DeliveryStatus.FAILED:
            t = command.issued_at_min
            return DeliveryRecord(command.command_id, planned_record(command, status).kind, t, t, 0.0, status)
        return planned_record(command, status)

    async def _maybe_reconcile(self, now: float) -> None:
        if not self.uncertain or self.pump is None:
            return
        if getattr(self.pump, "history", None) is None:
            known = {r.command_id for r in getattr(self.pump, "pending", ()) or ()}
            self._adopt_orphans([r for r in self.uncertain if r.command_id not in known])
        try:
            resolved = await asyncio.wait_for(self.pump.reconcile(), self.opts.pump_timeout_s)
        except Exception as exc:
            self.record_quietly("error", now, {"reconcile": f"{type(exc).__name__}: {exc}"})
            return
        for rec in resolved:
            self.deliveries[rec.command_id] = rec
            self.record("delivery", now, {"delivery": rec, "reconciled": True})
        await self._reconcile_orphans(now)

    async def _reconcile_orphans(self, now: float) -> None:
        """Uncertain records the driver does not know (restored from the journal after a restart): resolve them
        from the pump's own history, by command id (one small ``find`` request per command where the driver offers
        it, else the whole history). Without a readable history they stay uncertain (no insulin)."""
        known = {r.command_id for r in getattr(self.pump, "pending", ()) or ()}
        orphans = [r for r in self.uncertain if r.command_id not in known]
        if not orphans:
            return
        find = getattr(self.pump, "find", None)
        history = getattr(self.pump, "history", None)
        if find is None and history is None:
            self._adopt_orphans(orphans)
            return
        try:
            if find is not None:
                by_id = {rec.command_id: await asyncio.wait_for(find(rec.command_id), self.opts.pump_timeout_s)
                         for rec in orphans}
            else:
                entries = await asyncio.wait_for(history(0), self.opts.pump_timeout_s)
                by_id = {getattr(e, "command_id", None): e for e in entries}
        except Exception as exc:
            self.record_quietly("error", now, {"reconcile_history": f"{type(exc).__name__}: {exc}"})
            return
        try:
            from drivers.serial.pump_client import delivery_record
        except ImportError:  # pragma: no cover
            return
        for rec in orphans:
            entry = by_id.get(rec.command_id)
            if entry is not None:
                resolved = delivery_record(entry, DeliveryStatus.CONFIRMED)
            else:  # the pump's history does not hold it: never executed
                resolved = DeliveryRecord(rec.command_id, rec.kind, rec.start_min, rec.start_min, 0.0,
                                          DeliveryStatus.FAILED)
            self.deliveries[rec.command_id] = resolved
            self.record("delivery", now, {"delivery": resolved, "reconciled": True, "from_history": True})

    def _adopt_orphans(self, orphans: list[DeliveryRecord]) -> None:
        """Hand uncertain commands restored from the journal to a driver that reconciles by matching its history
        (BLE IDS: no command ids on the wire). ``adopt_uncertain(command, record)`` when the driver offers it
        (:meth:`drivers.ble.pump_client.IdsPumpClient.adopt_uncertain` matches it against the whole history; a match
        can only err towards "delivered", the safe side). The next ``reconcile()`` resolves them."""
        adopt = getattr(self.pump, "adopt_uncertain", None)
        for rec in orphans:
            command = self._orphan_commands.get(rec.command_id)
            if command is None or rec.command_id in self._adopted:
                continue
            if adopt is None:
                continue  # stays uncertain: no insulin until an operator reconciles it
            adopt(command, rec)
            self._adopted.add(rec.command_id)

    async def refresh_pump_status(self, force: bool = False) -> None:
        now = self.clock.now_min()
        if self.pump is None or (not force and now - self.pump_status_at_min < self.opts.status_refresh_min):
            return
        try:
            status = await asyncio.wait_for(self.pump.status(), self.opts.pump_timeout_s)
        except Exception as exc:
            if self.pump_reachable:
                self._alarm(now, "pump", f"pump not answering: {type(exc).__name__}: {exc}")
            self.pump_reachable = False
            self.pump_status_at_min = now
            return
        if status.occluded and not (self.pump_status and self.pump_status.occluded):
            self._alarm(now, "pump", "occlusion")
        if status.reservoir_empty and not (self.pump_status and self.pump_status.reservoir_empty):
            self._alarm(now, "pump", "reservoir empty")
        if self.pump_status != status:
            self.record_quietly("pump_status", now, {"status": status})
        self.pump_status = status
        self.pump_reachable = True
        self.pump_status_at_min = now

    # ------------------------------------------------------------------------------------------------ status

    def status(self) -> dict:
        now = self.clock.now_min()
        last = self.readings[-1] if self.readings else None
        day = [r.glucose_mg_dl for r in self.readings if r.t_min >= now - 1440 and r.is_numeric]
        tir = (sum(TIR_LOW_MG_DL <= g <= TIR_HIGH_MG_DL for g in day) / len(day)) if day else None
        try:
            iob = self.gate.iob_u(self.snapshot(now).deliveries, self.settings, now)
        except Exception as exc:
            iob = None
            log.debug("iob failed: %s", exc)
        recent = [x["total"] for x in list(self.latencies)[-288:] if x.get("trigger") == "reading"]
        lat = None
        if recent:
            ordered = sorted(recent)
            lat = {"last_ms": recent[-1], "p50_ms": ordered[len(ordered) // 2],
                   "p99_ms": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
                   "max_ms": ordered[-1], "cycles": len(recent)}
        stages = dict(list(self.latencies)[-1]) if self.latencies else None
        return {
            "now_min": now,
            "last_reading": None if last is None else {"t_min": last.t_min, "glucose_mg_dl": last.glucose_mg_dl
                                                       if last.is_numeric else None,
                                                       "age_min": round(now - last.t_min, 2)},
            "iob_u": None if iob is None else round(iob, 3),
            "last_command": self.last_command,
            "uncertain_deliveries": [r.command_id for r in self.uncertain],
            "alarms": list(self.alarms)[-10:],
            "tir_24h": None if tir is None else round(tir, 4),
            "readings_24h": len(day),
            "latency": lat,
            "last_cycle_stages_ms": stages,
            "cycles": self.cycles,
            "errors": self.errors,
            "automatic_dosing": self.automatic_dosing,
            "journal_ok": self.journal_ok,
            "pump": None if self.pump_status is None else to_jsonable(self.pump_status),
            "pump_reachable": self.pump_reachable,
            "controller": getattr(self.controller, "name", "?"),
            "devices": dict(self.devices),
        }

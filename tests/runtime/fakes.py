"""In-memory test doubles for the runtime: journal, safety gate, CGM and pump."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from drivers.interfaces import DeliveryUncertainError, DeviceError, PumpStatus
from safety.commands import (
    Bolus, BolusKind, DeliveryKind, DeliveryRecord, DeliveryStatus, Proposal, Resume, Suspend, TempBasal, _approve,
)
from safety.readings import GlucoseReading
from safety.settings import Schedule, TherapySettings
from twinloop.runtime.kernel import GateVerdict


def settings() -> TherapySettings:
    return TherapySettings(Schedule.constant(1.0), Schedule.constant(50.0), Schedule.constant(10.0))


class MemoryJournal:
    """Append-only list of (seq, kind, t_min, payload) with a minimal restore."""

    def __init__(self) -> None:
        self.log: list[tuple[int, str, float, Any]] = []
        self.fail = False

    def append(self, kind: str, t_min: float, payload: Any) -> int:
        if self.fail:
            raise OSError("disk full")
        json.dumps(payload)  # must be JSON-ready
        self.log.append((len(self.log) + 1, kind, t_min, payload))
        return len(self.log)

    def kinds(self) -> list[str]:
        return [e[1] for e in self.log]

    def of(self, kind: str) -> list[Any]:
        return [e[3] for e in self.log if e[1] == kind]

    def restore(self) -> Any:
        from safety.deliveries import effective_deliveries
        from safety.serialization import from_jsonable
        records = []
        state = None
        readings = []
        for _, kind, t, p in self.log:
            if kind in ("command_sent", "ack", "delivery"):
                records.append(from_jsonable("delivery", p["delivery"]))
            elif kind == "decision":
                state = p["controller_state"]
            elif kind == "reading":
                readings.append(from_jsonable("reading", p))
        out = []
        for r in effective_deliveries(records):
            if r.status == DeliveryStatus.COMMANDED:
                r = DeliveryRecord(r.command_id, r.kind, r.start_min, r.end_min, r.amount_u, DeliveryStatus.UNCERTAIN)
            out.append(r)
        return Restored(tuple(d for d in out if d.status != DeliveryStatus.UNCERTAIN),
                        tuple(d for d in out if d.status == DeliveryStatus.UNCERTAIN), state, readings)


@dataclass
class Restored:
    deliveries: tuple
    uncertain_deliveries: tuple
    controller_state: Any
    readings: list
    supervisor_state: Any = None
    ok: bool = True


class FakeGate:
    """A tiny supervisor: no insulin while uncertain; basal fallback (Resume) 20 min after the last reading."""

    def __init__(self) -> None:
        self.n = 0
        self.calls: list[tuple[Proposal, Any]] = []

    def _id(self) -> str:
        self.n += 1
        return f"cmd-{self.n}"

    def supervise(self, proposal, snapshot, pump) -> GateVerdict:
        self.calls.append((proposal, pump))
        now = snapshot.now_min
        last = snapshot.readings[-1].t_min if snapshot.readings else -1e9
        if now - last >= 20:
            return GateVerdict((_approve(self._id(), now, Resume()),), ("cgm_loss",), ("CGM lost",), "scheduled basal")
        if pump.uncertain:
            return GateVerdict((), ("delivery_uncertain",), (), "hold")
        cmds = []
        if proposal.basal is not None:
            cmds.append(_approve(self._id(), now, proposal.basal))
        if proposal.bolus is not None and proposal.bolus.bolus_u > 0:
            cmds.append(_approve(self._id(), now, Bolus(min(proposal.bolus.bolus_u, 5.0), proposal.bolus.kind)))
        return GateVerdict(tuple(cmds))

    def iob_u(self, deliveries, settings, now_min):
        return sum(d.amount_u for d in deliveries if d.status == DeliveryStatus.CONFIRMED and d.kind.value == "bolus")

    def state_jsonable(self):
        return {"n": self.n}

    def restore_state(self, state):
        pass


class TempController:
    """Proposes a 1.5 U/h temp basal on every decision; raises when told to."""

    name = "temp"

    def __init__(self) -> None:
        self.raise_next = False

    def initial_state(self, settings):
        return {"decisions": 0}

    def decide(self, state, snapshot):
        if self.raise_next:
            self.raise_next = False
            raise RuntimeError("solver diverged")
        return ({"decisions": state["decisions"] + 1},
                Proposal(snapshot.now_min, TempBasal(1.5, 30.0), reason="test", controller=self.name))


class FakePump:
    """In-memory pump: idempotent by command id; modes 'ok', 'uncertain' (no confirmation), 'down'."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.executed: dict[str, int] = {}
        self.received: list[Any] = []
        self.pending: list[DeliveryRecord] = []
        self.occluded = False
        self.connected = False

    async def connect(self) -> None:
        if self.mode == "down":
            raise DeviceError("no pump")
        self.connected = True

    async def execute(self, command) -> DeliveryRecord:
        if self.pending:
            raise DeliveryUncertainError("reconcile first", tuple(self.pending))
        if self.mode == "down":
            raise DeviceError("link down")
        c = command.command
        amount = c.bolus_u if isinstance(c, Bolus) else 0.0
        kind = DeliveryKind.BOLUS if isinstance(c, Bolus) else DeliveryKind.BASAL
        first = command.command_id not in self.executed
        self.executed[command.command_id] = self.executed.get(command.command_id, 0) + (1 if first else 0)
        self.received.append(command)
        if self.mode == "uncertain":
            rec = DeliveryRecord(command.command_id, kind, command.issued_at_min, command.issued_at_min, amount,
                                 DeliveryStatus.UNCERTAIN)
            self.pending.append(rec)
            return rec
        if self.occluded:
            return DeliveryRecord(command.command_id, kind, command.issued_at_min, command.issued_at_min, 0.0,
                                  DeliveryStatus.FAILED)
        return DeliveryRecord(command.command_id, kind, command.issued_at_min, command.issued_at_min, amount,
                              DeliveryStatus.CONFIRMED)

    async def reconcile(self):
        if self.mode != "ok":
            return ()
        out = tuple(DeliveryRecord(r.command_id, r.kind, r.start_min, r.end_min, r.amount_u,
                                   DeliveryStatus.CONFIRMED) for r in self.pending)
        self.pending.clear()
        return out

    async def status(self) -> PumpStatus:
        if self.mode == "down":
            raise DeviceError("link down")
        return PumpStatus(self.occluded, 200.0, False, False, False, 1.0)

    async def close(self) -> None:
        self.connected = False


class FakeCgm:
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.connects = 0

    def push(self, reading: GlucoseReading | BaseException) -> None:
        self.queue.put_nowait(reading)

    async def connect(self) -> None:
        self.connects += 1

    async def readings(self):
        while True:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        pass

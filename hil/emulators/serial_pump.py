"""Serial bench insulin pump emulator on a pseudo-terminal, driven by the virtual patient.

It executes ``PUMP_COMMAND`` (temporary basal, bolus, suspend, resume, cancel bolus) exactly once per
``command_id`` (a repeat is answered ``DUPLICATE`` with the original history entry), keeps a delivery history the
driver reads with ``PUMP_HISTORY_REQ``, and reports status. See ``docs/serial-protocol.md``.

Bench API: :meth:`SerialPumpEmulator.advance_to` (pump clock, absolute minutes), :meth:`take_delivered_u` (insulin
delivered since the last call, for the virtual patient), :meth:`history` / :meth:`deliveries`, :meth:`set_occlusion`.
Fault hooks: ``corruption_probability``, ``disconnect*``, ``lose_responses``, ``delay_responses`` (see
:mod:`hil.emulators.pty`), and occlusion.

Boluses are delivered instantly (an approximation sufficient for 5-minute patient steps).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from drivers.serial.protocol import (
    MAX_HISTORY_PER_FRAME, MILLI, PROTOCOL_VERSION, CommandKind, DeviceKind, EntryState, HistoryEntry, HistoryKind,
    Info, InfoRequest, Message, Nak, NakReason, PumpCommand, PumpFlag, PumpHistory, PumpHistoryRequest, PumpResult,
    PumpStatusReport, PumpStatusRequest, ResultCode, u_to_mu,
)
from drivers.serial.pump_client import delivery_record
from hil.emulators.pty import FramedDeviceEmulator
from safety.commands import DeliveryRecord, DeliveryStatus


class SerialPumpEmulator(FramedDeviceEmulator):
    """A bench insulin pump on a pty.

    Args:
        scheduled_basal_u_per_h: the programmed basal rate delivered when no temporary basal runs.
        reservoir_u: insulin in the reservoir.
        clock: returns the pump's time in absolute minutes; if ``None`` the bench sets it with :meth:`advance_to`.
        start_min: initial pump time when ``clock`` is ``None``.
        name: reported in ``INFO``.
        corruption_probability, seed, tick_s: see :class:`~hil.emulators.pty.PtyEmulator`.
    """

    def __init__(self, *, scheduled_basal_u_per_h: float = 1.0, reservoir_u: float = 300.0,
                 clock: Callable[[], float] | None = None, start_min: float = 0.0,
                 name: str = "twinloop-serial-pump", corruption_probability: float = 0.0, seed: int = 0,
                 tick_s: float = 0.005) -> None:
        super().__init__(corruption_probability=corruption_probability, seed=seed, tick_s=tick_s)
        self.name = name
        self.scheduled_basal_u_per_h = scheduled_basal_u_per_h
        self._clock = clock
        self._now_min = start_min
        self._reservoir_mu = u_to_mu(reservoir_u)
        self._history: list[HistoryEntry] = []
        self._executed: dict[str, int] = {}
        self._tbr: int | None = None  # history index of the running temporary basal / suspension
        self._occluded = False
        self._accrued_to = self._now()
        self._accrued_u = 0.0
        self.battery_low = False
        self.duplicates_refused = 0

    # -- bench API ---------------------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else self._now_min

    def advance_to(self, t_min: float) -> None:
        """Move the pump clock forward to ``t_min`` (only when constructed without ``clock``)."""
        with self.lock:
            if t_min > self._now_min:
                self._now_min = t_min

    def take_delivered_u(self, t_min: float | None = None) -> float:
        """Insulin (U) delivered since the previous call, up to ``t_min`` (default: the pump clock)."""
        with self.lock:
            if t_min is not None:
                self.advance_to(t_min)
            self._accrue(self._now())
            delivered, self._accrued_u = self._accrued_u, 0.0
            return delivered

    def set_occlusion(self, occluded: bool) -> None:
        """Report (or clear) an occlusion: nothing is delivered and insulin commands are refused while it lasts."""
        with self.lock:
            self._accrue(self._now())
            self._occluded = occluded

    def history(self) -> tuple[HistoryEntry, ...]:
        """The pump's delivery history (one entry per executed command)."""
        with self.lock:
            self._accrue(self._now())
            return tuple(self._history)

    def deliveries(self) -> tuple[DeliveryRecord, ...]:
        """The history as the safety kernel's delivery records (all ``CONFIRMED``)."""
        return tuple(delivery_record(e, DeliveryStatus.CONFIRMED) for e in self.history())

    def executed_count(self, command_id: str) -> int:
        """How many history entries carry ``command_id`` (never more than 1)."""
        with self.lock:
            return sum(1 for e in self._history if e.command_id == command_id)

    @property
    def reservoir_u(self) -> float:
        with self.lock:
            return self._reservoir_mu / MILLI

    # -- delivery model (lock held) ----------------------------------------------------------------------------

    def _basal_rate_at(self, t_min: float) -> float:
        if self._tbr is not None:
            e = self._history[self._tbr]
            if e.start_min <= t_min < e.end_min:
                return (e.rate_mu_per_h or 0) / MILLI
        return self.scheduled_basal_u_per_h

    def _accrue(self, now: float) -> None:
        """Account basal insulin from the last accrual to ``now`` (split where a temporary basal ends)."""
        t = self._accrued_to
        if now <= t:
            return
        if self._tbr is not None:
            e = self._history[self._tbr]
            if e.end_min <= now:
                self._accrue_segment(t, max(t, e.end_min))
                t = max(t, e.end_min)
                self._history[self._tbr] = dataclasses.replace(e, state=EntryState.COMPLETE)
                self._tbr = None
        self._accrue_segment(t, now)
        self._accrued_to = now

    def _accrue_segment(self, a: float, b: float) -> None:
        if b <= a or self._occluded:
            return
        amount_u = self._basal_rate_at(a) * (b - a) / 60.0
        amount_u = min(amount_u, self._reservoir_mu / MILLI)
        self._reservoir_mu -= int(amount_u * MILLI)
        self._accrued_u += amount_u

    def _stop_tbr(self, now: float) -> None:
        if self._tbr is None:
            return
        e = self._history[self._tbr]
        delivered_mu = int((e.rate_mu_per_h or 0) * max(0.0, now - e.start_min) / 60.0)
        self._history[self._tbr] = dataclasses.replace(e, end_min=max(now, e.start_min), amount_mu=delivered_mu,
                                                       state=EntryState.CANCELLED)
        self._tbr = None

    def _add(self, command_id: str, kind: HistoryKind, start: float, end: float, amount_mu: int,
             rate_mu_per_h: int | None, state: EntryState) -> HistoryEntry:
        entry = HistoryEntry(len(self._history), command_id, kind, start, end, amount_mu, rate_mu_per_h, state)
        self._history.append(entry)
        self._executed[command_id] = entry.index
        return entry

    def _execute(self, c: PumpCommand) -> PumpResult:
        if c.command_id in self._executed:
            self.duplicates_refused += 1
            return PumpResult(c.command_id, ResultCode.DUPLICATE, self._history[self._executed[c.command_id]])
        now = self._now()
        self._accrue(now)
        if c.kind in (CommandKind.TEMP_BASAL, CommandKind.BOLUS) and self._occluded:
            return PumpResult(c.command_id, ResultCode.REJECTED_OCCLUSION, None)
        if c.kind in (CommandKind.TEMP_BASAL, CommandKind.SUSPEND):
            self._stop_tbr(now)
            rate = c.rate_mu_per_h if c.kind == CommandKind.TEMP_BASAL else 0
            end = now + c.duration_s / 60.0
            entry = self._add(c.command_id, HistoryKind.BASAL, now, end, int(rate * c.duration_s / 3600.0), rate,
                              EntryState.IN_PROGRESS)
            self._tbr = entry.index
            return PumpResult(c.command_id, ResultCode.OK, entry)
        if c.kind == CommandKind.RESUME:
            self._stop_tbr(now)
            entry = self._add(c.command_id, HistoryKind.BASAL, now, now, 0,
                              u_to_mu(self.scheduled_basal_u_per_h), EntryState.COMPLETE)
            return PumpResult(c.command_id, ResultCode.OK, entry)
        if c.kind == CommandKind.BOLUS:
            if c.amount_mu > self._reservoir_mu:
                return PumpResult(c.command_id, ResultCode.REJECTED_RESERVOIR, None)
            self._reservoir_mu -= c.amount_mu
            self._accrued_u += c.amount_mu / MILLI
            entry = self._add(c.command_id, HistoryKind.BOLUS, now, now, c.amount_mu, None, EntryState.COMPLETE)
            return PumpResult(c.command_id, ResultCode.OK, entry)
        # CANCEL_BOLUS: boluses are instantaneous here, so there is never anything left to cancel
        target = self._executed.get(c.target_command_id)
        if target is None or self._history[target].kind != HistoryKind.BOLUS:
            return PumpResult(c.command_id, ResultCode.UNKNOWN_BOLUS, None)
        entry = self._add(c.command_id, HistoryKind.BOLUS, now, now, 0, None, EntryState.COMPLETE)
        return PumpResult(c.command_id, ResultCode.OK, entry)

    def handle_message(self, msg: Message) -> object | None:  # type: ignore[override]
        p = msg.payload
        if isinstance(p, InfoRequest):
            return Info(DeviceKind.PUMP, PROTOCOL_VERSION, self.name)
        if isinstance(p, PumpCommand):
            return self._execute(p)
        if isinstance(p, PumpHistoryRequest):
            self._accrue(self._now())
            count = min(p.max_count, MAX_HISTORY_PER_FRAME)
            if p.command_id:
                index = self._executed.get(p.command_id)
                found = (self._history[index],) if index is not None and index >= p.from_index else ()
                return PumpHistory(len(self._history), found[:count])
            return PumpHistory(len(self._history), tuple(self._history[p.from_index:p.from_index + count]))
        if isinstance(p, PumpStatusRequest):
            now = self._now()
            self._accrue(now)
            flags = PumpFlag.NONE
            if self._occluded:
                flags |= PumpFlag.OCCLUDED
            if self._reservoir_mu <= 0:
                flags |= PumpFlag.RESERVOIR_EMPTY
            if self.battery_low:
                flags |= PumpFlag.BATTERY_LOW
            if self._tbr is not None:
                flags |= PumpFlag.TBR_ACTIVE
                if self._history[self._tbr].rate_mu_per_h == 0:
                    flags |= PumpFlag.SUSPENDED
            basal_mu = 0 if self._occluded else u_to_mu(self._basal_rate_at(now))
            return PumpStatusReport(flags, max(self._reservoir_mu, 0), basal_mu, now)
        if msg.type in (0x06,):  # stray ACK
            return None
        return Nak(NakReason.NOT_SUPPORTED)

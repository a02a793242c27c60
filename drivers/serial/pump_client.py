"""Serial bench pump client: a :class:`~drivers.interfaces.PumpLink` over the framed bench protocol.

- Accepts only :class:`~safety.commands.ApprovedCommand`; its ``command_id`` travels in the frame, so the pump
  executes a retransmitted (or re-sent) command at most once.
- Every command is confirmed by the pump's ``PUMP_RESULT`` within the retry policy; if no answer arrives after all
  attempts the delivery is ``UNCERTAIN``: nothing else is sent (``execute`` raises
  :class:`~drivers.interfaces.DeliveryUncertainError`) until :meth:`SerialPumpClient.reconcile` has read the
  pump's delivery history and resolved it to ``CONFIRMED`` (found) or ``FAILED`` (not there).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from drivers.interfaces import DeliveryUncertainError, DeviceError, DeviceTimeoutError, PumpStatus
from drivers.serial.link import SerialLink
from drivers.serial.protocol import (
    MAX_HISTORY_PER_FRAME, MILLI, BolusKindCode, CommandKind, DeviceKind, HistoryEntry, HistoryKind,
    Info, InfoRequest, PumpCommand, PumpFlag, PumpHistory, PumpHistoryRequest, PumpResult, PumpStatusReport,
    PumpStatusRequest, ResultCode, RetryPolicy, u_to_mu,
)
from safety.deliveries import planned_record
from safety.commands import (
    ApprovedCommand, Bolus, BolusKind, CancelBolus, DeliveryKind, DeliveryRecord, DeliveryStatus, Resume, Suspend,
    TempBasal,
)

log = logging.getLogger(__name__)

_BOLUS_KIND = {BolusKind.AUTOMATIC: BolusKindCode.AUTOMATIC, BolusKind.MEAL: BolusKindCode.MEAL,
               BolusKind.CORRECTION: BolusKindCode.CORRECTION, BolusKind.USER: BolusKindCode.USER}


def delivery_record(entry: HistoryEntry, status: DeliveryStatus) -> DeliveryRecord:
    """A pump history entry as the safety kernel's :class:`DeliveryRecord`."""
    kind = DeliveryKind.BOLUS if entry.kind == HistoryKind.BOLUS else DeliveryKind.BASAL
    rate = None if entry.rate_mu_per_h is None or kind == DeliveryKind.BOLUS else entry.rate_mu_per_h / MILLI
    return DeliveryRecord(entry.command_id, kind, entry.start_min, entry.end_min, entry.amount_mu / MILLI, status,
                          rate)


def encode_command(approved: ApprovedCommand) -> PumpCommand:
    """The wire form of an approved command (amounts rounded down to 0.001 U, durations to whole seconds)."""
    c = approved.command
    cid, t = approved.command_id, approved.issued_at_min
    if isinstance(c, TempBasal):
        return PumpCommand(cid, t, CommandKind.TEMP_BASAL, rate_mu_per_h=u_to_mu(c.rate_u_per_h),
                           duration_s=int(c.duration_min * 60.0))
    if isinstance(c, Bolus):
        return PumpCommand(cid, t, CommandKind.BOLUS, amount_mu=u_to_mu(c.bolus_u), bolus_kind=_BOLUS_KIND[c.kind])
    if isinstance(c, Suspend):
        return PumpCommand(cid, t, CommandKind.SUSPEND, duration_s=int(c.duration_min * 60.0))
    if isinstance(c, Resume):
        return PumpCommand(cid, t, CommandKind.RESUME)
    if isinstance(c, CancelBolus):
        return PumpCommand(cid, t, CommandKind.CANCEL_BOLUS, target_command_id=c.bolus_command_id)
    raise TypeError(f"unsupported insulin command {c!r}")


def _failed(approved: ApprovedCommand) -> DeliveryRecord:
    """The record of a command the pump refused or never executed: nothing delivered."""
    kind = planned_record(approved, DeliveryStatus.FAILED).kind
    t = approved.issued_at_min
    return DeliveryRecord(approved.command_id, kind, t, t, 0.0, DeliveryStatus.FAILED)


class SerialPumpClient:
    """Drive a bench pump over a serial port.

    A command id this client has already seen confirmed is answered from memory without sending anything (the last
    :attr:`CONFIRMED_CACHE` ids); a command id sent by an earlier process is answered ``DUPLICATE`` by the pump.

    Args:
        url: port for :func:`serial.serial_for_url` (device path, pty path, ``socket://``, ``loop://``).
        baudrate: line speed.
        policy: per-request timeout and attempts; a command unanswered after all attempts is ``UNCERTAIN``.
        connect_timeout_s: opening the port.
        serial_kwargs: extra keyword arguments for ``serial_for_url``.
    """

    CONFIRMED_CACHE = 1024

    def __init__(self, url: str, *, baudrate: int = 115200, policy: RetryPolicy = RetryPolicy(),
                 connect_timeout_s: float = 5.0, serial_kwargs: dict[str, Any] | None = None) -> None:
        self.link = SerialLink(url, baudrate=baudrate, policy=policy, serial_kwargs=serial_kwargs)
        self.connect_timeout_s = connect_timeout_s
        self.device_name = ""
        self._uncertain: dict[str, ApprovedCommand] = {}
        self._confirmed: OrderedDict[str, DeliveryRecord] = OrderedDict()
        self.mismatches = 0
        """Confirmed commands whose executed amount or rate differs from the command (should stay 0)."""

    @property
    def pending(self) -> tuple[DeliveryRecord, ...]:
        """Deliveries still ``UNCERTAIN``."""
        return tuple(planned_record(a, DeliveryStatus.UNCERTAIN) for a in self._uncertain.values())

    async def connect(self) -> None:
        """Open the port (reopen if it was open) and check the device is a pump. Raises :class:`DeviceError`."""
        await self.link.open(self.connect_timeout_s)
        info = (await self.link.request(InfoRequest())).payload
        if not isinstance(info, Info) or info.device_kind != DeviceKind.PUMP:
            raise DeviceError(f"device on {self.link.url!r} is not a pump: {info!r}")
        self.device_name = info.name

    async def close(self) -> None:
        await self.link.close()

    async def execute(self, command: ApprovedCommand) -> DeliveryRecord:
        """Send one approved command; return its ``CONFIRMED``, ``UNCERTAIN`` or ``FAILED`` record.

        Raises:
            TypeError: ``command`` is not an :class:`ApprovedCommand`.
            DeliveryUncertainError: an earlier delivery is unreconciled (nothing is sent).
            DeviceError: the port is not open (nothing was sent).

        If the caller cancels the call (an outer timeout) after sending started, the command counts as uncertain.
        """
        if not isinstance(command, ApprovedCommand):
            raise TypeError(f"pump accepts only ApprovedCommand, got {type(command).__name__}")
        if self._uncertain:
            raise DeliveryUncertainError("uncertain delivery pending: reconcile() first", self.pending)
        if command.command_id in self._confirmed:
            return self._confirmed[command.command_id]  # already confirmed: nothing is sent
        wire = encode_command(command)
        if not self.link.is_open:
            raise DeviceError(f"pump link {self.link.url!r} is not open")
        try:
            reply = (await self.link.request(wire)).payload
        except DeviceError as exc:  # timeout after all attempts, or the port failed mid-way: it may have run
            log.warning("pump command %s unconfirmed: %s", command.command_id, exc)
            self._uncertain[command.command_id] = command
            return planned_record(command, DeliveryStatus.UNCERTAIN)
        except asyncio.CancelledError:  # the caller's own timeout: the command may be on the wire
            self._uncertain[command.command_id] = command
            raise
        assert isinstance(reply, PumpResult)
        return self._remember(self._result_record(command, reply))

    def _remember(self, record: DeliveryRecord) -> DeliveryRecord:
        if record.status == DeliveryStatus.CONFIRMED:
            self._confirmed[record.command_id] = record
            while len(self._confirmed) > self.CONFIRMED_CACHE:
                self._confirmed.popitem(last=False)
        return record

    def _result_record(self, command: ApprovedCommand, reply: PumpResult) -> DeliveryRecord:
        if reply.command_id != command.command_id:
            self._uncertain[command.command_id] = command
            log.error("pump answered for %r instead of %r", reply.command_id, command.command_id)
            return planned_record(command, DeliveryStatus.UNCERTAIN)
        if reply.result in (ResultCode.OK, ResultCode.DUPLICATE) and reply.entry is not None:
            self._check_entry(command, reply.entry)
            return delivery_record(reply.entry, DeliveryStatus.CONFIRMED)
        log.warning("pump refused %s: %s", command.command_id, reply.result.name)
        return _failed(command)

    def _check_entry(self, command: ApprovedCommand, entry: HistoryEntry) -> None:
        """The record always reports what the pump says it did; a difference from what was commanded is logged."""
        wire = encode_command(command)
        expected = {CommandKind.BOLUS: (entry.amount_mu, wire.amount_mu),
                    CommandKind.TEMP_BASAL: (entry.rate_mu_per_h, wire.rate_mu_per_h),
                    CommandKind.SUSPEND: (entry.rate_mu_per_h, 0)}.get(wire.kind)
        if expected is not None and expected[0] != expected[1]:
            self.mismatches += 1
            log.error("pump executed %s as %r, commanded %r", command.command_id, entry, wire)

    async def history(self, from_index: int = 0) -> tuple[HistoryEntry, ...]:
        """The pump's delivery history from ``from_index`` on. Raises :class:`DeviceError`."""
        entries: list[HistoryEntry] = []
        nxt = from_index
        page = MAX_HISTORY_PER_FRAME
        failures = 0
        page_policy = RetryPolicy(self.link.policy.timeout_s, min(3, self.link.policy.attempts))
        while True:
            try:
                reply = (await self.link.request(PumpHistoryRequest(nxt, page), policy=page_policy)).payload
            except DeviceTimeoutError:  # long answers suffer most from line noise: ask for fewer entries
                failures += 1
                if failures * page_policy.attempts >= self.link.policy.attempts * 2:
                    raise
                page = 1
                continue
            assert isinstance(reply, PumpHistory)
            got = [e for e in reply.entries if e.index >= nxt]
            entries.extend(got)
            if not got or got[-1].index + 1 >= reply.next_index:
                return tuple(entries)
            nxt = got[-1].index + 1

    async def reconcile(self) -> tuple[DeliveryRecord, ...]:
        """Resolve every ``UNCERTAIN`` delivery from the pump's history.

        Returns the resolved records: ``CONFIRMED`` (the pump's history has it, with the pump's own amounts and
        times) or ``FAILED`` (the history has no entry with that command id, so it was never executed). Empty if
        nothing was pending. Raises :class:`DeviceError` if the history cannot be read (the deliveries stay
        uncertain; call again later).
        """
        if not self._uncertain:
            return ()
        resolved = []
        for command_id, command in list(self._uncertain.items()):
            entry = await self.find(command_id)
            if entry is not None:
                resolved.append(self._remember(delivery_record(entry, DeliveryStatus.CONFIRMED)))
            else:
                resolved.append(_failed(command))
            del self._uncertain[command_id]
        return tuple(resolved)

    async def find(self, command_id: str) -> HistoryEntry | None:
        """The pump's history entry for ``command_id`` (one ``PUMP_HISTORY_REQ`` filtered by id), or None if the pump
        never executed it. Because the line is ordered, the answer reflects every earlier transmission.
        Raises :class:`DeviceError`."""
        reply = (await self.link.request(PumpHistoryRequest(0, 1, command_id))).payload
        assert isinstance(reply, PumpHistory)
        return next((e for e in reply.entries if e.command_id == command_id), None)

    async def status(self) -> PumpStatus:
        """Read the pump's status. Raises :class:`DeviceError`."""
        reply = (await self.link.request(PumpStatusRequest())).payload
        assert isinstance(reply, PumpStatusReport)
        return PumpStatus(
            occluded=bool(reply.flags & PumpFlag.OCCLUDED),
            reservoir_u=None if reply.reservoir_mu is None else reply.reservoir_mu / MILLI,
            reservoir_empty=bool(reply.flags & PumpFlag.RESERVOIR_EMPTY),
            suspended=bool(reply.flags & PumpFlag.SUSPENDED),
            battery_low=bool(reply.flags & PumpFlag.BATTERY_LOW),
            active_basal_u_per_h=None if reply.active_basal_mu_per_h is None else reply.active_basal_mu_per_h / MILLI,
        )


__all__ = ["SerialPumpClient", "delivery_record", "encode_command"]

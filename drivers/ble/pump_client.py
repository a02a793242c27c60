"""Bluetooth insulin pump client (IDS) on bleak: implements :class:`drivers.interfaces.PumpLink`.

Every insulin command is an :class:`safety.commands.ApprovedCommand` and goes through one path:

1. refuse (``DeliveryUncertainError``) while an earlier delivery is still uncertain; return the stored record if the
   same ``command_id`` was already executed (never sent twice);
2. (re)connect with backoff; read the pump's last history sequence number (the *marker*); if any of this fails,
   nothing was sent: the record is ``FAILED``;
3. write the IDS Command CP request and wait for its response within ``response_timeout_s``: a success response
   gives ``CONFIRMED``, an error response or an ATT error (the pump refused the packet) gives ``FAILED``; a timeout,
   a lost response or a dropped link gives ``UNCERTAIN``;
4. :meth:`IdsPumpClient.reconcile` reads the pump's history after the marker and decides: the pump recorded the
   command -> ``CONFIRMED``, it did not -> ``FAILED``. Only then can the next command be sent.

Mapping: TempBasal -> Set TBR (absolute, delivery context "AP controller", ``change`` when a TBR runs); Suspend ->
TBR of 0 U/h for its duration; Resume -> Cancel TBR ("not applicable" = nothing to cancel = done); Bolus -> fast
bolus (reason meal/correction flags); CancelBolus -> Cancel Bolus with the pump bolus ID of the confirmed bolus.
Amounts are sent exactly as approved (the supervisor rounds): one that SFLOAT cannot carry exactly is ``FAILED``.

DeliveryRecord amounts are the commanded amounts; ``status`` says whether they were delivered. Times come from
``clock`` (minutes on the system timeline) at the moment the command is sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from drivers.ble import uuids
from drivers.ble.cgm_client import wall_clock_min
from drivers.ble.connection import DEFAULT_BACKOFF_S, BleConnection, GattRejectedError
from drivers.codecs import ids as d
from drivers.codecs import ids_history as h
from drivers.codecs.cgms import RacpMessage, RacpOp, RacpOperator, RacpResult
from drivers.codecs.e2e import E2ECounter
from drivers.codecs.errors import DecodeError
from drivers.codecs.sfloat import decode_sfloat, encode_sfloat
from drivers.interfaces import DeliveryUncertainError, DeviceError, PumpStatus
from safety.commands import (
    ApprovedCommand, Bolus, BolusKind, CancelBolus, DeliveryKind, DeliveryRecord, DeliveryStatus, Resume, Suspend,
    TempBasal,
)

logger = logging.getLogger(__name__)

__all__ = ["IdsPumpClient", "BleIdsClient"]


@dataclass
class _Pending:
    command: ApprovedCommand
    record: DeliveryRecord
    marker: int
    bolus_id: int | None = None  # for CancelBolus: the pump bolus it targets


def _amount_exact(amount: float) -> bool:
    """True if ``amount`` survives the SFLOAT encoding the command uses (0.01 U resolution up to 20.45 U)."""
    exp = -2 if abs(amount) <= 20.45 else (-1 if abs(amount) <= 204.5 else None)
    try:
        return math.isclose(decode_sfloat(encode_sfloat(amount, exp)), amount, abs_tol=1e-9)
    except ValueError:
        return False


class IdsPumpClient:
    """IDS pump over BLE. See the module docstring.

    Args:
        address: the pump's Bluetooth address.
        backend: bleak backend class (``None`` = platform default).
        clock: minutes on the system timeline (default Unix-epoch minutes).
        connect_timeout_s, io_timeout_s: per connect attempt / per GATT call.
        response_timeout_s: how long to wait for a control-point response.
        backoff_s: reconnect delays; ``max_connect_attempts`` attempts per operation.
        e2e_counter_start: first E2E counter value this client sends (keep it across restarts if possible).
    """

    def __init__(self, address: str, *, backend: type | None = None, clock: Callable[[], float] = wall_clock_min,
                 connect_timeout_s: float = 10.0, io_timeout_s: float = 5.0, response_timeout_s: float = 5.0,
                 backoff_s: Sequence[float] = DEFAULT_BACKOFF_S, max_connect_attempts: int = 5,
                 e2e_counter_start: int = 0) -> None:
        self.address = address
        self.clock = clock
        self.response_timeout_s = response_timeout_s
        self.max_connect_attempts = max_connect_attempts
        self.features: d.IdsFeatures | None = None
        self.e2e = False
        self.decode_errors = 0
        self.last_reason = ""
        self._conn = BleConnection(address, backend=backend, connect_timeout_s=connect_timeout_s,
                                   io_timeout_s=io_timeout_s, backoff_s=backoff_s)
        self._tx = {k: E2ECounter(e2e_counter_start) for k in ("command", "status_reader", "racp")}
        self._rx = {k: E2ECounter() for k in ("command", "status_reader", "racp", "history", "status_changed")}
        self._cmd_q: asyncio.Queue[d.CommandMessage] = asyncio.Queue()
        self._sr_q: asyncio.Queue[d.StatusReaderMessage] = asyncio.Queue()
        self._racp_q: asyncio.Queue[RacpMessage] = asyncio.Queue()
        self._history: list[h.HistoryRecord] = []
        self._lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._done: dict[str, DeliveryRecord] = {}
        self._bolus_ids: dict[str, int] = {}
        self._tbr_until: float | None = None  # when the TBR we believe is running ends (clock minutes)
        self.status_changes: list[d.StatusChangedFlags] = []

    # -------------------------------------------------------------------------------------------- connection
    async def connect(self) -> None:
        """Connect (with backoff, at most ``max_connect_attempts``), read features, subscribe."""
        async with self._lock:
            await self._ensure_connected()

    async def _ensure_connected(self) -> None:
        if self._conn.is_connected:
            return
        await self._conn.connect_with_backoff(self.max_connect_attempts)
        try:
            await self._setup()
        except DeviceError:
            await self._conn.close()
            raise

    async def _setup(self) -> None:
        conn = self._conn
        try:
            self.features, _ = d.decode_ids_features(await conn.read(uuids.IDD_FEATURES))
        except DecodeError as exc:
            raise DeviceError(f"IDD features unreadable: {exc.reason}") from exc
        self.e2e = self.features.e2e
        await conn.subscribe(uuids.IDD_COMMAND_CP, self._on_command)
        await conn.subscribe(uuids.IDD_STATUS_READER_CP, self._on_status_reader)
        await conn.subscribe(uuids.IDD_RACP, self._on_racp)
        await conn.subscribe(uuids.IDD_HISTORY_DATA, self._on_history)
        await conn.subscribe(uuids.IDD_STATUS_CHANGED, self._on_status_changed)
        basal = await self._status_reader(d.SrRequest(d.SrOp.GET_ACTIVE_BASAL_RATE))
        if isinstance(basal, d.ActiveBasalRate):
            self._learn_tbr(basal)

    async def close(self) -> None:
        await self._conn.close()

    @property
    def _tbr_running(self) -> bool:
        return self._tbr_until is not None and self.clock() < self._tbr_until

    def _learn_tbr(self, basal: d.ActiveBasalRate) -> None:
        self._tbr_until = None if basal.tbr is None else self.clock() + basal.tbr.duration_remaining_min

    # -------------------------------------------------------------------------------------------- indications
    def _decode(self, channel: str, fn, data: bytes):  # type: ignore[no-untyped-def]
        try:
            msg, counter = fn(data, e2e=self.e2e)
            if counter is not None:
                self._rx[channel].rx(counter)
            return msg
        except DecodeError as exc:
            self.decode_errors += 1
            logger.warning("pump %s: dropped malformed %s packet: %s", self.address, channel, exc.reason)
            return None

    def _on_command(self, data: bytes) -> None:
        msg = self._decode("command", d.decode_command, data)
        if msg is not None:
            self._cmd_q.put_nowait(msg)

    def _on_status_reader(self, data: bytes) -> None:
        msg = self._decode("status_reader", d.decode_status_reader, data)
        if msg is not None:
            self._sr_q.put_nowait(msg)

    def _on_racp(self, data: bytes) -> None:
        msg = self._decode("racp", h.decode_idd_racp, data)
        if msg is not None:
            self._racp_q.put_nowait(msg)

    def _on_history(self, data: bytes) -> None:
        rec = self._decode("history", h.decode_history_record, data)
        if rec is not None:
            self._history.append(rec)

    def _on_status_changed(self, data: bytes) -> None:
        flags = self._decode("status_changed", d.decode_status_changed, data)
        if flags is not None:
            self.status_changes.append(flags)

    # -------------------------------------------------------------------------------------------- requests
    async def _status_reader(self, msg: d.SrRequest) -> d.StatusReaderMessage:
        _drain(self._sr_q)
        payload = d.encode_status_reader(msg, e2e=self.e2e, counter=self._tx["status_reader"].tx())
        await self._conn.write(uuids.IDD_STATUS_READER_CP, payload)
        reply = await self._conn.wait_reply(self._sr_q, self.response_timeout_s, f"response to {msg.op.name}")
        if isinstance(reply, d.SrResponseCode) and reply.result is not d.SrResult.SUCCESS:
            raise DeviceError(f"pump refused {msg.op.name}: {reply.result.name}")
        return reply

    async def _racp(self, msg: RacpMessage) -> tuple[RacpMessage, list[h.HistoryRecord]]:
        _drain(self._racp_q)
        self._history.clear()
        payload = h.encode_idd_racp(msg, e2e=self.e2e, counter=self._tx["racp"].tx())
        await self._conn.write(uuids.IDD_RACP, payload)
        reply = await self._conn.wait_reply(self._racp_q, self.response_timeout_s, "IDD RACP response")
        records, self._history = self._history, []
        if reply.op is RacpOp.RESPONSE_CODE and reply.result not in (RacpResult.SUCCESS, RacpResult.NO_RECORDS_FOUND):
            raise DeviceError(f"pump refused history request: {reply.result.name if reply.result else reply}")
        return reply, sorted(records, key=lambda r: r.sequence)

    async def _history_marker(self) -> int:
        _, records = await self._racp(RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.LAST))
        return records[-1].sequence if records else 0

    async def history_since(self, sequence: int) -> list[h.HistoryRecord]:
        """History records with sequence number > ``sequence`` (connects if needed)."""
        async with self._lock:
            await self._ensure_connected()
            return await self._history_after(sequence)

    async def _history_after(self, sequence: int) -> list[h.HistoryRecord]:
        req = RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.GREATER_OR_EQUAL, h.RACP_FILTER_SEQUENCE,
                          low=min(sequence + 1, 0xFFFFFFFF))
        _, records = await self._racp(req)
        return [r for r in records if r.sequence > sequence]

    async def _send_command(self, msg: d.CommandMessage) -> d.CommandMessage:
        """Write one Command CP request and wait for its response. GattRejectedError: refused (not executed);
        DeviceError/DeviceTimeoutError otherwise: outcome unknown."""
        _drain(self._cmd_q)
        payload = d.encode_command(msg, e2e=self.e2e, counter=self._tx["command"].tx())
        await self._conn.write(uuids.IDD_COMMAND_CP, payload)
        return await self._conn.wait_reply(self._cmd_q, self.response_timeout_s, "command response")

    # -------------------------------------------------------------------------------------------- PumpLink
    async def execute(self, command: ApprovedCommand) -> DeliveryRecord:
        if not isinstance(command, ApprovedCommand):
            raise TypeError(f"the pump accepts only ApprovedCommand, got {type(command).__name__}")
        if command.command_id in self._done:
            return self._done[command.command_id]
        if self._pending:
            raise DeliveryUncertainError("an earlier delivery is uncertain: reconcile() first",
                                         tuple(p.record for p in self._pending))
        async with self._lock:
            if self._pending:
                raise DeliveryUncertainError("an earlier delivery is uncertain: reconcile() first",
                                             tuple(p.record for p in self._pending))
            now = float(self.clock())
            record = _record_for(command, now, DeliveryStatus.COMMANDED)
            target_bolus: int | None = None
            if isinstance(command.command, CancelBolus):
                target_bolus = self._bolus_ids.get(command.command.bolus_command_id)
                if target_bolus is None:
                    return self._finish(record, DeliveryStatus.FAILED, "no confirmed bolus with that command id")
            for amount in _amounts(command):
                if amount < 0 or not _amount_exact(amount):
                    return self._finish(record, DeliveryStatus.FAILED, f"amount {amount} not representable")
            try:
                await self._ensure_connected()
                marker = await self._history_marker()
            except DeviceError as exc:
                return self._finish(record, DeliveryStatus.FAILED, f"not sent: {exc}")
            msg = self._ids_message(command, target_bolus)
            try:
                reply = await self._send_command(msg)
            except GattRejectedError as exc:
                return self._finish(record, DeliveryStatus.FAILED, f"refused by the pump: {exc}")
            except DeviceError as exc:
                self._pending.append(_Pending(command, _with_status(record, DeliveryStatus.UNCERTAIN), marker,
                                              target_bolus))
                self.last_reason = f"no confirmation: {exc}"
                logger.warning("pump %s: %s is UNCERTAIN: %s", self.address, command.command_id, exc)
                return self._pending[-1].record
            status, reason = self._interpret(command, msg, reply)
            if (status is DeliveryStatus.FAILED and isinstance(msg, d.SetTbr) and isinstance(reply, d.CcResponseCode)
                    and reply.result is d.CcResult.PROCEDURE_NOT_APPLICABLE):
                # the pump refused it as "not applicable": maybe our idea of a running TBR was wrong
                try:
                    basal = await self._status_reader(d.SrRequest(d.SrOp.GET_ACTIVE_BASAL_RATE))
                except DeviceError as exc:
                    return self._finish(record, status, f"{reason}; active basal unreadable: {exc}")
                if isinstance(basal, d.ActiveBasalRate) and (basal.tbr is not None) != msg.change:
                    # our idea of "a TBR is running" was wrong: refresh it and send once more
                    self._learn_tbr(basal)
                    return await self._retry_tbr(command, record, marker)
            return self._finish(record, status, reason)

    async def _retry_tbr(self, command: ApprovedCommand, record: DeliveryRecord, marker: int) -> DeliveryRecord:
        msg = self._ids_message(command, None)
        try:
            reply = await self._send_command(msg)
        except GattRejectedError as exc:
            return self._finish(record, DeliveryStatus.FAILED, f"refused by the pump: {exc}")
        except DeviceError as exc:
            self._pending.append(_Pending(command, _with_status(record, DeliveryStatus.UNCERTAIN), marker))
            self.last_reason = f"no confirmation: {exc}"
            return self._pending[-1].record
        status, reason = self._interpret(command, msg, reply)
        return self._finish(record, status, reason)

    def _ids_message(self, command: ApprovedCommand, target_bolus: int | None) -> d.CommandMessage:
        c = command.command
        if isinstance(c, TempBasal):
            return d.SetTbr(d.TbrType.ABSOLUTE, c.rate_u_per_h, _minutes(c.duration_min),
                            context=d.DeliveryContext.AP_CONTROLLER, change=self._tbr_running)
        if isinstance(c, Suspend):
            return d.SetTbr(d.TbrType.ABSOLUTE, 0.0, _minutes(c.duration_min),
                            context=d.DeliveryContext.AP_CONTROLLER, change=self._tbr_running)
        if isinstance(c, Resume):
            return d.CcSimple(d.CcOp.CANCEL_TBR)
        if isinstance(c, Bolus):
            return d.SetBolus(d.BolusType.FAST, c.bolus_u, reason_correction=c.kind is BolusKind.CORRECTION,
                              reason_meal=c.kind is BolusKind.MEAL)
        if isinstance(c, CancelBolus):
            return d.BolusId(d.CcOp.CANCEL_BOLUS, int(target_bolus or 0))
        raise TypeError(f"unknown insulin command {c!r}")

    def _interpret(self, command: ApprovedCommand, msg: d.CommandMessage,
                   reply: d.CommandMessage) -> tuple[DeliveryStatus, str]:
        c = command.command
        if isinstance(msg, d.SetBolus):
            if isinstance(reply, d.BolusId) and reply.op is d.CcOp.SET_BOLUS_RESPONSE:
                self._bolus_ids[command.command_id] = reply.bolus_id
                return DeliveryStatus.CONFIRMED, f"bolus id {reply.bolus_id}"
        elif isinstance(msg, d.BolusId):
            if isinstance(reply, d.BolusId) and reply.op is d.CcOp.CANCEL_BOLUS_RESPONSE \
                    and reply.bolus_id == msg.bolus_id:
                return DeliveryStatus.CONFIRMED, "bolus cancelled"
        elif isinstance(reply, d.CcResponseCode) and reply.request_op == _op_of(msg):
            if reply.result is d.CcResult.SUCCESS:
                if isinstance(c, (TempBasal, Suspend)):
                    self._tbr_until = self.clock() + _minutes(c.duration_min)
                elif isinstance(c, Resume):
                    self._tbr_until = None
                return DeliveryStatus.CONFIRMED, "success"
            if isinstance(c, Resume) and reply.result is d.CcResult.PROCEDURE_NOT_APPLICABLE:
                self._tbr_until = None
                return DeliveryStatus.CONFIRMED, "no TBR was running"
        if isinstance(reply, d.CcResponseCode):
            return DeliveryStatus.FAILED, f"pump result {reply.result.name}"
        return DeliveryStatus.FAILED, f"unexpected response {reply!r}"

    def _finish(self, record: DeliveryRecord, status: DeliveryStatus, reason: str) -> DeliveryRecord:
        final = _with_status(record, status)
        self._done[record.command_id] = final
        self.last_reason = reason
        logger.info("pump %s: %s %s (%s)", self.address, record.command_id, status.value, reason)
        return final

    @property
    def pending(self) -> tuple[DeliveryRecord, ...]:
        """Deliveries still UNCERTAIN."""
        return tuple(p.record for p in self._pending)

    def adopt_uncertain(self, command: ApprovedCommand, record: DeliveryRecord) -> None:
        """Take over an uncertain command restored from the journal after a restart (this client never sent it).

        It joins the pending list with history marker 0, so the next :meth:`reconcile` looks for it in the pump's
        whole history; nothing new is sent until it is resolved. Matching by type and amount can only err towards
        "delivered" (the safe side for insulin on board). A command already pending is not added twice.
        """
        if any(p.command.command_id == command.command_id for p in self._pending):
            return
        self._pending.append(_Pending(command, _with_status(record, DeliveryStatus.UNCERTAIN), 0))

    async def reconcile(self) -> tuple[DeliveryRecord, ...]:
        """Resolve pending UNCERTAIN deliveries from the pump's history (reconnecting if needed). Raises DeviceError
        (and keeps them pending) if the pump cannot be reached."""
        async with self._lock:
            if not self._pending:
                return ()
            await self._ensure_connected()
            resolved = []
            for p in list(self._pending):
                records = await self._history_after(p.marker)
                status, reason = await self._match(p, records)
                self._pending.remove(p)
                resolved.append(self._finish(p.record, status, f"reconciled: {reason}"))
            return tuple(resolved)

    async def _match(self, p: _Pending, records: list[h.HistoryRecord]) -> tuple[DeliveryStatus, str]:
        c = p.command.command
        if isinstance(c, (TempBasal, Suspend)):
            rate = c.rate_u_per_h if isinstance(c, TempBasal) else 0.0
            for r in records:
                if (r.event is h.HistoryEvent.TBR_STARTED and r.tbr_value is not None
                        and math.isclose(r.tbr_value, rate, abs_tol=0.005)
                        and r.duration_min == _minutes(c.duration_min)):
                    self._tbr_until = p.record.start_min + _minutes(c.duration_min)
                    return DeliveryStatus.CONFIRMED, f"TBR started (history #{r.sequence})"
            return DeliveryStatus.FAILED, "no TBR in the pump history"
        if isinstance(c, Bolus):
            for r in records:
                if r.event is h.HistoryEvent.BOLUS_STARTED and r.amount_u is not None \
                        and math.isclose(r.amount_u, c.bolus_u, abs_tol=0.005):
                    if r.bolus_id is not None:
                        self._bolus_ids[p.command.command_id] = r.bolus_id
                    return DeliveryStatus.CONFIRMED, f"bolus {r.bolus_id} started (history #{r.sequence})"
            return DeliveryStatus.FAILED, "no bolus in the pump history"
        if isinstance(c, Resume):
            if any(r.event is h.HistoryEvent.TBR_ENDED and r.reason is h.EndReason.CANCELLED for r in records):
                self._tbr_until = None
                return DeliveryStatus.CONFIRMED, "TBR cancelled"
            basal = await self._status_reader(d.SrRequest(d.SrOp.GET_ACTIVE_BASAL_RATE))
            if isinstance(basal, d.ActiveBasalRate) and basal.tbr is None:
                self._tbr_until = None
                return DeliveryStatus.CONFIRMED, "no TBR running"
            return DeliveryStatus.FAILED, "TBR still running"
        if isinstance(c, CancelBolus):
            if any(r.event is h.HistoryEvent.BOLUS_ENDED and r.bolus_id == p.bolus_id
                   and r.reason is h.EndReason.CANCELLED for r in records):
                return DeliveryStatus.CONFIRMED, "bolus cancelled"
            return DeliveryStatus.FAILED, "bolus not cancelled"
        return DeliveryStatus.FAILED, "unknown command"

    async def status(self) -> PumpStatus:
        async with self._lock:
            await self._ensure_connected()
            try:
                st, _ = d.decode_ids_status(await self._conn.read(uuids.IDD_STATUS), e2e=self.e2e)
                ann, _ = d.decode_annunciation(await self._conn.read(uuids.IDD_ANNUNCIATION_STATUS), e2e=self.e2e)
            except DecodeError as exc:
                raise DeviceError(f"pump status unreadable: {exc.reason}") from exc
            basal = await self._status_reader(d.SrRequest(d.SrOp.GET_ACTIVE_BASAL_RATE))
        active_type = ann.type if ann is not None and ann.status is not d.AnnunciationStatusValue.CONFIRMED else None
        occluded = active_type == d.AnnunciationType.OCCLUSION
        suspended = st.therapy_state is not d.TherapyControlState.RUN
        rate = basal.effective_rate_u_per_h if isinstance(basal, d.ActiveBasalRate) else None
        if rate is not None and (suspended or occluded):
            rate = 0.0
        reservoir = None if math.isnan(st.reservoir_u) else st.reservoir_u
        return PumpStatus(
            occluded=occluded,
            reservoir_u=reservoir,
            reservoir_empty=(reservoir is not None and reservoir <= 0.0)
            or active_type == d.AnnunciationType.RESERVOIR_EMPTY,
            suspended=suspended,
            battery_low=active_type == d.AnnunciationType.BATTERY_EMPTY,
            active_basal_u_per_h=rate,
        )

    # -------------------------------------------------------------------------------------------- extra reads
    async def read(self, op: d.SrOp) -> d.StatusReaderMessage:
        """One Status Reader request (GET_ACTIVE_BASAL_RATE, GET_DELIVERED_INSULIN, GET_IOB, ...)."""
        async with self._lock:
            await self._ensure_connected()
            return await self._status_reader(d.SrRequest(op))

    async def delivered_insulin(self) -> d.DeliveredInsulin:
        reply = await self.read(d.SrOp.GET_DELIVERED_INSULIN)
        if not isinstance(reply, d.DeliveredInsulin):
            raise DeviceError(f"unexpected reply {reply!r}")
        return reply

    async def active_basal(self) -> d.ActiveBasalRate:
        reply = await self.read(d.SrOp.GET_ACTIVE_BASAL_RATE)
        if not isinstance(reply, d.ActiveBasalRate):
            raise DeviceError(f"unexpected reply {reply!r}")
        return reply

    async def insulin_on_board(self) -> d.InsulinOnBoard:
        reply = await self.read(d.SrOp.GET_IOB)
        if not isinstance(reply, d.InsulinOnBoard):
            raise DeviceError(f"unexpected reply {reply!r}")
        return reply

    async def active_bolus_ids(self) -> tuple[int, ...]:
        reply = await self.read(d.SrOp.GET_ACTIVE_BOLUS_IDS)
        if not isinstance(reply, d.ActiveBolusIds):
            raise DeviceError(f"unexpected reply {reply!r}")
        return reply.bolus_ids

    async def max_bolus(self) -> float:
        async with self._lock:
            await self._ensure_connected()
            reply = await self._send_command(d.CcSimple(d.CcOp.GET_MAX_BOLUS))
        if not isinstance(reply, d.MaxBolus):
            raise DeviceError(f"unexpected reply {reply!r}")
        return reply.max_bolus_u

    async def set_max_bolus(self, max_bolus_u: float) -> None:
        """Configuration (not a delivery): set the pump's own max bolus limit."""
        async with self._lock:
            await self._ensure_connected()
            reply = await self._send_command(d.MaxBolus(d.CcOp.SET_MAX_BOLUS, max_bolus_u))
        if not (isinstance(reply, d.CcResponseCode) and reply.result is d.CcResult.SUCCESS):
            raise DeviceError(f"set max bolus refused: {reply!r}")


BleIdsClient = IdsPumpClient
"""Alias used by the runtime's device factory."""


def _minutes(duration_min: float) -> int:
    """Durations go out in whole minutes, rounded down (never longer than approved)."""
    return max(1, int(math.floor(duration_min + 1e-9)))


def _op_of(msg: d.CommandMessage) -> int:
    if isinstance(msg, d.SetTbr):
        return d.CcOp.SET_TBR
    if isinstance(msg, d.CcSimple):
        return msg.op
    if isinstance(msg, d.SetTherapyControlState):
        return d.CcOp.SET_THERAPY_CONTROL_STATE
    if isinstance(msg, (d.MaxBolus, d.BolusId)):
        return msg.op
    return d.CcOp.SET_BOLUS


def _amounts(command: ApprovedCommand) -> tuple[float, ...]:
    c = command.command
    if isinstance(c, TempBasal):
        return (c.rate_u_per_h,)
    if isinstance(c, Bolus):
        return (c.bolus_u,)
    return ()


def _record_for(command: ApprovedCommand, now: float, status: DeliveryStatus) -> DeliveryRecord:
    c = command.command
    cid = command.command_id
    if isinstance(c, TempBasal):
        dur = _minutes(c.duration_min)
        return DeliveryRecord(cid, DeliveryKind.BASAL, now, now + dur, c.rate_u_per_h * dur / 60.0, status,
                              c.rate_u_per_h)
    if isinstance(c, Suspend):
        return DeliveryRecord(cid, DeliveryKind.BASAL, now, now + _minutes(c.duration_min), 0.0, status, 0.0)
    if isinstance(c, Resume):
        return DeliveryRecord(cid, DeliveryKind.BASAL, now, now, 0.0, status, None)
    if isinstance(c, Bolus):
        return DeliveryRecord(cid, DeliveryKind.BOLUS, now, now, c.bolus_u, status)
    return DeliveryRecord(cid, DeliveryKind.BOLUS, now, now, 0.0, status)


def _with_status(record: DeliveryRecord, status: DeliveryStatus) -> DeliveryRecord:
    return DeliveryRecord(record.command_id, record.kind, record.start_min, record.end_min, record.amount_u, status,
                          record.rate_u_per_h)


def _drain(queue: asyncio.Queue) -> list:  # type: ignore[type-arg]
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items

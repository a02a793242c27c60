"""Emulated Bluetooth insulin pump (Insulin Delivery Service) on bumble.

It executes IDS Command CP requests (TBR absolute/relative, cancel TBR, fast bolus, cancel bolus, max bolus,
therapy control state), answers the Status Reader CP (active basal, delivered insulin, IOB, active bolus IDs,
total daily insulin), keeps a history (project layout, :mod:`drivers.codecs.ids_history`) readable through the IDD
RACP, and reports status and annunciations (occlusion, reservoir low/empty).

Delivery is modelled on a clock in minutes (``clock``; default: the event loop's monotonic time): basal is
delivered continuously at the effective rate (TBR or profile; 0 when stopped, paused or occluded), a bolus either
instantly (default) or at ``bolus_speed_u_per_min``. The bench reads what went into the patient with
:meth:`IdsEmulator.take_delivered_u` / :meth:`IdsEmulator.delivered_since`.

Idempotency: with E2E on, a Command CP packet identical to the previous one (same bytes, same E2E counter) is a
retransmission: the previous response is repeated and nothing is executed again.

Fault hooks (:class:`hil.emulators.ble_link.Faults`), on the Command CP: ``lose_responses`` (execute, never
answer), ``drop_requests`` (neither execute nor answer), ``disconnect_after_request`` (execute, then drop the link),
``corrupt_crc`` (response CRC), ``response_delay_s``; ``drop_notifications`` (history records, status changed),
plus :meth:`IdsEmulator.set_occlusion` and :meth:`disconnect`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from drivers.codecs import ids as d
from drivers.codecs import ids_history as h
from drivers.codecs.cgms import RacpMessage, RacpOp, RacpOperator, RacpResult
from drivers.codecs.e2e import split_e2e
from drivers.codecs.errors import DecodeError
from hil.emulators.ble_link import BumblePeripheral, corrupt

logger = logging.getLogger(__name__)

__all__ = ["IdsEmulator"]

ATT_ERROR_INVALID_CRC = 0x81


@dataclass
class _Tbr:
    tbr_type: d.TbrType
    value: float
    start_min: float
    duration_min: int
    context: d.DeliveryContext | None

    @property
    def end_min(self) -> float:
        return self.start_min + self.duration_min


@dataclass
class _Bolus:
    bolus_id: int
    amount_u: float
    start_min: float
    speed_u_per_min: float | None
    stopped_min: float | None = None

    def delivered_at(self, t: float) -> float:
        if t < self.start_min:  # also for t = -inf
            return 0.0
        if self.stopped_min is not None:
            t = min(t, self.stopped_min)
        if self.speed_u_per_min is None:
            return self.amount_u
        return min(self.amount_u, max(0.0, (t - self.start_min) * self.speed_u_per_min))

    def finished_at(self, t: float) -> bool:
        return self.stopped_min is not None or self.delivered_at(t) >= self.amount_u - 1e-12


class IdsEmulator(BumblePeripheral):
    """An IDS pump peripheral. See the module docstring.

    Args:
        address: Bluetooth address on the virtual link.
        e2e: E2E protection (counter + CRC on every packet).
        basal_u_per_h: the programmed (profile) basal rate.
        reservoir_u: insulin in the reservoir at start.
        max_bolus_u: largest bolus accepted (settable over BLE).
        max_basal_u_per_h: largest TBR accepted.
        bolus_speed_u_per_min: bolus delivery speed; ``None`` = instantaneous.
        clock: minutes; default ``loop.time() / 60``.
        reservoir_low_u: reservoir-low annunciation threshold.
    """

    def __init__(self, address: str | None = None, *, e2e: bool = True, basal_u_per_h: float = 0.8,
                 reservoir_u: float = 200.0, max_bolus_u: float = 10.0, max_basal_u_per_h: float = 5.0,
                 bolus_speed_u_per_min: float | None = None, clock: Callable[[], float] | None = None,
                 reservoir_low_u: float = 20.0, name: str = "twinloop-pump") -> None:
        super().__init__(name, address)
        self.e2e = e2e
        self.profile_basal_u_per_h = basal_u_per_h
        self.reservoir_start_u = reservoir_u
        self.max_bolus_u = max_bolus_u
        self.max_basal_u_per_h = max_basal_u_per_h
        self.bolus_speed_u_per_min = bolus_speed_u_per_min
        self.reservoir_low_u = reservoir_low_u
        self._clock = clock
        self.features = d.IdsFeatures(d.IdsFeatureBits(
            d.IdsFeatureBits.BASAL_RATE | d.IdsFeatureBits.TBR_ABSOLUTE | d.IdsFeatureBits.TBR_RELATIVE
            | d.IdsFeatureBits.FAST_BOLUS | d.IdsFeatureBits.INSULIN_ON_BOARD
            | (d.IdsFeatureBits.E2E_PROTECTION if e2e else 0)))
        self.therapy_state = d.TherapyControlState.RUN
        self.operational_state = d.OperationalState.READY
        self.occluded = False
        self.tbr: _Tbr | None = None
        self.boluses: list[_Bolus] = []
        self.history: list[h.HistoryRecord] = []
        self.executed: list[d.CommandMessage] = []
        """Every Command CP request actually executed (retransmissions are not)."""
        self.duplicates = 0
        self.annunciation: d.Annunciation | None = None
        self._annunciation_ids = 0
        self._next_bolus_id = 1
        self._t0: float | None = None
        self._rate_points: list[tuple[float, float]] = []
        self._last_take_min: float | None = None
        self._tx: dict[str, int] = {}
        self._last_cmd: tuple[int | None, bytes] | None = None
        self._last_cmd_response: bytes | None = None
        self._chars: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------- time & ledger
    def now_min(self) -> float:
        if self._clock is not None:
            return float(self._clock())
        return asyncio.get_running_loop().time() / 60.0 if self._loop is None else self._loop.time() / 60.0

    async def start(self, link: Any) -> None:
        await super().start(link)
        self._t0 = self.now_min()
        self._rate_points = [(self._t0, self.effective_rate_u_per_h())]

    def effective_rate_u_per_h(self) -> float:
        if self.occluded or self.therapy_state is not d.TherapyControlState.RUN:
            return 0.0
        if self.tbr is not None:
            if self.tbr.tbr_type is d.TbrType.ABSOLUTE:
                return self.tbr.value
            return self.profile_basal_u_per_h * self.tbr.value / 100.0
        return self.profile_basal_u_per_h

    def _rate_changed(self, at: float) -> None:
        rate = self.effective_rate_u_per_h()
        if self._rate_points and self._rate_points[-1][0] >= at:
            self._rate_points[-1] = (self._rate_points[-1][0], rate)
        else:
            self._rate_points.append((at, rate))

    def _advance(self) -> float:
        """Apply what happened on its own up to now (TBR expiry); return now."""
        now = self.now_min()
        if self.tbr is not None and self.tbr.end_min <= now:
            end = self.tbr.end_min
            delivered = self._basal_between(self.tbr.start_min, end)
            self.tbr = None
            self._rate_changed(end)
            self._record(h.HistoryEvent.TBR_ENDED, end, reason=h.EndReason.COMPLETED, amount_u=round(delivered, 2))
        return now

    def _basal_between(self, a: float, b: float) -> float:
        total = 0.0
        points = self._rate_points
        for i, (start, rate) in enumerate(points):
            end = points[i + 1][0] if i + 1 < len(points) else b
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += rate * (hi - lo) / 60.0
        return total

    def delivered_between(self, a: float, b: float) -> float:
        """Insulin (U) delivered in the window (a, b] (an instantaneous bolus at ``s`` counts when a < s <= b)."""
        bolus = sum(bo.delivered_at(b) - bo.delivered_at(a) for bo in self.boluses)
        return self._basal_between(a, b) + bolus

    def delivered_since(self, t_min: float) -> float:
        """Insulin (U) delivered after ``t_min`` up to now (basal + bolus)."""
        return self.delivered_between(t_min, self._advance())

    def take_delivered_u(self) -> float:
        """Insulin (U) delivered since the previous call (the first call: since start). For the virtual patient:
        every unit is handed out exactly once."""
        now = self._advance()
        since = self._last_take_min if self._last_take_min is not None else float("-inf")
        self._last_take_min = now
        return self.delivered_between(since, now)

    @property
    def total_bolus_u(self) -> float:
        now = self._advance()
        return sum(bo.delivered_at(now) for bo in self.boluses)

    @property
    def total_basal_u(self) -> float:
        now = self._advance()
        return self._basal_between(self._t0 if self._t0 is not None else now, now)

    @property
    def reservoir_u(self) -> float:
        return max(0.0, self.reservoir_start_u - self.total_bolus_u - self.total_basal_u)

    def active_bolus_ids(self) -> tuple[int, ...]:
        now = self._advance()
        return tuple(bo.bolus_id for bo in self.boluses if not bo.finished_at(now))

    def iob_u(self, dia_min: float = 240.0) -> float:
        """Simple linear-decay insulin on board of the boluses (the pump's own estimate, for the IOB op)."""
        now = self._advance()
        return sum(bo.delivered_at(now) * max(0.0, 1.0 - (now - bo.start_min) / dia_min) for bo in self.boluses)

    # -------------------------------------------------------------------------------------------- bench API
    def set_occlusion(self, occluded: bool) -> None:
        """Occlusion: delivery stops (running boluses end), an occlusion annunciation is raised; clearing it
        resumes the basal (a stopped bolus is not resumed)."""
        def apply() -> None:
            now = self._advance()
            if occluded == self.occluded:
                return
            self.occluded = occluded
            if occluded:
                for bo in self.boluses:
                    if not bo.finished_at(now):
                        bo.stopped_min = now
                        self._record(h.HistoryEvent.BOLUS_ENDED, now, bolus_id=bo.bolus_id,
                                     amount_u=round(bo.delivered_at(now), 2), reason=h.EndReason.STOPPED)
                self._record(h.HistoryEvent.OCCLUSION, now)
                self._annunciate(d.AnnunciationType.OCCLUSION)
            else:
                self.annunciation = None
            self._rate_changed(now)
            self._status_changed(d.StatusChangedFlags.ANNUNCIATION_STATUS | d.StatusChangedFlags.ACTIVE_BASAL_RATE)

        self.call_in_loop(apply)

    def _annunciate(self, a_type: int) -> None:
        self._annunciation_ids += 1
        self.annunciation = d.Annunciation(self._annunciation_ids, a_type, d.AnnunciationStatusValue.PENDING)

    def _record(self, event: h.HistoryEvent, at: float, **fields: Any) -> h.HistoryRecord:
        rec = h.HistoryRecord(len(self.history) + 1, event, max(0, int(at)), **fields)
        self.history.append(rec)
        return rec

    def _status_changed(self, flags: d.StatusChangedFlags) -> None:
        if self.device is None or "status_changed" not in self._chars:
            return
        if self.faults.take("drop_notifications"):
            return
        self.spawn(self.notify(self._chars["status_changed"], self._encode("status_changed",
                   lambda ctr: d.encode_status_changed(flags, e2e=self.e2e, counter=ctr))))

    # -------------------------------------------------------------------------------------------- GATT
    def _encode(self, channel: str, fn: Callable[[int], bytes]) -> bytes:
        counter = self._tx.get(channel, 0)
        self._tx[channel] = (counter + 1) & 0xFF
        return fn(counter)

    def _services(self) -> list[Any]:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        P = Characteristic.Properties
        rd = Characteristic.READABLE
        rw = Characteristic.READABLE | Characteristic.WRITEABLE
        self._chars = {
            "status_changed": Characteristic("2B20", P.READ | P.NOTIFY, rd, CharacteristicValue(
                read=lambda _c: self._encode("status_changed", lambda ctr: d.encode_status_changed(
                    d.StatusChangedFlags(0), e2e=self.e2e, counter=ctr)))),
            "status": Characteristic("2B21", P.READ, rd, CharacteristicValue(read=self._read_status)),
            "annunciation": Characteristic("2B22", P.READ, rd, CharacteristicValue(read=self._read_annunciation)),
            "features": Characteristic("2B23", P.READ, rd, CharacteristicValue(
                read=lambda _c: self._encode("features", lambda ctr: d.encode_ids_features(self.features,
                                                                                          counter=ctr)))),
            "status_reader": Characteristic("2B24", P.WRITE | P.INDICATE, rw,
                                            CharacteristicValue(write=self._write_status_reader)),
            "command": Characteristic("2B25", P.WRITE | P.INDICATE, rw, CharacteristicValue(write=self._write_command)),
            "racp": Characteristic("2B27", P.WRITE | P.INDICATE, rw, CharacteristicValue(write=self._write_racp)),
            "history": Characteristic("2B28", P.NOTIFY, rd, b""),
        }
        return [Service("183A", list(self._chars.values()))]

    def _read_status(self, _connection: Any) -> bytes:
        self._advance()
        status = d.IdsStatus(self.therapy_state, self.operational_state, round(self.reservoir_u, 1), True)
        return self._encode("status", lambda ctr: d.encode_ids_status(status, e2e=self.e2e, counter=ctr))

    def _read_annunciation(self, _connection: Any) -> bytes:
        self._advance()
        if self.annunciation is None and self.reservoir_u <= 0.0:
            self._annunciate(d.AnnunciationType.RESERVOIR_EMPTY)
        elif self.annunciation is None and self.reservoir_u <= self.reservoir_low_u:
            self._annunciate(d.AnnunciationType.RESERVOIR_LOW)
        return self._encode("annunciation", lambda ctr: d.encode_annunciation(self.annunciation, e2e=self.e2e,
                                                                               counter=ctr))

    def _unwrap(self, value: bytes) -> tuple[bytes, int | None]:
        from bumble.att import ATT_Error

        if not self.e2e:
            return bytes(value), None
        try:
            return split_e2e(value)
        except DecodeError:
            raise ATT_Error(ATT_ERROR_INVALID_CRC) from None

    async def _respond(self, channel: str, data: bytes) -> None:
        """Send a control-point response. The request/response faults target the Command CP only."""
        if channel == "command":
            if self.faults.take("disconnect_after_request"):
                await self.disconnect()
                return
            if self.faults.take("lose_responses"):
                logger.debug("fault: command response lost")
                return
            if self.e2e and self.faults.take("corrupt_crc"):
                data = corrupt(data)
            await self.indicate(self._chars[channel], data)
        else:
            await self.indicate(self._chars[channel], data, delay_s=0.0)

    # -------------------------------------------------------------------------------------------- command CP
    def _write_command(self, _connection: Any, value: bytes) -> None:
        payload, counter = self._unwrap(value)
        if self.faults.take("drop_requests"):
            logger.debug("fault: command dropped")
            return
        key = (counter, payload)
        if self.e2e and self._last_cmd == key and self._last_cmd_response is not None:
            self.duplicates += 1  # a retransmission: answer again, do not execute again
            self.spawn(self._respond("command", self._last_cmd_response))
            return
        try:
            msg, _ = d.decode_command(payload)
        except DecodeError as exc:
            op = int.from_bytes(payload[:2], "little") if len(payload) >= 2 else 0
            result = (d.CcResult.OP_CODE_NOT_SUPPORTED if exc.reason.startswith("unknown op code")
                      else d.CcResult.INVALID_OPERAND)
            reply: d.CommandMessage = d.CcResponseCode(op, result)
        else:
            reply = self._execute(msg)
        data = self._encode("command", lambda ctr: d.encode_command(reply, e2e=self.e2e, counter=ctr))
        self._last_cmd, self._last_cmd_response = key, data
        self.spawn(self._respond("command", data))

    def _execute(self, msg: d.CommandMessage) -> d.CommandMessage:
        now = self._advance()

        def code(op: int, result: d.CcResult) -> d.CcResponseCode:
            return d.CcResponseCode(op, result)

        running = self.therapy_state is d.TherapyControlState.RUN
        if isinstance(msg, d.SetTbr):
            if not running:
                return code(d.CcOp.SET_TBR, d.CcResult.PROCEDURE_NOT_APPLICABLE)
            rate = msg.value if msg.tbr_type is d.TbrType.ABSOLUTE else self.profile_basal_u_per_h * msg.value / 100
            if rate > self.max_basal_u_per_h or msg.duration_min > 24 * 60:
                return code(d.CcOp.SET_TBR, d.CcResult.PARAMETER_OUT_OF_RANGE)
            if (self.tbr is not None) != msg.change:  # "change" exactly when a TBR runs
                return code(d.CcOp.SET_TBR, d.CcResult.PROCEDURE_NOT_APPLICABLE)
            if self.occluded:
                return code(d.CcOp.SET_TBR, d.CcResult.PROCEDURE_NOT_COMPLETED)
            self.executed.append(msg)
            if self.tbr is not None:
                self._record(h.HistoryEvent.TBR_ENDED, now, reason=h.EndReason.REPLACED,
                             amount_u=round(self._basal_between(self.tbr.start_min, now), 2))
            self.tbr = _Tbr(msg.tbr_type, msg.value, now, msg.duration_min, msg.context)
            self._rate_changed(now)
            self._record(h.HistoryEvent.TBR_STARTED, now, tbr_type=msg.tbr_type, tbr_value=msg.value,
                         duration_min=msg.duration_min, context=msg.context or d.DeliveryContext.DEVICE)
            self._status_changed(d.StatusChangedFlags.ACTIVE_BASAL_RATE | d.StatusChangedFlags.HISTORY_EVENT_RECORDED)
            return code(d.CcOp.SET_TBR, d.CcResult.SUCCESS)
        if isinstance(msg, d.CcSimple) and msg.op is d.CcOp.CANCEL_TBR:
            if self.tbr is None:
                return code(d.CcOp.CANCEL_TBR, d.CcResult.PROCEDURE_NOT_APPLICABLE)
            self.executed.append(msg)
            delivered = self._basal_between(self.tbr.start_min, now)
            self.tbr = None
            self._rate_changed(now)
            self._record(h.HistoryEvent.TBR_ENDED, now, reason=h.EndReason.CANCELLED, amount_u=round(delivered, 2))
            self._status_changed(d.StatusChangedFlags.ACTIVE_BASAL_RATE | d.StatusChangedFlags.HISTORY_EVENT_RECORDED)
            return code(d.CcOp.CANCEL_TBR, d.CcResult.SUCCESS)
        if isinstance(msg, d.SetBolus):
            if msg.bolus_type is not d.BolusType.FAST or msg.delay_min or msg.template_number is not None:
                return code(d.CcOp.SET_BOLUS, d.CcResult.PARAMETER_OUT_OF_RANGE)
            if not running:
                return code(d.CcOp.SET_BOLUS, d.CcResult.PROCEDURE_NOT_APPLICABLE)
            if msg.fast_u > self.max_bolus_u:
                return code(d.CcOp.SET_BOLUS, d.CcResult.PARAMETER_OUT_OF_RANGE)
            if self.occluded or msg.fast_u > self.reservoir_u:
                return code(d.CcOp.SET_BOLUS, d.CcResult.PROCEDURE_NOT_COMPLETED)
            if len(self.active_bolus_ids()) >= 4:
                return code(d.CcOp.SET_BOLUS, d.CcResult.MAX_BOLUS_NUMBER_REACHED)
            self.executed.append(msg)
            bolus = _Bolus(self._next_bolus_id, msg.fast_u, now, self.bolus_speed_u_per_min)
            self._next_bolus_id = self._next_bolus_id % 0xFFFE + 1
            self.boluses.append(bolus)
            self._record(h.HistoryEvent.BOLUS_STARTED, now, bolus_id=bolus.bolus_id, amount_u=msg.fast_u)
            if bolus.speed_u_per_min is None:
                self._record(h.HistoryEvent.BOLUS_ENDED, now, bolus_id=bolus.bolus_id, amount_u=msg.fast_u,
                             reason=h.EndReason.COMPLETED)
            self._status_changed(d.StatusChangedFlags.HISTORY_EVENT_RECORDED)
            return d.BolusId(d.CcOp.SET_BOLUS_RESPONSE, bolus.bolus_id)
        if isinstance(msg, d.BolusId) and msg.op is d.CcOp.CANCEL_BOLUS:
            target = next((bo for bo in self.boluses if bo.bolus_id == msg.bolus_id and not bo.finished_at(now)),
                          None)
            if target is None:
                return code(d.CcOp.CANCEL_BOLUS, d.CcResult.PROCEDURE_NOT_APPLICABLE)
            self.executed.append(msg)
            target.stopped_min = now
            self._record(h.HistoryEvent.BOLUS_ENDED, now, bolus_id=target.bolus_id,
                         amount_u=round(target.delivered_at(now), 2), reason=h.EndReason.CANCELLED)
            return d.BolusId(d.CcOp.CANCEL_BOLUS_RESPONSE, target.bolus_id)
        if isinstance(msg, d.CcSimple) and msg.op is d.CcOp.GET_MAX_BOLUS:
            return d.MaxBolus(d.CcOp.MAX_BOLUS_RESPONSE, self.max_bolus_u)
        if isinstance(msg, d.MaxBolus) and msg.op is d.CcOp.SET_MAX_BOLUS:
            if msg.max_bolus_u > 25.0:
                return code(d.CcOp.SET_MAX_BOLUS, d.CcResult.PARAMETER_OUT_OF_RANGE)
            self.executed.append(msg)
            self.max_bolus_u = msg.max_bolus_u
            self._record(h.HistoryEvent.MAX_BOLUS_SET, now, amount_u=msg.max_bolus_u)
            return code(d.CcOp.SET_MAX_BOLUS, d.CcResult.SUCCESS)
        if isinstance(msg, d.SetTherapyControlState):
            if msg.state is d.TherapyControlState.UNDETERMINED:
                return code(d.CcOp.SET_THERAPY_CONTROL_STATE, d.CcResult.INVALID_OPERAND)
            self.executed.append(msg)
            self.therapy_state = msg.state
            if msg.state is not d.TherapyControlState.RUN:
                for bo in self.boluses:
                    if not bo.finished_at(now):
                        bo.stopped_min = now
            self._rate_changed(now)
            self._record(h.HistoryEvent.THERAPY_STATE, now, therapy_state=msg.state)
            self._status_changed(d.StatusChangedFlags.THERAPY_CONTROL_STATE)
            return code(d.CcOp.SET_THERAPY_CONTROL_STATE, d.CcResult.SUCCESS)
        op = getattr(msg, "op", None) or d.CcOp.RESPONSE_CODE
        return code(int(op), d.CcResult.OP_CODE_NOT_SUPPORTED)

    # -------------------------------------------------------------------------------------------- status reader
    def _write_status_reader(self, _connection: Any, value: bytes) -> None:
        payload, _counter = self._unwrap(value)
        try:
            msg, _ = d.decode_status_reader(payload)
        except DecodeError as exc:
            op = int.from_bytes(payload[:2], "little") if len(payload) >= 2 else 0
            result = (d.SrResult.OP_CODE_NOT_SUPPORTED if exc.reason.startswith("unknown op code")
                      else d.SrResult.INVALID_OPERAND)
            reply: d.StatusReaderMessage = d.SrResponseCode(op, result)
        else:
            reply = self._read_op(msg)
        data = self._encode("status_reader", lambda ctr: d.encode_status_reader(reply, e2e=self.e2e, counter=ctr))
        self.spawn(self._respond("status_reader", data))

    def _read_op(self, msg: d.StatusReaderMessage) -> d.StatusReaderMessage:
        now = self._advance()
        if not isinstance(msg, d.SrRequest):
            return d.SrResponseCode(d.SrOp.RESPONSE_CODE, d.SrResult.OP_CODE_NOT_SUPPORTED)
        if msg.op is d.SrOp.GET_ACTIVE_BASAL_RATE:
            tbr = None
            if self.tbr is not None:
                tbr = d.TbrInfo(self.tbr.tbr_type, self.tbr.value, self.tbr.duration_min,
                                max(0, int(round(self.tbr.end_min - now))))
            return d.ActiveBasalRate(1, self.profile_basal_u_per_h, tbr, None, self.tbr.context if self.tbr else None)
        if msg.op is d.SrOp.GET_DELIVERED_INSULIN:
            return d.DeliveredInsulin(round(self.total_bolus_u, 4), round(self.total_basal_u, 4))
        if msg.op is d.SrOp.GET_IOB:
            return d.InsulinOnBoard(round(self.iob_u(), 2))
        if msg.op is d.SrOp.GET_ACTIVE_BOLUS_IDS:
            return d.ActiveBolusIds(self.active_bolus_ids())
        if msg.op is d.SrOp.GET_TOTAL_DAILY_INSULIN:
            bolus, basal = self.total_bolus_u, self.total_basal_u
            return d.TotalDailyInsulin(round(bolus, 2), round(basal, 2), round(bolus + basal, 2))
        if msg.op is d.SrOp.RESET_STATUS:
            return d.SrResponseCode(d.SrOp.RESET_STATUS, d.SrResult.SUCCESS)
        return d.SrResponseCode(msg.op, d.SrResult.OP_CODE_NOT_SUPPORTED)

    # -------------------------------------------------------------------------------------------- history RACP
    def _write_racp(self, _connection: Any, value: bytes) -> None:
        payload, _counter = self._unwrap(value)
        self.spawn(self._handle_racp(payload))

    async def _handle_racp(self, payload: bytes) -> None:
        self._advance()
        try:
            msg, _ = h.decode_idd_racp(payload)
        except DecodeError as exc:
            op = payload[0] if payload else 0
            result = RacpResult.OP_CODE_NOT_SUPPORTED if exc.reason.startswith("unknown op code") else \
                RacpResult.INVALID_OPERAND
            await self._racp_reply(RacpMessage(RacpOp.RESPONSE_CODE, request_op=op, result=result))
            return
        if msg.filter_type is not None and msg.filter_type != h.RACP_FILTER_SEQUENCE:
            await self._racp_reply(RacpMessage(RacpOp.RESPONSE_CODE, request_op=msg.op,
                                               result=RacpResult.FILTER_NOT_SUPPORTED))
            return
        selected = self._select(msg)
        if msg.op is RacpOp.REPORT_RECORDS:
            for rec in selected:
                if self.faults.take("drop_notifications"):
                    continue
                data = self._encode("history", lambda ctr, rec=rec: h.encode_history_record(rec, e2e=self.e2e,
                                                                                            counter=ctr))
                await self.notify(self._chars["history"], data)
            result = RacpResult.SUCCESS if selected else RacpResult.NO_RECORDS_FOUND
            await self._racp_reply(RacpMessage(RacpOp.RESPONSE_CODE, request_op=msg.op, result=result))
        elif msg.op is RacpOp.REPORT_NUMBER:
            await self._racp_reply(RacpMessage(RacpOp.NUMBER_RESPONSE, count=len(selected)))
        elif msg.op is RacpOp.ABORT:
            await self._racp_reply(RacpMessage(RacpOp.RESPONSE_CODE, request_op=msg.op, result=RacpResult.SUCCESS))
        else:  # deleting pump history is not allowed
            await self._racp_reply(RacpMessage(RacpOp.RESPONSE_CODE, request_op=msg.op,
                                               result=RacpResult.OP_CODE_NOT_SUPPORTED))

    def _select(self, msg: RacpMessage) -> list[h.HistoryRecord]:
        recs = self.history
        op = msg.operator
        if op is RacpOperator.ALL:
            return list(recs)
        if op is RacpOperator.FIRST:
            return recs[:1]
        if op is RacpOperator.LAST:
            return recs[-1:]
        low = msg.low if msg.low is not None else 0
        high = msg.high if msg.high is not None else 0xFFFFFFFF
        if op is RacpOperator.LESS_OR_EQUAL:
            low = 0
        elif op is RacpOperator.GREATER_OR_EQUAL:
            high = 0xFFFFFFFF
        return [r for r in recs if low <= r.sequence <= high]

    async def _racp_reply(self, reply: RacpMessage) -> None:
        data = self._encode("racp", lambda ctr: h.encode_idd_racp(reply, e2e=self.e2e, counter=ctr))
        await self._respond("racp", data)

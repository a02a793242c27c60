"""Emulated Bluetooth CGM sensor (Continuous Glucose Monitoring Service) on bumble.

The virtual patient (or a test) feeds it: ``cgm.push_glucose(offset_min, glucose_mg_dl)`` stores a record (time
offset = minutes since session start) and notifies it to a subscribed collector if a session runs. Records are kept
so a collector can back-fill through RACP after a gap. The emulator does not generate readings on its own: the
communication interval set through SOCP is stored and reported, the bench decides when readings happen.

Options: E2E-CRC on/off, annunciation octet order, interval, sensor type/location. Fault hooks: see
:class:`hil.emulators.ble_link.Faults` (drop notifications, corrupt CRCs, lose/delay control-point responses,
disconnect).
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.codecs import cgms as c
from drivers.codecs.e2e import check_crc
from drivers.codecs.errors import DecodeError
from hil.emulators.ble_link import BumblePeripheral, corrupt

logger = logging.getLogger(__name__)

__all__ = ["CgmsEmulator"]

_RESPONSE_OPS = {
    c.SocpOp.GET_INTERVAL: c.SocpOp.INTERVAL_RESPONSE,
    c.SocpOp.GET_CALIBRATION: c.SocpOp.CALIBRATION_RESPONSE,
    c.SocpOp.GET_PATIENT_HIGH: c.SocpOp.PATIENT_HIGH_RESPONSE,
    c.SocpOp.GET_PATIENT_LOW: c.SocpOp.PATIENT_LOW_RESPONSE,
    c.SocpOp.GET_HYPO: c.SocpOp.HYPO_RESPONSE,
    c.SocpOp.GET_HYPER: c.SocpOp.HYPER_RESPONSE,
    c.SocpOp.GET_RATE_DECREASE: c.SocpOp.RATE_DECREASE_RESPONSE,
    c.SocpOp.GET_RATE_INCREASE: c.SocpOp.RATE_INCREASE_RESPONSE,
}
_SET_LEVEL = {c.SocpOp.SET_PATIENT_HIGH, c.SocpOp.SET_PATIENT_LOW, c.SocpOp.SET_HYPO, c.SocpOp.SET_HYPER,
              c.SocpOp.SET_RATE_DECREASE, c.SocpOp.SET_RATE_INCREASE}


class CgmsEmulator(BumblePeripheral):
    """A CGMS peripheral.

    Args:
        address: Bluetooth address on the virtual link (default: a fresh one).
        e2e: support E2E-CRC (feature bit 12; every CGMS packet except RACP carries a CRC).
        octet_order: annunciation octet order on the wire.
        interval_min: initial communication interval (minutes).
        session_running: start with a session already running.
        session_start: Session Start Time reported until a collector writes one.
        run_time_h: Session Run Time (hours).
        features: extra feature bits (trend and quality are always set).
    """

    def __init__(self, address: str | None = None, *, e2e: bool = False,
                 octet_order: c.OctetOrder = c.OctetOrder.STATUS_FIRST, interval_min: int = 5,
                 session_running: bool = False,
                 session_start: c.SessionStartTime = c.SessionStartTime(2026, 1, 1, 0, 0, 0),
                 run_time_h: int = 336, features: c.CgmFeatureBits = c.CgmFeatureBits(0),
                 name: str = "twinloop-cgm") -> None:
        super().__init__(name, address)
        self.e2e = e2e
        self.octet_order = octet_order
        self.interval_min = interval_min
        self.session_running = session_running
        self.session_start = session_start
        self.run_time_h = run_time_h
        bits = features | c.CgmFeatureBits.TREND | c.CgmFeatureBits.QUALITY | c.CgmFeatureBits.CALIBRATION
        if e2e:
            bits |= c.CgmFeatureBits.E2E_CRC
        self.feature = c.CgmFeature(c.CgmFeatureBits(bits))
        self.records: list[c.CgmMeasurement] = []
        self.status = c.StatusOctet(0) if session_running else c.StatusOctet.SESSION_STOPPED
        self.cal_temp = c.CalTempOctet(0)
        self.warning = c.WarningOctet(0)
        self.levels: dict[c.SocpOp, float] = {}
        self.calibrations: list[c.CalibrationRecord] = []
        self.socp_log: list[c.SocpMessage] = []
        self.racp_log: list[c.RacpMessage] = []
        self.notified: list[int] = []
        """Time offsets actually notified live (for tests)."""
        self._chars: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------- GATT
    def _services(self) -> list[Any]:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        P = Characteristic.Properties
        rd = Characteristic.READABLE
        rw = Characteristic.READABLE | Characteristic.WRITEABLE
        self._chars = {
            "measurement": Characteristic("2AA7", P.NOTIFY, rd, b""),
            "feature": Characteristic("2AA8", P.READ, rd, CharacteristicValue(read=lambda _c: c.encode_feature(
                self.feature))),
            "status": Characteristic("2AA9", P.READ, rd, CharacteristicValue(read=self._read_status)),
            "start_time": Characteristic("2AAA", P.READ | P.WRITE, rw, CharacteristicValue(
                read=lambda _c: c.encode_session_start_time(self.session_start, e2e=self.e2e),
                write=self._write_start_time)),
            "run_time": Characteristic("2AAB", P.READ, rd, CharacteristicValue(
                read=lambda _c: c.encode_session_run_time(self.run_time_h, e2e=self.e2e))),
            "racp": Characteristic("2A52", P.WRITE | P.INDICATE, rw, CharacteristicValue(write=self._write_racp)),
            "socp": Characteristic("2AAC", P.WRITE | P.INDICATE, rw, CharacteristicValue(write=self._write_socp)),
        }
        return [Service("181F", list(self._chars.values()))]

    def _read_status(self, _connection: Any) -> bytes:
        offset = self.records[-1].time_offset_min if self.records else 0
        return c.encode_status(c.CgmStatus(offset, self.status, self.cal_temp, self.warning), e2e=self.e2e,
                               octet_order=self.octet_order)

    def _check_crc(self, value: bytes) -> bytes:
        from bumble.att import ATT_Error

        if not self.e2e:
            return bytes(value)
        if len(value) < 3:
            raise ATT_Error(c.ATT_ERROR_MISSING_CRC)
        try:
            return check_crc(value)
        except DecodeError:
            raise ATT_Error(c.ATT_ERROR_INVALID_CRC) from None

    def _write_start_time(self, _connection: Any, value: bytes) -> None:
        from bumble.att import ATT_Error, ErrorCode

        body = self._check_crc(value)
        try:
            self.session_start = c.decode_session_start_time(body)
        except DecodeError:
            raise ATT_Error(ErrorCode.OUT_OF_RANGE) from None

    # -------------------------------------------------------------------------------------------- bench API
    def push_glucose(self, offset_min: int, glucose_mg_dl: float, *, status: c.StatusOctet | None = None,
                     cal_temp: c.CalTempOctet | None = None, warning: c.WarningOctet | None = None,
                     trend_mg_dl_per_min: float | None = None, quality_pct: float | None = None) -> int:
        """Store a reading at ``offset_min`` (minutes since session start, truncated to whole minutes) and notify
        it if a session runs. Returns the time offset (the reading's ``sequence`` at the collector).

        Synchronous; safe to call from the emulator's loop or from another thread. Offsets must increase.
        """
        m = c.CgmMeasurement(float(glucose_mg_dl), int(offset_min), status, cal_temp, warning, trend_mg_dl_per_min,
                             quality_pct)

        def apply() -> None:
            if self.records and m.time_offset_min <= self.records[-1].time_offset_min:
                raise ValueError(f"offset {m.time_offset_min} not after {self.records[-1].time_offset_min}")
            self.records.append(m)
            if self.session_running and self.device is not None:
                self.spawn(self._notify_live(m))

        self.call_in_loop(apply)
        return m.time_offset_min

    async def _notify_live(self, m: c.CgmMeasurement) -> None:
        if self.faults.take("drop_notifications"):
            logger.debug("fault: dropped notification of offset %d", m.time_offset_min)
            return
        data = c.encode_measurement(m, e2e=self.e2e, octet_order=self.octet_order)
        if self.faults.take("corrupt_crc"):
            data = corrupt(data)
        if self.connected:
            self.notified.append(m.time_offset_min)
        await self.notify(self._chars["measurement"], data)

    def set_status(self, status: c.StatusOctet = c.StatusOctet(0), cal_temp: c.CalTempOctet = c.CalTempOctet(0),
                   warning: c.WarningOctet = c.WarningOctet(0)) -> None:
        """Set the annunciation reported by CGM Status."""
        self.status, self.cal_temp, self.warning = status, cal_temp, warning

    # -------------------------------------------------------------------------------------------- SOCP
    def _write_socp(self, _connection: Any, value: bytes) -> None:
        body = self._check_crc(value)
        if self.faults.take("drop_requests"):
            return
        self.spawn(self._handle_socp(body))

    async def _handle_socp(self, body: bytes) -> None:
        try:
            msg = c.decode_socp(body)
        except DecodeError as exc:
            op = body[0] if body else 0
            result = (c.SocpResult.OP_CODE_NOT_SUPPORTED if exc.reason.startswith("unknown op code")
                      else c.SocpResult.INVALID_OPERAND)
            await self._socp_reply(c.SocpMessage(c.SocpOp.RESPONSE_CODE, request_op=op, result=result))
            return
        self.socp_log.append(msg)
        reply: c.SocpMessage
        ok = c.SocpMessage(c.SocpOp.RESPONSE_CODE, request_op=msg.op, result=c.SocpResult.SUCCESS)
        if msg.op is c.SocpOp.SET_INTERVAL:
            self.interval_min = int(msg.interval_min or 0)
            reply = ok
        elif msg.op is c.SocpOp.GET_INTERVAL:
            reply = c.SocpMessage(c.SocpOp.INTERVAL_RESPONSE, interval_min=self.interval_min)
        elif msg.op is c.SocpOp.START_SESSION:
            self.session_running = True
            self.status &= ~c.StatusOctet.SESSION_STOPPED
            reply = ok
        elif msg.op is c.SocpOp.STOP_SESSION:
            self.session_running = False
            self.status |= c.StatusOctet.SESSION_STOPPED
            reply = ok
        elif msg.op is c.SocpOp.SET_CALIBRATION and msg.calibration is not None:
            self.calibrations.append(msg.calibration)
            reply = ok
        elif msg.op is c.SocpOp.GET_CALIBRATION:
            if not self.calibrations:
                reply = c.SocpMessage(c.SocpOp.RESPONSE_CODE, request_op=msg.op,
                                      result=c.SocpResult.PARAMETER_OUT_OF_RANGE)
            else:
                reply = c.SocpMessage(c.SocpOp.CALIBRATION_RESPONSE, calibration=self.calibrations[-1])
        elif msg.op in _SET_LEVEL:
            self.levels[msg.op] = float(msg.level or 0.0)
            reply = ok
        elif msg.op in _RESPONSE_OPS:
            set_op = c.SocpOp(msg.op - 1)
            reply = c.SocpMessage(_RESPONSE_OPS[msg.op], level=self.levels.get(set_op, 0.0))
        elif msg.op is c.SocpOp.RESET_DEVICE_SPECIFIC_ALERT:
            self.status &= ~c.StatusOctet.DEVICE_SPECIFIC_ALERT
            reply = ok
        else:  # responses written by a confused collector
            reply = c.SocpMessage(c.SocpOp.RESPONSE_CODE, request_op=msg.op,
                                  result=c.SocpResult.OP_CODE_NOT_SUPPORTED)
        await self._socp_reply(reply)

    async def _socp_reply(self, reply: c.SocpMessage) -> None:
        if self.faults.take("lose_responses"):
            return
        data = c.encode_socp(reply, e2e=self.e2e)
        if self.e2e and self.faults.take("corrupt_crc"):
            data = corrupt(data)
        await self.indicate(self._chars["socp"], data)

    # -------------------------------------------------------------------------------------------- RACP
    def _write_racp(self, _connection: Any, value: bytes) -> None:
        if self.faults.take("drop_requests"):
            return
        self.spawn(self._handle_racp(bytes(value)))

    def _select(self, msg: c.RacpMessage) -> list[c.CgmMeasurement]:
        recs = self.records
        op = msg.operator
        if op is c.RacpOperator.ALL:
            return list(recs)
        if op is c.RacpOperator.FIRST:
            return recs[:1]
        if op is c.RacpOperator.LAST:
            return recs[-1:]
        low = msg.low if msg.low is not None else 0
        high = msg.high if msg.high is not None else 0xFFFF
        if op is c.RacpOperator.LESS_OR_EQUAL:
            low = 0
        elif op is c.RacpOperator.GREATER_OR_EQUAL:
            high = 0xFFFF
        return [r for r in recs if low <= r.time_offset_min <= high]

    async def _handle_racp(self, data: bytes) -> None:
        try:
            msg = c.decode_racp(data)
        except DecodeError as exc:
            op = data[0] if data else 0
            result = (c.RacpResult.OP_CODE_NOT_SUPPORTED if exc.reason.startswith("unknown op code")
                      else c.RacpResult.INVALID_OPERATOR if "operator" in exc.reason else c.RacpResult.INVALID_OPERAND)
            await self._racp_reply(c.RacpMessage(c.RacpOp.RESPONSE_CODE, request_op=op, result=result))
            return
        self.racp_log.append(msg)
        if msg.filter_type is not None and msg.filter_type != c.RACP_FILTER_TIME_OFFSET:
            await self._racp_reply(c.RacpMessage(c.RacpOp.RESPONSE_CODE, request_op=msg.op,
                                                 result=c.RacpResult.FILTER_NOT_SUPPORTED))
            return
        if msg.op is c.RacpOp.REPORT_RECORDS:
            selected = self._select(msg)
            for rec in selected:
                if self.faults.take("drop_notifications"):
                    continue
                await self.notify(self._chars["measurement"],
                                  c.encode_measurement(rec, e2e=self.e2e, octet_order=self.octet_order))
            result = c.RacpResult.SUCCESS if selected else c.RacpResult.NO_RECORDS_FOUND
            await self._racp_reply(c.RacpMessage(c.RacpOp.RESPONSE_CODE, request_op=msg.op, result=result))
        elif msg.op is c.RacpOp.REPORT_NUMBER:
            await self._racp_reply(c.RacpMessage(c.RacpOp.NUMBER_RESPONSE, count=len(self._select(msg))))
        elif msg.op is c.RacpOp.DELETE_RECORDS:
            doomed = {id(r) for r in self._select(msg)}
            self.records = [r for r in self.records if id(r) not in doomed]
            result = c.RacpResult.SUCCESS if doomed else c.RacpResult.NO_RECORDS_FOUND
            await self._racp_reply(c.RacpMessage(c.RacpOp.RESPONSE_CODE, request_op=msg.op, result=result))
        elif msg.op is c.RacpOp.ABORT:
            await self._racp_reply(c.RacpMessage(c.RacpOp.RESPONSE_CODE, request_op=msg.op,
                                                 result=c.RacpResult.SUCCESS))
        else:
            await self._racp_reply(c.RacpMessage(c.RacpOp.RESPONSE_CODE, request_op=msg.op,
                                                 result=c.RacpResult.OP_CODE_NOT_SUPPORTED))

    async def _racp_reply(self, reply: c.RacpMessage) -> None:
        if self.faults.take("lose_responses"):
            return
        await self.indicate(self._chars["racp"], c.encode_racp(reply))

"""Bluetooth Continuous Glucose Monitoring Service (0x181F) codecs: bytes in, typed values out.

Layouts are those of ``shared/reference/standards.md``. All multi-byte integers are little-endian. Every decoder
raises only :class:`DecodeError`. Encoders are used by the emulated sensor and by the collector for requests.

Sensor Status Annunciation octet order differs between open implementations (see :class:`OctetOrder`); it is an
option of every function that reads or writes annunciation octets. Default: Status, Cal/Temp, Warning.

E2E-CRC (CRC-16/MCRF4XX) is optional everywhere (``e2e=True`` when the sensor's feature bit 12 is set). The RACP
characteristic is generic and carries no E2E-CRC.
"""

from __future__ import annotations

import calendar
import enum
import math
from dataclasses import dataclass

from drivers.codecs.e2e import Reader, append_crc, check_crc
from drivers.codecs.errors import DecodeError
from drivers.codecs.sfloat import pack_sfloat

__all__ = [
    "OctetOrder", "StatusOctet", "CalTempOctet", "WarningOctet", "CgmFeatureBits",
    "CgmMeasurement", "decode_measurements", "encode_measurement", "encode_measurements",
    "CgmFeature", "decode_feature", "encode_feature",
    "CgmStatus", "decode_status", "encode_status",
    "SessionStartTime", "decode_session_start_time", "encode_session_start_time",
    "decode_session_run_time", "encode_session_run_time",
    "SocpOp", "SocpResult", "CalibrationRecord", "SocpMessage", "decode_socp", "encode_socp",
    "RacpOp", "RacpOperator", "RacpResult", "RacpMessage", "decode_racp", "encode_racp",
    "RACP_FILTER_TIME_OFFSET",
    "ATT_ERROR_MISSING_CRC", "ATT_ERROR_INVALID_CRC",
]

ATT_ERROR_MISSING_CRC = 0x80
ATT_ERROR_INVALID_CRC = 0x81


class OctetOrder(enum.Enum):
    """Order of the (present) annunciation octets on the wire."""

    STATUS_FIRST = "status_first"
    """Status, Cal/Temp, Warning: nRF Connect SDK cgms.c, the SIG XML's 24-bit LSO-first field. Default."""
    WARNING_FIRST = "warning_first"
    """Warning, Cal/Temp, Status: nRF5 SDK, Nordic's Kotlin BLE library."""


class StatusOctet(enum.IntFlag):
    SESSION_STOPPED = 0x01
    BATTERY_LOW = 0x02
    SENSOR_TYPE_INCORRECT = 0x04
    SENSOR_MALFUNCTION = 0x08
    DEVICE_SPECIFIC_ALERT = 0x10
    GENERAL_DEVICE_FAULT = 0x20


class CalTempOctet(enum.IntFlag):
    TIME_SYNC_REQUIRED = 0x01
    CALIBRATION_NOT_ALLOWED = 0x02
    CALIBRATION_RECOMMENDED = 0x04
    CALIBRATION_REQUIRED = 0x08
    TEMPERATURE_TOO_HIGH = 0x10
    TEMPERATURE_TOO_LOW = 0x20


class WarningOctet(enum.IntFlag):
    BELOW_PATIENT_LOW = 0x01
    ABOVE_PATIENT_HIGH = 0x02
    BELOW_HYPO = 0x04
    ABOVE_HYPER = 0x08
    RATE_DECREASE_EXCEEDED = 0x10
    RATE_INCREASE_EXCEEDED = 0x20
    BELOW_DEVICE_RANGE = 0x40
    ABOVE_DEVICE_RANGE = 0x80


class CgmFeatureBits(enum.IntFlag):
    CALIBRATION = 1 << 0
    PATIENT_HIGH_LOW_ALERTS = 1 << 1
    HYPO_ALERTS = 1 << 2
    HYPER_ALERTS = 1 << 3
    RATE_ALERTS = 1 << 4
    DEVICE_SPECIFIC_ALERT = 1 << 5
    SENSOR_MALFUNCTION_DETECTION = 1 << 6
    TEMPERATURE_HIGH_LOW = 1 << 7
    RESULT_HIGH_LOW = 1 << 8
    LOW_BATTERY = 1 << 9
    SENSOR_TYPE_ERROR = 1 << 10
    GENERAL_DEVICE_FAULT = 1 << 11
    E2E_CRC = 1 << 12
    MULTIPLE_BOND = 1 << 13
    MULTIPLE_SESSIONS = 1 << 14
    TREND = 1 << 15
    QUALITY = 1 << 16


# measurement flags
_F_TREND = 0x01
_F_QUALITY = 0x02
_F_WARNING = 0x20
_F_CAL_TEMP = 0x40
_F_STATUS = 0x80


def _crc_tail(data: bytes, e2e: bool, what: str) -> bytes:
    return check_crc(data, what) if e2e else bytes(data)


def _finish(payload: bytes, e2e: bool) -> bytes:
    return append_crc(payload) if e2e else bytes(payload)


def _octets_in_order(order: OctetOrder) -> tuple[str, str, str]:
    return ("status", "cal_temp", "warning") if order is OctetOrder.STATUS_FIRST else ("warning", "cal_temp", "status")


_OCTET_TYPE = {"status": StatusOctet, "cal_temp": CalTempOctet, "warning": WarningOctet}
_OCTET_FLAG = {"status": _F_STATUS, "cal_temp": _F_CAL_TEMP, "warning": _F_WARNING}


# ---------------------------------------------------------------------------------------------------- measurement
@dataclass(frozen=True, slots=True)
class CgmMeasurement:
    """One CGM Measurement record.

    Attributes:
        glucose_mg_dl: glucose (mg/dL); NaN/inf for SFLOAT special values.
        time_offset_min: minutes since the Session Start Time (u16).
        status, cal_temp, warning: annunciation octets, ``None`` when absent from the record.
        trend_mg_dl_per_min: rate of change if present.
        quality_pct: quality (%) if present.
    """

    glucose_mg_dl: float
    time_offset_min: int
    status: StatusOctet | None = None
    cal_temp: CalTempOctet | None = None
    warning: WarningOctet | None = None
    trend_mg_dl_per_min: float | None = None
    quality_pct: float | None = None


def _decode_one(rec: bytes, e2e: bool, order: OctetOrder) -> CgmMeasurement:
    body = _crc_tail(rec, e2e, "CGM measurement")
    r = Reader(body, "CGM measurement")
    r.u8("size")
    flags = r.u8("flags")
    glucose = r.sfloat("glucose")
    offset = r.u16("time offset")
    octets: dict[str, int | None] = {"status": None, "cal_temp": None, "warning": None}
    for name in _octets_in_order(order):
        if flags & _OCTET_FLAG[name]:
            octets[name] = _OCTET_TYPE[name](r.u8(name))
    trend = r.sfloat("trend") if flags & _F_TREND else None
    quality = r.sfloat("quality") if flags & _F_QUALITY else None
    r.end()
    if glucose < 0:
        raise DecodeError(f"impossible value: negative glucose {glucose}", rec)
    if quality is not None and not math.isnan(quality) and not 0.0 <= quality <= 100.0:
        raise DecodeError(f"impossible value: quality {quality} % outside 0..100", rec)
    return CgmMeasurement(glucose, offset, octets["status"], octets["cal_temp"],  # type: ignore[arg-type]
                          octets["warning"], trend, quality)  # type: ignore[arg-type]


def _record_size(flags: int, e2e: bool) -> int:
    size = 6
    size += sum(1 for f in (_F_STATUS, _F_CAL_TEMP, _F_WARNING) if flags & f)
    size += 2 if flags & _F_TREND else 0
    size += 2 if flags & _F_QUALITY else 0
    return size + (2 if e2e else 0)


def decode_measurements(data: bytes, *, e2e: bool = False,
                        octet_order: OctetOrder = OctetOrder.STATUS_FIRST) -> tuple[CgmMeasurement, ...]:
    """All records of one CGM Measurement notification (one or more, each starting with its size)."""
    data = bytes(data)
    if not data:
        raise DecodeError("short: empty CGM measurement notification", data)
    records = []
    pos = 0
    while pos < len(data):
        size = data[pos]
        if pos + 1 >= len(data):
            raise DecodeError("short: CGM measurement record without flags", data)
        flags = data[pos + 1]
        expected = _record_size(flags, e2e)
        if size != expected:
            raise DecodeError(f"impossible value: record size {size} != {expected} implied by flags 0x{flags:02X}",
                              data)
        if pos + size > len(data):
            raise DecodeError(f"short: record of {size} bytes at offset {pos} runs past the end", data)
        records.append(_decode_one(data[pos:pos + size], e2e, octet_order))
        pos += size
    return tuple(records)


def encode_measurement(m: CgmMeasurement, *, e2e: bool = False,
                       octet_order: OctetOrder = OctetOrder.STATUS_FIRST) -> bytes:
    """One CGM Measurement record (size byte included, CRC appended when ``e2e``)."""
    flags = 0
    tail = b""
    present = {"status": m.status, "cal_temp": m.cal_temp, "warning": m.warning}
    for name in _octets_in_order(octet_order):
        if present[name] is not None:
            flags |= _OCTET_FLAG[name]
            tail += bytes([int(present[name]) & 0xFF])  # type: ignore[arg-type]
    if m.trend_mg_dl_per_min is not None:
        flags |= _F_TREND
        tail += pack_sfloat(m.trend_mg_dl_per_min)
    if m.quality_pct is not None:
        flags |= _F_QUALITY
        tail += pack_sfloat(m.quality_pct)
    if not 0 <= m.time_offset_min <= 0xFFFF:
        raise ValueError(f"time offset {m.time_offset_min} outside u16")
    size = _record_size(flags, e2e)
    body = bytes([size, flags]) + pack_sfloat(m.glucose_mg_dl) + m.time_offset_min.to_bytes(2, "little") + tail
    return _finish(body, e2e)


def encode_measurements(ms: tuple[CgmMeasurement, ...] | list[CgmMeasurement], *, e2e: bool = False,
                        octet_order: OctetOrder = OctetOrder.STATUS_FIRST) -> bytes:
    """Several records concatenated into one notification."""
    return b"".join(encode_measurement(m, e2e=e2e, octet_order=octet_order) for m in ms)


# ---------------------------------------------------------------------------------------------------- feature
@dataclass(frozen=True, slots=True)
class CgmFeature:
    """CGM Feature: 24-bit flags, sensor type (low nibble; 9 = ISF), sample location (high nibble; 5 = subcutaneous)."""

    features: CgmFeatureBits
    sensor_type: int = 9
    sample_location: int = 5

    @property
    def e2e(self) -> bool:
        return bool(self.features & CgmFeatureBits.E2E_CRC)


def decode_feature(data: bytes) -> CgmFeature:
    """6 bytes; the CRC is checked when the E2E-CRC feature bit is set (else it must be 0xFFFF, not checked)."""
    data = bytes(data)
    if len(data) < 6:
        raise DecodeError(f"short: CGM feature needs 6 bytes, got {len(data)}", data)
    if len(data) > 6:
        raise DecodeError(f"oversized: CGM feature needs 6 bytes, got {len(data)}", data)
    bits = int.from_bytes(data[0:3], "little")
    if bits & CgmFeatureBits.E2E_CRC:
        check_crc(data, "CGM feature")
    return CgmFeature(CgmFeatureBits(bits), data[3] & 0x0F, data[3] >> 4)


def encode_feature(f: CgmFeature) -> bytes:
    body = int(f.features).to_bytes(3, "little") + bytes([(f.sensor_type & 0x0F) | ((f.sample_location & 0x0F) << 4)])
    return append_crc(body) if f.e2e else body + b"\xff\xff"


# ---------------------------------------------------------------------------------------------------- status
@dataclass(frozen=True, slots=True)
class CgmStatus:
    """CGM Status: time offset of the status (min) and the three annunciation octets."""

    time_offset_min: int
    status: StatusOctet = StatusOctet(0)
    cal_temp: CalTempOctet = CalTempOctet(0)
    warning: WarningOctet = WarningOctet(0)


def decode_status(data: bytes, *, e2e: bool = False, octet_order: OctetOrder = OctetOrder.STATUS_FIRST) -> CgmStatus:
    r = Reader(_crc_tail(data, e2e, "CGM status"), "CGM status")
    offset = r.u16("time offset")
    vals = {name: _OCTET_TYPE[name](r.u8(name)) for name in _octets_in_order(octet_order)}
    r.end()
    return CgmStatus(offset, vals["status"], vals["cal_temp"], vals["warning"])  # type: ignore[arg-type]


def encode_status(s: CgmStatus, *, e2e: bool = False, octet_order: OctetOrder = OctetOrder.STATUS_FIRST) -> bytes:
    vals = {"status": s.status, "cal_temp": s.cal_temp, "warning": s.warning}
    body = s.time_offset_min.to_bytes(2, "little") + bytes(int(vals[n]) for n in _octets_in_order(octet_order))
    return _finish(body, e2e)


# ---------------------------------------------------------------------------------------------------- session times
_DST_QUARTERS = {0: 0, 2: 2, 4: 4, 8: 8, 255: 0}


@dataclass(frozen=True, slots=True)
class SessionStartTime:
    """Session Start Time: local date-time, time zone (15-min steps, -128 unknown) and DST offset (0, 2, 4, 8 in
    15-min steps; 255 unknown). Year/month/day 0 mean "unknown" (Date Time characteristic)."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    time_zone_quarters: int = 0
    dst_offset: int = 0

    def to_epoch_min(self) -> float:
        """UTC minutes since the Unix epoch (the board's timeline). Unknown zone/DST count as 0."""
        if self.year == 0 or self.month == 0 or self.day == 0:
            raise ValueError("session start date unknown")
        local = calendar.timegm((self.year, self.month, self.day, self.hour, self.minute, self.second, 0, 0, 0))
        tz = 0 if self.time_zone_quarters == -128 else self.time_zone_quarters
        return local / 60.0 - 15.0 * (tz + _DST_QUARTERS.get(self.dst_offset, 0))

    @classmethod
    def from_epoch_min(cls, t_min: float, time_zone_quarters: int = 0) -> "SessionStartTime":
        """Session start for UTC minute ``t_min`` expressed in the given time zone (no DST)."""
        import time

        secs = int(round((t_min + 15.0 * time_zone_quarters) * 60.0))
        tm = time.gmtime(secs)
        return cls(tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, time_zone_quarters, 0)


def decode_session_start_time(data: bytes, *, e2e: bool = False) -> SessionStartTime:
    r = Reader(_crc_tail(data, e2e, "session start time"), "session start time")
    st = SessionStartTime(r.u16("year"), r.u8("month"), r.u8("day"), r.u8("hour"), r.u8("minute"), r.u8("second"),
                          r.s8("time zone"), r.u8("DST offset"))
    r.end()
    problems = []
    if st.year != 0 and not 1582 <= st.year <= 9999:
        problems.append(f"year {st.year}")
    if st.month > 12:
        problems.append(f"month {st.month}")
    if st.day > 31:
        problems.append(f"day {st.day}")
    if st.hour > 23 or st.minute > 59 or st.second > 59:
        problems.append(f"time {st.hour}:{st.minute}:{st.second}")
    if st.time_zone_quarters != -128 and not -48 <= st.time_zone_quarters <= 56:
        problems.append(f"time zone {st.time_zone_quarters}")
    if st.dst_offset not in _DST_QUARTERS:
        problems.append(f"DST offset {st.dst_offset}")
    if not problems and st.year and st.month and st.day:
        if st.day > calendar.monthrange(st.year, st.month)[1]:
            problems.append(f"day {st.day} in {st.year}-{st.month}")
    if problems:
        raise DecodeError("impossible value: session start " + ", ".join(problems), bytes(data))
    return st


def encode_session_start_time(st: SessionStartTime, *, e2e: bool = False) -> bytes:
    body = (st.year.to_bytes(2, "little") + bytes([st.month, st.day, st.hour, st.minute, st.second])
            + st.time_zone_quarters.to_bytes(1, "little", signed=True) + bytes([st.dst_offset]))
    return _finish(body, e2e)


def decode_session_run_time(data: bytes, *, e2e: bool = False) -> int:
    """Expected run time of the session in hours."""
    r = Reader(_crc_tail(data, e2e, "session run time"), "session run time")
    hours = r.u16("run time")
    r.end()
    return hours


def encode_session_run_time(hours: int, *, e2e: bool = False) -> bytes:
    return _finish(hours.to_bytes(2, "little"), e2e)


# ---------------------------------------------------------------------------------------------------- SOCP
class SocpOp(enum.IntEnum):
    SET_INTERVAL = 1
    GET_INTERVAL = 2
    INTERVAL_RESPONSE = 3
    SET_CALIBRATION = 4
    GET_CALIBRATION = 5
    CALIBRATION_RESPONSE = 6
    SET_PATIENT_HIGH = 7
    GET_PATIENT_HIGH = 8
    PATIENT_HIGH_RESPONSE = 9
    SET_PATIENT_LOW = 10
    GET_PATIENT_LOW = 11
    PATIENT_LOW_RESPONSE = 12
    SET_HYPO = 13
    GET_HYPO = 14
    HYPO_RESPONSE = 15
    SET_HYPER = 16
    GET_HYPER = 17
    HYPER_RESPONSE = 18
    SET_RATE_DECREASE = 19
    GET_RATE_DECREASE = 20
    RATE_DECREASE_RESPONSE = 21
    SET_RATE_INCREASE = 22
    GET_RATE_INCREASE = 23
    RATE_INCREASE_RESPONSE = 24
    RESET_DEVICE_SPECIFIC_ALERT = 25
    START_SESSION = 26
    STOP_SESSION = 27
    RESPONSE_CODE = 28


class SocpResult(enum.IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERAND = 3
    PROCEDURE_NOT_COMPLETED = 4
    PARAMETER_OUT_OF_RANGE = 5


_SOCP_LEVEL_OPS = frozenset(op for op in SocpOp if 7 <= op <= 24 and (op - 7) % 3 != 1)  # set and response
_SOCP_EMPTY_OPS = frozenset(
    {SocpOp.GET_INTERVAL, SocpOp.RESET_DEVICE_SPECIFIC_ALERT, SocpOp.START_SESSION, SocpOp.STOP_SESSION}
    | {op for op in SocpOp if 7 <= op <= 24 and (op - 7) % 3 == 1})


@dataclass(frozen=True, slots=True)
class CalibrationRecord:
    """SOCP calibration value (10 bytes): glucose SFLOAT, time (min), type/location, next calibration (min),
    record number, status."""

    glucose_mg_dl: float
    time_min: int
    sample_type: int = 9
    sample_location: int = 5
    next_calibration_min: int = 0
    record_number: int = 0
    status: int = 0


@dataclass(frozen=True, slots=True)
class SocpMessage:
    """A SOCP request or response. Which operand field is used depends on ``op``:

    - ``interval_min`` for SET_INTERVAL / INTERVAL_RESPONSE (u8 minutes, 0 = off, 0xFF = fastest);
    - ``calibration`` for SET_CALIBRATION / CALIBRATION_RESPONSE; ``record_number`` for GET_CALIBRATION;
    - ``level`` (SFLOAT) for the SET_* / *_RESPONSE alert-level ops (mg/dL or mg/dL/min);
    - ``request_op`` and ``result`` for RESPONSE_CODE.
    """

    op: SocpOp
    interval_min: int | None = None
    level: float | None = None
    calibration: CalibrationRecord | None = None
    record_number: int | None = None
    request_op: int | None = None
    result: SocpResult | None = None


def decode_socp(data: bytes, *, e2e: bool = False) -> SocpMessage:
    body = _crc_tail(data, e2e, "SOCP")
    r = Reader(body, "SOCP")
    raw_op = r.u8("op code")
    try:
        op = SocpOp(raw_op)
    except ValueError:
        raise DecodeError(f"unknown op code: SOCP 0x{raw_op:02X}", bytes(data)) from None
    msg: SocpMessage
    if op in (SocpOp.SET_INTERVAL, SocpOp.INTERVAL_RESPONSE):
        msg = SocpMessage(op, interval_min=r.u8("interval"))
    elif op in (SocpOp.SET_CALIBRATION, SocpOp.CALIBRATION_RESPONSE):
        glucose = r.sfloat("calibration glucose")
        t = r.u16("calibration time")
        tl = r.u8("type/location")
        cal = CalibrationRecord(glucose, t, tl & 0x0F, tl >> 4, r.u16("next calibration"),
                                r.u16("record number"), r.u8("calibration status"))
        if not math.isnan(glucose) and glucose < 0:
            raise DecodeError(f"impossible value: negative calibration glucose {glucose}", bytes(data))
        msg = SocpMessage(op, calibration=cal)
    elif op is SocpOp.GET_CALIBRATION:
        msg = SocpMessage(op, record_number=r.u16("record number"))
    elif op in _SOCP_LEVEL_OPS:
        msg = SocpMessage(op, level=r.sfloat("level"))
    elif op in _SOCP_EMPTY_OPS:
        msg = SocpMessage(op)
    else:  # RESPONSE_CODE
        request_op = r.u8("request op code")
        raw_result = r.u8("result")
        try:
            result = SocpResult(raw_result)
        except ValueError:
            raise DecodeError(f"impossible value: SOCP result 0x{raw_result:02X}", bytes(data)) from None
        msg = SocpMessage(op, request_op=request_op, result=result)
    r.end()
    return msg


def encode_socp(m: SocpMessage, *, e2e: bool = False) -> bytes:
    op = SocpOp(m.op)
    body = bytes([op])
    if op in (SocpOp.SET_INTERVAL, SocpOp.INTERVAL_RESPONSE):
        body += bytes([_need(m.interval_min, op) & 0xFF])
    elif op in (SocpOp.SET_CALIBRATION, SocpOp.CALIBRATION_RESPONSE):
        c = _need(m.calibration, op)
        body += (pack_sfloat(c.glucose_mg_dl) + c.time_min.to_bytes(2, "little")
                 + bytes([(c.sample_type & 0x0F) | ((c.sample_location & 0x0F) << 4)])
                 + c.next_calibration_min.to_bytes(2, "little") + c.record_number.to_bytes(2, "little")
                 + bytes([c.status]))
    elif op is SocpOp.GET_CALIBRATION:
        body += _need(m.record_number, op).to_bytes(2, "little")
    elif op in _SOCP_LEVEL_OPS:
        body += pack_sfloat(_need(m.level, op))
    elif op is SocpOp.RESPONSE_CODE:
        body += bytes([_need(m.request_op, op), int(_need(m.result, op))])
    return _finish(body, e2e)


def _need(value, op):  # type: ignore[no-untyped-def]
    if value is None:
        raise ValueError(f"{op!r} needs an operand")
    return value


# ---------------------------------------------------------------------------------------------------- RACP
class RacpOp(enum.IntEnum):
    REPORT_RECORDS = 1
    DELETE_RECORDS = 2
    ABORT = 3
    REPORT_NUMBER = 4
    NUMBER_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(enum.IntEnum):
    NULL = 0
    ALL = 1
    LESS_OR_EQUAL = 2
    GREATER_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST = 5
    LAST = 6


class RacpResult(enum.IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    FILTER_NOT_SUPPORTED = 9


RACP_FILTER_TIME_OFFSET = 0x01
"""CGMS filter type: time offset (u16 minutes). The IDS history (ids_history.py) reuses 0x01 for its u32 sequence."""


@dataclass(frozen=True, slots=True)
class RacpMessage:
    """A RACP request or response.

    Requests (REPORT_RECORDS, DELETE_RECORDS, REPORT_NUMBER) carry an ``operator``; the comparison operators carry
    ``filter_type`` and ``low`` (<=: the bound is ``high``; >=: ``low``; within range: both). ABORT uses NULL.
    NUMBER_RESPONSE carries ``count``; RESPONSE_CODE carries ``request_op`` and ``result``.
    """

    op: RacpOp
    operator: RacpOperator = RacpOperator.NULL
    filter_type: int | None = None
    low: int | None = None
    high: int | None = None
    count: int | None = None
    request_op: int | None = None
    result: RacpResult | None = None


def decode_racp(data: bytes, *, operand_size: int = 2, e2e: bool = False) -> RacpMessage:
    """Decode a RACP packet; ``operand_size`` is the filter operand width (2 = CGMS time offset, 4 = sequence)."""
    raw = bytes(data)
    r = Reader(_crc_tail(raw, e2e, "RACP"), "RACP")
    raw_op = r.u8("op code")
    raw_operator = r.u8("operator")
    try:
        op = RacpOp(raw_op)
    except ValueError:
        raise DecodeError(f"unknown op code: RACP 0x{raw_op:02X}", raw) from None
    try:
        operator = RacpOperator(raw_operator)
    except ValueError:
        raise DecodeError(f"impossible value: RACP operator 0x{raw_operator:02X}", raw) from None

    def operand(name: str) -> int:
        return int.from_bytes(r._take(operand_size, name), "little")

    msg: RacpMessage
    if op in (RacpOp.REPORT_RECORDS, RacpOp.DELETE_RECORDS, RacpOp.REPORT_NUMBER):
        if operator is RacpOperator.NULL:
            raise DecodeError(f"impossible value: RACP {op.name} with NULL operator", raw)
        if operator in (RacpOperator.ALL, RacpOperator.FIRST, RacpOperator.LAST):
            msg = RacpMessage(op, operator)
        else:
            ftype = r.u8("filter type")
            if operator is RacpOperator.LESS_OR_EQUAL:
                msg = RacpMessage(op, operator, ftype, high=operand("bound"))
            elif operator is RacpOperator.GREATER_OR_EQUAL:
                msg = RacpMessage(op, operator, ftype, low=operand("bound"))
            else:
                low, high = operand("low"), operand("high")
                if low > high:
                    raise DecodeError(f"impossible value: RACP range {low} > {high}", raw)
                msg = RacpMessage(op, operator, ftype, low=low, high=high)
    else:
        if operator is not RacpOperator.NULL:
            raise DecodeError(f"impossible value: RACP {op.name} needs the NULL operator", raw)
        if op is RacpOp.ABORT:
            msg = RacpMessage(op)
        elif op is RacpOp.NUMBER_RESPONSE:
            msg = RacpMessage(op, count=r.u16("count") if operand_size == 2 else r.u32("count"))
        else:
            request_op = r.u8("request op code")
            raw_result = r.u8("response code")
            try:
                result = RacpResult(raw_result)
            except ValueError:
                raise DecodeError(f"impossible value: RACP response code 0x{raw_result:02X}", raw) from None
            msg = RacpMessage(op, request_op=request_op, result=result)
    r.end()
    return msg


def encode_racp(m: RacpMessage, *, operand_size: int = 2, e2e: bool = False) -> bytes:
    op = RacpOp(m.op)
    body = bytes([op, RacpOperator(m.operator)])
    if op in (RacpOp.REPORT_RECORDS, RacpOp.DELETE_RECORDS, RacpOp.REPORT_NUMBER):
        if m.operator in (RacpOperator.LESS_OR_EQUAL, RacpOperator.GREATER_OR_EQUAL, RacpOperator.WITHIN_RANGE):
            body += bytes([RACP_FILTER_TIME_OFFSET if m.filter_type is None else m.filter_type])
            if m.operator is RacpOperator.LESS_OR_EQUAL:
                body += _need(m.high, op).to_bytes(operand_size, "little")
            elif m.operator is RacpOperator.GREATER_OR_EQUAL:
                body += _need(m.low, op).to_bytes(operand_size, "little")
            else:
                body += _need(m.low, op).to_bytes(operand_size, "little")
                body += _need(m.high, op).to_bytes(operand_size, "little")
    elif op is RacpOp.NUMBER_RESPONSE:
        body += _need(m.count, op).to_bytes(operand_size if operand_size in (2, 4) else 2, "little")
    elif op is RacpOp.RESPONSE_CODE:
        body += bytes([_need(m.request_op, op), int(_need(m.result, op))])
    return _finish(body, e2e)

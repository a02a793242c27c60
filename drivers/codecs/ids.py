"""Bluetooth Insulin Delivery Service (0x183A) codecs: status, status changed, annunciation, features, the Status
Reader control point and the Command control point.

Op codes are u16 little-endian. With E2E protection (``e2e=True``) every packet ends with E2E-Counter (u8) then
E2E-CRC (u16, MCRF4XX over everything before it); control-point decoders then return ``(message, counter)``,
otherwise ``(message, None)``. IDD Features is the exception (CRC first, then counter). Every decoder raises only
:class:`DecodeError`; operands a pump could not execute (unknown enum values, negative or non-finite amounts,
zero durations) count as impossible values.

Not implemented (answered "op code not supported" by the emulator): active bolus delivery details (0x0356/0x0359),
templates, therapy-control-state write other than run/stop/pause, the IDD Command Data characteristic.
The history records used for reconciliation are in :mod:`drivers.codecs.ids_history`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Union

from drivers.codecs.crc import crc16_mcrf4xx
from drivers.codecs.e2e import Reader, append_e2e, split_e2e
from drivers.codecs.errors import DecodeError
from drivers.codecs.sfloat import pack_float32, pack_sfloat

__all__ = [
    "TherapyControlState", "OperationalState", "IdsStatus", "decode_ids_status", "encode_ids_status",
    "StatusChangedFlags", "decode_status_changed", "encode_status_changed",
    "AnnunciationType", "AnnunciationStatusValue", "Annunciation", "decode_annunciation", "encode_annunciation",
    "IdsFeatureBits", "IdsFeatures", "decode_ids_features", "encode_ids_features",
    "SrOp", "SrResult", "SrRequest", "SrResponseCode", "ActiveBolusIds", "TbrInfo", "ActiveBasalRate",
    "TotalDailyInsulin", "DeliveredInsulin", "InsulinOnBoard", "StatusReaderMessage",
    "decode_status_reader", "encode_status_reader",
    "CcOp", "CcResult", "TbrType", "DeliveryContext", "BolusType", "SetTbr", "SetBolus", "BolusId", "MaxBolus",
    "SetTherapyControlState", "CcSimple", "CcResponseCode", "CommandMessage", "decode_command", "encode_command",
]


def _body(data: bytes, e2e: bool, what: str) -> tuple[bytes, int | None]:
    if e2e:
        return split_e2e(data, what)
    return bytes(data), None


def _finish(payload: bytes, e2e: bool, counter: int | None) -> bytes:
    if not e2e:
        return payload
    return append_e2e(payload, 0 if counter is None else counter)


def _enum(kind: type[enum.IntEnum], raw: int, what: str, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return kind(raw)
    except ValueError:
        raise DecodeError(f"impossible value: {what} 0x{raw:X}", data) from None


def _amount(value: float, what: str, data: bytes) -> float:
    if not math.isfinite(value) or value < 0:
        raise DecodeError(f"impossible value: {what} {value}", data)
    return value


# ---------------------------------------------------------------------------------------------------- IDD Status
class TherapyControlState(enum.IntEnum):
    UNDETERMINED = 0x0F
    STOP = 0x33
    PAUSE = 0x3C
    RUN = 0x55


class OperationalState(enum.IntEnum):
    UNDETERMINED = 0x0F
    OFF = 0x33
    STANDBY = 0x3C
    PREPARING = 0x55
    PRIMING = 0x5A
    WAITING = 0x66
    READY = 0x96


@dataclass(frozen=True, slots=True)
class IdsStatus:
    therapy_state: TherapyControlState
    operational_state: OperationalState
    reservoir_u: float
    reservoir_attached: bool = True


def decode_ids_status(data: bytes, *, e2e: bool = False) -> tuple[IdsStatus, int | None]:
    raw = bytes(data)
    body, counter = _body(raw, e2e, "IDD status")
    r = Reader(body, "IDD status")
    therapy = _enum(TherapyControlState, r.u8("therapy control state"), "therapy control state", raw)
    operational = _enum(OperationalState, r.u8("operational state"), "operational state", raw)
    reservoir = r.sfloat("reservoir")
    flags = r.u8("flags")
    r.end()
    if not math.isnan(reservoir):
        _amount(reservoir, "reservoir remaining", raw)
    return IdsStatus(therapy, operational, reservoir, bool(flags & 1)), counter


def encode_ids_status(s: IdsStatus, *, e2e: bool = False, counter: int | None = None) -> bytes:
    body = bytes([s.therapy_state, s.operational_state]) + pack_sfloat(s.reservoir_u, _exp_for(s.reservoir_u))
    return _finish(body + bytes([1 if s.reservoir_attached else 0]), e2e, counter)


def _exp_for(amount_u: float) -> int | None:
    """Insulin amounts are sent with 0.01 U resolution when they fit (rounded half-even), else coarser."""
    if not math.isfinite(amount_u):
        return None
    return -2 if abs(amount_u) <= 20.45 else (-1 if abs(amount_u) <= 204.5 else None)


# ---------------------------------------------------------------------------------------------------- status changed
class StatusChangedFlags(enum.IntFlag):
    THERAPY_CONTROL_STATE = 1 << 0
    OPERATIONAL_STATE = 1 << 1
    RESERVOIR_STATUS = 1 << 2
    ANNUNCIATION_STATUS = 1 << 3
    TOTAL_DAILY_INSULIN = 1 << 4
    ACTIVE_BASAL_RATE = 1 << 5
    HISTORY_EVENT_RECORDED = 1 << 6


def decode_status_changed(data: bytes, *, e2e: bool = False) -> tuple[StatusChangedFlags, int | None]:
    body, counter = _body(data, e2e, "IDD status changed")
    r = Reader(body, "IDD status changed")
    flags = StatusChangedFlags(r.u16("flags"))
    r.end()
    return flags, counter


def encode_status_changed(flags: StatusChangedFlags, *, e2e: bool = False, counter: int | None = None) -> bytes:
    return _finish(int(flags).to_bytes(2, "little"), e2e, counter)


# ---------------------------------------------------------------------------------------------------- annunciation
class AnnunciationType(enum.IntEnum):
    OCCLUSION = 0x003C
    RESERVOIR_EMPTY = 0x005A
    RESERVOIR_LOW = 0x0066
    BATTERY_EMPTY = 0x00AA
    BOLUS_CANCELLED = 0x030C
    TBR_CANCELLED = 0x033F
    MAX_DELIVERY_EXCEEDED = 0x0356


class AnnunciationStatusValue(enum.IntEnum):
    PENDING = 0x33
    SNOOZED = 0x3C
    CONFIRMED = 0x55


@dataclass(frozen=True, slots=True)
class Annunciation:
    """An active annunciation. ``type`` is an int (known ones in :class:`AnnunciationType`); ``aux`` are up to 5
    auxiliary-info fields, each carried as u16 here."""

    instance_id: int
    type: int
    status: AnnunciationStatusValue
    aux: tuple[int, ...] = ()


def decode_annunciation(data: bytes, *, e2e: bool = False) -> tuple[Annunciation | None, int | None]:
    """IDD Annunciation Status; ``None`` when the flags say no annunciation is present."""
    raw = bytes(data)
    body, counter = _body(raw, e2e, "IDD annunciation")
    r = Reader(body, "IDD annunciation")
    flags = r.u8("flags")
    if flags & 0xC0:
        raise DecodeError(f"impossible value: reserved annunciation flags 0x{flags:02X}", raw)
    if not flags & 1:
        if flags:
            raise DecodeError("impossible value: auxiliary info without an annunciation", raw)
        r.end()
        return None, counter
    instance = r.u16("instance id")
    a_type = r.u16("annunciation type")
    status = _enum(AnnunciationStatusValue, r.u8("annunciation status"), "annunciation status", raw)
    aux = []
    for i in range(5):
        if flags & (1 << (i + 1)):
            aux.append(r.u16(f"aux info {i + 1}"))
    r.end()
    return Annunciation(instance, a_type, status, tuple(aux)), counter


def encode_annunciation(a: Annunciation | None, *, e2e: bool = False, counter: int | None = None) -> bytes:
    if a is None:
        return _finish(b"\x00", e2e, counter)
    if len(a.aux) > 5:
        raise ValueError("at most 5 auxiliary info fields")
    flags = 1 | sum(1 << (i + 1) for i in range(len(a.aux)))
    body = bytes([flags]) + a.instance_id.to_bytes(2, "little") + int(a.type).to_bytes(2, "little") + bytes([a.status])
    body += b"".join(x.to_bytes(2, "little") for x in a.aux)
    return _finish(body, e2e, counter)


# ---------------------------------------------------------------------------------------------------- features
class IdsFeatureBits(enum.IntFlag):
    E2E_PROTECTION = 1 << 0
    BASAL_RATE = 1 << 1
    TBR_ABSOLUTE = 1 << 2
    TBR_RELATIVE = 1 << 3
    TBR_TEMPLATE = 1 << 4
    FAST_BOLUS = 1 << 5
    EXTENDED_BOLUS = 1 << 6
    MULTIWAVE_BOLUS = 1 << 7
    BOLUS_DELAY = 1 << 8
    BOLUS_TEMPLATE = 1 << 9
    BOLUS_ACTIVATION_TYPE = 1 << 10
    MULTIPLE_BOND = 1 << 11
    ISF_TEMPLATE = 1 << 12
    ICHO_TEMPLATE = 1 << 13
    TARGET_RANGE_TEMPLATE = 1 << 14
    INSULIN_ON_BOARD = 1 << 15


@dataclass(frozen=True, slots=True)
class IdsFeatures:
    """IDD Features. ``concentration_iu_per_ml``: insulin concentration (U-100 = 100)."""

    flags: IdsFeatureBits
    concentration_iu_per_ml: float = 100.0

    @property
    def e2e(self) -> bool:
        return bool(self.flags & IdsFeatureBits.E2E_PROTECTION)


def decode_ids_features(data: bytes) -> tuple[IdsFeatures, int]:
    """CRC (u16), counter (u8), concentration SFLOAT, flags u24. The CRC (over everything after it) is checked when
    the E2E flag is set. Returns ``(features, counter)``."""
    raw = bytes(data)
    r = Reader(raw, "IDD features")
    crc = r.u16("E2E-CRC")
    counter = r.u8("E2E-counter")
    conc = r.sfloat("insulin concentration")
    flags = IdsFeatureBits(r.u24("flags"))
    r.end()
    if flags & IdsFeatureBits.E2E_PROTECTION and crc != crc16_mcrf4xx(raw[2:]):
        raise DecodeError(f"bad CRC: IDD features E2E-CRC 0x{crc:04X} != 0x{crc16_mcrf4xx(raw[2:]):04X}", raw)
    if not math.isfinite(conc) or conc <= 0:
        raise DecodeError(f"impossible value: insulin concentration {conc}", raw)
    return IdsFeatures(flags, conc), counter


def encode_ids_features(f: IdsFeatures, *, counter: int = 0) -> bytes:
    tail = bytes([counter & 0xFF]) + pack_sfloat(f.concentration_iu_per_ml) + int(f.flags).to_bytes(3, "little")
    crc = crc16_mcrf4xx(tail) if f.e2e else 0xFFFF
    return crc.to_bytes(2, "little") + tail


# ---------------------------------------------------------------------------------------------------- status reader
class SrOp(enum.IntEnum):
    RESPONSE_CODE = 0x0303
    RESET_STATUS = 0x030C
    GET_ACTIVE_BOLUS_IDS = 0x0330
    ACTIVE_BOLUS_IDS = 0x033F
    GET_ACTIVE_BOLUS_DELIVERY = 0x0356
    ACTIVE_BOLUS_DELIVERY = 0x0359
    GET_ACTIVE_BASAL_RATE = 0x0365
    ACTIVE_BASAL_RATE = 0x036A
    GET_TOTAL_DAILY_INSULIN = 0x0395
    TOTAL_DAILY_INSULIN = 0x039A
    GET_DELIVERED_INSULIN = 0x03C0
    DELIVERED_INSULIN = 0x03CF
    GET_IOB = 0x03F3
    IOB = 0x03FC


class SrResult(enum.IntEnum):
    SUCCESS = 0x0F
    OP_CODE_NOT_SUPPORTED = 0x70
    INVALID_OPERAND = 0x71
    PROCEDURE_NOT_COMPLETED = 0x72
    PARAMETER_OUT_OF_RANGE = 0x73
    PROCEDURE_NOT_APPLICABLE = 0x74


_SR_EMPTY_REQUESTS = frozenset({SrOp.GET_ACTIVE_BOLUS_IDS, SrOp.GET_ACTIVE_BASAL_RATE, SrOp.GET_TOTAL_DAILY_INSULIN,
                                SrOp.GET_DELIVERED_INSULIN, SrOp.GET_IOB})


@dataclass(frozen=True, slots=True)
class SrRequest:
    """A Status Reader request: the GET_* ops (no operand), RESET_STATUS (``flags``: StatusChangedFlags to clear),
    GET_ACTIVE_BOLUS_DELIVERY (``bolus_id``, ``selection``)."""

    op: SrOp
    flags: int | None = None
    bolus_id: int | None = None
    selection: int | None = None


@dataclass(frozen=True, slots=True)
class SrResponseCode:
    request_op: int
    result: SrResult


@dataclass(frozen=True, slots=True)
class ActiveBolusIds:
    bolus_ids: tuple[int, ...]


class TbrType(enum.IntEnum):
    ABSOLUTE = 0x33
    RELATIVE = 0x3C


class DeliveryContext(enum.IntEnum):
    DEVICE = 0x33
    REMOTE_CONTROL = 0x3C
    AP_CONTROLLER = 0x55


@dataclass(frozen=True, slots=True)
class TbrInfo:
    tbr_type: TbrType
    value: float
    duration_programmed_min: int
    duration_remaining_min: int


@dataclass(frozen=True, slots=True)
class ActiveBasalRate:
    """Active basal: profile template number, the profile's current rate (U/h), the running TBR (if any)."""

    template_number: int
    profile_rate_u_per_h: float
    tbr: TbrInfo | None = None
    tbr_template: int | None = None
    context: DeliveryContext | None = None

    @property
    def effective_rate_u_per_h(self) -> float:
        """The rate delivered now, TBR applied."""
        if self.tbr is None:
            return self.profile_rate_u_per_h
        if self.tbr.tbr_type is TbrType.ABSOLUTE:
            return self.tbr.value
        return self.profile_rate_u_per_h * self.tbr.value / 100.0


@dataclass(frozen=True, slots=True)
class TotalDailyInsulin:
    bolus_u: float
    basal_u: float
    total_u: float


@dataclass(frozen=True, slots=True)
class DeliveredInsulin:
    """Lifetime totals (FLOAT, 32 bit) since the pump's counter reset."""

    bolus_u: float
    basal_u: float


@dataclass(frozen=True, slots=True)
class InsulinOnBoard:
    iob_u: float
    remaining_duration_min: int | None = None


StatusReaderMessage = Union[SrRequest, SrResponseCode, ActiveBolusIds, ActiveBasalRate, TotalDailyInsulin,
                            DeliveredInsulin, InsulinOnBoard]


def decode_status_reader(data: bytes, *, e2e: bool = False) -> tuple[StatusReaderMessage, int | None]:
    raw = bytes(data)
    body, counter = _body(raw, e2e, "IDD status reader CP")
    r = Reader(body, "IDD status reader CP")
    raw_op = r.u16("op code")
    try:
        op = SrOp(raw_op)
    except ValueError:
        raise DecodeError(f"unknown op code: status reader 0x{raw_op:04X}", raw) from None
    msg: StatusReaderMessage
    if op in _SR_EMPTY_REQUESTS:
        msg = SrRequest(op)
    elif op is SrOp.RESET_STATUS:
        msg = SrRequest(op, flags=r.u16("flags"))
    elif op is SrOp.GET_ACTIVE_BOLUS_DELIVERY:
        msg = SrRequest(op, bolus_id=r.u16("bolus id"), selection=r.u8("value selection"))
    elif op is SrOp.RESPONSE_CODE:
        req = r.u16("request op code")
        msg = SrResponseCode(req, _enum(SrResult, r.u8("result"), "status reader result", raw))
    elif op is SrOp.ACTIVE_BOLUS_IDS:
        n = r.u8("count")
        msg = ActiveBolusIds(tuple(r.u16("bolus id") for _ in range(n)))
    elif op is SrOp.ACTIVE_BASAL_RATE:
        flags = r.u8("flags")
        if flags & 0xF8:
            raise DecodeError(f"impossible value: reserved active basal flags 0x{flags:02X}", raw)
        template = r.u8("template number")
        rate = _amount(r.sfloat("basal rate"), "basal rate", raw)
        tbr = None
        if flags & 1:
            t_type = _enum(TbrType, r.u8("TBR type"), "TBR type", raw)
            value = _amount(r.sfloat("TBR value"), "TBR value", raw)
            tbr = TbrInfo(t_type, value, r.u16("TBR duration programmed"), r.u16("TBR duration remaining"))
        tbr_template = r.u8("TBR template") if flags & 2 else None
        context = _enum(DeliveryContext, r.u8("delivery context"), "delivery context", raw) if flags & 4 else None
        msg = ActiveBasalRate(template, rate, tbr, tbr_template, context)
    elif op is SrOp.TOTAL_DAILY_INSULIN:
        vals = [_amount(r.sfloat(n), n, raw) for n in ("bolus", "basal", "total")]
        msg = TotalDailyInsulin(*vals)
    elif op is SrOp.DELIVERED_INSULIN:
        msg = DeliveredInsulin(_amount(r.float32("bolus delivered"), "bolus delivered", raw),
                               _amount(r.float32("basal delivered"), "basal delivered", raw))
    elif op is SrOp.IOB:
        flags = r.u8("flags")
        if flags & 0xFE:
            raise DecodeError(f"impossible value: reserved IOB flags 0x{flags:02X}", raw)
        iob = r.sfloat("IOB")
        if not math.isfinite(iob):
            raise DecodeError(f"impossible value: IOB {iob}", raw)
        msg = InsulinOnBoard(iob, r.u16("remaining duration") if flags & 1 else None)
    else:  # ACTIVE_BOLUS_DELIVERY
        raise DecodeError("unknown op code: active bolus delivery response is not supported", raw)
    r.end()
    return msg, counter


def encode_status_reader(msg: StatusReaderMessage, *, e2e: bool = False, counter: int | None = None) -> bytes:
    def op(o: SrOp) -> bytes:
        return int(o).to_bytes(2, "little")

    if isinstance(msg, SrRequest):
        body = op(msg.op)
        if msg.op is SrOp.RESET_STATUS:
            body += (msg.flags or 0).to_bytes(2, "little")
        elif msg.op is SrOp.GET_ACTIVE_BOLUS_DELIVERY:
            body += (msg.bolus_id or 0).to_bytes(2, "little") + bytes([msg.selection or 0])
    elif isinstance(msg, SrResponseCode):
        body = op(SrOp.RESPONSE_CODE) + int(msg.request_op).to_bytes(2, "little") + bytes([msg.result])
    elif isinstance(msg, ActiveBolusIds):
        body = op(SrOp.ACTIVE_BOLUS_IDS) + bytes([len(msg.bolus_ids)])
        body += b"".join(i.to_bytes(2, "little") for i in msg.bolus_ids)
    elif isinstance(msg, ActiveBasalRate):
        flags = (1 if msg.tbr else 0) | (2 if msg.tbr_template is not None else 0) | (4 if msg.context else 0)
        body = op(SrOp.ACTIVE_BASAL_RATE) + bytes([flags, msg.template_number])
        body += pack_sfloat(msg.profile_rate_u_per_h, _exp_for(msg.profile_rate_u_per_h))
        if msg.tbr:
            body += bytes([msg.tbr.tbr_type]) + pack_sfloat(msg.tbr.value, _exp_for(msg.tbr.value))
            body += msg.tbr.duration_programmed_min.to_bytes(2, "little")
            body += msg.tbr.duration_remaining_min.to_bytes(2, "little")
        if msg.tbr_template is not None:
            body += bytes([msg.tbr_template])
        if msg.context:
            body += bytes([msg.context])
    elif isinstance(msg, TotalDailyInsulin):
        body = op(SrOp.TOTAL_DAILY_INSULIN) + b"".join(
            pack_sfloat(v, _exp_for(v)) for v in (msg.bolus_u, msg.basal_u, msg.total_u))
    elif isinstance(msg, DeliveredInsulin):
        body = op(SrOp.DELIVERED_INSULIN) + pack_float32(round(msg.bolus_u, 4)) + pack_float32(round(msg.basal_u, 4))
    elif isinstance(msg, InsulinOnBoard):
        body = op(SrOp.IOB) + bytes([1 if msg.remaining_duration_min is not None else 0])
        body += pack_sfloat(msg.iob_u, _exp_for(msg.iob_u))
        if msg.remaining_duration_min is not None:
            body += msg.remaining_duration_min.to_bytes(2, "little")
    else:
        raise TypeError(f"not a status reader message: {msg!r}")
    return _finish(body, e2e, counter)


# ---------------------------------------------------------------------------------------------------- command CP
class CcOp(enum.IntEnum):
    RESPONSE_CODE = 0x0F55
    SET_THERAPY_CONTROL_STATE = 0x0F5A
    SET_TBR = 0x0FFF
    CANCEL_TBR = 0x1111
    SET_BOLUS = 0x114B
    SET_BOLUS_RESPONSE = 0x1177
    CANCEL_BOLUS = 0x1178
    CANCEL_BOLUS_RESPONSE = 0x1187
    GET_MAX_BOLUS = 0x147D
    MAX_BOLUS_RESPONSE = 0x1482
    SET_MAX_BOLUS = 0x148D


class CcResult(enum.IntEnum):
    SUCCESS = 0x0F
    OP_CODE_NOT_SUPPORTED = 0x70
    INVALID_OPERAND = 0x71
    PROCEDURE_NOT_COMPLETED = 0x72
    PARAMETER_OUT_OF_RANGE = 0x73
    PROCEDURE_NOT_APPLICABLE = 0x74
    PLAUSIBILITY_CHECK_FAILED = 0x75
    MAX_BOLUS_NUMBER_REACHED = 0x76


class BolusType(enum.IntEnum):
    FAST = 0x33
    EXTENDED = 0x3C
    MULTIWAVE = 0x55


@dataclass(frozen=True, slots=True)
class SetTbr:
    """Set TBR adjustment. ``value``: U/h for ABSOLUTE, % for RELATIVE; ``change``: modify the running TBR."""

    tbr_type: TbrType
    value: float
    duration_min: int
    template_number: int | None = None
    context: DeliveryContext | None = DeliveryContext.AP_CONTROLLER
    change: bool = False


@dataclass(frozen=True, slots=True)
class SetBolus:
    """Set Bolus. Amounts in U; ``duration_min`` for the extended part; optional delay, template, activation."""

    bolus_type: BolusType
    fast_u: float
    extended_u: float = 0.0
    duration_min: int = 0
    delay_min: int | None = None
    template_number: int | None = None
    activation_type: int | None = None
    reason_correction: bool = False
    reason_meal: bool = False


@dataclass(frozen=True, slots=True)
class BolusId:
    """CANCEL_BOLUS (request), SET_BOLUS_RESPONSE and CANCEL_BOLUS_RESPONSE: one bolus ID."""

    op: CcOp
    bolus_id: int


@dataclass(frozen=True, slots=True)
class MaxBolus:
    """SET_MAX_BOLUS (request) or MAX_BOLUS_RESPONSE: max bolus amount in U."""

    op: CcOp
    max_bolus_u: float


@dataclass(frozen=True, slots=True)
class SetTherapyControlState:
    state: TherapyControlState


@dataclass(frozen=True, slots=True)
class CcSimple:
    """Operand-less command: CANCEL_TBR, GET_MAX_BOLUS."""

    op: CcOp


@dataclass(frozen=True, slots=True)
class CcResponseCode:
    request_op: int
    result: CcResult


CommandMessage = Union[SetTbr, SetBolus, BolusId, MaxBolus, SetTherapyControlState, CcSimple, CcResponseCode]


def decode_command(data: bytes, *, e2e: bool = False) -> tuple[CommandMessage, int | None]:
    raw = bytes(data)
    body, counter = _body(raw, e2e, "IDD command CP")
    r = Reader(body, "IDD command CP")
    raw_op = r.u16("op code")
    try:
        op = CcOp(raw_op)
    except ValueError:
        raise DecodeError(f"unknown op code: command CP 0x{raw_op:04X}", raw) from None
    msg: CommandMessage
    if op is CcOp.SET_TBR:
        flags = r.u8("flags")
        if flags & 0xF8:
            raise DecodeError(f"impossible value: reserved TBR flags 0x{flags:02X}", raw)
        t_type = _enum(TbrType, r.u8("TBR type"), "TBR type", raw)
        value = _amount(r.sfloat("TBR value"), "TBR value", raw)
        duration = r.u16("TBR duration")
        if duration == 0:
            raise DecodeError("impossible value: TBR duration 0", raw)
        template = r.u8("template number") if flags & 1 else None
        context = _enum(DeliveryContext, r.u8("delivery context"), "delivery context", raw) if flags & 2 else None
        msg = SetTbr(t_type, value, duration, template, context, bool(flags & 4))
    elif op is CcOp.SET_BOLUS:
        flags = r.u8("flags")
        if flags & 0xE0:
            raise DecodeError(f"impossible value: reserved bolus flags 0x{flags:02X}", raw)
        b_type = _enum(BolusType, r.u8("bolus type"), "bolus type", raw)
        fast = _amount(r.sfloat("fast amount"), "fast amount", raw)
        extended = _amount(r.sfloat("extended amount"), "extended amount", raw)
        duration = r.u16("bolus duration")
        delay = r.u16("delay") if flags & 1 else None
        template = r.u8("template") if flags & 2 else None
        activation = r.u8("activation type") if flags & 4 else None
        if b_type is BolusType.FAST and (extended != 0 or duration != 0):
            raise DecodeError("impossible value: fast bolus with an extended part", raw)
        if b_type is not BolusType.FAST and duration == 0:
            raise DecodeError("impossible value: extended bolus without duration", raw)
        if fast + extended <= 0:
            raise DecodeError("impossible value: bolus of 0 U", raw)
        msg = SetBolus(b_type, fast, extended, duration, delay, template, activation, bool(flags & 8), bool(flags & 16))
    elif op in (CcOp.CANCEL_BOLUS, CcOp.SET_BOLUS_RESPONSE, CcOp.CANCEL_BOLUS_RESPONSE):
        msg = BolusId(op, r.u16("bolus id"))
    elif op in (CcOp.SET_MAX_BOLUS, CcOp.MAX_BOLUS_RESPONSE):
        msg = MaxBolus(op, _amount(r.sfloat("max bolus"), "max bolus", raw))
    elif op is CcOp.SET_THERAPY_CONTROL_STATE:
        state = _enum(TherapyControlState, r.u8("therapy control state"), "therapy control state", raw)
        msg = SetTherapyControlState(state)
    elif op in (CcOp.CANCEL_TBR, CcOp.GET_MAX_BOLUS):
        msg = CcSimple(op)
    else:  # RESPONSE_CODE
        req = r.u16("request op code")
        msg = CcResponseCode(req, _enum(CcResult, r.u8("result"), "command result", raw))
    r.end()
    return msg, counter


def encode_command(msg: CommandMessage, *, e2e: bool = False, counter: int | None = None) -> bytes:
    def op(o: CcOp) -> bytes:
        return int(o).to_bytes(2, "little")

    if isinstance(msg, SetTbr):
        flags = ((1 if msg.template_number is not None else 0) | (2 if msg.context is not None else 0)
                 | (4 if msg.change else 0))
        body = op(CcOp.SET_TBR) + bytes([flags, msg.tbr_type]) + pack_sfloat(msg.value, _exp_for(msg.value))
        body += msg.duration_min.to_bytes(2, "little")
        if msg.template_number is not None:
            body += bytes([msg.template_number])
        if msg.context is not None:
            body += bytes([msg.context])
    elif isinstance(msg, SetBolus):
        flags = ((1 if msg.delay_min is not None else 0) | (2 if msg.template_number is not None else 0)
                 | (4 if msg.activation_type is not None else 0) | (8 if msg.reason_correction else 0)
                 | (16 if msg.reason_meal else 0))
        body = op(CcOp.SET_BOLUS) + bytes([flags, msg.bolus_type])
        body += pack_sfloat(msg.fast_u, _exp_for(msg.fast_u)) + pack_sfloat(msg.extended_u, _exp_for(msg.extended_u))
        body += msg.duration_min.to_bytes(2, "little")
        if msg.delay_min is not None:
            body += msg.delay_min.to_bytes(2, "little")
        if msg.template_number is not None:
            body += bytes([msg.template_number])
        if msg.activation_type is not None:
            body += bytes([msg.activation_type])
    elif isinstance(msg, BolusId):
        body = op(msg.op) + msg.bolus_id.to_bytes(2, "little")
    elif isinstance(msg, MaxBolus):
        body = op(msg.op) + pack_sfloat(msg.max_bolus_u, _exp_for(msg.max_bolus_u))
    elif isinstance(msg, SetTherapyControlState):
        body = op(CcOp.SET_THERAPY_CONTROL_STATE) + bytes([msg.state])
    elif isinstance(msg, CcSimple):
        body = op(msg.op)
    elif isinstance(msg, CcResponseCode):
        body = op(CcOp.RESPONSE_CODE) + int(msg.request_op).to_bytes(2, "little") + bytes([msg.result])
    else:
        raise TypeError(f"not a command CP message: {msg!r}")
    return _finish(body, e2e, counter)

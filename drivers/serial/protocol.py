"""Messages of the twinloop bench serial protocol: types, payload codecs, sequence numbers, retransmission rules.

A frame body (see :mod:`drivers.serial.framing`) is ``TYPE (u8) | SEQ (u8) | PAYLOAD | CHECK (CRC-32)``; all
integers little endian. The frame CRC-16 protects the line; the message CRC-32 makes an undetected corruption of a
pump command (a changed bolus amount) practically impossible even on a very noisy line.
The full specification with hex examples is ``docs/serial-protocol.md``. In short:

- every message a side sends carries its own sequence number (0..255, wrapping); a retransmission reuses it;
- a request is confirmed by its response, which echoes the request's SEQ; an unsolicited ``CGM_READING`` is
  confirmed by an ``ACK`` echoing its SEQ; a well-framed but invalid message gets a ``NAK`` with a reason;
  a corrupted frame is dropped silently and the sender retransmits after its timeout;
- a device answers a retransmitted request (same SEQ and same bytes) from its response cache without executing it
  again; a pump additionally remembers every ``command_id`` it executed and answers a repeat with ``DUPLICATE``,
  so a bolus is never delivered twice, even across reconnects or sequence wrap-around.

:func:`decode_message` raises only :class:`~drivers.codecs.errors.DecodeError`.
"""

from __future__ import annotations

import enum
import math
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Union

from drivers.codecs.errors import DecodeError
from drivers.serial.framing import MAX_BODY
from safety.readings import ReadingStatus

PROTOCOL_VERSION = 1
CHECK_SIZE = 4
"""Every message ends with a CRC-32 end-to-end check (on top of the frame's CRC-16), see :func:`message_check`."""
MAX_COMMAND_ID_BYTES = 64
MAX_RECORDS_PER_FRAME = 12
MAX_HISTORY_PER_FRAME = 2
MILLI = 1000
"""Insulin travels in milli-units (mU, mU/h): 0.001 U resolution, always rounded down when encoding."""
NONE_U32 = 0xFFFFFFFF
GLUCOSE_NAN = 0xFFFF
TREND_NONE = -0x8000
MAX_GLUCOSE_MG_DL = 1000.0
MAX_RATE_MU_PER_H = 100_000  # 100 U/h: protocol range, not a safety limit
MAX_AMOUNT_MU = 100_000  # 100 U


class MsgType(enum.IntEnum):
    ACK = 0x06
    NAK = 0x15
    INFO_REQ = 0x10
    INFO = 0x11
    CGM_READING = 0x20
    CGM_RECORDS_REQ = 0x21
    CGM_RECORDS = 0x22
    CGM_STATUS_REQ = 0x23
    CGM_STATUS = 0x24
    PUMP_COMMAND = 0x30
    PUMP_RESULT = 0x31
    PUMP_HISTORY_REQ = 0x32
    PUMP_HISTORY = 0x33
    PUMP_STATUS_REQ = 0x34
    PUMP_STATUS = 0x35


class NakReason(enum.IntEnum):
    MALFORMED = 1
    UNKNOWN_TYPE = 2
    NOT_SUPPORTED = 3
    BUSY = 4


class DeviceKind(enum.IntEnum):
    CGM = 1
    PUMP = 2


class CommandKind(enum.IntEnum):
    TEMP_BASAL = 1
    BOLUS = 2
    SUSPEND = 3
    RESUME = 4
    CANCEL_BOLUS = 5


class BolusKindCode(enum.IntEnum):
    AUTOMATIC = 1
    MEAL = 2
    CORRECTION = 3
    USER = 4


class ResultCode(enum.IntEnum):
    OK = 0
    DUPLICATE = 1
    """Already executed under this command_id: the original history entry is returned, nothing delivered again."""
    REJECTED_OCCLUSION = 2
    REJECTED_SUSPENDED = 3
    REJECTED_INVALID = 4
    REJECTED_RESERVOIR = 5
    UNKNOWN_BOLUS = 6


class HistoryKind(enum.IntEnum):
    BASAL = 1
    BOLUS = 2


class EntryState(enum.IntEnum):
    COMPLETE = 1
    IN_PROGRESS = 2
    CANCELLED = 3
    """Stopped early; ``amount_mu`` and ``end_min`` are what was actually delivered."""


class PumpFlag(enum.IntFlag):
    NONE = 0
    OCCLUDED = 1
    SUSPENDED = 2
    RESERVOIR_EMPTY = 4
    BATTERY_LOW = 8
    TBR_ACTIVE = 16
    BOLUS_ACTIVE = 32


# Serial CGM status bits -> the safety kernel's reading status (documented in docs/serial-protocol.md).
CGM_STATUS_BITS: tuple[tuple[int, ReadingStatus], ...] = (
    (1 << 0, ReadingStatus.SESSION_STOPPED),
    (1 << 1, ReadingStatus.SENSOR_MALFUNCTION),
    (1 << 2, ReadingStatus.DEVICE_FAULT),
    (1 << 3, ReadingStatus.CALIBRATION_REQUIRED),
    (1 << 4, ReadingStatus.CALIBRATION_RECOMMENDED),
    (1 << 5, ReadingStatus.TEMPERATURE_OUT_OF_RANGE),
    (1 << 6, ReadingStatus.BELOW_DEVICE_RANGE),
    (1 << 7, ReadingStatus.ABOVE_DEVICE_RANGE),
    (1 << 8, ReadingStatus.WARMUP),
    (1 << 9, ReadingStatus.NOISY),
)
CGM_STATUS_KNOWN_MASK = 0x03FF


def map_cgm_status(bits: int) -> ReadingStatus:
    """Serial CGM status bits -> :class:`ReadingStatus` (unknown bits are ignored by the mapping)."""
    status = ReadingStatus.OK
    for bit, flag in CGM_STATUS_BITS:
        if bits & bit:
            status |= flag
    return status


def cgm_status_bits(status: ReadingStatus) -> int:
    """:class:`ReadingStatus` -> serial CGM status bits (inverse of :func:`map_cgm_status`; BACKFILLED dropped)."""
    return sum(bit for bit, flag in CGM_STATUS_BITS if status & flag)


def u_to_mu(amount_u: float) -> int:
    """Units -> milli-units, rounded down (never up); tolerant of float noise such as 0.15/0.001."""
    if not math.isfinite(amount_u) or amount_u <= 0.0:
        return 0
    return int(amount_u * MILLI + 1e-6)


# --------------------------------------------------------------------------------------------------------------
# payloads


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Nak:
    reason: NakReason


@dataclass(frozen=True, slots=True)
class InfoRequest:
    pass


@dataclass(frozen=True, slots=True)
class Info:
    device_kind: DeviceKind
    protocol_version: int
    name: str


@dataclass(frozen=True, slots=True)
class CgmRecord:
    """One stored CGM measurement. ``glucose_mg_dl`` NaN = no value; ``trend_mg_dl_per_min`` None = not reported."""

    sequence: int
    t_min: float
    glucose_mg_dl: float
    trend_mg_dl_per_min: float | None
    status_bits: int


@dataclass(frozen=True, slots=True)
class CgmReading:
    """Unsolicited: the newest record, pushed by the CGM; confirmed by ``ACK``."""

    record: CgmRecord


@dataclass(frozen=True, slots=True)
class CgmRecordsRequest:
    from_sequence: int
    max_count: int


@dataclass(frozen=True, slots=True)
class CgmRecords:
    records: tuple[CgmRecord, ...]


@dataclass(frozen=True, slots=True)
class CgmStatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class CgmStatus:
    """``oldest_sequence``..``next_sequence - 1`` are stored; ``next_sequence`` 0 = no record yet."""

    oldest_sequence: int
    next_sequence: int
    status_bits: int


@dataclass(frozen=True, slots=True)
class PumpCommand:
    """A command with its supervisor ``command_id``. Amounts in milli-units; durations in seconds."""

    command_id: str
    issued_at_min: float
    kind: CommandKind
    rate_mu_per_h: int = 0
    duration_s: int = 0
    amount_mu: int = 0
    bolus_kind: BolusKindCode = BolusKindCode.AUTOMATIC
    target_command_id: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    index: int
    command_id: str
    kind: HistoryKind
    start_min: float
    end_min: float
    amount_mu: int
    rate_mu_per_h: int | None
    state: EntryState


@dataclass(frozen=True, slots=True)
class PumpResult:
    command_id: str
    result: ResultCode
    entry: HistoryEntry | None


@dataclass(frozen=True, slots=True)
class PumpHistoryRequest:
    """Entries from ``from_index`` on (at most ``max_count``); only those of ``command_id`` if it is not empty."""

    from_index: int
    max_count: int
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class PumpHistory:
    """``next_index`` is the number of entries the pump holds; ``entries`` start at the requested index."""

    next_index: int
    entries: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class PumpStatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class PumpStatusReport:
    flags: PumpFlag
    reservoir_mu: int | None
    active_basal_mu_per_h: int | None
    device_time_min: float


Payload = Union[
    Ack, Nak, InfoRequest, Info, CgmReading, CgmRecordsRequest, CgmRecords, CgmStatusRequest, CgmStatus,
    PumpCommand, PumpResult, PumpHistoryRequest, PumpHistory, PumpStatusRequest, PumpStatusReport,
]

_TYPE_OF: dict[type, MsgType] = {
    Ack: MsgType.ACK, Nak: MsgType.NAK, InfoRequest: MsgType.INFO_REQ, Info: MsgType.INFO,
    CgmReading: MsgType.CGM_READING, CgmRecordsRequest: MsgType.CGM_RECORDS_REQ, CgmRecords: MsgType.CGM_RECORDS,
    CgmStatusRequest: MsgType.CGM_STATUS_REQ, CgmStatus: MsgType.CGM_STATUS, PumpCommand: MsgType.PUMP_COMMAND,
    PumpResult: MsgType.PUMP_RESULT, PumpHistoryRequest: MsgType.PUMP_HISTORY_REQ, PumpHistory: MsgType.PUMP_HISTORY,
    PumpStatusRequest: MsgType.PUMP_STATUS_REQ, PumpStatusReport: MsgType.PUMP_STATUS,
}
RESPONSE_TYPE: dict[MsgType, MsgType] = {
    MsgType.INFO_REQ: MsgType.INFO,
    MsgType.CGM_RECORDS_REQ: MsgType.CGM_RECORDS,
    MsgType.CGM_STATUS_REQ: MsgType.CGM_STATUS,
    MsgType.PUMP_COMMAND: MsgType.PUMP_RESULT,
    MsgType.PUMP_HISTORY_REQ: MsgType.PUMP_HISTORY,
    MsgType.PUMP_STATUS_REQ: MsgType.PUMP_STATUS,
}
"""Request type -> the response type that confirms it (the response echoes the request's SEQ)."""


@dataclass(frozen=True, slots=True)
class Message:
    type: MsgType
    seq: int
    payload: Payload


# --------------------------------------------------------------------------------------------------------------
# encoding


def _str(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_COMMAND_ID_BYTES:
        raise ValueError(f"identifier longer than {MAX_COMMAND_ID_BYTES} bytes: {value!r}")
    return bytes([len(raw)]) + raw


def _u32_opt(value: int | None) -> bytes:
    return struct.pack("<I", NONE_U32 if value is None else value)


def _record(r: CgmRecord) -> bytes:
    glucose = GLUCOSE_NAN if not math.isfinite(r.glucose_mg_dl) else int(round(r.glucose_mg_dl * 10))
    glucose = min(glucose, GLUCOSE_NAN)
    if r.trend_mg_dl_per_min is None or not math.isfinite(r.trend_mg_dl_per_min):
        trend = TREND_NONE
    else:
        trend = max(-0x7FFF, min(0x7FFF, int(round(r.trend_mg_dl_per_min * 100))))
    return struct.pack("<IdHhH", r.sequence, r.t_min, glucose, trend, r.status_bits)


def _entry(e: HistoryEntry) -> bytes:
    return (struct.pack("<I", e.index) + _str(e.command_id)
            + struct.pack("<BddI", e.kind, e.start_min, e.end_min, e.amount_mu)
            + _u32_opt(e.rate_mu_per_h) + bytes([e.state]))


def encode_payload(p: Payload) -> bytes:
    """Payload bytes of one message (without TYPE and SEQ)."""
    if isinstance(p, (Ack, InfoRequest, CgmStatusRequest, PumpStatusRequest)):
        return b""
    if isinstance(p, Nak):
        return bytes([p.reason])
    if isinstance(p, Info):
        return bytes([p.device_kind, p.protocol_version]) + _str(p.name)
    if isinstance(p, CgmReading):
        return _record(p.record)
    if isinstance(p, CgmRecordsRequest):
        return struct.pack("<IB", p.from_sequence, p.max_count)
    if isinstance(p, CgmRecords):
        return bytes([len(p.records)]) + b"".join(_record(r) for r in p.records)
    if isinstance(p, CgmStatus):
        return struct.pack("<IIH", p.oldest_sequence, p.next_sequence, p.status_bits)
    if isinstance(p, PumpCommand):
        head = _str(p.command_id) + struct.pack("<dB", p.issued_at_min, p.kind)
        if p.kind == CommandKind.TEMP_BASAL:
            return head + struct.pack("<II", p.rate_mu_per_h, p.duration_s)
        if p.kind == CommandKind.BOLUS:
            return head + struct.pack("<IB", p.amount_mu, p.bolus_kind)
        if p.kind == CommandKind.SUSPEND:
            return head + struct.pack("<I", p.duration_s)
        if p.kind == CommandKind.RESUME:
            return head
        return head + _str(p.target_command_id)
    if isinstance(p, PumpResult):
        tail = b"\x01" + _entry(p.entry) if p.entry is not None else b"\x00"
        return _str(p.command_id) + bytes([p.result]) + tail
    if isinstance(p, PumpHistoryRequest):
        return struct.pack("<IB", p.from_index, p.max_count) + _str(p.command_id)
    if isinstance(p, PumpHistory):
        return struct.pack("<IB", p.next_index, len(p.entries)) + b"".join(_entry(e) for e in p.entries)
    if isinstance(p, PumpStatusReport):
        return bytes([p.flags]) + _u32_opt(p.reservoir_mu) + _u32_opt(p.active_basal_mu_per_h) + struct.pack(
            "<d", p.device_time_min)
    raise TypeError(f"not a protocol payload: {p!r}")


def message_check(data: bytes) -> bytes:
    """The end-to-end check appended to every message: CRC-32 (ISO-HDLC, as zlib) of ``TYPE | SEQ | PAYLOAD``, LE."""
    return zlib.crc32(data).to_bytes(4, "little")


def encode_message(seq: int, payload: Payload) -> bytes:
    """Frame body ``TYPE | SEQ | PAYLOAD | CHECK`` for ``payload`` with sequence number ``seq`` (0..255)."""
    data = bytes([_TYPE_OF[type(payload)], seq & 0xFF]) + encode_payload(payload)
    if len(data) + CHECK_SIZE > MAX_BODY:
        raise ValueError(f"message too long for one frame: {len(data) + CHECK_SIZE} bytes")
    return data + message_check(data)


# --------------------------------------------------------------------------------------------------------------
# decoding


class _Reader:
    def __init__(self, data: bytes, whole: bytes) -> None:
        self.data = data
        self.pos = 0
        self.whole = whole

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError("payload too short", self.whole)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def u8(self) -> int:
        return self.take(1)[0]

    def string(self, allow_empty: bool = False) -> str:
        n = self.u8()
        if n > MAX_COMMAND_ID_BYTES or (n == 0 and not allow_empty):
            raise DecodeError("identifier length out of range", self.whole)
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("identifier is not UTF-8", self.whole) from None

    def time(self) -> float:
        (value,) = self.unpack("<d")
        if not math.isfinite(value):
            raise DecodeError("time is not finite", self.whole)
        return value

    def enum(self, cls: type[enum.IntEnum], what: str) -> enum.IntEnum:
        value = self.u8()
        try:
            return cls(value)
        except ValueError:
            raise DecodeError(f"unknown {what} {value:#04x}", self.whole) from None

    def opt_u32(self, maximum: int, what: str) -> int | None:
        (value,) = self.unpack("<I")
        if value == NONE_U32:
            return None
        if value > maximum:
            raise DecodeError(f"{what} out of range", self.whole)
        return value

    def end(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError("trailing bytes after payload", self.whole)


def _read_record(r: _Reader) -> CgmRecord:
    sequence, t_min, glucose, trend, status = r.unpack("<IdHhH")
    if not math.isfinite(t_min):
        raise DecodeError("time is not finite", r.whole)
    glucose_mg_dl = math.nan if glucose == GLUCOSE_NAN else glucose / 10.0
    if glucose_mg_dl > MAX_GLUCOSE_MG_DL:
        raise DecodeError("glucose out of range", r.whole)
    trend_value = None if trend == TREND_NONE else trend / 100.0
    return CgmRecord(sequence, t_min, glucose_mg_dl, trend_value, status)


def _read_entry(r: _Reader) -> HistoryEntry:
    (index,) = r.unpack("<I")
    command_id = r.string(allow_empty=True)
    kind = r.enum(HistoryKind, "history kind")
    start = r.time()
    end = r.time()
    if end < start:
        raise DecodeError("history entry ends before it starts", r.whole)
    (amount,) = r.unpack("<I")
    if amount > MAX_AMOUNT_MU * 100:
        raise DecodeError("amount out of range", r.whole)
    rate = r.opt_u32(MAX_RATE_MU_PER_H, "rate")
    state = r.enum(EntryState, "entry state")
    return HistoryEntry(index, command_id, kind, start, end, amount, rate, state)  # type: ignore[arg-type]


def _read_command(r: _Reader) -> PumpCommand:
    command_id = r.string()
    issued = r.time()
    kind = r.enum(CommandKind, "command kind")
    if kind == CommandKind.TEMP_BASAL:
        rate, duration = r.unpack("<II")
        if rate > MAX_RATE_MU_PER_H or duration == 0 or duration > 24 * 3600:
            raise DecodeError("temporary basal out of range", r.whole)
        return PumpCommand(command_id, issued, kind, rate_mu_per_h=rate, duration_s=duration)
    if kind == CommandKind.BOLUS:
        (amount,) = r.unpack("<I")
        bolus_kind = r.enum(BolusKindCode, "bolus kind")
        if amount == 0 or amount > MAX_AMOUNT_MU:
            raise DecodeError("bolus out of range", r.whole)
        return PumpCommand(command_id, issued, kind, amount_mu=amount, bolus_kind=bolus_kind)  # type: ignore
    if kind == CommandKind.SUSPEND:
        (duration,) = r.unpack("<I")
        if duration == 0 or duration > 24 * 3600:
            raise DecodeError("suspend duration out of range", r.whole)
        return PumpCommand(command_id, issued, kind, duration_s=duration)
    if kind == CommandKind.RESUME:
        return PumpCommand(command_id, issued, kind)
    return PumpCommand(command_id, issued, kind, target_command_id=r.string())


def _decode_payload(mtype: MsgType, r: _Reader) -> Payload:
    if mtype == MsgType.ACK:
        return Ack()
    if mtype == MsgType.NAK:
        return Nak(r.enum(NakReason, "NAK reason"))  # type: ignore[arg-type]
    if mtype == MsgType.INFO_REQ:
        return InfoRequest()
    if mtype == MsgType.INFO:
        kind = r.enum(DeviceKind, "device kind")
        return Info(kind, r.u8(), r.string(allow_empty=True))  # type: ignore[arg-type]
    if mtype == MsgType.CGM_READING:
        return CgmReading(_read_record(r))
    if mtype == MsgType.CGM_RECORDS_REQ:
        start, count = r.unpack("<IB")
        return CgmRecordsRequest(start, count)
    if mtype == MsgType.CGM_RECORDS:
        n = r.u8()
        if n > MAX_RECORDS_PER_FRAME:
            raise DecodeError("too many records", r.whole)
        return CgmRecords(tuple(_read_record(r) for _ in range(n)))
    if mtype == MsgType.CGM_STATUS_REQ:
        return CgmStatusRequest()
    if mtype == MsgType.CGM_STATUS:
        oldest, nxt, status = r.unpack("<IIH")
        if oldest > nxt:
            raise DecodeError("oldest sequence after next sequence", r.whole)
        return CgmStatus(oldest, nxt, status)
    if mtype == MsgType.PUMP_COMMAND:
        return _read_command(r)
    if mtype == MsgType.PUMP_RESULT:
        command_id = r.string()
        result = r.enum(ResultCode, "result code")
        has_entry = r.u8()
        if has_entry > 1:
            raise DecodeError("bad entry flag", r.whole)
        return PumpResult(command_id, result, _read_entry(r) if has_entry else None)  # type: ignore[arg-type]
    if mtype == MsgType.PUMP_HISTORY_REQ:
        start, count = r.unpack("<IB")
        return PumpHistoryRequest(start, count, r.string(allow_empty=True))
    if mtype == MsgType.PUMP_HISTORY:
        nxt, n = r.unpack("<IB")
        if n > MAX_HISTORY_PER_FRAME:
            raise DecodeError("too many history entries", r.whole)
        return PumpHistory(nxt, tuple(_read_entry(r) for _ in range(n)))
    if mtype == MsgType.PUMP_STATUS_REQ:
        return PumpStatusRequest()
    flags = r.u8()
    if flags & ~0x3F:
        raise DecodeError("unknown pump status flags", r.whole)
    reservoir = r.opt_u32(MAX_AMOUNT_MU * 100, "reservoir")
    basal = r.opt_u32(MAX_RATE_MU_PER_H, "basal rate")
    return PumpStatusReport(PumpFlag(flags), reservoir, basal, r.time())


def decode_message(body: bytes) -> Message:
    """Decode one frame body into a :class:`Message`.

    Raises:
        DecodeError: too short, bad end-to-end check, unknown type, short or trailing payload, impossible value.
    """
    data = bytes(body)
    if len(data) < 2 + CHECK_SIZE:
        raise DecodeError("message too short", data)
    if message_check(data[:-CHECK_SIZE]) != data[-CHECK_SIZE:]:
        raise DecodeError("bad message check", data)
    try:
        mtype = MsgType(data[0])
    except ValueError:
        raise DecodeError(f"unknown message type {data[0]:#04x}", data) from None
    reader = _Reader(data[2:-CHECK_SIZE], data)
    payload = _decode_payload(mtype, reader)
    reader.end()
    return Message(mtype, data[1], payload)


# --------------------------------------------------------------------------------------------------------------
# sequence numbers, retransmission, de-duplication


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait for a confirmation and how often to retransmit (same SEQ, same bytes).

    Attributes:
        timeout_s: wait for the response (or ACK) after each transmission.
        attempts: transmissions in total (the first one included).
    """

    timeout_s: float = 0.25
    attempts: int = 6

    def __post_init__(self) -> None:
        if not self.timeout_s > 0.0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts!r}")


class SequenceCounter:
    """Sender sequence numbers 0..255, wrapping."""

    def __init__(self, start: int = 0) -> None:
        self._next = start & 0xFF

    def next(self) -> int:
        seq = self._next
        self._next = (self._next + 1) & 0xFF
        return seq


class ResponseCache:
    """Device side: remember the response sent for the last few requests, keyed by the exact request body.

    A retransmitted request (identical body, hence identical SEQ) is answered from here without executing it again.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, request_body: bytes) -> bytes | None:
        return self._entries.get(bytes(request_body))

    def put(self, request_body: bytes, response_body: bytes) -> None:
        self._entries[bytes(request_body)] = bytes(response_body)
        self._entries.move_to_end(bytes(request_body))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

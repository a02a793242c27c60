"""IDD History Data records: a compact, project-defined layout (the IDS spec's own event catalogue is not in
``standards.md``; see ``docs/ble.md``, "History records").

Layout of one IDD History Data (0x2B28) notification, little-endian::

    sequence u32 | event type u16 | pump time u32 (minutes on the pump clock) | event data | [E2E counter u8, CRC u16]

Event types (project range 0xF0xx, chosen not to collide with the IDS catalogue):

==========  =================  ==========================================================================
0xF011      TBR_STARTED        TBR type u8, value SFLOAT (U/h or %), duration u16 (min), context u8
0xF012      TBR_ENDED          reason u8 (:class:`EndReason`), insulin delivered during the TBR SFLOAT (U)
0xF021      BOLUS_STARTED      bolus ID u16, programmed amount SFLOAT (U)
0xF022      BOLUS_ENDED        bolus ID u16, delivered amount SFLOAT (U), reason u8 (:class:`EndReason`)
0xF031      THERAPY_STATE      therapy control state u8
0xF041      MAX_BOLUS_SET      max bolus SFLOAT (U)
0xF051      OCCLUSION          (no data)
==========  =================  ==========================================================================

Records are read with the IDD Record Access Control Point (0x2B27) using the generic RACP codec of
:mod:`drivers.codecs.cgms` with a u32 operand (filter type 0x01 = sequence number) and the IDS E2E tail:
:func:`decode_idd_racp` / :func:`encode_idd_racp`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

from drivers.codecs.e2e import Reader, append_e2e, split_e2e
from drivers.codecs.errors import DecodeError
from drivers.codecs.ids import DeliveryContext, TbrType, TherapyControlState
from drivers.codecs.sfloat import pack_sfloat

if TYPE_CHECKING:
    from drivers.codecs.cgms import RacpMessage

__all__ = ["HistoryEvent", "EndReason", "HistoryRecord", "decode_history_record", "encode_history_record",
           "RACP_FILTER_SEQUENCE", "decode_idd_racp", "encode_idd_racp"]

RACP_FILTER_SEQUENCE = 0x01


class HistoryEvent(enum.IntEnum):
    TBR_STARTED = 0xF011
    TBR_ENDED = 0xF012
    BOLUS_STARTED = 0xF021
    BOLUS_ENDED = 0xF022
    THERAPY_STATE = 0xF031
    MAX_BOLUS_SET = 0xF041
    OCCLUSION = 0xF051


class EndReason(enum.IntEnum):
    COMPLETED = 0
    CANCELLED = 1
    REPLACED = 2
    STOPPED = 3
    """Therapy stopped/paused or an occlusion."""


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One history event. Fields not used by ``event`` stay ``None``.

    Attributes:
        sequence: pump-wide, strictly increasing record number.
        event: the event type.
        pump_time_min: minutes on the pump's own clock.
        bolus_id: BOLUS_STARTED / BOLUS_ENDED.
        amount_u: BOLUS_STARTED programmed, BOLUS_ENDED / TBR_ENDED delivered, MAX_BOLUS_SET the maximum.
        tbr_type, tbr_value, duration_min, context: TBR_STARTED.
        reason: TBR_ENDED / BOLUS_ENDED.
        therapy_state: THERAPY_STATE.
    """

    sequence: int
    event: HistoryEvent
    pump_time_min: int
    bolus_id: int | None = None
    amount_u: float | None = None
    tbr_type: TbrType | None = None
    tbr_value: float | None = None
    duration_min: int | None = None
    context: DeliveryContext | None = None
    reason: EndReason | None = None
    therapy_state: TherapyControlState | None = None


def _enum(kind, raw: int, what: str, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return kind(raw)
    except ValueError:
        raise DecodeError(f"impossible value: {what} 0x{raw:X}", data) from None


def _amount(r: Reader, what: str, data: bytes) -> float:
    v = r.sfloat(what)
    if not math.isfinite(v) or v < 0:
        raise DecodeError(f"impossible value: {what} {v}", data)
    return v


def decode_history_record(data: bytes, *, e2e: bool = False) -> tuple[HistoryRecord, int | None]:
    raw = bytes(data)
    if e2e:
        body, counter = split_e2e(raw, "IDD history record")
    else:
        body, counter = raw, None
    r = Reader(body, "IDD history record")
    seq = r.u32("sequence")
    raw_event = r.u16("event type")
    try:
        event = HistoryEvent(raw_event)
    except ValueError:
        raise DecodeError(f"unknown op code: history event 0x{raw_event:04X}", raw) from None
    t = r.u32("pump time")
    rec: HistoryRecord
    if event is HistoryEvent.TBR_STARTED:
        t_type = _enum(TbrType, r.u8("TBR type"), "TBR type", raw)
        value = _amount(r, "TBR value", raw)
        duration = r.u16("duration")
        context = _enum(DeliveryContext, r.u8("context"), "delivery context", raw)
        rec = HistoryRecord(seq, event, t, tbr_type=t_type, tbr_value=value, duration_min=duration, context=context)
    elif event is HistoryEvent.TBR_ENDED:
        reason = _enum(EndReason, r.u8("reason"), "end reason", raw)
        rec = HistoryRecord(seq, event, t, reason=reason, amount_u=_amount(r, "delivered", raw))
    elif event is HistoryEvent.BOLUS_STARTED:
        rec = HistoryRecord(seq, event, t, bolus_id=r.u16("bolus id"), amount_u=_amount(r, "programmed", raw))
    elif event is HistoryEvent.BOLUS_ENDED:
        bolus_id = r.u16("bolus id")
        amount = _amount(r, "delivered", raw)
        rec = HistoryRecord(seq, event, t, bolus_id=bolus_id, amount_u=amount,
                            reason=_enum(EndReason, r.u8("reason"), "end reason", raw))
    elif event is HistoryEvent.THERAPY_STATE:
        state = _enum(TherapyControlState, r.u8("state"), "therapy control state", raw)
        rec = HistoryRecord(seq, event, t, therapy_state=state)
    elif event is HistoryEvent.MAX_BOLUS_SET:
        rec = HistoryRecord(seq, event, t, amount_u=_amount(r, "max bolus", raw))
    else:
        rec = HistoryRecord(seq, event, t)
    r.end()
    return rec, counter


def _amt(v: float | None) -> bytes:
    value = 0.0 if v is None else v
    return pack_sfloat(value, -2 if abs(value) <= 20.45 else None)


def encode_history_record(rec: HistoryRecord, *, e2e: bool = False, counter: int | None = None) -> bytes:
    body = rec.sequence.to_bytes(4, "little") + int(rec.event).to_bytes(2, "little")
    body += rec.pump_time_min.to_bytes(4, "little")
    e = rec.event
    if e is HistoryEvent.TBR_STARTED:
        body += bytes([rec.tbr_type or TbrType.ABSOLUTE]) + _amt(rec.tbr_value)
        body += (rec.duration_min or 0).to_bytes(2, "little") + bytes([rec.context or DeliveryContext.AP_CONTROLLER])
    elif e is HistoryEvent.TBR_ENDED:
        body += bytes([rec.reason or EndReason.COMPLETED]) + _amt(rec.amount_u)
    elif e is HistoryEvent.BOLUS_STARTED:
        body += (rec.bolus_id or 0).to_bytes(2, "little") + _amt(rec.amount_u)
    elif e is HistoryEvent.BOLUS_ENDED:
        body += (rec.bolus_id or 0).to_bytes(2, "little") + _amt(rec.amount_u)
        body += bytes([rec.reason or EndReason.COMPLETED])
    elif e is HistoryEvent.THERAPY_STATE:
        body += bytes([rec.therapy_state or TherapyControlState.RUN])
    elif e is HistoryEvent.MAX_BOLUS_SET:
        body += _amt(rec.amount_u)
    return append_e2e(body, counter or 0) if e2e else body


def decode_idd_racp(data: bytes, *, e2e: bool = False) -> tuple["RacpMessage", int | None]:
    """IDD Record Access Control Point: the generic RACP layout with a u32 sequence-number operand (filter type
    0x01) and, with E2E, the IDS tail (counter, CRC). Returns ``(message, counter)``."""
    from drivers.codecs.cgms import decode_racp

    if e2e:
        body, counter = split_e2e(data, "IDD RACP")
    else:
        body, counter = bytes(data), None
    return decode_racp(body, operand_size=4), counter


def encode_idd_racp(msg: "RacpMessage", *, e2e: bool = False, counter: int | None = None) -> bytes:
    from drivers.codecs.cgms import encode_racp

    body = encode_racp(msg, operand_size=4)
    return append_e2e(body, counter or 0) if e2e else body

"""Messages of the bench serial protocol: round trips, the hex examples of docs/serial-protocol.md, status mapping,
rounding, and the device-side response cache."""

from __future__ import annotations

import math
import re

import pytest

from drivers.codecs.errors import DecodeError
from drivers.serial.framing import decode_frame, encode_frame
from drivers.serial.protocol import (
    RESPONSE_TYPE, Ack, BolusKindCode, CgmReading, CgmRecord, CgmRecords, CgmRecordsRequest, CgmStatus,
    CgmStatusRequest, CommandKind, DeviceKind, EntryState, HistoryEntry, HistoryKind, Info, InfoRequest, MsgType,
    Nak, NakReason, PumpCommand, PumpFlag, PumpHistory, PumpHistoryRequest, PumpResult, PumpStatusReport,
    PumpStatusRequest, ResponseCache, ResultCode, RetryPolicy, SequenceCounter, cgm_status_bits, decode_message,
    encode_message, map_cgm_status, message_check, u_to_mu,
)
from drivers.serial.pump_client import delivery_record, encode_command
from safety.commands import Bolus, BolusKind, DeliveryKind, DeliveryStatus, Resume, TempBasal, _approve
from safety.readings import ReadingStatus

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "serial-protocol.md"

ENTRY = HistoryEntry(7, "cmd-1", HistoryKind.BOLUS, 600.0, 600.0, 1500, None, EntryState.COMPLETE)
RECORD = CgmRecord(42, 1440.0, 123.4, -1.25, 0)

EXAMPLES = [
    (0x11, InfoRequest(),
     "7E 06 10 11 5C 20 AB 61 37 AE 7E"),
    (0x11, Info(DeviceKind.CGM, 1, "cgm1"),
     "7E 0D 11 11 01 01 04 63 67 6D 31 60 9D 8E 90 06 87 7E"),
    (0x05, CgmReading(RECORD),
     "7E 18 20 05 2A 00 00 00 00 00 00 00 00 80 96 40 D2 04 83 FF 00 00 1F C5 D3 44 93 DE "
     "7E"),
    (0x05, Ack(),
     "7E 06 06 05 F6 41 E9 67 CF 5C 7E"),
    (0x12, CgmRecordsRequest(40, 2),
     "7E 0B 21 12 28 00 00 00 02 2F 4B 07 A5 8A 1C 7E"),
    (0x13, CgmStatus(0, 43, 0),
     "7E 10 24 13 00 00 00 00 2B 00 00 00 00 00 D7 71 9D 3A AF D5 7E"),
    (0x20, PumpCommand("cmd-1", 600.0, CommandKind.BOLUS, amount_mu=1500, bolus_kind=BolusKindCode.MEAL),
     "7E 1A 30 20 05 63 6D 64 2D 31 00 00 00 00 00 C0 82 40 02 DC 05 00 00 02 8C E2 B2 B7 "
     "3C 95 7E"),
    (0x20, PumpResult("cmd-1", ResultCode.OK, ENTRY),
     "7E 32 31 20 05 63 6D 64 2D 31 00 01 07 00 00 00 05 63 6D 64 2D 31 02 00 00 00 00 00 "
     "C0 82 40 00 00 00 00 00 C0 82 40 DC 05 00 00 FF FF FF FF 01 E7 B3 EE 75 90 9A 7E"),
    (0x21, PumpCommand("tbr-9", 605.0, CommandKind.TEMP_BASAL, rate_mu_per_h=800, duration_s=1800),
     "7E 1D 30 21 05 74 62 72 2D 39 00 00 00 00 00 E8 82 40 01 20 03 00 00 08 07 00 00 66 "
     "2D B5 AA FA D6 7E"),
    (0x22, PumpHistoryRequest(7, 2),
     "7E 0C 32 22 07 00 00 00 02 00 E6 F1 DB D5 5B A1 7E"),
    (0x22, PumpHistoryRequest(0, 1, "cmd-1"),
     "7E 11 32 22 00 00 00 00 01 05 63 6D 64 2D 31 EC DA 15 43 C8 3A 7E"),
    (0x23, Nak(NakReason.MALFORMED),
     "7E 07 15 23 01 7D 5E FF 02 2C 9B CD 7E"),
]


@pytest.mark.parametrize("seq,payload,hexframe", EXAMPLES, ids=[type(e[1]).__name__ for e in EXAMPLES])
def test_document_examples(seq: int, payload: object, hexframe: str) -> None:
    frame = bytes.fromhex(hexframe)
    assert encode_frame(encode_message(seq, payload)) == frame  # type: ignore[arg-type]
    msg = decode_message(decode_frame(frame))
    assert msg.seq == seq and msg.payload == payload
    assert _in_doc(hexframe), "example missing from docs/serial-protocol.md"


def _in_doc(hexframe: str) -> bool:
    text = re.sub(r"\s+", " ", DOC.read_text().replace("`", " "))
    return hexframe in text


ROUND_TRIPS = [
    Ack(), Nak(NakReason.BUSY), InfoRequest(), Info(DeviceKind.PUMP, 1, ""),
    CgmReading(CgmRecord(0, 0.0, math.nan, None, 0x3FF)), CgmRecordsRequest(2**32 - 1, 255),
    CgmRecords(tuple(CgmRecord(i, 5.0 * i, 100.0 + i, 0.5, 0) for i in range(12))), CgmRecords(()),
    CgmStatusRequest(), CgmStatus(3, 3, 0),
    PumpCommand("a" * 64, 1.5, CommandKind.SUSPEND, duration_s=1800),
    PumpCommand("r", 2.0, CommandKind.RESUME),
    PumpCommand("c", 2.0, CommandKind.CANCEL_BOLUS, target_command_id="cmd-1"),
    PumpResult("x", ResultCode.REJECTED_OCCLUSION, None),
    PumpResult("x", ResultCode.DUPLICATE, ENTRY),
    PumpHistory(9, (ENTRY, HistoryEntry(8, "", HistoryKind.BASAL, 1.0, 31.0, 400, 800, EntryState.CANCELLED))),
    PumpStatusRequest(), PumpStatusReport(PumpFlag.OCCLUDED | PumpFlag.TBR_ACTIVE, None, 800, 12.5),
]


@pytest.mark.parametrize("payload", ROUND_TRIPS, ids=[type(p).__name__ for p in ROUND_TRIPS])
def test_round_trip(payload: object) -> None:
    body = encode_message(200, payload)  # type: ignore[arg-type]
    assert len(body) <= 250
    msg = decode_message(body)
    assert msg.seq == 200
    if isinstance(payload, CgmReading):
        assert math.isnan(msg.payload.record.glucose_mg_dl)  # type: ignore[union-attr]
        assert msg.payload.record.trend_mg_dl_per_min is None  # type: ignore[union-attr]
    else:
        assert msg.payload == payload


def test_every_request_type_has_a_response_type() -> None:
    assert RESPONSE_TYPE[MsgType.PUMP_COMMAND] == MsgType.PUMP_RESULT
    assert set(RESPONSE_TYPE) == {MsgType.INFO_REQ, MsgType.CGM_RECORDS_REQ, MsgType.CGM_STATUS_REQ,
                                  MsgType.PUMP_COMMAND, MsgType.PUMP_HISTORY_REQ, MsgType.PUMP_STATUS_REQ}


def test_cgm_status_mapping_round_trips() -> None:
    assert map_cgm_status(0) == ReadingStatus.OK
    assert map_cgm_status(1 << 8) == ReadingStatus.WARMUP
    assert map_cgm_status(0xFC00) == ReadingStatus.OK  # reserved bits ignored
    every = ReadingStatus(0)
    for flag in ReadingStatus:
        if flag not in (ReadingStatus.OK, ReadingStatus.BACKFILLED):
            every |= flag
    assert map_cgm_status(cgm_status_bits(every)) == every
    assert cgm_status_bits(ReadingStatus.BACKFILLED) == 0


def test_insulin_is_rounded_down_to_milli_units() -> None:
    assert u_to_mu(0.15) == 150
    assert u_to_mu(0.0999) == 99
    assert u_to_mu(1.23456) == 1234
    assert u_to_mu(-1.0) == 0 and u_to_mu(math.nan) == 0


def test_approved_commands_are_encoded_with_their_id() -> None:
    bolus = encode_command(_approve("b-1", 10.0, Bolus(0.35, BolusKind.CORRECTION)))
    assert (bolus.command_id, bolus.kind, bolus.amount_mu, bolus.bolus_kind) == (
        "b-1", CommandKind.BOLUS, 350, BolusKindCode.CORRECTION)
    tbr = encode_command(_approve("t-1", 10.0, TempBasal(1.05, 30.0)))
    assert (tbr.rate_mu_per_h, tbr.duration_s) == (1050, 1800)
    assert encode_command(_approve("r-1", 10.0, Resume())).kind == CommandKind.RESUME


def test_history_entry_to_delivery_record() -> None:
    rec = delivery_record(HistoryEntry(1, "t", HistoryKind.BASAL, 0.0, 30.0, 500, 1000, EntryState.IN_PROGRESS),
                          DeliveryStatus.CONFIRMED)
    assert (rec.kind, rec.amount_u, rec.rate_u_per_h, rec.end_min) == (DeliveryKind.BASAL, 0.5, 1.0, 30.0)
    assert delivery_record(ENTRY, DeliveryStatus.CONFIRMED).amount_u == 1.5


def test_decode_error_carries_reason_and_data() -> None:
    body = b"\x99\x01" + message_check(b"\x99\x01")
    with pytest.raises(DecodeError) as info:
        decode_message(body)
    assert info.value.reason.startswith("unknown message type")
    assert info.value.data == body


def test_every_message_carries_an_end_to_end_check() -> None:
    body = encode_message(1, PumpCommand("b", 0.0, CommandKind.BOLUS, amount_mu=1000))
    assert body[-4:] == message_check(body[:-4])
    for i in range(len(body)):
        bad = bytearray(body)
        bad[i] ^= 0x10
        with pytest.raises(DecodeError):
            decode_message(bytes(bad))
    # two changes that a weaker check could miss: the amount and a compensating byte are still caught
    bad = bytearray(body)
    bad[-9] ^= 0x01
    bad[-8] ^= 0x01
    with pytest.raises(DecodeError, match="bad message check"):
        decode_message(bytes(bad))


def test_sequence_counter_wraps() -> None:
    seq = SequenceCounter(254)
    assert [seq.next() for _ in range(4)] == [254, 255, 0, 1]


def test_response_cache_answers_identical_requests_only() -> None:
    cache = ResponseCache(size=2)
    cache.put(b"req1", b"resp1")
    assert cache.get(b"req1") == b"resp1"
    assert cache.get(b"req2") is None
    cache.put(b"req2", b"r2")
    cache.put(b"req3", b"r3")
    assert cache.get(b"req1") is None  # evicted


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(timeout_s=0.0)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)

"""IDS codecs: E2E counter/CRC, status, status changed, annunciation, features, status reader CP, command CP,
history records, and malformed input."""

from __future__ import annotations

import pytest

from drivers.codecs.cgms import RacpMessage, RacpOp, RacpOperator, decode_racp, encode_racp
from drivers.codecs.crc import crc16_mcrf4xx
from drivers.codecs.e2e import E2ECounter, append_e2e, split_e2e
from drivers.codecs.errors import DecodeError
from drivers.codecs.ids import (
    ActiveBasalRate, ActiveBolusIds, Annunciation, AnnunciationStatusValue, AnnunciationType, BolusId, BolusType,
    CcOp, CcResponseCode, CcResult, CcSimple, DeliveredInsulin, DeliveryContext, IdsFeatureBits, IdsFeatures,
    IdsStatus, InsulinOnBoard, MaxBolus, OperationalState, SetBolus, SetTbr, SetTherapyControlState, SrOp, SrRequest,
    SrResponseCode, SrResult, StatusChangedFlags, TbrInfo, TbrType, TherapyControlState, TotalDailyInsulin,
    decode_annunciation, decode_command, decode_ids_features, decode_ids_status, decode_status_changed,
    decode_status_reader, encode_annunciation, encode_command, encode_ids_features, encode_ids_status,
    encode_status_changed, encode_status_reader,
)
from drivers.codecs.ids_history import (
    EndReason, HistoryEvent, HistoryRecord, decode_history_record, decode_idd_racp, encode_history_record,
    encode_idd_racp,
)


def test_e2e_tail_layout():
    data = append_e2e(b"\x11\x11", 7)
    assert data[:3] == b"\x11\x11\x07"
    assert int.from_bytes(data[3:], "little") == crc16_mcrf4xx(b"\x11\x11\x07")
    assert split_e2e(data) == (b"\x11\x11", 7)
    with pytest.raises(DecodeError, match="bad CRC"):
        split_e2e(data[:-1] + bytes([data[-1] ^ 0x80]))
    with pytest.raises(DecodeError, match="short"):
        split_e2e(b"\x01\x02")


def test_e2e_counter_wraps_and_rejects_repeats():
    c = E2ECounter(254)
    assert [c.tx(), c.tx(), c.tx()] == [254, 255, 0]
    rx = E2ECounter()
    assert rx.rx(255) == 0
    assert rx.rx(0) == 0          # wrap is not a gap
    assert rx.rx(3) == 2          # two lost packets
    with pytest.raises(DecodeError, match="repeated"):
        rx.rx(3)


@pytest.mark.parametrize("e2e", [False, True])
def test_status_and_status_changed(e2e):
    s = IdsStatus(TherapyControlState.RUN, OperationalState.READY, 153.2, True)  # SFLOAT: 4 digits
    assert decode_ids_status(encode_ids_status(s, e2e=e2e, counter=4), e2e=e2e) == (s, 4 if e2e else None)
    flags = StatusChangedFlags.ANNUNCIATION_STATUS | StatusChangedFlags.HISTORY_EVENT_RECORDED
    assert decode_status_changed(encode_status_changed(flags, e2e=e2e, counter=1), e2e=e2e)[0] == flags


def test_status_rejects_unknown_states_and_negative_reservoir():
    for data in (bytes([0x11, 0x96, 0, 0, 1]), bytes([0x55, 0x11, 0, 0, 1]), bytes([0x55, 0x96, 0xFF, 0x0F, 1])):
        with pytest.raises(DecodeError, match="impossible value"):
            decode_ids_status(data)
    with pytest.raises(DecodeError, match="oversized"):
        decode_ids_status(bytes([0x55, 0x96, 0, 0, 1, 0]))


@pytest.mark.parametrize("e2e", [False, True])
@pytest.mark.parametrize("annunciation", [
    None,
    Annunciation(1, AnnunciationType.OCCLUSION, AnnunciationStatusValue.PENDING),
    Annunciation(0xBEEF, AnnunciationType.RESERVOIR_LOW, AnnunciationStatusValue.SNOOZED, (20, 1, 2, 3, 4)),
])
def test_annunciation(annunciation, e2e):
    data = encode_annunciation(annunciation, e2e=e2e, counter=2)
    assert decode_annunciation(data, e2e=e2e)[0] == annunciation


def test_annunciation_errors():
    for data in (b"\x02", b"\x41", bytes([1, 1, 0, 0x3C, 0, 0x99])):
        with pytest.raises(DecodeError, match="impossible value"):
            decode_annunciation(data)


def test_features_crc_comes_first():
    f = IdsFeatures(IdsFeatureBits.E2E_PROTECTION | IdsFeatureBits.TBR_ABSOLUTE | IdsFeatureBits.FAST_BOLUS, 100.0)
    data = encode_ids_features(f, counter=9)
    assert len(data) == 8 and data[2] == 9
    assert int.from_bytes(data[:2], "little") == crc16_mcrf4xx(data[2:])
    assert decode_ids_features(data) == (f, 9)
    with pytest.raises(DecodeError, match="bad CRC"):
        decode_ids_features(b"\x00\x00" + data[2:])
    plain = encode_ids_features(IdsFeatures(IdsFeatureBits.TBR_ABSOLUTE, 200.0))
    assert plain[:2] == b"\xff\xff" and decode_ids_features(plain)[0].concentration_iu_per_ml == 200.0
    with pytest.raises(DecodeError, match="impossible value"):
        decode_ids_features(b"\xff\xff\x00" + (0x07FF).to_bytes(2, "little") + b"\x04\x00\x00")


STATUS_READER = [
    SrRequest(SrOp.GET_ACTIVE_BASAL_RATE), SrRequest(SrOp.GET_DELIVERED_INSULIN), SrRequest(SrOp.GET_IOB),
    SrRequest(SrOp.GET_ACTIVE_BOLUS_IDS), SrRequest(SrOp.GET_TOTAL_DAILY_INSULIN),
    SrRequest(SrOp.RESET_STATUS, flags=0x0008), SrRequest(SrOp.GET_ACTIVE_BOLUS_DELIVERY, bolus_id=3, selection=1),
    SrResponseCode(SrOp.GET_IOB, SrResult.OP_CODE_NOT_SUPPORTED),
    ActiveBolusIds(()), ActiveBolusIds((1, 2, 0xFFFF)),
    ActiveBasalRate(1, 0.8),
    ActiveBasalRate(1, 0.8, TbrInfo(TbrType.ABSOLUTE, 1.25, 30, 17), 2, DeliveryContext.AP_CONTROLLER),
    TotalDailyInsulin(12.5, 18.0, 30.5), DeliveredInsulin(1234.56, 7890.12), InsulinOnBoard(2.5),
    InsulinOnBoard(2.5, 180),
]


@pytest.mark.parametrize("msg", STATUS_READER, ids=repr)
@pytest.mark.parametrize("e2e", [False, True])
def test_status_reader_roundtrip(msg, e2e):
    assert decode_status_reader(encode_status_reader(msg, e2e=e2e, counter=5), e2e=e2e) == (msg, 5 if e2e else None)


def test_status_reader_bytes_and_errors():
    assert encode_status_reader(SrRequest(SrOp.GET_DELIVERED_INSULIN)) == b"\xc0\x03"
    assert ActiveBasalRate(1, 0.8, TbrInfo(TbrType.ABSOLUTE, 1.25, 30, 17)).effective_rate_u_per_h == 1.25
    assert ActiveBasalRate(1, 0.8, TbrInfo(TbrType.RELATIVE, 50, 30, 17)).effective_rate_u_per_h == 0.4
    for data, reason in [(b"\x03", "short"), (b"\x00\x00", "unknown op code"), (b"\x59\x03", "unknown op code"),
                         (b"\xc0\x03\x00", "oversized"), (b"\x03\x03\xc0\x03\x55", "impossible value"),
                         (b"\x3f\x03\x02\x01\x00", "short"), (b"\x6a\x03\x08\x01\x08\x00", "impossible value")]:
        with pytest.raises(DecodeError) as info:
            decode_status_reader(data)
        assert info.value.reason.startswith(reason), data


COMMANDS = [
    SetTbr(TbrType.ABSOLUTE, 1.35, 30),
    SetTbr(TbrType.ABSOLUTE, 0.0, 30, context=DeliveryContext.AP_CONTROLLER, change=True),
    SetTbr(TbrType.RELATIVE, 150.0, 120, template_number=2, context=None),
    SetBolus(BolusType.FAST, 2.35),
    SetBolus(BolusType.FAST, 0.05, reason_correction=True),
    SetBolus(BolusType.MULTIWAVE, 1.0, 2.0, 60, delay_min=15, template_number=1, activation_type=0x33,
             reason_meal=True),
    BolusId(CcOp.CANCEL_BOLUS, 7), BolusId(CcOp.SET_BOLUS_RESPONSE, 7), BolusId(CcOp.CANCEL_BOLUS_RESPONSE, 7),
    MaxBolus(CcOp.SET_MAX_BOLUS, 10.0), MaxBolus(CcOp.MAX_BOLUS_RESPONSE, 10.0),
    SetTherapyControlState(TherapyControlState.STOP),
    CcSimple(CcOp.CANCEL_TBR), CcSimple(CcOp.GET_MAX_BOLUS),
    CcResponseCode(CcOp.SET_BOLUS, CcResult.MAX_BOLUS_NUMBER_REACHED),
]


@pytest.mark.parametrize("msg", COMMANDS, ids=repr)
@pytest.mark.parametrize("e2e", [False, True])
def test_command_roundtrip(msg, e2e):
    assert decode_command(encode_command(msg, e2e=e2e, counter=250), e2e=e2e) == (msg, 250 if e2e else None)


def test_set_tbr_bytes_carry_the_ap_controller_context():
    data = encode_command(SetTbr(TbrType.ABSOLUTE, 1.35, 30))
    assert data == bytes([0xFF, 0x0F, 0x02, 0x33]) + (0xE087).to_bytes(2, "little") + b"\x1e\x00\x55"
    assert encode_command(CcResponseCode(CcOp.SET_TBR, CcResult.SUCCESS)) == bytes.fromhex("550fff0f0f")


@pytest.mark.parametrize("data, reason", [
    (b"\xff", "short"),
    (b"\x00\x00", "unknown op code"),
    (bytes.fromhex("ff0f00990000001e00"), "impossible value"),     # TBR type 0x99
    (bytes.fromhex("ff0f0033ff0f1e00"), "impossible value"),       # negative TBR rate
    (bytes.fromhex("ff0f003364000000"), "impossible value"),       # duration 0
    (bytes.fromhex("ff0f02336400 1e0011"), "impossible value"),    # context 0x11
    (bytes.fromhex("ff0f0833 6400 1e00"), "impossible value"),     # reserved flag
    (bytes.fromhex("4b11003300000000 0000"), "impossible value"),  # bolus of 0 U
    (bytes.fromhex("4b1100330a000a00 0000"), "impossible value"),  # fast bolus with an extended part
    (bytes.fromhex("4b11003cff07000000 00"), "impossible value"),  # NaN amount
    (bytes.fromhex("11110a"), "oversized"),
    (bytes.fromhex("550fff0f99"), "impossible value"),             # unknown result code
])
def test_malformed_commands(data, reason):
    with pytest.raises(DecodeError) as info:
        decode_command(data)
    assert info.value.reason.startswith(reason)


def test_command_with_bad_crc():
    data = encode_command(SetBolus(BolusType.FAST, 1.0), e2e=True, counter=1)
    with pytest.raises(DecodeError, match="bad CRC"):
        decode_command(data[:-2] + b"\x00\x00", e2e=True)
    with pytest.raises(DecodeError, match="bad CRC"):
        decode_command(data[:-3] + b"\x02" + data[-2:], e2e=True)  # counter changed, CRC not


HISTORY = [
    HistoryRecord(1, HistoryEvent.TBR_STARTED, 10, tbr_type=TbrType.ABSOLUTE, tbr_value=1.35, duration_min=30,
                  context=DeliveryContext.AP_CONTROLLER),
    HistoryRecord(2, HistoryEvent.TBR_ENDED, 25, reason=EndReason.CANCELLED, amount_u=0.34),
    HistoryRecord(3, HistoryEvent.BOLUS_STARTED, 30, bolus_id=4, amount_u=2.35),
    HistoryRecord(4, HistoryEvent.BOLUS_ENDED, 31, bolus_id=4, amount_u=2.35, reason=EndReason.COMPLETED),
    HistoryRecord(5, HistoryEvent.THERAPY_STATE, 40, therapy_state=TherapyControlState.PAUSE),
    HistoryRecord(6, HistoryEvent.MAX_BOLUS_SET, 41, amount_u=10.0),
    HistoryRecord(0xFFFFFFFF, HistoryEvent.OCCLUSION, 0xFFFFFFFF),
]


@pytest.mark.parametrize("rec", HISTORY, ids=lambda r: r.event.name)
@pytest.mark.parametrize("e2e", [False, True])
def test_history_roundtrip(rec, e2e):
    assert decode_history_record(encode_history_record(rec, e2e=e2e, counter=3), e2e=e2e)[0] == rec


def test_history_errors_and_racp_with_sequence_filter():
    for data, reason in [(b"\x01\x00\x00\x00", "short"), (bytes.fromhex("01000000 0100 00000000"), "unknown op code"),
                         (bytes.fromhex("01000000 21f0 00000000 0100 ff0f"), "impossible value"),
                         (bytes.fromhex("01000000 51f0 00000000 00"), "oversized")]:
        with pytest.raises(DecodeError) as info:
            decode_history_record(data)
        assert info.value.reason.startswith(reason), data
    req = RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.GREATER_OR_EQUAL, 1, low=70000)
    data = encode_idd_racp(req, e2e=True, counter=4)
    assert data[:7] == bytes.fromhex("01030170110100") and data[7] == 4
    assert decode_idd_racp(data, e2e=True) == (req, 4)
    assert decode_racp(encode_racp(req, operand_size=4), operand_size=4) == req


# ---------------------------------------------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_units = st.integers(1, 2045).map(lambda n: n / 100)  # 0.01 .. 20.45 U, exactly representable


@given(_units, st.integers(1, 0xFFFF), st.booleans(), st.integers(0, 255), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_tbr_roundtrips(rate, duration, change, counter, e2e):
    msg = SetTbr(TbrType.ABSOLUTE, rate, duration, change=change)
    assert decode_command(encode_command(msg, e2e=e2e, counter=counter), e2e=e2e)[0] == msg


@given(_units, st.booleans(), st.booleans(), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_any_fast_bolus_roundtrips(amount, meal, correction, counter):
    msg = SetBolus(BolusType.FAST, amount, reason_meal=meal, reason_correction=correction)
    assert decode_command(encode_command(msg, e2e=True, counter=counter), e2e=True) == (msg, counter)

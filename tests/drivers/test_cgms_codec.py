"""CGMS codecs: the standards.md record vector, every flag combination in both octet orders, feature, status,
session times, SOCP and RACP, and malformed input."""

from __future__ import annotations

import itertools
import math

import pytest

from drivers.codecs.cgms import (
    CalibrationRecord, CalTempOctet, CgmFeature, CgmFeatureBits, CgmMeasurement, CgmStatus, OctetOrder,
    RacpMessage, RacpOp, RacpOperator, RacpResult, SessionStartTime, SocpMessage, SocpOp, SocpResult, StatusOctet,
    WarningOctet, decode_feature, decode_measurements, decode_racp, decode_session_run_time,
    decode_session_start_time, decode_socp, decode_status, encode_feature, encode_measurement,
    encode_measurements, encode_racp, encode_session_run_time, encode_session_start_time, encode_socp,
    encode_status,
)
from drivers.codecs.crc import crc16_mcrf4xx
from drivers.codecs.errors import DecodeError

VECTOR = bytes.fromhex("08 00 78 00 05 00 0d e8")


def test_crc_check_value():
    assert crc16_mcrf4xx(b"123456789") == 0x6F91


def test_standard_record_vector():
    assert encode_measurement(CgmMeasurement(120, 5), e2e=True) == VECTOR
    (m,) = decode_measurements(VECTOR, e2e=True)
    assert m == CgmMeasurement(120.0, 5)


def test_vector_with_bad_crc_is_rejected():
    bad = VECTOR[:-1] + bytes([VECTOR[-1] ^ 1])
    with pytest.raises(DecodeError, match="bad CRC"):
        decode_measurements(bad, e2e=True)


def _all_variants():
    for status, cal, warn, trend, quality in itertools.product(
            (None, StatusOctet.BATTERY_LOW | StatusOctet.SENSOR_MALFUNCTION),
            (None, CalTempOctet.CALIBRATION_REQUIRED),
            (None, WarningOctet.BELOW_DEVICE_RANGE | WarningOctet.ABOVE_HYPER),
            (None, -1.5),
            (None, 87.0)):
        yield CgmMeasurement(104.0, 1234, status, cal, warn, trend, quality)


@pytest.mark.parametrize("order", list(OctetOrder))
@pytest.mark.parametrize("e2e", [False, True])
def test_every_flag_combination_roundtrips(order, e2e):
    variants = list(_all_variants())
    assert len(variants) == 32
    for m in variants:
        data = encode_measurement(m, e2e=e2e, octet_order=order)
        assert data[0] == len(data)
        assert decode_measurements(data, e2e=e2e, octet_order=order) == (m,)


@pytest.mark.parametrize("e2e", [False, True])
def test_several_records_per_notification(e2e):
    ms = [CgmMeasurement(100.0 + i, 5 * i, StatusOctet(0) if i % 2 else None, trend_mg_dl_per_min=0.5)
          for i in range(3)]
    data = encode_measurements(ms, e2e=e2e)
    assert decode_measurements(data, e2e=e2e) == tuple(ms)


def test_octet_order_matters():
    m = CgmMeasurement(90.0, 7, StatusOctet.SESSION_STOPPED, None, WarningOctet.BELOW_HYPO)
    status_first = encode_measurement(m)
    warning_first = encode_measurement(m, octet_order=OctetOrder.WARNING_FIRST)
    assert status_first[6:8] == bytes([0x01, 0x04])
    assert warning_first[6:8] == bytes([0x04, 0x01])
    misread = decode_measurements(warning_first)[0]  # read with the wrong order: the octets swap
    assert misread.status == StatusOctet(0x04) and misread.warning == WarningOctet(0x01)


def test_special_glucose_value_is_kept_as_nan():
    data = bytes([6, 0]) + (0x07FF).to_bytes(2, "little") + (10).to_bytes(2, "little")
    (m,) = decode_measurements(data)
    assert math.isnan(m.glucose_mg_dl)


@pytest.mark.parametrize("data, reason", [
    (b"", "short"),
    (b"\x06", "short"),
    (bytes.fromhex("0600780005"), "short"),                       # size says 6, only 5 bytes
    (bytes.fromhex("07007800050000"), "impossible value"),        # size 7 but flags imply 6
    (bytes.fromhex("0600780005000600"), "short"),                 # second record truncated
    (bytes.fromhex("06007808050000"), "impossible value"),        # negative glucose (0x0878 = -1928), +junk
    (bytes.fromhex("0602780005007f"), "impossible value"),        # quality flag, size wrong
])
def test_malformed_measurements(data, reason):
    with pytest.raises(DecodeError) as info:
        decode_measurements(data)
    assert info.value.reason.startswith(reason)


def test_zero_trend_is_valid():
    (m,) = decode_measurements(bytes.fromhex("0801780005000000"))
    assert m.trend_mg_dl_per_min == 0.0


def test_negative_glucose_and_bad_quality_are_impossible():
    neg = bytes([6, 0]) + (0x0FFF).to_bytes(2, "little") + b"\x05\x00"  # mantissa -1
    with pytest.raises(DecodeError, match="negative glucose"):
        decode_measurements(neg)
    q = bytes([8, 0x02]) + (100).to_bytes(2, "little") + b"\x05\x00" + (150).to_bytes(2, "little")
    with pytest.raises(DecodeError, match="quality"):
        decode_measurements(q)


@pytest.mark.parametrize("e2e", [False, True])
def test_feature(e2e):
    bits = CgmFeatureBits.TREND | CgmFeatureBits.QUALITY | (CgmFeatureBits.E2E_CRC if e2e else 0)
    f = CgmFeature(CgmFeatureBits(bits))
    data = encode_feature(f)
    assert len(data) == 6 and data[3] == 0x59
    assert decode_feature(data) == f and f.e2e is e2e
    if not e2e:
        assert data[4:] == b"\xff\xff"
    else:
        with pytest.raises(DecodeError, match="bad CRC"):
            decode_feature(data[:4] + b"\x00\x00")
    with pytest.raises(DecodeError, match="short"):
        decode_feature(data[:5])
    with pytest.raises(DecodeError, match="oversized"):
        decode_feature(data + b"\x00")


@pytest.mark.parametrize("order", list(OctetOrder))
@pytest.mark.parametrize("e2e", [False, True])
def test_status(order, e2e):
    s = CgmStatus(42, StatusOctet.BATTERY_LOW, CalTempOctet.TIME_SYNC_REQUIRED, WarningOctet.ABOVE_PATIENT_HIGH)
    data = encode_status(s, e2e=e2e, octet_order=order)
    assert len(data) == (7 if e2e else 5)
    assert decode_status(data, e2e=e2e, octet_order=order) == s


@pytest.mark.parametrize("e2e", [False, True])
def test_session_start_and_run_time(e2e):
    st = SessionStartTime(2026, 11, 22, 7, 45, 30, 4, 4)  # UTC+1h, DST +1h
    data = encode_session_start_time(st, e2e=e2e)
    assert len(data) == (11 if e2e else 9)
    assert decode_session_start_time(data, e2e=e2e) == st
    assert st.to_epoch_min() == SessionStartTime(2026, 11, 22, 5, 45, 30).to_epoch_min()
    assert decode_session_run_time(encode_session_run_time(336, e2e=e2e), e2e=e2e) == 336
    back = SessionStartTime.from_epoch_min(29_000_000.0)
    assert back.to_epoch_min() == 29_000_000.0


@pytest.mark.parametrize("bad", [
    SessionStartTime(2026, 13, 1, 0, 0, 0),
    SessionStartTime(2026, 2, 30, 0, 0, 0),
    SessionStartTime(2026, 1, 1, 24, 0, 0),
    SessionStartTime(2026, 1, 1, 0, 0, 0, 100),
    SessionStartTime(2026, 1, 1, 0, 0, 0, 0, 3),
    SessionStartTime(1000, 1, 1, 0, 0, 0),
])
def test_impossible_session_start_times(bad):
    with pytest.raises(DecodeError, match="impossible value"):
        decode_session_start_time(encode_session_start_time(bad))


SOCP_MESSAGES = [
    SocpMessage(SocpOp.SET_INTERVAL, interval_min=5),
    SocpMessage(SocpOp.GET_INTERVAL),
    SocpMessage(SocpOp.INTERVAL_RESPONSE, interval_min=0xFF),
    SocpMessage(SocpOp.SET_CALIBRATION, calibration=CalibrationRecord(110.0, 60, 1, 1, 720, 3, 0)),
    SocpMessage(SocpOp.GET_CALIBRATION, record_number=0xFFFF),
    SocpMessage(SocpOp.CALIBRATION_RESPONSE, calibration=CalibrationRecord(95.0, 65)),
    SocpMessage(SocpOp.SET_HYPO, level=70.0),
    SocpMessage(SocpOp.GET_HYPO),
    SocpMessage(SocpOp.HYPO_RESPONSE, level=70.0),
    SocpMessage(SocpOp.SET_RATE_INCREASE, level=2.5),
    SocpMessage(SocpOp.RESET_DEVICE_SPECIFIC_ALERT),
    SocpMessage(SocpOp.START_SESSION),
    SocpMessage(SocpOp.STOP_SESSION),
    SocpMessage(SocpOp.RESPONSE_CODE, request_op=SocpOp.START_SESSION, result=SocpResult.SUCCESS),
] + [SocpMessage(op, level=1.0) if (op - 7) % 3 != 1 else SocpMessage(op) for op in SocpOp if 7 <= op <= 24]


@pytest.mark.parametrize("msg", SOCP_MESSAGES, ids=lambda m: m.op.name)
@pytest.mark.parametrize("e2e", [False, True])
def test_socp_roundtrip(msg, e2e):
    assert decode_socp(encode_socp(msg, e2e=e2e), e2e=e2e) == msg


def test_socp_bytes_and_errors():
    assert encode_socp(SocpMessage(SocpOp.START_SESSION)) == b"\x1a"
    assert encode_socp(SocpMessage(SocpOp.RESPONSE_CODE, request_op=0x1A, result=SocpResult.SUCCESS)) == b"\x1c\x1a\x01"
    for data, reason in [(b"", "short"), (b"\x00", "unknown op code"), (b"\x1d", "unknown op code"),
                         (b"\x1a\x00", "oversized"), (b"\x01", "short"), (b"\x1c\x1a\x09", "impossible value")]:
        with pytest.raises(DecodeError) as info:
            decode_socp(data)
        assert info.value.reason.startswith(reason), data
    with pytest.raises(DecodeError, match="bad CRC"):
        decode_socp(b"\x1a\x00\x00", e2e=True)


RACP_MESSAGES = [
    RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.ALL),
    RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.GREATER_OR_EQUAL, 1, low=121),
    RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.LESS_OR_EQUAL, 1, high=60),
    RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.WITHIN_RANGE, 1, low=10, high=20),
    RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.FIRST),
    RacpMessage(RacpOp.REPORT_RECORDS, RacpOperator.LAST),
    RacpMessage(RacpOp.DELETE_RECORDS, RacpOperator.ALL),
    RacpMessage(RacpOp.DELETE_RECORDS, RacpOperator.WITHIN_RANGE, 1, low=0, high=0),
    RacpMessage(RacpOp.REPORT_NUMBER, RacpOperator.GREATER_OR_EQUAL, 1, low=5),
    RacpMessage(RacpOp.ABORT),
    RacpMessage(RacpOp.NUMBER_RESPONSE, count=24),
    RacpMessage(RacpOp.RESPONSE_CODE, request_op=1, result=RacpResult.NO_RECORDS_FOUND),
]


@pytest.mark.parametrize("msg", RACP_MESSAGES)
@pytest.mark.parametrize("operand_size", [2, 4])
def test_racp_roundtrip(msg, operand_size):
    assert decode_racp(encode_racp(msg, operand_size=operand_size), operand_size=operand_size) == msg


def test_racp_bytes_and_errors():
    assert encode_racp(RACP_MESSAGES[1]) == bytes.fromhex("0103017900")
    assert encode_racp(RACP_MESSAGES[-1]) == bytes.fromhex("06000106")
    for data, reason in [
        (b"\x01", "short"), (b"\x09\x01", "unknown op code"), (b"\x01\x07", "impossible value"),
        (b"\x01\x00", "impossible value"), (b"\x03\x01", "impossible value"), (b"\x01\x01\x00", "oversized"),
        (b"\x01\x03\x01\x05", "short"), (bytes.fromhex("010401140005 00"), "impossible value"),
        (b"\x06\x00\x01\x00", "impossible value"),
    ]:
        with pytest.raises(DecodeError) as info:
            decode_racp(data)
        assert info.value.reason.startswith(reason), data


# ---------------------------------------------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from drivers.codecs.sfloat import decode_sfloat  # noqa: E402

_sfloat_values = st.integers(-2045, 2045).flatmap(
    lambda m: st.integers(-8, 7).map(lambda e: decode_sfloat(((e & 0xF) << 12) | (m & 0xFFF))))


@st.composite
def measurements(draw):
    glucose = abs(draw(_sfloat_values))
    return CgmMeasurement(
        glucose, draw(st.integers(0, 0xFFFF)),
        draw(st.none() | st.integers(0, 0xFF).map(StatusOctet)),
        draw(st.none() | st.integers(0, 0xFF).map(CalTempOctet)),
        draw(st.none() | st.integers(0, 0xFF).map(WarningOctet)),
        draw(st.none() | _sfloat_values),
        draw(st.none() | st.integers(0, 100).map(float)))


@given(st.lists(measurements(), min_size=1, max_size=5), st.booleans(), st.sampled_from(list(OctetOrder)))
@settings(max_examples=300, deadline=None)
def test_any_measurement_list_roundtrips(ms, e2e, order):
    data = encode_measurements(ms, e2e=e2e, octet_order=order)
    assert decode_measurements(data, e2e=e2e, octet_order=order) == tuple(ms)

"""New Era NE-500/NE-1000: safe-mode packets (CRC-16/XMODEM check value), reply parsing, number formatting and the
insulin-to-volume conversion. Pure codecs, no port."""

from __future__ import annotations

import pytest

from drivers.codecs.crc import crc16_xmodem
from drivers.codecs.errors import DecodeError
from drivers.serial.ne1000 import (
    RateUnits, ReplyReader, decode_safe_packet, encode_safe_packet, format_number, insulin_u_to_volume_ml,
    parse_dispensed, parse_reply, volume_ml_to_insulin_u,
)


def test_saf0_check_value_and_packet() -> None:
    assert crc16_xmodem(b"SAF0") == 0x5543
    packet = encode_safe_packet(b"SAF0")
    assert packet == bytes.fromhex("02 08 53 41 46 30 55 43 03")
    assert decode_safe_packet(packet) == b"SAF0"


def test_safe_packet_with_crc_bytes_equal_to_stx_etx_is_split_by_length() -> None:
    # find data whose CRC contains 0x02 or 0x03: the reader must rely on the length byte, not on ETX
    data = next(d for d in (f"RAT {i} MH".encode() for i in range(5000))
                if {crc16_xmodem(d) >> 8, crc16_xmodem(d) & 0xFF} & {0x02, 0x03})
    packet = encode_safe_packet(data)
    reader = ReplyReader(safe_mode=True)
    frames = []
    for b in packet + packet:
        frames += reader.feed(bytes([b]))
    assert frames == [packet, packet]
    assert decode_safe_packet(frames[0]) == data


@pytest.mark.parametrize("raw,status,data,alarm,error", [
    (b"\x0200S\x03", "S", "", None, None),
    (b"\x0200INE1000V3.928\x03", "I", "NE1000V3.928", None, None),
    (b"\x0207W\x03", "W", "", None, None),
    (b"\x0200A?S\x03", "A", "", "S", None),
    (b"\x0200A?T\x03", "A", "", "T", None),
    (b"\x0200S?\x03", "S", "", None, ""),
    (b"\x0200S?OOR\x03", "S", "", None, "OOR"),
    (b"\x0200P?NA\x03", "P", "", None, "NA"),
    (b"00I?COM", "I", "", None, "COM"),  # safe-mode packet data: no STX/ETX
])
def test_parse_reply(raw: bytes, status: str, data: str, alarm: str | None, error: str | None) -> None:
    reply = parse_reply(raw)
    assert (reply.status, reply.data, reply.alarm, reply.error) == (status, data, alarm, error)


def test_reply_address() -> None:
    assert parse_reply(b"\x0242S\x03").address == 42


def test_parse_dispensed() -> None:
    assert parse_dispensed("I1.250W0.000ML") == (1.25, 0.0)
    assert parse_dispensed("I12.50W3.000UL") == pytest.approx((0.0125, 0.003))
    with pytest.raises(DecodeError):
        parse_dispensed("I1.0")


@pytest.mark.parametrize("value,text", [
    (0.0, "0.000"), (0.12345, "0.123"), (0.0999, "0.099"), (1.0, "1.000"), (9.9999, "9.999"), (12.3456, "12.34"),
    (123.456, "123.4"), (1234.5, "1234"), (9999.9, "9999"), (0.15, "0.150"), (4.78, "4.780"),
])
def test_numbers_have_four_digits_and_round_down(value: float, text: str) -> None:
    assert format_number(value) == text
    assert float(text) <= value + 1e-12


@pytest.mark.parametrize("value", [-0.1, 10000.0, float("nan"), float("inf")])
def test_numbers_out_of_range(value: float) -> None:
    with pytest.raises(ValueError):
        format_number(value)


def test_insulin_volume_conversion() -> None:
    assert insulin_u_to_volume_ml(1.0) == pytest.approx(0.01)  # U-100: 1 U = 10 uL
    assert insulin_u_to_volume_ml(1.0, 200.0) == pytest.approx(0.005)
    assert volume_ml_to_insulin_u(0.01) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        insulin_u_to_volume_ml(1.0, 0.0)


def test_rate_units() -> None:
    assert RateUnits.ML_PER_H.ml_per_min_factor == pytest.approx(1 / 60)
    assert RateUnits("UM") is RateUnits.UL_PER_MIN


def test_basic_reader_skips_noise_and_bounds_length() -> None:
    reader = ReplyReader()
    assert reader.feed(b"junk\x0200S\x03\x0200I") == [b"\x0200S\x03"]
    assert reader.feed(b"\x03") == [b"\x0200I\x03"]
    assert reader.feed(b"\x02" + b"A" * 100) == []
    assert reader.feed(b"\x0200S\x03") == [b"\x0200S\x03"]

"""Framing of the bench serial protocol: layout, stuffing, CRC, re-synchronisation (docs/serial-protocol.md §1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codecs.crc import crc16_mcrf4xx
from drivers.codecs.errors import DecodeError
from drivers.serial.framing import MAX_BODY, FrameReader, decode_frame, encode_frame


def test_frame_layout_matches_the_document() -> None:
    frame = encode_frame(bytes.fromhex("1011"))
    assert frame == bytes.fromhex("7e 02 10 11 12 18 7e")
    assert crc16_mcrf4xx(bytes.fromhex("021011")) == 0x1812


def test_flag_and_escape_bytes_are_stuffed() -> None:
    frame = encode_frame(bytes([0x7E, 0x7D]))
    assert frame == bytes.fromhex("7e 02 7d 5e 7d 5d 3d 4e 7e")
    assert 0x7E not in frame[1:-1]
    assert decode_frame(frame) == bytes([0x7E, 0x7D])


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=MAX_BODY))
def test_round_trip(body: bytes) -> None:
    frame = encode_frame(body)
    assert decode_frame(frame) == body
    assert decode_frame(frame[1:-1]) == body
    assert FrameReader().feed(frame) == [body]


@pytest.mark.parametrize("size", [0, MAX_BODY + 1])
def test_encode_rejects_bad_body_size(size: int) -> None:
    with pytest.raises(ValueError):
        encode_frame(bytes(size))


def test_bad_crc_is_a_decode_error() -> None:
    frame = bytearray(encode_frame(b"\x10\x11"))
    frame[-2] ^= 0x01
    with pytest.raises(DecodeError, match="bad CRC") as info:
        decode_frame(bytes(frame))
    assert info.value.reason == "bad CRC"


def test_reader_handles_split_and_joined_frames() -> None:
    a, b = encode_frame(b"\x10\x01"), encode_frame(b"\x23\x02")
    stream = b"noise" + a + b + a
    reader = FrameReader()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += reader.feed(stream[i:i + 1])
    assert out == [b"\x10\x01", b"\x23\x02", b"\x10\x01"]
    assert reader.errors == 0


def test_reader_drops_a_corrupted_frame_and_resynchronises() -> None:
    good = encode_frame(b"\x24\x13" + bytes(10))
    bad = bytearray(good)
    bad[5] ^= 0x40
    reader = FrameReader()
    assert reader.feed(bytes(bad) + good) == [b"\x24\x13" + bytes(10)]
    assert reader.errors == 1
    assert reader.recent_errors[-1].reason == "bad CRC"


def test_reader_survives_a_lost_closing_flag() -> None:
    good = encode_frame(b"\x06\x01")
    reader = FrameReader()
    # a lost closing flag is harmless: the next opening flag ends the frame
    assert reader.feed(good[:-1] + good) == [b"\x06\x01", b"\x06\x01"]
    # losing both flags between two frames merges them into one bad frame; the next frame is intact
    assert reader.feed(good[:-1] + good[1:] + good) == [b"\x06\x01"]
    assert reader.errors == 1


def test_reader_bounds_an_endless_frame() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x7e" + b"\x41" * 5000) == []
    assert reader.feed(encode_frame(b"\x06\x01")) == [b"\x06\x01"]
    assert reader.errors == 1

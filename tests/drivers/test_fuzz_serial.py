"""Fuzzing the serial decoders: on any input they return a value or raise DecodeError, never anything else.

The default run uses ~300 examples per decoder; ``-m slow`` runs >= 10,000 each. Known-bad input in
``corpus/serial/*.txt`` (``<decoder> <hex>  # why``) is replayed and must raise DecodeError.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.codecs.crc import crc16_mcrf4xx, crc16_xmodem
from drivers.codecs.errors import DecodeError
from drivers.serial import ne1000
from drivers.serial.framing import FrameReader, decode_frame, encode_frame
from drivers.serial.protocol import MsgType, decode_message, message_check

from drivers_testkit import read_corpus  # noqa: E402

CORPUS = Path(__file__).parent / "corpus" / "serial"

DECODERS: dict[str, Callable[[bytes], object]] = {
    "frame": decode_frame,
    "message": decode_message,
    "safe_packet": ne1000.decode_safe_packet,
    "ne_reply": ne1000.parse_reply,
    "ne_dis": lambda b: ne1000.parse_dispensed(b.decode("latin-1")),
}


def _only_decode_error(decoder: Callable[[bytes], object], data: bytes) -> None:
    try:
        decoder(data)
    except DecodeError as exc:
        assert isinstance(exc.reason, str) and exc.reason


def _valid_frame_of(body: bytes) -> bytes:
    """A frame with a correct length and CRC around arbitrary bytes (so the fuzz reaches the message decoder)."""
    return encode_frame(body)


def _valid_safe_packet_of(data: bytes) -> bytes:
    crc = crc16_xmodem(data)
    return bytes([0x02, len(data) + 4]) + data + bytes([crc >> 8, crc & 0xFF, 0x03])


def _with_check(data: bytes) -> bytes:
    return data + message_check(data)


message_bodies = st.one_of(
    st.binary(max_size=260),
    # a valid end-to-end check around arbitrary content, so the fuzz reaches every payload decoder
    st.builds(lambda t, rest: _with_check(bytes([t]) + rest), st.sampled_from([int(m) for m in MsgType]),
              st.binary(max_size=200)),
    st.builds(_with_check, st.binary(max_size=240)),
)


def _check_frame(data: bytes) -> None:
    _only_decode_error(decode_frame, data)


def _check_message(body: bytes) -> None:
    _only_decode_error(decode_message, body)
    if 1 <= len(body) <= 250:
        decoded = decode_frame(_valid_frame_of(body))
        assert decoded == body


def _check_reader(chunks: list[bytes]) -> None:
    reader = FrameReader()
    for chunk in chunks:
        for body in reader.feed(chunk):
            _only_decode_error(decode_message, body)


def _check_ne(data: bytes) -> None:
    _only_decode_error(ne1000.decode_safe_packet, data)
    _only_decode_error(ne1000.parse_reply, data)
    _only_decode_error(DECODERS["ne_dis"], data)
    if 1 <= len(data) <= 250:
        _only_decode_error(ne1000.parse_reply, ne1000.decode_safe_packet(_valid_safe_packet_of(data)))
    reader = ne1000.ReplyReader(safe_mode=bool(data[:1] and data[0] & 1))
    for frame in reader.feed(data):
        _only_decode_error(ne1000.parse_reply, frame)
        _only_decode_error(ne1000.decode_safe_packet, frame)


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=600))
def test_fuzz_decode_frame(data: bytes) -> None:
    _check_frame(data)


@FAST
@given(message_bodies)
def test_fuzz_decode_message(body: bytes) -> None:
    _check_message(body)


@FAST
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_fuzz_frame_reader_never_raises(chunks: list[bytes]) -> None:
    _check_reader(chunks)


@FAST
@given(st.binary(max_size=300))
def test_fuzz_ne1000_decoders(data: bytes) -> None:
    _check_ne(data)


@pytest.mark.slow
@SLOW
@given(st.binary(max_size=600))
def test_fuzz_decode_frame_slow(data: bytes) -> None:
    _check_frame(data)


@pytest.mark.slow
@SLOW
@given(message_bodies)
def test_fuzz_decode_message_slow(body: bytes) -> None:
    _check_message(body)


@pytest.mark.slow
@SLOW
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_fuzz_frame_reader_slow(chunks: list[bytes]) -> None:
    _check_reader(chunks)


@pytest.mark.slow
@SLOW
@given(st.binary(max_size=300))
def test_fuzz_ne1000_decoders_slow(data: bytes) -> None:
    _check_ne(data)


def test_single_byte_corruption_of_any_frame_is_detected() -> None:
    """CRC-16 catches every single-byte error; the reader never returns a corrupted body."""
    body = bytes.fromhex("302005636d642d310000000000c0824002dc05000002")
    frame = encode_frame(body)
    for i in range(len(frame)):
        for flip in (0x01, 0x80, 0xFF, 0x7E ^ frame[i]):
            if flip == 0:
                continue
            bad = bytearray(frame)
            bad[i] ^= flip
            got = FrameReader().feed(bytes(bad))
            assert body not in got or bytes(bad) == frame
            assert all(b == body for b in got)


def _corpus() -> list[tuple[str, str, bytes, str]]:
    return read_corpus(CORPUS)


def test_corpus_is_not_empty() -> None:
    assert len(_corpus()) >= 50


@pytest.mark.parametrize("where,name,data,why", _corpus(), ids=[c[0] for c in _corpus()])
def test_corpus_known_bad_input_raises_decode_error(where: str, name: str, data: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        DECODERS[name](data)


def test_corpus_messages_also_fail_inside_valid_frames() -> None:
    """The bad message bodies survive framing (valid CRC) and are still rejected by the message decoder."""
    for where, name, data, why in _corpus():
        if name == "message" and 1 <= len(data) <= 250:
            body = decode_frame(encode_frame(data))
            with pytest.raises(DecodeError):
                decode_message(body)


def test_crc_helpers_match_the_checks() -> None:
    assert crc16_mcrf4xx(b"123456789") == 0x6F91
    assert crc16_xmodem(b"SAF0") == 0x5543
    assert struct.pack(">H", crc16_xmodem(b"SAF0")) == bytes.fromhex("5543")

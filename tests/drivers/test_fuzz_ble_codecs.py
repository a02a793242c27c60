"""Fuzz every BLE decoder: whatever the bytes, a decoder returns a value or raises DecodeError, nothing else.

Fast run: 300 examples per decoder. Slow suite (``-m slow``): 10,000 examples per decoder.
Known-bad packets in ``corpus/ble/*.txt`` (``<decoder> <hex>  # why``) are replayed and must raise DecodeError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.codecs import cgms, ids, ids_history
from drivers.codecs.e2e import append_crc, append_e2e
from drivers.codecs.errors import DecodeError
from drivers.codecs.sfloat import read_float32, read_sfloat

from drivers_testkit import read_corpus  # noqa: E402

CORPUS = Path(__file__).parent / "corpus" / "ble"

WF = cgms.OctetOrder.WARNING_FIRST

# name -> (decoder, E2E tail kind used to make CRC-valid inputs: None, "crc" (CGMS) or "e2e" (IDS))
DECODERS: dict[str, tuple[Callable[[bytes], object], str | None]] = {
    "sfloat": (lambda b: read_sfloat(b, 0), None),
    "float32": (lambda b: read_float32(b, 0), None),
    "cgm_measurement": (lambda b: cgms.decode_measurements(b), None),
    "cgm_measurement_wf": (lambda b: cgms.decode_measurements(b, octet_order=WF), None),
    "cgm_measurement_e2e": (lambda b: cgms.decode_measurements(b, e2e=True), "crc"),
    "cgm_feature": (cgms.decode_feature, None),
    "cgm_status": (lambda b: cgms.decode_status(b), None),
    "cgm_status_e2e": (lambda b: cgms.decode_status(b, e2e=True, octet_order=WF), "crc"),
    "cgm_session_start": (lambda b: cgms.decode_session_start_time(b), None),
    "cgm_session_start_e2e": (lambda b: cgms.decode_session_start_time(b, e2e=True), "crc"),
    "cgm_session_run": (lambda b: cgms.decode_session_run_time(b), None),
    "cgm_session_run_e2e": (lambda b: cgms.decode_session_run_time(b, e2e=True), "crc"),
    "socp": (lambda b: cgms.decode_socp(b), None),
    "socp_e2e": (lambda b: cgms.decode_socp(b, e2e=True), "crc"),
    "racp": (lambda b: cgms.decode_racp(b), None),
    "racp_seq": (lambda b: cgms.decode_racp(b, operand_size=4), None),
    "idd_racp_e2e": (lambda b: ids_history.decode_idd_racp(b, e2e=True), "e2e"),
    "ids_status": (lambda b: ids.decode_ids_status(b), None),
    "ids_status_e2e": (lambda b: ids.decode_ids_status(b, e2e=True), "e2e"),
    "ids_status_changed": (lambda b: ids.decode_status_changed(b, e2e=True), "e2e"),
    "ids_annunciation": (lambda b: ids.decode_annunciation(b), None),
    "ids_annunciation_e2e": (lambda b: ids.decode_annunciation(b, e2e=True), "e2e"),
    "ids_features": (ids.decode_ids_features, None),
    "ids_status_reader": (lambda b: ids.decode_status_reader(b), None),
    "ids_status_reader_e2e": (lambda b: ids.decode_status_reader(b, e2e=True), "e2e"),
    "ids_command": (lambda b: ids.decode_command(b), None),
    "ids_command_e2e": (lambda b: ids.decode_command(b, e2e=True), "e2e"),
    "ids_history": (lambda b: ids_history.decode_history_record(b), None),
    "ids_history_e2e": (lambda b: ids_history.decode_history_record(b, e2e=True), "e2e"),
}

# Valid seeds, so that mutations reach deep into the decoders (op codes, flags, operands).
_SEEDS = [
    bytes.fromhex("0800780005000de8"), bytes.fromhex("0ac37800050001040200"), bytes.fromhex("0600780005000600"),
    bytes.fromhex("0600780005"), bytes.fromhex("0103017900"), bytes.fromhex("0104010a001400"), b"\x1a", b"\x01\x05",
    bytes.fromhex("04780000 3c00 59 d002 0300 00"), bytes.fromhex("ea070b160700001e0000"),
    bytes.fromhex("ff0f02338700 1e00 55"), bytes.fromhex("4b11183cf400f40 03c000f00 0100 3301".replace(" ", "")),
    bytes.fromhex("781107 00"), bytes.fromhex("8d14e803"), bytes.fromhex("550fff0f0f"), bytes.fromhex("1111"),
    bytes.fromhex("6a030701 5000 33 7d00 1e00 1100 02 55"), bytes.fromhex("3f0302 0100 0200"),
    bytes.fromhex("cf03 39300000 39300000"), bytes.fromhex("fc0301fa00b400"), bytes.fromhex("55963ce901"),
    bytes.fromhex("0301003c003301000200"), bytes.fromhex("ffff0064000c0000"),
    bytes.fromhex("01000000 11f0 0a000000 33 8700 1e00 55"), bytes.fromhex("03000000 21f0 1e000000 0400 eb00"),
]


@st.composite
def packets(draw, tail: str | None):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        data = draw(st.binary(min_size=0, max_size=48))
    else:
        data = bytearray(draw(st.sampled_from(_SEEDS)))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 3))
            if op == 0 and data:
                i = draw(st.integers(0, len(data) - 1))
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif op == 1 and data:
                i = draw(st.integers(0, len(data) - 1))
                data[i] = draw(st.integers(0, 255))
            elif op == 2:
                del data[draw(st.integers(0, len(data))):]
            else:
                data += draw(st.binary(min_size=1, max_size=6))
        data = bytes(data)
    if tail is not None and draw(st.booleans()):  # make the CRC valid so the body is actually parsed
        data = append_crc(data) if tail == "crc" else append_e2e(data, draw(st.integers(0, 255)))
    return data


def _check(name: str, data: bytes) -> None:
    decoder, _ = DECODERS[name]
    try:
        decoder(data)
    except DecodeError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert exc.data is not None


def _fuzz(name: str, n: int) -> None:
    tail = DECODERS[name][1]

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(packets(tail))
    def run(data: bytes) -> None:
        _check(name, data)

    run()


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_fuzz_fast(name):
    _fuzz(name, 300)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_fuzz_slow(name):
    _fuzz(name, 10_000)


def _corpus() -> list[tuple[str, str, bytes, str]]:
    return read_corpus(CORPUS)


def test_corpus_is_not_empty():
    assert len(_corpus()) >= 40


@pytest.mark.parametrize("where, name, data, why", _corpus(), ids=lambda v: v if isinstance(v, str) else None)
def test_corpus_known_bad_packets_raise_decode_error(where, name, data, why):
    assert name in DECODERS, f"{where}: unknown decoder {name}"
    with pytest.raises(DecodeError):
        DECODERS[name][0](data)

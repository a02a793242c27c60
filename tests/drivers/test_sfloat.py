"""IEEE 11073 SFLOAT / FLOAT: the standards.md test vectors, special values, rounding, round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codecs.errors import DecodeError
from drivers.codecs.sfloat import (
    SFLOAT_NAN, SFLOAT_NEG_INF, SFLOAT_NRES, SFLOAT_POS_INF, SFLOAT_RESERVED, SFloatSpecial,
    decode_float32, decode_sfloat, encode_float32, encode_sfloat, pack_sfloat, read_sfloat, sfloat_special,
)


@pytest.mark.parametrize("value, exponent, raw", [
    (120, None, 0x0078),
    (2.0, None, 0xF014),
    (2.0, -1, 0xF014),
    (5.22, None, 0xE20A),
    (-1234, None, 0x0B2E),
])
def test_standard_vectors_encode(value, exponent, raw):
    assert encode_sfloat(value, exponent) == raw


@pytest.mark.parametrize("raw, value", [(0x0078, 120.0), (0xF014, 2.0), (0xE20A, 5.22), (0x0B2E, -1234.0)])
def test_standard_vectors_decode(raw, value):
    assert decode_sfloat(raw) == value


def test_bytes_are_little_endian():
    assert pack_sfloat(120) == bytes.fromhex("7800")
    assert read_sfloat(bytes.fromhex("007800"), 1) == 120.0


@pytest.mark.parametrize("raw, special, value", [
    (SFLOAT_NAN, SFloatSpecial.NAN, math.nan),
    (SFLOAT_NRES, SFloatSpecial.NRES, math.nan),
    (SFLOAT_RESERVED, SFloatSpecial.RESERVED, math.nan),
    (SFLOAT_POS_INF, SFloatSpecial.POS_INF, math.inf),
    (SFLOAT_NEG_INF, SFloatSpecial.NEG_INF, -math.inf),
])
def test_special_values(raw, special, value):
    assert sfloat_special(raw) is special
    got = decode_sfloat(raw)
    assert (math.isnan(got) and math.isnan(value)) or got == value


def test_special_values_encode():
    assert encode_sfloat(math.nan) == 0x07FF
    assert encode_sfloat(math.inf) == 0x07FE
    assert encode_sfloat(-math.inf) == 0x0802
    assert sfloat_special(0x0078) is None


def test_rounding_is_half_even_at_fixed_resolution():
    assert decode_sfloat(encode_sfloat(0.125, -2)) == 0.12
    assert decode_sfloat(encode_sfloat(0.135, -2)) == 0.14
    assert decode_sfloat(encode_sfloat(2.0, 0)) == 2.0


def test_auto_exponent_keeps_written_decimals_and_grows_when_needed():
    assert encode_sfloat(2) == 0x0002 and encode_sfloat(2.0) == 0xF014 and encode_sfloat(2.50) == 0xF019
    assert decode_sfloat(encode_sfloat(0.1 + 0.2)) == 0.3
    assert decode_sfloat(encode_sfloat(1 / 3)) == 0.333
    assert decode_sfloat(encode_sfloat(100000)) == 100000.0
    assert decode_sfloat(encode_sfloat(123456)) == 123500.0  # rounded to 4 significant digits (half-even)
    assert encode_sfloat(0.0) == 0 and encode_sfloat(1e-12) == 0


def test_too_large_raises_value_error_not_inf():
    with pytest.raises(ValueError):
        encode_sfloat(3e10)
    with pytest.raises(ValueError):
        encode_sfloat(5000, exponent=0)
    with pytest.raises(ValueError):
        encode_sfloat(1.0, exponent=9)
    with pytest.raises(TypeError):
        encode_sfloat("1")  # type: ignore[arg-type]


def test_decode_rejects_out_of_range_raw_and_short_bytes():
    with pytest.raises(DecodeError):
        decode_sfloat(0x10000)
    with pytest.raises(DecodeError):
        read_sfloat(b"\x01", 0)


def test_float32():
    assert decode_float32(encode_float32(12.345)) == 12.345
    assert encode_float32(math.nan) == 0x007FFFFF
    assert decode_float32(0x007FFFFE) == math.inf
    assert decode_float32(encode_float32(-0.5)) == -0.5


@given(st.integers(0, 0xFFFF))
@settings(max_examples=300)
def test_any_raw_decodes_and_reencodes_to_the_same_value(raw):
    v = decode_sfloat(raw)
    if math.isnan(v):
        assert math.isnan(decode_sfloat(encode_sfloat(v)))
    else:
        assert decode_sfloat(encode_sfloat(v)) == v


@given(st.integers(-2045, 2045), st.integers(-8, 7))
@settings(max_examples=300)
def test_mantissa_exponent_roundtrip(mantissa, exponent):
    value = float(f"{mantissa}e{exponent}")
    assert decode_sfloat(encode_sfloat(value, exponent)) == value


@given(st.floats(min_value=-2045.0, max_value=2045.0, allow_nan=False))
@settings(max_examples=300)
def test_encoding_error_is_within_half_a_unit_of_the_last_digit(value):
    got = decode_sfloat(encode_sfloat(value))
    assert abs(got - value) <= max(abs(value) * 2.5e-3, 5e-9)  # mantissa >= 205 after normalisation

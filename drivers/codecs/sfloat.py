"""IEEE 11073-20601 SFLOAT (16 bit) and FLOAT (32 bit) medical number formats.

SFLOAT: top 4 bits signed exponent (-8..7), low 12 bits signed mantissa, value = mantissa * 10**exponent.
FLOAT:  top 8 bits signed exponent (-128..127), low 24 bits signed mantissa.

Special values (exponent 0): NaN (0x07FF), NRes "not at this resolution" (0x0800), +INF (0x07FE), -INF (0x0802),
reserved (0x0801); FLOAT uses the same mantissas widened to 24 bits (0x007FFFFF, 0x00800000, 0x007FFFFE,
0x00800002, 0x00800001).

Encoding rule (``exponent=None``): the resolution the caller wrote. An ``int`` has exponent 0; a ``float`` keeps
the decimals of its shortest repr (at most 9 significant digits, which drops binary noise like 0.1 + 0.2), so 2.0
keeps one decimal. If the mantissa does not fit, the exponent grows and the mantissa is rounded half-to-even.
So 120 -> 0x0078, 2.0 -> 0xF014, 5.22 -> 0xE20A, -1234 -> 0x0B2E (the standards test vectors). A fixed resolution
can be requested with ``exponent``; the mantissa is then rounded half-to-even. Values too large for the format raise ``ValueError`` (never silently become INF);
NaN and infinities encode to their special values.
"""

from __future__ import annotations

import enum
import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from drivers.codecs.errors import DecodeError

__all__ = [
    "SFloatSpecial",
    "SFLOAT_NAN",
    "SFLOAT_NRES",
    "SFLOAT_POS_INF",
    "SFLOAT_NEG_INF",
    "SFLOAT_RESERVED",
    "decode_sfloat",
    "encode_sfloat",
    "sfloat_special",
    "read_sfloat",
    "pack_sfloat",
    "decode_float32",
    "encode_float32",
    "read_float32",
    "pack_float32",
]

SFLOAT_NAN = 0x07FF
SFLOAT_NRES = 0x0800
SFLOAT_POS_INF = 0x07FE
SFLOAT_NEG_INF = 0x0802
SFLOAT_RESERVED = 0x0801

_FLOAT_NAN = 0x007FFFFF
_FLOAT_NRES = 0x00800000
_FLOAT_POS_INF = 0x007FFFFE
_FLOAT_NEG_INF = 0x00800002
_FLOAT_RESERVED = 0x00800001


class SFloatSpecial(enum.Enum):
    """The reserved SFLOAT/FLOAT values."""

    NAN = "NaN"
    NRES = "NRes"
    POS_INF = "+INF"
    NEG_INF = "-INF"
    RESERVED = "reserved"


_SPECIAL16 = {
    SFLOAT_NAN: SFloatSpecial.NAN,
    SFLOAT_NRES: SFloatSpecial.NRES,
    SFLOAT_POS_INF: SFloatSpecial.POS_INF,
    SFLOAT_NEG_INF: SFloatSpecial.NEG_INF,
    SFLOAT_RESERVED: SFloatSpecial.RESERVED,
}
_SPECIAL32 = {
    _FLOAT_NAN: SFloatSpecial.NAN,
    _FLOAT_NRES: SFloatSpecial.NRES,
    _FLOAT_POS_INF: SFloatSpecial.POS_INF,
    _FLOAT_NEG_INF: SFloatSpecial.NEG_INF,
    _FLOAT_RESERVED: SFloatSpecial.RESERVED,
}
_SPECIAL_VALUE = {
    SFloatSpecial.NAN: math.nan,
    SFloatSpecial.NRES: math.nan,
    SFloatSpecial.RESERVED: math.nan,
    SFloatSpecial.POS_INF: math.inf,
    SFloatSpecial.NEG_INF: -math.inf,
}


class _Format:
    def __init__(self, mant_bits: int, exp_bits: int, specials: dict[int, SFloatSpecial]) -> None:
        self.mant_bits = mant_bits
        self.exp_bits = exp_bits
        self.specials = specials
        self.mant_mask = (1 << mant_bits) - 1
        self.exp_mask = (1 << exp_bits) - 1
        self.exp_min = -(1 << (exp_bits - 1))
        self.exp_max = (1 << (exp_bits - 1)) - 1
        self.mant_min = -(1 << (mant_bits - 1))
        self.mant_max = (1 << (mant_bits - 1)) - 1
        # With exponent 0 the mantissas 2046, 2047, -2048, -2047, -2046 are the special values.
        self.mant_limit0 = self.mant_max - 2
        self.total_bits = mant_bits + exp_bits
        self.nan = next(k for k, v in specials.items() if v is SFloatSpecial.NAN)
        self.pos_inf = next(k for k, v in specials.items() if v is SFloatSpecial.POS_INF)
        self.neg_inf = next(k for k, v in specials.items() if v is SFloatSpecial.NEG_INF)

    def special(self, raw: int) -> SFloatSpecial | None:
        return self.specials.get(raw)

    def decode(self, raw: int) -> float:
        if not 0 <= raw < (1 << self.total_bits):
            raise DecodeError(f"{self.total_bits}-bit medical float out of range: {raw!r}")
        special = self.specials.get(raw)
        if special is not None:
            return _SPECIAL_VALUE[special]
        mantissa = raw & self.mant_mask
        if mantissa > self.mant_max:
            mantissa -= 1 << self.mant_bits
        exponent = (raw >> self.mant_bits) & self.exp_mask
        if exponent > self.exp_max:
            exponent -= 1 << self.exp_bits
        # Decimal -> float gives the correctly rounded value (5.22, not 5.2200000000000006).
        return float(Decimal(mantissa).scaleb(exponent))

    def fits(self, mantissa: int, exponent: int) -> bool:
        if exponent == 0:
            return abs(mantissa) <= self.mant_limit0
        return self.mant_min <= mantissa <= self.mant_max

    def pack(self, mantissa: int, exponent: int) -> int:
        return ((exponent & self.exp_mask) << self.mant_bits) | (mantissa & self.mant_mask)

    def encode(self, value: float, exponent: int | None) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"medical float needs a number, got {type(value).__name__}")
        if isinstance(value, float):
            if math.isnan(value):
                return self.nan
            if math.isinf(value):
                return self.pos_inf if value > 0 else self.neg_inf
        if exponent is not None:
            if not self.exp_min <= exponent <= self.exp_max:
                raise ValueError(f"exponent {exponent} outside {self.exp_min}..{self.exp_max}")
            mantissa = self._mantissa(value, exponent)
            if not self.fits(mantissa, exponent):
                raise ValueError(f"{value!r} does not fit with exponent {exponent}")
            return self.pack(mantissa, exponent)
        exact = _exact_decimal(value)
        # the decimals as written, never a positive exponent for whole numbers
        natural = min(0, exact.as_tuple().exponent) if exact != 0 else 0
        exp = max(natural, self.exp_min)
        while exp <= self.exp_max:
            mantissa = self._mantissa(exact, exp)
            if mantissa == 0:
                return 0
            if self.fits(mantissa, exp):
                return self.pack(mantissa, exp)
            exp += 1
        raise ValueError(f"{value!r} is too large for a {self.total_bits}-bit medical float")

    @staticmethod
    def _mantissa(value: float | Decimal, exponent: int) -> int:
        d = value if isinstance(value, Decimal) else _exact_decimal(value)
        return int(d.scaleb(-exponent).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _exact_decimal(value: float | int) -> Decimal:
    """The decimal the caller wrote: an int as is; a float by its shortest repr ('2.0', '5.22'), or rounded to 9
    significant digits when the repr is longer (drops binary noise like 0.1 + 0.2)."""
    if isinstance(value, int):
        return Decimal(value)
    try:
        d = Decimal(repr(float(value)))
        if len(d.as_tuple().digits) <= 9:
            return d
        return Decimal(f"{value:.9g}").normalize()
    except InvalidOperation as exc:  # pragma: no cover - only for non-finite input, handled before
        raise ValueError(f"cannot encode {value!r}") from exc


_F16 = _Format(12, 4, _SPECIAL16)
_F32 = _Format(24, 8, _SPECIAL32)


def decode_sfloat(raw: int) -> float:
    """Value of a 16-bit SFLOAT. NaN, NRes and reserved give ``nan``; +/-INF give ``+/-inf``."""
    return _F16.decode(raw)


def sfloat_special(raw: int) -> SFloatSpecial | None:
    """Which special value ``raw`` is, or ``None`` for an ordinary number."""
    return _F16.special(raw)


def encode_sfloat(value: float, exponent: int | None = None) -> int:
    """16-bit SFLOAT for ``value`` (see the module docstring for the rounding rule). Raises ``ValueError`` if too
    large."""
    return _F16.encode(value, exponent)


def read_sfloat(data: bytes, offset: int) -> float:
    """Decode the little-endian SFLOAT at ``data[offset:offset+2]``; ``DecodeError`` if the bytes are missing."""
    if offset < 0 or offset + 2 > len(data):
        raise DecodeError(f"short: SFLOAT at offset {offset} needs 2 bytes", data)
    return _F16.decode(data[offset] | (data[offset + 1] << 8))


def pack_sfloat(value: float, exponent: int | None = None) -> bytes:
    """Little-endian bytes of :func:`encode_sfloat`."""
    return encode_sfloat(value, exponent).to_bytes(2, "little")


def decode_float32(raw: int) -> float:
    """Value of a 32-bit FLOAT (same special values as SFLOAT, widened)."""
    return _F32.decode(raw)


def encode_float32(value: float, exponent: int | None = None) -> int:
    """32-bit FLOAT for ``value``."""
    return _F32.encode(value, exponent)


def read_float32(data: bytes, offset: int) -> float:
    """Decode the little-endian FLOAT at ``data[offset:offset+4]``."""
    if offset < 0 or offset + 4 > len(data):
        raise DecodeError(f"short: FLOAT at offset {offset} needs 4 bytes", data)
    return _F32.decode(int.from_bytes(data[offset:offset + 4], "little"))


def pack_float32(value: float, exponent: int | None = None) -> bytes:
    """Little-endian bytes of :func:`encode_float32`."""
    return encode_float32(value, exponent).to_bytes(4, "little")

"""Bluetooth E2E protection (CGMS E2E-CRC, IDS E2E-Counter + E2E-CRC) and a bounds-checked byte reader.

E2E-CRC is CRC-16/MCRF4XX over every preceding byte of the packet, sent little-endian (see ``crc.py``).
IDS packets end with ``E2E-Counter (u8)`` then ``E2E-CRC (u16)``; the CRC covers the counter too. The counter
increments by one for every packet a sender transmits on a characteristic and wraps 255 -> 0.
"""

from __future__ import annotations

import struct

from drivers.codecs.crc import crc16_mcrf4xx
from drivers.codecs.errors import DecodeError
from drivers.codecs.sfloat import read_float32, read_sfloat

__all__ = ["append_crc", "check_crc", "append_e2e", "split_e2e", "E2ECounter", "Reader"]


def append_crc(payload: bytes) -> bytes:
    """``payload`` followed by its E2E-CRC (little-endian)."""
    return bytes(payload) + crc16_mcrf4xx(payload).to_bytes(2, "little")


def check_crc(data: bytes, what: str = "packet") -> bytes:
    """Verify the trailing E2E-CRC of ``data``; return the payload without it. ``DecodeError`` if short or bad."""
    data = bytes(data)
    if len(data) < 3:
        raise DecodeError(f"short: {what} too short for an E2E-CRC", data)
    payload, received = data[:-2], int.from_bytes(data[-2:], "little")
    expected = crc16_mcrf4xx(payload)
    if received != expected:
        raise DecodeError(f"bad CRC: {what} E2E-CRC 0x{received:04X} != 0x{expected:04X}", data)
    return payload


def append_e2e(payload: bytes, counter: int) -> bytes:
    """IDS: ``payload + counter + CRC(payload + counter)``."""
    if not 0 <= counter <= 0xFF:
        raise ValueError(f"E2E counter {counter} outside 0..255")
    return append_crc(bytes(payload) + bytes([counter]))


def split_e2e(data: bytes, what: str = "packet") -> tuple[bytes, int]:
    """IDS: verify CRC, return ``(payload, counter)``. ``DecodeError`` if short or bad CRC."""
    body = check_crc(data, what)
    if len(body) < 2:
        raise DecodeError(f"short: {what} has no payload before the E2E counter", data)
    return body[:-1], body[-1]


class E2ECounter:
    """The E2E counter of one characteristic, one per direction.

    ``tx()`` gives the counter for the next packet sent. ``rx(value)`` checks a received counter: a repeat of the
    last one (a replay or a duplicate) raises ``DecodeError``; a gap is allowed (packets may be lost) and returned
    as the number of skipped packets.
    """

    def __init__(self, start: int = 0) -> None:
        self._next_tx = start & 0xFF
        self._last_rx: int | None = None

    def tx(self) -> int:
        value = self._next_tx
        self._next_tx = (self._next_tx + 1) & 0xFF
        return value

    def rx(self, value: int) -> int:
        if not 0 <= value <= 0xFF:
            raise DecodeError(f"E2E counter {value} outside 0..255")
        if self._last_rx is not None and value == self._last_rx:
            raise DecodeError(f"repeated E2E counter {value}")
        skipped = 0 if self._last_rx is None else (value - self._last_rx - 1) & 0xFF
        self._last_rx = value
        return skipped

    @property
    def last_rx(self) -> int | None:
        return self._last_rx


class Reader:
    """Cursor over a packet; every read past the end raises ``DecodeError("short: ...")``."""

    def __init__(self, data: bytes, what: str = "packet") -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def _take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(f"short: {self.what} ends before {field}", self.data)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, field: str = "u8") -> int:
        return self._take(1, field)[0]

    def s8(self, field: str = "s8") -> int:
        return struct.unpack("<b", self._take(1, field))[0]

    def u16(self, field: str = "u16") -> int:
        return int.from_bytes(self._take(2, field), "little")

    def u24(self, field: str = "u24") -> int:
        return int.from_bytes(self._take(3, field), "little")

    def u32(self, field: str = "u32") -> int:
        return int.from_bytes(self._take(4, field), "little")

    def sfloat(self, field: str = "SFLOAT") -> float:
        self._take(2, field)
        return read_sfloat(self.data, self.pos - 2)

    def float32(self, field: str = "FLOAT") -> float:
        self._take(4, field)
        return read_float32(self.data, self.pos - 4)

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        """Require that every byte was consumed (``DecodeError("oversized: ...")`` otherwise)."""
        if self.pos != len(self.data):
            raise DecodeError(f"oversized: {self.what} has {len(self.data) - self.pos} unexpected trailing bytes",
                              self.data)

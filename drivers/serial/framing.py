"""Byte framing for the twinloop bench serial protocol (see ``docs/serial-protocol.md``).

A frame on the wire is::

    0x7E | stuffed( LEN | BODY | CRC_lo | CRC_hi ) | 0x7E

- ``LEN`` (1 byte) is the number of ``BODY`` bytes, 1..:data:`MAX_BODY`.
- ``CRC`` is CRC-16/MCRF4XX over ``LEN | BODY``, little endian.
- Stuffing (HDLC style): ``0x7E`` -> ``0x7D 0x5E`` and ``0x7D`` -> ``0x7D 0x5D`` so the flag byte ``0x7E`` never
  appears inside a frame; a receiver re-synchronises on the next flag after any corruption.

Pure functions, bytes in and out. :func:`decode_frame` raises only :class:`~drivers.codecs.errors.DecodeError`;
:class:`FrameReader` never raises on bad input: it drops the bad frame and counts it.
"""

from __future__ import annotations

from collections import deque

from drivers.codecs.crc import crc16_mcrf4xx
from drivers.codecs.errors import DecodeError

FLAG = 0x7E
ESCAPE = 0x7D
ESCAPE_XOR = 0x20
MAX_BODY = 250
"""Largest body in bytes (LEN is one byte; a little headroom is kept below 255)."""
MAX_STUFFED = 2 * (MAX_BODY + 3)
"""Longest possible stuffed frame content (every byte escaped)."""


def _stuff(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b in (FLAG, ESCAPE):
            out.append(ESCAPE)
            out.append(b ^ ESCAPE_XOR)
        else:
            out.append(b)
    return bytes(out)


def _unstuff(stuffed: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for b in stuffed:
        if b == FLAG:
            raise DecodeError("flag byte inside frame", stuffed)
        if escaped:
            value = b ^ ESCAPE_XOR
            if value not in (FLAG, ESCAPE):
                raise DecodeError("invalid escape sequence", stuffed)
            out.append(value)
            escaped = False
        elif b == ESCAPE:
            escaped = True
        else:
            out.append(b)
    if escaped:
        raise DecodeError("frame ends inside an escape sequence", stuffed)
    return bytes(out)


def encode_frame(body: bytes) -> bytes:
    """Frame ``body`` (1..MAX_BODY bytes) with length, CRC, stuffing and both flags.

    Raises:
        ValueError: the body is empty or longer than :data:`MAX_BODY` (a programming error, not a decode error).
    """
    if not 1 <= len(body) <= MAX_BODY:
        raise ValueError(f"frame body must be 1..{MAX_BODY} bytes, got {len(body)}")
    raw = bytes([len(body)]) + bytes(body)
    crc = crc16_mcrf4xx(raw)
    return bytes([FLAG]) + _stuff(raw + crc.to_bytes(2, "little")) + bytes([FLAG])


def decode_frame(frame: bytes) -> bytes:
    """Return the body of one frame.

    ``frame`` may include or omit the surrounding flag bytes (one on each side at most).

    Raises:
        DecodeError: short, oversized, bad escape, length mismatch or bad CRC.
    """
    data = bytes(frame)
    if data[:1] == bytes([FLAG]):
        data = data[1:]
    if data[-1:] == bytes([FLAG]):
        data = data[:-1]
    if len(data) > MAX_STUFFED:
        raise DecodeError("frame too long", frame)
    raw = _unstuff(data)
    if len(raw) < 4:
        raise DecodeError("frame too short", frame)
    length = raw[0]
    if length == 0 or length > MAX_BODY:
        raise DecodeError("length out of range", frame)
    if len(raw) != length + 3:
        raise DecodeError("length mismatch", frame)
    crc = int.from_bytes(raw[-2:], "little")
    if crc16_mcrf4xx(raw[:-2]) != crc:
        raise DecodeError("bad CRC", frame)
    return raw[1:-2]


class FrameReader:
    """Incremental de-framer: feed any chunk of received bytes, get back the bodies of the complete valid frames.

    Bad frames are dropped and counted (``errors`` and the last few in ``recent_errors``); it never raises on input.
    """

    def __init__(self, keep_errors: int = 16) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self._overflow = False
        self.frames = 0
        self.errors = 0
        self.recent_errors: deque[DecodeError] = deque(maxlen=keep_errors)

    def reset(self) -> None:
        """Forget any partial frame (e.g. after the port was reopened)."""
        self._buf.clear()
        self._in_frame = False
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the bodies of frames completed by it, in order."""
        bodies: list[bytes] = []
        for b in bytes(data):
            if b == FLAG:
                if self._overflow:
                    self._error(DecodeError("frame too long", bytes(self._buf[:64])))
                elif self._buf:
                    try:
                        bodies.append(decode_frame(bytes(self._buf)))
                        self.frames += 1
                    except DecodeError as exc:
                        self._error(exc)
                self._buf.clear()
                self._overflow = False
                self._in_frame = True
            elif self._in_frame and not self._overflow:
                self._buf.append(b)
                if len(self._buf) > MAX_STUFFED:
                    self._overflow = True
            # bytes before the first flag (or after an overflow) are line noise: skipped until the next flag
        return bodies

    def _error(self, exc: DecodeError) -> None:
        self.errors += 1
        self.recent_errors.append(exc)

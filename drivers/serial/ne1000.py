"""New Era NE-500/NE-1000 syringe pump driver (RS-232 8N1, addresses 0-99), basic and safe mode.

Basic mode: command ``[addr]<cmd>[args]\\r``; reply ``STX addr(2 digits) status [data] ETX``. Status characters
I infusing, W withdrawing, S stopped, P paused, T timed pause, U trigger wait, X purging; alarms ``A?`` + R (power
reset), S (stall), T (safe-mode timeout), E (program error), O (out of range); errors ``?``, ``?NA``, ``?OOR``,
``?COM``, ``?IGN``.

Safe mode (``SAF <timeout s>``, ``SAF0`` leaves it): every command and reply travels as a packet
``STX, length, data, CRC-16/XMODEM(data) hi, lo, ETX`` where ``length`` counts the length byte, the data, the two
CRC bytes and ETX (``len(data) + 4``); the pump alarms (``A?T``) and stops if no valid packet arrives within the
timeout, so a bench that loses the controller stops infusing.

Layers:

- pure codecs: :func:`encode_safe_packet`, :func:`decode_safe_packet`, :func:`parse_reply`, :class:`ReplyReader`
  (decoders raise only :class:`~drivers.codecs.errors.DecodeError`);
- :class:`Ne1000Pump`: async command/response over :func:`serial.serial_for_url` with timeouts and retries;
- :class:`drivers.serial.ne1000_link.Ne1000PumpLink` (separate module): a :class:`~drivers.interfaces.PumpLink`
  that turns approved insulin commands into volumes with a concentration setting (U-100 = 100 U/mL).
"""

from __future__ import annotations

import asyncio
import enum
import math
import re
from dataclasses import dataclass
from typing import Any

from drivers.codecs.crc import crc16_xmodem
from drivers.codecs.errors import DecodeError
from drivers.interfaces import DeviceError, DeviceTimeoutError
from drivers.serial.link import SerialTransport

STX = 0x02
ETX = 0x03
CR = 0x0D
MAX_REPLY = 64
MAX_SAFE_DATA = 250
STATUS_CHARS = "IWSPTUX"
ALARM_CHARS = {"R": "power reset", "S": "stall", "T": "safe-mode timeout", "E": "program error",
               "O": "out of range"}
ERROR_CODES = ("", "NA", "OOR", "COM", "IGN")
U100_U_PER_ML = 100.0


class RateUnits(enum.Enum):
    UL_PER_MIN = "UM"
    ML_PER_MIN = "MM"
    UL_PER_H = "UH"
    ML_PER_H = "MH"

    @property
    def ml_per_min_factor(self) -> float:
        """Multiply a rate in these units by this to get mL/min."""
        return {"UM": 1e-3, "MM": 1.0, "UH": 1e-3 / 60.0, "MH": 1.0 / 60.0}[self.value]


class Ne1000Error(DeviceError):
    """The pump answered with an error (``?``, ``?NA``, ``?OOR``, ``?COM``, ``?IGN``) or an alarm."""

    def __init__(self, message: str, reply: "Ne1000Reply | None" = None) -> None:
        super().__init__(message)
        self.reply = reply


# --------------------------------------------------------------------------------------------------------------
# unit conversion and number formatting


def insulin_u_to_volume_ml(amount_u: float, concentration_u_per_ml: float = U100_U_PER_ML) -> float:
    """Insulin units -> volume in mL at ``concentration_u_per_ml`` (U-100: 1 U = 0.01 mL = 10 uL)."""
    if not concentration_u_per_ml > 0.0:
        raise ValueError(f"concentration must be > 0 U/mL, got {concentration_u_per_ml!r}")
    return amount_u / concentration_u_per_ml


def volume_ml_to_insulin_u(volume_ml: float, concentration_u_per_ml: float = U100_U_PER_ML) -> float:
    """Volume in mL -> insulin units at ``concentration_u_per_ml``."""
    if not concentration_u_per_ml > 0.0:
        raise ValueError(f"concentration must be > 0 U/mL, got {concentration_u_per_ml!r}")
    return volume_ml * concentration_u_per_ml


def format_number(value: float) -> str:
    """A pump number: at most 4 significant digits and one decimal point, rounded down (never more insulin).

    Raises:
        ValueError: negative, not finite, or >= 10000 (the pump cannot represent it).
    """
    if not math.isfinite(value) or value < 0.0 or value >= 10000.0:
        raise ValueError(f"pump numbers are 0 <= x < 10000, got {value!r}")
    for decimals in (3, 2, 1, 0):
        if value < 10.0 ** (4 - decimals):
            scale = 10 ** decimals
            steps = math.floor(value * scale + 1e-9)
            return f"{steps / scale:.{decimals}f}"
    raise ValueError(f"cannot format {value!r}")  # unreachable: value < 10000 matched decimals 0


# --------------------------------------------------------------------------------------------------------------
# codecs


def encode_safe_packet(data: bytes) -> bytes:
    """Wrap command (or reply) ``data`` in a safe-mode packet."""
    if not 1 <= len(data) <= MAX_SAFE_DATA:
        raise ValueError(f"safe-mode data must be 1..{MAX_SAFE_DATA} bytes, got {len(data)}")
    crc = crc16_xmodem(data)
    return bytes([STX, len(data) + 4]) + bytes(data) + bytes([crc >> 8, crc & 0xFF, ETX])


def decode_safe_packet(packet: bytes) -> bytes:
    """Return the data of one safe-mode packet. Raises :class:`DecodeError` (short, length, CRC, STX/ETX)."""
    p = bytes(packet)
    if len(p) < 6:
        raise DecodeError("safe packet too short", p)
    if p[0] != STX or p[-1] != ETX:
        raise DecodeError("safe packet not delimited by STX/ETX", p)
    if p[1] != len(p) - 1 or p[1] - 4 > MAX_SAFE_DATA:
        raise DecodeError("safe packet length mismatch", p)
    data = p[2:-3]
    if crc16_xmodem(data) != (p[-3] << 8 | p[-2]):
        raise DecodeError("safe packet bad CRC", p)
    return data


@dataclass(frozen=True, slots=True)
class Ne1000Reply:
    """A decoded reply. ``status`` is one of ``IWSPTUX`` (or ``A`` with ``alarm`` set); ``error`` is the code
    after ``?`` ("" for a bare ``?``) or None; ``data`` is the rest (a queried value, ``DIS`` volumes, ...)."""

    address: int
    status: str
    data: str
    alarm: str | None = None
    error: str | None = None


def parse_reply(frame: bytes) -> Ne1000Reply:
    """Parse a basic-mode reply ``STX addr status [data] ETX`` (or its safe-mode packet data, without STX/ETX).

    Raises:
        DecodeError: framing, address, status, alarm or error code malformed.
    """
    raw = bytes(frame)
    body = raw[1:-1] if raw[:1] == bytes([STX]) and raw[-1:] == bytes([ETX]) else raw
    if len(raw) > MAX_REPLY + 2 or len(body) < 3:
        raise DecodeError("reply length out of range", raw)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("reply is not ASCII", raw) from None
    if not text[:2].isdigit() or not text[:2].isascii():
        raise DecodeError("reply address is not two digits", raw)
    address, status, rest = int(text[:2]), text[2], text[3:]
    if any(not (32 <= ord(ch) < 127) for ch in rest):
        raise DecodeError("reply data has control characters", raw)
    if status == "A":
        if len(rest) != 2 or rest[0] != "?" or rest[1] not in ALARM_CHARS:
            raise DecodeError("malformed alarm", raw)
        return Ne1000Reply(address, status, "", alarm=rest[1])
    if status not in STATUS_CHARS:
        raise DecodeError(f"unknown status {status!r}", raw)
    if rest.startswith("?"):
        if rest[1:] not in ERROR_CODES:
            raise DecodeError("unknown error code", raw)
        return Ne1000Reply(address, status, "", error=rest[1:])
    return Ne1000Reply(address, status, rest)


_DIS = re.compile(r"^I(\d+(?:\.\d*)?)W(\d+(?:\.\d*)?)(UL|ML)$")


def parse_dispensed(data: str) -> tuple[float, float]:
    """``DIS`` data ``I<f>W<f><UL|ML>`` -> (infused_ml, withdrawn_ml). Raises :class:`DecodeError`."""
    m = _DIS.match(data)
    if m is None:
        raise DecodeError("malformed DIS data", data.encode("ascii", "replace"))
    scale = 1e-3 if m.group(3) == "UL" else 1.0
    return float(m.group(1)) * scale, float(m.group(2)) * scale


class ReplyReader:
    """Split a received byte stream into reply frames (basic: ``STX .. ETX``; safe: length-delimited packets).

    Returns complete candidate frames; malformed stretches are skipped and counted. Never raises on input.
    """

    def __init__(self, safe_mode: bool = False) -> None:
        self.safe_mode = safe_mode
        self._buf = bytearray()
        self.skipped = 0

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf.extend(data)
        frames: list[bytes] = []
        while True:
            start = self._buf.find(bytes([STX]))
            if start < 0:
                self.skipped += len(self._buf)
                self._buf.clear()
                return frames
            if start:
                self.skipped += start
                del self._buf[:start]
            if self.safe_mode:
                if len(self._buf) < 2:
                    return frames
                total = self._buf[1] + 1
                if total < 6 or total > MAX_SAFE_DATA + 5:
                    self.skipped += 1
                    del self._buf[:1]
                    continue
                if len(self._buf) < total:
                    return frames
                frames.append(bytes(self._buf[:total]))
                del self._buf[:total]
            else:
                end = self._buf.find(bytes([ETX]))
                if end < 0:
                    if len(self._buf) > MAX_REPLY + 2:
                        self.skipped += 1
                        del self._buf[:1]
                        continue
                    return frames
                frames.append(bytes(self._buf[:end + 1]))
                del self._buf[:end + 1]


# --------------------------------------------------------------------------------------------------------------
# the pump

_QUERIES = frozenset({"DIA", "RAT", "VOL", "DIR", "SAF"})


def _is_query(command: str) -> bool:
    """True if the pump's reply to ``command`` carries data (``DIS``, ``VER`` or a setting command without value)."""
    text = command.strip().lstrip("0123456789").strip()
    return text in ("DIS", "VER") or text in _QUERIES


class Ne1000Pump:
    """Async NE-500/NE-1000 command interface.

    Args:
        url: port for :func:`serial.serial_for_url`.
        address: pump address 0..99 (prefixed to every command).
        baudrate: 300..19200 (the pump's setting).
        timeout_s: wait for each reply.
        attempts: transmissions per command. Setting commands and queries are idempotent and retransmitted;
            ``RUN`` is sent once (see :meth:`run`) and ``STP`` is repeated only until the pump reports stopped.
        serial_kwargs: extra keyword arguments for ``serial_for_url``.
    """

    def __init__(self, url: str, *, address: int = 0, baudrate: int = 19200, timeout_s: float = 0.5,
                 attempts: int = 3, serial_kwargs: dict[str, Any] | None = None) -> None:
        if not 0 <= address <= 99:
            raise ValueError(f"address must be 0..99, got {address!r}")
        self.url = url
        self.address = address
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._serial_kwargs = serial_kwargs
        self.safe_mode = False
        self._reader = ReplyReader()
        self._frames: asyncio.Queue[bytes] = asyncio.Queue()
        self._transport: SerialTransport | None = None
        self._lock = asyncio.Lock()
        self._failure: BaseException | None = None
        self.last_alarm: str | None = None
        self.bad_replies = 0
        self.stale_replies = 0

    async def open(self, timeout_s: float = 2.0) -> None:
        await self.close()
        self._failure = None
        self._reader = ReplyReader(self.safe_mode)
        self._transport = SerialTransport(self.url, baudrate=self.baudrate, on_bytes=self._on_bytes,
                                          on_error=self._on_error, serial_kwargs=self._serial_kwargs)
        await self._transport.open(timeout_s)

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    def _on_bytes(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            self._frames.put_nowait(frame)

    def _on_error(self, exc: BaseException) -> None:
        self._failure = exc

    def _encode(self, command: str) -> bytes:
        text = f"{self.address:02d}{command}" if self.address else command
        if self.safe_mode:
            return encode_safe_packet(text.encode("ascii"))
        return text.encode("ascii") + b"\r"

    def _decode(self, frame: bytes) -> Ne1000Reply:
        if self.safe_mode:
            return parse_reply(decode_safe_packet(frame))
        return parse_reply(frame)

    async def command(self, command: str, *, attempts: int | None = None, retry_garbled: bool = True,
                      expect_data: bool | None = None) -> Ne1000Reply:
        """Send one command (``"RAT 10 UM"``, ``"DIS"`` ...) and return the pump's reply.

        Raises:
            DeviceTimeoutError: no valid reply after all attempts.
            Ne1000Error: the pump answered with an error code or an alarm (``last_alarm`` keeps the alarm).
            DeviceError: the port is not open or failed.
        """
        attempts = attempts or self.attempts
        if expect_data is None:
            expect_data = _is_query(command)
        if not retry_garbled:
            attempts = 1
        async with self._lock:
            for attempt in range(attempts):
                if self._transport is None or self._failure is not None:
                    raise DeviceError(f"NE-1000 port {self.url!r} is not open")
                while not self._frames.empty():  # anything received so far answers an earlier transmission
                    self._frames.get_nowait()
                self._reader.reset()  # including a partial packet whose length byte was corrupted
                await self._transport.write(self._encode(command))
                reply = await self._await_reply(expect_data)
                if reply is None:
                    continue
                if reply.address != self.address:
                    continue
                if reply.alarm is not None:
                    self.last_alarm = reply.alarm
                    raise Ne1000Error(f"pump alarm {reply.alarm} ({ALARM_CHARS[reply.alarm]}) on {command!r}", reply)
                if reply.error in ("COM", "") and retry_garbled and attempt + 1 < attempts:
                    continue  # the pump saw a corrupted packet (or, in basic mode, a garbled line): send again
                if reply.error is not None:
                    raise Ne1000Error(f"pump refused {command!r}: ?{reply.error}", reply)
                return reply
            raise DeviceTimeoutError(f"no valid reply to {command!r} after {attempts} attempts")

    async def _await_reply(self, expect_data: bool) -> Ne1000Reply | None:
        """The first valid reply that fits the command: a query's reply carries data, a setting's does not (so a
        late reply to an earlier command is not taken for this one); alarms and errors always fit."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                frame = await asyncio.wait_for(self._frames.get(), remaining)
            except asyncio.TimeoutError:
                return None
            try:
                reply = self._decode(frame)
            except DecodeError:
                self.bad_replies += 1
                continue
            if reply.alarm is None and reply.error is None and bool(reply.data) != expect_data:
                self.stale_replies += 1
                continue
            return reply

    # -- commands ----------------------------------------------------------------------------------------------

    async def status(self) -> Ne1000Reply:
        """Query the status (the empty command; ``DIS`` in safe mode, where a packet needs data). Every reply
        carries the status character; this is also the safe-mode keep-alive."""
        return await self.command("DIS" if self.safe_mode else "")

    async def set_diameter(self, diameter_mm: float) -> None:
        await self.command(f"DIA {format_number(diameter_mm)}")

    async def set_rate(self, rate: float, units: RateUnits) -> None:
        await self.command(f"RAT {format_number(rate)} {units.value}")

    async def set_volume_units(self, microlitres: bool) -> None:
        await self.command("VOL UL" if microlitres else "VOL ML")

    async def set_volume(self, volume: float) -> None:
        """Volume to dispense, in the current volume units (0 = no limit)."""
        await self.command(f"VOL {format_number(volume)}")

    async def set_direction(self, direction: str) -> None:
        if direction not in ("INF", "WDR", "REV"):
            raise ValueError(f"direction must be INF, WDR or REV, got {direction!r}")
        await self.command(f"DIR {direction}")

    async def run(self) -> Ne1000Reply:
        """Start pumping. Sent exactly once, never retransmitted: a repeated ``RUN`` after a finished phase would
        start the volume again. No valid reply raises :class:`DeviceTimeoutError` (the caller must treat the
        delivery as uncertain and check ``DIS``)."""
        reply = await self.command("RUN", attempts=1, retry_garbled=False)
        self.last_alarm = None
        return reply

    async def stop(self) -> None:
        """Stop pumping: ``STP`` until the pump reports stopped (first ``STP`` pauses, the second stops)."""
        for _ in range(2 * self.attempts):
            reply = await self._stp()
            if reply.status == "S":
                return
        raise DeviceError("NE-1000 did not stop")

    async def _stp(self) -> Ne1000Reply:
        try:
            return await self.command("STP", attempts=1)
        except Ne1000Error as exc:
            if exc.reply is None or exc.reply.error not in ("COM", ""):
                raise
            return await self.status()  # the STP was garbled: look, then decide whether to send another
        except DeviceTimeoutError:
            return await self.status()  # the STP (or its reply) was lost: look, then decide

    async def dispensed_ml(self) -> tuple[float, float]:
        """(infused_ml, withdrawn_ml) since the last ``CLD``."""
        for _ in range(self.attempts):
            reply = await self.command("DIS")
            try:
                return parse_dispensed(reply.data)
            except DecodeError:  # a stray reply to another query: ask again
                self.stale_replies += 1
        raise DeviceError("NE-1000 gave no valid DIS reply")

    async def clear_dispensed(self, direction: str = "INF") -> None:
        await self.command(f"CLD {direction}")

    async def version(self) -> str:
        return (await self.command("VER")).data

    async def enable_safe_mode(self, timeout_s: int) -> None:
        """Enter safe mode with a communication timeout of ``timeout_s`` (1..255 s)."""
        if not 1 <= timeout_s <= 255:
            raise ValueError(f"safe-mode timeout must be 1..255 s, got {timeout_s!r}")
        await self.command(f"SAF{timeout_s}")
        self.safe_mode = True
        self._reader.safe_mode = True
        self._reader.reset()

    async def disable_safe_mode(self) -> None:
        await self.command("SAF0")
        self.safe_mode = False
        self._reader.safe_mode = False
        self._reader.reset()

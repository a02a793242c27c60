"""New Era NE-500/NE-1000 syringe pump emulator on a pseudo-terminal (basic and safe mode).

Commands: ``DIA``, ``RAT``, ``VOL``, ``DIR``, ``RUN``, ``STP``, ``DIS``, ``CLD``, ``VER``, ``SAF`` and the empty
command (status). Replies ``STX addr status [data] ETX`` (wrapped in a safe-mode packet when the command came as
one). Alarms ``A?R`` (power reset, reported once after start), ``A?S`` (stall: :meth:`Ne1000Emulator.set_occlusion`),
``A?T`` (safe-mode timeout). An alarm stops the pump and is reported in the reply to the next command.

Emulator simplifications: basic-mode commands other than ``SAF`` are refused with ``?COM`` while safe mode is on;
``SAF`` itself is accepted in either form; pumping is integrated in :meth:`on_tick` with ``time_scale`` (pump
seconds per wall-clock second) so tests can run an hour of infusion in a second.

Bench API: :meth:`take_delivered_ml`, :meth:`take_delivered_u`, :attr:`infused_ml`, :meth:`set_occlusion`,
:meth:`power_reset`; faults from :class:`~hil.emulators.pty.PtyEmulator` plus :meth:`lose_responses` and
:meth:`delay_responses`.
"""

from __future__ import annotations

import re
import time

from drivers.codecs.errors import DecodeError
from drivers.serial.ne1000 import (
    CR, ETX, MAX_SAFE_DATA, STX, RateUnits, decode_safe_packet, encode_safe_packet, format_number,
)
from hil.emulators.pty import PtyEmulator

_CMD = re.compile(r"^(\d{0,2})\s*([A-Z]{3})?\s*(.*)$")
_NUM = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(.*)$")


class Ne1000Emulator(PtyEmulator):
    """An NE-1000 on a pty.

    Args:
        address: pump address 0..99.
        firmware: ``VER`` reply.
        time_scale: pump seconds per wall-clock second (1 = real time).
        report_power_reset: answer the first command with ``A?R`` like a freshly powered pump.
        corruption_probability, seed, tick_s: see :class:`~hil.emulators.pty.PtyEmulator`.
    """

    def __init__(self, *, address: int = 0, firmware: str = "NE1000V3.928", time_scale: float = 1.0,
                 report_power_reset: bool = False, corruption_probability: float = 0.0, seed: int = 0,
                 tick_s: float = 0.005) -> None:
        super().__init__(corruption_probability=corruption_probability, seed=seed, tick_s=tick_s)
        self.address = address
        self.firmware = firmware
        self.time_scale = time_scale
        self.diameter_mm = 14.43
        self.rate = 0.0
        self.rate_units = RateUnits.ML_PER_H
        self.volume = 0.0
        self.volume_ul = False
        self.direction = "INF"
        self.status = "S"
        self.infused_ml = 0.0
        self.withdrawn_ml = 0.0
        self._phase_ml = 0.0
        self.total_infused_ml = 0.0
        """Everything infused since start (``CLD`` does not clear it)."""
        self._taken_ml = 0.0
        self._alarm: str | None = "R" if report_power_reset else None
        self._occluded = False
        self.safe_timeout_s = 0
        self._last_packet = time.monotonic()
        self._last_tick = time.monotonic()
        self._buf = bytearray()
        self._last_rx = time.monotonic()
        self.interbyte_timeout_s = 0.05
        """An incomplete command older than this (wall clock) is discarded with ``?COM``."""
        self._lose = 0
        self._lose_command: str | None = None
        self._last_command: str | None = None
        self.commands: list[str] = []
        """Every command executed (for tests and bench logs)."""

    # -- bench API ---------------------------------------------------------------------------------------------

    def take_delivered_ml(self) -> float:
        """Volume infused since the previous call (mL)."""
        with self.lock:
            delta = self.total_infused_ml - self._taken_ml
            self._taken_ml = self.total_infused_ml
            return delta

    def take_delivered_u(self, concentration_u_per_ml: float = 100.0) -> float:
        """Insulin infused since the previous call (U) at ``concentration_u_per_ml``."""
        return self.take_delivered_ml() * concentration_u_per_ml

    def set_occlusion(self, occluded: bool) -> None:
        """A blocked line: the motor stalls (alarm ``A?S``) and nothing is infused while it lasts."""
        with self.lock:
            self._occluded = occluded
            if occluded and self.status in "IWX":
                self._raise_alarm("S")

    def power_reset(self) -> None:
        """Power cycle: stop, leave safe mode, report ``A?R`` next."""
        with self.lock:
            self.status = "S"
            self.safe_timeout_s = 0
            self._alarm = "R"

    def lose_responses(self, count: int = 1, *, command: str | None = None) -> None:
        """Execute the next ``count`` commands (only ``command``, e.g. ``"RUN"``, if given) but lose their replies."""
        with self.lock:
            self._lose += count
            self._lose_command = command

    @property
    def safe_mode(self) -> bool:
        return self.safe_timeout_s > 0

    # -- pumping (lock held) -----------------------------------------------------------------------------------

    def _raise_alarm(self, code: str) -> None:
        self._alarm = code
        self.status = "S"

    def _volume_ml(self) -> float:
        return self.volume * (1e-3 if self.volume_ul else 1.0)

    def on_tick(self, now_s: float) -> None:
        super().on_tick(now_s)  # delayed replies
        if self._buf and now_s - self._last_rx > self.interbyte_timeout_s:
            # an incomplete command went quiet (e.g. a corrupted length byte): drop its first byte and rescan
            packet = self._buf[0] == STX
            del self._buf[:1]
            self._reply_error("COM", packet=packet)
            self._last_rx = now_s
            self._parse()
        dt_s = (now_s - self._last_tick) * self.time_scale
        self._last_tick = now_s
        if self.safe_mode and now_s - self._last_packet > self.safe_timeout_s:  # wall-clock seconds, unscaled
            if self.status in "IWX" or self._alarm is None:
                self._raise_alarm("T")
            self._last_packet = now_s
        if self.status not in "IW" or dt_s <= 0.0:
            return
        if self._occluded:
            self._raise_alarm("S")
            return
        step_ml = self.rate * self.rate_units.ml_per_min_factor * dt_s / 60.0
        target_ml = self._volume_ml()
        if target_ml > 0.0:
            step_ml = min(step_ml, max(0.0, target_ml - self._phase_ml))
        self._phase_ml += step_ml
        if self.status == "I":
            self.infused_ml += step_ml
            self.total_infused_ml += step_ml
        else:
            self.withdrawn_ml += step_ml
        if target_ml > 0.0 and self._phase_ml >= target_ml - 1e-12:
            self.status = "S"

    # -- protocol (lock held) ----------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        self._buf.extend(data)
        self._last_rx = time.monotonic()
        self._parse()

    def _parse(self) -> None:
        while self._buf:
            if self._buf[0] == STX:
                if len(self._buf) < 2:
                    return
                total = self._buf[1] + 1
                if total < 6 or total > MAX_SAFE_DATA + 5:
                    del self._buf[:1]
                    self._reply_error("COM", packet=True)
                    continue
                if len(self._buf) < total:
                    return
                packet = bytes(self._buf[:total])
                del self._buf[:total]
                try:
                    text = decode_safe_packet(packet).decode("ascii")
                except (DecodeError, UnicodeDecodeError):
                    self._reply_error("COM", packet=True)
                    continue
                self._last_packet = time.monotonic()
                self._reply(self._execute(text), packet=True)
            else:
                end = self._buf.find(bytes([CR]))
                stx = self._buf.find(bytes([STX]))
                if 0 <= stx and (end < 0 or stx < end):
                    del self._buf[:stx]  # noise before a packet
                    continue
                if end < 0:
                    if len(self._buf) > 64:
                        self._buf.clear()
                    return
                line = bytes(self._buf[:end])
                del self._buf[:end + 1]
                try:
                    text = line.decode("ascii")
                except UnicodeDecodeError:
                    self._reply_error("", packet=False)
                    continue
                if self.safe_mode and "SAF" not in text:
                    self._reply_error("COM", packet=False)
                    continue
                self._reply(self._execute(text), packet=False)

    def _frame(self, body: str, packet: bool) -> bytes:
        if packet:
            return encode_safe_packet(body.encode("ascii"))
        return bytes([STX]) + body.encode("ascii") + bytes([ETX])

    def _reply(self, reply: str | None, packet: bool) -> None:
        if reply is None:
            return
        if self._lose > 0 and (self._lose_command is None or self._lose_command == self._last_command):
            self._lose -= 1
            return
        self._send_reply(self._frame(f"{self.address:02d}{reply}", packet))

    def _reply_error(self, code: str, packet: bool) -> None:
        self._last_command = None
        self._reply(f"{self.status}?{code}", packet)

    def _execute(self, text: str) -> str | None:
        """Run one command; return the reply body after the address (or None if addressed to another pump)."""
        m = _CMD.match(text.strip())
        if m is None:
            return f"{self.status}?"
        addr, cmd, args = m.group(1), m.group(2), m.group(3).strip().upper()
        self._last_command = cmd
        if addr and int(addr) != self.address:
            return None
        if self._alarm is not None:
            alarm, self._alarm = self._alarm, None
            return f"A?{alarm}"
        if cmd is None:
            return self.status if not args else f"{self.status}?"
        self.commands.append(f"{cmd} {args}".strip())
        handler = getattr(self, f"_cmd_{cmd.lower()}", None)
        if handler is None:
            return f"{self.status}?"
        return handler(args)

    def _number(self, args: str) -> tuple[float, str] | None:
        m = _NUM.match(args)
        if m is None:
            return None
        text = m.group(1).replace(".", "")
        if len(text) > 4:
            return None
        return float(m.group(1)), m.group(2).strip()

    def _cmd_dia(self, args: str) -> str:
        if not args:
            return f"{self.status}{format_number(self.diameter_mm)}"
        if self.status != "S":
            return f"{self.status}?NA"
        parsed = self._number(args)
        if parsed is None or parsed[1] or not 0.1 <= parsed[0] <= 50.0:
            return f"{self.status}?OOR"
        self.diameter_mm = parsed[0]
        return self.status

    def _cmd_rat(self, args: str) -> str:
        if not args:
            return f"{self.status}{format_number(self.rate)}{self.rate_units.value}"
        parsed = self._number(args)
        if parsed is None:
            return f"{self.status}?OOR"
        value, unit = parsed
        try:
            units = RateUnits(unit) if unit else self.rate_units
        except ValueError:
            return f"{self.status}?"
        self.rate, self.rate_units = value, units
        return self.status

    def _cmd_vol(self, args: str) -> str:
        if not args:
            return f"{self.status}{format_number(self.volume)}{'UL' if self.volume_ul else 'ML'}"
        if args in ("UL", "ML"):
            self.volume_ul = args == "UL"
            return self.status
        parsed = self._number(args)
        if parsed is None or parsed[1]:
            return f"{self.status}?OOR"
        self.volume = parsed[0]
        return self.status

    def _cmd_dir(self, args: str) -> str:
        if not args:
            return f"{self.status}{self.direction}"
        if args == "REV":
            self.direction = "WDR" if self.direction == "INF" else "INF"
        elif args in ("INF", "WDR"):
            self.direction = args
        else:
            return f"{self.status}?"
        return self.status

    def _cmd_run(self, args: str) -> str:
        if self._occluded:
            self._raise_alarm("S")
            alarm, self._alarm = self._alarm, None
            return f"A?{alarm}"
        if self.status in "IW":
            return self.status  # already running: RUN again changes nothing (safe to retransmit)
        if self.status == "S":
            self._phase_ml = 0.0
        if self.rate <= 0.0:
            return f"{self.status}?OOR"
        self.status = "I" if self.direction == "INF" else "W"
        self._last_tick = time.monotonic()
        return self.status

    def _cmd_stp(self, args: str) -> str:
        self.status = "P" if self.status in "IWX" else "S"
        return self.status

    def _cmd_dis(self, args: str) -> str:
        ul = self.volume_ul and max(self.infused_ml, self.withdrawn_ml) * 1e3 < 10000.0
        scale = 1e3 if ul else 1.0
        units = "UL" if ul else "ML"
        return (f"{self.status}I{format_number(self.infused_ml * scale)}"
                f"W{format_number(self.withdrawn_ml * scale)}{units}")

    def _cmd_cld(self, args: str) -> str:
        if args == "INF":
            self.infused_ml = 0.0
        elif args == "WDR":
            self.withdrawn_ml = 0.0
        else:
            return f"{self.status}?"
        return self.status

    def _cmd_ver(self, args: str) -> str:
        return f"{self.status}{self.firmware}"

    def _cmd_saf(self, args: str) -> str:
        if not args:
            return f"{self.status}{self.safe_timeout_s}"
        if not args.isdigit() or int(args) > 255:
            return f"{self.status}?OOR"
        self.safe_timeout_s = int(args)
        self._last_packet = time.monotonic()
        return self.status

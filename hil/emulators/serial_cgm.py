"""Serial bench CGM emulator on a pseudo-terminal, driven by the virtual patient.

The bench calls :meth:`SerialCgmEmulator.push_glucose` at each sensor sample; the emulator stores the record and
pushes it to the driver as ``CGM_READING``, retransmitting until ACKed (then giving up: the driver back-fills).
If more than ``max_backlog`` records wait to be pushed (the bench runs much faster than the line confirms), only the
newest is pushed.
It answers ``INFO_REQ``, ``CGM_STATUS_REQ`` and ``CGM_RECORDS_REQ`` (see ``docs/serial-protocol.md``).

Fault hooks: ``corruption_probability``, ``disconnect*`` (from :class:`~hil.emulators.pty.PtyEmulator`),
``lose_responses``/``delay_responses`` (from :class:`~hil.emulators.pty.FramedDeviceEmulator`), and
:meth:`drop_readings` (store but never push the next readings).
"""

from __future__ import annotations

import math
import time
from collections import deque

from drivers.serial.protocol import (
    PROTOCOL_VERSION, Ack, CgmReading, CgmRecord, CgmRecords, CgmRecordsRequest, CgmStatus, CgmStatusRequest,
    DeviceKind, Info, InfoRequest, MAX_RECORDS_PER_FRAME, Message, Nak, NakReason, cgm_status_bits,
)
from hil.emulators.pty import FramedDeviceEmulator
from safety.readings import ReadingStatus


class SerialCgmEmulator(FramedDeviceEmulator):
    """A bench CGM on a pty.

    Args:
        name: reported in ``INFO``.
        push_timeout_s: wait for the ACK of a pushed reading before retransmitting it.
        push_attempts: transmissions of one reading before giving up on pushing it.
        capacity: records kept for back-fill (oldest dropped first).
        max_backlog: records waiting to be pushed beyond which only the newest is pushed.
        corruption_probability, seed, tick_s: see :class:`~hil.emulators.pty.PtyEmulator`.
    """

    def __init__(self, *, name: str = "twinloop-serial-cgm", push_timeout_s: float = 0.1, push_attempts: int = 5,
                 capacity: int = 4096, max_backlog: int = 16, corruption_probability: float = 0.0, seed: int = 0,
                 tick_s: float = 0.005) -> None:
        super().__init__(corruption_probability=corruption_probability, seed=seed, tick_s=tick_s)
        self.name = name
        self.push_timeout_s = push_timeout_s
        self.push_attempts = push_attempts
        self.max_backlog = max_backlog
        self._records: deque[CgmRecord] = deque(maxlen=capacity)
        self._next_sequence = 0
        self._to_push: deque[CgmRecord] = deque()
        self._in_flight: tuple[int, CgmRecord, int, float] | None = None  # seq, record, attempts, deadline
        self._drop = 0
        self.status_bits = 0
        self.readings_dropped = 0
        self.pushes_given_up = 0
        self.pushes_skipped = 0

    # -- bench API ---------------------------------------------------------------------------------------------

    def push_glucose(self, t_min: float, glucose_mg_dl: float, *, trend_mg_dl_per_min: float | None = None,
                     status: ReadingStatus = ReadingStatus.OK) -> int:
        """Record a sensor value at ``t_min`` and push it to the driver. Returns its sequence number.

        ``glucose_mg_dl`` NaN is sent as "no value"; values are clipped to the wire range 0..1000 mg/dL.
        """
        if not math.isfinite(t_min):
            raise ValueError(f"t_min must be finite, got {t_min!r}")
        value = glucose_mg_dl if not math.isfinite(glucose_mg_dl) else min(max(glucose_mg_dl, 0.0), 1000.0)
        with self.lock:
            record = CgmRecord(self._next_sequence, float(t_min), value, trend_mg_dl_per_min,
                               cgm_status_bits(status) | self.status_bits)
            self._next_sequence += 1
            self._records.append(record)
            if self._drop > 0:
                self._drop -= 1
                self.readings_dropped += 1
            else:
                self._to_push.append(record)
            return record.sequence

    def drop_readings(self, count: int = 1) -> None:
        """Fault: store the next ``count`` readings but never push them (the driver must back-fill)."""
        with self.lock:
            self._drop += count

    @property
    def records(self) -> tuple[CgmRecord, ...]:
        """Every stored record (what a complete download would return)."""
        with self.lock:
            return tuple(self._records)

    # -- device behaviour (emulator thread, lock held) ---------------------------------------------------------

    def on_tick(self, now_s: float) -> None:
        super().on_tick(now_s)
        if not self.connected:
            return
        if self._in_flight is not None:
            seq, record, attempts, deadline = self._in_flight
            if now_s < deadline:
                return
            if attempts >= self.push_attempts:
                self.pushes_given_up += 1
                self._in_flight = None
            else:
                self._transmit(seq, record, attempts + 1, now_s)
                return
        if self._to_push:
            # far behind (the bench pushes much faster than the line confirms): push only the newest record; the
            # driver sees the sequence gap and back-fills the skipped ones
            while len(self._to_push) > self.max_backlog:
                self._to_push.popleft()
                self.pushes_skipped += 1
            self._transmit(self._seq.next(), self._to_push.popleft(), 1, now_s)

    def _transmit(self, seq: int, record: CgmRecord, attempts: int, now_s: float) -> None:
        self._in_flight = (seq, record, attempts, now_s + self.push_timeout_s)
        self.send_message(seq, CgmReading(record))

    def handle_message(self, msg: Message) -> object | None:  # type: ignore[override]
        p = msg.payload
        if isinstance(p, Ack):
            if self._in_flight is not None and self._in_flight[0] == msg.seq:
                self._in_flight = None
                self.on_tick(time.monotonic())  # push the next one at once
            return None
        if isinstance(p, InfoRequest):
            return Info(DeviceKind.CGM, PROTOCOL_VERSION, self.name)
        if isinstance(p, CgmStatusRequest):
            oldest = self._records[0].sequence if self._records else self._next_sequence
            return CgmStatus(oldest, self._next_sequence, self.status_bits)
        if isinstance(p, CgmRecordsRequest):
            count = min(p.max_count, MAX_RECORDS_PER_FRAME)
            oldest = self._records[0].sequence if self._records else self._next_sequence
            start = max(p.from_sequence, oldest) - oldest
            records = [self._records[i] for i in range(start, min(start + count, len(self._records)))]
            return CgmRecords(tuple(records))
        return Nak(NakReason.NOT_SUPPORTED)

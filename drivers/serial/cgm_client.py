"""Serial bench CGM client: a :class:`~drivers.interfaces.CgmSource` over the framed bench protocol.

Readings come out in sequence order, without duplicates and without gaps: whenever a pushed reading's sequence
number is ahead of the next one expected, after a reconnect, or when no reading arrived for ``poll_interval_s``,
the client asks the CGM for its status and back-fills the missing records with ``CGM_RECORDS_REQ``. Back-filled
readings carry :attr:`~safety.readings.ReadingStatus.BACKFILLED`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from drivers.interfaces import DeviceError, DeviceTimeoutError
from drivers.serial.link import SerialLink
from drivers.serial.protocol import (
    MAX_RECORDS_PER_FRAME, CgmReading, CgmRecord, CgmRecords, CgmRecordsRequest, CgmStatus, CgmStatusRequest,
    DeviceKind, Info, InfoRequest, RetryPolicy, map_cgm_status,
)
from safety.readings import GlucoseReading, ReadingStatus

log = logging.getLogger(__name__)


class SerialCgmClient:
    """Read a bench CGM over a serial port.

    Args:
        url: port for :func:`serial.serial_for_url` (device path, pty path, ``socket://``, ``loop://``).
        baudrate: line speed.
        source: ``GlucoseReading.source`` of the readings.
        policy: per-request timeout and attempts.
        poll_interval_s: with no reading for this long, ask the CGM for its status and back-fill (set it a bit
            above the sensor interval in real time, e.g. 330 s for a 5-minute sensor; tests use less).
        resume_after_sequence: the last sequence already received (persisted by the runtime); ``None`` starts with
            the newest record the CGM holds.
        connect_timeout_s: opening the port and the first exchange.
        reconnect_backoff_s: first and maximum delay between reopen attempts after the port failed.
        serial_kwargs: extra keyword arguments for ``serial_for_url``.
    """

    def __init__(self, url: str, *, baudrate: int = 115200, source: str = "cgm:serial",
                 policy: RetryPolicy = RetryPolicy(), poll_interval_s: float = 330.0,
                 resume_after_sequence: int | None = None, connect_timeout_s: float = 5.0,
                 reconnect_backoff_s: tuple[float, float] = (0.1, 5.0),
                 serial_kwargs: dict[str, Any] | None = None) -> None:
        self.source = source
        self.poll_interval_s = poll_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_backoff_s = reconnect_backoff_s
        self.link = SerialLink(url, baudrate=baudrate, policy=policy, serial_kwargs=serial_kwargs)
        self._resume_after = resume_after_sequence
        self._expected: int | None = None
        self._closed = False
        self._page = 6  # records per back-fill request; adapts between 1 and MAX_RECORDS_PER_FRAME
        self._page_policy = RetryPolicy(policy.timeout_s, min(3, policy.attempts))
        self.device_name = ""
        self.gaps_backfilled = 0
        self.readings_backfilled = 0
        self.reconnects = 0
        self.records_lost = 0
        """Records the CGM no longer held when back-filling (storage overrun during a long outage)."""

    @property
    def last_sequence(self) -> int | None:
        """Sequence number of the last reading yielded (persist it and pass it as ``resume_after_sequence``)."""
        return None if self._expected is None or self._expected == 0 else self._expected - 1

    async def connect(self) -> None:
        """Open the port, check it is a CGM, and set the starting sequence. Raises :class:`DeviceError`."""
        self._closed = False
        await self.link.open(self.connect_timeout_s)
        await self._hello()

    async def _hello(self) -> None:
        info = (await self.link.request(InfoRequest())).payload
        if not isinstance(info, Info) or info.device_kind != DeviceKind.CGM:
            raise DeviceError(f"device on {self.link.url!r} is not a CGM: {info!r}")
        self.device_name = info.name
        if self._expected is None:
            status = await self._status()
            if self._resume_after is not None:
                self._expected = self._resume_after + 1
            else:
                self._expected = max(status.oldest_sequence, status.next_sequence - 1)

    async def close(self) -> None:
        self._closed = True
        await self.link.close()

    async def _status(self) -> CgmStatus:
        status = (await self.link.request(CgmStatusRequest())).payload
        assert isinstance(status, CgmStatus)
        return status

    async def _fetch(self, start: int, stop: int) -> list[CgmRecord]:
        """Records ``start`` .. ``stop - 1`` (fewer if the CGM no longer holds the oldest).

        Pages adapt to the line: a page that goes unanswered is halved (a long frame is more likely to be hit by
        noise), and grows back by one record after each success.
        """
        records: list[CgmRecord] = []
        nxt = start
        failures = 0
        while nxt < stop:
            count = min(self._page, stop - nxt)
            try:
                reply = (await self.link.request(CgmRecordsRequest(nxt, count), policy=self._page_policy)).payload
            except DeviceTimeoutError:
                failures += 1
                if failures * self._page_policy.attempts >= self.link.policy.attempts * 2:
                    raise
                self._page = max(1, self._page // 2)
                continue
            self._page = min(MAX_RECORDS_PER_FRAME, self._page + 1)
            assert isinstance(reply, CgmRecords)
            got = [r for r in reply.records if nxt <= r.sequence < stop]
            if not got:
                break
            records.extend(got)
            nxt = got[-1].sequence + 1
        return records

    def _reading(self, record: CgmRecord, backfilled: bool) -> GlucoseReading:
        status = map_cgm_status(record.status_bits)
        if backfilled:
            status |= ReadingStatus.BACKFILLED
        return GlucoseReading(record.t_min, record.glucose_mg_dl, self.source, status, record.trend_mg_dl_per_min,
                              record.sequence)

    async def _backfill(self, stop: int) -> list[GlucoseReading]:
        """Fetch the readings from the next expected one up to ``stop`` (exclusive) and advance."""
        assert self._expected is not None
        if stop <= self._expected:
            return []
        records = await self._fetch(self._expected, stop)
        readings = []
        for record in records:
            if record.sequence < self._expected:
                continue
            if record.sequence > self._expected:
                self.records_lost += record.sequence - self._expected
                log.warning("CGM records %d..%d no longer available", self._expected, record.sequence - 1)
            readings.append(self._reading(record, backfilled=True))
            self._expected = record.sequence + 1
        if readings:
            self.gaps_backfilled += 1
            self.readings_backfilled += len(readings)
        return readings

    async def _reconnect(self) -> None:
        delay, max_delay = self.reconnect_backoff_s
        while not self._closed:
            try:
                await self.link.open(self.connect_timeout_s)
                await self._hello()
                self.reconnects += 1
                return
            except DeviceError as exc:
                log.warning("CGM reconnect to %s failed: %s", self.link.url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    async def readings(self) -> AsyncIterator[GlucoseReading]:
        """Yield readings in sequence order, without duplicates; back-fills every gap. Runs until :meth:`close`."""
        if self._expected is None:
            raise DeviceError("not connected: call connect() first")
        sync = True  # start by catching up with what the CGM already holds
        while not self._closed:
            try:
                if sync:
                    status = await self._status()
                    for reading in await self._backfill(status.next_sequence):
                        yield reading
                    sync = False
                try:
                    msg = await asyncio.wait_for(self.link.unsolicited.get(), self.poll_interval_s)
                except asyncio.TimeoutError:
                    sync = True
                    continue
                payload = msg.payload
                if not isinstance(payload, CgmReading):
                    continue
                record = payload.record
                if record.sequence < self._expected:
                    continue  # duplicate (retransmitted push, or already back-filled)
                if record.sequence > self._expected:
                    for reading in await self._backfill(record.sequence):
                        yield reading
                if record.sequence == self._expected:
                    self._expected = record.sequence + 1
                    yield self._reading(record, backfilled=False)
                elif record.sequence > self._expected:
                    sync = True  # the back-fill stopped short: try again from the CGM's status
            except DeviceError as exc:
                if self._closed:
                    return
                log.warning("CGM link %s: %s", self.link.url, exc)
                sync = True
                if not self.link.is_open:
                    await self._reconnect()
                else:
                    await asyncio.sleep(self.reconnect_backoff_s[0])

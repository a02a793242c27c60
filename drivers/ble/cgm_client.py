"""Bluetooth CGM collector (CGMS client) on bleak: implements :class:`drivers.interfaces.CgmSource`.

What it does:

- connects with a timeout (reconnects with backoff whenever the link drops), reads CGM Feature (E2E-CRC on/off),
  subscribes to CGM Measurement notifications and to SOCP and RACP indications;
- on the first connection, if no session runs, writes Session Start Time (from ``clock``), sets the
  communication interval and starts a session; otherwise reads Session Start Time;
- yields every record as a :class:`safety.readings.GlucoseReading` with ``t_min = session start + time offset``,
  ``sequence = time offset`` and the annunciation mapped to :class:`ReadingStatus`;
- loses nothing: after every reconnection, and whenever a gap shows up in the live stream (a dropped or corrupted
  notification), it back-fills through RACP ("report records with time offset >= last seen + 1"); duplicates are
  discarded and readings come out in time-offset order. Back-filled readings carry ``ReadingStatus.BACKFILLED``.

Malformed notifications are logged and counted (``decode_errors``), never raised into the loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import AsyncIterator, Callable, Sequence

from drivers.ble import uuids
from drivers.ble.connection import DEFAULT_BACKOFF_S, BleConnection
from drivers.codecs import cgms as c
from drivers.codecs.errors import DecodeError
from drivers.interfaces import DeviceError
from safety.readings import GlucoseReading, ReadingStatus

logger = logging.getLogger(__name__)

__all__ = ["CgmsClient", "BleCgmClient", "map_status", "wall_clock_min"]


def wall_clock_min() -> float:
    """Minutes since the Unix epoch (the board's timeline)."""
    return time.time() / 60.0


def map_status(m: c.CgmMeasurement, *, noisy_quality_pct: float = 50.0) -> ReadingStatus:
    """CGMS annunciation octets (and quality) -> :class:`ReadingStatus`."""
    s = ReadingStatus.OK
    if m.status:
        if m.status & c.StatusOctet.SESSION_STOPPED:
            s |= ReadingStatus.SESSION_STOPPED
        if m.status & c.StatusOctet.SENSOR_MALFUNCTION:
            s |= ReadingStatus.SENSOR_MALFUNCTION
        if m.status & (c.StatusOctet.GENERAL_DEVICE_FAULT | c.StatusOctet.SENSOR_TYPE_INCORRECT):
            s |= ReadingStatus.DEVICE_FAULT
    if m.cal_temp:
        if m.cal_temp & c.CalTempOctet.CALIBRATION_REQUIRED:
            s |= ReadingStatus.CALIBRATION_REQUIRED
        if m.cal_temp & c.CalTempOctet.CALIBRATION_RECOMMENDED:
            s |= ReadingStatus.CALIBRATION_RECOMMENDED
        if m.cal_temp & (c.CalTempOctet.TEMPERATURE_TOO_HIGH | c.CalTempOctet.TEMPERATURE_TOO_LOW):
            s |= ReadingStatus.TEMPERATURE_OUT_OF_RANGE
    if m.warning:
        if m.warning & c.WarningOctet.BELOW_DEVICE_RANGE:
            s |= ReadingStatus.BELOW_DEVICE_RANGE
        if m.warning & c.WarningOctet.ABOVE_DEVICE_RANGE:
            s |= ReadingStatus.ABOVE_DEVICE_RANGE
    if m.quality_pct is not None and not math.isnan(m.quality_pct) and m.quality_pct < noisy_quality_pct:
        s |= ReadingStatus.NOISY
    return s


class CgmsClient:
    """CGMS collector. See the module docstring.

    Args:
        address: the sensor's Bluetooth address.
        backend: bleak backend class (``None`` = platform default, e.g. BlueZ).
        octet_order: annunciation octet order of this sensor model.
        interval_min: communication interval to set when starting a session (``None``: leave as is).
        start_session: start a session on first connect if none runs.
        session_start_min: the session start on the system timeline (minutes); ``None`` = from the sensor's
            Session Start Time (or ``clock()`` when this client starts the session).
        clock: current time in minutes on the system timeline (default: Unix-epoch minutes).
        last_offset: last time offset already consumed (e.g. restored from the journal): back-fill from there.
        connect_timeout_s, io_timeout_s: per-attempt connect timeout and per-call I/O timeout.
        response_timeout_s: how long to wait for a SOCP/RACP indication.
        backoff_s: reconnect delays.
        source: ``GlucoseReading.source`` (default ``"cgm:ble:<address>"``).
        resume_after_sequence: alias of ``last_offset`` (the name the serial client uses).
    """

    def __init__(self, address: str, *, backend: type | None = None,
                 octet_order: c.OctetOrder = c.OctetOrder.STATUS_FIRST, interval_min: int | None = 5,
                 start_session: bool = True, session_start_min: float | None = None,
                 clock: Callable[[], float] = wall_clock_min, last_offset: int | None = None,
                 connect_timeout_s: float = 10.0, io_timeout_s: float = 5.0, response_timeout_s: float = 10.0,
                 backoff_s: Sequence[float] = DEFAULT_BACKOFF_S, source: str | None = None,
                 resume_after_sequence: int | None = None) -> None:
        if last_offset is None:
            last_offset = resume_after_sequence
        self.address = address
        self.octet_order = octet_order
        self.interval_min = interval_min
        self.start_session = start_session
        self.session_start_min = session_start_min
        self.clock = clock
        self.response_timeout_s = response_timeout_s
        self.source = source or f"cgm:ble:{address}"
        self.feature: c.CgmFeature | None = None
        self.e2e = False
        self.last_offset: int | None = last_offset
        self.decode_errors = 0
        self.backfills = 0
        self._conn = BleConnection(address, backend=backend, connect_timeout_s=connect_timeout_s,
                                   io_timeout_s=io_timeout_s, backoff_s=backoff_s, on_disconnect=self._on_disconnect)
        self._incoming: asyncio.Queue[tuple[c.CgmMeasurement, bool]] = asyncio.Queue()
        self._socp: asyncio.Queue[c.SocpMessage] = asyncio.Queue()
        self._racp: asyncio.Queue[c.RacpMessage] = asyncio.Queue()
        self._racp_active = False
        self._wakeup = asyncio.Event()
        self._closed = False
        self._session_checked = False
        self._lost_notification = False

    # -------------------------------------------------------------------------------------------- connection
    async def connect(self) -> None:
        """Connect (one attempt, with timeout) and prepare the session. Raises DeviceError/DeviceTimeoutError."""
        await self._conn.connect()
        try:
            await self._setup()
        except DeviceError:
            await self._conn.close()
            raise

    async def _setup(self) -> None:
        try:
            await self._setup_session()
        except DecodeError as exc:
            raise DeviceError(f"CGM {self.address}: unusable {exc.reason}") from exc

    async def _setup_session(self) -> None:
        conn = self._conn
        self.feature = c.decode_feature(await conn.read(uuids.CGM_FEATURE))
        self.e2e = self.feature.e2e
        await conn.subscribe(uuids.CGM_MEASUREMENT, self._on_measurement)
        await conn.subscribe(uuids.CGM_SOCP, self._on_socp)
        await conn.subscribe(uuids.RACP, self._on_racp)
        if not self._session_checked:
            status = c.decode_status(await conn.read(uuids.CGM_STATUS), e2e=self.e2e, octet_order=self.octet_order)
            running = not status.status & c.StatusOctet.SESSION_STOPPED
            if not running and self.start_session:
                await self._start_session()
            elif self.session_start_min is None:
                await self._read_session_start()
            self._session_checked = True
        elif self.session_start_min is None:
            await self._read_session_start()

    async def _read_session_start(self) -> None:
        raw = await self._conn.read(uuids.CGM_SESSION_START_TIME)
        try:
            self.session_start_min = c.decode_session_start_time(raw, e2e=self.e2e).to_epoch_min()
        except (DecodeError, ValueError) as exc:
            raise DeviceError(f"session start time unusable: {exc}") from exc

    async def _start_session(self) -> None:
        start_min = self.session_start_min if self.session_start_min is not None else float(int(self.clock() * 60)) / 60
        st = c.SessionStartTime.from_epoch_min(start_min)
        await self._conn.write(uuids.CGM_SESSION_START_TIME, c.encode_session_start_time(st, e2e=self.e2e))
        self.session_start_min = st.to_epoch_min()
        if self.interval_min is not None:
            await self.socp(c.SocpMessage(c.SocpOp.SET_INTERVAL, interval_min=self.interval_min))
        await self.socp(c.SocpMessage(c.SocpOp.START_SESSION))

    async def socp(self, msg: c.SocpMessage) -> c.SocpMessage:
        """Send a SOCP request and wait for its indication. Raises DeviceError if the result is not success."""
        _drain(self._socp)
        await self._conn.write(uuids.CGM_SOCP, c.encode_socp(msg, e2e=self.e2e))
        reply = await self._conn.wait_reply(self._socp, self.response_timeout_s, f"SOCP response to {msg.op.name}")
        if reply.op is c.SocpOp.RESPONSE_CODE and reply.result is not c.SocpResult.SUCCESS:
            raise DeviceError(f"SOCP {msg.op.name} refused: {reply.result.name if reply.result else reply}")
        return reply

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        await self._conn.close()

    def _on_disconnect(self) -> None:
        self._wakeup.set()

    # -------------------------------------------------------------------------------------------- notifications
    def _on_measurement(self, data: bytes) -> None:
        try:
            records = c.decode_measurements(data, e2e=self.e2e, octet_order=self.octet_order)
        except DecodeError as exc:
            self.decode_errors += 1
            logger.warning("CGM %s: dropped malformed measurement: %s", self.address, exc.reason)
            self._lost_notification = True
            self._wakeup.set()
            return
        for m in records:
            self._incoming.put_nowait((m, self._racp_active))
        self._wakeup.set()

    def _on_socp(self, data: bytes) -> None:
        try:
            self._socp.put_nowait(c.decode_socp(data, e2e=self.e2e))
        except DecodeError as exc:
            self.decode_errors += 1
            logger.warning("CGM %s: malformed SOCP indication: %s", self.address, exc.reason)

    def _on_racp(self, data: bytes) -> None:
        try:
            self._racp.put_nowait(c.decode_racp(data))
        except DecodeError as exc:
            self.decode_errors += 1
            logger.warning("CGM %s: malformed RACP indication: %s", self.address, exc.reason)

    # -------------------------------------------------------------------------------------------- back-fill
    async def backfill(self, from_offset: int) -> list[tuple[c.CgmMeasurement, bool]]:
        """Ask for every record with time offset >= ``from_offset``; return what arrived until the RACP response
        (records arrive as measurement notifications, in order, before the response indication)."""
        _drain(self._racp)
        self._racp_active = True
        try:
            req = c.RacpMessage(c.RacpOp.REPORT_RECORDS, c.RacpOperator.GREATER_OR_EQUAL,
                                c.RACP_FILTER_TIME_OFFSET, low=max(0, min(from_offset, 0xFFFF)))
            await self._conn.write(uuids.RACP, c.encode_racp(req))
            reply = await self._conn.wait_reply(self._racp, self.response_timeout_s, "RACP response to the back-fill")
        finally:
            self._racp_active = False
        self.backfills += 1
        if reply.op is c.RacpOp.RESPONSE_CODE and reply.result not in (c.RacpResult.SUCCESS,
                                                                       c.RacpResult.NO_RECORDS_FOUND):
            raise DeviceError(f"RACP back-fill refused: {reply.result.name if reply.result else reply}")
        return _drain(self._incoming)

    # -------------------------------------------------------------------------------------------- readings
    def _reading(self, m: c.CgmMeasurement, backfilled: bool) -> GlucoseReading:
        status = map_status(m)
        if backfilled:
            status |= ReadingStatus.BACKFILLED
        start = self.session_start_min if self.session_start_min is not None else 0.0
        return GlucoseReading(t_min=start + m.time_offset_min, glucose_mg_dl=m.glucose_mg_dl, source=self.source,
                              status=status, trend_mg_dl_per_min=m.trend_mg_dl_per_min, sequence=m.time_offset_min)

    def _fresh(self, batch: list[tuple[c.CgmMeasurement, bool]]) -> list[GlucoseReading]:
        out = []
        for m, backfilled in sorted(batch, key=lambda item: item[0].time_offset_min):
            if self.last_offset is not None and m.time_offset_min <= self.last_offset:
                continue  # duplicate (live and back-filled copies, or a replay)
            self.last_offset = m.time_offset_min
            out.append(self._reading(m, backfilled))
        return out

    def _gap(self, m: c.CgmMeasurement) -> bool:
        if self.last_offset is None:
            return False
        step = self.interval_min or 5
        return m.time_offset_min > self.last_offset + step + step // 2

    def _next_offset(self) -> int:
        return 0 if self.last_offset is None else self.last_offset + 1

    async def readings(self) -> AsyncIterator[GlucoseReading]:  # type: ignore[override]
        """Yield readings until :meth:`close`; reconnects and back-fills as needed."""
        need_backfill = self.last_offset is not None
        ever_connected = self._conn.connects > 0
        failures = 0
        while not self._closed:
            try:
                if not self._conn.is_connected:
                    await self._conn.connect_with_backoff(stop=lambda: self._closed)
                    await self._setup()
                    failures = 0
                    need_backfill = need_backfill or ever_connected
                    ever_connected = True
                if self._lost_notification:
                    self._lost_notification = False
                    need_backfill = True
                if need_backfill:
                    need_backfill = False
                    for r in self._fresh(await self.backfill(self._next_offset())):
                        yield r
                    continue
                self._wakeup.clear()
                if self._incoming.empty():
                    await self._wakeup.wait()
                    continue
                m, backfilled = self._incoming.get_nowait()
                if self._gap(m):
                    logger.info("CGM %s: gap %s -> %d, back-filling", self.address, self.last_offset,
                                m.time_offset_min)
                    batch = [(m, backfilled)] + _drain(self._incoming)
                    batch += await self.backfill(self._next_offset())
                    for r in self._fresh(batch):
                        yield r
                    continue
                for r in self._fresh([(m, backfilled)]):
                    yield r
            except DeviceError as exc:
                if self._closed:
                    return
                failures += 1
                delay = self._conn.backoff_s[min(failures - 1, len(self._conn.backoff_s) - 1)]
                logger.warning("CGM %s: %s; reconnecting in %.2f s", self.address, exc, delay)
                need_backfill = True
                await self._conn.close()
                await asyncio.sleep(delay)


BleCgmClient = CgmsClient
"""Alias used by the runtime's device factory."""


def _drain(queue: asyncio.Queue) -> list:  # type: ignore[type-arg]
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items

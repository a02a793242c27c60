"""End to end, no hardware: bleak (through the bumble backend) reads a 2-hour stream from the emulated CGMS,
survives disconnects, dropped and corrupted notifications, and back-fills every gap through RACP."""

from __future__ import annotations

import asyncio
import math

import pytest

pytest.importorskip("bumble")

from drivers.ble.cgm_client import CgmsClient, map_status  # noqa: E402
from drivers.codecs import cgms as c  # noqa: E402
from drivers.interfaces import CgmSource, DeviceError  # noqa: E402
from hil.emulators.ble_cgms import CgmsEmulator  # noqa: E402
from hil.emulators.ble_link import VirtualBleLink  # noqa: E402
from safety.readings import ReadingStatus  # noqa: E402

SESSION_START_MIN = 29_000_000.0  # 2025-02-19 21:20 UTC, on the board's Unix-minute timeline
N = 24  # 2 hours at 5-minute intervals (offsets are accelerated: nothing waits real minutes)


def run(coro, timeout_s: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def glucose(i: int) -> float:
    return 100.0 + 30.0 * math.sin(i / 4.0)


def _client(cgm, air, **kw) -> CgmsClient:
    kw.setdefault("clock", lambda: SESSION_START_MIN)
    return CgmsClient(cgm.address, backend=air.backend(), connect_timeout_s=3.0, io_timeout_s=2.0,
                      response_timeout_s=3.0, backoff_s=(0.05, 0.1, 0.2), octet_order=cgm.octet_order, **kw)


async def _collect(client: CgmsClient, n: int, out: list) -> None:
    async for reading in client.readings():
        out.append(reading)
        if len(out) >= n:
            return


async def _until(predicate, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def _check_stream(readings, n=N):
    offsets = [r.sequence for r in readings]
    assert offsets == [5 * i for i in range(n)], "lost, duplicated or reordered readings"
    for i, r in enumerate(readings):
        assert r.t_min == SESSION_START_MIN + 5 * i
        assert r.glucose_mg_dl == pytest.approx(glucose(i), abs=0.05)
        assert r.source.startswith("cgm:ble:")


@pytest.mark.parametrize("e2e, order", [(False, c.OctetOrder.STATUS_FIRST), (True, c.OctetOrder.WARNING_FIRST)])
def test_two_hour_stream_survives_disconnects_and_backfills_with_zero_loss(e2e, order):
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=e2e, octet_order=order))
            client = _client(cgm, air)
            assert isinstance(client, CgmSource)
            await client.connect()
            assert cgm.session_running and cgm.interval_min == 5
            assert cgm.session_start.to_epoch_min() == SESSION_START_MIN
            got: list = []
            task = asyncio.create_task(_collect(client, N, got))
            for i in range(N):
                if i == 8:  # the link drops, and the sensor keeps measuring while nobody listens
                    await cgm.set_connectable(False)
                    await cgm.disconnect()
                if i == 12:
                    await cgm.set_connectable(True)
                    await _until(lambda: client._conn.is_connected and cgm.connected)
                if i == 16:  # a second, unannounced disconnect right after a reading
                    cgm.push_glucose(5 * i, glucose(i))
                    await cgm.disconnect()
                    continue
                cgm.push_glucose(5 * i, glucose(i))
                await asyncio.sleep(0.01)
            await asyncio.wait_for(task, 30)
            await client.close()
            _check_stream(got)
            backfilled = [r.sequence for r in got if r.status & ReadingStatus.BACKFILLED]
            assert {40, 45, 50, 55} <= set(backfilled)  # read back through RACP
            assert all(not r.status & ~ReadingStatus.BACKFILLED for r in got)
            assert client.backfills >= 1 and cgm.connection_count >= 3
            assert any(m.op is c.RacpOp.REPORT_RECORDS and m.operator is c.RacpOperator.GREATER_OR_EQUAL
                       and m.low is not None and m.low <= 40 for m in cgm.racp_log), cgm.racp_log
    run(main())


def test_dropped_and_corrupted_notifications_are_backfilled():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=True))
            client = _client(cgm, air)
            await client.connect()
            got: list = []
            task = asyncio.create_task(_collect(client, N, got))
            for i in range(N):
                if i == 5:
                    cgm.faults.drop_notifications = 2       # two readings never notified: a gap
                if i == 13:
                    cgm.faults.corrupt_crc = 1              # bad E2E-CRC: decode error, then back-fill
                if i == N - 1:
                    cgm.faults.drop_notifications = 1       # the very last one is lost too
                cgm.push_glucose(5 * i, glucose(i))
                await _until(lambda: len(got) >= i - 3 or client.decode_errors > 0)
                await asyncio.sleep(0.01)
            # the last reading was dropped and nothing follows it: the next reading would reveal it; the bench
            # pushes one more and the gap is filled
            cgm.push_glucose(5 * N, glucose(N))
            await asyncio.wait_for(task, 30)
            await client.close()
            _check_stream(got)
            assert client.decode_errors == 1
            assert cgm.connection_count == 1  # no reconnection needed
    run(main())


def test_existing_session_is_followed_and_restored_offset_backfills():
    async def main():
        async with VirtualBleLink() as air:
            start = c.SessionStartTime.from_epoch_min(SESSION_START_MIN)
            cgm = await air.add(CgmsEmulator(session_running=True, session_start=start))
            for i in range(6):
                cgm.push_glucose(5 * i, glucose(i))
            client = _client(cgm, air, clock=lambda: 0.0, last_offset=10)  # readings up to offset 10 journaled
            await client.connect()
            assert client.session_start_min == SESSION_START_MIN  # read from the sensor, not written
            assert not any(m.op is c.SocpOp.START_SESSION for m in cgm.socp_log)
            got: list = []
            await asyncio.wait_for(_collect(client, 3, got), 10)
            assert [r.sequence for r in got] == [15, 20, 25]
            assert got[0].t_min == SESSION_START_MIN + 15
            await client.close()
    run(main())


def test_status_flags_are_mapped():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(octet_order=c.OctetOrder.WARNING_FIRST))
            client = _client(cgm, air)
            await client.connect()
            got: list = []
            task = asyncio.create_task(_collect(client, 3, got))
            cgm.push_glucose(0, 39.0, warning=c.WarningOctet.BELOW_DEVICE_RANGE, status=c.StatusOctet.BATTERY_LOW)
            cal = c.CalTempOctet.CALIBRATION_REQUIRED | c.CalTempOctet.TEMPERATURE_TOO_LOW
            cgm.push_glucose(5, 110.0, cal_temp=cal, trend_mg_dl_per_min=-1.5, quality_pct=30.0)
            cgm.push_glucose(10, math.nan, status=c.StatusOctet.SENSOR_MALFUNCTION)
            await asyncio.wait_for(task, 10)
            await client.close()
            assert got[0].status == ReadingStatus.BELOW_DEVICE_RANGE
            assert got[1].status == (ReadingStatus.CALIBRATION_REQUIRED | ReadingStatus.TEMPERATURE_OUT_OF_RANGE
                                     | ReadingStatus.NOISY)
            assert got[1].trend_mg_dl_per_min == -1.5
            assert got[2].status == ReadingStatus.SENSOR_MALFUNCTION and not got[2].is_numeric
    run(main())


def test_map_status_covers_every_mapped_octet():
    m = c.CgmMeasurement(100, 0, c.StatusOctet.SESSION_STOPPED | c.StatusOctet.GENERAL_DEVICE_FAULT,
                         c.CalTempOctet.CALIBRATION_RECOMMENDED | c.CalTempOctet.TEMPERATURE_TOO_HIGH,
                         c.WarningOctet.ABOVE_DEVICE_RANGE | c.WarningOctet.BELOW_HYPO)
    assert map_status(m) == (ReadingStatus.SESSION_STOPPED | ReadingStatus.DEVICE_FAULT
                             | ReadingStatus.CALIBRATION_RECOMMENDED | ReadingStatus.TEMPERATURE_OUT_OF_RANGE
                             | ReadingStatus.ABOVE_DEVICE_RANGE)


def test_lost_socp_response_times_out_with_a_named_error():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator())
            cgm.faults.lose_responses = 1
            client = _client(cgm, air)
            client.response_timeout_s = 0.3
            with pytest.raises(DeviceError, match="no SOCP response"):
                await client.connect()
            assert not client._conn.is_connected
            await client.connect()  # the next attempt works
            assert cgm.session_running
            await client.close()
    run(main())


@pytest.mark.hardware
def test_real_cgm_over_bluez(request):
    """Opt-in: ``pytest --hardware --ble-address AA:BB:... -m hardware``; reads one reading from a real sensor."""
    address = request.config.getoption("--ble-address")
    if not address:
        pytest.skip("--ble-address not given")

    async def main():
        client = CgmsClient(address, start_session=False, connect_timeout_s=20.0)
        await client.connect()
        try:
            got: list = []
            await asyncio.wait_for(_collect(client, 1, got), 600)
            assert got and got[0].source == f"cgm:ble:{address}"
        finally:
            await client.close()

    asyncio.run(main())

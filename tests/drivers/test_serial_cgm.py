"""Serial CGM client against the pty emulator: a 2-hour stream with 1 % byte corruption both ways and no lost
reading, back-fill after dropped readings and a pulled cable, resume after a restart, status mapping."""

from __future__ import annotations

import asyncio
import math

from drivers.interfaces import CgmSource
from drivers.serial.cgm_client import SerialCgmClient
from drivers.serial.protocol import RetryPolicy
from hil.emulators.serial_cgm import SerialCgmEmulator
from safety.readings import GlucoseReading, ReadingStatus

FAST = RetryPolicy(timeout_s=0.12, attempts=10)


def glucose_at(t_min: float) -> float:
    return 140.0 + 60.0 * math.sin(t_min / 40.0)


async def _collect(client: SerialCgmClient, until_sequence: int, out: list[GlucoseReading]) -> None:
    async for reading in client.readings():
        out.append(reading)
        if reading.sequence == until_sequence:
            return


async def _stream(cgm: SerialCgmEmulator, client: SerialCgmClient, t_values: list[float], pace_s: float,
                  faults: dict[int, object] | None = None, timeout_s: float = 8.0) -> list[GlucoseReading]:
    got: list[GlucoseReading] = []
    consumer = asyncio.create_task(_collect(client, len(t_values) - 1, got))
    for i, t in enumerate(t_values):
        if faults and i in faults:
            faults[i]()  # type: ignore[operator]
        cgm.push_glucose(t, glucose_at(t), trend_mg_dl_per_min=0.5)
        await asyncio.sleep(pace_s)
    await asyncio.wait_for(consumer, timeout_s)
    return got


def _assert_complete(got: list[GlucoseReading], t_values: list[float]) -> None:
    assert [r.sequence for r in got] == list(range(len(t_values))), "lost, duplicated or reordered readings"
    for r, t in zip(got, t_values):
        assert r.t_min == t
        assert abs(r.glucose_mg_dl - glucose_at(t)) <= 0.05
        assert r.source == "cgm:serial"


def test_two_hour_stream_with_one_percent_corruption_loses_no_reading() -> None:
    t_values = [float(t) for t in range(0, 121)]  # 1-minute sensor, 2 hours, accelerated ~2400x

    async def run() -> tuple[list[GlucoseReading], SerialCgmClient, SerialCgmEmulator]:
        with SerialCgmEmulator(corruption_probability=0.01, seed=7, push_timeout_s=0.05) as cgm:
            client = SerialCgmClient(cgm.port, policy=FAST, poll_interval_s=0.4)
            assert isinstance(client, CgmSource)
            await client.connect()
            try:
                got = await _stream(cgm, client, t_values, pace_s=0.025)
            finally:
                await client.close()
            return got, client, cgm

    got, client, cgm = asyncio.run(run())
    _assert_complete(got, t_values)
    assert cgm.bytes_corrupted > 10, "the corruption fault did not fire"
    assert client.link.stats["bad_frames"] > 0
    assert client.records_lost == 0


def test_dropped_readings_and_pulled_cable_are_back_filled() -> None:
    t_values = [5.0 * k for k in range(25)]  # 5-minute sensor, 2 hours

    async def run() -> tuple[list[GlucoseReading], SerialCgmClient]:
        with SerialCgmEmulator(corruption_probability=0.01, seed=3, push_timeout_s=0.05) as cgm:
            client = SerialCgmClient(cgm.port, policy=FAST, poll_interval_s=0.3)
            await client.connect()
            faults = {
                4: lambda: cgm.drop_readings(3),         # readings 4, 5, 6 never pushed
                12: lambda: cgm.disconnect_for(0.5),     # readings 12.. pushed into a dead line
                24: lambda: cgm.drop_readings(1),        # the last one: only the idle poll finds it
            }
            try:
                got = await _stream(cgm, client, t_values, pace_s=0.03, faults=faults)
            finally:
                await client.close()
            return got, client

    got, client = asyncio.run(run())
    _assert_complete(got, t_values)
    backfilled = {r.sequence for r in got if r.status & ReadingStatus.BACKFILLED}
    assert {4, 5, 6, 24} <= backfilled
    assert client.gaps_backfilled >= 2  # 4..6 and 24 at least (a back-fill may cover several gaps)


def test_resume_after_restart_back_fills_from_the_persisted_sequence() -> None:
    async def run() -> list[GlucoseReading]:
        with SerialCgmEmulator() as cgm:
            for k in range(10):
                cgm.push_glucose(5.0 * k, 100.0 + k)
            client = SerialCgmClient(cgm.port, policy=FAST, poll_interval_s=0.3, resume_after_sequence=3)
            await client.connect()
            got: list[GlucoseReading] = []
            try:
                await asyncio.wait_for(_collect(client, 9, got), 5.0)
            finally:
                await client.close()
            assert client.last_sequence == 9
            return got

    got = asyncio.run(run())
    assert [r.sequence for r in got] == list(range(4, 10))
    assert all(r.status & ReadingStatus.BACKFILLED for r in got)


def test_fresh_client_starts_with_the_newest_record() -> None:
    async def run() -> list[GlucoseReading]:
        with SerialCgmEmulator() as cgm:
            for k in range(5):
                cgm.push_glucose(5.0 * k, 100.0 + k)
            client = SerialCgmClient(cgm.port, policy=FAST, poll_interval_s=0.3)
            await client.connect()
            got: list[GlucoseReading] = []
            try:
                task = asyncio.create_task(_collect(client, 5, got))
                await asyncio.sleep(0.2)
                cgm.push_glucose(25.0, 105.0)
                await asyncio.wait_for(task, 5.0)
            finally:
                await client.close()
            return got

    got = asyncio.run(run())
    assert [r.sequence for r in got] == [4, 5]
    assert got[1].status == ReadingStatus.OK


def test_status_flags_and_special_values_are_mapped() -> None:
    async def run() -> list[GlucoseReading]:
        with SerialCgmEmulator() as cgm:
            client = SerialCgmClient(cgm.port, policy=FAST, poll_interval_s=0.3)
            await client.connect()
            got: list[GlucoseReading] = []
            try:
                task = asyncio.create_task(_collect(client, 1, got))
                cgm.push_glucose(0.0, 90.0, status=ReadingStatus.WARMUP | ReadingStatus.NOISY)
                cgm.push_glucose(5.0, math.nan, status=ReadingStatus.SENSOR_MALFUNCTION)
                await asyncio.wait_for(task, 5.0)
            finally:
                await client.close()
            return got

    first, second = asyncio.run(run())
    # pushed before the client's first sync, so they may arrive back-filled: compare the sensor's own flags
    assert first.status & ~ReadingStatus.BACKFILLED == ReadingStatus.WARMUP | ReadingStatus.NOISY
    assert first.trend_mg_dl_per_min is None
    assert math.isnan(second.glucose_mg_dl) and not second.is_numeric
    assert second.status & ~ReadingStatus.BACKFILLED == ReadingStatus.SENSOR_MALFUNCTION


def test_lost_and_delayed_responses_are_retried() -> None:
    async def run() -> list[GlucoseReading]:
        with SerialCgmEmulator() as cgm:
            for k in range(30):
                cgm.push_glucose(5.0 * k, 100.0 + k)
            client = SerialCgmClient(cgm.port, policy=FAST, poll_interval_s=0.3, resume_after_sequence=-1)
            await client.connect()
            cgm.lose_responses(2)
            cgm.delay_responses(0.05)
            got: list[GlucoseReading] = []
            try:
                await asyncio.wait_for(_collect(client, 29, got), 8.0)
            finally:
                await client.close()
            assert cgm.responses_lost == 2
            return got

    got = asyncio.run(run())
    assert [r.sequence for r in got] == list(range(30))

"""Opt-in tests on a real serial device: ``pytest --hardware --serial-device /dev/ttyUSB0 -m hardware``.

Read-only (nothing is infused). Which test applies depends on what is attached; set
``TWINLOOP_SERIAL_DEVICE_KIND`` to ``ne1000`` (default), ``cgm`` or ``pump`` (a bench device speaking
docs/serial-protocol.md). Without ``--hardware`` these tests are skipped by tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from drivers.serial.protocol import RetryPolicy


@pytest.fixture()
def serial_device(request: pytest.FixtureRequest) -> str:
    device = request.config.getoption("--serial-device")
    if not device:
        pytest.skip("no --serial-device given")
    return str(device)


def _kind() -> str:
    return os.environ.get("TWINLOOP_SERIAL_DEVICE_KIND", "ne1000")


@pytest.mark.hardware
def test_ne1000_answers_version_and_status(serial_device: str) -> None:
    if _kind() != "ne1000":
        pytest.skip("attached device is not an NE-1000")
    from drivers.serial.ne1000 import Ne1000Error, Ne1000Pump

    async def run() -> None:
        pump = Ne1000Pump(serial_device, timeout_s=1.0)
        await pump.open()
        try:
            try:
                await pump.status()
            except Ne1000Error as exc:  # a freshly powered pump reports A?R once
                assert exc.reply is not None and exc.reply.alarm is not None
            assert (await pump.version()).startswith("NE")
            assert (await pump.status()).status in "IWSPTUX"
            infused, withdrawn = await pump.dispensed_ml()
            assert infused >= 0.0 and withdrawn >= 0.0
        finally:
            await pump.close()

    asyncio.run(run())


@pytest.mark.hardware
def test_bench_cgm_reports_its_status(serial_device: str) -> None:
    if _kind() != "cgm":
        pytest.skip("attached device is not a bench CGM")
    from drivers.serial.cgm_client import SerialCgmClient

    async def run() -> None:
        client = SerialCgmClient(serial_device, policy=RetryPolicy(timeout_s=0.5, attempts=4))
        await client.connect()
        await client.close()
        assert client.device_name is not None

    asyncio.run(run())


@pytest.mark.hardware
def test_bench_pump_reports_its_status(serial_device: str) -> None:
    if _kind() != "pump":
        pytest.skip("attached device is not a bench pump")
    from drivers.serial.pump_client import SerialPumpClient

    async def run() -> None:
        client = SerialPumpClient(serial_device, policy=RetryPolicy(timeout_s=0.5, attempts=4))
        await client.connect()
        try:
            status = await client.status()
            assert status.reservoir_u is None or status.reservoir_u >= 0.0
            await client.history()
        finally:
            await client.close()

    asyncio.run(run())

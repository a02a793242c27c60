"""The bleak backend on bumble: the real BleakClient against a bumble peripheral on a LocalLink."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("bumble")

from bleak import BleakClient  # noqa: E402
from bleak.exc import BleakError, BleakGATTProtocolError  # noqa: E402

from drivers.ble import uuids  # noqa: E402
from drivers.ble.connection import BleConnection  # noqa: E402
from drivers.interfaces import DeviceError, DeviceTimeoutError  # noqa: E402
from hil.emulators.ble_cgms import CgmsEmulator  # noqa: E402
from hil.emulators.ble_link import VirtualBleLink  # noqa: E402


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_bleak_discovers_reads_writes_and_gets_indications():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=False))
            got = []
            async with BleakClient(cgm.address, backend=air.backend(), timeout=5.0) as client:
                assert client.is_connected
                assert client.backend_id == "BumbleBleakClient"
                service = client.services.get_service(uuids.CGMS_SERVICE)
                assert service is not None
                socp = client.services.get_characteristic(uuids.CGM_SOCP)
                assert set(socp.properties) == {"write", "indicate"}
                assert len(await client.read_gatt_char(uuids.CGM_FEATURE)) == 6
                await client.start_notify(uuids.CGM_SOCP, lambda _c, d: got.append(bytes(d)))
                await client.write_gatt_char(uuids.CGM_SOCP, b"\x1a", response=True)
                for _ in range(100):
                    if got:
                        break
                    await asyncio.sleep(0.01)
                assert got == [b"\x1c\x1a\x01"]
                assert cgm.session_running
                await client.stop_notify(uuids.CGM_SOCP)
            assert not client.is_connected
    run(main())


def test_att_error_becomes_bleak_protocol_error():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=True))
            async with BleakClient(cgm.address, backend=air.backend(), timeout=5.0) as client:
                with pytest.raises(BleakGATTProtocolError) as info:
                    await client.write_gatt_char(uuids.CGM_SOCP, b"\x1a\x00\x00", response=True)  # bad CRC
                assert info.value.code == 0x81
    run(main())


def test_peripheral_disconnect_calls_the_callback_and_reconnect_works():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator())
            dropped = asyncio.Event()
            client = BleakClient(cgm.address, lambda _c: dropped.set(), backend=air.backend(), timeout=5.0)
            await client.connect()
            await cgm.disconnect()
            await asyncio.wait_for(dropped.wait(), 5)
            assert not client.is_connected
            with pytest.raises(BleakError):
                await client.read_gatt_char(uuids.CGM_FEATURE)
            await client.connect()
            assert len(await client.read_gatt_char(uuids.CGM_FEATURE)) == 6
            await client.disconnect()
            assert cgm.connection_count == 2
    run(main())


def test_connect_to_absent_or_silent_device_times_out():
    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator())
            await cgm.set_connectable(False)
            conn = BleConnection(cgm.address, backend=air.backend(), connect_timeout_s=0.3)
            with pytest.raises(DeviceTimeoutError):
                await conn.connect()
            with pytest.raises(DeviceError):
                await conn.connect_with_backoff(max_attempts=2)
            absent = BleConnection("F0:00:00:00:00:99", backend=air.backend(), connect_timeout_s=0.3)
            with pytest.raises(DeviceTimeoutError):
                await absent.connect()
            await cgm.set_connectable(True)
            await conn.connect_with_backoff(max_attempts=3)
            assert conn.is_connected
            await conn.close()
            assert len(air.link.controllers) == 1  # the centrals removed themselves from the link
    run(main())


def test_backend_needs_a_link():
    from drivers.ble.bumble_backend import BumbleBleakClient

    with pytest.raises(BleakError):
        BleakClient("F0:00:00:00:00:01", backend=BumbleBleakClient)


def test_ble_modules_import_bleak_and_bumble_lazily():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, drivers.ble.cgm_client, drivers.ble.pump_client, drivers.ble.uuids, drivers.interfaces, "
            "hil.emulators.ble_link, hil.emulators.ble_cgms, hil.emulators.ble_ids; "
            "heavy = [m for m in ('bleak', 'bumble') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).parents[2]))

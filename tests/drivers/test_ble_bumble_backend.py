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


# ------------------------------------------------------------------------------------- over an HCI transport (TCP)

def test_two_clients_share_one_hci_host_and_survive_a_connect_timeout():
    """Both clients of a process go through one bumble host on one served controller; a timed-out attempt (silent
    peripheral) is cancelled on the controller, so the next attempt on the same host succeeds."""
    from drivers.ble.bumble_backend import bumble_hci_backend
    from hil.emulators.ble_ids import IdsEmulator

    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=False))
            pump = await air.add(IdsEmulator(e2e=True))
            spec = await air.expose_controller_hci()
            assert spec.startswith("tcp-client:127.0.0.1:")
            backend = bumble_hci_backend(spec)
            async with BleakClient(cgm.address, backend=backend, timeout=5.0) as c1, \
                    BleakClient(pump.address, backend=backend, timeout=5.0) as c2:
                assert len(await c1.read_gatt_char(uuids.CGM_FEATURE)) == 6
                assert c2.services.get_service(uuids.IDS_SERVICE) is not None
                server = air.hci_servers[0]
                assert server.accepted == 1  # one host, one controller, two connections
                (controller,) = server.controllers
                assert len(controller.le_connections) == 2
            await asyncio.sleep(0.1)  # let the peripherals re-advertise before the fault
            await cgm.set_connectable(False)
            conn = BleConnection(cgm.address, backend=backend, connect_timeout_s=0.4)
            with pytest.raises(DeviceTimeoutError):
                await conn.connect()
            await cgm.set_connectable(True)
            await conn.connect_with_backoff(max_attempts=3)
            assert len(await conn.read(uuids.CGM_FEATURE)) == 6
            await conn.close()
            assert air.hci_servers[0].accepted == 1
    run(main())


_CHILD = """
import asyncio, os, sys
from bleak import BleakClient
from drivers.ble import uuids
from drivers.ble.bumble_backend import bumble_hci_backend

async def main(spec, address, hold):
    async with BleakClient(address, backend=bumble_hci_backend(spec), timeout=5.0) as client:
        feature = await client.read_gatt_char(uuids.CGM_FEATURE)
        print(os.getpid(), feature.hex(), flush=True)
        if hold:
            await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "hold"))
"""


def test_a_client_in_another_process_reads_over_hci_tcp_and_reconnects_after_sigkill():
    import os
    import sys
    from pathlib import Path

    repo = str(Path(__file__).parents[2])

    async def child(spec, address, mode):
        return await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, spec, address, mode, cwd=repo,
                                                    stdout=asyncio.subprocess.PIPE)

    async def until(predicate, timeout_s=5.0):
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.01)

    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=False))
            spec = await air.expose_controller_hci()
            first = await child(spec, cgm.address, "hold")
            pid, feature = (await asyncio.wait_for(first.stdout.readline(), 30)).decode().split()
            assert int(pid) == first.pid != os.getpid()
            assert len(bytes.fromhex(feature)) == 6
            assert cgm.connected and len(air.link.controllers) == 2
            first.kill()  # SIGKILL: no disconnect, the TCP connection just closes
            assert await first.wait() == -9
            await until(lambda: not cgm.connected)  # the peripheral saw the link time out
            assert len(air.link.controllers) == 1  # the dead host's controller left the air
            second = await child(spec, cgm.address, "once")
            out, _ = await asyncio.wait_for(second.communicate(), 30)
            assert second.returncode == 0
            pid2, feature2 = out.decode().split()
            assert int(pid2) == second.pid != int(pid) and feature2 == feature
            assert air.hci_servers[0].accepted == 2 and cgm.connection_count == 2
    asyncio.run(asyncio.wait_for(main(), 90))


def test_losing_the_hci_transport_disconnects_its_clients():
    """The other end of the transport goes away (bench stopped, dongle unplugged): every client of that host hears
    a disconnection, and reconnecting fails with a named error instead of hanging."""
    from drivers.ble.bumble_backend import bumble_hci_backend

    async def main():
        async with VirtualBleLink() as air:
            cgm = await air.add(CgmsEmulator(e2e=False))
            backend = bumble_hci_backend(await air.expose_controller_hci())
            dropped = asyncio.Event()
            client = BleakClient(cgm.address, lambda _c: dropped.set(), backend=backend, timeout=5.0)
            await client.connect()
            await air.hci_servers[0].close()
            await asyncio.wait_for(dropped.wait(), 5)
            assert not client.is_connected and not cgm.connected
            conn = BleConnection(cgm.address, backend=backend, connect_timeout_s=1.0)
            with pytest.raises(DeviceError, match="HCI transport"):
                await conn.connect()
    run(main())

"""A bleak backend on top of bumble: the real :class:`bleak.BleakClient` talks, in process, over a bumble
:class:`~bumble.link.LocalLink` to emulated GATT peripherals (see ``hil/emulators/``).

On a board the default BlueZ backend is used; this backend exists so that CI and HIL benches exercise the very
same client code without a radio. Use :func:`bumble_backend_for` to get a backend class bound to one link::

    backend = bumble_backend_for(link)
    async with BleakClient("F0:F0:F0:F0:F0:01", backend=backend, timeout=5.0) as client:
        await client.read_gatt_char("00002aa8-0000-1000-8000-00805f9b34fb")

Each client instance gets its own virtual controller (a "central") on the link, created at ``connect`` and
removed at ``disconnect``. ATT error responses become :class:`bleak.exc.BleakGATTProtocolError`; timeouts
become :class:`TimeoutError` (as on BlueZ). ``pair``/``unpair`` are accepted and do nothing (the local link is
not encrypted). bumble and bleak are imported here only, never at package import.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Callable

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError

logger = logging.getLogger(__name__)

__all__ = ["BumbleBleakClient", "bumble_backend_for"]

_central_counter = itertools.count(1)

_PROPERTY_NAMES = (
    (0x01, "broadcast"),
    (0x02, "read"),
    (0x04, "write-without-response"),
    (0x08, "write"),
    (0x10, "notify"),
    (0x20, "indicate"),
    (0x40, "authenticated-signed-writes"),
    (0x80, "extended-properties"),
)


def _uuid128(uuid: Any) -> str:
    """bumble UUID -> bleak's normalised 128-bit lowercase string."""
    text = str(uuid.to_hex_str("-")).lower()
    if len(uuid.uuid_bytes) == 2:
        return f"0000{text}-0000-1000-8000-00805f9b34fb"
    if len(uuid.uuid_bytes) == 4:
        return f"{text}-0000-1000-8000-00805f9b34fb"
    return text


class BumbleBleakClient(BaseBleakClient):
    """bleak backend over a bumble LocalLink. Bind it to a link with :func:`bumble_backend_for` (or pass
    ``bumble_link=`` to ``BleakClient``, which forwards extra keyword arguments to the backend)."""

    _link: Any = None

    def __init__(self, address_or_ble_device: Any, *, disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        link = kwargs.get("bumble_link") or type(self)._link
        if link is None:
            raise BleakError("BumbleBleakClient needs a bumble LocalLink (use bumble_backend_for(link))")
        self._bumble_link = link
        self._controller: Any = None
        self._device: Any = None
        self._connection: Any = None
        self._peer: Any = None
        self._connected = False
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}
        self._teardown_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        if self._connection is None:
            return 23
        return int(getattr(self._connection, "att_mtu", 23))

    @property
    def is_connected(self) -> bool:
        return self._connected

    # ------------------------------------------------------------------------------------------------ connection
    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        from bumble.controller import Controller
        from bumble.core import PhysicalTransport
        from bumble.device import Device, Peer
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.transport.common import AsyncPipeSink

        if self._connected:
            return
        if self._teardown_task is not None:
            await self._teardown_task
            self._teardown_task = None
        timeout = float(kwargs.get("timeout", self._timeout))
        n = next(_central_counter)
        address = f"C0:{(n >> 16) & 0xFF:02X}:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}:00:01"
        self._controller = Controller(f"bleak-central-{n}", link=self._bumble_link, public_address=address)
        self._device = Device(address=Address(address), host=Host(self._controller, AsyncPipeSink(self._controller)))
        try:
            async with asyncio.timeout(timeout):
                await self._device.power_on()
                self._connection = await self._device.connect(Address(self.address),
                                                              transport=PhysicalTransport.LE, timeout=timeout)
                self._connection.on("disconnection", self._on_disconnection)
                self._connected = True
                self._peer = Peer(self._connection)
                self.services = await self._discover()
        except BaseException:
            await self._teardown()
            raise

    async def _discover(self) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        peer = self._peer
        await peer.discover_services()
        for service in peer.services:
            b_service = BleakGATTService(service, service.handle, _uuid128(service.uuid))
            collection.add_service(b_service)
            await service.discover_characteristics()
            for char in service.characteristics:
                props = [name for bit, name in _PROPERTY_NAMES if int(char.properties) & bit]
                b_char = BleakGATTCharacteristic(
                    char, char.handle, _uuid128(char.uuid), props,  # type: ignore[arg-type]
                    lambda: max(self.mtu_size - 3, 20), b_service)
                collection.add_characteristic(b_char)
                await char.discover_descriptors()
                for desc in char.descriptors:
                    collection.add_descriptor(BleakGATTDescriptor(desc, desc.handle, _uuid128(desc.type), b_char))
        return collection

    def _on_disconnection(self, *_: Any) -> None:
        was_connected = self._connected
        self._connected = False
        self._connection = None
        if was_connected:  # unsolicited: nobody is awaiting disconnect(), release the virtual controller
            self._teardown_task = asyncio.get_running_loop().create_task(self._teardown())
        if was_connected and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _teardown(self) -> None:
        self._connected = False
        device, controller = self._device, self._controller
        self._device = self._controller = self._peer = None
        if device is not None:
            try:
                await device.power_off()
            except Exception:  # noqa: BLE001 - best effort while tearing down a virtual controller
                logger.debug("power_off failed", exc_info=True)
        if controller is not None:
            try:
                self._bumble_link.remove_controller(controller)
            except KeyError:
                pass

    async def disconnect(self) -> None:
        connection = self._connection
        self._connected = False
        self._connection = None
        if connection is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await connection.disconnect()
            except Exception:  # noqa: BLE001 - already gone or the peer vanished: we are disconnected either way
                logger.debug("disconnect failed", exc_info=True)
        if self._teardown_task is not None:
            await self._teardown_task
            self._teardown_task = None
        await self._teardown()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        logger.debug("pairing is not emulated on the bumble local link; ignored")

    async def unpair(self) -> None:
        logger.debug("unpairing is not emulated on the bumble local link; ignored")

    # ------------------------------------------------------------------------------------------------ I/O
    def _require(self) -> Any:
        if not self._connected or self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def _att(self, coro: Any) -> Any:
        from bumble.att import ATT_Error

        try:
            async with asyncio.timeout(self._timeout):
                return await coro
        except ATT_Error as exc:
            raise BleakGATTProtocolError(int(exc.error_code)) from exc
        except asyncio.CancelledError:
            if not self._connected:
                raise BleakError("disconnected during a GATT operation") from None
            raise

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        peer = self._require()
        return bytearray(await self._att(peer.read_value(characteristic.obj)))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        peer = self._require()
        return bytearray(await self._att(peer.read_value(descriptor.obj)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        peer = self._require()
        await self._att(peer.write_value(characteristic.obj, bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        peer = self._require()
        await self._att(peer.write_value(descriptor.obj, bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        peer = self._require()

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscriptions[characteristic.handle] = on_value
        await self._att(peer.subscribe(characteristic.obj, on_value, prefer_notify=True))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require()
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        await self._att(peer.unsubscribe(characteristic.obj, subscriber))


def bumble_backend_for(link: Any) -> type[BumbleBleakClient]:
    """A :class:`BumbleBleakClient` subclass bound to ``link``, to pass as ``BleakClient(..., backend=...)``."""
    return type("BumbleBleakClient", (BumbleBleakClient,), {"_link": link})

"""A bleak backend on top of bumble: the real :class:`bleak.BleakClient` talks to GATT peripherals through a bumble
host, in one of two modes.

* **Local link** (unit tests): over a bumble :class:`~bumble.link.LocalLink` in this process, to emulated peripherals
  (see ``hil/emulators/``). :func:`bumble_backend_for` returns a backend class bound to one link::

      backend = bumble_backend_for(link)
      async with BleakClient("F0:F0:F0:F0:F0:01", backend=backend, timeout=5.0) as client:
          await client.read_gatt_char("00002aa8-0000-1000-8000-00805f9b34fb")

  Each client instance gets its own virtual controller (a "central") on the link, created at ``connect`` and
  removed at ``disconnect``.

* **HCI transport** (HIL bench, or a dongle driven without BlueZ): over a bumble HCI transport spec such as
  ``tcp-client:127.0.0.1:4567`` (the bench's emulated radio, see ``VirtualBleLink.expose_controller_hci``),
  ``usb:0`` or ``serial:/dev/ttyUSB0,1000000``. :func:`bumble_hci_backend` returns the backend class. One bumble
  host (a central :class:`~bumble.device.Device`) per transport and event loop is shared by every client naming
  that spec (one controller holds several connections, like one dongle); it is opened at the first ``connect`` and
  re-opened after the transport was lost.

ATT error responses become :class:`bleak.exc.BleakGATTProtocolError`; timeouts become :class:`TimeoutError` (as on
BlueZ); other bumble failures become :class:`bleak.exc.BleakError`. ``pair``/``unpair`` are accepted and do nothing
(no encryption is emulated). bumble and bleak are imported here only, and this module only inside functions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any, Callable

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError

logger = logging.getLogger(__name__)

__all__ = ["BumbleBleakClient", "bumble_backend_for", "bumble_hci_backend"]

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


class _HciCentral:
    """One bumble host (central role) over one HCI transport, shared by the clients of this process and loop that
    name the same spec. Connection attempts are serialised (a controller initiates one LE connection at a time)."""

    ORPHAN_GRACE_S = 2.0
    """A connection nobody claimed (it completed after its attempt was given up) is dropped after this long."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.device: Any = None
        self.clients: set[BumbleBleakClient] = set()
        self._claimed: set[int] = set()
        self._open_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self.device is not None and not self.transport.source.terminated.done()

    async def _open(self) -> Any:
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.transport import open_transport

        async with self._open_lock:
            if self.is_open:
                return self.device
            await self._close()
            try:
                transport = await open_transport(self.spec)
            except (OSError, ValueError, RuntimeError) as exc:
                raise BleakError(f"HCI transport {self.spec!r} cannot be opened: {exc!r}") from exc
            # a random static address (top bits 11) unique per process, so a restarted runtime is a new central
            pid = os.getpid()
            address = "C1:" + ":".join(f"{b:02X}" for b in pid.to_bytes(4, "big")) + ":01"
            device = Device.with_hci(f"twinloop-{pid}", Address(address), transport.source, transport.sink)
            try:
                await device.power_on()
            except BaseException:
                await transport.close()
                raise
            device.on("connection", self._on_connection)
            transport.source.terminated.add_done_callback(lambda _f, t=transport: self._on_lost(t))
            self.transport, self.device = transport, device
            logger.info("bumble host on HCI transport %s (central %s)", self.spec, address)
            return device

    def _on_connection(self, connection: Any) -> None:
        self.loop.call_later(self.ORPHAN_GRACE_S, self._reap, connection)

    def _reap(self, connection: Any) -> None:
        device = self.device
        if id(connection) in self._claimed or device is None or connection.handle not in device.connections:
            return
        logger.warning("HCI %s: dropping an unclaimed connection to %s", self.spec, connection.peer_address)
        self.loop.create_task(_quiet(connection.disconnect()))

    def _on_lost(self, transport: Any) -> None:
        """The transport died (bench gone, dongle unplugged): every client of it is disconnected."""
        if transport is not self.transport:
            return
        logger.warning("HCI transport %s lost", self.spec)
        self.device = None
        for client in list(self.clients):
            client._on_disconnection()

    async def _close(self) -> None:
        transport, self.transport, self.device = self.transport, None, None
        if transport is not None:
            await _quiet(transport.close())

    async def connect(self, client: "BumbleBleakClient", address: str, timeout_s: float) -> Any:
        from bumble.core import PhysicalTransport
        from bumble.hci import Address

        deadline = self.loop.time() + timeout_s
        async with self._connect_lock:
            device = await self._open()
            # bumble's own timeout cancels the initiation on the controller (an outer cancellation would leave it
            # pending): give it most of what is left after waiting for the lock, keep the rest for the cancel
            remaining_s = deadline - self.loop.time()
            try:
                connection = await device.connect(Address(address), transport=PhysicalTransport.LE,
                                                  timeout=max(0.05, remaining_s * 0.6))
            except asyncio.CancelledError:
                await self._cancel_initiation(device)
                raise
            self._claimed.add(id(connection))
            connection.on("disconnection", lambda *_: self._claimed.discard(id(connection)))
            self.clients.add(client)
            return connection

    async def _cancel_initiation(self, device: Any) -> None:
        """Still holding the connect lock, so the cancel cannot hit the next client's attempt."""
        from bumble import hci

        if self.is_open:
            await _quiet(device.send_command(hci.HCI_LE_Create_Connection_Cancel_Command()), timeout_s=1.0)


_centrals: dict[tuple[int, str], _HciCentral] = {}


def _central_for(spec: str) -> _HciCentral:
    loop = asyncio.get_running_loop()
    key = (id(loop), spec)
    central = _centrals.get(key)
    if central is None or central.loop is not loop:  # id() of a closed loop can be reused
        for stale in [k for k, c in _centrals.items() if c.loop.is_closed()]:
            del _centrals[stale]
        central = _centrals[key] = _HciCentral(spec)
    return central


async def _quiet(coro: Any, timeout_s: float = 2.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await coro
    except Exception:  # noqa: BLE001 - best effort on a link that may already be gone
        logger.debug("ignored", exc_info=True)


class BumbleBleakClient(BaseBleakClient):
    """bleak backend over bumble. Bind it to a LocalLink with :func:`bumble_backend_for` or to an HCI transport with
    :func:`bumble_hci_backend` (or pass ``bumble_link=`` / ``bumble_hci=`` to ``BleakClient``, which forwards extra
    keyword arguments to the backend)."""

    _link: Any = None
    _hci: str | None = None

    def __init__(self, address_or_ble_device: Any, *, disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        link = kwargs.get("bumble_link") or type(self)._link
        hci = kwargs.get("bumble_hci") or type(self)._hci
        if link is None and hci is None:
            raise BleakError("BumbleBleakClient needs a bumble LocalLink (bumble_backend_for(link)) or an HCI "
                             "transport (bumble_hci_backend(spec))")
        self._bumble_link = link
        self._hci_spec = None if link is not None else hci
        self._central: _HciCentral | None = None
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
        from bumble.core import TimeoutError as BumbleTimeoutError
        from bumble.device import Peer

        if self._connected:
            return
        if self._teardown_task is not None:
            await self._teardown_task
            self._teardown_task = None
        timeout = float(kwargs.get("timeout", self._timeout))
        try:
            async with asyncio.timeout(timeout):
                if self._hci_spec is not None:
                    self._central = _central_for(self._hci_spec)
                    self._connection = await self._central.connect(self, self.address, timeout)
                else:
                    self._connection = await self._connect_local(timeout)
                self._connection.on("disconnection", self._on_disconnection)
                self._connected = True
                self._peer = Peer(self._connection)
                self.services = await self._discover()
        except BaseException as exc:
            await self._teardown()
            if isinstance(exc, BumbleTimeoutError):
                raise TimeoutError(f"connect to {self.address} timed out") from exc
            if isinstance(exc, (TimeoutError, BleakError)) or not isinstance(exc, Exception):
                raise
            raise BleakError(f"connect to {self.address} failed: {exc!r}") from exc

    async def _connect_local(self, timeout: float) -> Any:
        """A fresh virtual controller and host on the LocalLink, connected to the peripheral."""
        from bumble.controller import Controller
        from bumble.core import PhysicalTransport
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.transport.common import AsyncPipeSink

        n = next(_central_counter)
        address = f"C0:{(n >> 16) & 0xFF:02X}:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}:00:01"
        self._controller = Controller(f"bleak-central-{n}", link=self._bumble_link, public_address=address)
        self._device = Device(address=Address(address), host=Host(self._controller, AsyncPipeSink(self._controller)))
        await self._device.power_on()
        return await self._device.connect(Address(self.address), transport=PhysicalTransport.LE, timeout=timeout)

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
        if was_connected:  # unsolicited: nobody is awaiting disconnect(), release the controller or host
            self._teardown_task = asyncio.get_running_loop().create_task(self._teardown())
        if was_connected and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _teardown(self) -> None:
        self._connected = False
        connection, self._connection = self._connection, None
        if self._central is not None:  # shared host: release only our connection
            central, self._central, self._peer = self._central, None, None
            central.clients.discard(self)
            if connection is not None and central.is_open:
                await _quiet(connection.disconnect())
            return
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
        logger.debug("pairing is not emulated by the bumble backend; ignored")

    async def unpair(self) -> None:
        logger.debug("unpairing is not emulated by the bumble backend; ignored")

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


def bumble_hci_backend(spec: str) -> type[BumbleBleakClient]:
    """A :class:`BumbleBleakClient` subclass that reaches peripherals through the HCI transport ``spec`` (a bumble
    transport name such as ``tcp-client:127.0.0.1:4567``, ``usb:0``, ``serial:/dev/ttyUSB0,1000000``)."""
    return type("BumbleBleakClient", (BumbleBleakClient,), {"_hci": spec})

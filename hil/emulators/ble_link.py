"""A virtual Bluetooth "air": a bumble LocalLink with emulated peripherals, and two ways for a central to reach them.

Usage (inside a running asyncio loop)::

    air = VirtualBleLink()
    cgm = await air.add(CgmsEmulator())          # returns the emulator, started and advertising
    client = CgmsClient(cgm.address, backend=air.backend())          # a central in this process
    hci = await air.expose_controller_hci()       # "tcp-client:127.0.0.1:PORT", for a central in another process
    ...
    await air.close()

Each emulator is a bumble :class:`~bumble.device.Device` with its own virtual controller on the link; it
re-advertises after every disconnection so a client can reconnect.

:meth:`VirtualBleLink.expose_controller_hci` puts one more controller on the link, the other process's "radio", and
serves its HCI over TCP (H4 framing, what bumble's ``tcp-client`` transport speaks), like a USB/UART dongle: every
accepted TCP connection gets a fresh controller; when that connection closes (the process died or closed its
transport) the controller leaves the link and its peers see a supervision timeout, as they would over the air.
bumble is imported only when a link is built.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Callable

logger = logging.getLogger(__name__)

__all__ = ["VirtualBleLink", "BumblePeripheral", "Faults", "HciControllerServer"]

_address_counter = itertools.count(1)


def next_address(prefix: int = 0xF0) -> str:
    """A fresh static-random-looking address for an emulated peripheral."""
    n = next(_address_counter)
    return f"{prefix:02X}:{(n >> 16) & 0xFF:02X}:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}:00:C1"


class Faults:
    """Fault hooks shared by the emulators. Counters decrement as faults fire; all default to "no fault".

    Attributes:
        drop_notifications: drop the next N live notifications/history records (never sent).
        corrupt_crc: send the next N E2E-protected notifications/responses with a corrupted CRC.
        lose_responses: execute the next N control-point requests but never send their response.
        drop_requests: ignore the next N control-point requests entirely (not executed, no response).
        disconnect_after_request: execute the next request, then disconnect before responding.
        response_delay_s: delay every control-point response by this many seconds.
    """

    def __init__(self) -> None:
        self.drop_notifications = 0
        self.corrupt_crc = 0
        self.lose_responses = 0
        self.drop_requests = 0
        self.disconnect_after_request = False
        self.response_delay_s = 0.0

    def take(self, name: str) -> bool:
        """Consume one occurrence of a counted fault; True if it fires."""
        value = getattr(self, name)
        if value > 0:
            setattr(self, name, value - 1)
            return True
        return False


def corrupt(data: bytes) -> bytes:
    """Flip one bit of the last byte (the CRC's high byte)."""
    return data[:-1] + bytes([data[-1] ^ 0x40]) if data else data


class BumblePeripheral:
    """Common plumbing of an emulated GATT peripheral on a LocalLink."""

    def __init__(self, name: str, address: str | None = None) -> None:
        self.name = name
        self.address = address or next_address()
        self.faults = Faults()
        self.device: Any = None
        self._controller: Any = None
        self._link: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connection_count = 0
        self.connectable = True
        self.advertising_interval_ms = 20.0
        self._advertising_lock = asyncio.Lock()

    # -------------------------------------------------------------------------------------------- life cycle
    def _services(self) -> list[Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    async def start(self, link: Any) -> None:
        from bumble.controller import Controller
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.transport.common import AsyncPipeSink

        self._loop = asyncio.get_running_loop()
        self._link = link
        self._controller = Controller(self.name, link=link, public_address=self.address)
        self.device = Device(name=self.name, address=Address(self.address),
                             host=Host(self._controller, AsyncPipeSink(self._controller)))
        self.device.add_services(self._services())
        self.device.on("connection", self._on_connection)
        await self.device.power_on()
        await self._advertise()

    async def _advertise(self) -> None:
        async with self._advertising_lock:
            if self.device is None or not self.connectable or self.device.connections or self.device.is_advertising:
                return
            await self.device.start_advertising(auto_restart=False,
                                                advertising_interval_min=self.advertising_interval_ms,
                                                advertising_interval_max=self.advertising_interval_ms)

    async def set_connectable(self, connectable: bool) -> None:
        """Fault hook: stop (False) or resume (True) advertising, i.e. refuse or allow (re)connections."""
        self.connectable = connectable
        if self.device is None:
            return
        if connectable:
            await self._advertise()
        else:
            # after a re-advertisement in flight (a disconnection just happened): bumble's host does not take two
            # advertising changes at once
            async with self._advertising_lock:
                if self.device.is_advertising:
                    await self.device.stop_advertising()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.device is not None:
            try:
                await self.disconnect()
                await self.device.power_off()
            except Exception:  # noqa: BLE001 - best effort at teardown
                logger.debug("power_off failed", exc_info=True)
        if self._link is not None and self._controller is not None:
            try:
                self._link.remove_controller(self._controller)
            except KeyError:
                pass

    def _on_connection(self, connection: Any) -> None:
        self.connection_count += 1
        connection.on("disconnection", lambda *_: self.spawn(self._advertise()))
        logger.debug("%s: connected (%d)", self.name, self.connection_count)

    @property
    def connected(self) -> bool:
        return bool(self.device is not None and self.device.connections)

    async def disconnect(self) -> None:
        """Fault hook: drop every connection now (the peripheral keeps advertising; a client may reconnect)."""
        if self.device is None:
            return
        for connection in list(self.device.connections.values()):
            try:
                await connection.disconnect()
            except Exception:  # noqa: BLE001 - already gone
                logger.debug("disconnect failed", exc_info=True)

    # -------------------------------------------------------------------------------------------- helpers
    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background (GATT write handlers must return quickly)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s: background task failed: %r", self.name, task.exception())

    def call_in_loop(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` in the emulator's loop, from that loop or from another thread."""
        loop = self._loop
        if loop is None:
            fn()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    async def notify(self, characteristic: Any, value: bytes) -> None:
        if self.device is not None and self.device.connections:
            await self.device.notify_subscribers(characteristic, value)

    async def indicate(self, characteristic: Any, value: bytes, *, delay_s: float | None = None) -> None:
        delay = self.faults.response_delay_s if delay_s is None else delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        if self.device is not None and self.device.connections:
            try:
                await self.device.indicate_subscribers(characteristic, value)
            except Exception:  # noqa: BLE001 - the client went away mid-indication
                logger.debug("%s: indication failed", self.name, exc_info=True)


def _hci_controller_class() -> type:
    """bumble's Controller with the two HCI commands a long-lived, shared central relies on done properly."""
    from bumble import hci, ll
    from bumble.controller import Controller

    class HciController(Controller):  # type: ignore[misc]
        def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
            # bumble's controller answers success but keeps the initiation pending: the host would wait forever
            # for the cancelled attempt to end, and the next attempt would be refused as "command disallowed"
            pending = self.pending_le_connection
            if pending is None:
                return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
            self.pending_le_connection = None
            peer = pending.peer_address
            failure = hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR, connection_handle=0,
                role=hci.Role.CENTRAL, peer_address_type=peer.address_type, peer_address=peer,
                connection_interval=0, peripheral_latency=0, supervision_timeout=0, central_clock_accuracy=0)
            # after the Command Complete (spec order): that one is queued when this handler returns
            asyncio.get_running_loop().call_soon(self.send_hci_packet, failure)
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

        def on_hci_reset_command(self, command: Any) -> Any:
            self.drop_links(hci.HCI_ErrorCode.REMOTE_USER_TERMINATED_CONNECTION_ERROR)
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

        def drop_links(self, reason: int) -> None:
            """Forget every LE connection and initiation; peers are told (``reason``), the host is not."""
            self.pending_le_connection = None
            self.le_legacy_advertiser.stop()
            for connection in list(self.le_connections.values()):
                try:
                    connection.send_ll_control_pdu(ll.TerminateInd(reason))
                except Exception:  # noqa: BLE001 - the peer already left the link
                    logger.debug("terminate failed", exc_info=True)
            self.le_connections.clear()

    return HciController


class HciControllerServer:
    """Serves a controller on ``link`` over TCP: one fresh controller per accepted connection (see module doc)."""

    def __init__(self, link: Any, name: str = "hci") -> None:
        self.link = link
        self.name = name
        self.server: asyncio.AbstractServer | None = None
        self.accepted = 0
        self.controllers: dict[Any, asyncio.Transport] = {}  # attached controller -> its host's TCP connection

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (``port=0``: a free port); returns the bumble transport spec a host opens: ``tcp-client:H:P``."""
        self.server = await asyncio.get_running_loop().create_server(lambda: _HciSession(self), host, port)
        bound_port = self.server.sockets[0].getsockname()[1]
        return f"tcp-client:{host}:{bound_port}"

    def _new_controller(self, transport: asyncio.Transport) -> tuple[Any, Any]:
        from bumble.transport.common import StreamPacketSink, StreamPacketSource

        self.accepted += 1
        source = StreamPacketSource()
        controller = _hci_controller_class()(f"{self.name}-{self.accepted}", host_source=source,
                                             host_sink=StreamPacketSink(transport), link=self.link,
                                             public_address=next_address(0xD0))
        self.controllers[controller] = transport
        return source, controller

    def _release(self, controller: Any) -> None:
        from bumble import hci

        controller.host = None
        controller.drop_links(hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR)  # what the peers' supervision timer says
        try:
            self.link.remove_controller(controller)
        except KeyError:
            pass
        self.controllers.pop(controller, None)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for controller, transport in list(self.controllers.items()):
            transport.close()
            self._release(controller)


class _HciSession(asyncio.Protocol):
    """One TCP connection = one host attached to one controller."""

    def __init__(self, server: HciControllerServer) -> None:
        self.server = server
        self.source: Any = None
        self.controller: Any = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.source, self.controller = self.server._new_controller(transport)  # type: ignore[arg-type]
        logger.debug("%s: host attached", self.controller.name)

    def data_received(self, data: bytes) -> None:
        try:
            self.source.data_received(data)
        except Exception:  # noqa: BLE001 - a host speaking garbage is disconnected, the air carries on
            logger.warning("%s: bad HCI data from the host; closing", self.controller.name, exc_info=True)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.controller is not None:
            logger.debug("%s: host gone (%r)", self.controller.name, exc)
            self.server._release(self.controller)
            self.controller = None


class VirtualBleLink:
    """A bumble LocalLink holding emulated peripherals; :meth:`backend` is the bleak backend class to reach them in
    this process, :meth:`expose_controller_hci` the HCI transport to reach them from another."""

    def __init__(self) -> None:
        from bumble.link import LocalLink

        self.link = LocalLink()
        self.peripherals: list[BumblePeripheral] = []
        self.hci_servers: list[HciControllerServer] = []
        self._backend: type | None = None

    async def add(self, peripheral: BumblePeripheral) -> Any:
        """Start ``peripheral`` on this link and return it."""
        await peripheral.start(self.link)
        self.peripherals.append(peripheral)
        return peripheral

    def backend(self) -> type:
        """bleak backend class bound to this link: ``BleakClient(address, backend=air.backend())``."""
        if self._backend is None:
            from drivers.ble.bumble_backend import bumble_backend_for

            self._backend = bumble_backend_for(self.link)
        return self._backend

    async def expose_controller_hci(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """A controller on this link whose HCI is served on ``host:port`` (0: a free port); returns the transport
        spec for the other side (``tcp-client:127.0.0.1:PORT``). A host that reconnects gets a fresh controller."""
        server = HciControllerServer(self.link, name=f"hci-{len(self.hci_servers) + 1}")
        spec = await server.start(host, port)
        self.hci_servers.append(server)
        return spec

    async def close(self) -> None:
        for server in self.hci_servers:
            await server.close()
        self.hci_servers.clear()
        for p in self.peripherals:
            await p.stop()
        self.peripherals.clear()

    async def __aenter__(self) -> "VirtualBleLink":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

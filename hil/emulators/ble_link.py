"""An in-process Bluetooth "air": a bumble LocalLink with emulated peripherals, and the bleak backend to reach them.

Usage (inside a running asyncio loop)::

    air = VirtualBleLink()
    cgm = await air.add(CgmsEmulator())          # returns the emulator, started and advertising
    client = CgmsClient(cgm.address, backend=air.backend())
    ...
    await air.close()

Each emulator is a bumble :class:`~bumble.device.Device` with its own virtual controller on the link; it
re-advertises after every disconnection so a client can reconnect. bumble is imported only when a link is built.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Callable

logger = logging.getLogger(__name__)

__all__ = ["VirtualBleLink", "BumblePeripheral", "Faults"]

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
        if self.device is None or not self.connectable or self.device.connections:
            return
        await self.device.start_advertising(auto_restart=False, advertising_interval_min=self.advertising_interval_ms,
                                            advertising_interval_max=self.advertising_interval_ms)

    async def set_connectable(self, connectable: bool) -> None:
        """Fault hook: stop (False) or resume (True) advertising, i.e. refuse or allow (re)connections."""
        self.connectable = connectable
        if self.device is None:
            return
        if connectable:
            await self._advertise()
        else:
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


class VirtualBleLink:
    """A bumble LocalLink holding emulated peripherals; :meth:`backend` is the bleak backend class to reach them."""

    def __init__(self) -> None:
        from bumble.link import LocalLink

        self.link = LocalLink()
        self.peripherals: list[BumblePeripheral] = []
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

    async def close(self) -> None:
        for p in self.peripherals:
            await p.stop()
        self.peripherals.clear()

    async def __aenter__(self) -> "VirtualBleLink":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

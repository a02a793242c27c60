"""One bleak connection with explicit timeouts on every call, reconnection with backoff, and errors mapped to the
driver vocabulary (:class:`drivers.interfaces.DeviceError` / :class:`DeviceTimeoutError`).

``backend=None`` uses bleak's platform backend (BlueZ on a board); tests and benches pass the bumble backend.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Sequence

from drivers.interfaces import DeviceError, DeviceTimeoutError

logger = logging.getLogger(__name__)

__all__ = ["BleConnection", "DEFAULT_BACKOFF_S", "GattRejectedError"]


class GattRejectedError(DeviceError):
    """The peripheral answered a request with an ATT error: it received the request and refused it.

    Attributes:
        att_error: the ATT error code (e.g. 0x81 invalid E2E-CRC).
    """

    def __init__(self, message: str, att_error: int) -> None:
        super().__init__(message)
        self.att_error = att_error

DEFAULT_BACKOFF_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
"""Delays between reconnection attempts; the last one repeats."""


class BleConnection:
    """A GATT connection to ``address``.

    Args:
        address: Bluetooth address (or platform identifier).
        backend: bleak backend class, ``None`` for the platform default.
        connect_timeout_s: timeout of one connection attempt (incl. service discovery).
        io_timeout_s: timeout of each read/write/subscribe.
        backoff_s: delays between reconnection attempts (the last repeats).
        on_disconnect: called (no arguments) when the link drops unsolicited.
    """

    def __init__(self, address: str, *, backend: type | None = None, connect_timeout_s: float = 10.0,
                 io_timeout_s: float = 5.0, backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
                 on_disconnect: Callable[[], None] | None = None) -> None:
        self.address = address
        self.backend = backend
        self.connect_timeout_s = connect_timeout_s
        self.io_timeout_s = io_timeout_s
        self.backoff_s = tuple(backoff_s) or (1.0,)
        self.on_disconnect = on_disconnect
        self._client: Any = None
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.connects = 0

    @property
    def is_connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected)

    def _on_disconnected(self, client: Any) -> None:
        if client is not self._client:
            return
        logger.info("BLE %s disconnected", self.address)
        self.disconnected.set()
        if self.on_disconnect is not None:
            self.on_disconnect()

    async def connect(self) -> None:
        """One connection attempt within ``connect_timeout_s``."""
        from bleak import BleakClient
        from bleak.exc import BleakError

        await self._drop()
        kwargs: dict[str, Any] = {"timeout": self.connect_timeout_s, "disconnected_callback": self._on_disconnected}
        if self.backend is not None:
            kwargs["backend"] = self.backend
        client = BleakClient(self.address, **kwargs)
        self._client = client
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await client.connect()
        except (TimeoutError, asyncio.TimeoutError) as exc:
            self._client = None
            await _quiet_disconnect(client)
            raise DeviceTimeoutError(f"connect to {self.address} timed out after {self.connect_timeout_s} s") from exc
        except (BleakError, OSError) as exc:
            self._client = None
            await _quiet_disconnect(client)
            raise DeviceError(f"connect to {self.address} failed: {exc}") from exc
        self.disconnected.clear()
        self.connects += 1
        logger.info("BLE %s connected (#%d)", self.address, self.connects)

    async def connect_with_backoff(self, max_attempts: int | None = None,
                                   stop: Callable[[], bool] | None = None) -> None:
        """Retry :meth:`connect` with the backoff delays until it succeeds, ``max_attempts`` fail, or ``stop()``
        turns true (then DeviceError)."""
        attempt = 0
        while True:
            if stop is not None and stop():
                raise DeviceError(f"BLE {self.address}: stopped while reconnecting")
            try:
                await self.connect()
                return
            except DeviceError as exc:
                attempt += 1
                if max_attempts is not None and attempt >= max_attempts:
                    raise
                delay = self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)]
                logger.info("BLE %s: %s; retry %d in %.2f s", self.address, exc, attempt, delay)
                await asyncio.sleep(delay)

    def _need(self) -> Any:
        if not self.is_connected:
            raise DeviceError(f"BLE {self.address} not connected")
        return self._client

    async def _io(self, what: str, coro: Any) -> Any:
        from bleak.exc import BleakError, BleakGATTProtocolError

        try:
            async with asyncio.timeout(self.io_timeout_s):
                return await coro
        except BleakGATTProtocolError as exc:
            code = int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else -1
            raise GattRejectedError(f"{what} on {self.address} refused: ATT error 0x{code:02X}", code) from exc
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise DeviceTimeoutError(f"{what} on {self.address} timed out after {self.io_timeout_s} s") from exc
        except (BleakError, OSError) as exc:
            raise DeviceError(f"{what} on {self.address} failed: {exc}") from exc

    async def read(self, uuid: str) -> bytes:
        client = self._need()
        return bytes(await self._io(f"read {uuid}", client.read_gatt_char(uuid)))

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        client = self._need()
        await self._io(f"write {uuid}", client.write_gatt_char(uuid, data, response=response))

    async def subscribe(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        client = self._need()
        await self._io(f"subscribe {uuid}", client.start_notify(uuid, lambda _c, data: callback(bytes(data))))

    async def wait_reply(self, queue: "asyncio.Queue[Any]", timeout_s: float, what: str) -> Any:
        """Next item of ``queue`` (filled by an indication callback) within ``timeout_s``; fails early with
        DeviceError if the link drops meanwhile."""
        if not queue.empty():
            return queue.get_nowait()
        getter = asyncio.ensure_future(queue.get())
        dropped = asyncio.ensure_future(self.disconnected.wait())
        try:
            done, _ = await asyncio.wait({getter, dropped}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (getter, dropped):
                if not f.done():
                    f.cancel()
        if getter in done:
            return getter.result()
        if dropped in done:
            raise DeviceError(f"disconnected while waiting for the {what}")
        raise DeviceTimeoutError(f"no {what} within {timeout_s} s")

    async def _drop(self) -> None:
        client, self._client = self._client, None
        self.disconnected.set()
        if client is not None:
            await _quiet_disconnect(client, self.io_timeout_s)

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        await self._drop()


async def _quiet_disconnect(client: Any, timeout_s: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await client.disconnect()
    except Exception:  # noqa: BLE001 - already disconnected or the adapter went away; nothing left to do
        logger.debug("disconnect failed", exc_info=True)

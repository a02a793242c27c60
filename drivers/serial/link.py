"""Async transport for the bench serial protocol over a pySerial port.

Every port is opened with :func:`serial.serial_for_url`, so ``loop://``, ``socket://host:port``, ``spy://`` and
device paths (including pseudo-terminals) all work. Blocking pySerial calls stay inside this module: a reader thread
per port hands received bytes to the event loop, and writes run in a worker thread with a write timeout.

:class:`SerialTransport` moves bytes; :class:`SerialLink` adds framing, sequence numbers, request/response matching,
retransmission with timeouts (:class:`~drivers.serial.protocol.RetryPolicy`) and ACKs for unsolicited messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Callable

from drivers.interfaces import DeviceError, DeviceTimeoutError
from drivers.serial.framing import FrameReader, encode_frame
from drivers.serial.protocol import (
    RESPONSE_TYPE, Ack, Message, MsgType, Nak, NakReason, Payload, RetryPolicy, SequenceCounter, decode_message,
    encode_message,
)
from drivers.codecs.errors import DecodeError

log = logging.getLogger(__name__)

UNSOLICITED_TYPES = frozenset({MsgType.CGM_READING})
"""Messages a device sends on its own; the link ACKs them and queues them for the client."""


class LinkClosedError(DeviceError):
    """The port is not open, or it failed (unplugged, closed by the other side)."""


class ProtocolError(DeviceError):
    """The device refused a request with a NAK (malformed, unknown or unsupported)."""

    def __init__(self, message: str, reason: NakReason) -> None:
        super().__init__(message)
        self.reason = reason


class SerialTransport:
    """Bytes in and out of one pySerial port, without blocking the event loop.

    Args:
        url: anything :func:`serial.serial_for_url` accepts.
        baudrate: line speed (8N1).
        on_bytes: called on the event loop with each received chunk.
        on_error: called on the event loop once if the port fails.
        read_timeout_s: how long the reader thread blocks per read (bounds close latency).
        write_timeout_s: a write that cannot complete within this raises :class:`LinkClosedError`.
        serial_kwargs: extra keyword arguments for ``serial_for_url``.
    """

    def __init__(self, url: str, *, baudrate: int = 115200, on_bytes: Callable[[bytes], None],
                 on_error: Callable[[BaseException], None], read_timeout_s: float = 0.02,
                 write_timeout_s: float = 1.0, serial_kwargs: dict[str, Any] | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self._on_bytes = on_bytes
        self._on_error = on_error
        self._read_timeout_s = read_timeout_s
        self._write_timeout_s = write_timeout_s
        self._serial_kwargs = dict(serial_kwargs or {})
        self._port: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None and not self._stop.is_set()

    async def open(self, timeout_s: float = 2.0) -> None:
        """Open the port (in a worker thread) and start the reader thread. Raises :class:`LinkClosedError`."""
        import serial  # pyserial; imported here so the controller starts fast without it

        self._loop = asyncio.get_running_loop()

        def _open() -> Any:
            return serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self._read_timeout_s,
                                         write_timeout=self._write_timeout_s, **self._serial_kwargs)

        try:
            self._port = await asyncio.wait_for(asyncio.to_thread(_open), timeout_s)
        except (OSError, ValueError, serial.SerialException) as exc:
            raise LinkClosedError(f"cannot open {self.url!r}: {exc}") from exc
        except asyncio.TimeoutError as exc:
            raise DeviceTimeoutError(f"opening {self.url!r} timed out after {timeout_s} s") from exc
        self._stop.clear()
        self._thread = threading.Thread(target=self._reader, name=f"serial-reader:{self.url}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        port, loop = self._port, self._loop
        assert loop is not None
        while not self._stop.is_set():
            try:
                waiting = port.in_waiting
                data = port.read(waiting if waiting > 0 else 1)
            except Exception as exc:  # any pySerial/OS failure ends the link; reported on the loop
                if not self._stop.is_set():
                    self._stop.set()
                    self._call_soon(loop, self._on_error, exc)
                return
            if data:
                self._call_soon(loop, self._on_bytes, bytes(data))

    @staticmethod
    def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], arg: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # loop closed while the thread was still reading
            pass

    async def write(self, data: bytes) -> None:
        """Write all of ``data``. Raises :class:`LinkClosedError` if the port is closed or the write fails."""
        if not self.is_open:
            raise LinkClosedError(f"port {self.url!r} is not open")
        port = self._port
        async with self._write_lock:
            done = asyncio.get_running_loop().run_in_executor(None, port.write, data)
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                # the caller gave up (e.g. an outer timeout): finish the write before releasing the lock, so two
                # frames never interleave on the line
                await asyncio.wait({done})
                raise
            except Exception as exc:
                raise LinkClosedError(f"write to {self.url!r} failed: {exc}") from exc

    async def close(self) -> None:
        """Stop the reader thread and close the port. Idempotent."""
        self._stop.set()
        thread, port = self._thread, self._port
        self._thread, self._port = None, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 2.0)
        if port is not None:
            try:
                await asyncio.to_thread(port.close)
            except Exception:  # closing a failed port may fail again; nothing left to release
                pass


class SerialLink:
    """Framed request/response messaging with retransmission over a :class:`SerialTransport`.

    One request is outstanding at a time. ``request`` retransmits the same frame (same SEQ) after each timeout and
    raises :class:`~drivers.interfaces.DeviceTimeoutError` when the policy's attempts are used up; the caller decides
    what an unconfirmed request means (for a pump command: an uncertain delivery).

    Args:
        url: port URL for :func:`serial.serial_for_url`.
        baudrate: line speed.
        policy: default timeout and attempts for requests.
        serial_kwargs: extra keyword arguments for ``serial_for_url``.
    """

    def __init__(self, url: str, *, baudrate: int = 115200, policy: RetryPolicy = RetryPolicy(),
                 serial_kwargs: dict[str, Any] | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self.policy = policy
        self._serial_kwargs = serial_kwargs
        self._transport: SerialTransport | None = None
        self._reader = FrameReader()
        self._seq = SequenceCounter(int.from_bytes(os.urandom(1), "little"))
        self._lock = asyncio.Lock()
        self._pending: tuple[int, MsgType, asyncio.Future[Message]] | None = None
        self._failure: BaseException | None = None
        self.unsolicited: asyncio.Queue[Message] = asyncio.Queue()
        self.stats = {"sent": 0, "retransmitted": 0, "received": 0, "bad_frames": 0, "bad_messages": 0,
                      "naks": 0, "timeouts": 0}

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._transport.is_open and self._failure is None

    async def open(self, timeout_s: float = 2.0) -> None:
        """Open the port. Raises :class:`LinkClosedError` or :class:`DeviceTimeoutError`."""
        await self.close()
        self._reader.reset()
        self._failure = None
        self._transport = SerialTransport(self.url, baudrate=self.baudrate, on_bytes=self._on_bytes,
                                          on_error=self._on_error, serial_kwargs=self._serial_kwargs)
        await self._transport.open(timeout_s)

    async def close(self) -> None:
        """Close the port; a pending request fails with :class:`LinkClosedError`. Idempotent."""
        transport, self._transport = self._transport, None
        self._fail_pending(LinkClosedError("link closed"))
        if transport is not None:
            await transport.close()

    # -- receiving (event loop thread) -------------------------------------------------------------------------

    def _on_error(self, exc: BaseException) -> None:
        log.warning("serial link %s failed: %s", self.url, exc)
        self._failure = exc
        self._fail_pending(LinkClosedError(f"port {self.url!r} failed: {exc}"))

    def _fail_pending(self, exc: BaseException) -> None:
        if self._pending is not None and not self._pending[2].done():
            self._pending[2].set_exception(exc)

    def _on_bytes(self, data: bytes) -> None:
        before = self._reader.errors
        bodies = self._reader.feed(data)
        self.stats["bad_frames"] += self._reader.errors - before
        for body in bodies:
            try:
                msg = decode_message(body)
            except DecodeError as exc:
                self.stats["bad_messages"] += 1
                log.debug("dropping undecodable message: %s", exc.reason)
                continue
            self.stats["received"] += 1
            self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if msg.type in UNSOLICITED_TYPES:
            self._send_nowait(encode_message(msg.seq, Ack()))
            self.unsolicited.put_nowait(msg)
            return
        pending = self._pending
        if pending is None or pending[2].done() or msg.seq != pending[0]:
            return  # late answer to an earlier transmission, or a stray ACK: nothing waits for it
        if msg.type == pending[1] or msg.type == MsgType.NAK:
            pending[2].set_result(msg)

    def _send_nowait(self, body: bytes) -> None:
        if self.is_open:
            assert self._transport is not None
            task = asyncio.get_running_loop().create_task(self._transport.write(encode_frame(body)))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failure surfaces via _on_error

    # -- requests ----------------------------------------------------------------------------------------------

    async def request(self, payload: Payload, *, policy: RetryPolicy | None = None) -> Message:
        """Send a request and return the response that echoes its SEQ.

        Raises:
            DeviceTimeoutError: no response after all attempts (the device may or may not have acted on it).
            ProtocolError: the device answered with a NAK other than BUSY.
            LinkClosedError: the port is closed or failed.
        """
        policy = policy or self.policy
        async with self._lock:
            seq = self._seq.next()
            body = encode_message(seq, payload)
            expected = RESPONSE_TYPE[MsgType(body[0])]
            frame = encode_frame(body)
            loop = asyncio.get_running_loop()
            try:
                for attempt in range(policy.attempts):
                    if not self.is_open:
                        raise LinkClosedError(f"port {self.url!r} is not open")
                    future: asyncio.Future[Message] = loop.create_future()
                    self._pending = (seq, expected, future)
                    await self._transport.write(frame)  # type: ignore[union-attr]
                    self.stats["sent"] += 1
                    if attempt:
                        self.stats["retransmitted"] += 1
                    try:
                        msg = await asyncio.wait_for(future, policy.timeout_s)
                    except asyncio.TimeoutError:
                        self.stats["timeouts"] += 1
                        continue
                    if msg.type == MsgType.NAK:
                        self.stats["naks"] += 1
                        assert isinstance(msg.payload, Nak)
                        if msg.payload.reason == NakReason.BUSY:
                            await asyncio.sleep(policy.timeout_s)
                            continue
                        raise ProtocolError(f"device refused {MsgType(body[0]).name}: {msg.payload.reason.name}",
                                            msg.payload.reason)
                    return msg
            finally:
                self._pending = None
            raise DeviceTimeoutError(
                f"no response to {MsgType(body[0]).name} (seq {seq}) after {policy.attempts} attempts "
                f"of {policy.timeout_s} s")

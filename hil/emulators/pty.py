"""Pseudo-terminal pairs and a threaded base for serial device emulators.

The emulator owns the master side of a pty; the driver under test opens the slave path (``emulator.port``) with
``serial.serial_for_url`` exactly as it would open ``/dev/ttyUSB0``. Fault hooks common to every serial emulator:

- ``corruption_probability``: each byte in either direction is corrupted (XOR with a random non-zero value) with
  this probability, from a seeded generator;
- ``disconnect()`` / ``reconnect()`` / ``disconnect_for(seconds)``: the cable is pulled: nothing goes in or out
  (RS-232 has no hang-up signal, so the driver sees only silence);
- subclasses add device faults (drop a reading, lose or delay a response, occlusion).

Linux/macOS only (``os.openpty``).
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty


class PtyPair:
    """A raw-mode pseudo-terminal: ``master_fd`` for the emulator, ``slave_path`` for the driver.

    The slave fd stays open for the life of the pair, so the master never sees a hang-up when the driver closes
    and reopens its port.
    """

    def __init__(self) -> None:
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)
        tty.setraw(self.master_fd)
        os.set_blocking(self.master_fd, False)
        self.slave_path = os.ttyname(self.slave_fd)

    def close(self) -> None:
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class PtyEmulator:
    """Base class: a thread that serves one pty master; subclasses implement :meth:`on_bytes` and :meth:`on_tick`.

    Public state touched from other threads (the bench, a test) must be guarded with ``self.lock``.

    Args:
        corruption_probability: per-byte corruption probability, both directions (0.01 = 1 %).
        seed: seed of the corruption and fault generator.
        tick_s: period of :meth:`on_tick` (also bounds reaction latency).
    """

    def __init__(self, *, corruption_probability: float = 0.0, seed: int = 0, tick_s: float = 0.005) -> None:
        if not 0.0 <= corruption_probability < 1.0:
            raise ValueError(f"corruption_probability must be in [0, 1), got {corruption_probability!r}")
        self.corruption_probability = corruption_probability
        self.rng = random.Random(seed)
        self.tick_s = tick_s
        self.lock = threading.RLock()
        self._pty: PtyPair | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._disconnected_until: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.bytes_corrupted = 0
        self._delay_s = 0.0
        self._delayed: list[tuple[float, bytes]] = []  # (due, monotonic s; frame) of delayed replies

    # -- life cycle --------------------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The slave device path to give the driver (``serial_for_url`` accepts it as is)."""
        if self._pty is None:
            raise RuntimeError("emulator not started")
        return self._pty.slave_path

    def start(self) -> "PtyEmulator":
        """Create the pty and start serving it in a daemon thread. Returns ``self``."""
        if self._thread is not None:
            return self
        self._pty = PtyPair()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the pty. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def __enter__(self) -> "PtyEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Pull the cable until :meth:`reconnect`."""
        with self.lock:
            self._disconnected_until = float("inf")

    def disconnect_for(self, seconds: float) -> None:
        """Pull the cable for ``seconds`` of wall-clock time."""
        with self.lock:
            self._disconnected_until = time.monotonic() + seconds

    def reconnect(self) -> None:
        with self.lock:
            self._disconnected_until = None

    @property
    def connected(self) -> bool:
        with self.lock:
            until = self._disconnected_until
            if until is not None and time.monotonic() >= until:
                self._disconnected_until = until = None
            return until is None

    def _corrupt(self, data: bytes) -> bytes:
        p = self.corruption_probability
        if p <= 0.0:
            return data
        out = bytearray(data)
        for i in range(len(out)):
            if self.rng.random() < p:
                out[i] ^= self.rng.randrange(1, 256)
                self.bytes_corrupted += 1
        return bytes(out)

    # -- I/O (emulator thread) ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes to the driver (corrupted per the fault settings); dropped while disconnected."""
        if self._pty is None or not self.connected:
            return
        data = self._corrupt(data)
        view = memoryview(data)
        deadline = time.monotonic() + 0.5
        while view and time.monotonic() < deadline:
            try:
                n = os.write(self._pty.master_fd, view)
            except BlockingIOError:  # nobody reads the slave: like a line with no listener, bytes are lost
                time.sleep(0.001)
                continue
            except OSError:
                return
            self.bytes_out += n
            view = view[n:]

    def _run(self) -> None:
        assert self._pty is not None
        fd = self._pty.master_fd
        next_tick = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                readable, _, _ = select.select([fd], [], [], timeout)
            except (OSError, ValueError):
                return
            if readable:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    data = b""
                except OSError:  # EIO: no slave open right now; try again shortly
                    time.sleep(self.tick_s)
                    data = b""
                if data and self.connected:
                    self.bytes_in += len(data)
                    with self.lock:
                        self.on_bytes(self._corrupt(data))
            now = time.monotonic()
            if now >= next_tick:
                with self.lock:
                    self.on_tick(now)
                next_tick = now + self.tick_s

    def on_bytes(self, data: bytes) -> None:
        """Bytes received from the driver (after corruption). Called with ``self.lock`` held."""
        raise NotImplementedError

    def on_tick(self, now_s: float) -> None:
        """Periodic work (retransmissions, delayed responses, timeouts). Called with ``self.lock`` held.
        Subclasses that override it call ``super().on_tick(now_s)`` so delayed replies go out."""
        self._flush_delayed(now_s)

    # -- the reply-delay fault, common to every emulated device ----------------------------------------------

    def delay_responses(self, seconds: float) -> None:
        """Send every response ``seconds`` late (0 to stop delaying)."""
        with self.lock:
            self._delay_s = seconds

    def _send_reply(self, frame: bytes) -> None:
        """Write a reply now, or queue it when responses are being delayed."""
        if self._delay_s > 0.0:
            self._delayed.append((time.monotonic() + self._delay_s, frame))
        else:
            self.write(frame)

    def _flush_delayed(self, now_s: float) -> None:
        if self._delayed:
            due = [frame for t, frame in self._delayed if t <= now_s]
            self._delayed = [(t, frame) for t, frame in self._delayed if t > now_s]
            for frame in due:
                self.write(frame)


class FramedDeviceEmulator(PtyEmulator):
    """Base of the devices that speak the framed bench protocol (``docs/serial-protocol.md``).

    Handles de-framing, NAKs for invalid messages, the response cache for retransmitted requests, and the response
    faults: :meth:`lose_responses` and :meth:`delay_responses`. Subclasses implement :meth:`handle_request`.
    """

    def __init__(self, **kwargs: object) -> None:
        from drivers.serial.framing import FrameReader
        from drivers.serial.protocol import ResponseCache, SequenceCounter

        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._reader = FrameReader()
        self._cache = ResponseCache()
        self._seq = SequenceCounter()
        self._lose: dict[int | None, int] = {}
        self.requests_handled = 0
        self.responses_lost = 0
        self.retransmissions_seen = 0

    # -- faults ------------------------------------------------------------------------------------------------

    def lose_responses(self, count: int = 1, *, msg_type: int | None = None) -> None:
        """Process the next ``count`` requests (of response type ``msg_type``, any if None) but lose the answers.

        Retransmissions of a request whose answer was lost are lost too until ``count`` is used up (each
        transmission uses one), so ``count`` >= the driver's attempts makes the request go unconfirmed.
        """
        with self.lock:
            self._lose[msg_type] = self._lose.get(msg_type, 0) + count

    def stop_losing_responses(self) -> None:
        """Cancel whatever :meth:`lose_responses` has not used up yet."""
        with self.lock:
            self._lose.clear()

    # -- machinery ---------------------------------------------------------------------------------------------

    def send_message(self, seq: int, payload: object) -> None:
        from drivers.serial.framing import encode_frame
        from drivers.serial.protocol import encode_message

        self.write(encode_frame(encode_message(seq, payload)))  # type: ignore[arg-type]

    def _respond(self, body: bytes) -> None:
        from drivers.serial.framing import encode_frame

        for key in (body[0], None):
            if self._lose.get(key, 0) > 0:
                self._lose[key] -= 1
                self.responses_lost += 1
                return
        self._send_reply(encode_frame(body))

    def on_bytes(self, data: bytes) -> None:
        from drivers.codecs.errors import DecodeError
        from drivers.serial.protocol import Nak, NakReason, decode_message, encode_message

        for body in self._reader.feed(data):
            cached = self._cache.get(body)
            if cached is not None:
                self.retransmissions_seen += 1
                self._respond(cached)
                continue
            try:
                msg = decode_message(body)
            except DecodeError as exc:
                if exc.reason in ("bad message check", "message too short"):
                    continue  # line noise that slipped past the frame CRC: dropped like a corrupted frame
                reason = NakReason.UNKNOWN_TYPE if exc.reason.startswith("unknown message type") \
                    else NakReason.MALFORMED
                if len(body) >= 2:
                    self._respond(encode_message(body[1], Nak(reason)))
                continue
            if msg.type == 0x10:  # INFO_REQ opens a session: forget answers given to an earlier session
                self._cache = type(self._cache)()
            response = self.handle_message(msg)
            if response is not None:
                response_body = encode_message(msg.seq, response)
                self._cache.put(body, response_body)
                self.requests_handled += 1
                self._respond(response_body)

    def handle_message(self, msg: object) -> object | None:
        """Return the response payload for a request, or None (e.g. for an ACK). Called with the lock held."""
        raise NotImplementedError

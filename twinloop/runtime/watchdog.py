"""systemd notification (``sd_notify``) and the health-gated watchdog.

With ``Type=notify`` the runtime sends ``READY=1`` once the devices are connected and the journal is restored, and
``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` -- but only when the loop's own health checks pass (the event loop
turns over, the last cycle finished within its budget, the journal is writable, the CGM-loss fallback is not overdue).
A stuck or unhealthy loop therefore stops petting the watchdog and systemd restarts it (``Restart=on-failure``).

``$NOTIFY_SOCKET`` may be a filesystem path or an abstract socket (leading ``@``). Outside systemd (no
``$NOTIFY_SOCKET``) every call is a silent no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("twinloop.watchdog")


class SdNotifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET`` (read once at construction)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, message: str) -> bool:
        """Send one notification (e.g. ``"READY=1"``); True when it was sent. Errors are logged once, never raised."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the loop on a full receiver queue
            self._sock.sendto(message.encode(), self._target())
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self.address, exc)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or None when the watchdog is off or meant for another process."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


@dataclass(frozen=True, slots=True)
class Health:
    """Result of the loop's health checks: ``ok`` and, when not, the failed checks."""

    ok: bool
    failures: tuple[str, ...] = ()


class Watchdog:
    """Pets the systemd watchdog from the loop's periodic tick, only when ``health()`` passes.

    Args:
        notifier: the sd_notify channel.
        health: returns the loop's current :class:`Health`.
        interval_s: seconds between pets (default: half of ``$WATCHDOG_USEC``; None = watchdog off).
        monotonic: time source (seconds).
    """

    def __init__(self, notifier: SdNotifier, health: Callable[[], Health], interval_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.health = health
        self.interval_s = watchdog_interval_s() if interval_s is None else interval_s
        self._monotonic = monotonic
        self._last_pet: float | None = None
        self.pets = 0
        self.withheld = 0
        self.last_failures: tuple[str, ...] = ()

    def tick(self) -> bool:
        """Called often (every scheduler tick); pets when due and healthy. Returns True when it petted."""
        if self.interval_s is None or not self.notifier.enabled:
            return False
        now = self._monotonic()
        if self._last_pet is not None and now - self._last_pet < self.interval_s:
            return False
        result = self.health()
        if not result.ok:
            if result.failures != self.last_failures:
                log.error("watchdog withheld: %s", ", ".join(result.failures))
                self.notifier.status("unhealthy: " + ", ".join(result.failures))
            self.last_failures = result.failures
            self.withheld += 1
            return False
        if self.last_failures:
            self.notifier.status("healthy")
            self.last_failures = ()
        if self.notifier.notify("WATCHDOG=1"):
            self._last_pet = now
            self.pets += 1
            return True
        return False

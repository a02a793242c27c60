"""sd_notify over $NOTIFY_SOCKET (path and abstract) and the health-gated watchdog."""

from __future__ import annotations

import os
import socket
import uuid

from twinloop.runtime.watchdog import Health, SdNotifier, Watchdog, watchdog_interval_s


def _receiver(address):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(1.0)
    return sock


def test_notify_filesystem_socket(tmp_path):
    path = str(tmp_path / "notify")
    rx = _receiver(path)
    n = SdNotifier({"NOTIFY_SOCKET": path})
    assert n.ready("up")
    assert rx.recv(256) == b"READY=1\nSTATUS=up"
    rx.close()
    n.close()


def test_notify_abstract_socket():
    name = f"twinloop-test-{uuid.uuid4().hex}"
    rx = _receiver("\0" + name)
    n = SdNotifier({"NOTIFY_SOCKET": "@" + name})
    assert n.notify("WATCHDOG=1")
    assert rx.recv(256) == b"WATCHDOG=1"
    rx.close()


def test_no_socket_is_a_noop():
    n = SdNotifier({})
    assert not n.enabled and not n.ready()


def test_unreachable_socket_never_raises(tmp_path):
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "absent")})
    assert n.notify("READY=1") is False


def test_interval_is_half_of_watchdog_usec():
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0


def test_watchdog_pets_only_when_healthy_and_due(tmp_path):
    path = str(tmp_path / "notify")
    rx = _receiver(path)
    rx.settimeout(0.05)
    now = [0.0]
    healthy = [Health(True)]
    wd = Watchdog(SdNotifier({"NOTIFY_SOCKET": path}), lambda: healthy[0], interval_s=5.0, monotonic=lambda: now[0])

    def drain():
        out = []
        try:
            while True:
                out.append(rx.recv(256))
        except (socket.timeout, BlockingIOError):
            return out
    assert wd.tick() is True
    assert drain() == [b"WATCHDOG=1"]
    now[0] = 2.0
    assert wd.tick() is False  # not due
    now[0] = 5.5
    healthy[0] = Health(False, ("cycle overdue",))
    assert wd.tick() is False
    msgs = drain()
    assert b"WATCHDOG=1" not in msgs and any(b"unhealthy: cycle overdue" in m for m in msgs)
    healthy[0] = Health(True)
    assert wd.tick() is True
    assert b"WATCHDOG=1" in drain()
    assert wd.pets == 2 and wd.withheld == 1
    rx.close()

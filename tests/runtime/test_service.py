"""The service around the loop: device tasks, timer ticks, sd_notify, the control socket, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading

from drivers.interfaces import DeviceError
from safety.readings import GlucoseReading
from twinloop.runtime.clock import AcceleratedClock
from twinloop.runtime.control_socket import request
from twinloop.runtime.loop import LoopOptions, Runtime
from twinloop.runtime.service import Service, ServiceOptions
from twinloop.runtime.watchdog import SdNotifier

from .fakes import FakeCgm, FakeGate, FakePump, MemoryJournal, TempController, settings


def test_service_runs_cycles_timer_fallback_socket_and_stops(tmp_path):
    notify_path = str(tmp_path / "notify")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(notify_path)
    rx.settimeout(0.2)
    msgs: list[bytes] = []
    done = threading.Event()

    def drain():
        while not done.is_set():
            try:
                msgs.append(rx.recv(512))
            except socket.timeout:
                pass
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    sock_path = tmp_path / "run" / "control.sock"

    async def scenario():
        clock = AcceleratedClock(600.0, start_min=0.0)  # 10 simulated minutes per real second
        journal = MemoryJournal()
        cgm, pump = FakeCgm(), FakePump()
        rt = Runtime(settings(), TempController(), FakeGate(), journal, pump, clock, LoopOptions(pump_timeout_s=1))
        svc = Service(rt, cgm, pump, clock, ServiceOptions(tick_s=0.02, control_socket=str(sock_path)),
                      SdNotifier({"NOTIFY_SOCKET": notify_path}))
        svc.watchdog.interval_s = 0.05
        task = asyncio.create_task(svc.run())
        await asyncio.sleep(0.1)
        cgm.push(GlucoseReading(clock.now_min(), 140.0, sequence=1))
        await asyncio.sleep(0.1)
        cgm.push(DeviceError("link lost"))  # the stream fails: recorded, reconnected
        await asyncio.sleep(0.3)
        cgm.push(GlucoseReading(clock.now_min(), 150.0, sequence=2))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(None, request, sock_path, {"op": "status"})
        bolus = await loop.run_in_executor(None, request, sock_path, {"op": "bolus", "bolus_u": 1.0})
        bad = await loop.run_in_executor(None, request, sock_path, {"op": "bolus", "bolus_u": "lots"})
        mode = stat.S_IMODE(os.stat(sock_path).st_mode)
        await asyncio.sleep(2.6)  # > 20 simulated minutes without readings
        svc.stop_event.set()
        assert await asyncio.wait_for(task, 5) == 0
        return svc, journal, status, bolus, bad, mode, cgm

    svc, journal, status, bolus, bad, mode, cgm = asyncio.run(scenario())
    import time
    time.sleep(0.3)
    done.set()
    reader.join()
    rx.close()
    assert any(m.startswith(b"READY=1") for m in msgs)
    assert b"WATCHDOG=1" in msgs
    assert msgs[-1] == b"STOPPING=1"
    assert mode == 0o660
    assert status["ok"] and status["status"]["last_reading"]["glucose_mg_dl"] == 150.0
    assert bolus["ok"] and bolus["verdict"]["commands"][0]["command"]["bolus_u"] == 1.0
    assert not bad["ok"] and "bolus_u" in bad["error"]
    kinds = journal.kinds()
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert cgm.connects >= 2
    assert any(p.get("event") == "stream_failed" for p in journal.of("device"))
    triggers = [c["trigger"] for c in journal.of("cycle")]
    assert "timer" in triggers and "user_bolus" in triggers
    assert any(a["message"] == "CGM lost" for a in journal.of("alarm"))
    assert not sock_path.exists()


def test_health_fails_when_journal_broken():
    clock = AcceleratedClock(60.0)

    async def go():
        rt = Runtime(settings(), TempController(), FakeGate(), MemoryJournal(), FakePump(), clock)
        svc = Service(rt, FakeCgm(), FakePump(), clock, ServiceOptions())
        assert svc.health().ok
        rt.journal_ok = False
        rt.journal_error = "disk full"
        h = svc.health()
        assert not h.ok and "journal" in h.failures[0]
    asyncio.run(go())

"""The runtime's command line: run --check, status / meal / bolus through the control socket."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from twinloop.cli import main
from twinloop.runtime.clock import ManualClock
from twinloop.runtime.control_socket import ControlServer
from twinloop.runtime.loop import LoopOptions, Runtime
from safety.readings import GlucoseReading

from .fakes import FakeGate, FakePump, MemoryJournal, TempController, settings

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "board.example.toml"


def test_run_check_accepts_the_example(capsys):
    assert main(["run", "--config", str(EXAMPLE), "--check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_run_check_names_the_bad_field(tmp_path, capsys):
    bad = tmp_path / "board.toml"
    bad.write_text(EXAMPLE.read_text().replace("max_bolus_u = 8.0", "max_bolus_u = -1"))
    assert main(["run", "--config", str(bad), "--check"]) == 2
    assert "therapy.max_bolus_u" in capsys.readouterr().err


@pytest.fixture
def server(tmp_path):
    sock = tmp_path / "control.sock"
    loop = asyncio.new_event_loop()
    rt = Runtime(settings(), TempController(), FakeGate(), MemoryJournal(), FakePump(), ManualClock(1000.0),
                 LoopOptions(pump_timeout_s=0.5))
    srv = ControlServer(rt, sock)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(srv.start(), loop).result(5)
    asyncio.run_coroutine_threadsafe(rt.on_reading(GlucoseReading(1000.0, 142.0)), loop).result(5)
    yield sock, rt
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_status_meal_bolus(server, capsys):
    sock, rt = server
    assert main(["status", "--socket", str(sock)]) == 0
    out = capsys.readouterr().out
    assert "142.0 mg/dL" in out and "insulin on board" in out and "time in range 24 h: 100.0%" in out
    assert main(["meal", "45", "--socket", str(sock)]) == 0
    assert "meal of 45 g announced" in capsys.readouterr().out
    assert rt.meals[-1].carbs_g == 45.0
    assert main(["bolus", "2.0", "--socket", str(sock)]) == 0
    out = capsys.readouterr().out
    assert "approved Bolus" in out or "approved bolus" in out
    assert main(["bolus", "0", "--socket", str(sock)]) == 2
    assert main(["meal", "900", "--socket", str(sock)]) == 2
    assert main(["status", "--socket", str(sock), "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out


def test_unreachable_socket(tmp_path, capsys):
    assert main(["status", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "cannot reach the runtime" in capsys.readouterr().err

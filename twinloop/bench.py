"""The hardware-in-the-loop bench: a virtual patient behind emulated devices, the production runtime against them.

For both transports the runtime is started as a **separate process** (``python -m twinloop run``) that reaches the
emulated devices through the real drivers, on an accelerated clock shared through CLOCK_MONOTONIC
(``--sim-clock speed:start_min:epoch_s``). SIGKILL faults kill that process; the bench restarts it.

Serial transport: the CGM and the pump are emulated on pseudo-terminals (:mod:`hil.emulators.serial_cgm`,
:mod:`hil.emulators.serial_pump`); the runtime opens the pty paths.

BLE transport: the CGM (CGMS) and pump (IDS) emulators live on a bumble LocalLink on the bench's event loop thread,
together with one more controller, the runtime's "radio", whose HCI is served over TCP on localhost
(:meth:`hil.emulators.ble_link.VirtualBleLink.expose_controller_hci`, like a USB dongle). The runtime's board file
names that transport (``[devices.cgm] hci = "tcp-client:127.0.0.1:PORT"``), so its bleak clients run over a bumble
host in the runtime process (:func:`drivers.ble.bumble_backend.bumble_hci_backend`). A killed runtime closes the TCP
connection; its controller leaves the link and the peripherals see a supervision timeout; the restarted runtime
gets a fresh controller.

Each simulated minute the bench: applies due faults, takes the insulin the pump delivered, steps the patient, and at
sample times pushes the sensor value to the CGM emulator (recording when, for the latency histogram); announced
meals go to the runtime's control socket (``meal N``), like a person would. At the end the journal and the pump's
history are checked (:mod:`hil.report`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.faults import Fault, default_schedule
from hil.plant import VirtualPatient

log = logging.getLogger("twinloop.hil")

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BenchOptions:
    transport: str = "serial"
    subject: str = "adult#001"
    scenario: str = "faults-1day"
    hours: float = 24.0
    speed: float = 60.0
    controller: str = "oref"
    seed: int | None = None
    faults: list[Fault] | None = None
    workdir: Path = Path("hil-run")
    warmup_s: float = 8.0
    sensor_dropouts: bool = False
    realtime_priority: int = 0
    """> 0: the runtime runs with SCHED_FIFO at this priority and the bench's emulator threads just below it."""
    requests: list[dict] | None = None
    """Requests a person makes through the control socket: ``{"t_min": 20, "op": "meal", "carbs_g": 30}`` or
    ``{"t_min": 100, "op": "bolus", "bolus_u": 1.0}`` (default: a meal and a bolus early in the run)."""


@dataclass
class BenchRun:
    """Everything the report needs."""

    options: BenchOptions
    patient: VirtualPatient
    faults: list[Fault]
    journal_path: Path
    pushes: dict[int, dict] = field(default_factory=dict)       # sequence -> {t_min, mono, value}
    pump_received: dict[str, float] = field(default_factory=dict)  # command_id -> monotonic time received
    pump_history: tuple = ()
    pump_scheduled_basal_u_per_h: float = 0.0
    kills: list[dict] = field(default_factory=list)
    crashes: list[dict] = field(default_factory=list)
    meals: list[dict] = field(default_factory=list)
    runtime_exit_codes: list[int | None] = field(default_factory=list)
    runtime_pids: list[int] = field(default_factory=list)  # one per start of the runtime process
    bench_pid: int = field(default_factory=os.getpid)
    real_s: float = 0.0
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- settings

def therapy_table(patient: VirtualPatient) -> dict[str, Any]:
    """Therapy settings from the subject's own clinical data (kept inside the guardrails)."""
    s = patient.subject
    basal = math.floor(patient.basal_u_per_h / 0.05) * 0.05
    return {
        "basal_u_per_h": round(max(basal, 0.05), 2),
        "isf_mg_dl_per_u": round(min(max(s.cf_mg_dl_per_u, 10.0), 400.0), 1),
        "carb_ratio_g_per_u": round(min(max(s.cr_g_per_u, 2.0), 150.0), 1),
        "target_mg_dl": 110.0, "suspend_threshold_mg_dl": 70.0,
        "max_basal_u_per_h": round(min(max(4 * basal, 1.0), 10.0), 2),
        "max_bolus_u": 10.0, "max_iob_u": 10.0, "max_daily_u": round(max(3 * s.tdi_u, 30.0), 0),
        "weight_kg": round(s.weight_kg, 1), "total_daily_insulin_u": round(max(s.tdi_u, 5.0), 1),
        "age_group": "adult" if s.group == "adult" else ("teen" if s.group == "adolescent" else "child"),
    }


def write_board_toml(path: Path, *, cgm: dict, pump: dict, therapy: dict, controller: str, journal: Path,
                     socket_path: Path, realtime_priority: int = 0) -> None:
    def table(d: dict) -> str:
        return "\n".join(f"{k} = {_toml_value(v)}" for k, v in d.items())
    rt_lines = ("enabled = false" if realtime_priority <= 0
                else f"enabled = true\npriority = {realtime_priority}\nlock_memory = false")
    text = f"""# generated by the HIL bench
[devices.cgm]
{table(cgm)}

[devices.pump]
{table(pump)}

[therapy]
{table(therapy)}

[controller]
name = "{controller}"

[journal]
path = "{journal}"

[realtime]
{rt_lines}

[loop]
cgm_interval_min = 5
timer_fallback_min = 1

[control]
socket = "{socket_path}"
"""
    path.write_text(text)


# --------------------------------------------------------------------------------------------------- emulators

def _bench_fifo(opts: BenchOptions) -> Any:
    """SCHED_FIFO for the bench thread (threads it starts inherit it) when asked; returns the undo."""
    if opts.realtime_priority <= 0:
        return lambda: None
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(max(1, opts.realtime_priority - 5)))
    except OSError as exc:
        log.warning("bench: SCHED_FIFO not permitted (%s); running without", exc)
        return lambda: None
    return lambda: os.sched_setscheduler(0, before[0], before[1])


def _timed_pump_class() -> type:
    from hil.emulators.serial_pump import SerialPumpEmulator

    class TimedPumpEmulator(SerialPumpEmulator):
        """Records when each command first reaches the pump (monotonic seconds, system-wide)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.received_mono: dict[str, float] = {}

        def _execute(self, c: Any) -> Any:  # type: ignore[override]
            self.received_mono.setdefault(c.command_id, time.monotonic())
            return super()._execute(c)

    return TimedPumpEmulator


class RuntimeProcess:
    """``python -m twinloop run`` as a child process; output appended to one log file across restarts."""

    def __init__(self, config: Path, sim_clock: str, log_path: Path) -> None:
        self.config = config
        self.sim_clock = sim_clock
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.pids: list[int] = []

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("NOTIFY_SOCKET", None)
        cmd = [sys.executable, "-m", "twinloop", "run", "--config", str(self.config), "--sim-clock", self.sim_clock,
               "--log-level", "WARNING"]
        logf = open(self.log_path, "ab")
        logf.write(f"\n=== start {self.starts} at {time.monotonic():.3f}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        self.pids.append(self.proc.pid)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        if self.proc is None:
            return None
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def _request(sock: Path, payload: dict, timeout_s: float = 5.0) -> dict:
    from twinloop.runtime.control_socket import request
    return request(sock, payload, timeout_s)


def wait_ready(sock: Path, timeout_s: float, alive: Any = None, devices: bool = False) -> bool:
    """Until the runtime answers on its control socket (and, with ``devices``, has connected CGM and pump)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            reply = _request(sock, {"op": "status"}, 1.0)
            connected = (reply.get("status") or {}).get("devices") or {}
            if reply.get("ok") and (not devices or (connected.get("cgm") == "connected"
                                                     and connected.get("pump") == "connected")):
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------------------------------- serial

def _sleep_until(deadline_s: float) -> None:
    from twinloop.runtime.realtime import sleep_until
    sleep_until(deadline_s)


def _setup(opts: BenchOptions) -> tuple:
    """What both transports start from: work folder, virtual patient, fault schedule, therapy table, the accelerated
    clock and the bench's own real-time policy (to restore at the end)."""
    from twinloop.runtime.clock import AcceleratedClock

    workdir = Path(opts.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    patient = VirtualPatient(opts.subject, opts.scenario, opts.seed, sensor_dropouts=opts.sensor_dropouts)
    faults = list(opts.faults) if opts.faults is not None else default_schedule(opts.hours)
    therapy = therapy_table(patient)
    clock = AcceleratedClock(opts.speed, start_min=0.0, epoch_s=time.monotonic() + opts.warmup_s)
    return workdir, patient, faults, therapy, clock, _bench_fifo(opts)


def run_serial(opts: BenchOptions) -> BenchRun:
    """The serial bench with the runtime in a separate process."""
    from hil.emulators.serial_cgm import SerialCgmEmulator

    workdir, patient, faults, therapy, clock, restore_policy = _setup(opts)
    cgm = SerialCgmEmulator(seed=11)
    pump = _timed_pump_class()(scheduled_basal_u_per_h=therapy["basal_u_per_h"], clock=clock.now_min, seed=12)
    cgm.start()
    pump.start()
    devices = {"cgm": cgm, "pump": pump}

    def finish(run: BenchRun) -> None:
        run.pump_history = pump.history()
        run.pump_received = dict(pump.received_mono)
        cgm.stop()
        pump.stop()

    return _drive_runtime(opts, workdir, patient, faults, therapy, clock, restore_policy,
                          {"transport": "serial", "url": cgm.port, "timeout_s": 0.5},
                          {"transport": "serial", "url": pump.port, "timeout_s": 0.5}, devices, finish)


def _drive_runtime(opts: BenchOptions, workdir: Path, patient: VirtualPatient, faults: list, therapy: dict,
                   clock: Any, restore_policy: Any, cgm_dev: dict, pump_dev: dict, devices: dict,
                   finish: Any, note: str | None = None) -> BenchRun:
    """What both transports do once their emulators run: a fresh journal and board configuration, the runtime as
    its own process, the minute loop, and on the way out the runtime stopped (a restart in progress first finishes
    starting), ``finish(run)`` (the transport's own teardown and pump records) and the bench's policy restored."""
    journal = workdir / "journal.db"
    for stale in workdir.glob("journal.db*"):
        stale.unlink()
    sock = workdir / "control.sock"
    config = workdir / "board.toml"
    write_board_toml(config, cgm=cgm_dev, pump=pump_dev, therapy=therapy, controller=opts.controller,
                     journal=journal, socket_path=sock, realtime_priority=opts.realtime_priority)
    run = BenchRun(opts, patient, faults, journal, pump_scheduled_basal_u_per_h=therapy["basal_u_per_h"],
                   log_path=workdir / "runtime.log")
    if run.log_path.exists():
        run.log_path.unlink()
    if note:
        run.notes.append(note)
    rt = RuntimeProcess(config, clock.spec(), run.log_path)
    t_real0 = time.monotonic()
    rt.start()
    if not wait_ready(sock, opts.warmup_s + 30.0, rt.alive, devices=True):
        run.notes.append("runtime did not become ready")
    if clock.now_min() > 0:
        run.notes.append(f"runtime ready only at simulated minute {clock.now_min():.1f}")
    try:
        _minute_loop(run, clock, patient, devices, rt, sock)
    finally:
        if rt.alive():
            wait_ready(sock, 30.0, rt.alive)  # a runtime restarted moments ago finishes starting before it stops
        run.runtime_exit_codes.append(rt.stop())
        run.runtime_pids = list(rt.pids)
        finish(run)
        restore_policy()
        run.real_s = time.monotonic() - t_real0
    return run


def _minute_loop(run: BenchRun, clock: Any, patient: VirtualPatient, devices: dict, rt: Any, sock: Path) -> None:
    opts = run.options
    cgm, pump = devices["cgm"], devices["pump"]
    minutes = int(round(opts.hours * 60))
    pending = sorted(run.faults, key=lambda f: f.t_min)
    active: list[Fault] = []
    silent_until = -1.0
    restart_at: float | None = None
    meal_threads: list[threading.Thread] = []
    requests = opts.requests if opts.requests is not None else [
        {"t_min": 21, "op": "meal", "carbs_g": 30.0}, {"t_min": 101, "op": "bolus", "bolus_u": 0.5}]
    _sleep_until(clock.monotonic_at(0))
    pump.take_delivered_u()  # the basal of the warm-up (negative simulated time) never reaches the patient
    for m in range(minutes):
        _sleep_until(clock.monotonic_at(m + 1))
        now = m + 1
        # ---- faults: start and end
        while pending and pending[0].t_min <= now:
            f = pending.pop(0)
            f.injected_mono = time.monotonic()
            if f.kind == "cgm_dropout":
                silent_until = f.end_min
            elif f.kind == "cgm_lost":
                cgm.drop_readings(max(1, int(f.duration_min // 5)))
            elif f.kind == "corruption":
                for dev in (cgm, pump):
                    _set_corruption(dev, f.params.get("probability", 0.01))
            elif f.kind == "disconnect":
                for dev in (cgm, pump):
                    dev.disconnect()
            elif f.kind == "pump_delay":
                pump.delay_responses(float(f.params.get("delay_s", 0.25)))
            elif f.kind == "pump_lost":
                pump.lose_responses(int(f.params.get("count", 3)), msg_type=0x31)
            elif f.kind == "occlusion":
                pump.set_occlusion(True)
            elif f.kind == "kill":
                if f.params.get("mid_command"):
                    _wait_for_command_in_flight(run, pump, f)
                code = rt.kill()
                if f.params.get("mid_command"):
                    pump.stop_losing_responses()
                run.kills.append({"t_min": now, "mono": time.monotonic(), "exit_code": code})
                run.runtime_exit_codes.append(code)
                restart_at = now + float(f.params.get("restart_after_min", 5.0))
            active.append(f)
        for f in list(active):
            if f.kind in ("cgm_dropout", "cgm_lost", "pump_lost", "kill"):
                active.remove(f)
                continue
            if now >= f.end_min:
                f.cleared_mono = time.monotonic()
                if f.kind == "corruption":
                    for dev in (cgm, pump):
                        _set_corruption(dev, 0.0)
                elif f.kind == "disconnect":
                    for dev in (cgm, pump):
                        dev.reconnect()
                elif f.kind == "pump_delay":
                    pump.delay_responses(0.0)
                elif f.kind == "occlusion":
                    pump.set_occlusion(False)
                active.remove(f)
        # ---- the runtime process: restart after a kill; any other death is a crash (restarted too)
        if restart_at is not None and now >= restart_at:
            rt.start()
            run.kills[-1]["restarted_t_min"] = now
            run.kills[-1]["restarted_mono"] = time.monotonic()
            restart_at = None
        elif restart_at is None and not rt.alive():
            run.crashes.append({"t_min": now, "exit_code": rt.proc.returncode if rt.proc else None})
            run.runtime_exit_codes.append(rt.proc.returncode if rt.proc else None)
            rt.start()
        # ---- the patient
        insulin = pump.take_delivered_u()
        patient.step(insulin)
        if patient.is_sample_time():
            value = patient.cgm_reading()
            if now >= silent_until and math.isfinite(value):
                mono = time.monotonic()
                seq = cgm.push_glucose(float(now), value)
                run.pushes[seq] = {"t_min": float(now), "mono": mono, "value": value}
        todo = [{"op": "meal", "carbs_g": round(a.carbs_g, 1)} for a in patient.announcements_between(now - 1, now)]
        todo += [r for r in requests if now - 1 < r["t_min"] <= now]
        for req in todo:
            t = threading.Thread(target=_announce, args=(run, sock, req, now), daemon=True)
            t.start()
            meal_threads.append(t)
    for t in meal_threads:
        t.join(10.0)


def _wait_for_command_in_flight(run: BenchRun, pump: Any, f: Fault, timeout_s: float = 8.0) -> None:
    """Make the next command's answer get lost and return once the pump has executed it, so the SIGKILL lands
    between "command sent" and "acknowledged": the restarted runtime must find it in the pump's history."""
    before = set(pump.received_mono)
    pump.lose_responses(100, msg_type=0x31)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(pump.received_mono) - before
        if new:
            f.notes.append(f"killed with command {sorted(new)[0]} executed by the pump but unacknowledged")
            return
        time.sleep(0.002)
    f.notes.append("no command in flight within the wait; killed anyway")


def _set_corruption(dev: Any, probability: float) -> None:
    if hasattr(dev, "corrupt"):  # BLE: E2E-CRC corruption of the next packets while the fault lasts
        dev.corrupt(3 if probability > 0 else 0)
        return
    with dev.lock:
        dev.corruption_probability = probability


def _announce(run: BenchRun, sock: Path, req: dict, now: float) -> None:
    payload = {k: v for k, v in req.items() if k != "t_min"}
    entry = {"t_min": now, **payload, "attempts": 0, "ok": False}
    for _ in range(20):  # a person retries when the device does not answer
        entry["attempts"] += 1
        try:
            reply = _request(sock, payload, 10.0)
            entry["ok"] = bool(reply.get("ok"))
            entry["verdict"] = reply.get("verdict")
            break
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
            time.sleep(0.2)
    run.meals.append(entry)


def run_bench(opts: BenchOptions) -> BenchRun:
    if opts.transport == "serial":
        return run_serial(opts)
    if opts.transport == "ble":
        return run_ble(opts)
    raise ValueError(f"transport must be serial or ble, got {opts.transport!r}")


# --------------------------------------------------------------------------------------------------- BLE

def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


class _LoopThread:
    """An asyncio loop in a thread: the BLE air, the emulators and the runtime's HCI server live on it."""

    def __init__(self) -> None:
        import asyncio
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hil-ble-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout_s: float = 60.0) -> Any:
        import asyncio
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn: Any, timeout_s: float = 10.0) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self.run(wrapper(), timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)


class _BleCgm:
    """The bench's view of the CGMS emulator (same methods as the serial emulator)."""

    def __init__(self, lt: _LoopThread, emu: Any) -> None:
        self.lt, self.emu = lt, emu

    def push_glucose(self, t_min: float, value: float) -> int:
        return self.lt.call(lambda: self.emu.push_glucose(int(round(t_min)), value))

    def drop_readings(self, n: int) -> None:
        self.lt.call(lambda: setattr(self.emu.faults, "drop_notifications", self.emu.faults.drop_notifications + n))

    def corrupt(self, n: int) -> None:
        self.lt.call(lambda: setattr(self.emu.faults, "corrupt_crc", n))

    def disconnect(self) -> None:
        async def go() -> None:
            await self.emu.set_connectable(False)
            await self.emu.disconnect()
        self.lt.run(go())

    def reconnect(self) -> None:
        self.lt.run(self.emu.set_connectable(True))


class _BlePump(_BleCgm):
    @property
    def received_mono(self) -> dict[str, float]:
        """Command CP writes seen by the pump (IDS commands carry no command id: keyed by arrival order)."""
        return {f"#{i}": t for i, t in enumerate(list(self.emu.received))}

    def take_delivered_u(self) -> float:
        return self.lt.call(self.emu.take_delivered_u)

    def set_occlusion(self, occluded: bool) -> None:
        self.lt.call(lambda: self.emu.set_occlusion(occluded))

    def delay_responses(self, seconds: float) -> None:
        self.lt.call(lambda: setattr(self.emu.faults, "response_delay_s", seconds))

    def lose_responses(self, count: int, msg_type: int | None = None) -> None:
        self.lt.call(lambda: setattr(self.emu.faults, "lose_responses", count))

    def stop_losing_responses(self) -> None:
        self.lt.call(lambda: setattr(self.emu.faults, "lose_responses", 0))


def _timed_ids_class() -> type:
    from hil.emulators.ble_ids import IdsEmulator

    class TimedIdsEmulator(IdsEmulator):
        """Records when each Command CP write reaches the pump (monotonic seconds)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.received: list[float] = []

        def _write_command(self, connection: Any, value: bytes) -> None:  # type: ignore[override]
            self.received.append(time.monotonic())
            super()._write_command(connection, value)

    return TimedIdsEmulator


def run_ble(opts: BenchOptions) -> BenchRun:
    """The BLE bench: CGMS and IDS emulators on a bumble link in this process, the runtime in a separate process
    reaching them through a controller whose HCI is served over TCP."""
    from hil.emulators.ble_cgms import CgmsEmulator
    from hil.emulators.ble_link import VirtualBleLink

    workdir, patient, faults, therapy, clock, restore_policy = _setup(opts)
    lt = _LoopThread()

    async def setup() -> tuple:
        air = VirtualBleLink()
        cgm_emu = await air.add(CgmsEmulator(e2e=True))
        pump_emu = await air.add(_timed_ids_class()(e2e=True, basal_u_per_h=therapy["basal_u_per_h"],
                                                    max_basal_u_per_h=10.0, clock=clock.now_min))
        return air, cgm_emu, pump_emu, await air.expose_controller_hci()
    air, cgm_emu, pump_emu, hci = lt.run(setup())
    fast = {"timeout_s": 1.0, "options": {"backoff_s": [0.05, 0.2, 0.5]}}
    cgm_dev = {"transport": "ble", "address": cgm_emu.address, "hci": hci, **fast}
    cgm_dev["options"] = dict(fast["options"], session_start_min=0.0)
    pump_dev = {"transport": "ble", "address": pump_emu.address, "hci": hci, **fast}
    devices = {"cgm": _BleCgm(lt, cgm_emu), "pump": _BlePump(lt, pump_emu)}

    def finish(run: BenchRun) -> None:
        run.pump_received_list = list(pump_emu.received)  # type: ignore[attr-defined]
        run.pump_bolus_total_u = lt.call(lambda: pump_emu.total_bolus_u)  # type: ignore[attr-defined]
        run.pump_executed = len(pump_emu.executed)  # type: ignore[attr-defined]
        lt.run(air.close())
        lt.stop()

    note = (f"BLE: runtime in a separate process, its bumble host on HCI transport {hci} "
            "(a controller on the bench's link); kill = SIGKILL, restarted from the journal")
    return _drive_runtime(opts, workdir, patient, faults, therapy, clock, restore_policy, cgm_dev, pump_dev, devices,
                          finish, note)

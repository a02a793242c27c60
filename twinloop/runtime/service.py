"""The runtime service: wires devices, the loop, the scheduler, the watchdog and the control socket on asyncio.

``serve(...)`` restores the loop from the journal, connects the devices (retrying with backoff, never giving up),
reads the CGM in one task (every reading -> a cycle), ticks a health/timer task from the real-time
:class:`~twinloop.runtime.scheduler.PeriodicScheduler` thread (timer cycles when readings stop, pump status, the
watchdog, garbage collection in slack time), serves the control socket and tells systemd ``READY=1``. SIGTERM and
SIGINT stop it cleanly. Device failures are journaled and retried; they never end the process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from twinloop.runtime import realtime
from twinloop.runtime.clock import Clock
from twinloop.runtime.loop import Runtime
from twinloop.runtime.scheduler import PeriodicScheduler
from twinloop.runtime.watchdog import Health, SdNotifier, Watchdog

log = logging.getLogger("twinloop.service")


@dataclass
class ServiceOptions:
    tick_s: float = 1.0
    scheduler_priority: int = 0
    collect_in_slack: bool = False
    control_socket: str | None = None
    control_mode: int = 0o660
    control_group: str | None = None
    cycle_budget_s: float = 30.0
    reconnect_backoff_s: tuple[float, float] = (0.2, 5.0)


class Service:
    """One running runtime: the tasks around a :class:`Runtime`."""

    def __init__(self, runtime: Runtime, cgm: Any, pump: Any, clock: Clock, options: ServiceOptions,
                 notifier: SdNotifier | None = None) -> None:
        self.runtime = runtime
        self.cgm = cgm
        self.pump = pump
        self.clock = clock
        self.opts = options
        self.notifier = notifier or SdNotifier()
        self.watchdog = Watchdog(self.notifier, self.health)
        self.stop_event = asyncio.Event()
        self.cgm_connected = False
        self.pump_connected = False
        self.cgm_task: asyncio.Task | None = None
        self._tick_event = asyncio.Event()
        self._last_tick_mono = time.monotonic()
        self.ticks = 0

    # ------------------------------------------------------------------------------------------------ health

    def health(self) -> Health:
        failures = []
        rt = self.runtime
        now_mono = time.monotonic()
        if rt.cycle_started_mono is not None and now_mono - rt.cycle_started_mono > self.opts.cycle_budget_s:
            failures.append("cycle overran its budget")
        if not rt.journal_ok:
            failures.append(f"journal not writable ({rt.journal_error})")
        if self.cgm_task is not None and self.cgm_task.done():
            failures.append("CGM task ended")
        if now_mono - self._last_tick_mono > max(5 * self.opts.tick_s, 2.0):
            failures.append("scheduler ticks not processed")
        if rt.last_cycle_min > -1e300:
            silence = self.clock.now_min() - max(rt.last_cycle_min, rt.last_reading_min)
            budget = rt.opts.cgm_interval_min + 1.0 + 3 * rt.opts.timer_fallback_min + 1.0
            if silence > budget:
                failures.append(f"no cycle for {silence:.1f} min (CGM-loss fallback overdue)")
        return Health(not failures, tuple(failures))

    # ------------------------------------------------------------------------------------------------ tasks

    async def _connect(self, device: Any, what: str) -> None:
        delay, cap = self.opts.reconnect_backoff_s
        while not self.stop_event.is_set():
            try:
                await device.connect()
                self.runtime.record_quietly("device", self.clock.now_min(), {"device": what, "event": "connected"})
                self.runtime.devices[what] = "connected"
                return
            except Exception as exc:
                self.runtime.record_quietly("device", self.clock.now_min(),
                                            {"device": what, "event": "connect_failed",
                                             "error": f"{type(exc).__name__}: {exc}"})
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)

    async def _cgm_loop(self) -> None:
        while not self.stop_event.is_set():
            await self._connect(self.cgm, "cgm")
            self.cgm_connected = True
            try:
                async for reading in self.cgm.readings():
                    received = time.perf_counter()
                    await self.runtime.on_reading(reading, received)
                    if self.stop_event.is_set():
                        break
                    self._collect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a device failure is recorded and retried, never fatal
                log.warning("CGM stream ended: %s", exc)
                self.runtime.record_quietly("device", self.clock.now_min(),
                                            {"device": "cgm", "event": "stream_failed",
                                             "error": f"{type(exc).__name__}: {exc}"})
            self.cgm_connected = False
            self.runtime.devices["cgm"] = "reconnecting"
            try:
                await self.cgm.close()
            except Exception:
                pass
            await asyncio.sleep(self.opts.reconnect_backoff_s[0])

    async def _pump_connect(self) -> None:
        await self._connect(self.pump, "pump")
        self.pump_connected = True
        await self.runtime.refresh_pump_status(force=True)

    def _collect(self) -> None:
        if self.opts.collect_in_slack:
            realtime.collect_in_slack(2)

    async def _tick_loop(self) -> None:
        while not self.stop_event.is_set():
            await self._tick_event.wait()
            self._tick_event.clear()
            self._last_tick_mono = time.monotonic()
            self.ticks += 1
            try:
                if self.pump_connected:
                    await self.runtime.refresh_pump_status()
                result = await self.runtime.on_timer()
                if result is not None:
                    self._collect()
            except Exception as exc:
                log.exception("tick failed")
                self.runtime.record_quietly("error", self.clock.now_min(), {"tick": f"{type(exc).__name__}: {exc}"})
            if not self.stop_event.is_set():
                self.watchdog.tick()

    # ------------------------------------------------------------------------------------------------ run

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop_event.set)
            except (NotImplementedError, RuntimeError):
                pass
        rt = self.runtime
        summary = rt.restored if rt.restored else rt.restore()
        rt.record("start", self.clock.now_min(), {"pid": os.getpid(), "restore": summary,
                                                   "speed": self.clock.speed})
        control = None
        if self.opts.control_socket:
            from twinloop.runtime.control_socket import ControlServer
            control = ControlServer(rt, self.opts.control_socket, self.opts.control_mode, self.opts.control_group)
            await control.start()
        scheduler = PeriodicScheduler(self.opts.tick_s, lambda k, d, late: loop.call_soon_threadsafe(
            self._tick_event.set), priority=self.opts.scheduler_priority)
        tasks = [asyncio.create_task(self._pump_connect(), name="pump-connect"),
                 asyncio.create_task(self._tick_loop(), name="tick")]
        self.cgm_task = asyncio.create_task(self._cgm_loop(), name="cgm")
        tasks.append(self.cgm_task)
        scheduler.start()
        self.notifier.ready(f"running ({rt.controller.name if hasattr(rt.controller, 'name') else 'controller'})")
        log.info("runtime ready (pid %d)", os.getpid())
        try:
            await self.stop_event.wait()
        finally:
            self.notifier.stopping()
            scheduler.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for dev in (self.cgm, self.pump):
                try:
                    await asyncio.wait_for(dev.close(), 5.0)
                except Exception:
                    pass
            if control is not None:
                await control.close()
            rt.record_quietly("stop", self.clock.now_min(), {"pid": os.getpid(), "cycles": rt.cycles})
            close = getattr(rt.journal, "close", None)
            if close is not None:
                close()
        return 0


def service_from_config(cfg: Any, clock: Clock, *, cgm: Any = None, pump: Any = None, controller: Any = None,
                        gate: Any = None, journal: Any = None, notifier: SdNotifier | None = None,
                        ble_backend: type | None = None) -> Service:
    """Build the service from a :class:`~twinloop.runtime.config.BoardConfig`; any part can be injected."""
    from twinloop.runtime import devices, kernel
    from twinloop.runtime.loop import LoopOptions

    journal = journal if journal is not None else kernel.open_journal(cfg.journal_path)
    gate = gate if gate is not None else kernel.safety_gate()
    controller = controller if controller is not None else devices.build_controller(cfg.controller,
                                                                                     cfg.controller_options)
    opts = LoopOptions(cgm_interval_min=cfg.loop.cgm_interval_min, history_h=cfg.loop.history_h,
                       timer_fallback_min=cfg.loop.timer_fallback_min)
    runtime = Runtime(cfg.settings, controller, gate, journal, None, clock, opts)
    runtime.restore()  # before the CGM client exists: it resumes after the last journaled sequence
    resume = next((r.sequence for r in reversed(runtime.readings) if r.sequence is not None), None)
    cgm = cgm if cgm is not None else devices.build_cgm(cfg.cgm, clock, cfg.loop.cgm_interval_min, resume,
                                                        ble_backend)
    pump = pump if pump is not None else devices.build_pump(cfg.pump, clock, ble_backend)
    runtime.pump = pump
    # at least two ticks per simulated minute, so timer cycles land on time in accelerated runs
    tick_s = min(cfg.realtime.tick_s, clock.real_s(0.5))
    prio = min(99, cfg.realtime.priority + 1) if cfg.realtime.enabled and cfg.realtime.priority > 0 else 0
    sopts = ServiceOptions(tick_s=tick_s, scheduler_priority=prio,
                           collect_in_slack=cfg.realtime.enabled and cfg.realtime.freeze_gc,
                           control_socket=cfg.control.socket, control_mode=cfg.control.mode,
                           control_group=cfg.control.group)
    return Service(runtime, cgm, pump, clock, sopts, notifier)

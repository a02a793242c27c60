"""A :class:`~drivers.interfaces.PumpLink` on a New Era NE-500/NE-1000 syringe pump (benches that infuse into a
scale): approved insulin commands become volumes at the insulin concentration (U-100 = 100 U/mL = 10 uL per unit).
The pump itself is driven by :class:`drivers.serial.ne1000.Ne1000Pump`."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from drivers.interfaces import DeliveryUncertainError, DeviceError, DeviceTimeoutError, PumpStatus
from drivers.serial.ne1000 import (
    U100_U_PER_ML, Ne1000Error, Ne1000Pump, Ne1000Reply, RateUnits, insulin_u_to_volume_ml, volume_ml_to_insulin_u,
)
from safety.deliveries import planned_record
from safety.commands import (
    ApprovedCommand, Bolus, CancelBolus, DeliveryKind, DeliveryRecord, DeliveryStatus, Resume, Suspend, TempBasal,
)

def _wall_clock_min() -> float:
    return time.time() / 60.0


class Ne1000PumpLink:
    """A :class:`~drivers.interfaces.PumpLink` on an NE-500/NE-1000 syringe pump (bench infusing into a scale).

    Insulin is converted to volume with ``concentration_u_per_ml`` (U-100 = 100 U/mL); volumes travel in uL and
    are rounded down to the pump's 4 significant digits. The pump has no command identifiers, so the link itself
    refuses to run a ``command_id`` twice (a repeat returns the stored record without touching the pump), and an
    unconfirmed command is reconciled from the pump's ``DIS`` volume counter.

    - ``TempBasal``: infuse at the rate for ``duration_min`` (volume limit = rate x duration); when it ends the link
      restarts the scheduled basal (checked by the monitor task, which is also the safe-mode keep-alive).
    - ``Suspend``: stop. ``Resume``: restart the scheduled basal (or stay stopped if it is 0).
    - ``Bolus``: stop the basal, infuse the volume at ``bolus_rate_ul_per_min``, wait for the pump to stop, read
      ``DIS``: the confirmed amount is what the counter says; then restart the basal.
    - ``CancelBolus``: boluses complete before ``execute`` returns, so there is nothing to cancel (``FAILED``).

    Args:
        pump: the pump (not yet opened).
        syringe_diameter_mm: inner diameter of the syringe (``DIA``).
        concentration_u_per_ml: insulin concentration.
        scheduled_basal_u_per_h: basal infused when no temporary basal runs (0 = pump stopped).
        bolus_rate_ul_per_min: infusion rate of a bolus.
        safe_mode_timeout_s: enter safe mode with this communication timeout (None = basic mode).
        monitor_interval_s: status poll period (keep-alive; must be well below the safe-mode timeout).
        bolus_timeout_s: longest wait for a bolus to finish.
        clock: absolute minutes for the records (wall clock by default; the bench passes its clock).
    """

    def __init__(self, pump: Ne1000Pump, *, syringe_diameter_mm: float,
                 concentration_u_per_ml: float = U100_U_PER_ML, scheduled_basal_u_per_h: float = 0.0,
                 bolus_rate_ul_per_min: float = 500.0, safe_mode_timeout_s: int | None = None,
                 monitor_interval_s: float = 1.0, bolus_timeout_s: float = 120.0,
                 clock: Callable[[], float] = _wall_clock_min) -> None:
        insulin_u_to_volume_ml(1.0, concentration_u_per_ml)  # validates the concentration
        self.pump = pump
        self.syringe_diameter_mm = syringe_diameter_mm
        self.concentration_u_per_ml = concentration_u_per_ml
        self.scheduled_basal_u_per_h = scheduled_basal_u_per_h
        self.bolus_rate_ul_per_min = bolus_rate_ul_per_min
        self.safe_mode_timeout_s = safe_mode_timeout_s
        self.monitor_interval_s = monitor_interval_s
        self.bolus_timeout_s = bolus_timeout_s
        self.clock = clock
        self._executed: dict[str, DeliveryRecord] = {}
        self._uncertain: dict[str, tuple[ApprovedCommand, float]] = {}  # command, DIS infused mL before it
        self._tbr_until_min: float | None = None
        self._basal_u_per_h = 0.0
        self._basal_before = 0.0
        self.version = ""
        self._monitor: asyncio.Task[None] | None = None
        self._io = asyncio.Lock()

    def _ul(self, amount_u: float) -> float:
        return insulin_u_to_volume_ml(amount_u, self.concentration_u_per_ml) * 1000.0

    def _u(self, volume_ml: float) -> float:
        return volume_ml_to_insulin_u(volume_ml, self.concentration_u_per_ml)

    async def connect(self) -> None:
        await self.pump.open()
        async with self._io:
            try:
                await self.pump.status()
            except Ne1000Error as exc:  # a freshly powered pump reports A?R once: acknowledged by this exchange
                if exc.reply is None or exc.reply.alarm != "R":
                    raise
            if self.safe_mode_timeout_s is not None:  # first, so everything after it is CRC-protected
                await self.pump.enable_safe_mode(self.safe_mode_timeout_s)
            self.version = await self.pump.version()
            await self.pump.stop()
            await self.pump.set_diameter(self.syringe_diameter_mm)
            await self.pump.set_volume_units(microlitres=True)
            await self.pump.set_direction("INF")
            await self._start_basal(self.scheduled_basal_u_per_h, None)
        self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except (asyncio.CancelledError, DeviceError):
                pass
            self._monitor = None
        await self.pump.close()

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_interval_s)
            try:
                async with self._io:
                    reply = await self.pump.status()
                    if (self._tbr_until_min is not None and self.clock() >= self._tbr_until_min
                            and reply.status in "SP" and not self._uncertain):
                        await self._start_basal(self.scheduled_basal_u_per_h, None)
            except DeviceError:
                continue  # the next command will report the problem; safe mode stops the pump meanwhile

    async def _start_basal(self, rate_u_per_h: float, duration_min: float | None) -> None:
        await self.pump.stop()
        self._basal_u_per_h = 0.0
        self._tbr_until_min = None
        if rate_u_per_h <= 0.0:
            return
        await self.pump.set_rate(self._ul(rate_u_per_h), RateUnits.UL_PER_H)
        volume = 0.0 if duration_min is None else self._ul(rate_u_per_h * duration_min / 60.0)
        await self.pump.set_volume(volume)
        await self.pump.run()
        self._basal_u_per_h = rate_u_per_h
        if duration_min is not None:
            self._tbr_until_min = self.clock() + duration_min

    async def execute(self, command: ApprovedCommand) -> DeliveryRecord:
        """See :meth:`drivers.interfaces.PumpLink.execute`."""
        if not isinstance(command, ApprovedCommand):
            raise TypeError(f"pump accepts only ApprovedCommand, got {type(command).__name__}")
        if self._uncertain:
            pending = tuple(planned_record(c, DeliveryStatus.UNCERTAIN) for c, _ in self._uncertain.values())
            raise DeliveryUncertainError("uncertain delivery pending: reconcile() first", pending)
        if command.command_id in self._executed:
            return self._executed[command.command_id]
        async with self._io:
            self._basal_before = self._basal_u_per_h
            if not isinstance(command.command, CancelBolus):
                # stop and zero the volume counter first (nothing that delivers has been sent: errors propagate);
                # the counter then measures exactly this command, at full 4-digit resolution
                await self.pump.stop()
                self._basal_u_per_h = 0.0
                await self.pump.clear_dispensed("INF")
            try:
                record = await self._run(command)
            except DeviceError:
                self._uncertain[command.command_id] = (command, 0.0)
                return planned_record(command, DeliveryStatus.UNCERTAIN)
            except asyncio.CancelledError:  # the caller's own timeout: the pump may be running it
                self._uncertain[command.command_id] = (command, 0.0)
                raise
        self._executed[command.command_id] = record
        return record

    async def _run(self, approved: ApprovedCommand) -> DeliveryRecord:
        c = approved.command
        if isinstance(c, TempBasal):
            await self._start_basal(c.rate_u_per_h, c.duration_min)
            if c.rate_u_per_h <= 0.0:
                self._tbr_until_min = self.clock() + c.duration_min
            return planned_record(approved, DeliveryStatus.CONFIRMED)
        if isinstance(c, Suspend):
            await self.pump.stop()
            self._basal_u_per_h = 0.0
            self._tbr_until_min = self.clock() + c.duration_min
            return planned_record(approved, DeliveryStatus.CONFIRMED)
        if isinstance(c, Resume):
            await self._start_basal(self.scheduled_basal_u_per_h, None)
            return planned_record(approved, DeliveryStatus.CONFIRMED)
        if isinstance(c, CancelBolus):
            return planned_record(approved, DeliveryStatus.FAILED)
        assert isinstance(c, Bolus)
        basal, until = self._basal_before, self._tbr_until_min
        await self.pump.set_rate(self.bolus_rate_ul_per_min, RateUnits.UL_PER_MIN)
        await self.pump.set_volume(self._ul(c.bolus_u))
        alarm: Ne1000Error | None = None
        try:
            await self.pump.run()
        except Ne1000Error as exc:  # an alarm (stall) in answer to RUN: the pump did not start or stopped at once
            if exc.reply is None or exc.reply.alarm is None:
                raise
            alarm = exc
        deadline = asyncio.get_running_loop().time() + self.bolus_timeout_s
        while alarm is None:
            try:
                reply = await self.pump.status()
            except Ne1000Error as exc:  # stall (occlusion) or another alarm: the pump stopped
                alarm = exc
                break
            if reply.status in "SP":
                break
            if asyncio.get_running_loop().time() > deadline:
                raise DeviceTimeoutError(f"bolus {approved.command_id} did not finish in {self.bolus_timeout_s} s")
            await asyncio.sleep(0.02)
        infused_ml, _ = await self.pump.dispensed_ml()
        delivered_u = max(0.0, self._u(infused_ml))
        if until is None or self.clock() < until:
            remaining = None if until is None else until - self.clock()
            await self._start_basal(basal if until is not None else self.scheduled_basal_u_per_h, remaining)
        else:
            await self._start_basal(self.scheduled_basal_u_per_h, None)
        if alarm is not None and delivered_u <= 0.0:
            return planned_record(approved, DeliveryStatus.FAILED, 0.0)
        return planned_record(approved, DeliveryStatus.CONFIRMED, round(delivered_u, 6))

    async def reconcile(self) -> tuple[DeliveryRecord, ...]:
        """See :meth:`drivers.interfaces.PumpLink.reconcile`. Stops the pump, then reads ``DIS``."""
        if not self._uncertain:
            return ()
        async with self._io:
            await self.pump.stop()
            infused_now_ml, _ = await self.pump.dispensed_ml()
            resolved = []
            for command_id, (approved, before_ml) in list(self._uncertain.items()):
                delivered_u = max(0.0, self._u(infused_now_ml - before_ml))
                c = approved.command
                if isinstance(c, Bolus):
                    record = (planned_record(approved, DeliveryStatus.CONFIRMED, round(delivered_u, 6))
                              if delivered_u > 0.0 else planned_record(approved, DeliveryStatus.FAILED, 0.0))
                elif isinstance(c, TempBasal) and c.rate_u_per_h > 0.0:
                    # stopped now: what ran is what the counter says
                    record = (DeliveryRecord(command_id, DeliveryKind.BASAL, approved.issued_at_min, self.clock(),
                                             round(delivered_u, 6), DeliveryStatus.CONFIRMED, c.rate_u_per_h)
                              if delivered_u > 0.0 else planned_record(approved, DeliveryStatus.FAILED, 0.0))
                else:
                    record = planned_record(approved, DeliveryStatus.CONFIRMED)  # the pump is stopped now
                resolved.append(record)
                self._executed[command_id] = record
                del self._uncertain[command_id]
            return tuple(resolved)

    async def status(self) -> PumpStatus:
        async with self._io:
            try:
                reply = await self.pump.status()
            except Ne1000Error as exc:
                reply = exc.reply or Ne1000Reply(self.pump.address, "S", "")
        occluded = self.pump.last_alarm == "S"  # a stall stays reported until a RUN succeeds
        return PumpStatus(occluded=occluded, reservoir_u=None, reservoir_empty=False,
                          suspended=reply.status not in "IWX", battery_low=False,
                          active_basal_u_per_h=self._basal_u_per_h if reply.status == "I" else 0.0)

"""NE-1000 driver against the pty emulator: basic mode, safe mode over a noisy line, the safe-mode timeout alarm,
and the PumpLink adapter (units -> volume, uncertain RUN reconciled from DIS, no double delivery, stall)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.interfaces import DeliveryUncertainError, DeviceTimeoutError, PumpLink
from drivers.serial.ne1000 import Ne1000Error, Ne1000Pump, RateUnits
from drivers.serial.ne1000_link import Ne1000PumpLink
from hil.emulators.ne1000_emulator import Ne1000Emulator
from safety.commands import ApprovedCommand, Bolus, DeliveryRecord, DeliveryStatus, Resume, Suspend, TempBasal, _approve


async def _wait_status(pump: Ne1000Pump, status: str, timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await pump.status()).status != status:
        assert asyncio.get_running_loop().time() < deadline, f"pump never reached status {status}"
        await asyncio.sleep(0.02)


def test_basic_mode_commands_and_a_volume_run() -> None:
    async def run() -> Ne1000Emulator:
        with Ne1000Emulator(time_scale=60.0) as emu:
            pump = Ne1000Pump(emu.port, timeout_s=0.3)
            await pump.open()
            try:
                assert (await pump.version()) == "NE1000V3.928"
                await pump.set_diameter(4.78)
                assert (await pump.command("DIA")).data == "4.780"
                await pump.set_rate(600.0, RateUnits.UL_PER_MIN)
                assert (await pump.command("RAT")).data == "600.0UM"
                await pump.set_volume_units(microlitres=True)
                await pump.set_volume(50.0)
                await pump.set_direction("INF")
                assert (await pump.run()).status == "I"
                await _wait_status(pump, "S")  # 50 uL at 600 uL/min, 60x: ~0.08 s
                infused, withdrawn = await pump.dispensed_ml()
                assert infused == pytest.approx(0.05) and withdrawn == 0.0
                with pytest.raises(Ne1000Error, match=r"\?OOR"):
                    await pump.command("DIA 99")
                with pytest.raises(Ne1000Error, match=r"\?"):
                    await pump.command("XYZ")
                await pump.clear_dispensed("INF")
                assert (await pump.dispensed_ml())[0] == 0.0
            finally:
                await pump.close()
            return emu

    emu = asyncio.run(run())
    assert emu.take_delivered_ml() == pytest.approx(0.05)


def test_power_reset_alarm_is_reported_once() -> None:
    async def run() -> None:
        with Ne1000Emulator(report_power_reset=True) as emu:
            pump = Ne1000Pump(emu.port, timeout_s=0.3)
            await pump.open()
            try:
                with pytest.raises(Ne1000Error, match="power reset"):
                    await pump.status()
                assert pump.last_alarm == "R"
                assert (await pump.status()).status == "S"
            finally:
                await pump.close()

    asyncio.run(run())


def test_safe_mode_over_a_noisy_line() -> None:
    async def run() -> Ne1000Emulator:
        with Ne1000Emulator(corruption_probability=0.01, seed=4) as emu:
            pump = Ne1000Pump(emu.port, timeout_s=0.1, attempts=8)
            await pump.open()
            try:
                await pump.enable_safe_mode(30)
                assert emu.safe_mode
                for i in range(40):
                    await pump.set_rate(1.0 + i, RateUnits.ML_PER_H)
                    assert (await pump.command("RAT")).data == f"{format(1.0 + i, '.3f' if i < 9 else '.2f')}MH"
                await pump.disable_safe_mode()
                assert not emu.safe_mode
            finally:
                await pump.close()
            return emu

    emu = asyncio.run(run())
    assert emu.bytes_corrupted > 0


def test_basic_commands_are_refused_in_safe_mode() -> None:
    async def run() -> None:
        with Ne1000Emulator() as emu:
            pump = Ne1000Pump(emu.port, timeout_s=0.3)
            await pump.open()
            try:
                await pump.enable_safe_mode(30)
                pump.safe_mode = False  # a confused driver talking basic mode
                pump._reader.safe_mode = False
                with pytest.raises(Ne1000Error, match="COM"):
                    await pump.command("RUN", retry_garbled=False)
            finally:
                await pump.close()

    asyncio.run(run())


def test_safe_mode_timeout_alarms_and_stops_the_pump() -> None:
    async def run() -> Ne1000Emulator:
        with Ne1000Emulator() as emu:
            pump = Ne1000Pump(emu.port, timeout_s=0.3)
            await pump.open()
            try:
                await pump.set_rate(1.0, RateUnits.ML_PER_H)
                await pump.enable_safe_mode(1)
                assert (await pump.run()).status == "I"
                await asyncio.sleep(1.4)  # the controller goes silent
                assert emu.status == "S"
                with pytest.raises(Ne1000Error, match="safe-mode timeout"):
                    await pump.status()
                assert pump.last_alarm == "T"
            finally:
                await pump.close()
            return emu

    asyncio.run(run())


async def _link(emu: Ne1000Emulator, **kwargs: object) -> Ne1000PumpLink:
    now = [0.0]
    link = Ne1000PumpLink(Ne1000Pump(emu.port, timeout_s=0.15, attempts=6), syringe_diameter_mm=4.78,
                          bolus_rate_ul_per_min=600.0, monitor_interval_s=0.05, clock=lambda: now[0],
                          **kwargs)  # type: ignore[arg-type]
    await link.connect()
    return link


async def _execute_reconciling(link: Ne1000PumpLink, cmd: ApprovedCommand) -> DeliveryRecord:
    record = await link.execute(cmd)
    if record.status == DeliveryStatus.UNCERTAIN:
        (record,) = await link.reconcile()
    return record


def test_pump_link_bolus_and_temp_basal_in_units() -> None:
    async def run() -> None:
        with Ne1000Emulator(time_scale=120.0) as emu:
            link = await _link(emu, safe_mode_timeout_s=5, concentration_u_per_ml=100.0)
            assert isinstance(link, PumpLink)
            try:
                emu.take_delivered_ml()
                bolus = await link.execute(_approve("b1", 0.0, Bolus(1.5)))
                assert bolus.status == DeliveryStatus.CONFIRMED and bolus.amount_u == pytest.approx(1.5)
                assert emu.take_delivered_u(100.0) == pytest.approx(1.5, abs=1e-3)  # 15 uL into the scale
                assert emu.safe_mode
                tbr = await link.execute(_approve("t1", 0.0, TempBasal(3.0, 30.0)))
                assert tbr.status == DeliveryStatus.CONFIRMED and tbr.rate_u_per_h == 3.0
                assert "RAT 30.00 UH" in emu.commands and "VOL 15.00" in emu.commands
                status = await link.status()
                assert status.active_basal_u_per_h == 3.0 and not status.suspended
                again = await link.execute(_approve("b1", 0.0, Bolus(1.5)))  # same id: not sent again
                assert again == bolus
                assert (await link.execute(_approve("s1", 1.0, Suspend(30.0)))).amount_u == 0.0
                assert (await link.status()).suspended
                await link.execute(_approve("r1", 2.0, Resume()))  # scheduled basal 0: stays stopped
                assert emu.status in "SP"
            finally:
                await link.close()

    asyncio.run(run())


def test_pump_link_lost_run_reply_is_uncertain_and_reconciled_once() -> None:
    async def run() -> None:
        with Ne1000Emulator(time_scale=120.0) as emu:
            link = await _link(emu)
            try:
                emu.take_delivered_ml()
                emu.lose_responses(1, command="RUN")
                cmd = _approve("b2", 0.0, Bolus(2.0))
                uncertain = await link.execute(cmd)
                assert uncertain.status == DeliveryStatus.UNCERTAIN
                with pytest.raises(DeliveryUncertainError):
                    await link.execute(_approve("b3", 0.0, Bolus(1.0)))
                await asyncio.sleep(0.3)  # the pump finishes the bolus meanwhile
                (resolved,) = await link.reconcile()
                assert resolved.status == DeliveryStatus.CONFIRMED
                assert resolved.amount_u == pytest.approx(2.0, abs=0.01)
                assert await link.execute(cmd) == resolved  # re-sent id: nothing delivered again
                assert emu.commands.count("RUN") == 1
                assert emu.take_delivered_u() == pytest.approx(2.0, abs=0.01)
            finally:
                await link.close()

    asyncio.run(run())


def test_pump_link_over_a_noisy_safe_mode_line_never_double_delivers() -> None:
    async def run() -> None:
        with Ne1000Emulator(time_scale=120.0, corruption_probability=0.01, seed=9) as emu:
            link = await _link(emu, safe_mode_timeout_s=10)
            try:
                emu.take_delivered_ml()
                total = 0.0
                for k in range(5):
                    record = await _execute_reconciling(link, _approve(f"b{k}", float(k), Bolus(0.5)))
                    total += record.amount_u
                    assert record.status in (DeliveryStatus.CONFIRMED, DeliveryStatus.FAILED)
                assert emu.commands.count("RUN") <= 5
                assert emu.take_delivered_u() == pytest.approx(total, abs=0.01)
                assert total <= 2.5 + 1e-9
            finally:
                await link.close()

    asyncio.run(run())


def test_pump_link_stall_is_reported_as_occlusion() -> None:
    async def run() -> None:
        with Ne1000Emulator(time_scale=120.0) as emu:
            link = await _link(emu)
            try:
                emu.set_occlusion(True)
                record = await link.execute(_approve("b", 0.0, Bolus(1.0)))
                assert record.status == DeliveryStatus.FAILED and record.amount_u == 0.0
                assert (await link.status()).occluded
                assert emu.take_delivered_ml() == 0.0
                emu.set_occlusion(False)
                record = await link.execute(_approve("b-retry", 1.0, Bolus(1.0)))
                assert record.status == DeliveryStatus.CONFIRMED and record.amount_u == pytest.approx(1.0)
                assert not (await link.status()).occluded
            finally:
                await link.close()

    asyncio.run(run())


def test_late_reply_is_not_taken_for_the_next_commands_reply() -> None:
    async def run() -> Ne1000Pump:
        with Ne1000Emulator() as emu:
            pump = Ne1000Pump(emu.port, timeout_s=0.2, attempts=4)
            await pump.open()
            try:
                emu.delay_responses(0.25)  # the reply (at 0.25 s) arrives after the driver's timeout (0.2 s) ...
                with pytest.raises(DeviceTimeoutError):
                    await pump.command("RAT 1 MH", attempts=1)
                emu.delay_responses(0.1)
                # ... while the next command waits for its own reply (at ~0.3 s), which has data: the stale one,
                # without data, is skipped
                assert (await pump.command("DIR")).data == "INF"
                emu.delay_responses(0.0)
                assert (await pump.dispensed_ml()) == (0.0, 0.0)
            finally:
                await pump.close()
            return pump

    assert asyncio.run(run()).stale_replies == 1

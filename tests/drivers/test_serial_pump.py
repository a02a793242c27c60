"""Serial pump client against the pty emulator: TBRs and boluses over a line with 1 % byte corruption both ways,
no duplicated delivery, a lost response that becomes UNCERTAIN and is reconciled from the pump's history."""

from __future__ import annotations

import asyncio

import pytest

from drivers.interfaces import DeliveryUncertainError, DeviceError, PumpLink
from drivers.serial.protocol import MsgType, RetryPolicy
from drivers.serial.pump_client import SerialPumpClient
from hil.emulators.serial_pump import SerialPumpEmulator
from safety.commands import (
    ApprovedCommand, Bolus, BolusKind, CancelBolus, DeliveryKind, DeliveryRecord, DeliveryStatus, Resume, Suspend,
    TempBasal, _approve,
)

POLICY = RetryPolicy(timeout_s=0.12, attempts=8)


async def _execute_reconciling(client: SerialPumpClient, cmd: ApprovedCommand) -> DeliveryRecord:
    """What the runtime does: execute; if uncertain, reconcile before anything else."""
    record = await client.execute(cmd)
    if record.status == DeliveryStatus.UNCERTAIN:
        (record,) = await client.reconcile()
    return record


def test_tbrs_and_boluses_over_a_noisy_line_deliver_exactly_once() -> None:
    async def run() -> tuple[SerialPumpEmulator, SerialPumpClient, list[DeliveryRecord], dict[str, float]]:
        with SerialPumpEmulator(corruption_probability=0.01, seed=11, scheduled_basal_u_per_h=0.8) as pump:
            client = SerialPumpClient(pump.port, policy=POLICY)
            assert isinstance(client, PumpLink)
            await client.connect()
            records: list[DeliveryRecord] = []
            boluses: dict[str, float] = {}
            try:
                for k in range(12):  # one hour of 5-minute cycles
                    t = 5.0 * k
                    pump.advance_to(t)
                    records.append(await _execute_reconciling(
                        client, _approve(f"tbr-{k}", t, TempBasal(0.5 + 0.1 * k, 30.0))))
                    if k % 3 == 0:
                        cid = f"bolus-{k}"
                        boluses[cid] = 0.25 * (k + 1)
                        records.append(await _execute_reconciling(
                            client, _approve(cid, t, Bolus(boluses[cid], BolusKind.AUTOMATIC))))
                # a replayed command (e.g. the runtime restarted and re-sent it) is not delivered again
                replay = await _execute_reconciling(client, _approve("bolus-3", 15.0, Bolus(1.0)))
                assert replay.status == DeliveryStatus.CONFIRMED and replay.amount_u == 1.0
            finally:
                await client.close()
            return pump, client, records, boluses

    pump, client, records, boluses = asyncio.run(run())
    assert all(r.status == DeliveryStatus.CONFIRMED for r in records)
    history = pump.history()
    ids = [e.command_id for e in history]
    assert len(ids) == len(set(ids)) == 16, "a command was executed twice or not at all"
    delivered_bolus = {e.command_id: e.amount_mu / 1000 for e in history if e.kind.name == "BOLUS"}
    assert delivered_bolus == boluses
    assert pump.bytes_corrupted > 0
    assert client.link.stats["bad_frames"] > 0 or pump.retransmissions_seen > 0


def test_lost_response_is_uncertain_then_reconciled_without_double_delivery() -> None:
    async def run() -> None:
        with SerialPumpEmulator(corruption_probability=0.01, seed=5) as pump:
            client = SerialPumpClient(pump.port, policy=POLICY)
            await client.connect()
            try:
                pump.advance_to(100.0)
                first = await _execute_reconciling(client, _approve("tbr-1", 100.0, TempBasal(1.2, 30.0)))
                assert first.status == DeliveryStatus.CONFIRMED

                pump.lose_responses(1000, msg_type=MsgType.PUMP_RESULT)  # the pump runs it; every answer is lost
                bolus = _approve("bolus-1", 100.0, Bolus(2.0, BolusKind.MEAL))
                uncertain = await client.execute(bolus)
                pump.stop_losing_responses()
                assert uncertain.status == DeliveryStatus.UNCERTAIN
                assert uncertain.command_id == "bolus-1" and uncertain.amount_u == 2.0
                assert client.pending == (uncertain,)

                # nothing else is sent while uncertain
                with pytest.raises(DeliveryUncertainError) as info:
                    await client.execute(_approve("bolus-2", 101.0, Bolus(1.0)))
                assert info.value.pending == (uncertain,)
                assert pump.executed_count("bolus-2") == 0

                (resolved,) = await client.reconcile()
                assert resolved.status == DeliveryStatus.CONFIRMED
                assert (resolved.kind, resolved.amount_u, resolved.start_min) == (DeliveryKind.BOLUS, 2.0, 100.0)
                assert client.pending == () and await client.reconcile() == ()

                # re-sending the same command id: this client answers from memory ...
                assert await client.execute(bolus) == resolved
                # ... and after a restart (a new client, empty memory) the pump answers DUPLICATE
                await client.close()
                client = SerialPumpClient(pump.port, policy=POLICY)
                await client.connect()
                again = await _execute_reconciling(client, bolus)
                assert again.status == DeliveryStatus.CONFIRMED and again.amount_u == 2.0
                assert pump.executed_count("bolus-1") == 1
                assert pump.duplicates_refused >= 1
                bolus_u = sum(e.amount_mu for e in pump.history() if e.kind.name == "BOLUS") / 1000
                assert bolus_u == 2.0
            finally:
                await client.close()

    asyncio.run(run())


def test_command_lost_on_the_way_is_reconciled_as_failed_and_can_be_resent() -> None:
    async def run() -> None:
        with SerialPumpEmulator() as pump:
            client = SerialPumpClient(pump.port, policy=RetryPolicy(timeout_s=0.08, attempts=3))
            await client.connect()
            try:
                pump.disconnect()
                bolus = _approve("bolus-x", 0.0, Bolus(1.0))
                assert (await client.execute(bolus)).status == DeliveryStatus.UNCERTAIN
                with pytest.raises(DeviceError):
                    await client.reconcile()  # still no line: stays uncertain
                assert len(client.pending) == 1
                pump.reconnect()
                (resolved,) = await client.reconcile()
                assert resolved.status == DeliveryStatus.FAILED and resolved.amount_u == 0.0
                assert pump.executed_count("bolus-x") == 0
                assert (await client.execute(bolus)).status == DeliveryStatus.CONFIRMED
                assert pump.executed_count("bolus-x") == 1
            finally:
                await client.close()

    asyncio.run(run())


def test_delayed_response_within_the_retry_window_is_confirmed_once() -> None:
    async def run() -> None:
        with SerialPumpEmulator() as pump:
            client = SerialPumpClient(pump.port, policy=RetryPolicy(timeout_s=0.1, attempts=5))
            await client.connect()
            try:
                pump.delay_responses(0.15)  # longer than one timeout: the client retransmits
                record = await client.execute(_approve("b", 0.0, Bolus(0.5)))
                pump.delay_responses(0.0)
                assert record.status == DeliveryStatus.CONFIRMED
                assert pump.executed_count("b") == 1 and pump.retransmissions_seen >= 1
            finally:
                await client.close()

    asyncio.run(run())


def test_occlusion_refuses_insulin_and_is_reported() -> None:
    async def run() -> None:
        with SerialPumpEmulator(scheduled_basal_u_per_h=1.0) as pump:
            client = SerialPumpClient(pump.port, policy=POLICY)
            await client.connect()
            try:
                pump.set_occlusion(True)
                status = await client.status()
                assert status.occluded and status.active_basal_u_per_h == 0.0
                record = await client.execute(_approve("b", 0.0, Bolus(1.0)))
                assert record.status == DeliveryStatus.FAILED and record.amount_u == 0.0
                assert pump.executed_count("b") == 0
                pump.set_occlusion(False)
                assert (await client.execute(_approve("b", 1.0, Bolus(1.0)))).status == DeliveryStatus.CONFIRMED
            finally:
                await client.close()

    asyncio.run(run())


def test_suspend_resume_cancel_and_delivered_insulin_for_the_patient() -> None:
    async def run() -> None:
        with SerialPumpEmulator(scheduled_basal_u_per_h=1.2, start_min=0.0) as pump:
            client = SerialPumpClient(pump.port, policy=POLICY)
            await client.connect()
            try:
                pump.advance_to(60.0)
                assert pump.take_delivered_u() == pytest.approx(1.2)  # one hour of scheduled basal
                tbr = await client.execute(_approve("t", 60.0, TempBasal(2.4, 30.0)))
                assert tbr.rate_u_per_h == 2.4 and tbr.amount_u == pytest.approx(1.2)
                pump.advance_to(75.0)
                susp = await client.execute(_approve("s", 75.0, Suspend(30.0)))
                assert susp.amount_u == 0.0 and susp.rate_u_per_h == 0.0
                assert (await client.status()).suspended
                pump.advance_to(90.0)
                assert (await client.execute(_approve("r", 90.0, Resume()))).status == DeliveryStatus.CONFIRMED
                pump.advance_to(120.0)
                # 15 min at 2.4 + 15 min suspended + 30 min at 1.2
                assert pump.take_delivered_u() == pytest.approx(0.6 + 0.0 + 0.6)
                tbr_entry = next(e for e in pump.history() if e.command_id == "t")
                assert tbr_entry.state.name == "CANCELLED" and tbr_entry.amount_mu == 600
                await client.execute(_approve("b", 120.0, Bolus(0.4)))
                cancel = await client.execute(_approve("c", 120.0, CancelBolus("b")))
                assert cancel.status == DeliveryStatus.CONFIRMED
                unknown = await client.execute(_approve("c2", 120.0, CancelBolus("nope")))
                assert unknown.status == DeliveryStatus.FAILED
                assert pump.take_delivered_u() == pytest.approx(0.4)
                deliveries = pump.deliveries()
                assert deliveries[0].command_id == "t" and deliveries[0].status == DeliveryStatus.CONFIRMED
            finally:
                await client.close()

    asyncio.run(run())


def test_only_approved_commands_are_accepted() -> None:
    async def run() -> None:
        with SerialPumpEmulator() as pump:
            client = SerialPumpClient(pump.port, policy=POLICY)
            await client.connect()
            try:
                with pytest.raises(TypeError):
                    await client.execute(Bolus(1.0))  # type: ignore[arg-type]
                assert pump.history() == ()
            finally:
                await client.close()

    asyncio.run(run())


def test_wrong_device_kind_is_refused() -> None:
    from hil.emulators.serial_cgm import SerialCgmEmulator

    async def run() -> None:
        with SerialCgmEmulator() as cgm:
            client = SerialPumpClient(cgm.port, policy=POLICY)
            with pytest.raises(DeviceError, match="not a pump"):
                await client.connect()
            await client.close()

    asyncio.run(run())


def test_execute_cancelled_by_the_caller_is_uncertain() -> None:
    async def run() -> None:
        with SerialPumpEmulator() as pump:
            client = SerialPumpClient(pump.port, policy=POLICY)
            await client.connect()
            try:
                pump.delay_responses(0.3)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.execute(_approve("b", 0.0, Bolus(1.0))), 0.05)
                pump.delay_responses(0.0)
                assert [r.command_id for r in client.pending] == ["b"]
                (resolved,) = await client.reconcile()
                assert resolved.status == DeliveryStatus.CONFIRMED and pump.executed_count("b") == 1
            finally:
                await client.close()

    asyncio.run(run())

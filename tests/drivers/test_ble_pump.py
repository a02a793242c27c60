"""End to end, no hardware: the IDS pump client (bleak through the bumble backend) against the emulated pump.

Sets a TBR, gives a bolus, handles lost responses / dropped requests / dropped links as UNCERTAIN, reconciles from
the pump history, and never delivers twice."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("bumble")

from bleak import BleakClient  # noqa: E402

from drivers.ble import uuids  # noqa: E402
from drivers.ble.pump_client import IdsPumpClient  # noqa: E402
from drivers.codecs import ids as d  # noqa: E402
from drivers.codecs.e2e import append_e2e  # noqa: E402
from drivers.interfaces import DeliveryUncertainError, DeviceError, PumpLink, PumpStatus  # noqa: E402
from hil.emulators.ble_ids import IdsEmulator  # noqa: E402
from hil.emulators.ble_link import VirtualBleLink  # noqa: E402
from safety.commands import (  # noqa: E402
    Bolus, BolusKind, CancelBolus, DeliveryKind, DeliveryStatus, Resume, Suspend, TempBasal, _approve,
)

CONFIRMED, UNCERTAIN, FAILED = DeliveryStatus.CONFIRMED, DeliveryStatus.UNCERTAIN, DeliveryStatus.FAILED


class Clock:
    """Virtual minutes shared by the pump emulator and the client (nothing waits real minutes)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run(coro, timeout_s: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def _setup(air: VirtualBleLink, clock: Clock, **pump_kw):
    pump = await air.add(IdsEmulator(clock=clock, **pump_kw))
    client = IdsPumpClient(pump.address, backend=air.backend(), clock=clock, connect_timeout_s=2.0,
                           io_timeout_s=3.0, response_timeout_s=1.5, backoff_s=(0.05, 0.1), max_connect_attempts=5)
    await client.connect()
    return pump, client


@pytest.mark.parametrize("e2e", [True, False])
def test_tbr_bolus_resume_and_delivered_insulin(e2e):
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock, e2e=e2e, basal_u_per_h=0.8)
            assert isinstance(client, PumpLink) and client.e2e is e2e
            st = await client.status()
            assert st == PumpStatus(False, 200.0, False, False, False, 0.8)

            rec = await client.execute(_approve("tbr-1", clock.t, TempBasal(1.5, 30)))
            assert rec.status is CONFIRMED and rec.kind is DeliveryKind.BASAL
            assert (rec.start_min, rec.end_min, rec.amount_u, rec.rate_u_per_h) == (1000.0, 1030.0, 0.75, 1.5)
            tbr = pump.executed[-1]
            assert isinstance(tbr, d.SetTbr) and tbr.context is d.DeliveryContext.AP_CONTROLLER and not tbr.change
            assert (await client.status()).active_basal_u_per_h == 1.5

            clock.t += 10
            rec = await client.execute(_approve("bolus-1", clock.t, Bolus(2.35, BolusKind.MEAL)))
            assert rec.status is CONFIRMED and rec.amount_u == 2.35 and rec.kind is DeliveryKind.BOLUS
            assert pump.executed[-1].reason_meal

            clock.t += 5  # a new TBR replaces the running one: sent with the "change" flag
            rec = await client.execute(_approve("tbr-2", clock.t, TempBasal(0.45, 30)))
            assert rec.status is CONFIRMED and pump.executed[-1].change

            clock.t += 5
            assert (await client.execute(_approve("resume-1", clock.t, Resume()))).status is CONFIRMED
            assert (await client.status()).active_basal_u_per_h == 0.8
            assert (await client.execute(_approve("resume-2", clock.t, Resume()))).status is CONFIRMED  # no-op

            clock.t += 40
            expected = 2.35 + 1.5 * 15 / 60 + 0.45 * 5 / 60 + 0.8 * 40 / 60
            assert pump.take_delivered_u() == pytest.approx(expected)
            assert pump.take_delivered_u() == 0.0
            delivered = await client.delivered_insulin()
            assert delivered.bolus_u == pytest.approx(2.35, abs=1e-4)
            assert delivered.basal_u == pytest.approx(expected - 2.35, abs=1e-4)  # FLOAT, 4 decimals
            assert (await client.insulin_on_board()).iob_u == pytest.approx(2.35 * (1 - 50 / 240), abs=0.01)
            assert await client.max_bolus() == 10.0
            await client.set_max_bolus(8.0)
            assert pump.max_bolus_u == 8.0
            await client.close()
    run(main())


def test_wrong_belief_about_a_running_tbr_is_corrected_once():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock)
            assert (await client.execute(_approve("tbr-1", clock.t, TempBasal(1.0, 30)))).status is CONFIRMED
            client._tbr_until = None  # as if the TBR had been started on the pump's own screen
            rec = await client.execute(_approve("tbr-2", clock.t, TempBasal(2.0, 30)))
            assert rec.status is CONFIRMED and pump.tbr is not None and pump.tbr.value == 2.0
            clock.t += 31  # the TBR ends by itself; the client knows, and sends a plain (not "change") TBR
            rec = await client.execute(_approve("tbr-3", clock.t, TempBasal(0.5, 30)))
            assert rec.status is CONFIRMED and not pump.executed[-1].change
            assert [m.change for m in pump.executed] == [False, True, False]
            await client.close()
    run(main())


@pytest.mark.parametrize("fault", ["lose_responses", "disconnect_after_request", "corrupt_crc"])
def test_unconfirmed_bolus_is_uncertain_then_reconciled_as_delivered_once(fault):
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock)
            setattr(pump.faults, fault, True if fault == "disconnect_after_request" else 1)
            rec = await client.execute(_approve("bolus-1", clock.t, Bolus(3.0)))
            assert rec.status is UNCERTAIN and rec.amount_u == 3.0
            assert client.pending == (rec,)

            n_executed = len(pump.executed)
            with pytest.raises(DeliveryUncertainError) as info:
                await client.execute(_approve("bolus-2", clock.t, Bolus(3.0)))
            assert info.value.pending == (rec,)
            assert len(pump.executed) == n_executed  # nothing else was sent

            (resolved,) = await client.reconcile()  # reconnects by itself after a dropped link
            assert resolved.status is CONFIRMED and resolved.command_id == "bolus-1"
            assert client.pending == () and await client.reconcile() == ()
            # the same approved command again: answered from memory, never sent twice
            assert (await client.execute(_approve("bolus-1", clock.t, Bolus(3.0)))).status is CONFIRMED
            assert sum(isinstance(m, d.SetBolus) for m in pump.executed) == 1
            assert pump.take_delivered_u() == pytest.approx(3.0)
            # and the link is usable again
            assert (await client.execute(_approve("tbr-1", clock.t, TempBasal(1.0, 30)))).status is CONFIRMED
            await client.close()
    run(main())


def test_slow_response_within_the_timeout_is_confirmed_and_a_too_slow_one_is_uncertain():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock)
            pump.faults.response_delay_s = 0.3
            assert (await client.execute(_approve("b-1", clock.t, Bolus(0.5)))).status is CONFIRMED
            pump.faults.response_delay_s = 2.5  # longer than response_timeout_s
            assert (await client.execute(_approve("b-2", clock.t, Bolus(0.5)))).status is UNCERTAIN
            pump.faults.response_delay_s = 0.0
            assert [r.status for r in await client.reconcile()] == [CONFIRMED]
            await asyncio.sleep(1.2)  # the late response arrives now and must not confirm anything else
            assert (await client.execute(_approve("b-3", clock.t, Bolus(0.5)))).status is CONFIRMED
            assert sum(isinstance(m, d.SetBolus) for m in pump.executed) == 3
            assert pump.take_delivered_u() == pytest.approx(1.5)
            await client.close()
    run(main())


def test_dropped_request_is_reconciled_as_not_delivered_and_a_new_command_delivers_once():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock, basal_u_per_h=0.0)
            pump.faults.drop_requests = 1
            rec = await client.execute(_approve("tbr-1", clock.t, TempBasal(2.0, 30)))
            assert rec.status is UNCERTAIN
            (resolved,) = await client.reconcile()
            assert resolved.status is FAILED  # the pump never executed it
            assert await client.execute(_approve("tbr-1", clock.t, TempBasal(2.0, 30))) == resolved  # not resent
            rec = await client.execute(_approve("tbr-1b", clock.t, TempBasal(2.0, 30)))  # re-approved, new id
            assert rec.status is CONFIRMED
            clock.t += 30
            assert pump.take_delivered_u() == pytest.approx(1.0)
            assert sum(isinstance(m, d.SetTbr) for m in pump.executed) == 1
            await client.close()
    run(main())


def test_uncertain_tbr_and_resume_are_reconciled():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock)
            pump.faults.lose_responses = 1
            assert (await client.execute(_approve("tbr-1", clock.t, TempBasal(1.2, 30)))).status is UNCERTAIN
            assert [r.status for r in await client.reconcile()] == [CONFIRMED]
            pump.faults.lose_responses = 1
            assert (await client.execute(_approve("resume-1", clock.t, Resume()))).status is UNCERTAIN
            assert [r.status for r in await client.reconcile()] == [CONFIRMED]
            assert pump.tbr is None
            pump.faults.lose_responses = 1
            assert (await client.execute(_approve("suspend-1", clock.t, Suspend(30)))).status is UNCERTAIN
            (rec,) = await client.reconcile()
            assert rec.status is CONFIRMED and rec.rate_u_per_h == 0.0 and rec.amount_u == 0.0
            assert (await client.status()).active_basal_u_per_h == 0.0
            await client.close()
    run(main())


def test_reconcile_needs_the_pump_and_keeps_the_delivery_uncertain_until_then():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock)
            await pump.set_connectable(False)
            pump.faults.disconnect_after_request = True
            rec = await client.execute(_approve("bolus-1", clock.t, Bolus(1.0)))
            assert rec.status is UNCERTAIN
            client.max_connect_attempts = 2
            with pytest.raises(DeviceError):
                await client.reconcile()
            assert client.pending == (rec,)
            with pytest.raises(DeliveryUncertainError):
                await client.execute(_approve("bolus-2", clock.t, Bolus(1.0)))
            await pump.set_connectable(True)
            assert [r.status for r in await client.reconcile()] == [CONFIRMED]
            assert pump.take_delivered_u() == pytest.approx(1.0)
            await client.close()
    run(main())


def test_refusals_are_failed_and_nothing_unapproved_is_accepted():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock, max_bolus_u=5.0)
            assert (await client.execute(_approve("b-big", clock.t, Bolus(6.0)))).status is FAILED
            assert "PARAMETER_OUT_OF_RANGE" in client.last_reason
            n = len(pump.history)
            assert (await client.execute(_approve("b-odd", clock.t, Bolus(0.125)))).status is FAILED
            assert "not representable" in client.last_reason and len(pump.history) == n  # nothing sent
            assert (await client.execute(_approve("c-x", clock.t, CancelBolus("unknown")))).status is FAILED
            with pytest.raises(TypeError):
                await client.execute(Bolus(1.0))  # type: ignore[arg-type]
            assert pump.executed == []
            await client.close()
    run(main())


def test_occlusion_is_reported_and_stops_delivery():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock, basal_u_per_h=1.2)
            pump.set_occlusion(True)
            st = await client.status()
            assert st.occluded and st.active_basal_u_per_h == 0.0 and not st.suspended
            assert (await client.execute(_approve("b-1", clock.t, Bolus(1.0)))).status is FAILED
            clock.t += 60
            assert pump.take_delivered_u() == 0.0
            pump.set_occlusion(False)
            assert not (await client.status()).occluded
            clock.t += 30
            assert pump.take_delivered_u() == pytest.approx(0.6)
            await client.close()
    run(main())


def test_cancel_a_running_bolus():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump, client = await _setup(air, clock, bolus_speed_u_per_min=1.0, basal_u_per_h=0.0)
            assert (await client.execute(_approve("b-1", clock.t, Bolus(4.0)))).status is CONFIRMED
            clock.t += 1.5
            assert await client.active_bolus_ids() == (1,)
            pump.faults.lose_responses = 1
            assert (await client.execute(_approve("c-1", clock.t, CancelBolus("b-1")))).status is UNCERTAIN
            assert [r.status for r in await client.reconcile()] == [CONFIRMED]
            assert await client.active_bolus_ids() == ()
            clock.t += 10
            assert pump.take_delivered_u() == pytest.approx(1.5)
            await client.close()
    run(main())


def test_emulator_executes_a_retransmitted_e2e_packet_once():
    async def main():
        clock = Clock()
        async with VirtualBleLink() as air:
            pump = await air.add(IdsEmulator(clock=clock))
            packet = append_e2e(d.encode_command(d.SetBolus(d.BolusType.FAST, 1.0)), 7)
            async with BleakClient(pump.address, backend=air.backend(), timeout=5.0) as raw:
                got = []
                await raw.start_notify(uuids.IDD_COMMAND_CP, lambda _c, data: got.append(bytes(data)))
                for _ in range(3):
                    await raw.write_gatt_char(uuids.IDD_COMMAND_CP, packet, response=True)
                async with asyncio.timeout(5):
                    while len(got) < 3:
                        await asyncio.sleep(0.01)
            assert got[0] == got[1] == got[2]  # the same response, repeated
            assert len(pump.executed) == 1 and pump.duplicates == 2
            assert pump.take_delivered_u() == pytest.approx(1.0 + 0.0)
    run(main())


@pytest.mark.hardware
def test_real_pump_status_over_bluez(request):
    """Opt-in: ``pytest --hardware --ble-address AA:BB:... -m hardware``; reads status only (never doses)."""
    address = request.config.getoption("--ble-address")
    if not address:
        pytest.skip("--ble-address not given")

    async def main():
        client = IdsPumpClient(address, connect_timeout_s=20.0)
        try:
            assert isinstance(await client.status(), PumpStatus)
        finally:
            await client.close()

    asyncio.run(main())

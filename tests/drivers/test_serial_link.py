"""The async serial transport and framed link: serial_for_url URLs (loop://, pty paths), timeouts, retransmission,
ACK of unsolicited messages, port failure."""

from __future__ import annotations

import asyncio

import pytest

from drivers.interfaces import DeviceError, DeviceTimeoutError
from drivers.serial.framing import encode_frame
from drivers.serial.link import LinkClosedError, SerialLink, SerialTransport
from drivers.serial.protocol import CgmReading, CgmRecord, CgmStatusRequest, MsgType, RetryPolicy, encode_message
from drivers.serial.pump_client import SerialPumpClient
from hil.emulators.pty import PtyPair
from hil.emulators.serial_pump import SerialPumpEmulator
from safety.commands import Bolus, DeliveryStatus, _approve


def test_transport_over_loop_url_echoes_bytes() -> None:
    async def run() -> bytes:
        received = bytearray()
        got_all = asyncio.Event()

        def on_bytes(data: bytes) -> None:
            received.extend(data)
            if len(received) >= 1000:
                got_all.set()

        transport = SerialTransport("loop://", on_bytes=on_bytes, on_error=lambda exc: None)
        await transport.open()
        try:
            await transport.write(bytes(range(256)) * 3 + bytes(232))
            await asyncio.wait_for(got_all.wait(), 2.0)
        finally:
            await transport.close()
            await transport.close()  # idempotent
        return bytes(received)

    assert asyncio.run(run()) == bytes(range(256)) * 3 + bytes(232)


def test_request_without_answer_times_out_after_all_attempts() -> None:
    async def run() -> SerialLink:
        link = SerialLink("loop://", policy=RetryPolicy(timeout_s=0.05, attempts=3))
        await link.open()
        try:
            with pytest.raises(DeviceTimeoutError, match="after 3 attempts"):
                await link.request(CgmStatusRequest())  # loop:// returns the request itself: not a response
        finally:
            await link.close()
        return link

    link = asyncio.run(run())
    assert link.stats["sent"] == 3 and link.stats["retransmitted"] == 2 and link.stats["timeouts"] == 3


def test_unsolicited_reading_is_queued_and_acked() -> None:
    async def run() -> tuple[object, SerialLink]:
        link = SerialLink("loop://")
        await link.open()
        try:
            record = CgmRecord(5, 25.0, 110.0, None, 0)
            await link._transport.write(encode_frame(encode_message(9, CgmReading(record))))  # type: ignore
            msg = await asyncio.wait_for(link.unsolicited.get(), 2.0)
            await asyncio.sleep(0.05)  # the ACK goes out (and, on loop://, comes back and is ignored)
        finally:
            await link.close()
        return msg, link

    msg, link = asyncio.run(run())
    assert msg.type == MsgType.CGM_READING and msg.seq == 9  # type: ignore[attr-defined]
    assert link.stats["received"] == 2  # the reading and our own ACK echoed back


def test_opening_a_missing_device_is_a_device_error() -> None:
    async def run() -> None:
        link = SerialLink("/dev/does-not-exist-twinloop")
        with pytest.raises(LinkClosedError):
            await link.open()
        with pytest.raises(DeviceError):
            await link.request(CgmStatusRequest())

    asyncio.run(run())


def test_pty_pair_is_raw_and_usable_with_serial_for_url() -> None:
    import os

    import serial

    pair = PtyPair()
    try:
        port = serial.serial_for_url(pair.slave_path, timeout=0.5)
        try:
            os.write(pair.master_fd, b"\x7e\r\n\x03\x11\x13")
            assert port.read(6) == b"\x7e\r\n\x03\x11\x13"  # no line discipline, no flow control characters eaten
        finally:
            port.close()
    finally:
        pair.close()


def test_port_failure_mid_command_leaves_the_delivery_uncertain() -> None:
    async def run() -> None:
        pump = SerialPumpEmulator().start()
        client = SerialPumpClient(pump.port, policy=RetryPolicy(timeout_s=0.3, attempts=3))
        await client.connect()
        try:
            pump.disconnect()  # the command goes out, no answer comes back ...
            task = asyncio.create_task(client.execute(_approve("b", 0.0, Bolus(1.0))))
            await asyncio.sleep(0.1)
            pump.stop()  # ... and then the device disappears (pty closed: the port fails)
            record = await asyncio.wait_for(task, 3.0)
            assert record.status == DeliveryStatus.UNCERTAIN
        finally:
            await client.close()
            pump.stop()

    asyncio.run(run())


def test_request_cancelled_by_an_outer_timeout_leaves_the_link_usable() -> None:
    async def run() -> None:
        with SerialPumpEmulator() as pump:
            client = SerialPumpClient(pump.port, policy=RetryPolicy(timeout_s=0.2, attempts=5))
            await client.connect()
            try:
                pump.delay_responses(0.3)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.status(), 0.05)  # what a runtime's own timeout does
                pump.delay_responses(0.0)
                await asyncio.sleep(0.4)  # the late answer arrives and is ignored
                assert (await client.status()).occluded is False
                assert (await client.execute(_approve("b", 0.0, Bolus(1.0)))).status == DeliveryStatus.CONFIRMED
            finally:
                await client.close()

    asyncio.run(run())

"""The BLE HIL bench: CGMS and IDS emulators on a bumble link in the bench process, the runtime as a separate process
whose real bleak clients reach them through a bumble host over an HCI transport (TCP on localhost).

Same acceptance checks as the serial bench (see test_hil_serial.py), including a real SIGKILL of the runtime and no
double delivery after its restart.
"""

from __future__ import annotations

import pytest

pytest.importorskip("bumble")

from .test_hil_serial import _run  # noqa: E402


def test_ble_bench_short(tmp_path):
    result, run = _run(tmp_path, hours=4.0, speed=480.0, transport="ble")
    assert result["checks"]["basal_within_20_min_of_cgm_loss"]["count"] >= 1
    assert result["checks"]["no_double_delivery"]["pump_bolus_total_u"] > 0
    assert len(run.kills) >= 1 and len(run.runtime_pids) >= 2  # killed and restarted as a new process
    assert any("separate process" in note and "tcp-client:127.0.0.1:" in note for note in result["notes"])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ble_bench_24h(tmp_path):
    result, _ = _run(tmp_path, hours=24.0, speed=360.0, transport="ble")
    assert len(result["kills"]) >= 2

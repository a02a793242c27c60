"""The BLE HIL bench: CGMS and IDS emulators on a bumble link, the real bleak clients through the bumble backend.

The runtime runs in the bench process (the bumble LocalLink does not cross processes); a kill abandons the service
without any shutdown and a new one restarts from the journal. Same acceptance checks as the serial bench.
"""

from __future__ import annotations

import pytest

pytest.importorskip("bumble")

from .test_hil_serial import _run  # noqa: E402


def test_ble_bench_short(tmp_path):
    result = _run(tmp_path, hours=4.0, speed=480.0, transport="ble")
    assert result["checks"]["basal_within_20_min_of_cgm_loss"]["count"] >= 1
    assert "in-process" in result["runtime_process"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ble_bench_24h(tmp_path):
    result = _run(tmp_path, hours=24.0, speed=360.0, transport="ble")
    assert len(result["kills"]) >= 2

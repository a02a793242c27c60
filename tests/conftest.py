"""Shared pytest configuration: opt-in hardware tests and the location of the shared reference data."""

from __future__ import annotations

from pathlib import Path

import os

import pytest
from hypothesis import settings as hypothesis_settings

# CI draws the same examples every run (a red build is then reproducible, not luck); locally examples vary, which
# keeps finding new cases. `HYPOTHESIS_PROFILE=ci` selects the deterministic profile by hand.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev")
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hardware", action="store_true", default=False,
                     help="run tests that need a real BlueZ adapter or serial device")
    parser.addoption("--serial-device", default=None, help="serial device path for hardware tests")
    parser.addoption("--ble-address", default=None, help="BLE address of a real CGM/pump for hardware tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="hardware test: pass --hardware to run")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """Path to ../shared/reference (tests may read it; the package never does). Skips if absent."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("../shared/reference not present")
    return SHARED_REFERENCE

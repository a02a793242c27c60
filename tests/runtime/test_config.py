"""Board configuration: a valid file loads; every error names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinloop.runtime import config as cfgmod
from twinloop.runtime.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "board.example.toml"

VALID = """
[devices.cgm]
transport = "serial"
url = "/dev/ttyUSB0"
[devices.pump]
transport = "ble"
address = "AA:BB:CC:DD:EE:FF"
[therapy]
basal_u_per_h = [["00:00", 0.8], ["06:00", 1.0]]
isf_mg_dl_per_u = 50
carb_ratio_g_per_u = 10
[controller]
name = "bb"
[journal]
path = "journal.db"
[realtime]
priority = 40
cpus = [1]
[control]
socket = "/tmp/x.sock"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "board.toml"
    p.write_text(text)
    return p


def test_valid_config_loads(tmp_path):
    cfg = cfgmod.load(_write(tmp_path, VALID))
    assert cfg.cgm.transport == "serial" and cfg.cgm.url == "/dev/ttyUSB0"
    assert cfg.cgm.protocol == "twinloop-serial"
    assert cfg.pump.transport == "ble" and cfg.pump.protocol == "ids"
    assert cfg.settings.basal_at(7 * 60) == 1.0 and cfg.settings.basal_at(60) == 0.8
    assert cfg.controller == "bb"
    assert cfg.journal_path == tmp_path / "journal.db"
    assert cfg.realtime.priority == 40 and cfg.realtime.cpus == (1,)
    assert cfg.control.mode == 0o660


@pytest.mark.parametrize("spec", ["tcp-client:127.0.0.1:4567", "usb:0", "usb:[driver=rtk]0",
                                  "serial:/dev/ttyACM0,1000000", "hci-socket:0", "android-netsim"])
def test_ble_device_names_its_hci_transport(tmp_path, spec):
    text = VALID.replace('address = "AA:BB:CC:DD:EE:FF"', f'address = "AA:BB:CC:DD:EE:FF"\nhci = "{spec}"')
    cfg = cfgmod.load(_write(tmp_path, text))
    assert cfg.pump.hci == spec
    assert cfg.cgm.hci is None  # the default: bleak's platform backend (BlueZ)


def test_hci_transport_selects_the_bumble_backend(tmp_path):
    from twinloop.runtime import devices
    from twinloop.runtime.clock import AcceleratedClock

    pytest.importorskip("bumble")
    spec = 'hci = "tcp-client:127.0.0.1:4567"'
    text = VALID.replace('address = "AA:BB:CC:DD:EE:FF"', f'address = "AA:BB:CC:DD:EE:FF"\n{spec}')
    cfg = cfgmod.load(_write(tmp_path, text))
    pump = devices.build_pump(cfg.pump, AcceleratedClock(60.0, start_min=0.0, epoch_s=0.0))
    assert pump._conn.backend._hci == "tcp-client:127.0.0.1:4567"  # built lazily: nothing is opened yet


def test_example_config_is_valid():
    cfg = cfgmod.load(EXAMPLE)
    assert cfg.journal_path.name.endswith(".db")


@pytest.mark.parametrize("old,new,field", [
    ('transport = "serial"', 'transport = "usb"', "devices.cgm.transport"),
    ('url = "/dev/ttyUSB0"', 'urll = "/dev/ttyUSB0"', "devices.cgm.urll"),
    ('address = "AA:BB:CC:DD:EE:FF"', 'address = "nope"', "devices.pump.address"),
    ("isf_mg_dl_per_u = 50", "isf_mg_dl_per_u = -5", "therapy.isf_mg_dl_per_u"),
    ('["06:00", 1.0]', '["25:00", 1.0]', "therapy.basal_u_per_h[1]"),
    ('name = "bb"', 'name = "magic"', "controller.name"),
    ("priority = 40", "priority = 150", "realtime.priority"),
    ("cpus = [1]", 'cpus = "1"', "realtime.cpus"),
    ('path = "journal.db"', "", "journal.path"),
    ('socket = "/tmp/x.sock"', 'socket = "/tmp/x.sock"\nmode = "0666"', "control.mode"),
    ('address = "AA:BB:CC:DD:EE:FF"', 'address = "AA:BB:CC:DD:EE:FF"\nhci = "bluetooth:0"', "devices.pump.hci"),
    ('address = "AA:BB:CC:DD:EE:FF"', 'address = "AA:BB:CC:DD:EE:FF"\nhci = "tcp-client:127.0.0.1"',
     "devices.pump.hci"),
    ('address = "AA:BB:CC:DD:EE:FF"', 'address = "AA:BB:CC:DD:EE:FF"\nhci = "tcp-client:h:99999"', "devices.pump.hci"),
    ('address = "AA:BB:CC:DD:EE:FF"', 'address = "AA:BB:CC:DD:EE:FF"\nhci = "usb"', "devices.pump.hci"),
    ('address = "AA:BB:CC:DD:EE:FF"', 'address = "AA:BB:CC:DD:EE:FF"\nhci = ""', "devices.pump.hci"),
    ('url = "/dev/ttyUSB0"', 'url = "/dev/ttyUSB0"\nhci = "usb:0"', "devices.cgm.hci"),
])
def test_errors_name_the_field(tmp_path, old, new, field):
    assert old in VALID
    with pytest.raises(ConfigError) as err:
        cfgmod.load(_write(tmp_path, VALID.replace(old, new, 1)))
    assert err.value.field == field
    assert field in str(err.value)


def test_guardrails_reject_excessive_bolus(tmp_path):
    if cfgmod._validator() is None:
        pytest.skip("safety.guardrails not available")
    text = VALID.replace("carb_ratio_g_per_u = 10", "carb_ratio_g_per_u = 10\nmax_bolus_u = 500")
    with pytest.raises(ConfigError) as err:
        cfgmod.load(_write(tmp_path, text))
    assert err.value.field == "therapy.max_bolus_u"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        cfgmod.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfgmod.load(_write(tmp_path, "[devices\n"))


def test_mpc_controller_options_default_to_the_compiled_solver_and_unknown_ones_are_named(tmp_path):
    from twinloop.runtime.config import ConfigError
    from twinloop.runtime.devices import build_controller

    assert build_controller("mpc").solver.use_compiled is True
    ctl = build_controller("mpc", {"use_compiled": False, "library_dir": str(tmp_path)})
    assert ctl.solver.use_compiled is False and ctl.solver.library_dir == str(tmp_path)
    with pytest.raises(ConfigError, match="controller.options"):
        build_controller("mpc", {"horizon": 3})

"""The board configuration (TOML), validated on load. Every error names the field it is about.

Format (see ``packaging/board.example.toml``)::

    [devices.cgm]                 # and [devices.pump]
    transport = "serial"          # "serial" or "ble"
    url = "/dev/ttyUSB0"          # serial: a device path or any pyserial URL (serial_for_url)
    protocol = "twinloop-serial"  # wire protocol (serial: "twinloop-serial"; ble: "cgms" / "ids")
    # address = "AA:BB:CC:DD:EE:FF"   # ble: the peripheral's address (instead of url)
    # hci = "tcp-client:127.0.0.1:4567" # ble: reach it through this bumble HCI transport (a HIL bench's emulated
    #                                   # radio, "usb:0", "serial:/dev/ttyACM0,1000000"); default: BlueZ via bleak
    timeout_s = 2.0

    [therapy]                     # validated with safety.guardrails.validate_settings
    basal_u_per_h = [["00:00", 0.8], ["06:00", 1.0]]   # a number or [start, value] pairs ("HH:MM" or minute)
    isf_mg_dl_per_u = 50
    carb_ratio_g_per_u = 10
    target_mg_dl = 110            # ... every scalar of safety.settings.TherapySettings by name
    age_group = "adult"
    insulin_peak_min = 75
    insulin_duration_min = 360

    [controller]
    name = "mpc"                  # "mpc", "bb", "pid", "oref"

    [journal]
    path = "/var/lib/twinloop/journal.db"

    [realtime]
    enabled = true
    priority = 50                 # SCHED_FIFO priority, 1..99
    cpus = [1]
    lock_memory = true
    freeze_gc = true
    tick_s = 1.0                  # scheduler period (real seconds): health checks, CGM-loss timer, watchdog

    [loop]
    cgm_interval_min = 5          # expected reading interval
    timer_fallback_min = 1        # readings stopped: decide every this many minutes (CGM-loss fallback on time)
    history_h = 24

    [control]
    socket = "/run/twinloop/control.sock"
    mode = "0660"
    group = "twinloop"            # optional: chgrp the socket to this group
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from safety.settings import AgeGroup, InsulinCurve, Schedule, ScheduleEntry, TherapySettings

TRANSPORTS = ("serial", "ble")
CONTROLLERS = ("mpc", "bb", "pid", "oref")
DEFAULT_PROTOCOL = {("serial", "cgm"): "twinloop-serial", ("serial", "pump"): "twinloop-serial",
                    ("ble", "cgm"): "cgms", ("ble", "pump"): "ids"}
_BLE_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(/[A-Z]+)?$")
HCI_SCHEMES_WITH_HOST_PORT = ("tcp-client", "tcp-server", "ws-client", "ws-server")
HCI_SCHEMES_WITH_PARAMETER = ("serial", "udp", "usb", "pyusb", "file", "unix", "unix-client", "unix-server")
HCI_SCHEMES_PARAMETER_OPTIONAL = ("pty", "vhci", "hci-socket", "android-emulator", "android-netsim")
"""bumble HCI transport schemes (``bumble.transport.open_transport``), by what must follow the colon."""


class ConfigError(ValueError):
    """A configuration problem. ``field`` is the dotted TOML path (``therapy.max_bolus_u``)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"config field '{field_name}': {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class DeviceConfig:
    """One device link. ``url`` for serial, ``address`` for BLE; ``hci`` (BLE only) the bumble HCI transport to
    reach it through (``None``: bleak's platform backend, BlueZ on a board)."""

    role: str
    transport: str
    protocol: str
    url: str | None = None
    address: str | None = None
    timeout_s: float = 2.0
    options: dict = field(default_factory=dict)
    hci: str | None = None


@dataclass(frozen=True)
class RealtimeConfig:
    enabled: bool = True
    priority: int = 50
    cpus: tuple[int, ...] = ()
    lock_memory: bool = True
    freeze_gc: bool = True
    tick_s: float = 1.0


@dataclass(frozen=True)
class LoopConfig:
    cgm_interval_min: float = 5.0
    timer_fallback_min: float = 1.0
    history_h: float = 24.0


@dataclass(frozen=True)
class ControlConfig:
    socket: str = "/run/twinloop/control.sock"
    mode: int = 0o660
    group: str | None = None


@dataclass(frozen=True)
class BoardConfig:
    cgm: DeviceConfig
    pump: DeviceConfig
    settings: TherapySettings
    controller: str
    controller_options: dict
    journal_path: Path
    realtime: RealtimeConfig
    loop: LoopConfig
    control: ControlConfig
    source: Path | None = None


# ------------------------------------------------------------------ helpers

def _table(doc: dict, key: str, path: str, required: bool = True) -> dict:
    value = doc.get(key)
    if value is None:
        if required:
            raise ConfigError(path, "missing table")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a table, got {type(value).__name__}")
    return value


def _check_keys(table: dict, allowed: set[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}" if path else key, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _number(table: dict, key: str, path: str, default: float | None = None, *, positive: bool = False,
            minimum: float | None = None) -> float:
    name = f"{path}.{key}"
    if key not in table:
        if default is None:
            raise ConfigError(name, "missing")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(name, f"must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value!r}")
    return float(value)


def _bool(table: dict, key: str, path: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}", f"must be true or false, got {value!r}")
    return value


def _string(table: dict, key: str, path: str, default: str | None = None) -> str | None:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{path}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _minute_of_day(value: Any, name: str) -> float:
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ConfigError(name, f"time must be HH:MM, got {value!r}")
        return int(m.group(1)) * 60.0 + int(m.group(2))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1440:
        raise ConfigError(name, f"start must be HH:MM or a minute of the day in [0, 1440), got {value!r}")
    return float(value)


def _schedule(table: dict, key: str, path: str) -> Schedule:
    name = f"{path}.{key}"
    if key not in table:
        raise ConfigError(name, "missing")
    value = table[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(name, f"must be > 0, got {value!r}")
        return Schedule.constant(float(value))
    if not isinstance(value, list) or not value:
        raise ConfigError(name, "must be a number or a list of [start, value] pairs")
    entries = []
    for i, pair in enumerate(value):
        item = f"{name}[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(item, f"must be a [start, value] pair, got {pair!r}")
        start = _minute_of_day(pair[0], item)
        v = pair[1]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(item, f"value must be > 0, got {v!r}")
        if entries and start <= entries[-1].start_min_of_day:
            raise ConfigError(item, "starts must be strictly increasing")
        entries.append(ScheduleEntry(start, float(v)))
    if entries[0].start_min_of_day != 0.0:
        raise ConfigError(f"{name}[0]", "the first entry must start at 00:00")
    return Schedule(tuple(entries))


def validate_hci_spec(spec: str, name: str = "hci") -> str:
    """Check a bumble HCI transport spec (``scheme:parameters``) without importing bumble; :class:`ConfigError`
    naming ``name`` otherwise. Whether the transport can be opened is only known at connect time."""
    scheme, _, rest = spec.partition(":")
    rest = re.sub(r"^\[[^\]]*\]", "", rest)  # optional [key=value,...] metadata
    known = HCI_SCHEMES_WITH_HOST_PORT + HCI_SCHEMES_WITH_PARAMETER + HCI_SCHEMES_PARAMETER_OPTIONAL
    if scheme not in known:
        raise ConfigError(name, f"unknown HCI transport {scheme!r} in {spec!r} (one of: {', '.join(known)})")
    if scheme in HCI_SCHEMES_WITH_HOST_PORT:
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(name, f"{scheme} needs host:port (e.g. {scheme}:127.0.0.1:4567), got {spec!r}")
    elif scheme in HCI_SCHEMES_WITH_PARAMETER and not rest:
        raise ConfigError(name, f"{scheme} needs a parameter (e.g. usb:0, serial:/dev/ttyACM0,1000000), got {spec!r}")
    return spec


# ------------------------------------------------------------------ sections

def _device(doc: dict, role: str) -> DeviceConfig:
    path = f"devices.{role}"
    table = _table(_table(doc, "devices", "devices"), role, path)
    _check_keys(table, {"transport", "url", "address", "hci", "protocol", "timeout_s", "baudrate", "options"}, path)
    transport = _string(table, "transport", path)
    if transport not in TRANSPORTS:
        raise ConfigError(f"{path}.transport", f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    url = _string(table, "url", path)
    address = _string(table, "address", path)
    if transport == "serial" and not url:
        raise ConfigError(f"{path}.url", "a serial device needs url (a device path or a pyserial URL)")
    if transport == "ble":
        if not address:
            raise ConfigError(f"{path}.address", "a BLE device needs address (AA:BB:CC:DD:EE:FF)")
        if not _BLE_ADDRESS.match(address):
            raise ConfigError(f"{path}.address", f"not a BLE address: {address!r}")
    hci = _string(table, "hci", path)
    if hci is not None:
        if transport != "ble":
            raise ConfigError(f"{path}.hci", "only a BLE device has an HCI transport")
        validate_hci_spec(hci, f"{path}.hci")
    protocol = _string(table, "protocol", path, DEFAULT_PROTOCOL[(transport, role)])
    timeout_s = _number(table, "timeout_s", path, 2.0, positive=True)
    options = dict(table.get("options", {}))
    if "baudrate" in table:
        baud = table["baudrate"]
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise ConfigError(f"{path}.baudrate", f"must be a positive integer, got {baud!r}")
        options["baudrate"] = baud
    return DeviceConfig(role, transport, protocol, url, address, timeout_s, options, hci)


_THERAPY_SCALARS = ("target_mg_dl", "suspend_threshold_mg_dl", "max_basal_u_per_h", "max_bolus_u", "max_iob_u",
                    "max_daily_u", "weight_kg", "total_daily_insulin_u", "basal_increment_u_per_h",
                    "bolus_increment_u")
_THERAPY_SCHEDULES = ("basal_u_per_h", "isf_mg_dl_per_u", "carb_ratio_g_per_u")


def _validator() -> Callable[[TherapySettings], TherapySettings] | None:
    try:
        from safety.guardrails import validate_settings
    except ImportError:
        return None
    return validate_settings


def parse_therapy(table: dict, path: str = "therapy") -> TherapySettings:
    """Therapy settings from a TOML table, validated with the safety kernel's guardrails."""
    allowed = set(_THERAPY_SCALARS) | set(_THERAPY_SCHEDULES) | {"age_group", "insulin_peak_min",
                                                                 "insulin_duration_min", "utc_offset_min"}
    _check_keys(table, allowed, path)
    kwargs: dict[str, Any] = {name: _schedule(table, name, path) for name in _THERAPY_SCHEDULES}
    defaults = TherapySettings(Schedule.constant(1.0), Schedule.constant(1.0), Schedule.constant(1.0))
    for name in _THERAPY_SCALARS:
        kwargs[name] = _number(table, name, path, getattr(defaults, name), positive=True)
    kwargs["utc_offset_min"] = _number(table, "utc_offset_min", path, 0.0)
    age = table.get("age_group", "adult")
    try:
        kwargs["age_group"] = AgeGroup(age)
    except ValueError:
        raise ConfigError(f"{path}.age_group", f"must be one of {', '.join(a.value for a in AgeGroup)}, got {age!r}")
    kwargs["insulin_curve"] = InsulinCurve(
        peak_min=_number(table, "insulin_peak_min", path, InsulinCurve().peak_min, positive=True),
        duration_min=_number(table, "insulin_duration_min", path, InsulinCurve().duration_min, positive=True))
    settings = TherapySettings(**kwargs)
    validate = _validator()
    if validate is None:
        if settings.suspend_threshold_mg_dl >= settings.target_mg_dl:
            raise ConfigError(f"{path}.suspend_threshold_mg_dl", "must be below target_mg_dl")
        return settings
    try:
        return validate(settings)
    except ValueError as exc:  # safety.guardrails.SettingsError names the setting, the value and the range
        setting = getattr(exc, "setting", None) or getattr(exc, "name", None) or getattr(exc, "field", None)
        if setting in ("insulin_curve.peak_min", "insulin_curve.duration_min"):
            setting = "insulin_" + setting.split(".")[1]
        raise ConfigError(f"{path}.{setting}" if setting else path, str(exc)) from exc


def _realtime(doc: dict) -> RealtimeConfig:
    path = "realtime"
    table = _table(doc, path, path, required=False)
    _check_keys(table, {"enabled", "priority", "cpus", "lock_memory", "freeze_gc", "tick_s"}, path)
    priority = table.get("priority", 50)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 99:
        raise ConfigError(f"{path}.priority", f"must be an integer in 0..99 (0 = no SCHED_FIFO), got {priority!r}")
    cpus = table.get("cpus", [])
    if not isinstance(cpus, list) or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in cpus):
        raise ConfigError(f"{path}.cpus", f"must be a list of CPU numbers, got {cpus!r}")
    return RealtimeConfig(
        enabled=_bool(table, "enabled", path, True), priority=priority, cpus=tuple(cpus),
        lock_memory=_bool(table, "lock_memory", path, True), freeze_gc=_bool(table, "freeze_gc", path, True),
        tick_s=_number(table, "tick_s", path, 1.0, positive=True))


def _loop(doc: dict) -> LoopConfig:
    path = "loop"
    table = _table(doc, path, path, required=False)
    _check_keys(table, {"cgm_interval_min", "timer_fallback_min", "history_h"}, path)
    cfg = LoopConfig(cgm_interval_min=_number(table, "cgm_interval_min", path, 5.0, positive=True),
                     timer_fallback_min=_number(table, "timer_fallback_min", path, 1.0, positive=True),
                     history_h=_number(table, "history_h", path, 24.0, positive=True))
    if cfg.cgm_interval_min > 15.0:
        raise ConfigError(f"{path}.cgm_interval_min", "must be <= 15 min (the supervisor treats older data as stale)")
    if cfg.timer_fallback_min > 5.0:
        raise ConfigError(f"{path}.timer_fallback_min",
                          "must be <= 5 min so the CGM-loss fallback to basal happens on time")
    return cfg


def _control(doc: dict) -> ControlConfig:
    path = "control"
    table = _table(doc, path, path, required=False)
    _check_keys(table, {"socket", "mode", "group"}, path)
    mode = table.get("mode", "0660")
    try:
        mode_int = int(mode, 8) if isinstance(mode, str) else int(mode)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}.mode", f"must be an octal string like \"0660\", got {mode!r}")
    if mode_int & 0o007:
        raise ConfigError(f"{path}.mode", f"must not give access to other users, got {oct(mode_int)}")
    return ControlConfig(socket=_string(table, "socket", path, ControlConfig.socket), mode=mode_int,
                         group=_string(table, "group", path))


def parse(doc: dict, source: Path | None = None) -> BoardConfig:
    """Validate a parsed TOML document; raise :class:`ConfigError` naming the first bad field."""
    _check_keys(doc, {"devices", "therapy", "controller", "journal", "realtime", "loop", "control"}, "")
    _check_keys(_table(doc, "devices", "devices"), {"cgm", "pump"}, "devices")
    cgm, pump = _device(doc, "cgm"), _device(doc, "pump")
    settings = parse_therapy(_table(doc, "therapy", "therapy"))
    ctl = _table(doc, "controller", "controller", required=False)
    _check_keys(ctl, {"name", "options"}, "controller")
    name = ctl.get("name", "mpc")
    if name not in CONTROLLERS:
        raise ConfigError("controller.name", f"must be one of {', '.join(CONTROLLERS)}, got {name!r}")
    options = ctl.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError("controller.options", "must be a table")
    journal = _table(doc, "journal", "journal")
    _check_keys(journal, {"path"}, "journal")
    jpath_text = _string(journal, "path", "journal")
    if not jpath_text:
        raise ConfigError("journal.path", "missing")
    jpath = Path(jpath_text)
    if source is not None and not jpath.is_absolute():
        jpath = source.parent / jpath
    return BoardConfig(cgm=cgm, pump=pump, settings=settings, controller=name, controller_options=dict(options),
                       journal_path=jpath, realtime=_realtime(doc), loop=_loop(doc), control=_control(doc),
                       source=source)


def load(path: str | Path) -> BoardConfig:
    """Read and validate a board configuration file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("<file>", f"{path} not found")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path} is not valid TOML: {exc}")
    return parse(doc, source=path)

"""Building the device links and the controller named in the configuration.

Every import happens inside the function that needs it (bleak and pyserial load only for the transport in use; the
controller's numerical stack only for the algorithm chosen).
"""

from __future__ import annotations

from typing import Any

from twinloop.runtime.clock import Clock
from twinloop.runtime.config import ConfigError, DeviceConfig


def build_controller(name: str, options: dict | None = None) -> Any:
    """The controller by configuration name: ``mpc`` (twin + MPC), or a baseline ``bb``, ``pid``, ``oref``.

    The MPC uses the generated-C solver when it is built for the current problem (``twinloop export-c --build``;
    ``[controller.options] library_dir`` says where, ``use_compiled = false`` forces the Python solver).

    Raises:
        ConfigError: an option the controller does not take.
    """
    options = dict(options or {})
    if name == "mpc":
        from controller.decide import MPCController

        allowed = {"use_compiled", "library_dir"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError("controller.options", f"unknown option(s) {', '.join(unknown)}; "
                                                    f"valid: {', '.join(sorted(allowed))}")
        return MPCController(**{"use_compiled": True, **options})
    from controller.baselines import BASELINES
    try:
        cls = BASELINES[name]
    except KeyError:
        raise ConfigError("controller.name", f"unknown controller {name!r}") from None
    return cls(**options)


def build_cgm(dev: DeviceConfig, clock: Clock, cgm_interval_min: float = 5.0,
              resume_after_sequence: int | None = None, ble_backend: type | None = None) -> Any:
    """A :class:`drivers.interfaces.CgmSource` for the configured transport."""
    # with no reading for a little more than one interval (real seconds on this clock), ask the CGM and back-fill
    poll_s = max(0.2, clock.real_s(cgm_interval_min * 1.1))
    if dev.transport == "serial":
        from drivers.serial.cgm_client import SerialCgmClient
        from drivers.serial.protocol import RetryPolicy
        kwargs: dict[str, Any] = {"baudrate": dev.options.get("baudrate", 115200)}
        return SerialCgmClient(dev.url, poll_interval_s=poll_s, resume_after_sequence=resume_after_sequence,
                               policy=RetryPolicy(timeout_s=min(dev.timeout_s, 0.5), attempts=3), **kwargs)
    if dev.transport == "ble":
        from drivers.ble.cgm_client import CgmsClient
        kwargs = {"connect_timeout_s": dev.timeout_s * 2, "io_timeout_s": dev.timeout_s,
                  "response_timeout_s": dev.timeout_s * 2, **_ble_kwargs(dev)}
        return CgmsClient(dev.address, backend=ble_backend or _hci_backend(dev), clock=clock.now_min,
                          resume_after_sequence=resume_after_sequence, **kwargs)
    raise ConfigError("devices.cgm.transport", f"unsupported transport {dev.transport!r}")


def build_pump(dev: DeviceConfig, clock: Clock, ble_backend: type | None = None) -> Any:
    """A :class:`drivers.interfaces.PumpLink` for the configured transport."""
    if dev.transport == "serial":
        from drivers.serial.pump_client import SerialPumpClient
        from drivers.serial.protocol import RetryPolicy
        return SerialPumpClient(dev.url, baudrate=dev.options.get("baudrate", 115200),
                                policy=RetryPolicy(timeout_s=min(dev.timeout_s, 0.5), attempts=3))
    if dev.transport == "ble":
        from drivers.ble.pump_client import IdsPumpClient
        kwargs = {"connect_timeout_s": dev.timeout_s * 2, "io_timeout_s": dev.timeout_s,
                  "response_timeout_s": dev.timeout_s, **_ble_kwargs(dev)}
        return IdsPumpClient(dev.address, backend=ble_backend or _hci_backend(dev), clock=clock.now_min, **kwargs)
    raise ConfigError("devices.pump.transport", f"unsupported transport {dev.transport!r}")


def _hci_backend(dev: DeviceConfig) -> type | None:
    """The bleak backend for ``devices.X.hci`` (bumble over that HCI transport); ``None``: bleak's platform default.
    Devices naming the same transport share one bumble host (one controller, several connections)."""
    if dev.hci is None:
        return None
    from drivers.ble.bumble_backend import bumble_hci_backend
    return bumble_hci_backend(dev.hci)


def _ble_kwargs(dev: DeviceConfig) -> dict:
    """Extra client arguments from ``[devices.X.options]`` (e.g. ``session_start_min``, ``backoff_s``)."""
    kwargs = {k: v for k, v in dev.options.items() if k not in ("baudrate",)}
    if "backoff_s" in kwargs:
        kwargs["backoff_s"] = tuple(kwargs["backoff_s"])
    return kwargs

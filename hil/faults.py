"""Fault injection at the device interfaces, from a schedule in simulated minutes.

Kinds (every one is injected at least once by :func:`default_schedule`):

==================  ===========================================================================================
``cgm_dropout``     the sensor produces nothing for ``duration_min`` (the runtime must fall back to basal)
``cgm_lost``        readings are measured but their packets never arrive (the driver must back-fill)
``corruption``      bytes on both links are corrupted with probability ``probability`` for ``duration_min``
``disconnect``      both links go silent (cable pulled / radio link lost) for ``duration_min``
``pump_delay``      every pump response is ``delay_s`` real seconds late for ``duration_min``
``pump_lost``       the pump executes the next command but its answers are lost (delivery uncertain)
``occlusion``       the pump reports an occlusion and refuses insulin for ``duration_min``
``kill``            SIGKILL of the runtime process, restarted ``restart_after_min`` later
==================  ===========================================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("cgm_dropout", "cgm_lost", "corruption", "disconnect", "pump_delay", "pump_lost", "occlusion", "kill")


@dataclass
class Fault:
    """One injected fault. ``t_min``/``duration_min`` are simulated minutes."""

    kind: str
    t_min: float
    duration_min: float = 0.0
    params: dict = field(default_factory=dict)
    injected_mono: float | None = None
    cleared_mono: float | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def end_min(self) -> float:
        return self.t_min + self.duration_min

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SEQUENCE = (  # kind, duration (sim min), quiet time after it (sim min), params
    ("cgm_lost", 10.0, 5.0, {}),
    ("pump_lost", 0.0, 10.0, {}),
    ("corruption", 15.0, 5.0, {"probability": 0.01}),
    ("cgm_dropout", 30.0, 10.0, {}),
    ("kill", 0.0, 55.0, {"restart_after_min": 5.0, "mid_command": True}),
    ("occlusion", 15.0, 5.0, {}),
    ("pump_delay", 10.0, 5.0, {"delay_s": 0.25}),
    ("disconnect", 10.0, 20.0, {}),
)


def default_schedule(hours: float, start_min: float = 30.0) -> list[Fault]:
    """Every fault kind at least once, one after the other from ``start_min`` (the loop settles first), never two at
    a time, each followed by quiet time (a killed runtime needs a few seconds of real time to restart, which is many
    simulated minutes at high speed); long runs go through the sequence again until the last hour."""
    span = hours * 60.0
    needed = start_min + sum(d + q for _, d, q, _ in SEQUENCE)
    if span < needed:
        raise ValueError(f"a fault schedule needs at least {needed / 60:.1f} simulated hours, got {hours}")
    faults: list[Fault] = []
    t = start_min
    while True:
        for kind, duration, quiet, params in SEQUENCE:
            if t + duration + quiet > span - 10.0 and len(faults) >= len(SEQUENCE):
                return faults
            faults.append(Fault(kind, t + 1.0, duration, dict(params)))  # just after a sample time
            t += duration + quiet
        t += 60.0  # an hour of normal operation between rounds

"""The virtual patient behind the bench: one UVA/Padova subject stepped one simulated minute at a time.

The bench calls :meth:`VirtualPatient.step` once per simulated minute with the insulin the (emulated) pump delivered
during that minute; every sample time it asks :meth:`VirtualPatient.cgm_reading` for the sensor value (the
scenario's sensor model: noise, lag, compression lows, dropouts -> NaN). Meals come from the scenario realization;
announcements are handed to the bench (which sends them to the runtime's control socket, like a person would).
Numbers only: no clock, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Announcement:
    t_min: float
    carbs_g: float


@dataclass
class PatientTrace:
    t_min: list[float] = field(default_factory=list)
    bg_mg_dl: list[float] = field(default_factory=list)
    cgm_t_min: list[float] = field(default_factory=list)
    cgm_mg_dl: list[float] = field(default_factory=list)
    insulin_u: list[float] = field(default_factory=list)
    cho_g: list[float] = field(default_factory=list)


class VirtualPatient:
    """One subject under one scenario.

    Args:
        subject: reference or generated subject name (``adult#001``).
        scenario: bundled scenario name or path (``faults-1day``).
        seed: realization seed (default: the scenario's).
        sensor_dropouts: honour the scenario's own sensor dropouts (the bench injects its own at the interface).
    """

    def __init__(self, subject: str = "adult#001", scenario: str = "faults-1day", seed: int | None = None,
                 sensor_dropouts: bool = True) -> None:
        from patient_model.cohort import load_subject
        from patient_model.scenarios import load_scenario, realize
        from patient_model.uva_padova import CohortSimulator, UvaPadovaParams

        self.subject = load_subject(subject)
        self.scenario = load_scenario(scenario)
        self.realization = realize(self.scenario, [self.subject.name], seed)
        self.sim = CohortSimulator(UvaPadovaParams.from_subjects([self.subject]))
        self.cho = self.realization.cho_schedule()[:, 0]
        self.cgm = self.realization.make_cgm()
        self.sensor_dropouts = sensor_dropouts
        self.sample_time_min = float(self.scenario.sensor.sample_time_min)
        self.t_min = 0
        self.trace = PatientTrace()
        self.announcements = tuple(Announcement(m.announced_at_min, m.announced_carbs_g)
                                   for m in self.realization.announcements(0))

    @property
    def basal_u_per_h(self) -> float:
        return float(self.subject.basal_u_per_h)

    @property
    def duration_min(self) -> int:
        return int(len(self.cho))

    @property
    def bg_mg_dl(self) -> float:
        return float(self.sim.bg_mg_dl[0])

    def step(self, insulin_u: float) -> None:
        """Advance one minute with ``insulin_u`` units delivered over it (and the scenario's carbohydrate)."""
        k = self.t_min
        cho = float(self.cho[k]) if k < len(self.cho) else 0.0
        self.sim.step(np.array([cho]), np.array([max(0.0, insulin_u)]))
        self.t_min += 1
        tr = self.trace
        tr.t_min.append(float(self.t_min))
        tr.bg_mg_dl.append(self.bg_mg_dl)
        tr.insulin_u.append(float(insulin_u))
        tr.cho_g.append(cho)

    def is_sample_time(self) -> bool:
        return self.t_min % int(self.sample_time_min) == 0

    def cgm_reading(self) -> float:
        """The sensor value now (NaN in a scenario dropout when ``sensor_dropouts``)."""
        value = float(self.cgm.measure(float(self.t_min), self.sim.gsub_mg_dl)[0])
        if not math.isfinite(value) and not self.sensor_dropouts:
            value = float(self.sim.gsub_mg_dl[0])
        self.trace.cgm_t_min.append(float(self.t_min))
        self.trace.cgm_mg_dl.append(value)
        return value

    def announcements_between(self, t0: float, t1: float) -> list[Announcement]:
        return [a for a in self.announcements if t0 <= a.t_min < t1 and a.carbs_g > 0]

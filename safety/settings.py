"""Therapy settings: schedules by time of day, targets and the hard limits every command must respect.

Validation against the guardrails lives in :mod:`safety.guardrails`; an instance of :class:`TherapySettings` that
came through :func:`safety.guardrails.validate_settings` is known to be inside them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from safety.units import minute_of_day


class AgeGroup(enum.Enum):
    """Age groups with their own hard limits (AndroidAPS-style)."""

    CHILD = "child"
    TEEN = "teen"
    ADULT = "adult"
    RESISTANT_ADULT = "resistant_adult"


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """``value`` applies from ``start_min_of_day`` (0..1439) until the next entry's start."""

    start_min_of_day: float
    value: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """A daily step schedule. The first entry must start at minute 0; entries are strictly increasing in time."""

    entries: tuple[ScheduleEntry, ...]

    @classmethod
    def constant(cls, value: float) -> "Schedule":
        return cls((ScheduleEntry(0.0, float(value)),))

    def at(self, t_min: float, utc_offset_min: float = 0.0) -> float:
        """Value in force at absolute time ``t_min`` (minutes)."""
        if len(self.entries) == 1:
            return self.entries[0].value
        mod = minute_of_day(t_min, utc_offset_min)
        value = self.entries[0].value
        for entry in self.entries:
            if entry.start_min_of_day <= mod:
                value = entry.value
            else:
                break
        return value

    def at_array(self, t_min: "np.ndarray", utc_offset_min: float = 0.0) -> "np.ndarray":
        """Values in force at each absolute time of ``t_min`` (vectorized :meth:`at`)."""
        import numpy as np

        t = np.asarray(t_min, dtype=float)
        if len(self.entries) == 1:
            return np.full(t.shape, self.entries[0].value)
        starts = np.array([e.start_min_of_day for e in self.entries])
        values = np.array([e.value for e in self.entries])
        mod = np.mod(t + utc_offset_min, 1440.0)
        return values[np.maximum(np.searchsorted(starts, mod, side="right") - 1, 0)]

    @property
    def max_value(self) -> float:
        return max(e.value for e in self.entries)

    @property
    def min_value(self) -> float:
        return min(e.value for e in self.entries)

    def daily_total(self) -> float:
        """Integral over one day of a per-hour quantity (e.g. U/h -> U/day)."""
        total = 0.0
        for i, entry in enumerate(self.entries):
            end = self.entries[i + 1].start_min_of_day if i + 1 < len(self.entries) else 1440.0
            total += entry.value * (end - entry.start_min_of_day) / 60.0
        return total


@dataclass(frozen=True, slots=True)
class InsulinCurve:
    """Exponential insulin action curve (oref0/Loop): peak time and duration of action, minutes."""

    peak_min: float = 75.0
    duration_min: float = 360.0


@dataclass(frozen=True, slots=True)
class TherapySettings:
    """Everything the clinic programs into the system. Units are in the names.

    Attributes:
        basal_u_per_h: scheduled basal rate.
        isf_mg_dl_per_u: insulin sensitivity factor (correction factor).
        carb_ratio_g_per_u: grams of carbohydrate covered by one unit.
        target_mg_dl: correction target (the middle of the correction range).
        suspend_threshold_mg_dl: below this (measured or predicted) delivery stops.
        max_basal_u_per_h: highest temporary basal the controller may set.
        max_bolus_u: largest single bolus.
        max_iob_u: largest insulin on board automatic dosing may build.
        max_daily_u: largest total delivery over the last 24 h.
        insulin_curve: insulin action curve.
        age_group: selects the age-group hard limits.
        weight_kg: body weight (for the twin's volumes).
        total_daily_insulin_u: typical total daily dose (for the twin's priors).
        basal_increment_u_per_h: pump basal resolution (rates are rounded down to it).
        bolus_increment_u: pump bolus resolution (boluses are rounded down to it).
        utc_offset_min: local time offset used to read the schedules.
    """

    basal_u_per_h: Schedule
    isf_mg_dl_per_u: Schedule
    carb_ratio_g_per_u: Schedule
    target_mg_dl: float = 110.0
    suspend_threshold_mg_dl: float = 70.0
    max_basal_u_per_h: float = 3.0
    max_bolus_u: float = 10.0
    max_iob_u: float = 8.0
    max_daily_u: float = 120.0
    insulin_curve: InsulinCurve = InsulinCurve()
    age_group: AgeGroup = AgeGroup.ADULT
    weight_kg: float = 70.0
    total_daily_insulin_u: float = 40.0
    basal_increment_u_per_h: float = 0.05
    bolus_increment_u: float = 0.05
    utc_offset_min: float = 0.0

    def basal_at(self, t_min: float) -> float:
        """Scheduled basal (U/h) at absolute time ``t_min``."""
        return self.basal_u_per_h.at(t_min, self.utc_offset_min)

    def isf_at(self, t_min: float) -> float:
        """Insulin sensitivity (mg/dL per U) at ``t_min``."""
        return self.isf_mg_dl_per_u.at(t_min, self.utc_offset_min)

    def carb_ratio_at(self, t_min: float) -> float:
        """Carb ratio (g/U) at ``t_min``."""
        return self.carb_ratio_g_per_u.at(t_min, self.utc_offset_min)

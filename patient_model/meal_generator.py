"""Per-subject realization of a scenario: meals (fixed and random), carb-counting error, device faults.

Every subject draws from its own generators, derived from ``(seed, subject_key, stream)`` only
(:func:`patient_model.sensor.subject_rng`), with a fixed number of draws per (day, meal), so a subject gets
the same meals whether it is realized alone or in a cohort, and whatever the other subjects are.

Streams: 1 = fixed meals (2 draws per meal per calendar day: counting error z, announcement offset u),
2 = random meals (5 uniforms per slot per calendar day: occurrence, time, carbs, counting error, offset),
3 = faults (1 uniform per fault window: occurrence).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.special import ndtr, ndtri

from .scenario_schema import (CarbCountingError, FaultWindow, OffsetRange, Scenario, TruncatedNormal)
from .sensor import CompressionLow, SensorFaults, subject_rng

__all__ = ["MealEvent", "SubjectRealization", "realize_subject", "truncated_normal_from_uniform",
           "STREAM_FIXED_MEALS", "STREAM_RANDOM_MEALS", "STREAM_FAULTS"]

STREAM_FIXED_MEALS = 1
STREAM_RANDOM_MEALS = 2
STREAM_FAULTS = 3


@dataclass(frozen=True)
class MealEvent:
    """One meal of one subject.

    ``t_min``: start of eating (simulation min); ``carbs_g`` eaten evenly over ``duration_min``.
    ``announced``: whether the controller is told; ``announced_carbs_g``: the carbs it is told (with the
    counting error; 0 if not announced); ``announced_at_min``: when it is told (simulation min, >= 0;
    equals ``t_min`` if not announced). ``label``: the meal's label from the scenario (may be empty).
    """

    t_min: float
    carbs_g: float
    duration_min: float
    announced: bool
    announced_carbs_g: float
    announced_at_min: float
    label: str = ""


@dataclass(frozen=True)
class SubjectRealization:
    """What happens to one subject: meals sorted by ``t_min``, sensor faults, pump occlusion windows
    ``(start_min, end_min)`` (end exclusive, simulation minutes)."""

    subject_key: str
    meals: tuple[MealEvent, ...]
    sensor_faults: SensorFaults
    occlusions: tuple[tuple[float, float], ...]


def truncated_normal_from_uniform(u: float, dist: TruncatedNormal) -> float:
    """Inverse-CDF sample of ``dist`` for a uniform ``u`` in [0, 1); always within [lo, hi]."""
    if dist.sd <= 0.0 or dist.hi <= dist.lo:
        return float(min(max(dist.mean, dist.lo), dist.hi))
    a = float(ndtr((dist.lo - dist.mean) / dist.sd))
    b = float(ndtr((dist.hi - dist.mean) / dist.sd))
    if b - a < 1e-12:  # truncation far in a tail: fall back to uniform on the interval
        x = dist.lo + u * (dist.hi - dist.lo)
    else:
        x = dist.mean + dist.sd * float(ndtri(a + u * (b - a)))
    return float(min(max(x, dist.lo), dist.hi))


def _counted(carbs_g: float, z: float, cce: CarbCountingError) -> float:
    return max(0.0, carbs_g * (1.0 + cce.bias_pct / 100.0 + cce.sd_pct / 100.0 * z))


def _offset(u: float, r: OffsetRange) -> float:
    return r.lo_min + u * (r.hi_min - r.lo_min)


def _announce_time(t_min: float, offset_min: float) -> float:
    return max(0.0, float(round(t_min + offset_min)))


def _fixed_meals(sc: Scenario, key: str, seed: int) -> list[MealEvent]:
    rng = subject_rng(seed, key, STREAM_FIXED_MEALS)
    out: list[MealEvent] = []
    for day in sc.calendar_days():
        for m in sc.meals:
            z, u = float(rng.standard_normal()), float(rng.random())
            if m.days is not None and day not in m.days:
                continue
            t = sc.t_min_of(day, m.time_min_of_day)
            if not 0 <= t < sc.duration_min:
                continue
            if m.announced:
                counted = m.announced_carbs_g if m.announced_carbs_g is not None else _counted(
                    m.carbs_g, z, sc.carb_counting_error)
                out.append(MealEvent(float(t), m.carbs_g, m.duration_min, True, counted,
                                     _announce_time(t, _offset(u, m.announce_offset)), m.label))
            else:
                out.append(MealEvent(float(t), m.carbs_g, m.duration_min, False, 0.0, float(t), m.label))
    return out


def _random_meals(sc: Scenario, key: str, seed: int) -> list[MealEvent]:
    rm = sc.random_meals
    if rm is None:
        return []
    rng = subject_rng(seed, key, STREAM_RANDOM_MEALS)
    out: list[MealEvent] = []
    for day in sc.calendar_days():
        for s in rm.slots:
            u_occ, u_time, u_carbs, u_count, u_off = (float(x) for x in rng.random(5))
            if rm.days is not None and day not in rm.days:
                continue
            if u_occ >= s.probability:
                continue
            tod = round(truncated_normal_from_uniform(u_time, s.time_min_of_day))
            t = sc.t_min_of(day, tod)
            if not 0 <= t < sc.duration_min:
                continue
            carbs = truncated_normal_from_uniform(u_carbs, s.carbs_g)
            if s.announced:
                z = float(ndtri(min(max(u_count, 1e-12), 1 - 1e-12)))
                out.append(MealEvent(float(t), carbs, s.duration_min, True, _counted(carbs, z, sc.carb_counting_error),
                                     _announce_time(t, _offset(u_off, s.announce_offset)), s.label))
            else:
                out.append(MealEvent(float(t), carbs, s.duration_min, False, 0.0, float(t), s.label))
    return out


def _window_min(sc: Scenario, w: FaultWindow) -> tuple[float, float]:
    start = float(sc.t_min_of(w.day, w.time_min_of_day))
    return start, start + w.duration_min


def _faults(sc: Scenario, key: str, seed: int) -> tuple[SensorFaults, tuple[tuple[float, float], ...]]:
    rng = subject_rng(seed, key, STREAM_FAULTS)
    dropouts = []
    for w in sc.sensor.dropouts:
        if float(rng.random()) < w.probability:
            dropouts.append(_window_min(sc, w))
    lows = []
    for c in sc.sensor.compression_lows:
        if float(rng.random()) < c.window.probability:
            a, b = _window_min(sc, c.window)
            lows.append(CompressionLow(a, b, c.depth_mg_dl, c.ramp_min))
    occlusions = []
    for w in sc.pump.occlusions:
        if float(rng.random()) < w.probability:
            occlusions.append(_window_min(sc, w))
    faults = SensorFaults(dropouts=tuple(dropouts), compression_lows=tuple(lows),
                          drift_pct_per_day=sc.sensor.drift_pct_per_day,
                          calibration_gain=sc.sensor.calibration_gain,
                          calibration_offset_mg_dl=sc.sensor.calibration_offset_mg_dl)
    return faults, tuple(occlusions)


def realize_subject(sc: Scenario, subject_key: str, seed: int) -> SubjectRealization:
    """The meals and faults of one subject; depends only on ``(sc, subject_key, seed)``."""
    meals = _fixed_meals(sc, subject_key, seed) + _random_meals(sc, subject_key, seed)
    meals.sort(key=lambda m: (m.t_min, m.label))
    faults, occlusions = _faults(sc, subject_key, seed)
    return SubjectRealization(subject_key=subject_key, meals=tuple(meals), sensor_faults=faults,
                              occlusions=occlusions)

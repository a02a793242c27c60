"""Settings guardrails: ranges from the FDA-cleared Tidepool Loop and AndroidAPS-style age-group hard limits.

:func:`validate_settings` returns the settings unchanged or raises :class:`SettingsError` naming the setting, its
value and its allowed range (the first violation); :func:`settings_violations` lists every violation.

Ranges (closed intervals; mg/dL, U, U/h, g/U, minutes):

===========================  ======================================  ==========================================
setting                      range                                   source
===========================  ======================================  ==========================================
suspend_threshold_mg_dl      67 .. 110                               Loop guardrail
target_mg_dl                 87 .. 180, and >= suspend threshold     Loop guardrail (correction range)
isf schedule values          10 .. 500                               Loop guardrail
carb ratio schedule values   2 .. 150                                Loop guardrail
basal schedule values        0 .. 30, and <= max_basal_u_per_h       Loop guardrail
max_basal_u_per_h            0 .. age limit (2/5/10/12)              AndroidAPS hard limits
max_bolus_u                  0 .. min(30, age limit 5/10/17/25)      Loop (<= 30 U) and AndroidAPS
max_iob_u                    0 .. age limit (7/13/22/30)             AndroidAPS (with automatic boluses)
max_daily_u                  scheduled daily basal .. 300            project choice (no reference limit)
insulin_curve.peak_min       35 .. 120                               oref0 custom peak range
insulin_curve.duration_min   300 .. 480                              oref0: >= 5 h with exponential curves
weight_kg                    5 .. 300                                project choice
total_daily_insulin_u        1 .. 300                                project choice
basal_increment_u_per_h      0.001 .. 1                              pump resolutions
bolus_increment_u            0.001 .. 1                              pump resolutions
utc_offset_min               -720 .. 840                             UTC-12 .. UTC+14
schedule starts              first 0; strictly increasing; < 1440     structure
===========================  ======================================  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from safety.errors import SettingsError
from safety.settings import AgeGroup, Schedule, TherapySettings

__all__ = ["SettingsError", "HardLimits", "hard_limits", "validate_settings", "settings_violations", "RANGES"]


@dataclass(frozen=True, slots=True)
class HardLimits:
    """Age-group hard limits no setting may exceed."""

    max_bolus_u: float
    max_iob_u: float
    max_basal_u_per_h: float
    max_daily_u: float = 300.0


_HARD_LIMITS = {
    AgeGroup.CHILD: HardLimits(max_bolus_u=5.0, max_iob_u=7.0, max_basal_u_per_h=2.0),
    AgeGroup.TEEN: HardLimits(max_bolus_u=10.0, max_iob_u=13.0, max_basal_u_per_h=5.0),
    AgeGroup.ADULT: HardLimits(max_bolus_u=17.0, max_iob_u=22.0, max_basal_u_per_h=10.0),
    AgeGroup.RESISTANT_ADULT: HardLimits(max_bolus_u=25.0, max_iob_u=30.0, max_basal_u_per_h=12.0),
}

RANGES: dict[str, tuple[float, float]] = {
    "suspend_threshold_mg_dl": (67.0, 110.0),
    "target_mg_dl": (87.0, 180.0),
    "isf_mg_dl_per_u": (10.0, 500.0),
    "carb_ratio_g_per_u": (2.0, 150.0),
    "basal_u_per_h": (0.0, 30.0),
    "max_bolus_u": (0.0, 30.0),
    "insulin_curve.peak_min": (35.0, 120.0),
    "insulin_curve.duration_min": (300.0, 480.0),
    "weight_kg": (5.0, 300.0),
    "total_daily_insulin_u": (1.0, 300.0),
    "basal_increment_u_per_h": (0.001, 1.0),
    "bolus_increment_u": (0.001, 1.0),
    "utc_offset_min": (-720.0, 840.0),
}
"""Age-independent ranges (closed); age-dependent upper limits come from :func:`hard_limits`."""


def hard_limits(age_group: AgeGroup) -> HardLimits:
    """Hard limits of an age group (AndroidAPS: child / teen / adult / resistant adult)."""
    return _HARD_LIMITS[AgeGroup(age_group)]


def _check(errors: list[SettingsError], name: str, value: object, allowed: tuple[float, float], note: str = "",
           low_open: bool = False) -> None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        errors.append(SettingsError(name, value, allowed, "not a number"))
        return
    lo, hi = allowed
    inside = math.isfinite(v) and (v > lo if low_open else v >= lo) and v <= hi
    if not inside:
        errors.append(SettingsError(name, value, allowed, note or ("must be > low end" if low_open else "")))


def _check_schedule(errors: list[SettingsError], name: str, schedule: Schedule, allowed: tuple[float, float]) -> None:
    entries = getattr(schedule, "entries", ())
    if not entries:
        errors.append(SettingsError(f"{name}.entries", len(entries), (1.0, 288.0), "schedule is empty"))
        return
    if entries[0].start_min_of_day != 0.0:
        errors.append(SettingsError(f"{name}.entries[0].start_min_of_day", entries[0].start_min_of_day, (0.0, 0.0),
                                    "first entry must start at minute 0"))
    previous = -1.0
    for i, entry in enumerate(entries):
        start = entry.start_min_of_day
        if not (isinstance(start, (int, float)) and math.isfinite(start) and previous < start < 1440.0):
            errors.append(SettingsError(f"{name}.entries[{i}].start_min_of_day", start, (max(previous, 0.0), 1439.0),
                                        "starts must be strictly increasing within the day"))
        else:
            previous = start
        _check(errors, f"{name}.entries[{i}].value", entry.value, allowed)


def settings_violations(settings: TherapySettings) -> list[SettingsError]:
    """Every guardrail violation of ``settings`` (empty list when all settings are inside their guardrails)."""
    errors: list[SettingsError] = []
    try:
        limits = hard_limits(settings.age_group)
    except (ValueError, KeyError):
        errors.append(SettingsError("age_group", settings.age_group, (0.0, 0.0), "unknown age group"))
        limits = _HARD_LIMITS[AgeGroup.CHILD]  # strictest, so later checks still run
    _check(errors, "suspend_threshold_mg_dl", settings.suspend_threshold_mg_dl, RANGES["suspend_threshold_mg_dl"])
    lo_t, hi_t = RANGES["target_mg_dl"]
    _check(errors, "target_mg_dl", settings.target_mg_dl, (lo_t, hi_t))
    if settings.target_mg_dl < settings.suspend_threshold_mg_dl:
        errors.append(SettingsError("target_mg_dl", settings.target_mg_dl, (settings.suspend_threshold_mg_dl, hi_t),
                                    "target must not be below the suspend threshold"))
    _check_schedule(errors, "isf_mg_dl_per_u", settings.isf_mg_dl_per_u, RANGES["isf_mg_dl_per_u"])
    _check_schedule(errors, "carb_ratio_g_per_u", settings.carb_ratio_g_per_u, RANGES["carb_ratio_g_per_u"])
    _check(errors, "max_basal_u_per_h", settings.max_basal_u_per_h, (0.0, limits.max_basal_u_per_h),
           f"{settings.age_group} hard limit", low_open=True)
    basal_hi = min(RANGES["basal_u_per_h"][1], float(settings.max_basal_u_per_h)
                   if math.isfinite(settings.max_basal_u_per_h) else 0.0)
    _check_schedule(errors, "basal_u_per_h", settings.basal_u_per_h, (0.0, max(basal_hi, 0.0)))
    _check(errors, "max_bolus_u", settings.max_bolus_u, (0.0, min(RANGES["max_bolus_u"][1], limits.max_bolus_u)),
           f"{settings.age_group} hard limit", low_open=True)
    _check(errors, "max_iob_u", settings.max_iob_u, (0.0, limits.max_iob_u), f"{settings.age_group} hard limit")
    try:
        daily_basal = settings.basal_u_per_h.daily_total()
    except Exception:  # noqa: BLE001 - a broken schedule was reported above
        daily_basal = 0.0
    _check(errors, "max_daily_u", settings.max_daily_u, (daily_basal if math.isfinite(daily_basal) else 0.0,
                                                        limits.max_daily_u),
           "must cover the scheduled daily basal", low_open=daily_basal <= 0.0)
    curve = settings.insulin_curve
    _check(errors, "insulin_curve.peak_min", curve.peak_min, RANGES["insulin_curve.peak_min"])
    _check(errors, "insulin_curve.duration_min", curve.duration_min, RANGES["insulin_curve.duration_min"])
    for name in ("weight_kg", "total_daily_insulin_u", "basal_increment_u_per_h", "bolus_increment_u",
                 "utc_offset_min"):
        _check(errors, name, getattr(settings, name), RANGES[name])
    return errors


@lru_cache(maxsize=256)
def _cached_violations(settings: TherapySettings) -> tuple[SettingsError, ...]:
    return tuple(settings_violations(settings))


def validate_settings(settings: TherapySettings) -> TherapySettings:
    """Return ``settings`` unchanged if every setting is inside its guardrail; else raise the first
    :class:`SettingsError` (use :func:`settings_violations` for all of them)."""
    try:
        errors = _cached_violations(settings)
    except TypeError:  # unhashable (e.g. a list smuggled into a schedule): validate without the cache
        errors = tuple(settings_violations(settings))
    if errors:
        first = errors[0]
        raise SettingsError(first.setting, first.value, first.allowed, first.note)
    return settings

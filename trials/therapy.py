"""Therapy settings of a virtual subject, built from its clinic data only (the information barrier).

The controller sees what the clinic programmed into the pump: the subject's basal rate, correction factor (ISF),
carb ratio and total daily insulin, its weight, and limits for its age group. It never sees the S2008 parameters.
"""

from __future__ import annotations

from safety.guardrails import RANGES, hard_limits, validate_settings
from safety.settings import AgeGroup, InsulinCurve, Schedule, TherapySettings

AGE_GROUPS = {"child": AgeGroup.CHILD, "adolescent": AgeGroup.TEEN, "adult": AgeGroup.ADULT}

TARGET_MG_DL = {AgeGroup.CHILD: 120.0, AgeGroup.TEEN: 110.0, AgeGroup.ADULT: 110.0}
PEAK_MIN = {AgeGroup.CHILD: 65.0, AgeGroup.TEEN: 75.0, AgeGroup.ADULT: 75.0}
SUSPEND_THRESHOLD_MG_DL = 70.0
INSULIN_DURATION_MIN = 360.0


def _clip(name: str, value: float) -> float:
    """A clinic value brought inside its guardrail (e.g. an ISF of 8.8 is programmed as 10, the lowest a
    Loop-guardrailed pump accepts; that errs on the side of less insulin)."""
    lo, hi = RANGES[name]
    return min(max(float(value), lo), hi)


class TherapySettingsError(ValueError):
    """A subject's clinic data cannot make valid therapy settings (e.g. a non-positive ratio)."""


def therapy_settings(subject) -> TherapySettings:
    """Therapy settings from a :class:`patient_model.cohort.Subject`'s clinic data (basal, CF, CR, TDI, weight,
    group), with max basal/bolus/IOB at the age group's hard limits (:func:`safety.guardrails.hard_limits`),
    checked by :func:`safety.guardrails.validate_settings`; ISF and CR are brought inside their guardrails. Raises :class:`TherapySettingsError` when the
    clinic data cannot make valid settings."""
    group = AGE_GROUPS.get(subject.group)
    if group is None:
        raise TherapySettingsError(f"{subject.name}: unknown group {subject.group!r}")
    values = {"basal_u_per_h": subject.basal_u_per_h, "cf_mg_dl_per_u": subject.cf_mg_dl_per_u,
              "cr_g_per_u": subject.cr_g_per_u, "tdi_u": subject.tdi_u, "weight_kg": subject.weight_kg}
    for key, value in values.items():
        if not (value > 0.0):
            raise TherapySettingsError(f"{subject.name}: {key} must be > 0, got {value!r}")
    limits = hard_limits(group)
    settings = TherapySettings(
        basal_u_per_h=Schedule.constant(round(subject.basal_u_per_h, 4)),
        isf_mg_dl_per_u=Schedule.constant(_clip("isf_mg_dl_per_u", subject.cf_mg_dl_per_u)),
        carb_ratio_g_per_u=Schedule.constant(_clip("carb_ratio_g_per_u", subject.cr_g_per_u)),
        target_mg_dl=TARGET_MG_DL[group],
        suspend_threshold_mg_dl=SUSPEND_THRESHOLD_MG_DL,
        max_basal_u_per_h=limits.max_basal_u_per_h,
        max_bolus_u=limits.max_bolus_u,
        max_iob_u=limits.max_iob_u,
        max_daily_u=min(max(3.0 * subject.tdi_u, 30.0), limits.max_daily_u),
        insulin_curve=InsulinCurve(peak_min=PEAK_MIN[group], duration_min=INSULIN_DURATION_MIN),
        age_group=group,
        weight_kg=subject.weight_kg,
        total_daily_insulin_u=subject.tdi_u,
    )
    try:
        return validate_settings(settings)
    except ValueError as exc:
        raise TherapySettingsError(f"{subject.name}: {exc}") from exc

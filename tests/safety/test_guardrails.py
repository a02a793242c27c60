"""Settings guardrails: every out-of-range setting is refused with an error naming it, its value and its range."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from safety.guardrails import SettingsError, hard_limits, settings_violations, validate_settings
from safety.settings import AgeGroup, InsulinCurve, Schedule, ScheduleEntry

from safety_testkit import settings


def test_defaults_are_valid():
    s = settings()
    assert validate_settings(s) is s
    assert settings_violations(s) == []


BAD = [
    ("suspend_threshold_mg_dl", dict(suspend_threshold_mg_dl=60.0)),
    ("suspend_threshold_mg_dl", dict(suspend_threshold_mg_dl=111.0, target_mg_dl=150.0)),
    ("target_mg_dl", dict(target_mg_dl=86.0)),
    ("target_mg_dl", dict(target_mg_dl=181.0)),
    ("target_mg_dl", dict(target_mg_dl=90.0, suspend_threshold_mg_dl=100.0)),
    ("isf_mg_dl_per_u.entries[0].value", dict(isf_mg_dl_per_u=Schedule.constant(9.0))),
    ("isf_mg_dl_per_u.entries[1].value", dict(isf_mg_dl_per_u=Schedule((ScheduleEntry(0, 50), ScheduleEntry(60, 501))))),
    ("carb_ratio_g_per_u.entries[0].value", dict(carb_ratio_g_per_u=Schedule.constant(1.0))),
    ("carb_ratio_g_per_u.entries[0].value", dict(carb_ratio_g_per_u=Schedule.constant(151.0))),
    ("basal_u_per_h.entries[0].value", dict(basal_u_per_h=Schedule.constant(-0.1))),
    ("basal_u_per_h.entries[0].value", dict(basal_u_per_h=Schedule.constant(3.5))),  # above max basal 3
    ("basal_u_per_h.entries[0].start_min_of_day", dict(basal_u_per_h=Schedule((ScheduleEntry(10, 1.0),)))),
    ("basal_u_per_h.entries[1].start_min_of_day",
     dict(basal_u_per_h=Schedule((ScheduleEntry(0, 1.0), ScheduleEntry(1440, 1.0))))),
    ("basal_u_per_h.entries[2].start_min_of_day",
     dict(basal_u_per_h=Schedule((ScheduleEntry(0, 1.0), ScheduleEntry(600, 1.0), ScheduleEntry(300, 1.0))))),
    ("basal_u_per_h.entries", dict(basal_u_per_h=Schedule(()))),
    ("max_basal_u_per_h", dict(max_basal_u_per_h=0.0)),
    ("max_basal_u_per_h", dict(max_basal_u_per_h=10.5)),
    ("max_bolus_u", dict(max_bolus_u=0.0)),
    ("max_bolus_u", dict(max_bolus_u=17.5)),
    ("max_iob_u", dict(max_iob_u=-1.0)),
    ("max_iob_u", dict(max_iob_u=22.5)),
    ("max_daily_u", dict(max_daily_u=20.0)),  # below the scheduled daily basal (~22 U)
    ("max_daily_u", dict(max_daily_u=301.0)),
    ("insulin_curve.peak_min", dict(insulin_curve=InsulinCurve(30.0, 360.0))),
    ("insulin_curve.peak_min", dict(insulin_curve=InsulinCurve(121.0, 360.0))),
    ("insulin_curve.duration_min", dict(insulin_curve=InsulinCurve(75.0, 240.0))),
    ("insulin_curve.duration_min", dict(insulin_curve=InsulinCurve(75.0, 500.0))),
    ("weight_kg", dict(weight_kg=2.0)),
    ("total_daily_insulin_u", dict(total_daily_insulin_u=0.0)),
    ("basal_increment_u_per_h", dict(basal_increment_u_per_h=0.0)),
    ("bolus_increment_u", dict(bolus_increment_u=2.0)),
    ("utc_offset_min", dict(utc_offset_min=900.0)),
    ("max_bolus_u", dict(max_bolus_u=math.nan)),
    ("target_mg_dl", dict(target_mg_dl=math.inf)),
]


@pytest.mark.parametrize("name,change", BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_out_of_range_setting_is_refused_by_name(name, change):
    s = settings(**change)
    with pytest.raises(SettingsError) as info:
        validate_settings(s)
    names = [e.setting for e in settings_violations(s)]
    assert name in names
    err = next(e for e in settings_violations(s) if e.setting == name)
    assert name in str(err) and repr(err.value) in str(err)
    lo, hi = err.allowed
    assert f"{lo:g}" in str(err) and f"{hi:g}" in str(err)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("group,bolus,iob,basal", [(AgeGroup.CHILD, 5, 7, 2), (AgeGroup.TEEN, 10, 13, 5),
                                                   (AgeGroup.ADULT, 17, 22, 10),
                                                   (AgeGroup.RESISTANT_ADULT, 25, 30, 12)])
def test_age_group_hard_limits(group, bolus, iob, basal):
    h = hard_limits(group)
    assert (h.max_bolus_u, h.max_iob_u, h.max_basal_u_per_h) == (bolus, iob, basal)
    s = settings(age_group=group, max_bolus_u=bolus + 0.5, max_basal_u_per_h=min(basal, 3.0))
    with pytest.raises(SettingsError) as info:
        validate_settings(s)
    assert info.value.setting == "max_bolus_u" and info.value.allowed[1] == bolus


def test_child_with_adult_settings_collects_every_violation():
    s = settings(age_group=AgeGroup.CHILD, max_bolus_u=10.0, max_iob_u=8.0, max_basal_u_per_h=3.0)
    names = {e.setting for e in settings_violations(s)}
    assert {"max_bolus_u", "max_iob_u", "max_basal_u_per_h"} <= names


def test_upper_and_lower_bounds_are_inclusive():
    validate_settings(settings(suspend_threshold_mg_dl=67.0, target_mg_dl=87.0))
    validate_settings(settings(suspend_threshold_mg_dl=110.0, target_mg_dl=180.0))
    validate_settings(settings(isf_mg_dl_per_u=Schedule.constant(10.0), carb_ratio_g_per_u=Schedule.constant(150.0)))
    validate_settings(replace(settings(), max_iob_u=0.0))

"""Unit conversions, in one place (ARCHITECTURE.md: conversions sit in safety/).

Every quantity in twinloop carries its unit in its name; these are the only functions that change units.
"""

from __future__ import annotations

MG_DL_PER_MMOL_L = 18.0182
"""Glucose: 1 mmol/L = 18.0182 mg/dL (molar mass of glucose 180.182 g/mol)."""

MIN_PER_H = 60.0
MIN_PER_DAY = 1440.0


def mmol_l_to_mg_dl(glucose_mmol_l: float) -> float:
    """Glucose concentration, mmol/L -> mg/dL."""
    return glucose_mmol_l * MG_DL_PER_MMOL_L


def mg_dl_to_mmol_l(glucose_mg_dl: float) -> float:
    """Glucose concentration, mg/dL -> mmol/L."""
    return glucose_mg_dl / MG_DL_PER_MMOL_L


def u_per_h_to_u_per_min(rate_u_per_h: float) -> float:
    """Insulin rate, U/h -> U/min."""
    return rate_u_per_h / MIN_PER_H


def u_per_min_to_u_per_h(rate_u_per_min: float) -> float:
    """Insulin rate, U/min -> U/h."""
    return rate_u_per_min * MIN_PER_H


def minute_of_day(t_min: float, utc_offset_min: float = 0.0) -> float:
    """Local minute of the day in [0, 1440) for an absolute time ``t_min`` (minutes) and a UTC offset (minutes)."""
    return (t_min + utc_offset_min) % MIN_PER_DAY


def floor_to_increment(amount: float, increment: float) -> float:
    """Round ``amount`` down to a whole number of ``increment`` (never up). Safe for float noise like 0.15/0.05."""
    if increment <= 0.0:
        raise ValueError(f"increment must be > 0, got {increment!r}")
    if amount <= 0.0:
        return 0.0
    steps = int(amount / increment + 1e-9)
    return round(steps * increment, 10)

"""Human-readable reasons for MPC decisions, written for a clinician reading the journal.

Example: ``"Glucose 182 mg/dL rising 1.2 mg/dL/min; 2.1 U on board; predicted 165 in 60 min; raising basal to
1.6 U/h for 30 min"``. Pure string formatting; no decisions are made here.
"""

from __future__ import annotations

from typing import Sequence


def trend_words(trend_mg_dl_per_min: float) -> str:
    """``rising 1.2 mg/dL/min``, ``falling 0.8 mg/dL/min`` or ``steady``."""
    if abs(trend_mg_dl_per_min) < 0.25:
        return "steady"
    word = "rising" if trend_mg_dl_per_min > 0 else "falling"
    return f"{word} {abs(trend_mg_dl_per_min):.1f} mg/dL/min"


def predicted_words(predicted_mg_dl: Sequence[float], dt_min: float = 5.0, at_min: float = 60.0) -> str:
    """``predicted 165 in 60 min`` (and the lowest predicted value when it is lower than that)."""
    if len(predicted_mg_dl) == 0:
        return "no prediction"
    k = min(int(round(at_min / dt_min)), len(predicted_mg_dl) - 1)
    text = f"predicted {predicted_mg_dl[k]:.0f} in {k * dt_min:.0f} min"
    low_k = min(range(len(predicted_mg_dl)), key=lambda i: predicted_mg_dl[i])
    if predicted_mg_dl[low_k] < predicted_mg_dl[k] - 5.0 and predicted_mg_dl[low_k] < 100.0:
        text += f", lowest {predicted_mg_dl[low_k]:.0f} in {low_k * dt_min:.0f} min"
    return text


def basal_words(rate_u_per_h: float | None, scheduled_u_per_h: float, duration_min: float) -> str:
    """``raising basal to 1.6 U/h for 30 min`` / ``lowering ...`` / ``suspending insulin for 30 min`` /
    ``keeping the scheduled basal 0.8 U/h``."""
    if rate_u_per_h is None:
        return f"returning to the scheduled basal {scheduled_u_per_h:.2f} U/h"
    if rate_u_per_h <= 0.0:
        return f"suspending insulin for {duration_min:.0f} min"
    if abs(rate_u_per_h - scheduled_u_per_h) < 0.05 + 1e-9:
        return f"keeping basal at the scheduled {scheduled_u_per_h:.2f} U/h for {duration_min:.0f} min"
    verb = "raising" if rate_u_per_h > scheduled_u_per_h else "lowering"
    return f"{verb} basal to {rate_u_per_h:.2f} U/h for {duration_min:.0f} min (scheduled {scheduled_u_per_h:.2f})"


def decision_reason(
    glucose_mg_dl: float,
    trend_mg_dl_per_min: float,
    iob_u: float,
    predicted_mg_dl: Sequence[float],
    action: str,
    notes: Sequence[str] = (),
) -> str:
    """The full reason: glucose and trend; insulin on board; prediction; action; then notes (meal, limits, ...)."""
    parts = [
        f"Glucose {glucose_mg_dl:.0f} mg/dL {trend_words(trend_mg_dl_per_min)}",
        f"{iob_u + 0.0 if abs(iob_u) >= 0.05 else 0.0:.1f} U on board",
        predicted_words(predicted_mg_dl),
        action,
    ]
    parts.extend(n for n in notes if n)
    return "; ".join(parts)

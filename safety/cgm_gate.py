"""CGM gating and the supervisor's own low-glucose prediction, for one subject (plain Python, no trust in the
controller). :mod:`safety.supervisor_batch` computes the same rules over arrays; a property test checks that both
agree. Constants are in :mod:`safety.limits`.

Rules, for readings sorted by time (ties: by value, NaN last, then flags) with exact repeats (same time, value and
flags) counted once, at decision time ``now``:

- *future*: any reading with ``t > now + 5 min`` -> CGM_FUTURE (those readings are then ignored);
- *considered* readings: ``now - 60 <= t <= now + 5``; *valid* ones pass :func:`safety.limits.value_ok`
  (finite, 39 < g <= 400 mg/dL, no flag in ``BAD_READING_STATUS``);
- the latest considered reading is not valid -> CGM_INVALID_VALUE; no valid reading within 12 min -> CGM_STALE;
- two consecutive considered readings in the last 20 min less than 20 s apart with different values -> CGM_DUPLICATE;
- two consecutive *valid* readings in the last 20 min with ``|dg| > 6 mg/dL/min * max(dt, 5 min)`` ->
  CGM_RATE_IMPOSSIBLE;
- a valid reading with the same value as the latest valid one at least 45 min before it, and no valid reading with
  another value in between -> CGM_FLAT;
- low-glucose evidence (LGS_MEASURED): the newest reading within 12 min that has a finite value (or the
  BELOW_DEVICE_RANGE flag), or any such reading less than 20 s older than it, is below the suspend threshold (or
  flagged below range). Invalid flags do not excuse a low value: suspending is the safe direction;
- prediction (LGS_PREDICTED): least-squares line through the valid readings of the last 20 min (>= 3 readings
  spanning >= 10 min); low if the line is below the threshold at ``now`` or at ``now + 30``; *rising* = slope > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from safety import limits as L
from safety.readings import GlucoseReading

__all__ = ["CgmAssessment", "assess_cgm"]


@dataclass(frozen=True, slots=True)
class CgmAssessment:
    """What the gate concluded. ``flags`` hold reason names (``"CGM_STALE"``...) in a fixed order."""

    flags: tuple[str, ...]
    latest_valid_t_min: float | None
    latest_valid_mg_dl: float | None
    low_measured: bool
    low_predicted: bool
    slope_mg_dl_per_min: float | None

    @property
    def ok(self) -> bool:
        """True when the data may be used to raise insulin above the scheduled basal."""
        return not self.flags


def _differ(a: float, b: float) -> bool:
    return not (a == b or (math.isnan(a) and math.isnan(b)))


def _order(r: GlucoseReading) -> tuple[float, bool, float, int]:
    """Readings at the same time are ordered by value, a special (NaN) value last, then by flags: the result does
    not depend on the order the readings arrived in."""
    nan = math.isnan(r.glucose_mg_dl)
    return (r.t_min, nan, 0.0 if nan else r.glucose_mg_dl, int(r.status))


def assess_cgm(readings: Iterable[GlucoseReading], now_min: float, suspend_threshold_mg_dl: float) -> CgmAssessment:
    """Apply the CGM gate (module docstring) to ``readings`` at ``now_min``."""
    readings = readings if isinstance(readings, (list, tuple)) else list(readings)
    t_lo, t_hi = now_min - L.CGM_LOOKBACK_MIN, now_min + L.CGM_FUTURE_TOLERANCE_MIN
    flags: list[str] = []
    if any(r.t_min > t_hi for r in readings):
        flags.append("CGM_FUTURE")
    # only the look-back window is judged, so only it is sorted (a history holds hours of readings)
    ordered = sorted((r for r in readings if t_lo <= r.t_min <= t_hi), key=_order)
    considered = [r for i, r in enumerate(ordered)  # an exact repeat (same time, value, flags) is one reading
                  if not (i and r.t_min == ordered[i - 1].t_min and r.glucose_mg_dl == ordered[i - 1].glucose_mg_dl
                          and int(r.status) == int(ordered[i - 1].status))]
    ok = [L.value_ok(r.glucose_mg_dl, int(r.status)) for r in considered]
    if considered and not ok[-1]:
        flags.append("CGM_INVALID_VALUE")
    valid = [r for r, good in zip(considered, ok) if good]
    latest = valid[-1] if valid else None
    if latest is None or now_min - latest.t_min > L.CGM_STALE_MIN:
        flags.append("CGM_STALE")

    window_start = now_min - L.CGM_CHECK_WINDOW_MIN
    recent = [r for r in considered if r.t_min >= window_start]
    if any(b.t_min - a.t_min < L.CGM_DUPLICATE_WINDOW_MIN and _differ(a.glucose_mg_dl, b.glucose_mg_dl)
           for a, b in zip(recent, recent[1:])):
        flags.append("CGM_DUPLICATE")
    recent_valid = [r for r in valid if r.t_min >= window_start]
    if any(abs(b.glucose_mg_dl - a.glucose_mg_dl) > L.CGM_MAX_RATE_MG_DL_PER_MIN * max(b.t_min - a.t_min,
                                                                                      L.CGM_RATE_MIN_DT_MIN)
           for a, b in zip(recent_valid, recent_valid[1:])):
        flags.append("CGM_RATE_IMPOSSIBLE")
    if latest is not None:
        t_break = max((r.t_min for r in valid if r.glucose_mg_dl != latest.glucose_mg_dl), default=-math.inf)
        if any(r.glucose_mg_dl == latest.glucose_mg_dl and t_break < r.t_min <= latest.t_min - L.CGM_FLAT_MIN
               for r in valid):
            flags.append("CGM_FLAT")

    # low-glucose evidence: the newest readings within 12 min with a usable value (finite, or flagged below range);
    # readings less than 20 s older than the newest count too (a duplicate must not hide a low value)
    usable = [r for r in considered if r.t_min >= now_min - L.CGM_STALE_MIN
              and (math.isfinite(r.glucose_mg_dl) or int(r.status) & L.BELOW_RANGE_STATUS)]
    low_measured = bool(usable) and any(
        (r.glucose_mg_dl < suspend_threshold_mg_dl if math.isfinite(r.glucose_mg_dl) else True)
        for r in usable if r.t_min >= usable[-1].t_min - L.CGM_DUPLICATE_WINDOW_MIN)

    # the supervisor's own prediction: sequential sums (the batch version adds in the same order)
    slope = None
    low_predicted = False
    if len(recent_valid) >= L.LGS_MIN_READINGS and \
            recent_valid[-1].t_min - recent_valid[0].t_min >= L.LGS_MIN_SPAN_MIN:
        n = 0.0
        st = 0.0
        sg = 0.0
        for r in recent_valid:
            n += 1.0
            st += r.t_min
            sg += r.glucose_mg_dl
        mt = st / n
        mg = sg / n
        sxy = 0.0
        sxx = 0.0
        for r in recent_valid:
            dt = r.t_min - mt
            sxy += dt * (r.glucose_mg_dl - mg)
            sxx += dt * dt
        slope = sxy / sxx
        pred_now = mg + slope * (now_min - mt)
        pred_end = mg + slope * (now_min + L.LGS_HORIZON_MIN - mt)
        low_predicted = min(pred_now, pred_end) < suspend_threshold_mg_dl
    return CgmAssessment(
        flags=tuple(flags),
        latest_valid_t_min=None if latest is None else latest.t_min,
        latest_valid_mg_dl=None if latest is None else latest.glucose_mg_dl,
        low_measured=low_measured,
        low_predicted=low_predicted,
        slope_mg_dl_per_min=slope,
    )

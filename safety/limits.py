"""The supervisor's rule constants, in one place, shared by :mod:`safety.supervisor` (one subject) and
:mod:`safety.supervisor_batch` (a cohort), plus the two tiny numeric helpers both must compute identically.

Every constant names its unit. The choices and their sources:

======================================  =========  ==========================================================
constant                                value      why
======================================  =========  ==========================================================
CGM_STALE_MIN                           12 min     oref0: data older than 12 min -> no high temps
CGM_FUTURE_TOLERANCE_MIN                5 min      oref0: data > 5 min in the future -> clock problem
CGM_DUPLICATE_WINDOW_MIN                20 s       AndroidAPS: values < 20 s apart -> suspicious source
CGM_MIN_VALID_MG_DL                     39         values <= 39 are the sensor's "LOW" code, not a number
CGM_MAX_VALID_MG_DL                     400        values > 400 are the sensor's "HIGH" code / out of range
CGM_MAX_RATE_MG_DL_PER_MIN              6          physiology rarely exceeds 3-4 mg/dL/min; 6 leaves room for
                                                   sensor noise; a compression low or a spike exceeds it
CGM_RATE_MIN_DT_MIN                     5 min      the rate is taken over at least 5 min, so noise on readings
                                                   1 min apart is not mistaken for an impossible rate
CGM_FLAT_MIN                            45 min     identical values over 45 min (>= 9 five-minute readings)
                                                   mean a stuck sensor (oref0 also gates flat traces)
CGM_CHECK_WINDOW_MIN                    20 min     duplicates, rates and the regression look this far back
CGM_LOOKBACK_MIN                        60 min     nothing older is looked at by the gate
CGM_LOSS_REVERT_MIN                     20 min     Control-IQ: back to programmed basal after 20 min w/o CGM
LGS_HORIZON_MIN                         30 min     suspend if the supervisor's own prediction is low within it
LGS_MIN_READINGS / LGS_MIN_SPAN_MIN     3 / 10     a regression needs 3 valid readings spanning 10 min
AUTO_BOLUS_FRACTION                     0.4        Loop: automatic bolus = 40 % of the need
CORRECTION_BOLUS_FRACTION               1.0        a correction bolus never exceeds the full need
AUTO_BOLUS_MIN_INTERVAL_MIN             4.5 min    one automatic bolus per 5-min cycle (a duplicated decision
                                                   cannot deliver twice)
MAX_BASAL_X_CURRENT_SCHEDULED           4          oref0 maxSafeBasal
MAX_BASAL_X_MAX_SCHEDULED               3          oref0 maxSafeBasal
TEMP_BASAL_MAX_DURATION_MIN             30 min     a dead controller falls back to the programmed basal
PROPOSAL_MAX_AGE_MIN                    5 min      a proposal older than one cycle is stale (hung controller)
======================================  =========  ==========================================================

Need (for automatic and correction boluses) is measured from the latest valid CGM reading:
``need_u = (glucose_mg_dl - target_mg_dl) / isf_mg_dl_per_u - iob_u`` (the IOB counts uncertain deliveries as
delivered); carbohydrate announcements never raise it, so a double carb entry cannot raise automatic insulin.
"""

from __future__ import annotations

import math

import numpy as np

from safety.commands import TEMP_BASAL_MAX_DURATION_MIN
from safety.readings import UNRELIABLE_STATUS, ReadingStatus

CGM_STALE_MIN = 12.0
CGM_FUTURE_TOLERANCE_MIN = 5.0
CGM_DUPLICATE_WINDOW_MIN = 20.0 / 60.0
CGM_MIN_VALID_MG_DL = 39.0
CGM_MAX_VALID_MG_DL = 400.0
CGM_MAX_RATE_MG_DL_PER_MIN = 6.0
CGM_RATE_MIN_DT_MIN = 5.0
CGM_FLAT_MIN = 45.0
CGM_CHECK_WINDOW_MIN = 20.0
CGM_LOOKBACK_MIN = 60.0
CGM_LOSS_REVERT_MIN = 20.0

LGS_HORIZON_MIN = 30.0
LGS_MIN_READINGS = 3
LGS_MIN_SPAN_MIN = 10.0

AUTO_BOLUS_FRACTION = 0.4
CORRECTION_BOLUS_FRACTION = 1.0
AUTO_BOLUS_MIN_INTERVAL_MIN = 4.5

MAX_BASAL_X_CURRENT_SCHEDULED = 4.0
MAX_BASAL_X_MAX_SCHEDULED = 3.0
PROPOSAL_MAX_AGE_MIN = 5.0

BAD_READING_STATUS = int(UNRELIABLE_STATUS | ReadingStatus.BELOW_DEVICE_RANGE | ReadingStatus.ABOVE_DEVICE_RANGE
                         | ReadingStatus.NOISY)
"""A reading with any of these flags is not valid for dosing (NOISY and the device-range flags added to the
lead's :data:`UNRELIABLE_STATUS`)."""

BELOW_RANGE_STATUS = int(ReadingStatus.BELOW_DEVICE_RANGE)

__all__ = [name for name in dir() if name.isupper()] + ["round_down", "value_ok", "need_u", "TEMP_BASAL_MAX_DURATION_MIN"]


def round_down(amount, increment):
    """Round down to a whole number of pump increments (never up); works on floats and arrays identically.

    Non-positive amounts give 0. The 1e-9 guard keeps ``0.15 / 0.05`` from becoming 2 steps.
    """
    steps = np.floor(np.asarray(amount, dtype=float) / increment + 1e-9)
    out = np.round(np.maximum(steps, 0.0) * increment, 10)
    return float(out) if np.ndim(out) == 0 else out


def value_ok(glucose_mg_dl, status):
    """True where a reading's value can be used for dosing: finite, in (39, 400] mg/dL, no bad status flag."""
    if type(glucose_mg_dl) is float and isinstance(status, int):  # one reading (the scalar gate): no numpy
        return (math.isfinite(glucose_mg_dl) and CGM_MIN_VALID_MG_DL < glucose_mg_dl <= CGM_MAX_VALID_MG_DL
                and (status & BAD_READING_STATUS) == 0)
    g = np.asarray(glucose_mg_dl, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(g) & (g > CGM_MIN_VALID_MG_DL) & (g <= CGM_MAX_VALID_MG_DL)
    ok = ok & ((np.asarray(status, dtype=np.int64) & BAD_READING_STATUS) == 0)
    return bool(ok) if np.ndim(ok) == 0 else ok


def need_u(glucose_mg_dl, target_mg_dl, isf_mg_dl_per_u, iob_u):
    """Insulin needed to bring the latest valid glucose to target, minus insulin on board (U; may be negative)."""
    return (glucose_mg_dl - target_mg_dl) / isf_mg_dl_per_u - iob_u

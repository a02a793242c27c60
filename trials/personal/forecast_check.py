"""The forecast check: does a twin of this patient predict this patient's own unseen days?

The validation (docs/twin-fit.md section 6) measures the twin's predictions on virtual patients with known truth; a
real patient has none. What their record does allow is the same test on their own last days: fit the twin without
the last ``held_out_days``, predict those days open loop from the shortened fit's end state with the recorded
insulin and the announced carbs (what ``twinloop replay`` does for the recorded therapy), and compare with the CGM.
The result is reported beside the twin (``twinloop fit``, the twin file, the replay report) so that a clinician
sees, for this patient, whether the twin forecasts within the validation's limits before trusting a replay.

On the 30 reference subjects x 3 seeds (2 of the 7 fitted days held out) the twins whose check was within the limits
met the validation's three criteria in 38 of 45 runs, the flagged ones in 20 of 41 (docs/twin-fit.md section 6):
a warning light, not a guarantee.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trials.metrics import glucose_metrics
from trials.personal.fit import FitRefusedError, ForecastCheck, fit_twin
from trials.personal.patient_data import PatientData, censored_masks
from trials.personal.replay import open_loop, prediction_at_readings

DEFAULT_HELD_OUT_DAYS = 2.0
MIN_HELD_OUT_COVERAGE = 0.6
"""Refuse the check when the CGM covers less than this share of the held-out days."""


def check_forecast(data: PatientData, held_out_days: float = DEFAULT_HELD_OUT_DAYS, *,
                   end_min: float | None = None, **fit_options: Any) -> ForecastCheck:
    """Fit the twin to ``data`` (up to ``end_min``) without its last ``held_out_days`` and score its open-loop
    prediction of them against the CGM. ``fit_options`` go to :func:`~trials.personal.fit.fit_twin` (``model``,
    ``weight_kg``, ``meal_effects``, ``population_exclude``): use the options of the twin being checked.

    Raises:
        FitRefusedError: the shortened record cannot identify a twin, or the held-out days have too little CGM
            (reasons listed).
        FitFailedError: the shortened fit did not converge.
        ValueError: ``held_out_days`` is not > 0.
    """
    if not held_out_days > 0:
        raise ValueError(f"held_out_days must be > 0, got {held_out_days!r}")
    if end_min is not None:
        data = data.window(-np.inf, end_min)
    if data.cgm_t_min.size == 0:
        raise FitRefusedError(["forecast check: no CGM readings"])
    t_last = float(data.cgm_t_min[-1])
    split = t_last - held_out_days * 1440.0
    held = data.cgm_t_min >= split
    coverage = int(np.sum(held)) * 5.0 / (held_out_days * 1440.0)
    if coverage < MIN_HELD_OUT_COVERAGE:
        raise FitRefusedError([f"forecast check: the CGM covers {coverage:.0%} of the held-out "
                               f"{held_out_days:g} days; at least {MIN_HELD_OUT_COVERAGE:.0%} needed"])
    try:
        fit = fit_twin(data, end_min=split, **fit_options)
    except FitRefusedError as exc:
        raise FitRefusedError([f"forecast check: without the last {held_out_days:g} days: {r}"
                               for r in exc.reasons]) from exc
    t0 = fit.t_end_min
    n = int((t_last - t0) // 5) + 1
    g_pred, cgm = prediction_at_readings(open_loop(fit, fit.theta, data, t0, n, fit.end_state), data)
    low, high = censored_masks(cgm)
    measured = ~(low | high)
    if not np.any(measured):
        raise FitRefusedError(["forecast check: every held-out CGM reading is at the sensor's limits"])
    err = g_pred[measured] - cgm[measured]
    # TIR over every held-out reading: one at LOW/HIGH (39 / 401 mg/dL) is out of range, as the glucose it bounds
    return ForecastCheck(float(held_out_days), float(np.sqrt(np.mean(err ** 2))), float(np.mean(err)),
                         glucose_metrics(g_pred)["tir_pct"], glucose_metrics(cgm)["tir_pct"], int(cgm.size))

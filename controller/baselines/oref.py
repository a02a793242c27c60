"""An oref0-style temporary-basal algorithm (OpenAPS ``determine-basal``, simplified; no SMB, no autosens).

Every 5 minutes, with ``delta`` the last 5-minute change, ``avgdelta`` the 15-minute average, ``minDelta`` the
smaller of the two, ISF ``sens`` and insulin activity ``act`` (U/min)::

    BGI            = -act * sens * 5                       expected change from insulin alone (mg/dL / 5 min)
    ci             = minDelta - BGI - carb impact          unexplained deviation
    naive eventual = BG - IOB * sens
    eventual BG    = naive eventual + 6 ci + COB * sens / CR
    predicted BG   = 4-hour curve: insulin activity of the doses on board, the deviation decaying over 60 min,
                     announced carbs absorbing linearly over 3 h

Then, as oref0 does (threshold = max(suspend threshold, min_bg - 0.5 (min_bg - 40))):

- BG or any predicted value below the threshold: zero temp;
- eventual BG below target: if BG rises faster than insulin alone explains, keep the basal; otherwise
  rate = basal + 2 x 2 x (eventual - target) / sens (the low temp), never below 0;
- eventual BG above target: insulinReq = (min(eventual, minPredBG) - target) / sens, capped at max IOB - IOB;
  rate = basal + 2 insulinReq, capped at maxSafeBasal = min(max basal, 3 x max daily basal, 4 x current basal)
  (the programmed basal when the lowest predicted BG is below target, i.e. insulinReq <= 0);
  no high temp while BG falls faster than expected;
- no fresh CGM reading: the programmed basal.

Announced meals get a wizard bolus from the person (oref0 does not bolus for meals by itself without SMB).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from controller.baselines.base import BaselineController
from controller.baselines.common import (
    BIN_MIN, BatchInputs, BatchProposal, fresh_mask, insulin_activity_forecast, insulin_on_board, wizard_bolus_u,
)

PRED_STEPS = 48
CARB_ABSORPTION_MIN = 180.0
DEVIATION_DECAY_STEPS = 12

R_BASAL, R_LOW_SUSPEND, R_LOW_TEMP, R_RISING, R_HIGH_TEMP, R_FALLING, R_MAX_IOB, R_NO_CGM = range(8)


class Oref0(BaselineController):
    """oref0-style temp basal with a bolus wizard for announced meals."""

    name = "oref"
    REASONS = (
        "eventual BG in range: programmed basal",
        "BG or predicted BG below threshold: zero temp",
        "eventual BG below target: low temp",
        "eventual BG below target but BG rising faster than expected: programmed basal",
        "eventual BG above target: high temp",
        "eventual BG above target but BG falling faster than expected: programmed basal",
        "IOB at max IOB: no high temp",
        "no fresh CGM reading: programmed basal",
    )

    def initial_batch_state(self, n: int) -> dict[str, np.ndarray]:
        return {"last_now_min": np.full(n, -np.inf), "cob_g": np.zeros(n), "carb_rate_g_per_5min": np.zeros(n)}

    def decide_batch(self, state: Mapping[str, np.ndarray], inputs: BatchInputs
                     ) -> tuple[dict[str, np.ndarray], BatchProposal]:
        n = inputs.n
        sens = inputs.isf_mg_dl_per_u
        target = inputs.target_mg_dl
        basal = inputs.basal_u_per_h
        csf = sens / inputs.carb_ratio_g_per_u  # mg/dL per g
        # carbs on board: announced carbs absorb linearly over 3 hours
        carbs = inputs.meal_carbs_g
        cob = np.asarray(state["cob_g"], dtype=float)
        rate_c = np.asarray(state["carb_rate_g_per_5min"], dtype=float)
        cob = cob + carbs
        rate_c = np.where(carbs > 0, cob / (CARB_ABSORPTION_MIN / BIN_MIN), rate_c)
        absorbed = np.minimum(rate_c, cob)
        iob = insulin_on_board(inputs)
        act = insulin_activity_forecast(inputs, PRED_STEPS + 1)  # (N, K) U/min
        bgi = -act[:, 0] * sens * BIN_MIN
        fresh = fresh_mask(inputs)
        bg = np.where(fresh, inputs.glucose_mg_dl, target)
        delta = np.where(np.isfinite(inputs.delta_mg_dl), inputs.delta_mg_dl, 0.0)
        avgdelta = np.where(np.isfinite(inputs.avg_delta_mg_dl), inputs.avg_delta_mg_dl, delta)
        min_delta = np.minimum(delta, avgdelta)
        ci = min_delta - bgi - absorbed * csf
        eventual = bg - iob * sens + 6.0 * ci + cob * csf
        # predicted curve
        k = np.arange(1, PRED_STEPS + 1)[None, :]
        dev = ci[:, None] * np.clip(1.0 - k / DEVIATION_DECAY_STEPS, 0.0, 1.0)
        remaining = np.maximum(cob[:, None] - rate_c[:, None] * (k - 1), 0.0)
        carb_step = np.minimum(rate_c[:, None], remaining) * csf[:, None]
        steps = -act[:, 1:] * sens[:, None] * BIN_MIN + dev + carb_step
        pred = bg[:, None] + np.cumsum(steps, axis=1)
        min_pred = pred.min(axis=1)
        min_guard = np.minimum(bg, min_pred)
        threshold = np.maximum(inputs.suspend_threshold_mg_dl, target - 0.5 * (target - 40.0))

        max_safe = np.minimum(inputs.max_basal_u_per_h,
                              np.minimum(3.0 * inputs.max_daily_basal_u_per_h, 4.0 * basal))
        rate = basal.copy()
        reason = np.full(n, R_BASAL)
        low = min_guard < threshold
        below = ~low & (eventual < target)
        rising = below & (min_delta > bgi) & (min_delta > 0)
        low_temp = below & ~rising
        above = ~low & (eventual > target)
        falling = above & (min_delta < bgi)
        insulin_req = (np.minimum(eventual, min_pred) - target) / sens
        max_iob = above & ~falling & (iob >= inputs.max_iob_u)
        insulin_req = np.minimum(insulin_req, np.maximum(inputs.max_iob_u - iob, 0.0))
        no_need = above & ~falling & ~max_iob & (insulin_req <= 0.0)  # min predicted BG below target
        high_temp = above & ~falling & ~max_iob & ~no_need
        rate = np.where(low, 0.0, rate)
        reason = np.where(low, R_LOW_SUSPEND, reason)
        rate = np.where(low_temp, np.maximum(basal + 2.0 * 2.0 * (eventual - target) / sens, 0.0), rate)
        reason = np.where(low_temp, R_LOW_TEMP, reason)
        reason = np.where(rising, R_RISING, reason)
        rate = np.where(high_temp, np.maximum(np.minimum(basal + 2.0 * insulin_req, max_safe), basal), rate)
        reason = np.where(high_temp, R_HIGH_TEMP, reason)
        reason = np.where(falling, R_FALLING, reason)
        reason = np.where(max_iob, R_MAX_IOB, reason)
        rate = np.where(fresh, rate, np.nan)
        reason = np.where(fresh, reason, R_NO_CGM)

        meal = carbs > 0.0
        bolus = wizard_bolus_u(inputs, iob) if meal.any() else np.zeros(n)
        new_state = {"last_now_min": np.full(n, float(inputs.now_min)), "cob_g": cob - absorbed,
                     "carb_rate_g_per_5min": np.where(cob - absorbed > 1e-9, rate_c, 0.0)}
        return new_state, BatchProposal(rate, bolus, meal, reason, np.where(fresh, eventual, np.nan))

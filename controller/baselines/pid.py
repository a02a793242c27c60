"""PID with insulin feedback (PID-IFB; Steil et al. 2006, 2011 -- the MiniMed 640G/670G/780G family).

Every 5 minutes, with e = G - target (mg/dL) and dG/dt from the last 15 minutes of CGM::

    Kp    = TDI / 1440          U/h per mg/dL  (1.5 x the average rate for 90 mg/dL above target)
    P     = Kp e
    I    += Kp / TI * e * 5     (TI = 450 min), started at the programmed basal, clamped to [0, max basal]
    D     = Kp TD dG/dt         (TD = 90 min)
    u_pid = P + I + D
    u     = (1 + gamma) u_pid - gamma Ip        (gamma = 0.5)

``Ip`` is the predicted plasma insulin, expressed as the rate (U/h) that would hold it, from a two-compartment
model of the delivered insulin (time constants 50 and 70 minutes): it damps the loop so that insulin already given
is not given again. The rate stays at or below the programmed basal while the insulin on board already covers the
excess (30-minute forecast - IOB x ISF below target). Delivery stops when the reading, or the 30-minute linear forecast, is below the suspend
threshold; without a fresh reading the pump runs its programmed basal. Announced meals get a wizard bolus (hybrid
closed loop, as on the 780G).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from controller.baselines.base import BaselineController
from controller.baselines.common import (
    BIN_MIN, BatchInputs, BatchProposal, fresh_mask, insulin_on_board, wizard_bolus_u,
)

KP_DIVISOR = 1440.0
TI_MIN = 450.0
TD_MIN = 90.0
GAMMA = 0.5
TAU1_MIN = 50.0
TAU2_MIN = 70.0

R_PID, R_SUSPEND, R_NO_CGM, R_MAX = 0, 1, 2, 3


class PIDIFB(BaselineController):
    """PID with insulin feedback."""

    name = "pid"
    REASONS = (
        "PID-IFB temp basal",
        "suspended: glucose or its 30-min forecast below the suspend threshold",
        "no fresh CGM reading: programmed basal",
        "PID-IFB temp basal at the maximum basal",
    )

    def initial_batch_state(self, n: int) -> dict[str, np.ndarray]:
        nan = np.full(n, np.nan)
        return {"last_now_min": np.full(n, -np.inf), "integral_u_per_h": nan.copy(),
                "isc_u_per_h": nan.copy(), "ip_u_per_h": nan.copy()}

    def decide_batch(self, state: Mapping[str, np.ndarray], inputs: BatchInputs
                     ) -> tuple[dict[str, np.ndarray], BatchProposal]:
        n = inputs.n
        basal = inputs.basal_u_per_h
        integral = np.where(np.isnan(state["integral_u_per_h"]), basal, state["integral_u_per_h"])
        isc = np.where(np.isnan(state["isc_u_per_h"]), basal, state["isc_u_per_h"])
        ip = np.where(np.isnan(state["ip_u_per_h"]), basal, state["ip_u_per_h"])
        # insulin feedback: what was delivered over the last 5 minutes, as a rate
        delivered = np.maximum(basal + inputs.net_insulin_u[:, 0] * 60.0 / BIN_MIN, 0.0)
        isc = isc + BIN_MIN / TAU1_MIN * (delivered - isc)
        ip = ip + BIN_MIN / TAU2_MIN * (isc - ip)

        fresh = fresh_mask(inputs)
        g = np.where(fresh, inputs.glucose_mg_dl, inputs.target_mg_dl)
        slope = np.where(np.isfinite(inputs.avg_delta_mg_dl), inputs.avg_delta_mg_dl, 0.0) / BIN_MIN  # mg/dL/min
        slope = np.where(fresh, slope, 0.0)
        e = g - inputs.target_mg_dl
        kp = inputs.tdi_u / KP_DIVISOR
        p_term = kp * e
        d_term = kp * TD_MIN * slope
        new_integral = np.clip(integral + kp / TI_MIN * e * BIN_MIN, 0.0, inputs.max_basal_u_per_h)
        u_pid = p_term + new_integral + d_term
        u = (1.0 + GAMMA) * u_pid - GAMMA * ip
        rate = np.clip(u, 0.0, inputs.max_basal_u_per_h)
        # insulin on board already covers the excess: no more than the programmed basal
        iob = insulin_on_board(inputs)
        covered = g + 6.0 * slope * BIN_MIN - iob * inputs.isf_mg_dl_per_u < inputs.target_mg_dl
        rate = np.where(covered, np.minimum(rate, basal), rate)
        low = fresh & ((g < inputs.suspend_threshold_mg_dl)
                       | (g + 6.0 * slope * BIN_MIN < inputs.suspend_threshold_mg_dl))
        rate = np.where(low, 0.0, rate)
        # anti-windup: do not integrate further while the output is saturated or suspended
        saturated = (u > inputs.max_basal_u_per_h) | (u < 0.0) | low
        integral = np.where(fresh & ~saturated, new_integral, np.where(fresh & low, np.minimum(integral, new_integral),
                                                                       integral))
        rate = np.where(fresh, rate, np.nan)
        reason = np.where(~fresh, R_NO_CGM, np.where(low, R_SUSPEND,
                          np.where(rate >= inputs.max_basal_u_per_h, R_MAX, R_PID)))
        meal = inputs.meal_carbs_g > 0.0
        bolus = wizard_bolus_u(inputs, iob) if meal.any() else np.zeros(n)
        new_state = {"last_now_min": np.full(n, float(inputs.now_min)), "integral_u_per_h": integral,
                     "isc_u_per_h": isc, "ip_u_per_h": ip}
        return new_state, BatchProposal(rate, bolus, meal, reason, g + 6.0 * slope * BIN_MIN)

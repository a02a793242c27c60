"""Basal-bolus pump therapy: the programmed basal, a bolus-wizard bolus for every announced meal, and a wizard
correction for a high reading between meals.

This is what most people with type 1 diabetes on a pump do today: no automation. Meal bolus = announced carbs / CR,
plus a correction (G - target) / ISF above target reduced by insulin on board (a reading below target reduces the
meal bolus). Between meals the person corrects a high reading the same way, as pump users are taught: when the CGM
reads above ``correction_above_mg_dl`` (180 mg/dL, the top of the target range) and the last bolus was at least
``correction_interval_min`` ago (3 h, so corrections do not stack on a bolus still acting), the wizard's correction
(G - target) / ISF minus insulin on board, when it is at least one bolus increment (0.05 U).

Until 2026-11-22 this baseline never corrected between meals; without meal announcements (fcl-3day) that made it a
basal-only arm, which nobody on pump therapy is. ``BasalBolus(correction_above_mg_dl=None)`` is that arm.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from controller.baselines.base import BaselineController
from controller.baselines.common import (
    BatchInputs, BatchProposal, fresh_mask, insulin_on_board, wizard_bolus_u, wizard_correction_u,
)

REASON_BASAL = 0
REASON_MEAL_BOLUS = 1
REASON_CORRECTION = 2

CORRECTION_INCREMENT_U = 0.05
"""Smallest correction given (the pump's bolus increment)."""


class BasalBolus(BaselineController):
    """Open-loop basal-bolus therapy (the baseline every closed loop must beat).

    Args:
        correction_above_mg_dl: correct between meals above this CGM reading (None: never).
        correction_interval_min: minimum time since the last bolus (meal or correction) before a correction.
    """

    name = "bb"
    REASONS = ("programmed basal", "meal bolus from the bolus wizard", "correction bolus from the bolus wizard")

    def __init__(self, correction_above_mg_dl: float | None = 180.0, correction_interval_min: float = 180.0) -> None:
        self.correction_above_mg_dl = correction_above_mg_dl
        self.correction_interval_min = float(correction_interval_min)

    def initial_batch_state(self, n: int) -> dict[str, np.ndarray]:
        return {"last_now_min": np.full(n, -np.inf), "last_bolus_min": np.full(n, -np.inf)}

    def decide_batch(self, state: Mapping[str, np.ndarray], inputs: BatchInputs
                     ) -> tuple[dict[str, np.ndarray], BatchProposal]:
        n = inputs.n
        now = float(inputs.now_min)
        last_bolus = np.asarray(state.get("last_bolus_min", np.full(n, -np.inf)), dtype=float)
        meal = inputs.meal_carbs_g > 0.0
        correction = np.zeros(n, dtype=bool)
        if self.correction_above_mg_dl is not None:
            correction = (~meal & fresh_mask(inputs) & (inputs.glucose_mg_dl > self.correction_above_mg_dl)
                          & (now - last_bolus >= self.correction_interval_min))
        # insulin on board only when a bolus is considered (most steps of a trial have none)
        iob = insulin_on_board(inputs) if meal.any() or correction.any() else None
        bolus = wizard_bolus_u(inputs, iob) if meal.any() else np.zeros(n)
        if correction.any():
            need = np.minimum(wizard_correction_u(inputs, iob), inputs.max_bolus_u)
            correction &= need >= CORRECTION_INCREMENT_U
            bolus = np.where(correction, need, bolus)
        proposal = BatchProposal(
            rate_u_per_h=np.full(n, np.nan),
            bolus_u=bolus,
            bolus_is_meal=meal,
            reason_code=np.where(meal, REASON_MEAL_BOLUS, np.where(correction, REASON_CORRECTION, REASON_BASAL)),
            eventual_bg_mg_dl=np.full(n, np.nan),
        )
        gave = bolus > 0.0
        return ({"last_now_min": np.full(n, now), "last_bolus_min": np.where(gave, now, last_bolus)}, proposal)

"""Basal-bolus pump therapy: the programmed basal, and a bolus-wizard bolus for every announced meal.

This is what most people with type 1 diabetes on a pump do today: no automation. Meal bolus = announced carbs / CR,
plus a correction (G - target) / ISF above target reduced by insulin on board (a reading below target reduces the
meal bolus). No correction between meals.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from controller.baselines.base import BaselineController
from controller.baselines.common import BatchInputs, BatchProposal, insulin_on_board, wizard_bolus_u

REASON_BASAL = 0
REASON_MEAL_BOLUS = 1


class BasalBolus(BaselineController):
    """Open-loop basal-bolus therapy (the baseline every closed loop must beat)."""

    name = "bb"
    REASONS = ("programmed basal", "meal bolus from the bolus wizard")

    def decide_batch(self, state: Mapping[str, np.ndarray], inputs: BatchInputs
                     ) -> tuple[dict[str, np.ndarray], BatchProposal]:
        n = inputs.n
        meal = inputs.meal_carbs_g > 0.0
        if meal.any():
            bolus = wizard_bolus_u(inputs, insulin_on_board(inputs))
        else:
            bolus = np.zeros(n)
        proposal = BatchProposal(
            rate_u_per_h=np.full(n, np.nan),
            bolus_u=bolus,
            bolus_is_meal=meal,
            reason_code=np.where(meal, REASON_MEAL_BOLUS, REASON_BASAL),
            eventual_bg_mg_dl=np.full(n, np.nan),
        )
        return {"last_now_min": np.full(n, float(inputs.now_min))}, proposal

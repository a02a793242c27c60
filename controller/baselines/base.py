"""The per-subject protocol on top of a vectorized decision, shared by every baseline."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from controller.baselines.common import (
    BatchInputs, BatchProposal, arrays_to_state, inputs_from_snapshot, state_to_arrays, to_proposal,
)
from safety.commands import Proposal
from safety.settings import TherapySettings
from safety.snapshot import Snapshot


class BaselineController:
    """Implements ``initial_state``/``decide`` (the :class:`controller.api.Controller` protocol) by calling
    ``decide_batch`` on one subject. Subclasses define ``name``, ``REASONS``, ``initial_batch_state`` and
    ``decide_batch``; their state is a flat mapping of floats (JSON-serialisable)."""

    name = "baseline"
    REASONS: tuple[str, ...] = ("",)

    def initial_batch_state(self, n: int) -> dict[str, np.ndarray]:
        return {"last_now_min": np.full(n, -np.inf)}

    def decide_batch(self, state: Mapping[str, np.ndarray], inputs: BatchInputs
                     ) -> tuple[dict[str, np.ndarray], BatchProposal]:
        raise NotImplementedError

    def initial_state(self, settings: TherapySettings) -> dict[str, float]:
        return {k: float(v[0]) for k, v in self.initial_batch_state(1).items()}

    def decide(self, state: Mapping[str, float], snapshot: Snapshot) -> tuple[dict[str, float], Proposal]:
        """One decision for one subject from its snapshot (same arithmetic as :meth:`decide_batch`)."""
        full = {k: float(v[0]) for k, v in self.initial_batch_state(1).items()}
        full.update({k: float(v) for k, v in (state or {}).items() if k in full})  # missing keys: initial values
        inputs = inputs_from_snapshot(snapshot, full["last_now_min"])
        new_state, batch = self.decide_batch(state_to_arrays(full), inputs)
        detail = _detail(inputs)
        return arrays_to_state(new_state), to_proposal(batch, 0, snapshot.now_min, self.REASONS, self.name, detail)


def _detail(inputs: BatchInputs) -> str:
    g = inputs.glucose_mg_dl[0]
    parts = [f"CGM {g:.0f} mg/dL" if np.isfinite(g) else "no CGM"]
    if inputs.meal_carbs_g[0] > 0:
        parts.append(f"{inputs.meal_carbs_g[0]:.0f} g announced")
    return ", ".join(parts)

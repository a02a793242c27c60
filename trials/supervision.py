"""The supervisor between every controller and the simulated pump, and the adapter that unwraps its approved
commands into the pump model's plain numbers (a basal rate in U/h, NaN for "programmed basal", and a bolus in U).

- :class:`SubjectSupervision`: one :func:`safety.supervisor.supervise` call per subject and decision; the verdict's
  :class:`safety.commands.ApprovedCommand` objects are unwrapped by :func:`unwrap`.
- :class:`BatchSupervision`: :func:`safety.supervisor_batch.supervise_batch` over a whole chunk.

Both count interventions per subject by reason name (``counts()``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from safety.commands import TEMP_BASAL_MAX_DURATION_MIN, ApprovedCommand, Bolus, Resume, Suspend, TempBasal
from safety.settings import TherapySettings


RESUME = -1.0
"""Pump number for "return to the programmed basal" (a Resume command). NaN means "no basal command": a running
temporary basal continues until it expires."""


class AdapterError(TypeError):
    """An approved command the simulated pump cannot execute."""


def unwrap(commands: Sequence[ApprovedCommand]) -> tuple[float, float, float]:
    """Approved commands -> (basal rate U/h, bolus U, basal duration min): a TempBasal gives its rate, Suspend 0,
    Resume :data:`RESUME`, no basal command NaN. Only approved commands are accepted; boluses add up; the last
    basal command wins."""
    rate, bolus, duration = math.nan, 0.0, TEMP_BASAL_MAX_DURATION_MIN
    for cmd in commands:
        if not isinstance(cmd, ApprovedCommand):
            raise AdapterError(f"the pump accepts only approved commands, got {type(cmd).__name__}")
        c = cmd.command
        if isinstance(c, TempBasal):
            rate, duration = float(c.rate_u_per_h), float(c.duration_min)
        elif isinstance(c, Suspend):
            rate, duration = 0.0, float(c.duration_min)
        elif isinstance(c, Resume):
            rate = RESUME
        elif isinstance(c, Bolus):
            bolus += float(c.bolus_u)
        else:
            raise AdapterError(f"the simulated pump cannot execute {type(c).__name__}")
    return rate, bolus, duration


class SubjectSupervision:
    """The per-subject supervisor for a chunk (one supervisor state per subject)."""

    def __init__(self, settings: Sequence[TherapySettings]) -> None:
        from safety.supervisor import PumpState, SupervisorState

        self.settings = tuple(settings)
        self.states = [SupervisorState() for _ in settings]
        self._pump_state = PumpState
        self._counts: dict[str, np.ndarray] = {}

    def step_subject(self, i: int, proposal, snapshot, *, occluded: bool = False) -> tuple[float, float, float]:
        """Supervise subject ``i``'s proposal; returns the pump numbers (:func:`unwrap`). Each reason counts once
        per decision."""
        from safety.supervisor import SupervisorContext, supervise

        pump = self._pump_state(occluded=bool(occluded))
        verdict = supervise(proposal, SupervisorContext(snapshot, pump=pump, state=self.states[i]))
        self.states[i] = verdict.state
        for name in sorted({iv.reason.name for iv in verdict.interventions}):
            self._counts.setdefault(name, np.zeros(len(self.settings), dtype=np.int64))[i] += 1
        return unwrap(verdict.commands)

    def counts(self) -> dict[str, np.ndarray]:
        return dict(self._counts)


class BatchSupervision:
    """The vectorized supervisor for a chunk (:func:`safety.supervisor_batch.supervise_batch`).

    It keeps what the batch supervisor needs between decisions: the last hour of CGM readings (13 five-minute
    samples), the 24-hour net insulin total, the low-glucose-suspend state and the times of the last valid reading
    and of the last automatic bolus. A baseline's "no basal command" (NaN) means "programmed basal" and comes back as
    :data:`RESUME`.
    """

    WINDOW = 13

    def __init__(self, settings: Sequence[TherapySettings]) -> None:
        from safety.supervisor import Reason
        from safety.supervisor_batch import cohort_settings

        self.n = len(settings)
        self.settings = tuple(settings)
        self.limits = cohort_settings(settings, 0.0)
        self.constant = all(len(x.basal_u_per_h.entries) == 1 and len(x.isf_mg_dl_per_u.entries) == 1
                            for x in settings)
        self.daily_basal_u = np.array([x.basal_u_per_h.daily_total() for x in settings])
        # the window is time-major (K, N), oldest row first, so a step shifts rows (no copy of the whole window)
        # and supervise_batch takes the transposed views without copying
        self.g = np.full((self.WINDOW, self.n), np.nan)
        self.t = np.full((self.WINDOW, self.n), np.nan)
        self.net_24h = np.zeros((self.n, 288))  # ring of the last 24 h of net insulin per 5 minutes
        self.net_24h_total = np.zeros(self.n)
        self._pos = 0
        self.lgs = np.zeros(self.n, dtype=bool)
        self.last_valid = np.full(self.n, np.nan)
        self.last_auto = np.full(self.n, np.nan)
        self._reasons = list(Reason)
        self._counts = np.zeros((len(self._reasons), self.n), dtype=np.int64)
        self._bits = np.array([1 << i for i in range(len(self._reasons))], dtype=np.int64)

    def step(self, proposal, inputs, *, cgm_mg_dl: np.ndarray, active_rate_u_per_h: np.ndarray,
             occluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Supervise one decision of every subject; returns (rate U/h with :data:`RESUME`, bolus U)."""
        from controller.baselines.common import insulin_on_board
        from safety.supervisor_batch import cohort_settings, supervise_batch

        now = float(inputs.now_min)
        self.g[:-1] = self.g[1:]
        self.t[:-1] = self.t[1:]
        ok = np.isfinite(cgm_mg_dl)
        self.g[-1] = cgm_mg_dl
        self.t[-1] = np.where(ok, now, np.nan)
        newest = inputs.net_insulin_u[:, 0]
        self.net_24h_total = self.net_24h_total + newest - self.net_24h[:, self._pos]
        self.net_24h[:, self._pos] = newest
        self._pos = (self._pos + 1) % self.net_24h.shape[1]
        limits = self.limits if self.constant else cohort_settings(self.settings, now)
        verdict = supervise_batch(
            now, proposal.rate_u_per_h, proposal.bolus_u, glucose_mg_dl=self.g.T, glucose_t_min=self.t.T,
            iob_u=insulin_on_board(inputs), delivered_24h_u=self.daily_basal_u + self.net_24h_total,
            lgs_active=self.lgs, bolus_automatic=~np.asarray(proposal.bolus_is_meal, dtype=bool),
            last_valid_reading_min=self.last_valid, last_auto_bolus_min=self.last_auto,
            active_rate_u_per_h=active_rate_u_per_h, pump_occluded=occluded, **limits)
        self.lgs = verdict.lgs_active
        self.last_valid = verdict.last_valid_reading_min
        self.last_auto = verdict.last_auto_bolus_min
        hit = np.flatnonzero(verdict.reasons)  # usually few subjects have an intervention
        if hit.size:
            self._counts[:, hit] += (verdict.reasons[hit][None, :] & self._bits[:, None]) != 0
        rate = np.where(np.isnan(verdict.rate_u_per_h), RESUME, verdict.rate_u_per_h)
        return rate, verdict.bolus_u

    def counts(self) -> dict[str, np.ndarray]:
        return {r.name: self._counts[j] for j, r in enumerate(self._reasons) if self._counts[j].any()}


def make_supervisor(settings: Sequence[TherapySettings], *, vectorized: bool):
    """The supervisor for a chunk: batch for vectorized controllers, per subject otherwise."""
    return BatchSupervision(settings) if vectorized else SubjectSupervision(settings)

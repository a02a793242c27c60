"""What the baseline controllers share: batch inputs and outputs, the insulin curve, the bolus wizard.

Every baseline decides on a :class:`BatchInputs` (arrays over N subjects, everything a real device sees) and
returns a :class:`BatchProposal`. The per-subject protocol method ``decide(state, snapshot)`` builds a one-subject
:class:`BatchInputs` from the snapshot with :func:`inputs_from_snapshot` and calls the same ``decide_batch``, so the
trial runner's vectorized path and the device path run the same arithmetic.

Insulin history is kept as net insulin (delivered minus scheduled basal) in 5-minute bins, newest first: bin ``j``
covers ``[now - 5 (j + 1), now - 5 j)`` and is treated as delivered at its middle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Mapping

import numpy as np

from safety.commands import Bolus, BolusKind, DeliveryStatus, Proposal, Resume, Suspend, TempBasal
from safety.settings import TherapySettings
from safety.snapshot import Snapshot

BIN_MIN = 5.0
HISTORY_BINS = 96
"""Insulin history length: 8 h of 5-minute bins (longer than any allowed duration of insulin action)."""

MAX_READING_AGE_MIN = 15.0
"""A CGM reading older than this is not used to raise insulin (Loop's rule)."""


class BaselineInputError(ValueError):
    """Inputs of a baseline decision have inconsistent shapes or impossible values."""


def _col(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


@dataclass
class BatchInputs:
    """Inputs of one decision for N subjects (arrays of shape (N,) unless stated; NaN = unknown).

    Attributes:
        now_min: decision time (absolute minutes), shared by all subjects.
        glucose_mg_dl: latest CGM reading.
        glucose_age_min: age of that reading (inf when there is none).
        delta_mg_dl: change over the last 5 minutes (mg/dL per 5 min).
        avg_delta_mg_dl: average 5-minute change over the last 15 minutes.
        net_insulin_u: (N, H) net insulin per 5-minute bin, newest first.
        meal_carbs_g: carbs announced since the previous decision (0 if none).
        basal_u_per_h, max_daily_basal_u_per_h, isf_mg_dl_per_u, carb_ratio_g_per_u, target_mg_dl,
        suspend_threshold_mg_dl, max_basal_u_per_h, max_bolus_u, max_iob_u, tdi_u, peak_min, dia_min:
            therapy settings in force now.
    """

    now_min: float
    glucose_mg_dl: np.ndarray
    glucose_age_min: np.ndarray
    delta_mg_dl: np.ndarray
    avg_delta_mg_dl: np.ndarray
    net_insulin_u: np.ndarray
    meal_carbs_g: np.ndarray
    basal_u_per_h: np.ndarray
    max_daily_basal_u_per_h: np.ndarray
    isf_mg_dl_per_u: np.ndarray
    carb_ratio_g_per_u: np.ndarray
    target_mg_dl: np.ndarray
    suspend_threshold_mg_dl: np.ndarray
    max_basal_u_per_h: np.ndarray
    max_bolus_u: np.ndarray
    max_iob_u: np.ndarray
    tdi_u: np.ndarray
    peak_min: np.ndarray
    dia_min: np.ndarray

    @property
    def n(self) -> int:
        return int(self.glucose_mg_dl.shape[0])

    def validate(self) -> None:
        """Raise :class:`BaselineInputError` on inconsistent shapes."""
        n = self.n
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.shape[0] != n:
                raise BaselineInputError(f"{f.name}: expected {n} rows, got shape {v.shape}")
        if self.net_insulin_u.ndim != 2:
            raise BaselineInputError("net_insulin_u: expected shape (N, H)")


@dataclass
class BatchProposal:
    """Decisions for N subjects.

    Attributes:
        rate_u_per_h: temporary basal rate (absolute, 30 minutes); NaN = run the programmed basal.
        bolus_u: bolus to give now (0 = none).
        bolus_is_meal: whether the bolus covers announced carbs (MEAL) or is a correction.
        reason_code: index into the controller's ``REASONS``.
        eventual_bg_mg_dl: the controller's forecast (NaN when it makes none).
    """

    rate_u_per_h: np.ndarray
    bolus_u: np.ndarray
    bolus_is_meal: np.ndarray
    reason_code: np.ndarray
    eventual_bg_mg_dl: np.ndarray = field(default_factory=lambda: np.zeros(0))


# -- insulin action (exponential curve of oref0/Loop) ------------------------------------------------------

def _curve_constants(peak_min: np.ndarray, dia_min: np.ndarray):
    tp = np.asarray(peak_min, dtype=float)
    td = np.asarray(dia_min, dtype=float)
    tau = tp * (1.0 - tp / td) / (1.0 - 2.0 * tp / td)
    a = 2.0 * tau / td
    s = 1.0 / (1.0 - a + (1.0 + a) * np.exp(-td / tau))
    return tau, a, s, td


def iob_fraction(t_min, peak_min, dia_min) -> np.ndarray:
    """Fraction of a dose still on board ``t_min`` after it (1 at 0, 0 at DIA and after); broadcasts."""
    tau, a, s, td = _curve_constants(peak_min, dia_min)
    t = np.clip(np.asarray(t_min, dtype=float), 0.0, None)
    frac = 1.0 - s * (1.0 - a) * ((t * t / (tau * td * (1.0 - a)) - t / tau - 1.0) * np.exp(-t / tau) + 1.0)
    return np.where(t >= td, 0.0, np.clip(frac, 0.0, 1.0))


def activity_per_min(t_min, peak_min, dia_min) -> np.ndarray:
    """Fraction of a dose acting per minute ``t_min`` after it (integrates to 1 over DIA); broadcasts."""
    tau, a, s, td = _curve_constants(peak_min, dia_min)
    t = np.clip(np.asarray(t_min, dtype=float), 0.0, None)
    act = s / (tau * tau) * t * (1.0 - t / td) * np.exp(-t / tau)
    return np.where(t >= td, 0.0, np.clip(act, 0.0, None))


def _bin_ages(h: int) -> np.ndarray:
    return (np.arange(h) + 0.5) * BIN_MIN


_IOB_CACHE: dict[tuple[bytes, bytes, int], np.ndarray] = {}


def _iob_weights(peak_min: np.ndarray, dia_min: np.ndarray, h: int) -> np.ndarray:
    """IOB fraction of every history bin for every subject, (N, H); cached (a cohort's curves do not change)."""
    key = (np.ascontiguousarray(peak_min).tobytes(), np.ascontiguousarray(dia_min).tobytes(), h)
    w = _IOB_CACHE.get(key)
    if w is None:
        if len(_IOB_CACHE) > 8:
            _IOB_CACHE.clear()
        w = iob_fraction(_bin_ages(h)[None, :], np.asarray(peak_min)[:, None], np.asarray(dia_min)[:, None])
        _IOB_CACHE[key] = w
    return w


def insulin_on_board(inputs: BatchInputs) -> np.ndarray:
    """Net insulin on board (U), shape (N,)."""
    w = _iob_weights(inputs.peak_min, inputs.dia_min, inputs.net_insulin_u.shape[1])
    return np.einsum("nh,nh->n", inputs.net_insulin_u, w)


def insulin_activity_forecast(inputs: BatchInputs, steps: int) -> np.ndarray:
    """Net insulin activity (U/min) now and at each of the next ``steps - 1`` 5-minute steps, shape (N, steps)."""
    ages = _bin_ages(inputs.net_insulin_u.shape[1])
    future = ages[None, :, None] + BIN_MIN * np.arange(steps)[None, None, :]
    act = activity_per_min(future, inputs.peak_min[:, None, None], inputs.dia_min[:, None, None])
    return np.einsum("nh,nhk->nk", inputs.net_insulin_u, act)


# -- bolus wizard (the person's own meal bolus) ------------------------------------------------------------

def wizard_bolus_u(inputs: BatchInputs, iob_u: np.ndarray) -> np.ndarray:
    """Standard pump bolus wizard for the carbs announced now, U (0 where nothing was announced).

    meal part = carbs / CR; correction = (G - target) / ISF, reduced by IOB when positive (never below 0), and a
    negative correction (G below target) reduces the meal part. No correction without a fresh CGM reading.
    """
    carbs = inputs.meal_carbs_g
    meal = carbs / inputs.carb_ratio_g_per_u
    total = np.where(carbs > 0.0, np.maximum(meal + wizard_correction_u(inputs, iob_u), 0.0), 0.0)
    return np.minimum(total, inputs.max_bolus_u)


def wizard_correction_u(inputs: BatchInputs, iob_u: np.ndarray) -> np.ndarray:
    """The bolus wizard's correction, U: (G - target) / ISF with a fresh CGM reading (0 without one); a positive
    correction is reduced by insulin on board (never below 0), a negative one is kept (it reduces a meal bolus)."""
    corr = np.where(fresh_mask(inputs), (inputs.glucose_mg_dl - inputs.target_mg_dl) / inputs.isf_mg_dl_per_u, 0.0)
    return np.where(corr > 0.0, np.maximum(corr - np.maximum(iob_u, 0.0), 0.0), corr)


# -- from a snapshot (device path) ------------------------------------------------------------------------

def settings_columns(settings: TherapySettings, now_min: float, n: int = 1) -> dict[str, np.ndarray]:
    """Therapy settings in force at ``now_min`` as (n,) columns (the keys of :class:`BatchInputs`)."""
    return {
        "basal_u_per_h": _col(n, settings.basal_at(now_min)),
        "max_daily_basal_u_per_h": _col(n, settings.basal_u_per_h.max_value),
        "isf_mg_dl_per_u": _col(n, settings.isf_at(now_min)),
        "carb_ratio_g_per_u": _col(n, settings.carb_ratio_at(now_min)),
        "target_mg_dl": _col(n, settings.target_mg_dl),
        "suspend_threshold_mg_dl": _col(n, settings.suspend_threshold_mg_dl),
        "max_basal_u_per_h": _col(n, settings.max_basal_u_per_h),
        "max_bolus_u": _col(n, settings.max_bolus_u),
        "max_iob_u": _col(n, settings.max_iob_u),
        "tdi_u": _col(n, settings.total_daily_insulin_u),
        "peak_min": _col(n, settings.insulin_curve.peak_min),
        "dia_min": _col(n, settings.insulin_curve.duration_min),
    }


def _reading_at(readings, t_min: float, tol_min: float = 2.5) -> float:
    best, best_dt = math.nan, tol_min
    for r in readings:
        dt = abs(r.t_min - t_min)
        if dt <= best_dt and r.is_numeric:
            best, best_dt = r.glucose_mg_dl, dt
    return best


def inputs_from_snapshot(snapshot: Snapshot, last_now_min: float) -> BatchInputs:
    """One-subject :class:`BatchInputs` from a snapshot; meals announced after ``last_now_min`` count as new.

    Failed deliveries are left out; commanded and uncertain ones count (assume delivered: the safe side for IOB).
    Readings later than ``now`` are ignored; duplicated readings change nothing.
    """
    now = snapshot.now_min
    s = snapshot.settings
    readings = [r for r in snapshot.readings if r.t_min <= now + 1e-9 and r.is_numeric]
    if readings:
        last = max(readings, key=lambda r: r.t_min)
        g, t_g = last.glucose_mg_dl, last.t_min
        g5, g15 = _reading_at(readings, t_g - 5.0), _reading_at(readings, t_g - 15.0)
        delta = g - g5
        avg = (g - g15) / 3.0 if math.isfinite(g15) else delta
    else:
        g, t_g, delta, avg = math.nan, -math.inf, math.nan, math.nan
    net = np.zeros(HISTORY_BINS)
    horizon = now - HISTORY_BINS * BIN_MIN
    for d in snapshot.deliveries:
        if d.status is DeliveryStatus.FAILED or d.amount_u <= 0.0 or d.end_min < horizon or d.start_min > now:
            continue
        if d.end_min <= d.start_min:  # bolus
            j = int((now - d.start_min) // BIN_MIN)
            if 0 <= j < HISTORY_BINS:
                net[j] += d.amount_u
            continue
        rate = d.amount_u / (d.end_min - d.start_min)
        for j in range(HISTORY_BINS):
            lo, hi = now - BIN_MIN * (j + 1), now - BIN_MIN * j
            overlap = min(hi, d.end_min) - max(lo, d.start_min)
            if overlap > 0:
                net[j] += rate * overlap
    for j in range(HISTORY_BINS):
        net[j] -= s.basal_at(now - BIN_MIN * (j + 0.5)) * BIN_MIN / 60.0
    carbs = sum(m.carbs_g for m in {(m.entry_id or id(m)): m for m in snapshot.meals}.values()
                if last_now_min < m.announced_at_min <= now)
    return BatchInputs(
        now_min=now,
        glucose_mg_dl=_col(1, g),
        glucose_age_min=_col(1, now - t_g),
        delta_mg_dl=_col(1, delta),
        avg_delta_mg_dl=_col(1, avg),
        net_insulin_u=net[None, :],
        meal_carbs_g=_col(1, carbs),
        **settings_columns(s, now),
    )


def state_to_arrays(state: Mapping[str, float]) -> dict[str, np.ndarray]:
    return {k: np.array([float(v)]) for k, v in state.items()}


def arrays_to_state(arrays: Mapping[str, np.ndarray], i: int = 0) -> dict[str, float]:
    return {k: float(v[i]) for k, v in arrays.items()}


def to_proposal(batch: BatchProposal, i: int, now_min: float, reasons: tuple[str, ...], name: str,
                detail: str = "") -> Proposal:
    """The i-th subject's decision as a :class:`Proposal` (rate NaN -> Resume, 0 -> Suspend, else TempBasal)."""
    rate = float(batch.rate_u_per_h[i])
    if math.isnan(rate):
        basal = Resume()
    elif rate <= 0.0:
        basal = Suspend()
    else:
        basal = TempBasal(rate)
    bolus_u = float(batch.bolus_u[i])
    bolus = None
    if bolus_u > 0.0:
        bolus = Bolus(bolus_u, BolusKind.MEAL if bool(batch.bolus_is_meal[i]) else BolusKind.CORRECTION)
    reason = reasons[int(batch.reason_code[i])]
    eventual = batch.eventual_bg_mg_dl
    est = {"eventual_bg_mg_dl": float(eventual[i])} if eventual.size and math.isfinite(eventual[i]) else {}
    return Proposal(now_min=now_min, basal=basal, bolus=bolus, estimated_state=est,
                    reason=f"{reason}{'; ' + detail if detail else ''}", controller=name)


def fresh_mask(inputs: BatchInputs) -> np.ndarray:
    """Subjects with a usable CGM reading (numeric and at most 15 minutes old)."""
    return np.isfinite(inputs.glucose_mg_dl) & (inputs.glucose_age_min <= MAX_READING_AGE_MIN)


__all__ = [
    "BIN_MIN", "HISTORY_BINS", "BatchInputs", "BatchProposal", "BaselineInputError", "iob_fraction",
    "activity_per_min", "insulin_on_board", "insulin_activity_forecast", "wizard_bolus_u", "wizard_correction_u",
    "settings_columns", "inputs_from_snapshot", "to_proposal", "fresh_mask",
]

"""The personal twin: the control twin (:mod:`patient_model.bergman_twin`) with the parameters a patient's own data
can identify, used to reproduce that patient and to test other therapies on them.

On top of the control twin's equations it adds

* glucose effectiveness towards a basal glucose: ``dG/dt += -sg * (G - gb)`` (so open-loop predictions over days stay
  bounded, as in Bergman's minimal model);
* insulin sensitivity by time of day: the sensitivity multiplier ``S`` follows four blocks (00-06, 06-11, 11-17,
  17-24 h local time);
* carbohydrate factor and absorption time by meal (breakfast, lunch, dinner, snack): an entry of ``c`` grams puts
  ``factor_meal * c`` grams into the gut, absorbed with ``tau_m`` of that meal;
* the insulin action time constants ``tau_i`` and ``1/p2``.

All parameters are positive; the fit works on their logarithms. Numbers only: no I/O, no clock, no other package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from patient_model import bergman_twin as bt

NAME = "bergman"
BASE_TYPE = bt.TwinParams
"""What the twin does not fit (the control twin's parameters from the programmed therapy); ``from_dict`` reads it."""
ISF_BLOCKS_H: tuple[tuple[float, float], ...] = ((0, 6), (6, 11), (11, 17), (17, 24))
MEAL_TYPES: tuple[str, ...] = ("breakfast", "lunch", "dinner", "snack")
FIT_PARAM_NAMES: tuple[str, ...] = (
    tuple(f"isf_mult_{a:02d}_{b:02d}" for a, b in ISF_BLOCKS_H)
    + tuple(f"carb_factor_{m}" for m in MEAL_TYPES)
    + tuple(f"meal_tau_min_{m}" for m in MEAL_TYPES)
    + ("basal_glucose_mg_dl", "glucose_effectiveness_per_min", "insulin_tau_min", "action_tau_min",
       "slow_action_tau_min", "slow_action_odds")
)
N_FIT = len(FIT_PARAM_NAMES)
I_ISF = slice(0, 4)
I_CF = slice(4, 8)
I_TAU_M = slice(8, 12)
I_GB, I_SG, I_TAU_I, I_TAU_X, I_TAU_X2, I_FRAC2 = 12, 13, 14, 15, 16, 17

PRIOR_MEAN: tuple[float, ...] = ((1.0,) * 4 + (1.0,) * 4 + (40.0, 40.0, 45.0, 30.0)
                                 + (140.0, 0.004, 37.5, 37.5, 150.0, 0.667))
"""Prior medians: settings are right on average; absorption ~40 min; gb near the upper target; sg ~0.004/min;
40 % of insulin's effect (odds 0.667) through a slow (hepatic, ~150 min) path."""

PRIOR_GROUPS: tuple[tuple[slice, float, float], ...] = ()
"""Optional hierarchical prior of grouped parameters: ``(members, common log-SD, own log-SD)`` makes
log theta_j = common + own_j (correlated within the group). Empty: independent priors. (A wide common component for
the ISF and carb-factor groups was tried in the validation and did not predict better; see docs/twin-fit.md.)"""
PRIOR_LOG_SD: tuple[float, ...] = (0.35,) * 4 + (0.3,) * 4 + (0.4,) * 4 + (0.25, 0.6, 0.3, 0.3, 0.4, 0.4)
"""Marginal prior spread (SD of the natural log) of every parameter."""


def prior_log_cov() -> np.ndarray:
    """Covariance of the log-normal prior (grouped parameters share a common component)."""
    sd = np.array(PRIOR_LOG_SD)
    cov = np.diag(sd ** 2)
    for members, common, own in PRIOR_GROUPS:
        idx = np.arange(members.start, members.stop)
        cov[np.ix_(idx, idx)] = common ** 2
        cov[idx, idx] = common ** 2 + own ** 2      # PRIOR_LOG_SD of members should be hypot(common, own)
    return cov


def prior_sqrt_information(base: Any = None) -> np.ndarray:
    """``W`` with ``W.T @ W = inv(prior_log_cov())``: the prior's residuals are ``W @ (log theta - log PRIOR_MEAN)``.
    (``base`` is ignored: this twin's prior does not depend on the patient.)"""
    return np.linalg.cholesky(np.linalg.inv(prior_log_cov())).T


def prior(base: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Prior medians (natural units) and marginal log-SDs of the fit parameters."""
    return np.array(PRIOR_MEAN), np.array(PRIOR_LOG_SD)


def log_bounds(base: Any, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of log(theta): ``width`` either side of the prior median."""
    mu = np.log(np.array(PRIOR_MEAN))
    return mu - width, mu + width


N_TWIN_STATES = bt.N_STATES + 1
IDX_X2 = bt.N_STATES
"""The personal twin's state: the control twin's 8 states plus the slow insulin action ``X2`` (1/min)."""

DT_MIN = 5.0


def isf_block(t_min: float | np.ndarray) -> np.ndarray:
    """Index (0-3) of the time-of-day sensitivity block for absolute minutes ``t_min`` (minute 0 = local midnight)."""
    hour = (np.asarray(t_min, dtype=float) % 1440.0) / 60.0
    return np.searchsorted(np.array([b for _, b in ISF_BLOCKS_H[:-1]], dtype=float), hour, side="right")


def meal_type(t_min: float, carbs_g: float) -> int:
    """Meal category (index into :data:`MEAL_TYPES`) of an entry by local time and size: small entries are snacks."""
    hour = (t_min % 1440.0) / 60.0
    if carbs_g < 20.0:
        return 3
    if 4.0 <= hour < 10.5:
        return 0
    if 10.5 <= hour < 15.5:
        return 1
    if 15.5 <= hour < 22.0:
        return 2
    return 3


def carb_grid(t0_min: float, carb_entries: Sequence[tuple[float, float]], n_steps: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Carb entries ``(t_min, carbs_g)`` on the 5-minute grid from ``t0_min``: grams entered per step, the meal type
    of each step's carbs, and the meal type whose absorption applies during each step (the most recent meal)."""
    carbs = np.zeros(n_steps)
    meal = np.zeros(n_steps, dtype=int)
    for t, c in carb_entries:
        k = int((t - t0_min) // DT_MIN)
        if 0 <= k < n_steps and c > 0:
            carbs[k] += c
            meal[k] = meal_type(t, c)
    current = np.zeros(n_steps, dtype=int)
    last = 1
    for k in range(n_steps):
        if carbs[k] > 0:
            last = meal[k]
        current[k] = last
    return carbs, meal, current


@dataclass(frozen=True)
class TwinInputs:
    """Inputs of a twin simulation on the 5-minute grid ``t0_min + k * 5``.

    Attributes:
        t0_min: time of the first grid point (absolute minutes, local).
        insulin_u_per_min: mean delivered insulin over each step, U/min, shape (K,).
        carbs_g: carbohydrate entered at the start of each step, g, shape (K,).
        meal_index: meal type of the carbs of each step (0-3; ignored where carbs_g == 0), shape (K,).
        current_meal: meal type whose absorption time applies during each step (most recent meal), shape (K,).
    """

    t0_min: float
    insulin_u_per_min: np.ndarray
    carbs_g: np.ndarray
    meal_index: np.ndarray
    current_meal: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.insulin_u_per_min.shape[0])

    @classmethod
    def from_minutes(cls, t0_min: float, insulin_u_per_min: np.ndarray, carb_entries: Sequence[tuple[float, float]],
                     n_steps: int) -> "TwinInputs":
        """Aggregate per-minute insulin (from ``t0_min``) and carb entries ``(t_min, carbs_g)`` onto the grid."""
        per_min = np.asarray(insulin_u_per_min, dtype=float)[: n_steps * 5]
        if per_min.size < n_steps * 5:
            per_min = np.concatenate([per_min, np.full(n_steps * 5 - per_min.size, per_min[-1] if per_min.size else 0)])
        ins = per_min.reshape(n_steps, 5).mean(axis=1)
        return cls(float(t0_min), ins, *carb_grid(t0_min, carb_entries, n_steps))


def base_twin_params(basal_u_per_h: float, isf_mg_dl_per_u: float, carb_ratio_g_per_u: float,
                     target_mg_dl: float, weight_kg: float = 70.0, tdi_u: float = 40.0) -> bt.TwinParams:
    """The control twin's parameters from the programmed (mean) therapy settings."""
    return bt.TwinParams.from_settings(weight_kg, tdi_u, basal_u_per_h, isf_mg_dl_per_u, carb_ratio_g_per_u,
                                       target_mg_dl)


def step_vector(base: bt.TwinParams, theta: Any, current_meal_onehot: Any) -> list[Any]:
    """Control-twin parameter vector for one step given fit parameters ``theta`` (natural units, not logs)."""
    tau_m = sum(current_meal_onehot[j] * theta[I_TAU_M.start + j] for j in range(4))
    return [base.target_mg_dl, base.basal_u_per_min, base.sx_per_u, 1.0 / theta[I_TAU_X], theta[I_TAU_I], tau_m,
            base.kc_mg_dl_per_g, base.disturbance_tau_min]


def rhs(x: Any, u: Any, p: Any, q: Any) -> list[Any]:
    """Personal-twin derivatives (generic over NumPy/CasADi); ``q = (gb, sg, tau_x2, frac2)``.

    The control twin's equations, with insulin acting through a fast, glucose-proportional path (Bergman's
    ``X G``, weight ``1 - frac2``) and a slow path ``X2`` (weight ``frac2``, like the suppression of hepatic
    production), plus glucose effectiveness towards ``gb``::

        dG/dt  = -S ((1 - frac2) X G + frac2 X2 Gref) + kc Qgut2 / tau_m + D - sg (G - gb)
        dX2/dt = (Sx (Isc2 / tau_i - ub) - X2) / tau_x2
    """
    gb, sg, tau_x2, frac2 = q[0], q[1], q[2], q[3]
    d = bt.rhs(x, u, p)
    g, xa, s, x2 = x[bt.IDX_G], x[bt.IDX_X], x[bt.IDX_S], x[IDX_X2]
    gref, ub, sx, tau_i = p[0], p[1], p[2], p[4]
    # bt.rhs already holds -S X Gref; replace it by the weighted fast and slow paths.
    d[bt.IDX_G] = (d[bt.IDX_G] + s * xa * gref - s * ((1.0 - frac2) * xa * g + frac2 * x2 * gref)
                   - sg * (g - gb))
    d.append((sx * (x[bt.IDX_ISC2] / tau_i - ub) - x2) / tau_x2)
    return d


def rk4(x: Any, u: Any, p: Any, q: Any, stack: Any) -> Any:
    h = DT_MIN
    k1 = stack(rhs(x, u, p, q))
    k2 = stack(rhs(x + 0.5 * h * k1, u, p, q))
    k3 = stack(rhs(x + 0.5 * h * k2, u, p, q))
    k4 = stack(rhs(x + h * k3, u, p, q))
    return x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def global_vector(theta: Any) -> list[Any]:
    """``q = (gb, sg, tau_x2, frac2)`` from the fit parameters; ``frac2 = odds / (1 + odds)`` stays in (0, 1)."""
    odds = theta[I_FRAC2]
    return [theta[I_GB], theta[I_SG], theta[I_TAU_X2], odds / (1.0 + odds)]


def initial_state(base: bt.TwinParams, theta: np.ndarray, glucose_mg_dl: float) -> np.ndarray:
    """State at the programmed basal with glucose ``glucose_mg_dl`` and no carbs on board."""
    isc = base.basal_u_per_min * float(theta[I_TAU_I])
    return np.array([glucose_mg_dl, 0.0, isc, isc, 0.0, 0.0, 0.0, 1.0, 0.0])


def simulate(base: bt.TwinParams, theta: np.ndarray, inputs: TwinInputs, x0: np.ndarray) -> np.ndarray:
    """NumPy simulation; returns the state at every grid point, shape (K + 1, 8)."""
    theta = np.asarray(theta, dtype=float)
    stack = lambda v: np.array(v, dtype=float)  # noqa: E731
    out = np.empty((inputs.n_steps + 1, N_TWIN_STATES))
    x = np.asarray(x0, dtype=float).copy()
    out[0] = x
    blocks = isf_block(inputs.t0_min + DT_MIN * np.arange(inputs.n_steps))
    eye = np.eye(4)
    for k in range(inputs.n_steps):
        x = x.copy()
        x[bt.IDX_S] = theta[I_ISF][blocks[k]]
        if inputs.carbs_g[k] > 0:
            x[bt.IDX_Q1] += inputs.carbs_g[k] * theta[I_CF][inputs.meal_index[k]]
        p = step_vector(base, theta, eye[inputs.current_meal[k]])
        x = rk4(x, inputs.insulin_u_per_min[k], p, global_vector(theta), stack)
        out[k + 1] = x
    return out


def casadi_trajectory(base: bt.TwinParams, th: Any, inputs: TwinInputs, x0_glucose: float,
                      carb_scale_row: Any = None) -> Any:
    """CasADi graph of the trajectory (states x steps) as a function of the symbolic parameters ``th`` (natural
    units); ``carb_scale_row`` (1 x K) optionally multiplies each step's carbs (per-entry random effects)."""
    import casadi as ca

    n_steps = inputs.n_steps
    x = ca.SX.sym("x", N_TWIN_STATES)
    d = ca.SX.sym("d", 4)      # u, effective carbs impulse (g), S, tau_m
    q = ca.SX.sym("q", 6)      # tau_i, tau_x, gb, sg, tau_x2, frac2
    xs = ca.vertcat(x[0], x[1], x[2], x[3], x[4] + d[1], x[5], x[6], d[2], x[8])
    p = [base.target_mg_dl, base.basal_u_per_min, base.sx_per_u, 1.0 / q[1], q[0], d[3],
         base.kc_mg_dl_per_g, base.disturbance_tau_min]
    xn = rk4(xs, d[0], p, [q[2], q[3], q[4], q[5]], lambda v: ca.vertcat(*v))
    sim = ca.Function("step", [x, d, q], [xn]).mapaccum("sim", n_steps)
    block = isf_block(inputs.t0_min + DT_MIN * np.arange(n_steps))
    s_row = ca.mtimes(ca.DM(np.eye(4)[block]), th[I_ISF]).T
    cf_row = (ca.DM(inputs.carbs_g).T) * ca.mtimes(ca.DM(np.eye(4)[inputs.meal_index]), th[I_CF]).T
    if carb_scale_row is not None:
        cf_row = cf_row * carb_scale_row
    tau_row = ca.mtimes(ca.DM(np.eye(4)[inputs.current_meal]), th[I_TAU_M]).T
    drows = ca.vertcat(ca.DM(inputs.insulin_u_per_min).T, cf_row, s_row, tau_row)
    isc = base.basal_u_per_min * th[I_TAU_I]
    x0 = ca.vertcat(x0_glucose, 0, isc, isc, 0, 0, 0, 1, 0)
    glob = global_vector(th)
    q_val = ca.vertcat(th[I_TAU_I], th[I_TAU_X], glob[0], glob[1], glob[2], glob[3])
    return sim(x0, drows, q_val)

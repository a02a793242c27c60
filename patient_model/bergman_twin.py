"""The control twin: a Bergman-style minimal model of type 1 diabetes, parameterised from therapy settings only.

States (index, name, unit)::

    0  G      glucose                                   mg/dL
    1  X      remote insulin action (deviation from basal)  1/min
    2  Isc1   subcutaneous insulin, first compartment   U   (deviation-free: absolute units in the depot)
    3  Isc2   subcutaneous insulin, second compartment  U
    4  Qgut1  carbohydrate in the gut, first compartment  g
    5  Qgut2  carbohydrate in the gut, second compartment g
    6  D      unexplained glucose flux (meal/disturbance)  mg/dL/min
    7  S      insulin-sensitivity multiplier            1 (nominal 1)

Inputs: ``u`` insulin infusion (U/min); announced carbohydrate enters ``Qgut1`` as an impulse (g) at the start of
a step.

Equations (``Gref`` = correction target, ``ub`` = scheduled basal in U/min)::

    dG/dt     = -S * X * Gref + kc * Qgut2 / tau_m + D
    dX/dt     = p2 * (Sx * (Isc2 / tau_i - ub) - X)
    dIsc1/dt  = u - Isc1 / tau_i
    dIsc2/dt  = (Isc1 - Isc2) / tau_i
    dQgut1/dt = -Qgut1 / tau_m
    dQgut2/dt = (Qgut1 - Qgut2) / tau_m
    dD/dt     = -D / tau_d
    dS/dt     = 0

Parameter derivation (all from what a clinic knows):

* ``Sx = ISF / Gref`` (1/U): one extra unit moves ``integral(X dt)`` by ``Sx``, hence glucose by
  ``-S * Gref * Sx = -ISF`` mg/dL at steady state (S = 1).
* ``kc = ISF / CR`` (mg/dL per g): every gram absorbed raises glucose by ``ISF / CR``.
* At the scheduled basal, ``Isc1 = Isc2 = ub * tau_i`` and ``X = 0``, so every glucose level, in particular the
  target, is an equilibrium (the T1D twin has no endogenous glucose regulation; mismatch is taken up by ``D``).
* ``tau_i = 1 / p2 = peak / 2``: the three-stage insulin chain then has its action peak at the insulin curve's
  peak time (75 min for rapid-acting insulin) and 99 % of its effect within ~8.4 tau_i (~5.3 h).
* Optionally (``isf_rule_mg_dl``, e.g. 1800) the twin's ISF is at least ``rule / TDI``: clinic correction factors
  are often lower than the total daily insulin implies, and a twin that assumes insulin weaker than it is
  over-corrects. Weight is kept for display.

The right-hand side :func:`rhs` is generic over the maths backend: it works on NumPy arrays and on CasADi SX/MX
symbols (it only uses arithmetic and indexing), so the UKF (NumPy) and the MPC (CasADi) share one model.
This module imports no other package of the project.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

STATE_NAMES: tuple[str, ...] = (
    "glucose_mg_dl",
    "insulin_action_per_min",
    "insulin_sc1_u",
    "insulin_sc2_u",
    "carbs_gut1_g",
    "carbs_gut2_g",
    "disturbance_mg_dl_per_min",
    "sensitivity_multiplier",
)
N_STATES = len(STATE_NAMES)
IDX_G, IDX_X, IDX_ISC1, IDX_ISC2, IDX_Q1, IDX_Q2, IDX_D, IDX_S = range(N_STATES)

PARAM_NAMES: tuple[str, ...] = ("gref", "ub", "sx", "p2", "tau_i", "tau_m", "kc", "tau_d")
"""Order of the numeric parameter vector used by :func:`rhs` (see :meth:`TwinParams.vector`)."""
N_PARAMS = len(PARAM_NAMES)


class TwinParameterError(ValueError):
    """A therapy setting cannot parameterise the twin (non-positive or non-finite)."""


@dataclass(frozen=True, slots=True)
class TwinParams:
    """Numeric parameters of the twin (units in names).

    Attributes:
        target_mg_dl: reference glucose ``Gref`` at which ISF applies (the correction target).
        basal_u_per_min: scheduled basal ``ub``.
        isf_mg_dl_per_u: insulin sensitivity factor.
        carb_ratio_g_per_u: carb ratio.
        insulin_tau_min: subcutaneous insulin time constant ``tau_i``.
        action_tau_min: remote insulin action time constant ``1/p2``.
        meal_tau_min: gut absorption time constant ``tau_m``.
        disturbance_tau_min: decay time of the unexplained flux ``D`` in predictions.
        weight_kg: body weight (display/priors).
        tdi_u: total daily insulin (display/priors).
    """

    target_mg_dl: float
    basal_u_per_min: float
    isf_mg_dl_per_u: float
    carb_ratio_g_per_u: float
    insulin_tau_min: float = 37.5
    action_tau_min: float = 37.5
    meal_tau_min: float = 40.0
    disturbance_tau_min: float = 45.0
    weight_kg: float = 70.0
    tdi_u: float = 40.0

    @classmethod
    def from_settings(
        cls,
        weight_kg: float,
        tdi_u: float,
        basal_u_per_h: float,
        isf_mg_dl_per_u: float,
        carb_ratio_g_per_u: float,
        target_mg_dl: float = 110.0,
        insulin_peak_min: float = 75.0,
        meal_tau_min: float = 40.0,
        disturbance_tau_min: float = 45.0,
        isf_rule_mg_dl: float | None = None,
        action_tau_factor: float = 1.0,
    ) -> "TwinParams":
        """Twin parameters from therapy settings (plain floats; see the module docstring for the derivation).

        ``isf_rule_mg_dl`` (e.g. 1800, the "1800 rule"): when given, the twin's ISF is the larger of the programmed
        ISF and ``isf_rule_mg_dl / tdi_u``, so the twin never assumes insulin weaker than either estimate (the safe
        side for corrections; the carb gain ``ISF / CR`` follows, so carbs and their bolus stay balanced).
        ``action_tau_factor`` stretches the remote insulin action (``1/p2 = factor * tau_i``; 1 puts the action peak
        at the insulin curve's peak, larger values give a longer tail, e.g. for children's insulin).

        Raises:
            TwinParameterError: a value is not finite or not positive (basal may be zero).
        """
        values = {
            "weight_kg": weight_kg, "tdi_u": tdi_u, "isf_mg_dl_per_u": isf_mg_dl_per_u,
            "carb_ratio_g_per_u": carb_ratio_g_per_u, "target_mg_dl": target_mg_dl,
            "insulin_peak_min": insulin_peak_min, "meal_tau_min": meal_tau_min,
            "disturbance_tau_min": disturbance_tau_min, "action_tau_factor": action_tau_factor,
        }
        for name, value in values.items():
            if not np.isfinite(value) or value <= 0.0:
                raise TwinParameterError(f"{name} must be finite and > 0, got {value!r}")
        if not np.isfinite(basal_u_per_h) or basal_u_per_h < 0.0:
            raise TwinParameterError(f"basal_u_per_h must be finite and >= 0, got {basal_u_per_h!r}")
        tau = insulin_peak_min / 2.0
        if isf_rule_mg_dl is not None:
            if not np.isfinite(isf_rule_mg_dl) or isf_rule_mg_dl <= 0.0:
                raise TwinParameterError(f"isf_rule_mg_dl must be finite and > 0, got {isf_rule_mg_dl!r}")
            isf_mg_dl_per_u = max(isf_mg_dl_per_u, isf_rule_mg_dl / tdi_u)
        return cls(
            target_mg_dl=float(target_mg_dl),
            basal_u_per_min=float(basal_u_per_h) / 60.0,
            isf_mg_dl_per_u=float(isf_mg_dl_per_u),
            carb_ratio_g_per_u=float(carb_ratio_g_per_u),
            insulin_tau_min=float(tau),
            action_tau_min=float(tau * action_tau_factor),
            meal_tau_min=float(meal_tau_min),
            disturbance_tau_min=float(disturbance_tau_min),
            weight_kg=float(weight_kg),
            tdi_u=float(tdi_u),
        )

    @property
    def sx_per_u(self) -> float:
        """Insulin action gain ``Sx`` (1/U)."""
        return self.isf_mg_dl_per_u / self.target_mg_dl

    @property
    def kc_mg_dl_per_g(self) -> float:
        """Glucose rise per gram absorbed (mg/dL per g)."""
        return self.isf_mg_dl_per_u / self.carb_ratio_g_per_u

    def vector(self) -> np.ndarray:
        """The numeric parameter vector in :data:`PARAM_NAMES` order."""
        return np.array([
            self.target_mg_dl, self.basal_u_per_min, self.sx_per_u, 1.0 / self.action_tau_min,
            self.insulin_tau_min, self.meal_tau_min, self.kc_mg_dl_per_g, self.disturbance_tau_min,
        ], dtype=float)

    def steady_state(self, glucose_mg_dl: float | None = None) -> np.ndarray:
        """Equilibrium at the scheduled basal: no carbs, no disturbance, S = 1."""
        g = self.target_mg_dl if glucose_mg_dl is None else float(glucose_mg_dl)
        isc = self.basal_u_per_min * self.insulin_tau_min
        return np.array([g, 0.0, isc, isc, 0.0, 0.0, 0.0, 1.0])

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TwinParams":
        return cls(**{k: float(v) for k, v in data.items()})


def rhs(x: Any, u: Any, p: Any) -> list[Any]:
    """Time derivative of the state (per minute), generic over NumPy arrays and CasADi symbols.

    Args:
        x: state (8), see :data:`STATE_NAMES`.
        u: insulin infusion, U/min (scalar).
        p: parameter vector in :data:`PARAM_NAMES` order (a NumPy array or CasADi vector).

    Returns:
        The 8 derivatives as a list (the caller stacks them with its own backend).
    """
    gref, ub, sx, p2, tau_i, tau_m, kc, tau_d = (p[i] for i in range(N_PARAMS))
    g, xa, i1, i2, q1, q2, d, s = (x[i] for i in range(N_STATES))
    del g
    return [
        -s * xa * gref + kc * q2 / tau_m + d,
        p2 * (sx * (i2 / tau_i - ub) - xa),
        u - i1 / tau_i,
        (i1 - i2) / tau_i,
        -q1 / tau_m,
        (q1 - q2) / tau_m,
        -d / tau_d,
        0.0 * s,
    ]


def rk4_step(x: Any, u: Any, p: Any, dt_min: Any, stack: Any = None) -> Any:
    """One classical Runge-Kutta 4 step of length ``dt_min`` (minutes) with ``u`` held constant.

    ``stack`` turns the list of derivatives into a vector of the caller's backend (``np.array`` by default,
    ``casadi.vertcat`` for symbols: pass ``lambda l: casadi.vertcat(*l)``).
    """
    if stack is None:
        stack = _np_stack
    k1 = stack(rhs(x, u, p))
    k2 = stack(rhs(x + 0.5 * dt_min * k1, u, p))
    k3 = stack(rhs(x + 0.5 * dt_min * k2, u, p))
    k4 = stack(rhs(x + dt_min * k3, u, p))
    return x + dt_min / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _np_stack(values: Sequence[Any]) -> np.ndarray:
    try:  # all scalars, or all arrays of one shape (sigma points): one call
        return np.array(values, dtype=float)
    except (ValueError, TypeError):  # scalars mixed with arrays
        return np.array([float(v) if np.ndim(v) == 0 else v for v in values], dtype=float)


def simulate(params: TwinParams, x0: np.ndarray, insulin_u_per_min: Sequence[float],
             carbs_g: Sequence[float] | None = None, dt_min: float = 5.0) -> np.ndarray:
    """Simulate the twin over ``len(insulin_u_per_min)`` steps (NumPy); returns states, shape (n + 1, 8).

    ``carbs_g[k]`` grams enter the gut at the start of step ``k``.
    """
    p = params.vector()
    n = len(insulin_u_per_min)
    out = np.empty((n + 1, N_STATES))
    x = np.asarray(x0, dtype=float).copy()
    out[0] = x
    for k in range(n):
        if carbs_g is not None and carbs_g[k]:
            x = x.copy()
            x[IDX_Q1] += carbs_g[k]
        x = rk4_step(x, float(insulin_u_per_min[k]), p, dt_min)
        out[k + 1] = x
    return out


def casadi_step_function(dt_min: float = 5.0, name: str = "twin_step") -> Any:
    """The RK4 step as a CasADi SX ``Function(x, u, p) -> x_next`` (imports casadi lazily)."""
    import casadi as ca

    x = ca.SX.sym("x", N_STATES)
    u = ca.SX.sym("u")
    p = ca.SX.sym("p", N_PARAMS)
    xn = rk4_step(x, u, p, dt_min, stack=lambda v: ca.vertcat(*v))
    return ca.Function(name, [x, u, p], [xn], ["x", "u", "p"], ["x_next"])


def eventual_glucose(x: Any, p: Any) -> Any:
    """Glucose once all insulin and carbs in the twin have acted, with basal thereafter (S held), D decaying.

    ``G + kc*(Q1+Q2) + D*tau_d - S*Gref*(Sx*(Isc1 + Isc2 - 2*ub*tau_i) + X/p2)``; works on NumPy and CasADi.
    """
    gref, ub, sx, p2, tau_i, tau_m, kc, tau_d = (p[i] for i in range(N_PARAMS))
    del tau_m
    g, xa, i1, i2, q1, q2, d, s = (x[i] for i in range(N_STATES))
    pending_action = sx * (i1 + i2 - 2.0 * ub * tau_i) + xa / p2
    return g + kc * (q1 + q2) + d * tau_d - s * gref * pending_action

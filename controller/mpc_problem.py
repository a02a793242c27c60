"""Construction of the MPC's nonlinear program in CasADi (SX, single shooting, code-generatable).

Decision variables ``w``: insulin rates (U/h) of ``len(move_blocks)`` move blocks covering the horizon
(``sum(move_blocks)`` steps of ``dt_min``), then an automatic bolus now (U; its upper bound is 0 when automatic
boluses are not allowed); only the first block (and the bolus) is applied, the rest shapes the plan.

Condensing: for a given initial state the twin is linear in the plan, so a separate SX function
(:func:`build_condenser`, a fixed-step RK4 rollout of the twin) gives the forecast ``G = a + B w`` and the eventual
glucose ``E = aE + bE w`` from the initial state (8), the twin parameters (8, see
:data:`patient_model.bergman_twin.PARAM_NAMES`) and the announced carbs entering the gut at each step. The NLP's
parameters ``p`` (layout in :class:`ParameterLayout`) are ``a, B, aE, bE``, the previous rate (U/h), the scheduled
basal (U/h) and the glucose targets (target, zone low, zone high, hypo threshold; mg/dL).

Cost (``h`` is a smooth hinge ``(x + sqrt(x^2 + eps^2)) / 2`` with eps = 2 mg/dL, glucose scaled by 1/50 mg/dL)::

    sum_k dt/60 * [ w_hi h(G_k - zone_hi)^2 + w_lo h(zone_lo - G_k)^2 + w_hypo h(hypo - Gp_k)^2 ]
  + w_eventual_hi h(E - target)^2 + w_eventual_lo h(target - E)^2          (E: eventual glucose at the horizon end)
  + w_u sum_j len_j dt/60 ((u_j - ub) / max(ub, 0.25 U/h))^2 + w_du ((u_0 - u_prev) / max(ub, 0.25))^2

``Gp`` is the forecast with the insulin sensitivity multiplied by ``hypo_sensitivity_factor`` and the carb gain by
``hypo_carb_factor`` (the patient may be more sensitive than the settings say: the hypo penalty is robust to that;
``kc = ISF / CR``, so such a patient also gains more per gram and a meal with its bolus is not a forecast low).
Hypoglycaemia costs ``w_lo``/``w_hypo`` (x10, x100) more than hyperglycaemia; inside the zone only the insulin
terms act, so the plan stays at basal. The eventual glucose term makes the plan insulin-on-board aware beyond the
horizon. Input bounds are passed as ``lbx``/``ubx`` at solve time.

The solver is ``sqpmethod`` with ``qrqp`` (exact Hessian, eigenvalues clipped to keep the QPs convex), which CasADi can generate as
self-contained C (see :mod:`controller.codegen`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patient_model.bergman_twin import (
    IDX_G, IDX_ISC1, IDX_S, N_PARAMS, N_STATES, PARAM_NAMES, eventual_glucose, rk4_step,
)

PARAM_KC = PARAM_NAMES.index("kc")
GLUCOSE_SCALE_MG_DL = 50.0
HINGE_EPS = 2.0 / GLUCOSE_SCALE_MG_DL
"""Smoothing of the hinge: 2 mg/dL."""


@dataclass(frozen=True, slots=True)
class MPCConfig:
    """Horizon, move blocking and cost weights (see the module docstring)."""

    dt_min: float = 5.0
    move_blocks: tuple[int, ...] = (1, 1, 1, 3, 6, 6, 6, 12)
    w_hi: float = 1.0
    w_lo: float = 10.0
    w_hypo: float = 100.0
    hypo_sensitivity_factor: float = 2.2
    hypo_carb_factor: float = 1.4
    w_eventual_hi: float = 0.5
    w_eventual_lo: float = 5.0
    w_u: float = 0.02
    w_du: float = 0.005
    w_bolus: float = 1.0
    max_iter: int = 30
    tol: float = 1e-8

    @property
    def horizon_steps(self) -> int:
        return int(sum(self.move_blocks))

    @property
    def n_moves(self) -> int:
        return len(self.move_blocks)

    @property
    def n_vars(self) -> int:
        """Decision variables: one rate per move block, then the automatic bolus now (U)."""
        return len(self.move_blocks) + 1


@dataclass(frozen=True, slots=True)
class ParameterLayout:
    """Offsets of the pieces of the NLP's parameter vector.

    The twin is linear in the insulin plan for a given initial state (the sensitivity multiplier is a state held
    over the horizon), so the forecast is affine: ``G = a + B w`` and ``E = aE + bE w``. :func:`build_condenser`
    computes ``a, B, aE, bE`` from the initial state, the twin parameters and the announced carbs; the NLP only
    sees them (plus the previous rate, the basal and the targets), which keeps its exact Hessian cheap.
    """

    n_steps: int
    n_vars: int
    a: slice = field(init=False)
    B: slice = field(init=False)
    ap: slice = field(init=False)
    Bp: slice = field(init=False)
    aE: int = field(init=False)
    bE: slice = field(init=False)
    u_prev: int = field(init=False)
    ub: int = field(init=False)
    targets: slice = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        n, m = self.n_steps, self.n_vars
        o = 0
        object.__setattr__(self, "a", slice(o, o + n)); o += n
        object.__setattr__(self, "B", slice(o, o + n * m)); o += n * m
        object.__setattr__(self, "ap", slice(o, o + n)); o += n
        object.__setattr__(self, "Bp", slice(o, o + n * m)); o += n * m
        object.__setattr__(self, "aE", o); o += 1
        object.__setattr__(self, "bE", slice(o, o + m)); o += m
        object.__setattr__(self, "u_prev", o); o += 1
        object.__setattr__(self, "ub", o); o += 1
        object.__setattr__(self, "targets", slice(o, o + 4)); o += 4
        object.__setattr__(self, "size", o)

    def pack(self, a: np.ndarray, B: np.ndarray, ap: np.ndarray, Bp: np.ndarray, aE: float, bE: np.ndarray,
             u_prev_u_per_h: float, basal_u_per_h: float, target_mg_dl: float, zone_lo_mg_dl: float,
             zone_hi_mg_dl: float, hypo_mg_dl: float) -> np.ndarray:
        """The parameter vector (``B``, ``Bp`` are (n_steps, n_vars), stored column-major like CasADi)."""
        p = np.zeros(self.size)
        p[self.a] = np.asarray(a, dtype=float).ravel()
        p[self.B] = np.asarray(B, dtype=float).reshape(self.n_steps, self.n_vars).ravel(order="F")
        p[self.ap] = np.asarray(ap, dtype=float).ravel()
        p[self.Bp] = np.asarray(Bp, dtype=float).reshape(self.n_steps, self.n_vars).ravel(order="F")
        p[self.aE] = aE
        p[self.bE] = np.asarray(bE, dtype=float).ravel()
        p[self.u_prev] = u_prev_u_per_h
        p[self.ub] = basal_u_per_h
        p[self.targets] = (target_mg_dl, zone_lo_mg_dl, zone_hi_mg_dl, hypo_mg_dl)
        return p


def layout_for(config: MPCConfig) -> ParameterLayout:
    return ParameterLayout(config.horizon_steps, config.n_vars)


def _hinge(x: Any) -> Any:
    import casadi as ca

    return 0.5 * (x + ca.sqrt(x * x + HINGE_EPS ** 2))


def _rollout(ca: Any, w: Any, x0: Any, tw: Any, carbs: Any, config: MPCConfig) -> list[Any]:
    """States along the horizon (list of SX vectors, x_1..x_N) for the block rates ``w[:m]`` (U/h) and the
    automatic bolus ``w[m]`` (U, into the first depot now)."""
    m = config.n_moves
    x = ca.vertcat(x0[:IDX_ISC1], x0[IDX_ISC1] + w[m], x0[IDX_ISC1 + 1:])
    xs = []
    k = 0
    for j, length in enumerate(config.move_blocks):
        u = w[j] / 60.0
        for _ in range(length):
            x = ca.vertcat(x[:4], x[4] + carbs[k], x[5:])
            x = rk4_step(x, u, tw, config.dt_min, stack=lambda v: ca.vertcat(*v))
            xs.append(x)
            k += 1
    return xs


def build_condenser(config: MPCConfig, name: str = "twinloop_condense") -> Any:
    """``Function(x0 (8), twin (8), carbs (N)) -> (a, B, ap, Bp, aE, bE)``: the affine forecast ``G = a + B w``
    (N, N x m) and eventual glucose ``E = aE + bE w`` of the twin over the horizon (exact: the twin is linear in
    ``w`` for a fixed initial state), and the pessimistic forecast ``Gp = ap + Bp w`` with the insulin sensitivity
    multiplied by ``hypo_sensitivity_factor`` (the hypoglycaemia penalty is applied to it)."""
    import casadi as ca

    n = config.horizon_steps
    w = ca.SX.sym("w", config.n_vars)
    x0 = ca.SX.sym("x0", N_STATES)
    tw = ca.SX.sym("twin", N_PARAMS)
    carbs = ca.SX.sym("carbs", n)
    xs = _rollout(ca, w, x0, tw, carbs, config)
    g = ca.vertcat(*[x[IDX_G] for x in xs])
    e = eventual_glucose(xs[-1], tw)
    zero = ca.DM.zeros(config.n_vars)
    a = ca.substitute(g, w, zero)
    B = ca.jacobian(g, w)
    aE = ca.substitute(e, w, zero)
    bE = ca.jacobian(e, w)
    x0p = ca.vertcat(x0[:IDX_S], x0[IDX_S] * config.hypo_sensitivity_factor)
    twp = tw
    if config.hypo_carb_factor != 1.0:  # kc = ISF / CR: a patient more sensitive to insulin gains more per gram
        twp = ca.vertcat(tw[:PARAM_KC], tw[PARAM_KC] * config.hypo_carb_factor, tw[PARAM_KC + 1:])
    gp = ca.vertcat(*[x[IDX_G] for x in _rollout(ca, w, x0p, twp, carbs, config)])
    ap = ca.substitute(gp, w, zero)
    Bp = ca.jacobian(gp, w)
    return ca.Function(name, [x0, tw, carbs], [a, B, ap, Bp, aE, bE], ["x0", "twin", "carbs"],
                       ["a", "B", "ap", "Bp", "aE", "bE"])


def build_nlp(config: MPCConfig) -> tuple[dict[str, Any], ParameterLayout]:
    """The NLP ``{x: w, p: p, f: cost}`` as CasADi SX over the condensed forecast, and its parameter layout."""
    import casadi as ca

    layout = layout_for(config)
    n, m = config.horizon_steps, config.n_vars
    w = ca.SX.sym("w", m)
    p = ca.SX.sym("p", layout.size)
    a = p[layout.a]
    B = ca.reshape(p[layout.B], n, m)
    target, zone_lo, zone_hi, hypo = (p[layout.targets][i] for i in range(4))
    ub_h = p[layout.ub]
    u_scale = ca.fmax(ub_h, 0.25)
    g = a + ca.mtimes(B, w)
    gp = p[layout.ap] + ca.mtimes(ca.reshape(p[layout.Bp], n, m), w)
    e = p[layout.aE] + ca.dot(p[layout.bE], w)
    s = GLUCOSE_SCALE_MG_DL
    hstep = config.dt_min / 60.0
    cost = hstep * ca.sum1(config.w_hi * _hinge((g - zone_hi) / s) ** 2
                           + config.w_lo * _hinge((zone_lo - g) / s) ** 2
                           + config.w_hypo * _hinge((hypo - gp) / s) ** 2)
    cost += config.w_eventual_hi * _hinge((e - target) / s) ** 2
    cost += config.w_eventual_lo * _hinge((target - e) / s) ** 2
    for j, length in enumerate(config.move_blocks):
        cost += config.w_u * length * hstep * ((w[j] - ub_h) / u_scale) ** 2
    cost += config.w_du * ((w[0] - p[layout.u_prev]) / u_scale) ** 2
    # a bolus B costs like delivering it as a 2B U/h rise over 30 minutes
    cost += config.w_bolus * 2.0 * config.w_u * (w[config.n_moves] / u_scale) ** 2
    return {"x": w, "p": p, "f": cost}, layout


def solver_options(config: MPCConfig) -> dict[str, Any]:
    """sqpmethod + qrqp options (quiet, bounded iterations, status reported rather than raised)."""
    return {
        "qpsol": "qrqp",
        "qpsol_options": {"print_iter": False, "print_header": False, "print_info": False, "error_on_fail": False},
        "hessian_approximation": "exact",
        "convexify_strategy": "eigen-clip",
        "convexify_margin": 1e-6,
        "max_iter": config.max_iter,
        "tol_pr": config.tol,
        "tol_du": config.tol,
        "min_step_size": 1e-12,
        "print_header": False,
        "print_iteration": False,
        "print_status": False,
        "print_time": False,
        "error_on_fail": False,
    }


def build_solver(config: MPCConfig, name: str = "twinloop_mpc") -> tuple[Any, ParameterLayout]:
    """The CasADi ``nlpsol`` (sqpmethod + qrqp) for ``config``."""
    import casadi as ca

    nlp, layout = build_nlp(config)
    return ca.nlpsol(name, "sqpmethod", nlp, solver_options(config)), layout

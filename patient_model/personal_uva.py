"""The physiological personal twin: the UVA/Padova S2008 equations (:mod:`patient_model.uva_padova`) with the
parameters a patient's own data can identify fitted, and the rest taken from the reference population.

This is the structure of the "replay" simulators of the literature (a UVA/Padova subject identified from a
patient's CGM, insulin and meal records, with population priors). Against the minimal-model twin
(:mod:`patient_model.personal_twin`) it brings glucose-dependent peripheral uptake (Michaelis-Menten), hepatic
production suppressed by delayed insulin, the two-compartment subcutaneous insulin and the nonlinear gastric
emptying, whose absence made that twin's predictions drift from day to day.

Fitted (all positive, fitted on their logarithms, log-normal priors from the 30 reference subjects):

* ``vmx_HH_HH``: peripheral insulin sensitivity ``Vmx`` (mg/kg/min per pmol/L) by time-of-day block
  (00-06, 06-11, 11-17, 17-24 h local);
* ``kp3``: hepatic insulin sensitivity (mg/kg/min per pmol/L);
* ``carb_factor_MEAL``: grams absorbed per gram entered, by meal (breakfast, lunch, dinner, snack);
* ``kmax_per_min_MEAL``: gastric emptying rate (the maximum of S2008's ``kempt``), by meal; ``kmin_per_min``
  (its minimum, mid-meal) and ``kabs_per_min`` (intestinal absorption);
* ``basal_glucose_mg_dl`` (``Gb``): the steady state at the programmed basal; ``basal_egp_mg_per_kg_min``
  (``EGPb``); the steady state fixes ``kp1``, ``Vm0`` and ``Gtb`` as in the S2008 parameter sets;
* ``p2u_per_min``: speed of insulin action on uptake; ``insulin_absorption_mult``: multiplies the
  subcutaneous rates ``kd``, ``ka1``, ``ka2``.

Two simplifications keep the model cheap enough to fit on 5-minute steps (RK4, two 2.5-minute substeps): plasma
and liver insulin (time constants of a few minutes) are at their quasi-steady state given the subcutaneous
appearance, and ``kabs`` is bounded at 0.4/min (faster absorption is indistinguishable on a 5-minute CGM).

State (:data:`N_TWIN_STATES`): ``Gsub`` (CGM glucose, mg/dL, first so that ``x[0]`` is the glucose for every
twin), stomach solid and liquid, gut (mg), ``Gp``, ``Gt`` (mg/kg), ``X``, ``I1``, ``Id`` (pmol/L), ``Isc1``,
``Isc2`` (pmol/kg) and ``D``, the meal size the gastric emptying of the current meal depends on (mg).

Numbers only: no I/O (the population is read from the package data once), no clock.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from patient_model import personal_twin as pt

NAME = "uva"
DT_MIN = pt.DT_MIN
SUBSTEPS = 2
ISF_BLOCKS_H = pt.ISF_BLOCKS_H
MEAL_TYPES = pt.MEAL_TYPES
TwinInputs = pt.TwinInputs
carb_grid = pt.carb_grid
isf_block = pt.isf_block

FIT_PARAM_NAMES: tuple[str, ...] = (
    tuple(f"vmx_{a:02d}_{b:02d}" for a, b in ISF_BLOCKS_H)
    + tuple(f"carb_factor_{m}" for m in MEAL_TYPES)
    + tuple(f"kmax_per_min_{m}" for m in MEAL_TYPES)
    + ("basal_glucose_mg_dl", "basal_egp_mg_per_kg_min", "kp3", "p2u_per_min", "insulin_absorption_mult",
       "kmin_per_min", "kabs_per_min")
)
N_FIT = len(FIT_PARAM_NAMES)
I_VMX = slice(0, 4)
I_CF = slice(4, 8)
I_KMAX = slice(8, 12)
I_GB, I_EGPB, I_KP3, I_P2U, I_KABS_INS, I_KMIN, I_KABS = 12, 13, 14, 15, 16, 17, 18
I_ISF = I_VMX  # the time-of-day insulin sensitivity (what the fit's identifiability check looks at)

STATE_NAMES: tuple[str, ...] = ("gsub_mg_dl", "qsto1_mg", "qsto2_mg", "qgut_mg", "gp_mg_per_kg", "gt_mg_per_kg",
                                "x_pmol_per_l", "i1_pmol_per_l", "id_pmol_per_l", "isc1_pmol_per_kg",
                                "isc2_pmol_per_kg", "meal_size_mg")
N_TWIN_STATES = len(STATE_NAMES)
U_TO_PMOL = 6000.0
KABS_MAX_PER_MIN = 0.4
EGPB_MIN = 1.3   # EGPb must exceed Fsnc (1 mg/kg/min) for a positive Vm0

FIXED_NAMES: tuple[str, ...] = ("Vg", "k1", "k2", "Km0", "m1", "m2", "m4", "m30", "Vi", "ki", "kp2", "Fsnc", "ke1",
                                "ke2", "b", "d", "ksc", "f", "kd", "ka1", "ka2")
"""S2008 parameters not fitted: the reference population's median (``kd``, ``ka1``, ``ka2`` are scaled by
``insulin_absorption_mult``)."""
_PRIOR_FROM_POPULATION = {0: "Vmx", 1: "Vmx", 2: "Vmx", 3: "Vmx", 8: "kmax", 9: "kmax", 10: "kmax", 11: "kmax",
                          12: "Gb", 13: "EGPb", 14: "kp3", 15: "p2u", 17: "kmin", 18: "kabs"}
_MIN_LOG_SD = {"Gb": 0.15, "EGPb": 0.2}
"""Floors of the prior spread: the population's Gb and EGPb hardly vary, but a patient's steady state at the
programmed basal (a rounded rate, a basal that is not quite right) does."""
_KABS_LOG_SD = 0.7


@dataclass(frozen=True)
class UvaTwinBase:
    """What the physiological twin does not fit: body weight, programmed basal, the population's fixed S2008
    parameters and the prior the fit used.

    Attributes:
        weight_kg: body weight (kg).
        basal_u_per_min: mean programmed basal (U/min); the twin is at ``Gb`` on it.
        fixed: the :data:`FIXED_NAMES` values (S2008 units).
        prior_median, prior_log_sd: the log-normal prior of the fit parameters (natural-unit medians).
        population: names of the reference subjects the population values come from (leave-one-out in
            validation).
    """

    weight_kg: float
    basal_u_per_min: float
    fixed: tuple[float, ...]
    prior_median: tuple[float, ...]
    prior_log_sd: tuple[float, ...]
    population: tuple[str, ...] = ()

    def p(self, name: str) -> float:
        return float(self.fixed[FIXED_NAMES.index(name)])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fixed"] = dict(zip(FIXED_NAMES, self.fixed))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UvaTwinBase":
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kw["fixed"] = tuple(float(d["fixed"][n]) for n in FIXED_NAMES)
        for key in ("prior_median", "prior_log_sd", "population"):
            kw[key] = tuple(kw.get(key, ()))
        base = cls(**kw)
        if len(base.prior_median) != N_FIT or len(base.prior_log_sd) != N_FIT:
            raise ValueError(f"prior: expected {N_FIT} medians and SDs")
        vals = np.array((base.weight_kg, base.basal_u_per_min) + base.fixed + base.prior_median + base.prior_log_sd)
        if not np.all(np.isfinite(vals)) or np.any(vals[:2] <= 0) or np.any(np.array(base.prior_log_sd) <= 0):
            raise ValueError("weight, basal and prior spreads must be finite and > 0")
        return base


BASE_TYPE = UvaTwinBase
"""What the twin does not fit; ``from_dict`` reads it (the twin file)."""


@functools.lru_cache(maxsize=8)
def _population(exclude: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    from patient_model.cohort import load_all

    subs = [s for s in load_all() if s.name not in exclude]
    if len(subs) < 5:
        raise ValueError("the population prior needs at least 5 reference subjects")
    names = sorted({*FIXED_NAMES, *_PRIOR_FROM_POPULATION.values()})
    return tuple(s.name for s in subs), {n: np.array([float(s.params[n]) for s in subs]) for n in names}


def make_base(weight_kg: float, basal_u_per_min: float, exclude: tuple[str, ...] = ()) -> UvaTwinBase:
    """The twin's fixed part for a patient of ``weight_kg`` on ``basal_u_per_min``, with the population (minus
    ``exclude``: leave the validated subject out of its own prior) giving the fixed parameters and the priors."""
    if not (np.isfinite(weight_kg) and weight_kg > 0 and np.isfinite(basal_u_per_min) and basal_u_per_min > 0):
        raise ValueError("weight and programmed basal must be finite and > 0")
    names, pop = _population(tuple(sorted(exclude)))
    fixed = tuple(float(np.median(pop[n])) for n in FIXED_NAMES)
    med = [1.0] * N_FIT
    sd = [0.3] * N_FIT
    for i, n in _PRIOR_FROM_POPULATION.items():
        logs = np.log(pop[n])
        med[i] = float(np.exp(np.median(logs)))
        sd[i] = max(float(np.std(logs)), _MIN_LOG_SD.get(n, 0.0))
    med[I_KABS] = min(med[I_KABS], 0.5 * KABS_MAX_PER_MIN)
    sd[I_KABS] = _KABS_LOG_SD
    return UvaTwinBase(float(weight_kg), float(basal_u_per_min), fixed, tuple(med), tuple(sd), names)


def prior(base: UvaTwinBase) -> tuple[np.ndarray, np.ndarray]:
    """Prior medians (natural units) and log-SDs of the fit parameters."""
    return np.array(base.prior_median), np.array(base.prior_log_sd)


def prior_sqrt_information(base: UvaTwinBase) -> np.ndarray:
    """``W`` with the prior's residuals ``W @ (log theta - log median)`` (independent priors)."""
    return np.diag(1.0 / np.array(base.prior_log_sd))


def log_bounds(base: UvaTwinBase, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of log(theta): ``width`` either side of the prior median, with kabs <= 0.4/min and EGPb >= 1.3."""
    mu = np.log(np.array(base.prior_median))
    lo, hi = mu - width, mu + width
    hi[I_KABS] = np.minimum(hi[I_KABS], np.log(KABS_MAX_PER_MIN))
    lo[I_EGPB] = max(lo[I_EGPB], np.log(EGPB_MIN))
    return lo, hi


def _steady(base: UvaTwinBase, th: Any) -> dict[str, Any]:
    """Quantities fixed by the steady state at the programmed basal (generic over NumPy/CasADi)."""
    p = base.p
    mult = th[I_KABS_INS]
    kd, ka1, ka2 = p("kd") * mult, p("ka1") * mult, p("ka2") * mult
    # plasma insulin at quasi-steady state: I = c_ins * Rai, Rai = ka1 Isc1 + ka2 Isc2 (pmol/kg/min)
    c_ins = 1.0 / ((p("m2") + p("m4") - p("m1") * p("m2") / (p("m1") + p("m30"))) * p("Vi"))
    u_b = base.basal_u_per_min * U_TO_PMOL / base.weight_kg
    ib = c_ins * u_b
    gpb = th[I_GB] * p("Vg")
    egpb = th[I_EGPB]
    gtb = (p("Fsnc") - egpb + p("k1") * gpb) / p("k2")
    vm0 = (egpb - p("Fsnc")) * (p("Km0") + gtb) / gtb
    kp1 = egpb + p("kp2") * gpb + th[I_KP3] * ib
    isc1 = u_b / (kd + ka1)
    return {"kd": kd, "ka1": ka1, "ka2": ka2, "c_ins": c_ins, "ib": ib, "gpb": gpb, "gtb": gtb, "vm0": vm0,
            "kp1": kp1, "isc1": isc1, "isc2": kd * isc1 / ka2, "kp3": th[I_KP3], "p2u": th[I_P2U],
            "kmin": th[I_KMIN], "kabs": th[I_KABS]}


class _Np:
    fmax = staticmethod(np.maximum)
    tanh = staticmethod(np.tanh)

    @staticmethod
    def stack(v: list) -> np.ndarray:
        return np.array(v, dtype=float)


def _rhs(x: Any, u_pmol: Any, vmx: Any, kmax: Any, base: UvaTwinBase, ss: dict, lib: Any) -> list[Any]:
    """S2008 derivatives with quasi-steady plasma insulin; ``u_pmol`` insulin (pmol/kg/min)."""
    p = base.p
    gs, q1, q2, qg, gp, gt, xa, i1, idl, isc1, isc2, dmeal = (x[i] for i in range(N_TWIN_STATES))
    ins = ss["c_ins"] * (ss["ka1"] * isc1 + ss["ka2"] * isc2)
    dsafe = lib.fmax(dmeal, 1.0)
    kmin, kabs = ss["kmin"], ss["kabs"]
    aa = 5.0 / (2.0 * dsafe * (1.0 - p("b")))
    cc = 5.0 / (2.0 * dsafe * p("d"))
    qsto = q1 + q2
    kgut = kmin + (kmax - kmin) / 2.0 * (lib.tanh(aa * (qsto - p("b") * dsafe))
                                         - lib.tanh(cc * (qsto - p("d") * dsafe)) + 2.0)
    ra = p("f") * kabs * qg / base.weight_kg
    egp = lib.fmax(ss["kp1"] - p("kp2") * gp - ss["kp3"] * idl, 0.0)
    e_renal = p("ke1") * lib.fmax(gp - p("ke2"), 0.0)
    uid = (ss["vm0"] + vmx * xa) * gt / (p("Km0") + gt)
    return [
        p("ksc") * (gp / p("Vg") - gs),
        -kmax * q1,
        kmax * q1 - kgut * q2,
        kgut * q2 - kabs * qg,
        egp + ra - p("Fsnc") - e_renal - p("k1") * gp + p("k2") * gt,
        -uid + p("k1") * gp - p("k2") * gt,
        -ss["p2u"] * xa + ss["p2u"] * (ins - ss["ib"]),
        -p("ki") * (i1 - ins),
        -p("ki") * (idl - i1),
        -(ss["kd"] + ss["ka1"]) * isc1 + u_pmol,
        ss["kd"] * isc1 - ss["ka2"] * isc2,
        0.0 * dmeal,
    ]


def step(x: Any, insulin_u_per_min: Any, carbs_mg: Any, vmx: Any, kmax: Any, base: UvaTwinBase, ss: dict,
         lib: Any, if_else: Any) -> Any:
    """One 5-minute step: carbs (mg, already times the carb factor) enter the stomach at its start and start a
    meal (gastric emptying follows the stomach content plus the new food, as in S2008); then RK4 substeps."""
    u_pmol = insulin_u_per_min * U_TO_PMOL / base.weight_kg
    xs = [x[i] for i in range(N_TWIN_STATES)]
    xs[11] = if_else(carbs_mg > 0, x[1] + x[2] + carbs_mg, x[11])
    xs[1] = x[1] + carbs_mg
    y = lib.stack(xs)
    h = DT_MIN / SUBSTEPS
    for _ in range(SUBSTEPS):
        k1 = lib.stack(_rhs(y, u_pmol, vmx, kmax, base, ss, lib))
        k2 = lib.stack(_rhs(y + 0.5 * h * k1, u_pmol, vmx, kmax, base, ss, lib))
        k3 = lib.stack(_rhs(y + 0.5 * h * k2, u_pmol, vmx, kmax, base, ss, lib))
        k4 = lib.stack(_rhs(y + h * k3, u_pmol, vmx, kmax, base, ss, lib))
        y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


def initial_state(base: UvaTwinBase, theta: Any, glucose_mg_dl: Any, lib: Any = _Np) -> Any:
    """Steady state at the programmed basal with glucose ``glucose_mg_dl`` and an empty stomach and gut."""
    ss = _steady(base, theta)
    gp = glucose_mg_dl * base.p("Vg")
    return lib.stack([glucose_mg_dl, 0.0, 0.0, 0.0, gp, ss["gtb"] * gp / ss["gpb"], 0.0, ss["ib"], ss["ib"],
                      ss["isc1"], ss["isc2"], 0.0])


def simulate(base: UvaTwinBase, theta: np.ndarray, inputs: TwinInputs, x0: np.ndarray) -> np.ndarray:
    """NumPy simulation; the state at every grid point, shape (K + 1, :data:`N_TWIN_STATES`); column 0 is the CGM
    (interstitial) glucose in mg/dL."""
    theta = np.asarray(theta, dtype=float)
    ss = _steady(base, theta)
    out = np.empty((inputs.n_steps + 1, N_TWIN_STATES))
    x = np.asarray(x0, dtype=float).copy()
    out[0] = x
    blocks = isf_block(inputs.t0_min + DT_MIN * np.arange(inputs.n_steps))
    if_else = lambda c, a, b: a if c else b  # noqa: E731
    for k in range(inputs.n_steps):
        c = inputs.carbs_g[k]
        carbs_mg = 1000.0 * c * theta[I_CF][inputs.meal_index[k]] if c > 0 else 0.0
        with np.errstate(over="ignore"):
            x = step(x, inputs.insulin_u_per_min[k], carbs_mg, theta[I_VMX][blocks[k]],
                     theta[I_KMAX][inputs.current_meal[k]], base, ss, _Np, if_else)
        out[k + 1] = x
    return out


def casadi_trajectory(base: UvaTwinBase, th: Any, inputs: TwinInputs, x0_glucose: float,
                      carb_scale_row: Any = None) -> Any:
    """CasADi graph of the trajectory (states x steps) as a function of the symbolic parameters ``th`` (natural
    units); ``carb_scale_row`` (1 x K) optionally multiplies each step's carbs (per-entry random effects)."""
    import casadi as ca

    class _Ca:
        fmax = staticmethod(ca.fmax)
        tanh = staticmethod(ca.tanh)

        @staticmethod
        def stack(v: list) -> Any:
            return ca.vertcat(*v)

    n = inputs.n_steps
    x = ca.SX.sym("x", N_TWIN_STATES)
    d = ca.SX.sym("d", 4)            # insulin U/min, carbs mg, Vmx, kmax
    q = ca.SX.sym("q", N_FIT)
    ss = _steady(base, q)
    xn = step(x, d[0], d[1], d[2], d[3], base, ss, _Ca, ca.if_else)
    sim = ca.Function("step", [x, d, q], [xn]).mapaccum("sim", n)
    block = isf_block(inputs.t0_min + DT_MIN * np.arange(n))
    vmx_row = ca.mtimes(ca.DM(np.eye(4)[block]), th[I_VMX]).T
    carb_row = 1000.0 * ca.DM(inputs.carbs_g).T * ca.mtimes(ca.DM(np.eye(4)[inputs.meal_index]), th[I_CF]).T
    if carb_scale_row is not None:
        carb_row = carb_row * carb_scale_row
    kmax_row = ca.mtimes(ca.DM(np.eye(4)[inputs.current_meal]), th[I_KMAX]).T
    drows = ca.vertcat(ca.DM(inputs.insulin_u_per_min).T, carb_row, vmx_row, kmax_row)
    x0 = initial_state(base, th, x0_glucose, _Ca)
    return sim(x0, drows, th)

"""Virtual population generator for the S2008 model.

For each group the 10 reference subjects define a multivariate normal distribution of the transformed free
parameters (log for positive parameters, logit for the gastric-emptying fractions ``b`` and ``d``; age in years is
included so that age and body weight stay correlated). With 10 subjects and 27 variables the sample covariance is
singular, so it is shrunk towards its diagonal: ``cov = (1 - SHRINKAGE) * S + SHRINKAGE * diag(S)``.

Every draw is completed with the S2008 basal steady-state relations (Dalla Man et al. 2007), so the subject is in
equilibrium at its own basal glucose ``Gb`` and basal insulin ``Ib``:

==========  ==========================================================  =====================
quantity    relation                                                    units
==========  ==========================================================  =====================
Gpb         Gb * Vg                                                     mg/kg
Ipb         Ib * Vi                                                     pmol/kg
m2          0.6 * CL / (HEb * Vi * BW)                                  1/min
m4          0.4 * CL / (Vi * BW)                                        1/min
m30         HEb * m1 / (1 - HEb)                                        1/min
Ilb         m2 * Ipb / (m1 + m30)                                       pmol/kg
u2ss        (m2 + m4) * Ipb - m1 * Ilb                                  pmol/kg/min
isc1ss      u2ss / (ka1 + kd)                                           pmol/kg
isc2ss      kd * isc1ss / ka2                                           pmol/kg
kp1         EGPb + kp2 * Gpb + kp3 * Ib                                 mg/kg/min
Gtb         (Fsnc - EGPb + k1 * Gpb) / k2   (renal excretion 0 at Gb)   mg/kg
Vm0         (EGPb - Fsnc) * (Km0 + Gtb) / Gtb                           mg/kg/min
Rdb, PCRb   EGPb, Rdb / Gb
x0          (0, 0, 0, Gpb, Gtb, Ipb, 0, Ib, Ib, Ilb, isc1ss, isc2ss, Gpb)
==========  ==========================================================  =====================

These relations reproduce the derived columns of the reference file exactly (see the tests).

Therapy settings are derived consistently with the model: the glucose drop after a 1-U bolus at basal
(``drop_1u``, simulated) measures insulin sensitivity. Per group, ordinary least squares on the 10 reference
subjects (log scale) gives ``CF ~ drop_1u``, ``TDI ~ basal insulin per day + drop_1u`` and ``CR ~ TDI``; a generated
subject gets the fitted values (no residual noise).

Plausibility (a draw failing any check is rejected and redrawn): every free parameter within a factor 2 of the
group's reference range; Gb in [70, 200] mg/dL; b, d in (0, 1) with d < b; kmin < kmax; positive Gtb, Vm0, kp1,
u2ss; Gp below the renal threshold at basal; basal rate in [0.05, 5] U/h; body weight and age within
the group's range (:data:`BW_RANGE_KG`, :data:`AGE_RANGE_Y`); ``drop_1u`` in [2, 200] mg/dL; fasting at
its own basal rate for 24 h (simulated, vectorized) plasma glucose stays within 2 mg/dL of Gb.

Draws are made in fixed blocks of candidates from ``numpy.random.default_rng([seed, group index])``, so the same
(group, seed) gives the same sequence of subjects and a smaller population is a prefix of a larger one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from patient_model.cohort import GROUPS, Subject, canonical_group, load_group
from patient_model.uva_padova import PARAM_NAMES, CohortSimulator, UvaPadovaParams

LOG_FREE = (
    "BW", "EGPb", "Gb", "Ib", "kabs", "kmax", "kmin", "Vg", "Vi", "Vmx", "Km0", "k2", "k1", "p2u", "m1", "m5",
    "CL", "ki", "kp2", "kp3", "ksc", "kd", "ka1", "ka2",
)
LOGIT_FREE = ("b", "d")
CONSTANT = ("HEb", "f", "ke1", "ke2", "Fsnc", "dosekempt", "patient_history")
SHRINKAGE = 0.1
BLOCK = 256
FASTING_TOL_MG_DL = 2.0
FASTING_MIN = 1440
BOLUS_MIN = 480
MAX_BLOCKS = 200
BW_RANGE_KG = {"adolescent": (25.0, 120.0), "adult": (40.0, 160.0), "child": (12.0, 80.0)}
AGE_RANGE_Y = {"adolescent": (13.0, 19.9), "adult": (20.0, 85.0), "child": (4.0, 12.9)}


class PopulationError(ValueError):
    """Bad arguments to the population generator, or a distribution that yields no plausible subject."""


@dataclass(frozen=True)
class _GroupModel:
    """Fitted distribution and therapy regressions of one group."""

    group: str
    mean: np.ndarray
    chol: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    constants: dict[str, float]
    cf_coef: np.ndarray  # log CF = c0 + c1 log drop
    tdi_coef: np.ndarray  # log TDI = c0 + c1 log basal_u_per_day + c2 log drop
    cr_coef: np.ndarray  # log CR = c0 + c1 log TDI


def _transform(values: np.ndarray) -> np.ndarray:
    """Free parameters (LOG_FREE, LOGIT_FREE, age) -> normal space, column-wise."""
    n_log = len(LOG_FREE)
    out = np.empty_like(values)
    out[:, :n_log] = np.log(values[:, :n_log])
    frac = values[:, n_log:n_log + 2]
    out[:, n_log:n_log + 2] = np.log(frac / (1.0 - frac))
    out[:, -1] = np.log(values[:, -1])
    return out


def _untransform(z: np.ndarray) -> np.ndarray:
    n_log = len(LOG_FREE)
    out = np.empty_like(z)
    out[:, :n_log] = np.exp(z[:, :n_log])
    out[:, n_log:n_log + 2] = 1.0 / (1.0 + np.exp(-z[:, n_log:n_log + 2]))
    out[:, -1] = np.exp(z[:, -1])
    return out


def complete_parameters(free: dict[str, np.ndarray], constants: dict[str, float]) -> dict[str, np.ndarray]:
    """All S2008 parameters from the free ones and the constants, via the basal steady-state relations."""
    n = len(next(iter(free.values())))
    p = {k: np.asarray(v, dtype=float) for k, v in free.items()}
    for k, v in constants.items():
        p[k] = np.full(n, float(v))
    p["Gpb"] = p["Gb"] * p["Vg"]
    p["Ipb"] = p["Ib"] * p["Vi"]
    p["m2"] = 0.6 * p["CL"] / (p["HEb"] * p["Vi"] * p["BW"])
    p["m4"] = 0.4 * p["CL"] / (p["Vi"] * p["BW"])
    p["m30"] = p["HEb"] * p["m1"] / (1.0 - p["HEb"])
    p["Ilb"] = p["m2"] * p["Ipb"] / (p["m1"] + p["m30"])
    p["u2ss"] = (p["m2"] + p["m4"]) * p["Ipb"] - p["m1"] * p["Ilb"]
    p["isc1ss"] = p["u2ss"] / (p["ka1"] + p["kd"])
    p["isc2ss"] = p["kd"] * p["isc1ss"] / p["ka2"]
    p["kp1"] = p["EGPb"] + p["kp2"] * p["Gpb"] + p["kp3"] * p["Ib"]
    p["Gtb"] = (p["Fsnc"] - p["EGPb"] + p["k1"] * p["Gpb"]) / p["k2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        p["Vm0"] = (p["EGPb"] - p["Fsnc"]) * (p["Km0"] + p["Gtb"]) / p["Gtb"]
    p["Rdb"] = p["EGPb"].copy()
    p["PCRb"] = p["Rdb"] / p["Gb"]
    zeros = np.zeros(n)
    x0 = (zeros, zeros, zeros, p["Gpb"], p["Gtb"], p["Ipb"], zeros, p["Ib"], p["Ib"], p["Ilb"], p["isc1ss"],
          p["isc2ss"], p["Gpb"])
    for i, v in enumerate(x0):
        p[f"x0_{i + 1}"] = np.array(v, dtype=float)
    return p


def _free_matrix(subjects: tuple[Subject, ...]) -> np.ndarray:
    cols = [[s.params[k] for k in LOG_FREE] + [s.params[k] for k in LOGIT_FREE] + [s.age_y] for s in subjects]
    return np.array(cols, dtype=float)


def _drop_after_1u(params: UvaPadovaParams, n_min: int = FASTING_MIN) -> tuple[np.ndarray, np.ndarray]:
    """(max |bg - Gb| fasting at basal over ``n_min`` minutes, glucose drop within 8 h after a 1-U bolus at
    basal), both mg/dL, shape (N,)."""
    n = params.n
    both = params.select(np.concatenate([np.arange(n), np.arange(n)]))
    sim = CohortSimulator(both)
    basal = both.basal_insulin_u_per_min
    zeros = np.zeros(2 * n)
    dev = np.zeros(2 * n)
    low = np.full(2 * n, np.inf)
    for t in range(max(n_min, BOLUS_MIN)):
        ins = basal.copy()
        if t == 0:
            ins[n:] += 1.0
        sim.step(zeros, ins)
        bg = sim.bg_mg_dl
        np.maximum(dev, np.abs(bg - both.Gb), out=dev)
        if t < BOLUS_MIN:
            np.minimum(low, bg, out=low)
    dev[~np.isfinite(dev)] = np.inf
    return dev[:n], params.Gb - low[n:]


def _ols(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = np.column_stack([np.ones(len(y)), x])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef


@functools.cache
def _group_model(group: str) -> _GroupModel:
    refs = load_group(group)
    z = _transform(_free_matrix(refs))
    mean = z.mean(axis=0)
    s = np.cov(z, rowvar=False)
    cov = (1.0 - SHRINKAGE) * s + SHRINKAGE * np.diag(np.diag(s))
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(mean)))
    raw = _free_matrix(refs)
    constants = {k: refs[0].params[k] for k in CONSTANT}
    params = UvaPadovaParams.from_subjects(refs)
    _, drop = _drop_after_1u(params, n_min=BOLUS_MIN)
    basal_day = np.array([s.basal_u_per_h * 24.0 for s in refs])
    tdi = np.array([s.tdi_u for s in refs])
    return _GroupModel(
        group=group,
        mean=mean,
        chol=chol,
        lo=raw.min(axis=0) / 2.0,
        hi=raw.max(axis=0) * 2.0,
        constants=constants,
        cf_coef=_ols(np.log(drop)[:, None], np.log([s.cf_mg_dl_per_u for s in refs])),
        tdi_coef=_ols(np.column_stack([np.log(basal_day), np.log(drop)]), np.log(tdi)),
        cr_coef=_ols(np.log(tdi)[:, None], np.log([s.cr_g_per_u for s in refs])),
    )


def _static_ok(group: str, p: dict[str, np.ndarray], raw: np.ndarray, model: _GroupModel) -> np.ndarray:
    ok = np.all((raw >= model.lo) & (raw <= model.hi), axis=1)
    bw_lo, bw_hi = BW_RANGE_KG[group]
    basal_u_per_h = p["u2ss"] * p["BW"] / 6000.0 * 60.0
    with np.errstate(invalid="ignore"):
        ok &= (p["Gb"] >= 70) & (p["Gb"] <= 200)
        ok &= (p["b"] > 0) & (p["b"] < 1) & (p["d"] > 0) & (p["d"] < p["b"])
        ok &= p["kmin"] < p["kmax"]
        ok &= (p["Gtb"] > 0) & (p["Vm0"] > 0) & (p["kp1"] > 0) & (p["u2ss"] > 0) & (p["Ilb"] > 0)
        ok &= p["Gpb"] < p["ke2"]
        ok &= (p["BW"] >= bw_lo) & (p["BW"] <= bw_hi)
        age_lo, age_hi = AGE_RANGE_Y[group]
        ok &= (raw[:, -1] >= age_lo) & (raw[:, -1] <= age_hi)
        ok &= (basal_u_per_h >= 0.05) & (basal_u_per_h <= 5.0)
    for v in p.values():
        ok &= np.isfinite(v)
    return ok


def generate_population(group: str, n: int, seed: int) -> tuple[Subject, ...]:
    """``n`` plausible virtual subjects of a group ('adolescent(s)', 'adult(s)', 'child(ren)'), deterministic in seed.

    Names are ``'pop-<group>#0001'`` onwards. See the module docstring for the method and the checks. Results are
    cached (subjects are immutable).

    Raises:
        PopulationError: n < 1, or no plausible draw after many attempts.
    """
    g = canonical_group(group)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise PopulationError(f"population size must be a positive integer, got {n!r}")
    return _generate(g, int(n), int(seed))


@functools.lru_cache(maxsize=16)
def _generate(g: str, n: int, seed: int) -> tuple[Subject, ...]:
    model = _group_model(g)
    rng = np.random.default_rng([seed, GROUPS.index(g)])
    out: list[Subject] = []
    for _ in range(MAX_BLOCKS):
        eps = rng.standard_normal((BLOCK, len(model.mean)))
        raw = _untransform(model.mean + eps @ model.chol.T)
        free = {k: raw[:, i] for i, k in enumerate(LOG_FREE + LOGIT_FREE)}
        p = complete_parameters(free, model.constants)
        ok = _static_ok(g, p, raw, model)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            continue
        values = {k: p[k][idx] for k in PARAM_NAMES}
        cand = UvaPadovaParams(names=tuple(f"cand{i}" for i in idx), **values)
        dev, drop = _drop_after_1u(cand)
        good = (dev <= FASTING_TOL_MG_DL) & (drop >= 2.0) & (drop <= 200.0)
        for j in np.flatnonzero(good):
            if len(out) == n:
                break
            i = idx[j]
            out.append(_make_subject(g, len(out) + 1, {k: float(p[k][i]) for k in PARAM_NAMES},
                                     age_y=float(raw[i, -1]), drop_mg_dl=float(drop[j]), model=model))
        if len(out) == n:
            return tuple(out)
    raise PopulationError(f"could not draw {n} plausible {g} subjects in {MAX_BLOCKS * BLOCK} candidates")


def _make_subject(group: str, k: int, params: dict[str, float], age_y: float, drop_mg_dl: float,
                  model: _GroupModel) -> Subject:
    basal_day = params["u2ss"] * params["BW"] / 6000.0 * 60.0 * 24.0
    ld = np.log(drop_mg_dl)
    cf = float(np.exp(model.cf_coef[0] + model.cf_coef[1] * ld))
    tdi = float(np.exp(model.tdi_coef[0] + model.tdi_coef[1] * np.log(basal_day) + model.tdi_coef[2] * ld))
    tdi = max(tdi, basal_day * 1.1)  # bolus insulin is never negative
    cr = float(np.exp(model.cr_coef[0] + model.cr_coef[1] * np.log(tdi)))
    full = dict(params)
    full["i"] = float(k)
    return Subject(
        name=f"pop-{group}#{k:04d}",
        group=group,
        params=MappingProxyType(full),
        cr_g_per_u=round(cr, 1),
        cf_mg_dl_per_u=round(cf, 1),
        tdi_u=round(tdi, 2),
        age_y=round(age_y, 1),
        weight_kg=params["BW"],
    )

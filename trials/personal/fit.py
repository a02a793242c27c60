"""Fit a personal twin to a patient's data: maximum a posteriori with physiological priors, optional MCMC.

The model is :mod:`patient_model.personal_uva` (UVA/Padova structure, population priors; the default) or
:mod:`patient_model.personal_twin` (the minimal-model twin, ``model="bergman"``); both offer the same functions
(``casadi_trajectory``, ``simulate``, ``prior``, ``log_bounds``, ...). Parameters are fitted in log space; the
likelihood compares the simulated glucose with every CGM reading (Gaussian, SD ``CGM_SD_MG_DL`` for sensor noise
plus model error, AR(1) correlated between consecutive readings, :data:`RESIDUAL_AR1`); the prior
is log-normal (the model's ``prior``: the reference population, or the programmed therapy). The whole-horizon
simulation is a CasADi graph (RK4 steps of 5 min mapped over the days), so the Jacobian is exact and cheap; the MAP
is a bounded Gauss-Newton/trust-region solve (``scipy.optimize.least_squares``) whose status is checked.
Uncertainty: the Laplace approximation (inverse Gauss-Newton Hessian) and, optionally, random-walk Metropolis samples
from the posterior (seeded; proposal from the Laplace covariance). Optionally (``meal_effects=True``) every carb
entry gets its own counting-error random effect, estimated with the parameters (off by default, see
:data:`MEAL_EFFECTS`).

The fit refuses, with reasons, when the data cannot identify the parameters (too short, too sparse, no insulin or no
carbs, or the data do not narrow the prior of the core parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from patient_model import personal_twin as pt
from patient_model import personal_uva as pu
from trials.personal.patient_data import CGM_HIGH_MG_DL, CGM_LOW_MG_DL, PatientData, censored_masks

CGM_SD_MG_DL = 15.0
"""Likelihood SD (marginal, per reading): CGM error (~10-12 mg/dL) plus model error."""
RESIDUAL_AR1 = 0.9
"""Correlation of consecutive 5-minute residuals (AR(1)). CGM noise is autocorrelated (Breton-Kovatchev: AR(1) with
coefficient 0.7 per 15 min, i.e. ~0.89 per 5 min) and so is model error; a white-noise likelihood counts ~2000
readings a week as independent, over-weights the data against the priors and lets the parameters chase slow
residual patterns (in the validation: glucose effectiveness fitted at 0.002/min where the subject's is 0.011, and
twins far too pessimistic about a changed therapy). 0 = white noise."""
BURN_IN_MIN = 180.0
"""Residuals of the first hours are ignored: the state at the start (insulin and carbs on board) is unknown."""
MIN_DAYS = 2.0
MIN_CGM_COVERAGE = 0.6
MAX_CENSORED_FRACTION = 0.2
"""Refuse when more of the CGM readings than this are at the sensor's LOW/HIGH limits: they bound glucose without
measuring it, and such a record (a sensor failing, or a patient outside the sensor's range for days) cannot
identify the twin."""
LOG_BOUND = 2.5  # theta within e^-2.5 .. e^2.5 of the prior median (about x0.08 .. x12)
MEAL_ERROR_LOG_SD = 0.15
"""Carb-counting uncertainty (log scale, ~15 %) of the patient's entries. With ``meal_effects`` every entry's carbs
are multiplied by ``exp(e_i)``, ``e_i ~ N(0, 0.15^2)``, estimated with the parameters (random effects, nuisance
variables not kept in the twin) and their spread is estimated; without, this value is the assumed uncertainty that
predictions put on future carb entries (:func:`trials.personal.replay.open_loop_ensemble`)."""
MEAL_ERROR_BOUND = 0.7
MEAL_EFFECTS = False
"""Default of ``fit_twin(meal_effects=...)``. Off: in the validation on reference subjects the per-entry effects
fitted the window better but predicted the following days worse for 3 of 6 subjects (the effects absorb model
mismatch too, and the shared parameters drift); see docs/twin-fit.md."""


FORECAST_RMSE_LIMIT_MG_DL = 20.0
FORECAST_TIR_LIMIT_POINTS = 5.0
"""Limits of the forecast check (:class:`ForecastCheck`): the validation's acceptance limits (docs/twin-fit.md
section 6), applied to the patient's own held-out days."""


@dataclass(frozen=True)
class ForecastCheck:
    """How well the twin, fitted without the last ``held_out_days`` of the record, predicted those days (open loop on
    the recorded insulin and the announced carbs, from its state at the end of the shortened window) against the
    CGM: on the patient's own data, what the validation measures on virtual patients
    (:func:`trials.personal.forecast_check.check_forecast`).

    Attributes:
        held_out_days: days predicted (d).
        rmse_mg_dl, bias_mg_dl: prediction minus CGM over the held-out readings (mg/dL; readings at the sensor's
            LOW/HIGH limits are left out).
        tir_predicted_pct, tir_cgm_pct: share of the held-out readings' times at 70-180 mg/dL on the prediction and
            on the CGM (%; a reading at LOW/HIGH counts as out of range).
        n_readings: held-out CGM readings.
    """

    held_out_days: float
    rmse_mg_dl: float
    bias_mg_dl: float
    tir_predicted_pct: float
    tir_cgm_pct: float
    n_readings: int

    @property
    def tir_error_points(self) -> float:
        return self.tir_predicted_pct - self.tir_cgm_pct

    @property
    def within_limits(self) -> bool:
        return bool(self.rmse_mg_dl <= FORECAST_RMSE_LIMIT_MG_DL
                    and abs(self.tir_error_points) <= FORECAST_TIR_LIMIT_POINTS)

    def summary(self) -> str:
        verdict = ("within the validation's limits" if self.within_limits else
                   "OUTSIDE the validation's limits: treat this twin's predictions with caution")
        return (f"forecast check (twin fitted without the last {self.held_out_days:g} days, predicting them): "
                f"CGM RMSE {self.rmse_mg_dl:.1f} mg/dL (bias {self.bias_mg_dl:+.1f}), TIR {self.tir_predicted_pct:.1f} "
                f"% predicted vs {self.tir_cgm_pct:.1f} % on the CGM ({self.tir_error_points:+.1f} points) over "
                f"{self.n_readings} readings: {verdict} (RMSE <= {FORECAST_RMSE_LIMIT_MG_DL:g} mg/dL, "
                f"|TIR error| <= {FORECAST_TIR_LIMIT_POINTS:g} points)")


class FitRefusedError(ValueError):
    """The data cannot identify the twin's parameters. ``reasons`` lists why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("cannot fit a twin: " + "; ".join(reasons))
        self.reasons = reasons


class FitFailedError(RuntimeError):
    """The optimiser did not converge (status and message attached)."""


@dataclass(frozen=True)
class TwinFit:
    """A fitted personal twin.

    Attributes:
        base: what the twin does not fit: for the ``uva`` model the weight, programmed basal, population parameters
            and prior (:class:`~patient_model.personal_uva.UvaTwinBase`); for ``bergman`` the control twin's
            parameters from the programmed therapy (mean basal, ISF, CR, target).
        theta: MAP estimate of the fit parameters (natural units, order ``FIT_PARAM_NAMES`` of the model).
        cov_log: Laplace covariance of log(theta).
        samples: posterior samples of theta (natural units), shape (S, n) — empty without MCMC.
        t0_min: start of the fitted window (absolute minutes, local); x0 its initial state.
        rmse_mg_dl, mard_pct: goodness of fit of the fitted trace against the CGM readings used (not those at the
            sensor's LOW/HIGH limits, which enter the fit as bounds).
        n_readings: CGM readings in the likelihood.
        notes: what the fit reports (e.g. parameters left at their prior because the data said nothing).
        carb_error_log_sd: the spread of the entries' carb-counting errors (log scale): estimated from the per-entry
            random effects when the fit used them, else the assumed :data:`MEAL_ERROR_LOG_SD`; used to put
            carb-counting uncertainty into predictions.
        model: the twin's equations, a key of :data:`MODELS` (``uva``: UVA/Padova structure, the default of
            :func:`fit_twin`; ``bergman``: the minimal-model twin of twin files version 1).
        forecast_check: how a twin fitted without the record's last days predicted them (``twinloop fit
            --check-days``), or None when not run.
    """

    base: Any
    theta: np.ndarray
    cov_log: np.ndarray
    t0_min: float
    x0: np.ndarray
    rmse_mg_dl: float
    mard_pct: float
    n_readings: int
    samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    notes: tuple[str, ...] = ()
    end_state: np.ndarray = field(default_factory=lambda: np.zeros(0))
    t_end_min: float = 0.0
    carb_error_log_sd: float = MEAL_ERROR_LOG_SD
    model: str = pt.NAME
    forecast_check: ForecastCheck | None = None

    @property
    def twin_model(self) -> ModuleType:
        """The module with the twin's equations (``simulate``, ``initial_state``, ``FIT_PARAM_NAMES``, ...)."""
        return twin_model(self.model)

    @property
    def weight_kg(self) -> float:
        """The body weight (kg) the twin was fitted with (``--weight``, the profile's, else the default)."""
        return float(self.base.weight_kg)

    @property
    def sd_log(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov_log), 0.0, None))

    def parameter_table(self) -> list[dict[str, float | str]]:
        """Each parameter with its MAP value and 95 % interval (from the Laplace approximation)."""
        rows = []
        median = self.twin_model.prior(self.base)[0]
        for i, name in enumerate(self.twin_model.FIT_PARAM_NAMES):
            v, s = float(self.theta[i]), float(self.sd_log[i])
            rows.append({"name": name, "map": v, "low95": v * math.exp(-1.96 * s), "high95": v * math.exp(1.96 * s),
                         "prior_median": float(median[i])})
        return rows


MODELS: dict[str, ModuleType] = {pu.NAME: pu, pt.NAME: pt}
DEFAULT_MODEL = pu.NAME
DEFAULT_WEIGHT_KG = 70.0


def twin_model(name: str) -> ModuleType:
    """The twin equations called ``name`` (a key of :data:`MODELS`)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown twin model {name!r}; known: {', '.join(MODELS)}") from None


def _base_from(data: PatientData, weight_kg: float | None, model: str = DEFAULT_MODEL,
               population_exclude: tuple[str, ...] = ()) -> Any:
    prof = data.profile
    grid = np.arange(0, 1440, 30.0)
    basal = float(np.mean([prof.basal_at(t) for t in grid]))
    weight = weight_kg or data.weight_kg or DEFAULT_WEIGHT_KG
    if model == pu.NAME:
        return pu.make_base(weight, basal / 60.0, population_exclude)
    isf = float(np.mean([prof.isf_at(t) for t in grid]))
    cr = float(np.mean([prof.carb_ratio_at(t) for t in grid]))
    return pt.base_twin_params(basal, isf, cr, prof.target_mg_dl, weight, max(data.total_daily_insulin_u(), 1.0))


def check_identifiable(data: PatientData) -> list[str]:
    """Reasons the data cannot identify the twin (empty when they can)."""
    reasons = []
    if data.cgm_t_min.size == 0:
        return ["no CGM readings"]
    span_min = float(data.cgm_t_min[-1] - data.cgm_t_min[0])
    if span_min < MIN_DAYS * 1440:
        reasons.append(f"only {span_min / 1440:.1f} days of CGM; at least {MIN_DAYS:g} needed")
    coverage = data.cgm_t_min.size * 5.0 / max(span_min, 1.0)
    if coverage < MIN_CGM_COVERAGE:
        reasons.append(f"CGM covers {coverage:.0%} of the time; at least {MIN_CGM_COVERAGE:.0%} needed")
    low, high = censored_masks(data.cgm_mg_dl)
    censored = float(np.mean(low | high))
    if censored > MAX_CENSORED_FRACTION:
        reasons.append(f"{censored:.0%} of the CGM readings are at the sensor's limits (LOW <= {CGM_LOW_MG_DL:g}, "
                       f"HIGH >= {CGM_HIGH_MG_DL:g} mg/dL); at most {MAX_CENSORED_FRACTION:.0%} can be used")
    if not data.boluses:
        reasons.append("no boluses: insulin sensitivity cannot be separated from basal glucose")
    if not data.carbs:
        reasons.append("no carbohydrate entries: meal parameters cannot be identified")
    return reasons


class _Problem:
    """The CasADi residual function r(z) and its Jacobian for one data window (z = log theta)."""

    def __init__(self, data: PatientData, base: Any, t0_min: float, n_steps: int,
                 x0_glucose: float, meal_effects: bool = True, model: ModuleType = pu) -> None:
        import casadi as ca

        per_min = data.insulin_u_per_min(int(t0_min + n_steps * 5 + 5))[int(t0_min):]
        self.inputs = pt.TwinInputs.from_minutes(t0_min, per_min, [(c.t_min, c.carbs_g) for c in data.carbs], n_steps)
        self.base, self.t0_min, self.n_steps = base, t0_min, n_steps
        self.x0_glucose = x0_glucose
        grid_t = t0_min + pt.DT_MIN * np.arange(1, n_steps + 1)
        m = (data.cgm_t_min >= t0_min + BURN_IN_MIN) & (data.cgm_t_min < grid_t[-1])
        low, high = censored_masks(data.cgm_mg_dl)
        # Readings at the CGM's limits are bounds (one-sided residuals below), not values in the AR(1) chain.
        used = m & ~(low | high)
        self.cgm_t = data.cgm_t_min[used]
        self.cgm = data.cgm_mg_dl[used]
        self.idx = self._grid_index(self.cgm_t)
        low_idx, high_idx = self._grid_index(data.cgm_t_min[m & low]), self._grid_index(data.cgm_t_min[m & high])

        inp = self.inputs
        meal_steps = np.flatnonzero(inp.carbs_g > 0) if meal_effects else np.zeros(0, dtype=int)
        self.n_meals = int(meal_steps.size)
        self.n_z = model.N_FIT + self.n_meals
        z = ca.MX.sym("z", self.n_z)
        th = ca.exp(z[:model.N_FIT])
        e = z[model.N_FIT:]
        scale_row = None
        if self.n_meals:
            sel = np.zeros((n_steps, self.n_meals))
            sel[meal_steps, np.arange(self.n_meals)] = 1.0
            scale_row = ca.exp(ca.mtimes(ca.DM(sel), e)).T
        traj = model.casadi_trajectory(base, th, inp, x0_glucose, scale_row)   # states x K
        g = traj[0, :].T
        g_at = g[self.idx.tolist()]
        # AR(1) residuals: r_k = (e_k - phi e_(k-1)) / (sd sqrt(1 - phi^2)) for consecutive readings (gap-aware).
        phi = RESIDUAL_AR1
        e_cgm = g_at - ca.DM(self.cgm)
        if phi > 0.0 and self.cgm.size > 1:
            consec = np.concatenate([[False], np.diff(self.cgm_t) <= 1.5 * pt.DT_MIN])
            a = np.where(consec, phi, 0.0)
            scale = np.where(consec, CGM_SD_MG_DL * math.sqrt(1.0 - phi ** 2), CGM_SD_MG_DL)
            r_cgm = ca.vertcat(e_cgm[0], e_cgm[1:] - ca.DM(a[1:]) * e_cgm[:-1]) / ca.DM(scale)
        else:
            r_cgm = e_cgm / CGM_SD_MG_DL
        if low_idx.size:       # LOW: glucose at most the limit
            r_cgm = ca.vertcat(r_cgm, ca.fmax(g[low_idx.tolist()] - CGM_LOW_MG_DL, 0.0) / CGM_SD_MG_DL)
        if high_idx.size:      # HIGH: glucose at least the limit
            r_cgm = ca.vertcat(r_cgm, ca.fmax(CGM_HIGH_MG_DL - g[high_idx.tolist()], 0.0) / CGM_SD_MG_DL)
        median, self.prior_sd = model.prior(base)
        prior_mu = np.log(median)
        self.prior_mu = prior_mu
        w_prior = ca.DM(model.prior_sqrt_information(base))
        r = ca.vertcat(r_cgm,
                       ca.mtimes(w_prior, z[:model.N_FIT] - ca.DM(prior_mu)), e / MEAL_ERROR_LOG_SD)
        self.f_r = ca.Function("r", [z], [r])
        self.f_j = ca.Function("j", [z], [ca.jacobian(r, z)])
        self.f_traj = ca.Function("traj", [z], [traj])

    def _grid_index(self, t_min: np.ndarray) -> np.ndarray:
        """Readings mapped to the grid point at or after them (the state after step k is at t0 + 5 (k + 1))."""
        return np.clip(np.ceil((t_min - self.t0_min) / pt.DT_MIN).astype(int) - 1, 0, self.n_steps - 1)

    def residuals(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.f_r(z)).ravel()

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.f_j(z))

    def neg_log_post(self, z: np.ndarray) -> float:
        r = self.residuals(z)
        return 0.5 * float(r @ r)


def fit_twin(data: PatientData, *, mcmc_samples: int = 0, seed: int = 0, weight_kg: float | None = None,
             start_min: float | None = None, end_min: float | None = None,
             meal_effects: bool | None = None, model: str = DEFAULT_MODEL,
             population_exclude: tuple[str, ...] = ()) -> TwinFit:
    """MAP fit (and optionally ``mcmc_samples`` posterior samples) of the personal twin to ``data``.

    ``model``: the twin's equations (:data:`MODELS`). ``population_exclude``: reference subjects left out of the
    ``uva`` twin's population (fixed parameters and prior), e.g. the subject a validation fits.

    Raises:
        FitRefusedError: the data cannot identify the parameters (reasons listed).
        FitFailedError: the optimiser did not converge.
    """
    from scipy.optimize import least_squares

    if start_min is not None or end_min is not None:
        data = data.window(start_min if start_min is not None else -np.inf, end_min if end_min is not None else np.inf)
    reasons = check_identifiable(data)
    if reasons:
        raise FitRefusedError(reasons)
    mod = twin_model(model)
    base = _base_from(data, weight_kg, model, population_exclude)
    t0 = float(np.floor(data.cgm_t_min[0] / pt.DT_MIN) * pt.DT_MIN)
    n_steps = int(np.ceil((data.cgm_t_min[-1] - t0) / pt.DT_MIN)) + 1
    prob = _Problem(data, base, t0, n_steps, float(data.cgm_mg_dl[0]),
                    MEAL_EFFECTS if meal_effects is None else meal_effects, mod)
    z0 = np.concatenate([prob.prior_mu, np.zeros(prob.n_meals)])
    lo_th, hi_th = mod.log_bounds(base, LOG_BOUND)
    lo = np.concatenate([lo_th, np.full(prob.n_meals, -MEAL_ERROR_BOUND)])
    hi = np.concatenate([hi_th, np.full(prob.n_meals, MEAL_ERROR_BOUND)])
    res = least_squares(prob.residuals, z0, jac=prob.jacobian, bounds=(lo, hi), method="trf", x_scale="jac",
                        max_nfev=200, xtol=1e-8, ftol=1e-8)
    if res.status <= 0 or not np.all(np.isfinite(res.x)):
        raise FitFailedError(f"MAP optimisation failed: status {res.status}: {res.message}")
    z_full = res.x
    jac = prob.jacobian(z_full)
    hess = jac.T @ jac
    cov_full = np.linalg.pinv(hess)
    z, cov = z_full[:mod.N_FIT], cov_full[:mod.N_FIT, :mod.N_FIT]
    e_map = z_full[mod.N_FIT:]
    carb_sd = (float(np.sqrt(np.mean(e_map ** 2 + np.diag(cov_full)[mod.N_FIT:]))) if e_map.size
               else MEAL_ERROR_LOG_SD)
    sd_post = np.sqrt(np.clip(np.diag(cov), 0, None))
    # Identifiability: the data must narrow the prior of the core parameters (overall sensitivity, basal glucose).
    ratio = sd_post / prob.prior_sd
    notes = []
    core = {"insulin sensitivity": float(np.min(ratio[mod.I_ISF])), "basal glucose": float(ratio[mod.I_GB])}
    weak = [f"{k} (posterior/prior SD {v:.2f})" for k, v in core.items() if v > 0.9]
    if weak:
        raise FitRefusedError([f"the data do not identify {', '.join(weak)}"])
    for i, name in enumerate(mod.FIT_PARAM_NAMES):
        if ratio[i] > 0.9:
            notes.append(f"{name}: not informed by the data, prior used")
    traj = np.asarray(prob.f_traj(z_full))
    g = traj[0, prob.idx]
    rmse = float(np.sqrt(np.mean((g - prob.cgm) ** 2)))
    mard = float(np.mean(np.abs(g - prob.cgm) / prob.cgm) * 100.0)
    samples = np.zeros((0, mod.N_FIT))
    if mcmc_samples > 0:
        samples = np.exp(_metropolis(prob, z_full, cov_full, mcmc_samples, seed, lo, hi)[:, :mod.N_FIT])
    x0 = mod.initial_state(base, np.exp(z), prob.x0_glucose)
    return TwinFit(base, np.exp(z), cov, t0, x0, rmse, mard, int(prob.cgm.size), samples, tuple(notes),
                   traj[:, -1].copy(), t0 + pt.DT_MIN * n_steps, carb_sd, mod.NAME)


def _metropolis(prob: _Problem, z_map: np.ndarray, cov: np.ndarray, n: int, seed: int,
                lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Random-walk Metropolis in log space with the Laplace covariance as proposal (seeded)."""
    rng = np.random.default_rng(seed)
    d = z_map.size
    chol = np.linalg.cholesky(cov * (2.38 ** 2 / d) + 1e-12 * np.eye(d))
    burn = n // 2
    z, lp = z_map.copy(), -prob.neg_log_post(z_map)
    out = np.empty((n, d))
    for i in range(n + burn):
        prop = z + chol @ rng.standard_normal(d)
        if np.all(prop > lo) and np.all(prop < hi):
            lp_prop = -prob.neg_log_post(prop)
            if math.log(rng.random()) < lp_prop - lp:
                z, lp = prop, lp_prop
        if i >= burn:
            out[i - burn] = z
    return out

"""Unscented Kalman filter over the control twin (filterpy), with explicit, JSON-serialisable state.

The filter estimates the twin's eight states (:data:`patient_model.bergman_twin.STATE_NAMES`): glucose, insulin
action, the two subcutaneous insulin depots, the two gut compartments, an unexplained glucose flux ``D``
(mg/dL/min; it rises when a meal nobody announced is absorbed and falls with exercise or over-counted carbs) and a
slowly varying insulin-sensitivity multiplier ``S``. The only measurement is CGM glucose.

* Predict: the twin's RK4 step with the insulin that the pump records say was delivered and the announced carbs.
  ``D`` and ``S`` are random walks in the filter (``D`` decays only in the MPC's forecast). Predicting through a
  CGM gap is just predicting without updates: the covariance grows.
* Update: rejected when the normalised innovation squared exceeds ``gate_sigma**2`` (an outlier); after
  ``max_rejections`` rejections in a row the reading is accepted anyway (the glucose really moved) with inflated
  glucose variance.
* States are clipped to their physical ranges after each step (carbs and depots >= 0, S within its bounds).

No clock and no I/O: every function takes the filter state and returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import importlib
import importlib.util
import sys
import types

import numpy as np

from patient_model.bergman_twin import (
    IDX_D, IDX_G, IDX_ISC1, IDX_ISC2, IDX_Q1, IDX_Q2, IDX_S, IDX_X, N_STATES, rk4_step,
)


class FilterStateError(ValueError):
    """A serialised filter state is malformed (wrong shape, non-finite values)."""


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Noise levels and limits. Process noise standard deviations are per 5 minutes (scaled with sqrt(dt))."""

    glucose_noise_mg_dl: float = 1.5
    action_noise_per_min: float = 2e-5
    depot_noise_u: float = 0.02
    gut_noise_g: float = 0.5
    disturbance_noise_mg_dl_per_min: float = 0.25
    sensitivity_noise: float = 0.004
    measurement_sd_mg_dl: float = 9.0
    gate_sigma: float = 4.5
    max_rejections: int = 2
    sensitivity_min: float = 0.5
    sensitivity_max: float = 2.0
    disturbance_min_mg_dl_per_min: float = -3.0
    disturbance_max_mg_dl_per_min: float = 8.0
    alpha: float = 0.5
    beta: float = 2.0
    kappa: float = 0.0

    def process_sd_per_5min(self) -> np.ndarray:
        return np.array([
            self.glucose_noise_mg_dl, self.action_noise_per_min, self.depot_noise_u, self.depot_noise_u,
            self.gut_noise_g, self.gut_noise_g, self.disturbance_noise_mg_dl_per_min, self.sensitivity_noise,
        ])

    def initial_sd(self) -> np.ndarray:
        """Prior standard deviations of a freshly initialised filter."""
        return np.array([10.0, 1e-4, 0.1, 0.1, 5.0, 5.0, 0.5, 0.1])


@dataclass(frozen=True, slots=True)
class FilterState:
    """The filter's estimate at ``t_min``: mean ``x`` (8), covariance ``P`` (8 x 8) and bookkeeping."""

    t_min: float
    x: np.ndarray
    P: np.ndarray
    rejected_in_row: int = 0
    n_updates: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "t_min": float(self.t_min),
            "x": np.asarray(self.x, dtype=float).tolist(),  # tolist gives the same Python floats, at C speed
            "P": np.asarray(self.P, dtype=float).tolist(),
            "rejected_in_row": int(self.rejected_in_row),
            "n_updates": int(self.n_updates),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FilterState":
        try:
            x = np.asarray(data["x"], dtype=float)
            P = np.asarray(data["P"], dtype=float)
            t = float(data["t_min"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FilterStateError(f"malformed filter state: {exc}") from exc
        if x.shape != (N_STATES,) or P.shape != (N_STATES, N_STATES):
            raise FilterStateError(f"filter state has shapes {x.shape}, {P.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(P)) and np.isfinite(t)):
            raise FilterStateError("filter state holds non-finite values")
        return cls(t, x, P, int(data.get("rejected_in_row", 0)), int(data.get("n_updates", 0)))


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """Outcome of one measurement update."""

    accepted: bool
    innovation_mg_dl: float
    nis: float
    reason: str = ""


def _filterpy_kalman():
    """Import ``filterpy.kalman`` without paying for ``scipy.stats`` at start-up.

    ``filterpy.kalman`` imports ``filterpy.stats`` (for ``logpdf`` only), which imports ``scipy.stats``: about 0.6 s
    of a cold start on a small board, for a function this filter never calls. When nothing has imported
    ``filterpy.stats`` yet, a stand-in module is registered that loads the real one on first attribute access
    (``logpdf`` is a thin wrapper that does so when called), so the behaviour of every name is unchanged.
    """
    if "filterpy.stats" not in sys.modules:
        spec = importlib.util.find_spec("filterpy")
        if spec is not None and spec.submodule_search_locations:
            stand_in = types.ModuleType("filterpy.stats")
            stand_in.__path__ = [p + "/stats" for p in spec.submodule_search_locations]

            def _real():
                return importlib.import_module("filterpy.stats.stats")

            def logpdf(*args, **kwargs):
                return _real().logpdf(*args, **kwargs)

            stand_in.logpdf = logpdf
            stand_in.__getattr__ = lambda name: getattr(_real(), name)  # PEP 562: everything else, lazily
            sys.modules["filterpy.stats"] = stand_in
    return importlib.import_module("filterpy.kalman")


def _make_vector_ukf_class():
    kalman = _filterpy_kalman()

    class _VectorUKF(kalman.UnscentedKalmanFilter):
        """filterpy's UKF with the sigma points propagated through the twin in one vectorised RK4 call."""

        def compute_process_sigmas(self, dt, fx=None, **fx_args):  # noqa: D401 - filterpy override
            sigmas = self.points_fn.sigma_points(self.x, self.P)
            self.sigmas_f = rk4_step(sigmas.T, fx_args["u"], fx_args["p"], dt).T

        def predict(self, dt=None, UT=None, fx=None, **fx_args):  # noqa: D401 - filterpy override
            # as filterpy's, without re-drawing sigma points after the transform (TwinUKF.update draws its own)
            self.compute_process_sigmas(dt, fx, **fx_args)
            self.x, self.P = kalman.unscented_transform(self.sigmas_f, self.Wm, self.Wc, self.Q, self.x_mean,
                                                        self.residual_x)

        def update(self, z, R=None, UT=None, hx=None, **hx_args):  # noqa: D401 - filterpy override
            # as filterpy's for the glucose-only measurement, with the per-sigma-point loops (h(x) and the cross
            # covariance) done as array operations; same formulas, same attributes set (y, S, K, x, P)
            R = self.R if R is None else R
            self.sigmas_h = self.sigmas_f[:, IDX_G:IDX_G + 1]
            zp, self.S = kalman.unscented_transform(self.sigmas_h, self.Wm, self.Wc, R)
            self.SI = 1.0 / self.S
            Pxz = ((self.sigmas_f - self.x) * self.Wc[:, None]).T @ (self.sigmas_h - zp)
            self.K = Pxz @ self.SI
            self.y = np.asarray(z, dtype=float) - zp
            self.x = self.x + self.K @ self.y
            self.P = self.P - self.K @ self.S @ self.K.T
            self.z = np.array(z, dtype=float)

    class _MerwePoints(kalman.MerweScaledSigmaPoints):
        """filterpy's Merwe scaled sigma points, the 2n points written in two array operations instead of a loop
        (same values: ``x + U[k]`` and ``x - U[k]``, where filterpy computes ``x - (-U[k])`` and ``x - U[k]``)."""

        def sigma_points(self, x, P):  # noqa: D401 - filterpy override
            n = self.n
            x = np.asarray(x, dtype=float)
            if x.shape != (n,) or np.shape(P) != (n, n):
                return super().sigma_points(x, P)
            lambda_ = self.alpha ** 2 * (n + self.kappa) - n
            U = self.sqrt((lambda_ + n) * P)
            return np.vstack((x, x + U, x - U))

    return _VectorUKF, _MerwePoints


def _fx(x, dt, u, p):
    return rk4_step(x, u, p, dt)


def _hx(x):
    return np.array([x[IDX_G]])


@dataclass
class TwinUKF:
    """The twin's UKF. Stateless between calls: pass a :class:`FilterState`, get one back."""

    config: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        vector_ukf, sigma_points = _make_vector_ukf_class()
        points = sigma_points(N_STATES, alpha=self.config.alpha, beta=self.config.beta, kappa=self.config.kappa,
                              sqrt_method=_upper_cholesky)
        self._ukf = vector_ukf(dim_x=N_STATES, dim_z=1, dt=5.0, hx=_hx, fx=_fx, points=points)
        self._ukf.R = np.array([[self.config.measurement_sd_mg_dl ** 2]])
        self._q_per_5min = np.diag(self.config.process_sd_per_5min() ** 2)

    def initial(self, x0: np.ndarray, t_min: float, sd: np.ndarray | None = None) -> FilterState:
        """A fresh estimate around ``x0`` with the prior spread of :meth:`FilterConfig.initial_sd` (or ``sd``)."""
        sd = self.config.initial_sd() if sd is None else np.asarray(sd, dtype=float)
        return FilterState(float(t_min), np.asarray(x0, dtype=float).copy(), np.diag(sd ** 2))

    def predict(self, fs: FilterState, dt_min: float, insulin_u_per_min: float, carbs_g: float,
                params: np.ndarray) -> FilterState:
        """Advance by ``dt_min`` minutes; ``carbs_g`` enter the gut at the start of the step."""
        if dt_min <= 0.0:
            return fs
        x = fs.x.copy()
        x[IDX_Q1] += carbs_g
        ukf = self._ukf
        ukf.x = x
        ukf.Q = self._q_per_5min * (dt_min / 5.0)
        try:  # fs.P normally comes out of _psd already; repair only when the sigma points cannot be drawn
            ukf.P = _symmetric(fs.P)
            ukf.predict(dt=dt_min, u=float(insulin_u_per_min), p=params)
        except np.linalg.LinAlgError:
            ukf.x = x
            ukf.P = _psd(fs.P)
            ukf.predict(dt=dt_min, u=float(insulin_u_per_min), p=params)
        return FilterState(fs.t_min + dt_min, self._clip(ukf.x), _psd(ukf.P), fs.rejected_in_row, fs.n_updates)

    def update(self, fs: FilterState, glucose_mg_dl: float) -> tuple[FilterState, UpdateResult]:
        """Measurement update with innovation gating (see the module docstring)."""
        ukf = self._ukf
        P = _symmetric(fs.P)
        ukf.x = fs.x.copy()
        try:  # as in predict: repair the covariance only when it cannot be factorised
            ukf.sigmas_f = ukf.points_fn.sigma_points(ukf.x, P)
        except np.linalg.LinAlgError:
            P = _psd(P)
            ukf.sigmas_f = ukf.points_fn.sigma_points(ukf.x, P)
        ukf.P = P
        force = fs.rejected_in_row >= self.config.max_rejections
        if force:
            ukf.P = P.copy()
            ukf.P[IDX_G, IDX_G] += (glucose_mg_dl - fs.x[IDX_G]) ** 2
            ukf.sigmas_f = ukf.points_fn.sigma_points(ukf.x, ukf.P)
        ukf.update(np.array([glucose_mg_dl]))
        innovation = float(ukf.y[0])
        nis = float(innovation ** 2 / ukf.S[0, 0])
        if not force and nis > self.config.gate_sigma ** 2:
            result = UpdateResult(False, innovation, nis, f"reading {glucose_mg_dl:.0f} mg/dL rejected as an outlier "
                                                          f"({innovation:+.0f} mg/dL from prediction)")
            return FilterState(fs.t_min, fs.x, P, fs.rejected_in_row + 1, fs.n_updates), result
        new = FilterState(fs.t_min, self._clip(ukf.x), _psd(ukf.P), 0, fs.n_updates + 1)
        return new, UpdateResult(True, innovation, nis, "accepted after repeated outliers" if force else "")

    def _clip(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        x = x.copy()
        x[IDX_G] = min(max(x[IDX_G], 20.0), 600.0)
        for i in (IDX_ISC1, IDX_ISC2, IDX_Q1, IDX_Q2):
            x[i] = max(x[i], 0.0)
        x[IDX_X] = min(max(x[IDX_X], -0.1), 0.1)
        x[IDX_D] = min(max(x[IDX_D], c.disturbance_min_mg_dl_per_min), c.disturbance_max_mg_dl_per_min)
        x[IDX_S] = min(max(x[IDX_S], c.sensitivity_min), c.sensitivity_max)
        return x


def _upper_cholesky(A: np.ndarray) -> np.ndarray:
    """``U`` with ``A = U.T @ U`` (what filterpy's default ``scipy.linalg.cholesky`` returns, without its wrapper
    overhead, which is larger than the factorisation of an 8 x 8 matrix)."""
    return np.linalg.cholesky(A).T


def _symmetric(P: np.ndarray) -> np.ndarray:
    """``P`` itself when exactly symmetric (every covariance this filter writes is), else its symmetric part."""
    return P if np.array_equal(P, P.T) else 0.5 * (P + P.T)


def _psd(P: np.ndarray) -> np.ndarray:
    """Symmetrise and, if needed, repair a covariance so Cholesky succeeds."""
    P = 0.5 * (P + P.T)
    try:
        np.linalg.cholesky(P)
        return P
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(P)
        floor = 1e-12 + 1e-9 * max(float(np.max(np.abs(w))), 1.0)
        return (v * np.maximum(w, floor)) @ v.T

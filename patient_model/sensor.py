"""CGM sensor error model (Breton & Kovatchev 2008), vectorized over N subjects.

The reading of subject ``i`` at time ``t_min`` is built from the subcutaneous glucose ``gsub_mg_dl``
(the UVA/Padova ``Gsub`` state, which already contains the blood-to-interstitium lag) as::

    g      = gsub                                   (or a first-order lagged copy, if lag_tau_min is set)
    g      = calibration_gain * g + calibration_offset_mg_dl
    g      = g * (1 + drift_pct_per_day / 100 * t_min / 1440)
    g      = g + noise(t)                           (if noise is on)
    g      = g - compression_low(t)                 (ramped depth inside each compression window)
    g      = clip(g, params.min_mg_dl, params.max_mg_dl)
    g      = NaN inside a dropout window

Noise (as in simglucose's ``noise_gen.py``): a standard-normal AR(1) sequence
``e_n = PACF * (e_(n-1) + v_n)`` on a 15-min grid, with ``v_n ~ N(0, s^2)`` and
``s = sqrt(1 - PACF^2) / PACF`` so that the stationary variance of ``e`` is exactly 1 (simglucose uses
``s = 1``, giving variance 0.96), passed through the Johnson SU transform
``xi + lambda * sinh((e - gamma) / delta)`` (mg/dL) and interpolated to the query time with a local cubic
(Catmull-Rom) interpolant. The interpolant is local, so the value at ``t`` depends only on the four
surrounding knots and never on how far ahead noise has been generated. With the published parameters the
noise has mean ~0.76 mg/dL and SD ~12 mg/dL at the knots (slightly less between knots).

Randomness: subject ``k`` draws from ``np.random.default_rng([seed, crc32(subject_key), 0x5E45])`` in
fixed blocks of 96 knots (one day), so a subject's noise depends only on ``(seed, subject_key)``, not on
the cohort it is simulated in, nor on the order or spacing of ``measure`` calls.

This module imports no other project package and does no I/O except reading the bundled
``data/sensor_params.csv`` through :mod:`importlib.resources`.
"""

from __future__ import annotations

import csv
import io
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np

__all__ = [
    "SensorError",
    "SensorParams",
    "CompressionLow",
    "SensorFaults",
    "CGMModel",
    "NOISE_KNOT_INTERVAL_MIN",
    "subject_rng",
]

NOISE_KNOT_INTERVAL_MIN = 15.0
"""Spacing of the AR(1) noise knots (min), as in Breton & Kovatchev 2008."""

_KNOTS_PER_BLOCK = 96  # one day of 15-min knots drawn at a time
_NOISE_STREAM = 0x5E45  # stream id that separates sensor noise from other per-subject randomness


class SensorError(ValueError):
    """Invalid sensor parameters, faults or inputs."""


def subject_rng(seed: int, subject_key: str, stream: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, subject_key, stream)`` (stable across processes)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF,
                                  zlib.crc32(subject_key.encode("utf-8")), int(stream)])


@dataclass(frozen=True)
class SensorParams:
    """CGM error-model parameters (one row of ``data/sensor_params.csv``).

    ``pacf`` is the AR(1) coefficient (dimensionless); ``gamma`` and ``delta`` are the Johnson SU shape
    parameters (dimensionless); ``lambda_mg_dl`` and ``xi_mg_dl`` scale and shift the noise (mg/dL);
    ``sample_time_min`` is the device's nominal sample time (min); readings are clipped to
    ``[min_mg_dl, max_mg_dl]``.
    """

    name: str
    pacf: float
    gamma: float
    lambda_mg_dl: float
    delta: float
    xi_mg_dl: float
    sample_time_min: float
    min_mg_dl: float
    max_mg_dl: float

    def __post_init__(self) -> None:
        if not 0.0 < self.pacf < 1.0:
            raise SensorError(f"pacf: must be in (0, 1), got {self.pacf}")
        if not self.delta > 0.0:
            raise SensorError(f"delta: must be > 0, got {self.delta}")
        if not self.lambda_mg_dl > 0.0:
            raise SensorError(f"lambda_mg_dl: must be > 0, got {self.lambda_mg_dl}")
        if not self.sample_time_min > 0.0:
            raise SensorError(f"sample_time_min: must be > 0, got {self.sample_time_min}")
        if not 0.0 <= self.min_mg_dl < self.max_mg_dl:
            raise SensorError(f"min_mg_dl/max_mg_dl: need 0 <= min < max, got {self.min_mg_dl}, {self.max_mg_dl}")

    @staticmethod
    def names() -> tuple[str, ...]:
        """Names of the bundled sensors (e.g. ``Dexcom``, ``GuardianRT``, ``Navigator``)."""
        return tuple(_bundled_sensor_params())

    @staticmethod
    def named(name: str) -> "SensorParams":
        """The bundled parameters of sensor ``name``; raises :class:`SensorError` if unknown."""
        table = _bundled_sensor_params()
        if name not in table:
            raise SensorError(f"unknown sensor {name!r}; bundled: {', '.join(table)}")
        return table[name]

    def noise_mean_mg_dl(self) -> float:
        """Closed-form mean of the Johnson SU noise for a standard-normal ``e`` (mg/dL)."""
        return self.xi_mg_dl - self.lambda_mg_dl * math.exp(1.0 / (2.0 * self.delta ** 2)) * math.sinh(
            self.gamma / self.delta)

    def noise_sd_mg_dl(self) -> float:
        """Closed-form SD of the Johnson SU noise for a standard-normal ``e`` (mg/dL)."""
        w = math.exp(1.0 / self.delta ** 2)
        var = self.lambda_mg_dl ** 2 / 2.0 * (w - 1.0) * (w * math.cosh(2.0 * self.gamma / self.delta) + 1.0)
        return math.sqrt(var)


@lru_cache(maxsize=1)
def _bundled_sensor_params() -> dict[str, SensorParams]:
    text = resources.files("patient_model").joinpath("data/sensor_params.csv").read_text(encoding="utf-8")
    table: dict[str, SensorParams] = {}
    for row in csv.DictReader(io.StringIO(text)):
        table[row["Name"]] = SensorParams(
            name=row["Name"], pacf=float(row["PACF"]), gamma=float(row["gamma"]),
            lambda_mg_dl=float(row["lambda"]), delta=float(row["delta"]), xi_mg_dl=float(row["xi"]),
            sample_time_min=float(row["sample_time"]), min_mg_dl=float(row["min"]), max_mg_dl=float(row["max"]))
    return table


@dataclass(frozen=True)
class CompressionLow:
    """A compression artifact: the reading is pulled down by ``depth_mg_dl`` over [start_min, end_min).

    The depth ramps linearly from 0 to ``depth_mg_dl`` over the first ``ramp_min`` minutes and back to 0
    over the last ``ramp_min`` minutes (a trapezoid); ``ramp_min`` is capped at half the window.
    """

    start_min: float
    end_min: float
    depth_mg_dl: float
    ramp_min: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_min) and math.isfinite(self.end_min) and self.end_min > self.start_min):
            raise SensorError(f"compression low: need start_min < end_min, got {self.start_min}, {self.end_min}")
        if not (math.isfinite(self.depth_mg_dl) and self.depth_mg_dl >= 0.0):
            raise SensorError(f"compression low depth_mg_dl: must be >= 0, got {self.depth_mg_dl}")
        if not (math.isfinite(self.ramp_min) and self.ramp_min >= 0.0):
            raise SensorError(f"compression low ramp_min: must be >= 0, got {self.ramp_min}")

    def depth_at(self, t_min: float) -> float:
        """Depth (mg/dL, >= 0) subtracted from the reading at ``t_min``."""
        if not self.start_min <= t_min < self.end_min:
            return 0.0
        ramp = min(self.ramp_min, (self.end_min - self.start_min) / 2.0)
        if ramp <= 0.0:
            return self.depth_mg_dl
        frac = min(1.0, (t_min - self.start_min) / ramp, (self.end_min - t_min) / ramp)
        return self.depth_mg_dl * max(0.0, frac)


@dataclass(frozen=True)
class SensorFaults:
    """Artifacts of one subject's sensor. Times are simulation minutes.

    ``dropouts``: windows ``(start_min, end_min)`` with no reading (NaN), end exclusive.
    ``compression_lows``: :class:`CompressionLow` windows.
    ``drift_pct_per_day``: linear multiplicative drift, % of reading per 1440 min from t = 0.
    ``calibration_gain`` (dimensionless) and ``calibration_offset_mg_dl``: constant calibration error,
    reading = gain * glucose + offset.
    """

    dropouts: tuple[tuple[float, float], ...] = ()
    compression_lows: tuple[CompressionLow, ...] = ()
    drift_pct_per_day: float = 0.0
    calibration_gain: float = 1.0
    calibration_offset_mg_dl: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropouts", tuple((float(a), float(b)) for a, b in self.dropouts))
        object.__setattr__(self, "compression_lows", tuple(self.compression_lows))
        for a, b in self.dropouts:
            if not (math.isfinite(a) and math.isfinite(b) and b > a):
                raise SensorError(f"dropout: need start_min < end_min, got ({a}, {b})")
        for c in self.compression_lows:
            if not isinstance(c, CompressionLow):
                raise SensorError(f"compression_lows: expected CompressionLow, got {type(c).__name__}")
        if not math.isfinite(self.drift_pct_per_day):
            raise SensorError(f"drift_pct_per_day: must be finite, got {self.drift_pct_per_day}")
        if not (math.isfinite(self.calibration_gain) and self.calibration_gain > 0.0):
            raise SensorError(f"calibration_gain: must be > 0, got {self.calibration_gain}")
        if not math.isfinite(self.calibration_offset_mg_dl):
            raise SensorError(f"calibration_offset_mg_dl: must be finite, got {self.calibration_offset_mg_dl}")

    @property
    def is_empty(self) -> bool:
        """True if this object describes a fault-free sensor."""
        return self == SensorFaults()

    def in_dropout(self, t_min: float) -> bool:
        """True if ``t_min`` lies in a dropout window."""
        return any(a <= t_min < b for a, b in self.dropouts)

    def compression_depth_at(self, t_min: float) -> float:
        """Total compression depth (mg/dL) at ``t_min``."""
        return sum(c.depth_at(t_min) for c in self.compression_lows)


class _CohortNoise:
    """The Johnson-transformed AR(1) knots of every subject, generated lazily in fixed per-subject blocks.

    Column ``j`` of ``knots`` is grid index ``j - 1`` (time ``(j - 1) * 15`` min); column 0 is the
    stationary start. Each subject draws from its own generator, one block of 96 innovations at a time,
    so its knots do not depend on the other subjects.
    """

    def __init__(self, params: SensorParams, rngs: Sequence[np.random.Generator]) -> None:
        self._p = params
        self._rngs = list(rngs)
        self._innov_sd = math.sqrt(1.0 - params.pacf ** 2) / params.pacf
        self._e_last = np.array([float(r.standard_normal()) for r in self._rngs])
        self.knots = self._transform(self._e_last)[:, None]

    def _transform(self, e: np.ndarray) -> np.ndarray:
        p = self._p
        return p.xi_mg_dl + p.lambda_mg_dl * np.sinh((e - p.gamma) / p.delta)

    def ensure(self, n_knots: int) -> None:
        """Make sure at least ``n_knots`` columns exist."""
        blocks = []
        have = self.knots.shape[1]
        while have < n_knots:
            v = np.stack([r.standard_normal(_KNOTS_PER_BLOCK) for r in self._rngs]) * self._innov_sd
            e = np.empty_like(v)
            prev = self._e_last
            for j in range(_KNOTS_PER_BLOCK):
                prev = self._p.pacf * (prev + v[:, j])
                e[:, j] = prev
            self._e_last = prev
            blocks.append(self._transform(e))
            have += _KNOTS_PER_BLOCK
        if blocks:
            self.knots = np.concatenate([self.knots, *blocks], axis=1)

    def window(self, k: int) -> np.ndarray:
        """Knots at grid indices k-1, k, k+1, k+2 for every subject, shape (n, 4)."""
        self.ensure(k + 4)
        return self.knots[:, k:k + 4]


class CGMModel:
    """Continuous glucose monitor error model for ``n`` subjects.

    Parameters
    ----------
    n : number of subjects.
    params : sensor parameters (default: bundled ``Dexcom``).
    sample_time_min : time between readings (min); see :meth:`is_sample_time`.
    seed : base seed; subject ``k``'s noise depends only on ``(seed, subject_keys[k])``.
    subject_keys : one stable key per subject (default ``"0"``, ``"1"``, ...).
    noise : add the Breton & Kovatchev noise (default True).
    faults : one :class:`SensorFaults` per subject (default: none); change later with :meth:`set_faults`.
    lag_tau_min : time constant (min) of an extra first-order interstitial lag; ``None`` (default) = off,
        because the UVA/Padova ``Gsub`` state already carries the lag. The lag is integrated between calls
        with ``gsub`` held constant (zero-order hold), so call :meth:`measure` at every sample time.
    """

    def __init__(self, n: int, params: SensorParams | None = None, sample_time_min: float = 5.0,
                 seed: int = 0, subject_keys: Sequence[str] | None = None, *, noise: bool = True,
                 faults: Sequence[SensorFaults] | None = None, lag_tau_min: float | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SensorError(f"n: must be a positive integer, got {n!r}")
        self.n = int(n)
        self.params = params if params is not None else SensorParams.named("Dexcom")
        if not (isinstance(sample_time_min, (int, float)) and math.isfinite(sample_time_min)
                and sample_time_min > 0):
            raise SensorError(f"sample_time_min: must be > 0, got {sample_time_min!r}")
        self.sample_time_min = float(sample_time_min)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SensorError(f"seed: must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        if subject_keys is None:
            subject_keys = [str(i) for i in range(self.n)]
        keys = tuple(str(k) for k in subject_keys)
        if len(keys) != self.n:
            raise SensorError(f"subject_keys: expected {self.n} keys, got {len(keys)}")
        if len(set(keys)) != len(keys):
            raise SensorError("subject_keys: keys must be unique")
        self.subject_keys = keys
        self.noise = bool(noise)
        if lag_tau_min is not None and not (math.isfinite(lag_tau_min) and lag_tau_min > 0):
            raise SensorError(f"lag_tau_min: must be > 0 or None, got {lag_tau_min!r}")
        self.lag_tau_min = lag_tau_min
        self._faults: list[SensorFaults] = [SensorFaults()] * self.n
        self._refresh_fault_arrays()
        if faults is not None:
            if len(faults) != self.n:
                raise SensorError(f"faults: expected {self.n} entries, got {len(faults)}")
            for i, f in enumerate(faults):
                if not isinstance(f, SensorFaults):
                    raise SensorError(f"faults[{i}]: expected SensorFaults, got {type(f).__name__}")
            self._faults = list(faults)
            self._refresh_fault_arrays()
        self._noise = _CohortNoise(self.params, [subject_rng(self.seed, k, _NOISE_STREAM) for k in keys])
        self._lag_state: np.ndarray | None = None
        self._lag_t_min: float | None = None

    # -- configuration ---------------------------------------------------------------------------------
    @property
    def faults(self) -> tuple[SensorFaults, ...]:
        """The current faults, one per subject."""
        return tuple(self._faults)

    def set_faults(self, subject_index: int, faults: SensorFaults) -> None:
        """Replace subject ``subject_index``'s faults (for injecting artifacts on demand)."""
        if not isinstance(faults, SensorFaults):
            raise SensorError(f"faults: expected SensorFaults, got {type(faults).__name__}")
        if not 0 <= subject_index < self.n:
            raise SensorError(f"subject_index: must be in [0, {self.n}), got {subject_index}")
        self._faults[subject_index] = faults
        self._refresh_fault_arrays()

    def _refresh_fault_arrays(self) -> None:
        self._gain = np.array([f.calibration_gain for f in self._faults])
        self._offset_mg_dl = np.array([f.calibration_offset_mg_dl for f in self._faults])
        self._drift_pct_per_day = np.array([f.drift_pct_per_day for f in self._faults])
        self._faulty = [i for i, f in enumerate(self._faults) if f.dropouts or f.compression_lows]

    def is_sample_time(self, t_min: float) -> bool:
        """True if a reading is due at ``t_min`` (t >= 0 and a multiple of ``sample_time_min``)."""
        if not math.isfinite(t_min) or t_min < 0:
            return False
        q = t_min / self.sample_time_min
        return abs(q - round(q)) < 1e-9 * max(1.0, abs(q))

    # -- noise -----------------------------------------------------------------------------------------
    def noise_mg_dl(self, t_min: float) -> np.ndarray:
        """The additive noise (mg/dL) of every subject at ``t_min`` (zeros if noise is off)."""
        self._check_t(t_min)
        if not self.noise:
            return np.zeros(self.n)
        x = t_min / NOISE_KNOT_INTERVAL_MIN
        k = int(math.floor(x))
        u = x - k
        # Catmull-Rom weights for p(k-1), p(k), p(k+1), p(k+2)
        u2, u3 = u * u, u * u * u
        w0, w1 = -0.5 * u3 + u2 - 0.5 * u, 1.5 * u3 - 2.5 * u2 + 1.0
        w2, w3 = -1.5 * u3 + 2.0 * u2 + 0.5 * u, 0.5 * u3 - 0.5 * u2
        kn = self._noise.window(k)
        # element-wise (not a BLAS product) so each subject's value is bit-identical for any cohort size
        return ((kn[:, 0] * w0 + kn[:, 1] * w1) + kn[:, 2] * w2) + kn[:, 3] * w3

    # -- measurement -----------------------------------------------------------------------------------
    def measure(self, t_min: float, gsub_mg_dl: np.ndarray) -> np.ndarray:
        """Readings (mg/dL) of all subjects at ``t_min`` from subcutaneous glucose ``gsub_mg_dl`` (shape (n,)).

        NaN where there is no reading (dropout window, or a non-finite input); otherwise clipped to
        ``[params.min_mg_dl, params.max_mg_dl]``. Works at any ``t_min >= 0``; a device only reports at
        :meth:`is_sample_time`. With ``lag_tau_min`` set, calls must come in non-decreasing time.
        """
        self._check_t(t_min)
        g = np.asarray(gsub_mg_dl, dtype=float)
        if g.ndim == 0:
            g = np.full(self.n, float(g))
        if g.shape != (self.n,):
            raise SensorError(f"gsub_mg_dl: expected shape ({self.n},), got {g.shape}")
        if self.lag_tau_min is not None:
            g = self._lagged(t_min, g)
        y = (self._gain * g + self._offset_mg_dl) * (1.0 + self._drift_pct_per_day / 100.0 * t_min / 1440.0)
        y = y + self.noise_mg_dl(t_min)
        dropout = ~np.isfinite(g)
        for i in self._faulty:
            f = self._faults[i]
            y[i] -= f.compression_depth_at(t_min)
            dropout[i] |= f.in_dropout(t_min)
        y = np.clip(y, self.params.min_mg_dl, self.params.max_mg_dl)
        y[dropout] = np.nan
        return y

    def _lagged(self, t_min: float, g: np.ndarray) -> np.ndarray:
        tau_min = float(self.lag_tau_min or 0.0)
        if self._lag_state is None or self._lag_t_min is None:
            self._lag_state = g.copy()
        else:
            dt = t_min - self._lag_t_min
            if dt < 0:
                raise SensorError(f"t_min: with a lag, time must not go back ({t_min} < {self._lag_t_min})")
            a = math.exp(-dt / tau_min)
            finite = np.isfinite(g)
            self._lag_state = np.where(finite, g + (self._lag_state - g) * a, self._lag_state)
        self._lag_t_min = t_min
        return self._lag_state.copy()

    @staticmethod
    def _check_t(t_min: float) -> None:
        if not isinstance(t_min, (int, float, np.integer, np.floating)) or not math.isfinite(t_min) or t_min < 0:
            raise SensorError(f"t_min: must be a finite number >= 0, got {t_min!r}")

"""Insulin pump model, numeric and vectorized over N subjects.

The pump takes plain numbers (it cannot import ``safety``; a trial adapter unwraps supervisor-approved
commands into these numbers) and delivers insulin one minute at a time.

Rules
-----
- **Basal** (:meth:`PumpModel.set_basal`): the rate is clipped to ``max_basal_u_per_h`` and then quantized
  *down* to a multiple of ``inc_basal_u_per_h``; rates below ``min_basal_u_per_h`` become 0. The accepted
  rate is delivered as ``rate / 60`` U in every following minute until changed.
- **Bolus** (:meth:`PumpModel.request_bolus`): the amount is clipped to ``max_bolus_u`` and quantized down to
  a multiple of ``inc_bolus_u`` (never up); amounts below ``min_bolus_u`` become 0. The accepted amount is
  queued and delivered in the next call(s) of :meth:`PumpModel.deliver_minute`: entirely in the next minute
  by default, or at most ``bolus_speed_u_per_min`` per minute (quantized down to ``inc_bolus_u``) if that
  option is set. A request made while a bolus is still being delivered is added to it; the cap
  ``max_bolus_u`` applies per request. A request made while occluded or with an empty reservoir is
  rejected (0 accepted).
- **Occlusion** (:meth:`PumpModel.set_occlusion`): while occluded nothing is delivered. Basal that would
  have been delivered is lost and counted in ``undelivered_basal_u``. When an occlusion starts, the
  undelivered remainder of any bolus in progress is cancelled and counted in ``undelivered_bolus_u``. When it
  clears, the programmed basal resumes (no catch-up, no bolus release).
- **Reservoir** (optional): delivery in a minute is limited to what is left; when it reaches 0,
  ``reservoir_empty`` is set and nothing more is delivered; the shortfall is counted as undelivered.
- **Accounting** (per subject, to floating-point round-off):
  ``delivered_total_u == delivered_basal_u + delivered_bolus_u``;
  ``programmed_basal_u == delivered_basal_u + undelivered_basal_u`` (programmed = sum over delivered minutes of
  the accepted rate / 60); ``accepted_bolus_u == delivered_bolus_u + undelivered_bolus_u + cancelled_bolus_u
  + bolus_pending_u``. So with no occlusion, cancellation or empty reservoir the delivered total equals the sum
  of the quantized commands. Per-minute deliveries are kept in :meth:`PumpModel.history_u` (``record=True``).

Minutes must be delivered in order without gaps: ``deliver_minute(t)`` then ``deliver_minute(t + 1)``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["PumpError", "PumpParams", "PumpModel", "quantize_down"]

_EMPTY_U = 1e-9  # reservoir below this (U) counts as empty
_QUANT_EPS = 1e-9  # relative slack so that e.g. 0.15 / 0.05 = 2.9999999999999996 counts as 3 increments


class PumpError(ValueError):
    """Invalid pump parameters, commands or call order."""


def quantize_down(value: np.ndarray | float, increment: float) -> np.ndarray:
    """Largest multiple of ``increment`` not above ``value`` (with 1e-9 slack for binary round-off)."""
    v = np.asarray(value, dtype=float)
    if increment <= 0:
        return v.copy()
    return np.floor(v / increment + _QUANT_EPS) * increment


@dataclass(frozen=True)
class PumpParams:
    """Pump limits and resolution (one row of ``data/pump_params.csv``). Amounts in U, rates in U/h."""

    name: str
    min_bolus_u: float
    max_bolus_u: float
    inc_bolus_u: float
    min_basal_u_per_h: float
    max_basal_u_per_h: float
    inc_basal_u_per_h: float
    sample_time_min: float = 1.0

    def __post_init__(self) -> None:
        for f in ("min_bolus_u", "max_bolus_u", "inc_bolus_u", "min_basal_u_per_h", "max_basal_u_per_h",
                  "inc_basal_u_per_h", "sample_time_min"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise PumpError(f"{f}: must be a finite number >= 0, got {v!r}")
        if self.min_bolus_u > self.max_bolus_u:
            raise PumpError(f"min_bolus_u: must be <= max_bolus_u, got {self.min_bolus_u} > {self.max_bolus_u}")
        if self.min_basal_u_per_h > self.max_basal_u_per_h:
            raise PumpError(f"min_basal_u_per_h: must be <= max_basal_u_per_h, got {self.min_basal_u_per_h}")

    @staticmethod
    def names() -> tuple[str, ...]:
        """Names of the bundled pumps (``Cozmo``, ``Insulet``)."""
        return tuple(_bundled_pump_params())

    @staticmethod
    def named(name: str) -> "PumpParams":
        """The bundled parameters of pump ``name``; raises :class:`PumpError` if unknown."""
        table = _bundled_pump_params()
        if name not in table:
            raise PumpError(f"unknown pump {name!r}; bundled: {', '.join(table)}")
        return table[name]


@lru_cache(maxsize=1)
def _bundled_pump_params() -> dict[str, PumpParams]:
    text = resources.files("patient_model").joinpath("data/pump_params.csv").read_text(encoding="utf-8")
    table: dict[str, PumpParams] = {}
    for row in csv.DictReader(io.StringIO(text)):
        table[row["Name"]] = PumpParams(
            name=row["Name"], min_bolus_u=float(row["min_bolus"]), max_bolus_u=float(row["max_bolus"]),
            inc_bolus_u=float(row["inc_bolus"]), min_basal_u_per_h=float(row["min_basal"]),
            max_basal_u_per_h=float(row["max_basal"]), inc_basal_u_per_h=float(row["inc_basal"]),
            sample_time_min=float(row["sample_time"]))
    return table


class PumpModel:
    """A pump per subject. See the module docstring for the delivery, occlusion and accounting rules.

    Parameters
    ----------
    n : number of subjects.
    params : pump limits (default: bundled ``Insulet``, 0.05 U / 0.05 U/h increments).
    reservoir_u : initial reservoir (U), a scalar or shape (n,); ``None`` (default) = unlimited.
    bolus_speed_u_per_min : maximum bolus delivery speed (U/min); ``None`` (default) = whole bolus in the
        minute after the request.
    record : keep the per-minute delivery record (:meth:`history_u`).
    """

    def __init__(self, n: int, params: PumpParams | None = None, *, reservoir_u: float | np.ndarray | None = None,
                 bolus_speed_u_per_min: float | None = None, record: bool = True) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise PumpError(f"n: must be a positive integer, got {n!r}")
        self.n = int(n)
        self.params = params if params is not None else PumpParams.named("Insulet")
        if bolus_speed_u_per_min is not None:
            speed = float(quantize_down(bolus_speed_u_per_min, self.params.inc_bolus_u))
            if not (math.isfinite(speed) and speed > 0):
                raise PumpError(f"bolus_speed_u_per_min: must be >= inc_bolus_u, got {bolus_speed_u_per_min!r}")
            self.bolus_speed_u_per_min: float | None = speed
        else:
            self.bolus_speed_u_per_min = None
        if reservoir_u is None:
            self.reservoir_u: np.ndarray | None = None
        else:
            self.reservoir_u = self._vector(reservoir_u, "reservoir_u").copy()
        self.record = bool(record)
        self.basal_rate_u_per_h = np.zeros(self.n)
        self.bolus_pending_u = np.zeros(self.n)
        self.occluded = np.zeros(self.n, dtype=bool)
        self.delivered_basal_u = np.zeros(self.n)
        self.delivered_bolus_u = np.zeros(self.n)
        self.undelivered_basal_u = np.zeros(self.n)
        self.undelivered_bolus_u = np.zeros(self.n)
        self.accepted_bolus_u = np.zeros(self.n)
        self.cancelled_bolus_u = np.zeros(self.n)
        self.programmed_basal_u = np.zeros(self.n)
        self.last_delivery_u = np.zeros(self.n)
        self._next_t_min: int | None = None
        self._first_t_min: int | None = None
        self._history: list[np.ndarray] = []
        self._history_bolus: list[np.ndarray] = []

    # -- inputs ----------------------------------------------------------------------------------------
    def _vector(self, x: float | np.ndarray, name: str) -> np.ndarray:
        v = np.asarray(x, dtype=float)
        if v.ndim == 0:
            v = np.full(self.n, float(v))
        if v.shape != (self.n,):
            raise PumpError(f"{name}: expected shape ({self.n},), got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise PumpError(f"{name}: must be finite, got {v[~np.isfinite(v)][0]}")
        if np.any(v < 0):
            raise PumpError(f"{name}: must be >= 0, got {v[v < 0][0]}")
        return v

    def set_basal(self, rate_u_per_h: float | np.ndarray) -> np.ndarray:
        """Program the basal rate (U/h) of every subject; returns the accepted (capped, quantized) rates."""
        r = self._vector(rate_u_per_h, "rate_u_per_h")
        p = self.params
        r = quantize_down(np.minimum(r, p.max_basal_u_per_h), p.inc_basal_u_per_h)
        r = np.where(r < p.min_basal_u_per_h - _QUANT_EPS, 0.0, r)
        self.basal_rate_u_per_h = r
        return r.copy()

    def request_bolus(self, bolus_u: float | np.ndarray) -> np.ndarray:
        """Request a bolus (U) per subject; returns the accepted amount (capped, quantized down, 0 if rejected)."""
        b = self._vector(bolus_u, "bolus_u")
        p = self.params
        b = quantize_down(np.minimum(b, p.max_bolus_u), p.inc_bolus_u)
        b = np.where(b < p.min_bolus_u - _QUANT_EPS, 0.0, b)
        b = np.where(self.occluded | self.reservoir_empty, 0.0, b)
        self.bolus_pending_u = self.bolus_pending_u + b
        self.accepted_bolus_u = self.accepted_bolus_u + b
        return b

    def cancel_bolus(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Cancel the undelivered part of the bolus of the subjects in ``mask`` (all if None); returns it (U)."""
        m = np.ones(self.n, dtype=bool) if mask is None else self._mask(mask)
        cancelled = np.where(m, self.bolus_pending_u, 0.0)
        self.bolus_pending_u = self.bolus_pending_u - cancelled
        self.cancelled_bolus_u = self.cancelled_bolus_u + cancelled
        return cancelled

    def set_occlusion(self, mask: np.ndarray, active: bool) -> None:
        """Start (``active=True``) or clear (``active=False``) an occlusion for the subjects in ``mask``.

        Starting an occlusion cancels any bolus in progress; the remainder is counted in
        ``undelivered_bolus_u``.
        """
        m = self._mask(mask)
        if active:
            newly = m & ~self.occluded
            self.undelivered_bolus_u = self.undelivered_bolus_u + np.where(newly, self.bolus_pending_u, 0.0)
            self.bolus_pending_u = np.where(newly, 0.0, self.bolus_pending_u)
            self.occluded = self.occluded | m
        else:
            self.occluded = self.occluded & ~m

    def _mask(self, mask: np.ndarray) -> np.ndarray:
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (self.n,):
            raise PumpError(f"mask: expected a boolean array of shape ({self.n},), got {m.dtype} {m.shape}")
        return m

    # -- state -----------------------------------------------------------------------------------------
    @property
    def reservoir_empty(self) -> np.ndarray:
        """True where the reservoir is modelled and empty."""
        if self.reservoir_u is None:
            return np.zeros(self.n, dtype=bool)
        return self.reservoir_u <= 0.0

    @property
    def delivered_total_u(self) -> np.ndarray:
        """Insulin delivered since creation (U), basal plus bolus."""
        return self.delivered_basal_u + self.delivered_bolus_u

    # -- stepping --------------------------------------------------------------------------------------
    def deliver_minute(self, t_min: int) -> np.ndarray:
        """Deliver over [t_min, t_min + 1); returns the insulin delivered in that minute (U, i.e. U/min).

        ``t_min`` must be an integer and follow the previous call by exactly one minute.
        """
        if isinstance(t_min, bool) or not isinstance(t_min, (int, np.integer, float, np.floating)) \
                or not math.isfinite(t_min) or t_min != int(t_min):
            raise PumpError(f"t_min: must be an integer minute, got {t_min!r}")
        t = int(t_min)
        if self._next_t_min is not None and t != self._next_t_min:
            raise PumpError(f"t_min: expected minute {self._next_t_min} (minutes are delivered in order), got {t}")
        if self._first_t_min is None:
            self._first_t_min = t
        self._next_t_min = t + 1

        basal = self.basal_rate_u_per_h / 60.0
        self.programmed_basal_u = self.programmed_basal_u + basal
        if self.bolus_speed_u_per_min is None:
            bolus = self.bolus_pending_u.copy()
        else:
            bolus = np.minimum(self.bolus_pending_u, self.bolus_speed_u_per_min)
        self.bolus_pending_u = self.bolus_pending_u - bolus

        blocked = self.occluded | self.reservoir_empty
        if blocked.any():  # (nothing blocked: these would add 0 and change nothing)
            self.undelivered_basal_u = self.undelivered_basal_u + np.where(blocked, basal, 0.0)
            self.undelivered_bolus_u = self.undelivered_bolus_u + np.where(blocked, bolus, 0.0)
            basal = np.where(blocked, 0.0, basal)
            bolus = np.where(blocked, 0.0, bolus)

        if self.reservoir_u is not None:
            want = basal + bolus
            short = want > self.reservoir_u
            if np.any(short):
                # deliver what is left, basal first; the rest is undelivered and the bolus is cancelled
                basal_ok = np.minimum(basal, self.reservoir_u)
                bolus_ok = np.minimum(bolus, self.reservoir_u - basal_ok)
                self.undelivered_basal_u = self.undelivered_basal_u + (basal - basal_ok)
                self.undelivered_bolus_u = self.undelivered_bolus_u + (bolus - bolus_ok) + np.where(
                    short, self.bolus_pending_u, 0.0)
                self.bolus_pending_u = np.where(short, 0.0, self.bolus_pending_u)
                basal, bolus = basal_ok, bolus_ok
                self.reservoir_u = np.where(short, 0.0, self.reservoir_u - basal - bolus)
            else:
                self.reservoir_u = self.reservoir_u - want
            # snap binary round-off (e.g. 1.0 - 10 x 0.1) to an exactly empty reservoir
            self.reservoir_u = np.where(self.reservoir_u < _EMPTY_U, 0.0, self.reservoir_u)

        self.delivered_basal_u = self.delivered_basal_u + basal
        self.delivered_bolus_u = self.delivered_bolus_u + bolus
        delivered = basal + bolus
        self.last_delivery_u = delivered
        if self.record:
            self._history.append(delivered)
            self._history_bolus.append(bolus)
        return delivered.copy()

    def history_u(self) -> np.ndarray:
        """Per-minute delivered insulin (U), shape (minutes delivered, n); row 0 is :attr:`first_t_min`."""
        if not self.record:
            raise PumpError("history_u: this pump was created with record=False")
        if not self._history:
            return np.zeros((0, self.n))
        return np.stack(self._history)

    def history_bolus_u(self) -> np.ndarray:
        """Per-minute delivered bolus insulin (U), shape (minutes delivered, n)."""
        if not self.record:
            raise PumpError("history_bolus_u: this pump was created with record=False")
        if not self._history_bolus:
            return np.zeros((0, self.n))
        return np.stack(self._history_bolus)

    @property
    def first_t_min(self) -> int | None:
        """The minute of the first :meth:`deliver_minute` call (None before it)."""
        return self._first_t_min

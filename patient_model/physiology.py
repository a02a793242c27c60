"""Optional physiology on top of S2008, off by default.

``hypo_risk_term`` (S2013, Dalla Man et al. 2014, "The UVA/PADOVA Type 1 Diabetes Simulator: New Features",
J Diabetes Sci Technol 8(1):26-34): insulin-dependent glucose utilization increases in hypoglycaemia::

    Uid = [Vm0 + Vmx * X * (1 + r1 * risk)] * Gt / (Km0 + Gt)
    risk = 0                       if G >= Gb
         = 10 * f(G)^2             if Gth <= G < Gb
         = 10 * f(Gth)^2           if G < Gth
    f(G) = ln(G)^r2 - ln(Gb)^r2,   r1 = 1.4407, r2 = 0.8124, Gth = 60 mg/dL, G = Gp / Vg (plasma, mg/dL)

As published, the factor (1 + r1 * risk) multiplies the insulin-dependent part Vmx * X (not Vm0).

``intraday_variation``: a daily insulin-sensitivity profile multiplying both Vmx and kp3, after the circadian
pattern reported by Visentin et al. (2015, "Circadian variability of insulin sensitivity: physiological input for in
silico artificial pancreas", Diabetes Technol Ther 17(1):1-7) and used in UVA/Padova S2017 (Visentin et al. 2018,
J Diabetes Sci Technol 12(2):273-281): insulin sensitivity is lowest in the morning (dawn phenomenon and breakfast),
highest in the afternoon. The levels below are this package's modelling choice inspired by those papers, not
identified values:

=================  ==================  =============================================
time of day        nominal multiplier  note
=================  ==================  =============================================
17:00 - 04:00      1.00                evening / night
04:00 - 11:00      0.75                dawn rise and breakfast resistance
11:00 - 17:00      1.10                afternoon
=================  ==================  =============================================

Each change ramps linearly over ``ramp_min`` (60 min) starting at the breakpoint (04:00, 11:00, 17:00). Each
subject, each day and each of the three periods gets its own log-normal factor exp(N(0, day_to_day_sd)),
drawn from ``numpy.random.default_rng([seed, day])`` so the same seed gives the same profile. Minute 0 is midnight of
day 0; the multiplier is evaluated at the start of each minute and held over the minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_PER_DAY = 1440.0


class InvalidOptionsError(ValueError):
    """Physiology options outside their valid range."""


@dataclass(frozen=True)
class PhysiologyOptions:
    """Switches and constants of the optional physiology (all off by default).

    Attributes:
        hypo_risk_term: S2013 increase of insulin-dependent utilization in hypoglycaemia.
        intraday_variation: daily insulin-sensitivity profile on Vmx and kp3 with seeded day-to-day variation.
        r1, r2: S2013 risk constants (dimensionless).
        g_th_mg_dl: hypoglycaemia threshold below which the risk saturates, mg/dL.
        breakpoints_min: minutes after midnight where the profile periods start (04:00, 11:00, 17:00).
        levels: nominal multipliers for the periods starting at the breakpoints (morning, afternoon, evening/night).
        ramp_min: duration of the linear transition after each breakpoint, min.
        day_to_day_sd: standard deviation of the log of the random daily factor (0 = no randomness).
    """

    hypo_risk_term: bool = False
    intraday_variation: bool = False
    r1: float = 1.4407
    r2: float = 0.8124
    g_th_mg_dl: float = 60.0
    breakpoints_min: tuple[float, float, float] = (240.0, 660.0, 1020.0)
    levels: tuple[float, float, float] = (0.75, 1.10, 1.00)
    ramp_min: float = 60.0
    day_to_day_sd: float = 0.10

    def __post_init__(self) -> None:
        if self.g_th_mg_dl <= 1.0:
            raise InvalidOptionsError(f"g_th_mg_dl must be > 1 mg/dL, got {self.g_th_mg_dl}")
        bp = self.breakpoints_min
        if len(bp) != 3 or not (0 <= bp[0] < bp[1] < bp[2] < MIN_PER_DAY):
            raise InvalidOptionsError(f"breakpoints_min must be 3 increasing minutes within a day, got {bp}")
        if len(self.levels) != 3 or min(self.levels) <= 0:
            raise InvalidOptionsError(f"levels must be 3 positive multipliers, got {self.levels}")
        if not 0 <= self.ramp_min <= min(bp[1] - bp[0], bp[2] - bp[1], MIN_PER_DAY - bp[2] + bp[0]):
            raise InvalidOptionsError(f"ramp_min must fit between breakpoints, got {self.ramp_min}")
        if self.day_to_day_sd < 0:
            raise InvalidOptionsError(f"day_to_day_sd must be >= 0, got {self.day_to_day_sd}")

    @property
    def any_enabled(self) -> bool:
        """True when at least one optional term is switched on."""
        return self.hypo_risk_term or self.intraday_variation


def hypo_risk(glucose_mg_dl: np.ndarray, gb_mg_dl: np.ndarray, options: PhysiologyOptions) -> np.ndarray:
    """S2013 hypoglycaemia risk (dimensionless, >= 0) for plasma glucose G and basal glucose Gb (mg/dL)."""
    g = np.maximum(np.asarray(glucose_mg_dl, dtype=float), options.g_th_mg_dl)
    f = np.log(g) ** options.r2 - np.log(gb_mg_dl) ** options.r2
    return np.where(g < gb_mg_dl, 10.0 * f * f, 0.0)


def daily_profile(t_min: float, options: PhysiologyOptions) -> np.ndarray:
    """Weights (3,) of the three periods at a time of day; the nominal multiplier is ``weights @ levels``."""
    tod = t_min % MIN_PER_DAY
    bp = options.breakpoints_min
    w = np.zeros(3)
    # period i runs from bp[i] to bp[i+1] (period 2 wraps around midnight); ramp after each breakpoint
    for i in range(3):
        start = bp[i]
        prev = (i - 1) % 3
        since = (tod - start) % MIN_PER_DAY
        end = (bp[(i + 1) % 3] - start) % MIN_PER_DAY
        if since < end:
            frac = 1.0 if options.ramp_min == 0 else min(since / options.ramp_min, 1.0)
            w[i] = frac
            w[prev] += 1.0 - frac
            return w
    raise AssertionError("unreachable: the periods cover the day")  # pragma: no cover


class PhysiologyModifier:
    """Per-cohort state of the optional physiology (used by :class:`patient_model.uva_padova.CohortSimulator`)."""

    def __init__(self, options: PhysiologyOptions, params: object, seed: int) -> None:
        self.options = options
        self.seed = int(seed)
        self._vmx = np.asarray(params.Vmx)  # type: ignore[attr-defined]
        self._kp3 = np.asarray(params.kp3)  # type: ignore[attr-defined]
        self._n = self._vmx.shape[0]
        self._day_factors: dict[int, np.ndarray] = {}
        self._gb = np.asarray(params.Gb)  # type: ignore[attr-defined]

    def _factors_of_day(self, day: int) -> np.ndarray:
        """Random multipliers (3, N) of the three periods on a given day."""
        if day not in self._day_factors:
            if len(self._day_factors) > 8:
                self._day_factors.clear()
            rng = np.random.default_rng([self.seed, day + 1_000_000])
            z = rng.standard_normal((3, self._n))
            self._day_factors[day] = np.exp(self.options.day_to_day_sd * z)
        return self._day_factors[day]

    def multiplier(self, t_min: float) -> np.ndarray:
        """Insulin-sensitivity multiplier (N,) at minute ``t_min`` (1.0 when intraday variation is off)."""
        if not self.options.intraday_variation:
            return np.ones(self._n)
        w = daily_profile(t_min, self.options)
        day = int(math.floor(t_min / MIN_PER_DAY))
        levels = np.asarray(self.options.levels)[:, None] * self._factors_of_day(day)
        # the period that wraps past midnight (evening) belongs to the day it started on
        tod = t_min % MIN_PER_DAY
        if tod < self.options.breakpoints_min[0] + self.options.ramp_min:
            levels = levels.copy()
            levels[2] = self.options.levels[2] * self._factors_of_day(day - 1)[2]
        return w @ levels

    def factors(self, t_min: float) -> tuple[np.ndarray, np.ndarray]:
        """Effective (Vmx, kp3), each (N,), for the minute starting at ``t_min``."""
        m = self.multiplier(t_min)
        return self._vmx * m, self._kp3 * m

    def hypo_factor(self, gp_mg_per_kg: np.ndarray, vg_dl_per_kg: np.ndarray, gb_mg_dl: np.ndarray) -> np.ndarray:
        """(1 + r1 * risk) for plasma glucose mass Gp (mg/kg), or ones when the term is off."""
        if not self.options.hypo_risk_term:
            return np.ones_like(gp_mg_per_kg)
        risk = hypo_risk(gp_mg_per_kg / vg_dl_per_kg, gb_mg_dl, self.options)
        return 1.0 + self.options.r1 * risk

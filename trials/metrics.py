"""Clinical glucose metrics (international consensus, Battelino 2019) computed on arrays of readings.

Every function accepts glucose in mg/dL, either one profile ``(T,)`` or a batch of profiles ``(N, T)`` (one row per
subject, 5-minute samples); NaN marks a missing reading and is left out of every statistic.

Definitions (the same as in ``docs/trials.md``):

- time in range ``tir_pct``: readings with 70 <= G <= 180 mg/dL, in % of the valid readings;
- time below range ``tbr70_pct`` (G < 70) and ``tbr54_pct`` (G < 54); time above range ``tar180_pct`` (G > 180)
  and ``tar250_pct`` (G > 250);
- ``mean_mg_dl``, ``sd_mg_dl`` (sample SD, ``ddof=1``), ``cv_pct`` = 100 SD / mean;
- ``gmi_pct`` (Bergenstal 2018) = 3.31 + 0.02392 x mean;
- ``lbgi``/``hbgi`` (Kovatchev): f(G) = 1.509 ((ln G)^1.084 - 5.381), risk r = 10 f^2;
  LBGI = mean of r where f < 0 (0 otherwise), HBGI = mean of r where f > 0; G clipped to 20-600 mg/dL;
- ``gri`` (Klonoff 2022) = 3.0 VLow + 2.4 Low + 1.6 VHigh + 0.8 High, with VLow = % < 54, Low = % 54-69,
  VHigh = % > 250, High = % 181-250, capped at 100;
- ``hypo_events``: level-2 hypoglycemia episodes, i.e. at least 15 consecutive minutes below 54 mg/dL; an episode
  ends after at least 15 consecutive minutes at or above 54 mg/dL (so two runs closer than that count once).

Cohort-level metrics (:func:`pool`) are computed from per-subject sufficient statistics, exactly as if every
subject's readings were pooled, so a 100,000-subject trial never has to hold all readings at once.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

TIR_LOW_MG_DL = 70.0
TIR_HIGH_MG_DL = 180.0
HYPO_L2_MG_DL = 54.0
HYPER_L2_MG_DL = 250.0
HYPO_EVENT_MIN = 15.0

GLUCOSE_KEYS: tuple[str, ...] = (
    "tir_pct", "tbr70_pct", "tbr54_pct", "tar180_pct", "tar250_pct",
    "mean_mg_dl", "sd_mg_dl", "cv_pct", "gmi_pct", "lbgi", "hbgi", "gri", "hypo_events",
)
"""Keys computed from glucose alone (the ``cgm`` sub-object of a summary has exactly these)."""

METRIC_KEYS: tuple[str, ...] = GLUCOSE_KEYS[:-1] + ("tdi_u", "hypo_events", "interventions")
"""Keys of one metrics object M in ``summary.json`` (plus the ``cgm`` sub-object)."""

STAT_FIELDS: tuple[str, ...] = (
    "n", "n_tbr54", "n_tbr70", "n_tar180", "n_tar250", "mean", "m2", "sum_lbgi", "sum_hbgi", "hypo_events",
)
"""Per-profile sufficient statistics (:func:`glucose_stats`); ``m2`` = sum of squared deviations from the mean."""

CONSENSUS_TARGETS: dict[str, tuple[str, float]] = {
    "tir_pct": (">", 70.0),
    "tbr70_pct": ("<", 4.0),
    "tbr54_pct": ("<", 1.0),
    "tar180_pct": ("<", 25.0),
    "tar250_pct": ("<", 5.0),
    "cv_pct": ("<=", 36.0),
}
"""Consensus targets for type 1 diabetes (Battelino 2019): metric -> (comparison, limit)."""


def meets_target(key: str, value: float | None) -> bool | None:
    """True/False when ``key`` has a consensus target and ``value`` is a number; None otherwise."""
    if key not in CONSENSUS_TARGETS or value is None or not math.isfinite(value):
        return None
    op, limit = CONSENSUS_TARGETS[key]
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


def gmi_pct(mean_mg_dl: float | np.ndarray) -> float | np.ndarray:
    """Glucose management indicator (%) from mean glucose in mg/dL (Bergenstal 2018)."""
    return 3.31 + 0.02392 * mean_mg_dl


def bg_risk(glucose_mg_dl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kovatchev low and high risk of each reading: (rl, rh), both >= 0; NaN stays NaN. Glucose is clipped to
    20-600 mg/dL, the domain over which the risk function is defined (risk ~100 at both ends)."""
    g = np.clip(np.asarray(glucose_mg_dl, dtype=float), 20.0, 600.0)
    f = 1.509 * (np.log(g) ** 1.084 - 5.381)
    r = 10.0 * f * f
    rl = np.where(f < 0.0, r, 0.0)
    rh = np.where(f > 0.0, r, 0.0)
    nan = np.isnan(np.asarray(glucose_mg_dl, dtype=float))
    return np.where(nan, np.nan, rl), np.where(nan, np.nan, rh)


def gri(vlow_pct, low_pct, vhigh_pct, high_pct):
    """Glycemia risk index (Klonoff 2022) from the four band percentages, capped at 100."""
    value = 3.0 * np.asarray(vlow_pct) + 2.4 * np.asarray(low_pct) + 1.6 * np.asarray(vhigh_pct) \
        + 0.8 * np.asarray(high_pct)
    return np.minimum(value, 100.0)


def hypo_events(glucose_mg_dl: np.ndarray, sample_min: float = 5.0, threshold_mg_dl: float = HYPO_L2_MG_DL,
                min_duration_min: float = HYPO_EVENT_MIN) -> np.ndarray:
    """Number of hypoglycemia episodes per profile: >= ``min_duration_min`` below ``threshold_mg_dl``.

    A run of consecutive readings below the threshold lasting at least ``min_duration_min`` (``ceil(d / sample)``
    readings) starts an episode; the episode ends only after ``min_duration_min`` of readings at or above the
    threshold. A missing reading (NaN) counts as neither below nor recovered: it pauses both counters.

    Returns an int array of shape ``(N,)`` for a ``(N, T)`` input, or a 0-d array for ``(T,)``.
    """
    g = np.asarray(glucose_mg_dl, dtype=float)
    one = g.ndim == 1
    g2 = np.atleast_2d(g)
    need = max(1, int(math.ceil(min_duration_min / sample_min - 1e-9)))
    n = g2.shape[0]
    below_run = np.zeros(n, dtype=np.int64)
    above_run = np.zeros(n, dtype=np.int64)
    in_event = np.zeros(n, dtype=bool)
    count = np.zeros(n, dtype=np.int64)
    for t in range(g2.shape[1]):
        col = g2[:, t]
        valid = ~np.isnan(col)
        below = valid & (col < threshold_mg_dl)
        above = valid & (col >= threshold_mg_dl)
        below_run = np.where(below, below_run + 1, np.where(above, 0, below_run))
        above_run = np.where(above, above_run + 1, np.where(below, 0, above_run))
        start = ~in_event & (below_run >= need)
        count += start
        in_event = (in_event | start) & ~(above_run >= need)
    return count[0] if one else count


def glucose_stats(glucose_mg_dl: np.ndarray, sample_min: float = 5.0) -> dict[str, np.ndarray]:
    """Sufficient statistics of each profile (rows of ``(N, T)``), keys :data:`STAT_FIELDS`, arrays of shape (N,)."""
    g = np.atleast_2d(np.asarray(glucose_mg_dl, dtype=float))
    valid = ~np.isnan(g)
    n = valid.sum(axis=1)
    gz = np.where(valid, g, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, gz.sum(axis=1) / np.maximum(n, 1), np.nan)
        dev = np.where(valid, g - mean[:, None], 0.0)
    rl, rh = bg_risk(g)
    return {
        "n": n.astype(np.int64),
        "n_tbr54": (valid & (g < HYPO_L2_MG_DL)).sum(axis=1),
        "n_tbr70": (valid & (g < TIR_LOW_MG_DL)).sum(axis=1),
        "n_tar180": (valid & (g > TIR_HIGH_MG_DL)).sum(axis=1),
        "n_tar250": (valid & (g > HYPER_L2_MG_DL)).sum(axis=1),
        "mean": mean,
        "m2": (dev * dev).sum(axis=1),
        "sum_lbgi": np.where(valid, rl, 0.0).sum(axis=1),
        "sum_hbgi": np.where(valid, rh, 0.0).sum(axis=1),
        "hypo_events": np.asarray(hypo_events(g, sample_min)),
    }


def metrics_from_stats(stats: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Glucose metrics (keys :data:`GLUCOSE_KEYS`) of each row of sufficient statistics; NaN where n == 0."""
    n = np.asarray(stats["n"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = lambda k: np.where(n > 0, 100.0 * np.asarray(stats[k], dtype=float) / n, np.nan)  # noqa: E731
        tbr54, tbr70, tar180, tar250 = pct("n_tbr54"), pct("n_tbr70"), pct("n_tar180"), pct("n_tar250")
        mean = np.asarray(stats["mean"], dtype=float)
        sd = np.where(n > 1, np.sqrt(np.asarray(stats["m2"], dtype=float) / (n - 1.0)), np.nan)
        return {
            "tir_pct": np.where(n > 0, 100.0 - tbr70 - tar180, np.nan),
            "tbr70_pct": tbr70,
            "tbr54_pct": tbr54,
            "tar180_pct": tar180,
            "tar250_pct": tar250,
            "mean_mg_dl": mean,
            "sd_mg_dl": sd,
            "cv_pct": 100.0 * sd / mean,
            "gmi_pct": 3.31 + 0.02392 * mean,
            "lbgi": np.where(n > 0, np.asarray(stats["sum_lbgi"], dtype=float) / n, np.nan),
            "hbgi": np.where(n > 0, np.asarray(stats["sum_hbgi"], dtype=float) / n, np.nan),
            "gri": np.where(n > 0, gri(tbr54, tbr70 - tbr54, tar250, tar180 - tar250), np.nan),
            "hypo_events": np.asarray(stats["hypo_events"], dtype=float),
        }


def glucose_metrics(glucose_mg_dl: np.ndarray, sample_min: float = 5.0) -> dict[str, float]:
    """All glucose metrics of one profile ``(T,)`` as plain floats (``hypo_events`` as int)."""
    m = metrics_from_stats(glucose_stats(np.asarray(glucose_mg_dl, dtype=float)[None, :], sample_min))
    out = {k: float(v[0]) for k, v in m.items()}
    out["hypo_events"] = int(out["hypo_events"])
    return out


def pool(stats: Mapping[str, np.ndarray], index: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
    """Sufficient statistics of several profiles pooled into one (as if all readings were one profile).

    Counts, risk sums and events add; the mean and the sum of squared deviations combine exactly
    (Chan et al.'s parallel formula: m2 = sum m2_i + sum n_i (mean_i - mean)^2). Rows with n == 0 are ignored.
    ``index`` selects the rows (all rows by default); the result is a dict of 0-d values.
    """
    sel = slice(None) if index is None else np.asarray(index, dtype=np.int64)
    n_i = np.asarray(stats["n"], dtype=float)[sel]
    ok = n_i > 0
    n = float(n_i[ok].sum())
    out: dict[str, float] = {}
    for key in ("n_tbr54", "n_tbr70", "n_tar180", "n_tar250", "sum_lbgi", "sum_hbgi", "hypo_events"):
        out[key] = float(np.asarray(stats[key], dtype=float)[sel][ok].sum())
    out["n"] = n
    if n == 0:
        out["mean"], out["m2"] = math.nan, math.nan
        return out
    mean_i = np.asarray(stats["mean"], dtype=float)[sel][ok]
    mean = float((n_i[ok] * mean_i).sum() / n)
    out["mean"] = mean
    out["m2"] = float(np.asarray(stats["m2"], dtype=float)[sel][ok].sum() + (n_i[ok] * (mean_i - mean) ** 2).sum())
    return out

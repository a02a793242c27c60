"""Control Variability Grid Analysis (Magni et al. 2008).

One point per glucose profile from its minimum and maximum:

- X = clamp(110 - min, 0, 60): 0 at a minimum of 110 mg/dL or more, 20 at 90, 40 at 70, 60 at 50 or less;
- Y maps the maximum piecewise linearly: 110 -> 0, 180 -> 20, 300 -> 40, 400 -> 60 (clamped to [0, 60]).

The grid lines X = 20, 40 (min 90, 70 mg/dL) and Y = 20, 40 (max 180, 300 mg/dL) split the square into nine zones:

====================  =============  ================  =============
max \\ min             > 90 (X < 20)  70-90 (20..40)    < 70 (X >= 40)
====================  =============  ================  =============
> 300 (Y >= 40)       upper C        upper D           E
180-300 (20..40)      upper B        B                 lower D
< 180 (Y < 20)        A              lower B           lower C
====================  =============  ================  =============

A point on a grid line belongs to the worse zone (X = 20 is already "70-90").
"""

from __future__ import annotations

import numpy as np

ZONES: tuple[str, ...] = ("A", "Lower B", "B", "Upper B", "Lower C", "Upper C", "Lower D", "Upper D", "E")
"""Zone names, best first (the order used in tables)."""

_GRID = (
    ("A", "Lower B", "Lower C"),        # Y < 20
    ("Upper B", "B", "Lower D"),        # 20 <= Y < 40
    ("Upper C", "Upper D", "E"),        # Y >= 40
)


def cvga_x(min_mg_dl):
    """X coordinate of a profile's minimum glucose (mg/dL)."""
    return np.clip(110.0 - np.asarray(min_mg_dl, dtype=float), 0.0, 60.0)


def cvga_y(max_mg_dl):
    """Y coordinate of a profile's maximum glucose (mg/dL)."""
    return np.interp(np.asarray(max_mg_dl, dtype=float), [110.0, 180.0, 300.0, 400.0], [0.0, 20.0, 40.0, 60.0])


def cvga_zone(min_mg_dl: float, max_mg_dl: float) -> str:
    """Zone of one profile from its minimum and maximum glucose (mg/dL)."""
    x = float(cvga_x(min_mg_dl))
    y = float(cvga_y(max_mg_dl))
    col = 0 if x < 20.0 else (1 if x < 40.0 else 2)
    row = 0 if y < 20.0 else (1 if y < 40.0 else 2)
    return _GRID[row][col]


def cvga_points(glucose_mg_dl: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """X, Y and zone of each row of ``(N, T)`` glucose (NaN ignored; an all-NaN row gets zone "")."""
    g = np.atleast_2d(np.asarray(glucose_mg_dl, dtype=float))
    valid = ~np.isnan(g).all(axis=1)
    lo = np.where(valid, np.nanmin(np.where(valid[:, None], g, 0.0), axis=1), np.nan)
    hi = np.where(valid, np.nanmax(np.where(valid[:, None], g, 0.0), axis=1), np.nan)
    zones = [cvga_zone(a, b) if ok else "" for a, b, ok in zip(lo, hi, valid)]
    return cvga_x(lo), cvga_y(hi), zones


def zone_counts(zones) -> dict[str, int]:
    """Number of profiles per zone, every zone listed (best first)."""
    return {z: sum(1 for v in zones if v == z) for z in ZONES}

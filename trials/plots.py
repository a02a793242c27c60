"""Figures of the trial report (matplotlib, Agg backend, imported inside each function).

Colours follow the AGP report convention: target range green, lows red, highs orange/amber, median dark blue.
Every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from trials.chunkio import AGP_SLOT_MIN
from trials.cvga import ZONES

CONTROLLER_COLORS = {"mpc": "#1f4e9c", "mpc-c": "#5b2c83", "bb": "#7f7f7f", "pid": "#b35806", "oref": "#1b7837"}
RANGE_COLORS = {"tbr54": "#8b0000", "tbr70": "#e03b3b", "tir": "#3aa655", "tar180": "#f2b134", "tar250": "#e07b10"}
DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "font.family": "DejaVu Sans"})
    return plt


def color(controller: str, i: int = 0) -> str:
    return CONTROLLER_COLORS.get(controller, ["#1f77b4", "#d62728", "#9467bd", "#8c564b"][i % 4])


def percentiles_from_histogram(hist: np.ndarray, qs: Sequence[float] = (5, 25, 50, 75, 95)) -> np.ndarray:
    """Percentiles (mg/dL) per slot from counts ``(slots, bins)`` of 1 mg/dL bins: ``(len(qs), slots)``,
    NaN for an empty slot."""
    cum = np.cumsum(hist, axis=1)
    total = cum[:, -1]
    out = np.full((len(qs), hist.shape[0]), np.nan)
    for j, q in enumerate(qs):
        need = np.maximum(np.ceil(q / 100.0 * total), 1)
        idx = (cum < need[:, None]).sum(axis=1)
        out[j] = np.where(total > 0, idx, np.nan)
    return out


def _smooth(curve: np.ndarray, width: int = 3) -> np.ndarray:
    """Circular moving average over ``width`` slots (the AGP is smoothed over the time of day)."""
    if width <= 1:
        return curve
    k = width // 2
    padded = np.concatenate([curve[..., -k:], curve, curve[..., :k]], axis=-1)
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), -1, padded)


def agp_figure(path: Path, group: str, hists: Mapping[str, np.ndarray]) -> Path:
    """AGP of one group: one panel per controller, 5-95 % and 25-75 % bands and the median by time of day."""
    plt = _plt()
    names = list(hists)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.1), sharey=True, squeeze=False)
    hours = (np.arange(hists[names[0]].shape[0]) + 0.5) * AGP_SLOT_MIN / 60.0
    for i, (name, ax) in enumerate(zip(names, axes[0])):
        p = _smooth(percentiles_from_histogram(hists[name]))
        ax.axhspan(70, 180, color="#3aa655", alpha=0.10, lw=0)
        for y, c in ((54, "#8b0000"), (70, "#e03b3b"), (180, "#f2b134"), (250, "#e07b10")):
            ax.axhline(y, color=c, lw=0.8, ls="--" if y in (54, 250) else "-")
        col = color(name, i)
        ax.fill_between(hours, p[0], p[4], color=col, alpha=0.15, lw=0, label="5-95 %")
        ax.fill_between(hours, p[1], p[3], color=col, alpha=0.35, lw=0, label="25-75 %")
        ax.plot(hours, p[2], color=col, lw=2.0, label="median")
        ax.set_title(f"{name}", fontsize=10, fontweight="bold", color=col)
        ax.set_xlim(0, 24)
        ax.set_xticks(range(0, 25, 3))
        ax.set_xticklabels([f"{h:02d}:00" for h in range(0, 25, 3)], fontsize=7)
        ax.set_ylim(40, 400)
        ax.set_yticks([54, 70, 180, 250, 400])
        if i == 0:
            ax.set_ylabel("glucose (mg/dL)")
            ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=3)
    fig.suptitle(f"Ambulatory glucose profile - {group}", fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def cvga_figure(path: Path, points: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """CVGA: one panel per controller with the nine zones and a point per subject."""
    plt = _plt()
    names = list(points)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
    zone_fill = {(0, 0): "#c9e7c0", (1, 0): "#e6f2c2", (0, 1): "#e6f2c2", (1, 1): "#f5f0b8",
                 (2, 0): "#fde0b5", (0, 2): "#fde0b5", (2, 1): "#f9c3a0", (1, 2): "#f9c3a0", (2, 2): "#f29c9c"}
    labels = {(0, 0): "A", (1, 0): "Lower B", (0, 1): "Upper B", (1, 1): "B", (2, 0): "Lower C",
              (0, 2): "Upper C", (2, 1): "Lower D", (1, 2): "Upper D", (2, 2): "E"}
    for i, (name, ax) in enumerate(zip(names, axes[0])):
        for (cx, cy), fc in zone_fill.items():
            ax.add_patch(plt.Rectangle((cx * 20, cy * 20), 20, 20, facecolor=fc, edgecolor="white", lw=1.2))
            ax.text(cx * 20 + 10, cy * 20 + 17, labels[(cx, cy)], ha="center", va="center", fontsize=7,
                    color="#555555")
        x, y = points[name]
        ax.scatter(x, y, s=18, color=color(name, i), edgecolor="white", lw=0.5, zorder=3, clip_on=False)
        ax.set_xlim(-1.5, 61.5)
        ax.set_ylim(-1.5, 61.5)
        ax.set_xticks([0, 20, 40, 60])
        ax.set_xticklabels([">110", "90", "70", "<50"])
        ax.set_yticks([0, 20, 40, 60])
        ax.set_yticklabels(["<110", "180", "300", ">400"])
        ax.set_xlabel("minimum glucose (mg/dL)")
        if i == 0:
            ax.set_ylabel("maximum glucose (mg/dL)")
        ax.set_title(name, fontsize=10, fontweight="bold", color=color(name, i))
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def time_in_ranges_figure(path: Path, rows: Sequence[tuple[str, Mapping[str, float]]]) -> Path:
    """Stacked horizontal bars of time in ranges (the AGP report's bar), one bar per (label, M)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.6, 0.42 * len(rows) + 0.9))
    keys = [("tbr54", "< 54"), ("tbr70", "54-69"), ("tir", "70-180"), ("tar180", "181-250"), ("tar250", "> 250")]
    for r, (label, m) in enumerate(rows):
        vals = {
            "tbr54": m.get("tbr54_pct") or 0.0,
            "tbr70": (m.get("tbr70_pct") or 0.0) - (m.get("tbr54_pct") or 0.0),
            "tir": m.get("tir_pct") or 0.0,
            "tar180": (m.get("tar180_pct") or 0.0) - (m.get("tar250_pct") or 0.0),
            "tar250": m.get("tar250_pct") or 0.0,
        }
        left = 0.0
        for k, _ in keys:
            ax.barh(r, vals[k], left=left, color=RANGE_COLORS[k], height=0.7, edgecolor="white", lw=0.5)
            if vals[k] >= 6:
                ax.text(left + vals[k] / 2, r, f"{vals[k]:.0f}%", ha="center", va="center", fontsize=7,
                        color="white" if k in ("tbr54", "tbr70", "tir") else "black")
            left += vals[k]
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of time")
    handles = [plt.Rectangle((0, 0), 1, 1, color=RANGE_COLORS[k]) for k, _ in keys]
    ax.legend(handles, [f"{t} mg/dL" for _, t in keys], ncol=5, fontsize=7, frameon=False, loc="lower center",
              bbox_to_anchor=(0.5, 1.0))
    ax.axvline(70, color="#333333", lw=0.8, ls=":")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def traces_figure(path: Path, title: str, subjects: Sequence[str],
                  series: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]) -> Path:
    """Small multiples: one panel per subject with plasma glucose of every controller, carbs eaten (triangles at
    the bottom, grams), boluses (inverted triangles at the top, units) and, below, the basal insulin delivered
    (U/h). ``series[controller][subject]`` has t_min, bg, insulin, bolus, carbs (5-minute arrays)."""
    plt = _plt()
    n = len(subjects)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = plt.figure(figsize=(3.4 * cols, 2.9 * rows + 0.4))
    gs = fig.add_gridspec(rows * 4, cols, hspace=0.35, wspace=0.28, top=1 - 0.45 / (2.9 * rows + 0.4))
    names = list(series)
    for k, subject in enumerate(subjects):
        r, c = divmod(k, cols)
        ax = fig.add_subplot(gs[r * 4:r * 4 + 3, c])
        axi = fig.add_subplot(gs[r * 4 + 3, c], sharex=ax)
        ax.axhspan(70, 180, color="#3aa655", alpha=0.10, lw=0)
        ax.axhline(70, color="#e03b3b", lw=0.6)
        ax.axhline(180, color="#f2b134", lw=0.6)
        first = None
        top = 0.0
        for i, name in enumerate(names):
            d = series[name].get(subject)
            if d is None:
                continue
            h = d["t_min"] / 60.0
            col = color(name, i)
            ax.plot(h, d["bg"], color=col, lw=1.2, label=name)
            bolus = d.get("bolus", np.zeros_like(d["insulin"]))
            basal = np.clip(d["insulin"] - bolus, 0, None) * (60.0 / 5.0)
            axi.step(h, basal, where="post", color=col, lw=0.9)
            top = max(top, float(np.nanmax(basal)) if basal.size else 0.0)
            long_run = h[-1] > 24.0
            for j in np.flatnonzero(bolus > 0):
                y = 392 - 16 * i
                ax.plot(h[j], y, marker="v", color=col, ms=4 if not long_run else 2.5, clip_on=False)
                if not long_run:
                    ax.text(h[j] + 0.25, y, f"{bolus[j]:.1f}", fontsize=5.5, color=col, va="center")
            first = first or d
        if first is not None:
            carbs = first["carbs"]
            h = first["t_min"] / 60.0
            idx = np.flatnonzero((carbs > 0) & (np.r_[0.0, carbs[:-1]] == 0))
            for j in idx:
                end = j
                while end + 1 < len(carbs) and carbs[end + 1] > 0:
                    end += 1
                ax.plot(h[j], 47, marker="^", color="#6a3d9a", ms=5 if h[-1] <= 24.0 else 3)
                if h[-1] <= 24.0:
                    ax.text(h[j] + 0.25, 47, f"{carbs[j:end + 1].sum():.0f}g", fontsize=5.5, color="#6a3d9a",
                            va="center")
        ax.set_ylim(40, 400)
        ax.set_title(subject, fontsize=8, loc="left")
        ax.tick_params(labelbottom=False, labelsize=7)
        axi.tick_params(labelsize=6)
        axi.set_ylim(0, max(top * 1.15, 0.5))
        span = (first["t_min"][-1] + 5.0) / 60.0 if first is not None else 24.0
        step = 6 if span <= 24 else 12
        ax.set_xlim(0, span)
        axi.set_xticks(np.arange(0, span + 0.01, step))
        axi.set_xticklabels([f"{int(x) % 24:02d}:00" if span <= 24 else f"d{int(x) // 24 + 1} {int(x) % 24:02d}h"
                             for x in np.arange(0, span + 0.01, step)], fontsize=6)
        if c == 0:
            ax.set_ylabel("glucose mg/dL", fontsize=7)
            axi.set_ylabel("basal U/h", fontsize=6)
        if k == 0:
            ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    fig.suptitle(title, fontsize=10, x=0.01, ha="left", y=0.995)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def zone_table(cvga_zones: Mapping[str, int]) -> list[tuple[str, int]]:
    return [(z, int(cvga_zones.get(z, 0))) for z in ZONES]

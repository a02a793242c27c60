"""``summary.json`` (and ``cvga.json``, ``trial.json``) assembled from the per-chunk files.

Layout (docs/trials.md)::

    {"seed": S, "scenario": NAME,
     "controllers": {NAME: {"overall": M, "groups": {GROUP: M}, "subjects": {SUBJECT: M}}}}

M = {tir_pct, tbr70_pct, tbr54_pct, tar180_pct, tar250_pct, mean_mg_dl, sd_mg_dl, cv_pct, gmi_pct, lbgi, hbgi, gri,
tdi_u, hypo_events, interventions, cgm: {the same glucose keys, hypo_events included, on CGM values}}; glucose keys
on plasma glucose. Group and overall glucose metrics pool every reading of their subjects
(:func:`trials.metrics.pool`); ``tdi_u`` is the mean over subjects, ``hypo_events`` and ``interventions`` are totals.
Floats are rounded to 4 decimals (NaN -> null) so that the file is stable and diffable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from trials.chunkio import GROUPS, iter_chunks
from trials.cvga import cvga_x, cvga_y, cvga_zone, zone_counts
from trials.metrics import GLUCOSE_KEYS, METRIC_KEYS, STAT_FIELDS, metrics_from_stats, pool

DECIMALS = 4


class SummaryError(RuntimeError):
    """The chunk files do not cover the cohort (a task failed or files were removed)."""


def _num(x) -> float | int | None:
    x = float(x)
    if not math.isfinite(x):
        return None
    r = round(x, DECIMALS)
    return 0.0 if r == 0 else r


def collect(out: Path, controller: str, n_subjects: int) -> dict[str, np.ndarray]:
    """Every per-subject array of a controller's chunks, concatenated in subject order."""
    parts: dict[str, list[np.ndarray]] = {}
    reasons: list[str] = []
    chunks = list(iter_chunks(out, controller))
    for c in chunks:
        for r in c["intervention_names"].tolist():
            if r not in reasons:
                reasons.append(r)
    reasons.sort()
    expected = 0
    for c in chunks:
        if int(c["start"]) != expected:
            raise SummaryError(f"{controller}: chunk starting at subject {int(c['start'])} where {expected} "
                               "was expected (a task failed?)")
        n = len(c["names"])
        expected += n
        for k, v in c.items():
            if k.startswith(("bg_", "cgm_")) or k in ("names", "groups", "insulin_u"):
                parts.setdefault(k, []).append(v)
        counts = np.zeros((len(reasons), n), dtype=np.int64)
        for j, r in enumerate(c["intervention_names"].tolist()):
            counts[reasons.index(r)] = c["interventions"][j]
        parts.setdefault("interventions", []).append(counts)
        parts.setdefault("days", []).append(np.full(n, float(c["days"])))
    if expected != n_subjects:
        raise SummaryError(f"{controller}: chunks cover {expected} subjects, the cohort has {n_subjects}")
    data = {k: np.concatenate(v, axis=-1) for k, v in parts.items()}
    data["intervention_names"] = np.array(reasons, dtype=str)
    return data


def _glucose_m(stats: dict[str, np.ndarray], idx=None) -> dict:
    pooled = pool(stats, idx)
    m = metrics_from_stats({k: np.array([v]) for k, v in pooled.items()})
    return {k: _num(m[k][0]) for k in GLUCOSE_KEYS}


def _m(data: dict[str, np.ndarray], idx: np.ndarray) -> dict:
    bg = {f: data[f"bg_{f}"] for f in STAT_FIELDS}
    cgm = {f: data[f"cgm_{f}"] for f in STAT_FIELDS}
    g = _glucose_m(bg, idx)
    tdi = data["insulin_u"][idx] / data["days"][idx]
    inter = {str(r): int(data["interventions"][j, idx].sum()) for j, r in enumerate(data["intervention_names"])}
    m: dict = {}
    for k in METRIC_KEYS:
        if k == "tdi_u":
            m[k] = _num(tdi.mean()) if len(tdi) else None
        elif k == "interventions":
            m[k] = inter
        elif k == "hypo_events":
            m[k] = int(round(g["hypo_events"] or 0))
        else:
            m[k] = g[k]
    c = _glucose_m(cgm, idx)
    c["hypo_events"] = int(round(c["hypo_events"] or 0))
    m["cgm"] = c
    return m


def _subjects_m(data: dict[str, np.ndarray], names: Sequence[str]) -> dict:
    """Per-subject M for every subject at once (vectorized; same values as :func:`_m` on one subject)."""
    bg = metrics_from_stats({f: data[f"bg_{f}"] for f in STAT_FIELDS})
    cgm = metrics_from_stats({f: data[f"cgm_{f}"] for f in STAT_FIELDS})
    tdi = data["insulin_u"] / data["days"]
    reasons = [str(r) for r in data["intervention_names"]]
    out = {}
    for i, subject in enumerate(names):
        m: dict = {}
        for k in METRIC_KEYS:
            if k == "tdi_u":
                m[k] = _num(tdi[i])
            elif k == "interventions":
                m[k] = {r: int(data["interventions"][j, i]) for j, r in enumerate(reasons)}
            elif k == "hypo_events":
                m[k] = int(bg["hypo_events"][i])
            else:
                m[k] = _num(bg[k][i])
        c = {k: _num(cgm[k][i]) for k in GLUCOSE_KEYS}
        c["hypo_events"] = int(cgm["hypo_events"][i])
        m["cgm"] = c
        out[subject] = m
    return out


def build_summary(out: Path, controllers: Sequence[str], seed: int, scenario: str, names: Sequence[str],
                  groups: Sequence[str]) -> tuple[dict, dict]:
    """(summary, cvga) dictionaries."""
    summary: dict = {"seed": int(seed), "scenario": scenario, "controllers": {}}
    cvga: dict = {"controllers": {}}
    groups_arr = np.array(groups)
    for name in controllers:
        data = collect(out, name, len(names))
        if data["names"].tolist() != list(names):
            raise SummaryError(f"{name}: subjects in the chunk files differ from the cohort")
        all_idx = np.arange(len(names))
        entry = {"overall": _m(data, all_idx), "groups": {}, "subjects": {}}
        for g in GROUPS:
            idx = np.flatnonzero(groups_arr == g)
            if len(idx):
                entry["groups"][g] = _m(data, idx)
        entry["subjects"] = _subjects_m(data, names)
        summary["controllers"][name] = entry
        x, y = cvga_x(data["bg_min"]), cvga_y(data["bg_max"])
        zones = [cvga_zone(a, b) if math.isfinite(a) else "" for a, b in zip(data["bg_min"], data["bg_max"])]
        cvga["controllers"][name] = {
            "zones": {g: zone_counts([z for z, gg in zip(zones, groups) if gg == g]) for g in GROUPS
                      if g in set(groups)} | {"overall": zone_counts(zones)},
            "subjects": {s: {"x": _num(x[i]), "y": _num(y[i]), "zone": zones[i], "min_mg_dl": _num(data["bg_min"][i]),
                             "max_mg_dl": _num(data["bg_max"][i])} for i, s in enumerate(names)},
        }
    return summary, cvga


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=1, allow_nan=False) + "\n"


def write_outputs(out: Path, spec, seed: int, names: Sequence[str], groups: Sequence[str]) -> Path:
    """Write summary.json, cvga.json and trial.json; returns the summary path."""
    from trials.runner import scenario, trial_manifest

    scenario_name = scenario(spec.scenario, spec.days).name
    summary, cvga = build_summary(out, spec.controllers, seed, scenario_name, names, groups)
    path = out / "summary.json"
    path.write_text(dumps(summary), encoding="utf-8")
    (out / "cvga.json").write_text(dumps(cvga), encoding="utf-8")
    (out / "trial.json").write_text(dumps(trial_manifest(spec, len(names))), encoding="utf-8")
    return path

"""Per-chunk files: what one task leaves on disk, so that no process ever holds a whole trial.

``chunks/CONTROLLER/chunk-NNNNN.npz`` holds, for the chunk's subjects, the sufficient statistics of their plasma and
CGM glucose (:data:`trials.metrics.STAT_FIELDS`), min/max plasma glucose (CVGA), insulin delivered, supervisor
interventions by reason, AGP histograms by group and time of day, and a few example traces for the report.
``traces/CONTROLLER/part-NNNNN.parquet`` holds the per-5-minute traces (CSV if pyarrow is missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from trials.metrics import STAT_FIELDS, glucose_stats

GROUPS: tuple[str, ...] = ("adolescent", "adult", "child")
AGP_SLOT_MIN = 15
AGP_SLOTS = 1440 // AGP_SLOT_MIN
AGP_MAX_MG_DL = 600
EXAMPLES_PER_GROUP = 4


def chunk_path(out: Path, controller: str, index: int) -> Path:
    return out / "chunks" / controller / f"chunk-{index:05d}.npz"


def agp_histogram(t_min: np.ndarray, glucose_mg_dl: np.ndarray, groups: tuple[str, ...]) -> np.ndarray:
    """Counts of glucose (1 mg/dL bins 0..600) by group and 15-minute slot of the day: (3, 96, 601) int32."""
    hist = np.zeros((len(GROUPS), AGP_SLOTS, AGP_MAX_MG_DL + 1), dtype=np.int32)
    slot = ((np.asarray(t_min) % 1440) // AGP_SLOT_MIN).astype(np.int64)  # (T,)
    g = np.asarray(glucose_mg_dl, dtype=float)
    for gi, name in enumerate(GROUPS):
        cols = [i for i, grp in enumerate(groups) if grp == name]
        if not cols:
            continue
        vals = g[:, cols]
        ok = np.isfinite(vals)
        b = np.clip(np.rint(np.where(ok, vals, 0.0)), 0, AGP_MAX_MG_DL).astype(np.int64)
        s = np.broadcast_to(slot[:, None], vals.shape)
        flat = s[ok] * (AGP_MAX_MG_DL + 1) + b[ok]  # bincount: the same counts as np.add.at, much faster
        hist[gi] += np.bincount(flat, minlength=AGP_SLOTS * (AGP_MAX_MG_DL + 1)).reshape(hist[gi].shape).astype(
            np.int32)
    return hist


def write_chunk(out: Path, controller: str, index: int, start: int, result, *, traces: bool = True) -> Path:
    """Write one chunk's statistics (and traces); returns the .npz path."""
    path = chunk_path(out, controller, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    bg, cgm = result.bg_mg_dl.T, result.cgm_mg_dl.T  # (N, T)
    s_bg, s_cgm = glucose_stats(bg), glucose_stats(cgm)
    data: dict[str, np.ndarray] = {
        "names": np.array(result.names), "groups": np.array(result.groups), "start": np.array(start),
        "days": np.array(result.days),
        "bg_min": np.nanmin(bg, axis=1), "bg_max": np.nanmax(bg, axis=1),
        "insulin_u": np.nansum(result.insulin_u, axis=0),
        "agp_hist": agp_histogram(result.t_min, result.bg_mg_dl, result.groups),
        "intervention_names": np.array(sorted(result.interventions), dtype=str),
        "interventions": np.array([result.interventions[k] for k in sorted(result.interventions)],
                                  dtype=np.int64).reshape(len(result.interventions), len(result.names)),
    }
    for f in STAT_FIELDS:
        data[f"bg_{f}"] = s_bg[f]
        data[f"cgm_{f}"] = s_cgm[f]
    ex = []
    for name in GROUPS:
        ex += [i for i, g in enumerate(result.groups) if g == name][:EXAMPLES_PER_GROUP]
    ex_idx = np.array(sorted(ex), dtype=np.int64)
    data["ex_index"] = ex_idx
    data["ex_t_min"] = result.t_min
    for key, arr in (("ex_bg", result.bg_mg_dl), ("ex_cgm", result.cgm_mg_dl), ("ex_insulin", result.insulin_u),
                     ("ex_bolus", result.bolus_u), ("ex_carbs", result.carbs_g)):
        data[key] = arr[:, ex_idx].T.astype(np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    if traces:
        write_traces(out, controller, index, result)
    return path


def write_traces(out: Path, controller: str, index: int, result) -> Path:
    """Per-5-minute traces of a chunk, long format: one row per (subject, time)."""
    d = out / "traces" / controller
    d.mkdir(parents=True, exist_ok=True)
    t5, n = result.bg_mg_dl.shape
    subj_codes = np.repeat(np.arange(n, dtype=np.int32), t5)
    cols = {
        "t_min": np.tile(result.t_min.astype(np.float64), n),
        "bg_mg_dl": result.bg_mg_dl.T.ravel().astype(np.float32),
        "cgm_mg_dl": result.cgm_mg_dl.T.ravel().astype(np.float32),
        "insulin_u": result.insulin_u.T.ravel().astype(np.float32),
        "bolus_u": result.bolus_u.T.ravel().astype(np.float32),
        "carbs_g": result.carbs_g.T.ravel().astype(np.float32),
        "carbs_announced_g": result.carbs_announced_g.T.ravel().astype(np.float32),
    }
    reason_codes = result.reason.T.ravel().astype(np.int32)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return _write_traces_csv(d / f"part-{index:05d}.csv", controller, result, cols, subj_codes, reason_codes)
    table = pa.table({
        "t_min": cols["t_min"],
        "subject": pa.DictionaryArray.from_arrays(pa.array(subj_codes), pa.array(list(result.names))),
        "controller": pa.DictionaryArray.from_arrays(pa.array(np.zeros(t5 * n, dtype=np.int32)),
                                                     pa.array([controller])),
        "bg_mg_dl": cols["bg_mg_dl"], "cgm_mg_dl": cols["cgm_mg_dl"], "insulin_u": cols["insulin_u"],
        "bolus_u": cols["bolus_u"],
        "carbs_g": cols["carbs_g"], "carbs_announced_g": cols["carbs_announced_g"],
        "reason": pa.DictionaryArray.from_arrays(pa.array(reason_codes),
                                                 pa.array(list(result.reasons) or [""])),
    })
    path = d / f"part-{index:05d}.parquet"
    pq.write_table(table, path, compression="zstd")
    return path


def _write_traces_csv(path: Path, controller: str, result, cols, subj_codes, reason_codes) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["t_min", "subject", "controller", "bg_mg_dl", "cgm_mg_dl", "insulin_u", "bolus_u", "carbs_g",
                    "carbs_announced_g", "reason"])
        for r in range(len(subj_codes)):
            w.writerow([cols["t_min"][r], result.names[subj_codes[r]], controller,
                        *(f"{cols[k][r]:.3f}" for k in ("bg_mg_dl", "cgm_mg_dl", "insulin_u", "bolus_u", "carbs_g",
                                                         "carbs_announced_g")),
                        result.reasons[reason_codes[r]] if result.reasons else ""])
    return path


def iter_chunks(out: Path, controller: str) -> Iterator[dict[str, np.ndarray]]:
    """The chunk files of a controller in subject order (one at a time)."""
    d = out / "chunks" / controller
    for path in sorted(d.glob("chunk-[0-9][0-9][0-9][0-9][0-9].npz")):
        with np.load(path, allow_pickle=False) as z:
            yield {k: z[k] for k in z.files}

"""The twin file (``twin.json``): a fitted personal twin, readable by people and by ``twinloop replay``.

Layout (version 2; version 1 files, which have no ``model``, are ``bergman`` twins and still load)::

    {"format": "twinloop-twin", "version": 2,
     "model": "uva" | "bergman",                        # trials.personal.fit.MODELS
     "base": {...},                                     # uva: UvaTwinBase (weight, basal, population values,
                                                        # prior); bergman: the control twin's TwinParams
     "parameters": {NAME: MAP value, ...},              # FIT_PARAM_NAMES of the model
     "interval95": {NAME: [low, high], ...},            # Laplace approximation
     "cov_log": [[...]],                                # covariance of log(parameters)
     "samples": [[...], ...],                           # posterior samples (MCMC), may be empty
     "t0_min": float, "x0": [...], "t_end_min": float, "end_state": [...],
     "fit": {"rmse_mg_dl", "mard_pct", "n_readings", "notes": [...], "carb_error_log_sd",
             "forecast_check": null | {"held_out_days", "rmse_mg_dl", "bias_mg_dl", "tir_predicted_pct",
                                       "tir_cgm_pct", "n_readings"}}}    # ForecastCheck (optional)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from patient_model import personal_twin as pt
from trials.personal.fit import MEAL_ERROR_LOG_SD, ForecastCheck, TwinFit, twin_model

FORMAT = "twinloop-twin"
VERSION = 2
READABLE_VERSIONS = (1, 2)


class TwinFileError(ValueError):
    """A twin file that cannot be read (names the field)."""


def to_dict(fit: TwinFit) -> dict:
    rows = fit.parameter_table()
    return {
        "format": FORMAT, "version": VERSION, "model": fit.model,
        "base": fit.base.to_dict(),
        "parameters": {r["name"]: r["map"] for r in rows},
        "interval95": {r["name"]: [r["low95"], r["high95"]] for r in rows},
        "cov_log": fit.cov_log.tolist(),
        "samples": fit.samples.tolist(),
        "t0_min": fit.t0_min, "x0": fit.x0.tolist(), "t_end_min": fit.t_end_min, "end_state": fit.end_state.tolist(),
        "fit": {"rmse_mg_dl": fit.rmse_mg_dl, "mard_pct": fit.mard_pct, "n_readings": fit.n_readings,
                "notes": list(fit.notes), "carb_error_log_sd": fit.carb_error_log_sd,
                "forecast_check": asdict(fit.forecast_check) if fit.forecast_check is not None else None},
    }


def save(fit: TwinFit, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_dict(fit), indent=1), encoding="utf-8")
    return p


def _array(doc: dict, key: str, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    try:
        arr = np.asarray(doc[key], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise TwinFileError(f"{key}: missing or not numeric ({exc})") from exc
    if shape_tail and arr.size and arr.shape[-len(shape_tail):] != shape_tail:
        raise TwinFileError(f"{key}: expected trailing shape {shape_tail}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise TwinFileError(f"{key}: non-finite values")
    return arr


def load(path: str | Path) -> TwinFit:
    """Read a twin file; raises :class:`TwinFileError` naming what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TwinFileError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TwinFileError(f"{path}: not a twinloop twin file (format != {FORMAT!r})")
    if doc.get("version") not in READABLE_VERSIONS:
        raise TwinFileError(f"version: {doc.get('version')!r} not supported (expected one of {READABLE_VERSIONS})")
    if doc["version"] >= 2 and "model" not in doc:
        raise TwinFileError("model: missing (a version 2 twin file names its twin equations)")
    model_name = doc["model"] if doc["version"] >= 2 else pt.NAME
    try:
        mod = twin_model(model_name)
    except ValueError as exc:
        raise TwinFileError(f"model: {exc}") from exc
    try:
        base = mod.BASE_TYPE.from_dict(doc["base"])
        theta = np.array([float(doc["parameters"][n]) for n in mod.FIT_PARAM_NAMES])
    except (KeyError, TypeError, ValueError) as exc:
        raise TwinFileError(f"parameters/base: missing or invalid entry ({exc})") from exc
    if not np.all(np.isfinite(theta)) or np.any(theta <= 0):
        raise TwinFileError("parameters: every parameter must be finite and > 0")
    samples = _array(doc, "samples")
    if samples.size and (samples.ndim != 2 or samples.shape[1] != mod.N_FIT):
        raise TwinFileError(f"samples: expected shape (S, {mod.N_FIT}), got {samples.shape}")
    samples = samples if samples.size else np.zeros((0, mod.N_FIT))
    fit = doc.get("fit", {})
    if not isinstance(fit, dict):
        raise TwinFileError("fit: expected an object")
    cov = _array(doc, "cov_log", (mod.N_FIT,))
    if cov.shape != (mod.N_FIT, mod.N_FIT):
        raise TwinFileError(f"cov_log: expected shape ({mod.N_FIT}, {mod.N_FIT}), got {cov.shape}")
    x0 = _array(doc, "x0", (mod.N_TWIN_STATES,))
    end_state = _array(doc, "end_state", (mod.N_TWIN_STATES,))
    if x0.shape != (mod.N_TWIN_STATES,) or end_state.shape != (mod.N_TWIN_STATES,):
        raise TwinFileError(f"x0/end_state: expected {mod.N_TWIN_STATES} states each")
    try:
        t0 = _finite(doc["t0_min"], "t0_min")
        t_end = _finite(doc.get("t_end_min", 0.0), "t_end_min")
        stats = (_finite(fit.get("rmse_mg_dl", math.nan), "fit.rmse_mg_dl", allow_nan=True),
                 _finite(fit.get("mard_pct", math.nan), "fit.mard_pct", allow_nan=True),
                 int(fit.get("n_readings", 0)))
        notes = tuple(str(n) for n in fit.get("notes", ()))
        carb_sd = _finite(fit.get("carb_error_log_sd", MEAL_ERROR_LOG_SD), "fit.carb_error_log_sd")
    except TwinFileError:
        raise                      # already names its field
    except KeyError as exc:
        raise TwinFileError(f"{exc.args[0]}: missing") from exc
    except (TypeError, ValueError) as exc:
        raise TwinFileError(f"fit/t0_min: invalid entry ({exc})") from exc
    check = _forecast_check(fit.get("forecast_check"))
    return TwinFit(base, theta, cov, t0, x0, stats[0], stats[1], stats[2], samples, notes, end_state, t_end, carb_sd,
                   model_name, check)


def _forecast_check(doc: object) -> ForecastCheck | None:
    """The optional ``fit.forecast_check``: absent or null, or every field present and finite."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise TwinFileError("fit.forecast_check: expected an object or null")
    values = {}
    for f in fields(ForecastCheck):
        if f.name not in doc:
            raise TwinFileError(f"fit.forecast_check.{f.name}: missing")
        values[f.name] = _finite(doc[f.name], f"fit.forecast_check.{f.name}")
    if not values["held_out_days"] > 0 or values["n_readings"] < 0 or values["rmse_mg_dl"] < 0:
        raise TwinFileError("fit.forecast_check: held_out_days must be > 0, n_readings and rmse_mg_dl >= 0")
    values["n_readings"] = int(values["n_readings"])
    return ForecastCheck(**values)


def _finite(value: object, name: str, allow_nan: bool = False) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TwinFileError(f"{name}: not a number ({value!r})") from exc
    if not (math.isfinite(v) or (allow_nan and math.isnan(v))):
        raise TwinFileError(f"{name}: not finite ({value!r})")
    return v

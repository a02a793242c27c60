"""Replay a twin under several therapies and write the side-by-side report (summary.json, report.html, PNGs)."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from trials.personal.fit import TwinFit
from trials.personal.patient_data import PatientData
from trials.personal.replay import ArmResult, SettingsChange, closed_loop, open_loop, settings_from_profile

KEYS = ("tir_pct", "tbr70_pct", "tbr54_pct", "tar180_pct", "tar250_pct", "mean_mg_dl", "cv_pct", "gmi_pct")


@dataclass(frozen=True)
class ArmSpec:
    """A therapy to replay: ``controller`` None = open loop with the recorded insulin (boluses scaled)."""

    controller: str | None = None
    change: SettingsChange = field(default_factory=SettingsChange)

    @property
    def label(self) -> str:
        base = self.controller or "recorded"
        extra = self.change.label()
        return f"{base} ({extra})" if extra else base


@dataclass
class ReplayResult:
    arms: dict[str, ArmResult]
    spread: dict[str, dict[str, list[float]]]     # arm -> metric -> [p5, p50, p95] over posterior samples
    n_samples: int
    t0_min: float


def run_replay(fit: TwinFit, data: PatientData, arms: Sequence[ArmSpec], *, samples: int = 0, seed: int = 0,
               start_min: float | None = None, end_min: float | None = None) -> ReplayResult:
    """Run every arm on the MAP twin and on up to ``samples`` posterior samples of the twin."""
    from trials.runner import make_controller

    t0 = float(fit.t0_min if start_min is None else start_min)
    end = float(data.cgm_t_min[-1] if end_min is None else end_min)
    n = int((end - t0) // 5)
    x0 = fit.x0 if start_min is None else _state_at(fit, data, t0)
    thetas = [fit.theta] + [s for s in fit.samples[:: max(1, len(fit.samples) // max(samples, 1))][:samples]]
    arms_out: dict[str, ArmResult] = {}
    per_sample: dict[str, list[dict[str, float]]] = {}
    tdi = max(data.total_daily_insulin_u(), 1.0)
    for spec in arms:
        for j, theta in enumerate(thetas):
            if spec.controller is None:
                res = open_loop(fit, theta, data, t0, n, x0, spec.change.bolus_scale, spec.label)
            else:
                settings = settings_from_profile(data.profile, spec.change, weight_kg=fit.weight_kg, tdi_u=tdi)
                res = closed_loop(fit, theta, data, t0, n, x0, make_controller(spec.controller), settings,
                                  seed=seed, name=spec.label)
            if j == 0:
                arms_out[spec.label] = res
            else:
                per_sample.setdefault(spec.label, []).append(res.metrics)
    spread = {arm: {k: [float(np.percentile([m[k] for m in ms], q)) for q in (5, 50, 95)] for k in KEYS}
              for arm, ms in per_sample.items()}
    return ReplayResult(arms_out, spread, len(thetas) - 1, t0)


def _state_at(fit: TwinFit, data: PatientData, t_min: float) -> np.ndarray:
    """Twin state at ``t_min``: the fitted trajectory run forward on the recorded inputs."""
    res_n = int((t_min - fit.t0_min) // 5)
    from patient_model import personal_twin as pt
    per_min = data.insulin_u_per_min(int(t_min) + 10)[int(fit.t0_min):]
    inputs = pt.TwinInputs.from_minutes(fit.t0_min, per_min, [(c.t_min, c.carbs_g) for c in data.carbs], res_n)
    return fit.twin_model.simulate(fit.base, fit.theta, inputs, fit.x0)[-1]


def write_replay_report(result: ReplayResult, fit: TwinFit, data: PatientData, out: str | Path) -> Path:
    """Write summary.json, PNG plots and report.html into ``out``; returns the HTML path."""
    from trials.plots import time_in_ranges_figure, traces_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check = fit.forecast_check
    summary = {"twin_fit": {"rmse_mg_dl": fit.rmse_mg_dl, "mard_pct": fit.mard_pct, "notes": list(fit.notes),
                            "forecast_check": None if check is None else {**asdict(check),
                                                                           "within_limits": check.within_limits}},
               "posterior_samples": result.n_samples,
               "arms": {name: {"metrics": a.metrics, "spread_p5_p50_p95": result.spread.get(name, {}),
                               "insulin_u_per_day": float(a.insulin_u.sum() / max(len(a.t_min) * 5 / 1440, 1e-9))}
                        for name, a in result.arms.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True), encoding="utf-8")
    time_in_ranges_figure(out / "time_in_ranges.png", [(n, a.metrics) for n, a in result.arms.items()])
    series = {}
    carbs = np.zeros(len(next(iter(result.arms.values())).t_min))
    for c in data.carbs:
        k = int((c.t_min - result.t0_min) // 5)
        if 0 <= k < carbs.size:
            carbs[k] += c.carbs_g
    for name, a in result.arms.items():
        series[name] = {"twin": {"t_min": a.t_min - result.t0_min, "bg": a.glucose_mg_dl, "insulin": a.insulin_u,
                                 "bolus": np.zeros_like(a.insulin_u), "carbs": carbs}}
    traces_figure(out / "traces.png", "Replayed days on the twin", ["twin"], series)
    _fit_figure(out / "fit.png", fit, data)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(
            f"<td>{a.metrics[k]:.1f}" + (f" <small>({result.spread[name][k][0]:.1f}-{result.spread[name][k][2]:.1f})"
                                          f"</small>" if name in result.spread else "") + "</td>" for k in KEYS)
        + "</tr>" for name, a in result.arms.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in fit.notes) or "<li>all parameters informed by the data</li>"
    if check is None:
        check_html = "<p>No forecast check (<code>twinloop fit --check-days</code>) in this twin file.</p>"
    else:
        style = "" if check.within_limits else ' style="color:#b00020"'
        text = check.summary()
        check_html = f"<p{style}>{html.escape(text[0].upper() + text[1:])}.</p>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>twinloop replay</title>
<style>body{{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f6f8}}small{{color:#666}}</style>
</head><body><h1>Therapy replay on the patient's twin</h1>
<p>Research use only: a model's prediction, not a dosing recommendation.</p>
<h2>Twin fit</h2><p>CGM RMSE {fit.rmse_mg_dl:.1f} mg/dL, MARD {fit.mard_pct:.1f} % over {fit.n_readings} readings.</p>
<ul>{notes}</ul>{check_html}<img src="fit.png" width="900">
<h2>Outcomes side by side</h2><p>Metrics on the twin's glucose; in brackets the 5-95 % range over
{result.n_samples} posterior samples of the twin.</p>
<table><tr><th>therapy</th>{''.join(f'<th>{k}</th>' for k in KEYS)}</tr>{rows}</table>
<img src="time_in_ranges.png" width="900"><img src="traces.png" width="900">
</body></html>"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _fit_figure(path: Path, fit: TwinFit, data: PatientData) -> Path:
    from trials.plots import _plt
    from patient_model import personal_twin as pt

    plt = _plt()
    n = int((data.cgm_t_min[-1] - fit.t0_min) // 5)
    per_min = data.insulin_u_per_min(int(fit.t0_min + 5 * n) + 10)[int(fit.t0_min):]
    inputs = pt.TwinInputs.from_minutes(fit.t0_min, per_min, [(c.t_min, c.carbs_g) for c in data.carbs], n)
    traj = fit.twin_model.simulate(fit.base, fit.theta, inputs, fit.x0)
    fig, ax = plt.subplots(figsize=(11, 3))
    ax.axhspan(70, 180, color="#3aa655", alpha=0.1, lw=0)
    ax.plot(data.cgm_t_min / 1440.0, data.cgm_mg_dl, ".", ms=1.5, color="#555555", label="CGM")
    ax.plot((fit.t0_min + 5 * np.arange(n + 1)) / 1440.0, traj[:, 0], color="#1f77b4", lw=1, label="twin")
    ax.set_xlabel("day")
    ax.set_ylabel("glucose mg/dL")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Replay a patient's recorded days on their fitted twin under another therapy.

Arms:

- ``recorded``: the insulin the patient really took (the fit's own reproduction of those days);
- ``boluses xS``: the recorded basal with every recorded bolus scaled by ``S`` (open loop);
- ``NAME`` (a controller: ``bb``, ``pid``, ``oref``, ``mpc``): closed loop on the twin, every proposal through the
  safety supervisor, the recorded carbs announced as recorded, with the programmed settings or altered ones.

The twin's glucose is the plant; the controller sees it only as CGM readings every 5 minutes (with seeded CGM
noise: by default the Breton-Kovatchev error model of a Dexcom sensor, autocorrelated like a real sensor's, on the
twin's glucose, which is already the interstitial glucose a CGM measures). Every arm is run on the MAP twin and,
when the twin carries posterior samples, on each sample, so the outcome comes with its spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from patient_model import personal_twin as pt
from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus
from safety.readings import GlucoseReading, MealAnnouncement
from safety.settings import AgeGroup, InsulinCurve, Schedule, ScheduleEntry, TherapySettings
from safety.snapshot import Snapshot
from trials.metrics import glucose_metrics
from trials.personal.fit import TwinFit
from trials.personal.patient_data import PatientData, Profile
from trials.supervision import RESUME, SubjectSupervision

HISTORY_MIN = 24 * 60.0
CGM_NOISE_SD_MG_DL = 8.0
"""White CGM noise of the closed-loop arms when no sensor model is used (``sensor=None``)."""
SENSOR_MODEL = "Dexcom"
"""Default CGM error model of the closed-loop arms (:class:`patient_model.sensor.CGMModel`, a bundled sensor)."""


@dataclass(frozen=True)
class SettingsChange:
    """Multiplicative changes to the programmed settings (1.0 = unchanged)."""

    basal_scale: float = 1.0
    isf_scale: float = 1.0
    carb_ratio_scale: float = 1.0
    bolus_scale: float = 1.0

    def label(self) -> str:
        parts = [f"{k.replace('_scale', '')} x{v:g}" for k, v in
                 (("basal_scale", self.basal_scale), ("isf_scale", self.isf_scale),
                  ("carb_ratio_scale", self.carb_ratio_scale), ("bolus_scale", self.bolus_scale)) if v != 1.0]
        return ", ".join(parts)


@dataclass(frozen=True)
class ArmResult:
    """One arm on one twin: glucose every 5 min (mg/dL), insulin delivered (U per 5 min), metrics."""

    name: str
    t_min: np.ndarray
    glucose_mg_dl: np.ndarray
    insulin_u: np.ndarray
    metrics: dict[str, float]


def _schedule(pairs: Sequence[tuple[float, float]], scale: float = 1.0, guardrail: str | None = None) -> Schedule:
    """A schedule from (minute, value) pairs, scaled, and brought inside its guardrail when one is named."""
    from trials.therapy import _clip

    def value(v: float) -> float:
        return _clip(guardrail, v * scale) if guardrail else float(v) * scale
    return Schedule(tuple(ScheduleEntry(float(t), value(v)) for t, v in pairs))


def settings_from_profile(profile: Profile, change: SettingsChange = SettingsChange(), *,
                          weight_kg: float, tdi_u: float = 40.0) -> TherapySettings:
    """Therapy settings (with conservative limits) from a programmed profile and optional changes, validated by the
    safety guardrails (ISF and carb ratio are brought inside their guardrails, as a guardrailed pump would).
    ``weight_kg`` has no default: the controller must run at the twin's own weight (``TwinFit.weight_kg``)."""
    from safety.guardrails import validate_settings

    basal = _schedule(profile.basal_u_per_h, change.basal_scale)
    max_sched = basal.max_value
    return validate_settings(TherapySettings(
        basal_u_per_h=basal,
        isf_mg_dl_per_u=_schedule(profile.isf_mg_dl_per_u, change.isf_scale, "isf_mg_dl_per_u"),
        carb_ratio_g_per_u=_schedule(profile.carb_ratio_g_per_u, change.carb_ratio_scale, "carb_ratio_g_per_u"),
        target_mg_dl=float(min(max(profile.target_mg_dl, 87.0), 180.0)),
        suspend_threshold_mg_dl=70.0,
        max_basal_u_per_h=round(max(3.0 * max_sched, 0.5), 2),
        max_bolus_u=10.0,
        max_iob_u=max(round(tdi_u / 4.0, 1), 2.0),
        max_daily_u=max(2.5 * tdi_u, 20.0),
        insulin_curve=InsulinCurve(75.0, max(profile.insulin_duration_min, 300.0)),
        age_group=AgeGroup.ADULT,
        weight_kg=weight_kg,
        total_daily_insulin_u=tdi_u,
    ))


def _twin_step(fit: TwinFit, theta: np.ndarray, x: np.ndarray, t_min: float, insulin_u_per_min: float,
               carbs_g: float, meal_index: int, current_meal: int) -> np.ndarray:
    inputs = pt.TwinInputs(t_min, np.array([insulin_u_per_min]), np.array([carbs_g]), np.array([meal_index]),
                           np.array([current_meal]))
    return fit.twin_model.simulate(fit.base, theta, inputs, x)[1]


def open_loop(fit: TwinFit, theta: np.ndarray, data: PatientData, t0: float, n_steps: int, x0: np.ndarray,
              bolus_scale: float = 1.0, name: str = "recorded") -> ArmResult:
    """The recorded insulin (boluses scaled by ``bolus_scale``) and carbs on the twin."""
    n_min = int(t0 + n_steps * pt.DT_MIN) + 5
    scaled = replace(data, boluses=tuple(replace(b, bolus_u=b.bolus_u * bolus_scale) for b in data.boluses))
    per_min = scaled.insulin_u_per_min(n_min)[int(t0):]
    inputs = pt.TwinInputs.from_minutes(t0, per_min, [(c.t_min, c.carbs_g) for c in data.carbs], n_steps)
    traj = fit.twin_model.simulate(fit.base, theta, inputs, x0)
    g = traj[:-1, 0]
    return ArmResult(name, t0 + pt.DT_MIN * np.arange(n_steps), g, inputs.insulin_u_per_min * pt.DT_MIN,
                     glucose_metrics(g))


def prediction_at_readings(arm: ArmResult, data: PatientData) -> tuple[np.ndarray, np.ndarray]:
    """An arm's glucose at the times of the CGM readings its grid covers (the grid point nearest each reading) and
    those readings (mg/dL): what a prediction is scored against."""
    t0, n = float(arm.t_min[0]), arm.t_min.size
    m = (data.cgm_t_min >= t0) & (data.cgm_t_min < t0 + pt.DT_MIN * n)
    k = np.clip(np.round((data.cgm_t_min[m] - t0) / pt.DT_MIN).astype(int), 0, n - 1)
    return arm.glucose_mg_dl[k], data.cgm_mg_dl[m]


def open_loop_ensemble(fit: TwinFit, theta: np.ndarray, data: PatientData, t0: float, n_steps: int,
                       x0: np.ndarray, n_draws: int = 30, seed: int = 0,
                       carb_error_log_sd: float | None = None) -> list[ArmResult]:
    """The recorded therapy on the twin with the carb-counting uncertainty the fit estimated: each draw multiplies
    every carb entry by ``exp(N(0, sd^2))`` (``sd`` = ``fit.carb_error_log_sd``), seeded. The eaten carbs of the
    future are unknown, so outcome metrics (TIR, ...) are predicted as their mean over the draws, not from the
    single smooth trajectory of the announced carbs (which misses the excursions counting errors cause)."""
    rng = np.random.default_rng(seed)
    sd = fit.carb_error_log_sd if carb_error_log_sd is None else carb_error_log_sd
    out = []
    for j in range(n_draws):
        carbs = tuple(replace(c, carbs_g=c.carbs_g * math.exp(sd * rng.standard_normal())) for c in data.carbs)
        out.append(open_loop(fit, theta, replace(data, carbs=carbs), t0, n_steps, x0, name=f"draw {j}"))
    return out


ANNOUNCE_LEAD_MAX_MIN = 30.0
"""A bolus recorded at most this long before a carb entry marks when that meal was announced (pre-bolus)."""


def announcement_times(data: PatientData) -> list[float]:
    """When each carb entry was announced to the pump: the time of the last recorded bolus in the
    :data:`ANNOUNCE_LEAD_MAX_MIN` minutes before it (a patient entering the meal and pre-bolusing), else the entry's
    own time. A controller replayed on the twin learns of each meal when the patient's device did."""
    bolus_t = np.sort(np.array([b.t_min for b in data.boluses], dtype=float))
    out = []
    for c in data.carbs:
        j = int(np.searchsorted(bolus_t, c.t_min, side="right")) - 1
        lead = c.t_min - bolus_t[j] if j >= 0 else math.inf
        out.append(float(bolus_t[j]) if 0.0 <= lead <= ANNOUNCE_LEAD_MAX_MIN else float(c.t_min))
    return out


def closed_loop(fit: TwinFit, theta: np.ndarray, data: PatientData, t0: float, n_steps: int, x0: np.ndarray,
                controller: Any, settings: TherapySettings, seed: int = 0, name: str | None = None,
                sensor: str | None = SENSOR_MODEL) -> ArmResult:
    """``controller`` (Controller protocol) doses the twin every 5 minutes through the supervisor. It reads the twin's
    glucose through the CGM error model ``sensor`` (seeded; ``None``: white noise of :data:`CGM_NOISE_SD_MG_DL`) and
    learns of every recorded carb entry (as recorded, counting error included) when it was announced
    (:func:`announcement_times`)."""
    from patient_model.sensor import CGMModel, SensorParams

    rng = np.random.default_rng(seed)
    cgm_model = (CGMModel(1, SensorParams.named(sensor), seed=seed, subject_keys=["personal-twin"])
                 if sensor is not None else None)
    sup = SubjectSupervision([settings])
    carbs, meal_idx, current = pt.carb_grid(t0, [(c.t_min, c.carbs_g) for c in data.carbs], n_steps)
    meals = tuple(MealAnnouncement(c.t_min, c.carbs_g, a, entry_id=f"m{i}")
                  for i, (c, a) in enumerate(zip(data.carbs, announcement_times(data))))
    state = controller.initial_state(settings)
    x = np.asarray(x0, float).copy()
    readings: list[GlucoseReading] = []
    deliveries: list[DeliveryRecord] = []
    g_out = np.empty(n_steps)
    ins_out = np.empty(n_steps)
    temp_rate, temp_until = math.nan, -math.inf
    for k in range(n_steps):
        now = t0 + pt.DT_MIN * k
        g_out[k] = x[0]
        if cgm_model is not None:
            cgm = float(cgm_model.measure(now - t0, np.array([x[0]]))[0])
        else:
            cgm = float(np.clip(x[0] + CGM_NOISE_SD_MG_DL * rng.standard_normal(), 40.0, 400.0))
        readings.append(GlucoseReading(now, cgm, "twin:cgm"))
        horizon = now - HISTORY_MIN
        readings = [r for r in readings if r.t_min >= horizon]
        deliveries = [d for d in deliveries if d.end_min >= horizon]
        snap = Snapshot(now, tuple(readings), tuple(deliveries), tuple(m for m in meals if m.announced_at_min <= now
                                                                      and m.t_min >= horizon), settings)
        state, proposal = controller.decide(state, snap)
        rate, bolus_u, duration = sup.step_subject(0, proposal, snap)
        if rate == RESUME:
            temp_rate, temp_until = math.nan, -math.inf
        elif not math.isnan(rate):
            temp_rate, temp_until = rate, now + duration
        active = temp_rate if now < temp_until else settings.basal_at(now)
        basal_u = active * pt.DT_MIN / 60.0
        deliveries.append(DeliveryRecord("", DeliveryKind.BASAL, now, now + pt.DT_MIN, basal_u,
                                         DeliveryStatus.CONFIRMED, active))
        if bolus_u > 0:
            deliveries.append(DeliveryRecord(f"b{k}", DeliveryKind.BOLUS, now, now, bolus_u, DeliveryStatus.CONFIRMED))
        ins_out[k] = basal_u + bolus_u
        x = _twin_step(fit, theta, x, now, (basal_u + bolus_u) / pt.DT_MIN, carbs[k], meal_idx[k], current[k])
    return ArmResult(name or getattr(controller, "name", "controller"), t0 + pt.DT_MIN * np.arange(n_steps), g_out,
                     ins_out, glucose_metrics(g_out))

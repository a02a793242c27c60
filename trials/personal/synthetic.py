"""Data with known truth: a reference subject living ``days`` days on basal-bolus therapy, recorded like a real
patient's data (noisy CGM every 5 min, boluses, announced carbs with counting error).

Used to validate the personal twin: fit on the first days, predict the rest, compare with what really happened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from patient_model.cohort import Subject, load_subject
from patient_model.scenarios import load_scenario, realize
from patient_model.uva_padova import CohortSimulator, UvaPadovaParams
from trials.personal.patient_data import BolusEvent, CarbEvent, PatientData, Profile


@dataclass(frozen=True)
class SyntheticRecord:
    """Recorded data plus the truth behind it (per-minute plasma glucose and the meals really eaten)."""

    data: PatientData
    bg_mg_dl: np.ndarray            # per minute, shape (days * 1440 + 1,)
    insulin_u_per_min: np.ndarray   # per minute delivered
    cho_g_per_min: np.ndarray       # per minute eaten (truth)
    subject: Subject


def profile_of(subject: Subject, target_mg_dl: float = 110.0) -> Profile:
    """The subject's clinic settings as a programmed profile (flat schedules)."""
    return Profile(((0.0, round(subject.basal_u_per_h, 2)),), ((0.0, subject.cf_mg_dl_per_u),),
                   ((0.0, subject.cr_g_per_u),), target_mg_dl, "UTC", 360.0)


def generate(subject_name: str, days: int = 10, seed: int = 1, scenario: str = "hcl-3day",
             carb_ratio_scale: float = 1.0, carb_error_sd_pct: float | None = None) -> SyntheticRecord:
    """Simulate ``subject_name`` for ``days`` on open-loop basal-bolus therapy and record it.

    Meal boluses are announced carbs / CR (+ a correction above 180 mg/dL by the CGM at the meal); basal is the
    subject's basal rounded down to 0.05 U/h. ``carb_ratio_scale`` perturbs the CR the patient uses (a worse
    therapy than the clinic's).
    """
    subject = load_subject(subject_name)
    scen = dataclasses.replace(load_scenario(scenario), days=days)
    if carb_error_sd_pct is not None:
        scen = dataclasses.replace(scen, carb_counting_error=dataclasses.replace(scen.carb_counting_error,
                                                                                 sd_pct=carb_error_sd_pct))
    real = realize(scen, [subject.name], seed=seed)
    n_min = real.duration_min
    sim = CohortSimulator(UvaPadovaParams.from_subjects([subject]))
    cgm = real.make_cgm()
    cho = real.cho_schedule()[:, 0]
    basal_u_per_min = np.floor(subject.basal_u_per_h / 0.05 + 1e-9) * 0.05 / 60.0
    ann = {int(np.floor(m.announced_at_min)): m for m in real.announcements(0)}
    bg = np.empty(n_min + 1)
    ins = np.full(n_min, basal_u_per_min)
    cgm_t, cgm_v, boluses, carbs = [], [], [], []
    last_cgm = float(sim.gsub_mg_dl[0])
    cr = subject.cr_g_per_u * carb_ratio_scale
    for t in range(n_min):
        bg[t] = float(sim.bg_mg_dl[0])
        if cgm.is_sample_time(t):
            v = float(cgm.measure(t, sim.gsub_mg_dl)[0])
            if np.isfinite(v):
                cgm_t.append(float(t))
                cgm_v.append(v)
                last_cgm = v
        if t in ann:
            meal = ann[t]
            bolus = meal.announced_carbs_g / cr
            if last_cgm > 180.0:
                bolus += (last_cgm - 110.0) / subject.cf_mg_dl_per_u
            bolus = np.floor(bolus / 0.05 + 1e-9) * 0.05
            ins[t] += bolus
            boluses.append(BolusEvent(float(t), float(bolus)))
            carbs.append(CarbEvent(float(meal.t_min), float(meal.announced_carbs_g)))
        sim.step(np.array([cho[t]]), np.array([ins[t]]))
    bg[n_min] = float(sim.bg_mg_dl[0])
    data = PatientData(np.array(cgm_t), np.array(cgm_v), tuple(boluses), (), tuple(sorted(carbs, key=lambda c: c.t_min)),
                       profile_of(subject), "1970-01-01T00:00:00+00:00", (), subject.weight_kg)
    return SyntheticRecord(data, bg, ins, cho, subject)

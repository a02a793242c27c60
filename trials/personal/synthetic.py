"""Data with known truth: a reference subject living ``days`` days on basal-bolus therapy, recorded like a real
patient's data (noisy CGM every 5 min, boluses, announced carbs with counting error).

Used to validate the personal twin: fit on the first days, predict the rest, compare with what really happened.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from patient_model.cohort import Subject, load_subject
from patient_model.scenarios import load_scenario, realize
from patient_model.uva_padova import CohortSimulator, UvaPadovaParams
from trials.personal.patient_data import BolusEvent, CarbEvent, PatientData, Profile, censored_runs


@dataclass(frozen=True)
class SyntheticRecord:
    """Recorded data plus the truth behind it (per-minute plasma glucose and the meals really eaten)."""

    data: PatientData
    bg_mg_dl: np.ndarray            # per minute, shape (days * 1440 + 1,)
    insulin_u_per_min: np.ndarray   # per minute delivered
    cho_g_per_min: np.ndarray       # per minute eaten (truth)
    subject: Subject
    gsub_mg_dl: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    """Per minute subcutaneous glucose (truth, what the CGM measures before its noise), shape (days * 1440 + 1,)."""


BASAL_STEP_U_PER_H = 0.05
"""Basal rate resolution of the pump (Insulet): the programmed basal is the subject's rounded down to it."""


def programmed_basal_u_per_h(subject: Subject) -> float:
    """The basal rate the pump is programmed with and delivers: the subject's basal rounded down to 0.05 U/h."""
    return round(math.floor(subject.basal_u_per_h / BASAL_STEP_U_PER_H + 1e-9) * BASAL_STEP_U_PER_H, 2)


def profile_of(subject: Subject, target_mg_dl: float = 110.0) -> Profile:
    """The subject's clinic settings as a programmed profile (flat schedules). The basal is the rate the pump
    really delivers (:func:`programmed_basal_u_per_h`), so the recorded pump data match the insulin the subject got
    (until 2026-11-22 the profile said ``round(basal, 2)`` while 0.05 U/h steps were delivered: up to 14 % more
    basal on record than delivered, which a twin cannot notice on basal-bolus data but which made a controller
    running on the recorded settings deliver more basal than in the fitted days)."""
    return Profile(((0.0, programmed_basal_u_per_h(subject)),), ((0.0, subject.cf_mg_dl_per_u),),
                   ((0.0, subject.cr_g_per_u),), target_mg_dl, "UTC", 360.0)


def generate(subject_name: str, days: int = 10, seed: int = 1, scenario: str = "hcl-3day",
             carb_ratio_scale: float = 1.0, carb_error_sd_pct: float | None = None, *,
             controller: Any = None, switch_min: float | None = None, settings: Any = None) -> SyntheticRecord:
    """Simulate ``subject_name`` for ``days`` on open-loop basal-bolus therapy and record it.

    Meal boluses are announced carbs / CR (+ a correction above 180 mg/dL by the CGM at the meal); basal is the
    subject's basal rounded down to 0.05 U/h. ``carb_ratio_scale`` perturbs the CR the patient uses (a worse
    therapy than the clinic's).

    With ``controller`` (Controller protocol) and ``switch_min``, the same subject with the same meals, CGM and
    carb errors switches at ``switch_min`` to closed loop: every 5 minutes the controller sees the CGM readings,
    the deliveries and the announced meals, its proposal goes through the safety supervisor (``settings``: the
    therapy settings it runs with, default from the subject's profile), and no manual bolus is given any more.
    This is the truth a twin's closed-loop replay is validated against.
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
    basal_u_per_min = programmed_basal_u_per_h(subject) / 60.0
    ann = {int(np.floor(m.announced_at_min)): m for m in real.announcements(0)}
    bg = np.empty(n_min + 1)
    gsub = np.empty(n_min + 1)
    ins = np.full(n_min, basal_u_per_min)
    cgm_t, cgm_v, boluses, carbs = [], [], [], []
    last_cgm = float(sim.gsub_mg_dl[0])
    cr = subject.cr_g_per_u * carb_ratio_scale
    loop = None
    if controller is not None:
        from trials.simulate import announcements

        loop = _Loop(controller, settings if settings is not None else _default_settings(subject),
                     announcements(real, 0), float(switch_min or 0.0))
    for t in range(n_min):
        bg[t] = float(sim.bg_mg_dl[0])
        gsub[t] = float(sim.gsub_mg_dl[0])
        fresh = math.nan
        if cgm.is_sample_time(t):
            v = float(cgm.measure(t, sim.gsub_mg_dl)[0])
            if np.isfinite(v):
                cgm_t.append(float(t))
                cgm_v.append(v)
                last_cgm = v
                fresh = v
        if loop is not None and t >= loop.switch_min:
            if t % 5 == 0:
                b = loop.decide(float(t), fresh)
                if b > 0:
                    boluses.append(BolusEvent(float(t), float(b)))
            ins[t] = loop.deliver(float(t))
            if t in ann:
                carbs.append(CarbEvent(float(ann[t].t_min), float(ann[t].announced_carbs_g)))
        elif t in ann:
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
    gsub[n_min] = float(sim.gsub_mg_dl[0])
    data = PatientData(np.array(cgm_t), np.array(cgm_v), tuple(boluses), (),
                       tuple(sorted(carbs, key=lambda c: c.t_min)),
                       profile_of(subject), "1970-01-01T00:00:00+00:00",
                       tuple(censored_runs(np.array(cgm_t), np.array(cgm_v))), subject.weight_kg)
    return SyntheticRecord(data, bg, ins, cho, subject, gsub)


def _default_settings(subject: Subject) -> Any:
    from trials.personal.replay import settings_from_profile

    tdi = subject.basal_u_per_h * 24.0 * 2.0
    return settings_from_profile(profile_of(subject), weight_kg=subject.weight_kg, tdi_u=tdi)


class _Loop:
    """A controller dosing the simulated subject through the safety supervisor (one subject, per-minute pump)."""

    def __init__(self, controller: Any, settings: Any, meals: Any, switch_min: float) -> None:
        from trials.supervision import SubjectSupervision

        self.controller, self.settings, self.switch_min = controller, settings, switch_min
        self.meals = tuple(meals)
        self.state = controller.initial_state(settings)
        self.sup = SubjectSupervision([settings])
        self.readings: list = []
        self.deliveries: list = []
        self.temp_rate, self.temp_until, self.bolus_u, self.seq = math.nan, -math.inf, 0.0, 0

    def decide(self, now: float, cgm_mg_dl: float) -> float:
        from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus
        from safety.readings import GlucoseReading
        from safety.snapshot import Snapshot
        from trials.supervision import RESUME

        horizon = now - 1440.0
        if math.isfinite(cgm_mg_dl):
            self.readings.append(GlucoseReading(now, float(cgm_mg_dl), "sim:cgm"))
        self.readings = [r for r in self.readings if r.t_min >= horizon]
        self.deliveries = [d for d in self.deliveries if d.end_min >= horizon]
        meals = tuple(m for m in self.meals if m.announced_at_min <= now and m.t_min >= horizon)
        snap = Snapshot(now, tuple(self.readings), tuple(self.deliveries), meals, self.settings)
        self.state, proposal = self.controller.decide(self.state, snap)
        rate, bolus, duration = self.sup.step_subject(0, proposal, snap)
        if rate == RESUME:
            self.temp_rate, self.temp_until = math.nan, -math.inf
        elif not math.isnan(rate):
            self.temp_rate, self.temp_until = rate, now + duration
        active = self.temp_rate if now < self.temp_until else self.settings.basal_at(now)
        self.rate = float(active)
        self.deliveries.append(DeliveryRecord("", DeliveryKind.BASAL, now, now + 5.0, active * 5.0 / 60.0,
                                              DeliveryStatus.CONFIRMED, active))
        self.bolus_u = float(bolus)
        if bolus > 0:
            self.seq += 1
            self.deliveries.append(DeliveryRecord(f"b{self.seq}", DeliveryKind.BOLUS, now, now, float(bolus),
                                                  DeliveryStatus.CONFIRMED))
        return float(bolus)

    def deliver(self, t: float) -> float:
        """Insulin delivered in minute ``t`` (U): the active rate plus a bolus given at this minute."""
        u = self.rate / 60.0 + self.bolus_u
        self.bolus_u = 0.0
        return u

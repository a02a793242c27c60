"""One chunk of subjects under one controller, simulated minute by minute.

Per simulated minute the plant (UVA/Padova, vectorized over the chunk) steps with the insulin the pump delivered
and the carbs eaten. Every 5 minutes: CGM sample -> controller decision -> supervisor -> pump. The supervisor always
sits between the controller and the pump; its approved commands are unwrapped into pump numbers in
:mod:`trials.supervision`.

Two decision paths share the same plant loop:

- vectorized: a baseline's ``decide_batch`` over the whole chunk and the batch supervisor;
- per subject: any :class:`controller.api.Controller` (the MPC) with a :class:`safety.snapshot.Snapshot` built for
  each subject at each decision, and the per-subject supervisor.

The result (:class:`ChunkResult`) holds per-5-minute traces of the chunk and nothing bigger.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from controller.baselines.common import BIN_MIN, HISTORY_BINS, BatchInputs
from safety.commands import TEMP_BASAL_MAX_DURATION_MIN, DeliveryKind, DeliveryRecord, DeliveryStatus
from safety.deliveries import reduced_deliveries
from safety.readings import GlucoseReading, MealAnnouncement
from safety.settings import TherapySettings
from safety.snapshot import Snapshot
from trials.supervision import RESUME

SAMPLE_MIN = 5
READINGS_KEPT = 72  # 6 h of CGM in a snapshot
DELIVERY_WINDOW_MIN = 480.0  # deliveries kept in 5-minute detail (longer than any insulin action)
HISTORY_DAY_MIN = 1440.0     # older deliveries are kept as hourly totals for a day (the supervisor's daily cap)


PLANT_SUBSTEPS = 1
"""RK4 substeps per minute of the trial's plant: one keeps the reference traces within 8.5e-4 mg/dL RMSE (two:
2.4e-4; the fidelity bar is 0.1, benchmarks/twin_throughput.py --substeps 1) at half the cost."""


class DeliveryHistory:
    """One subject's pump history as the snapshot shows it: 5-minute basal records and boluses for the last 8 h,
    and before that, up to 24 h back, one basal record per hour (same insulin, fewer records) plus the boluses."""

    def __init__(self) -> None:
        self.recent: collections.deque = collections.deque()
        self.old: collections.deque = collections.deque()
        self._hour: list | None = None  # [hour index, start, end, amount] being folded

    def append(self, record: DeliveryRecord) -> None:
        self.recent.append(record)

    def snapshot(self, now_min: float) -> tuple[DeliveryRecord, ...]:
        while self.recent and self.recent[0].end_min < now_min - DELIVERY_WINDOW_MIN:
            self._fold(self.recent.popleft())
        while self.old and self.old[0].end_min < now_min - HISTORY_DAY_MIN:
            self.old.popleft()
        pending = ()
        if self._hour is not None:
            _, a, b, amount = self._hour
            pending = (DeliveryRecord("", DeliveryKind.BASAL, a, b, amount, DeliveryStatus.CONFIRMED,
                                      rate_u_per_h=amount * 60.0 / (b - a)),)
        # the pump's own history: one record per command, none failed, so already what the safety kernel's
        # reduction gives; handing it over as such lets the controller's and the supervisor's insulin sums share
        # the arrays derived from it (memoized on this object) instead of rebuilding them
        return reduced_deliveries(tuple(self.old) + pending + tuple(self.recent))

    def _fold(self, r: DeliveryRecord) -> None:
        if r.kind is DeliveryKind.BOLUS:
            self.old.append(r)
            return
        hour = int(r.start_min // 60.0)
        if self._hour is not None and self._hour[0] != hour:
            _, a, b, amount = self._hour
            self.old.append(DeliveryRecord("", DeliveryKind.BASAL, a, b, amount, DeliveryStatus.CONFIRMED,
                                           rate_u_per_h=amount * 60.0 / (b - a)))
            self._hour = None
        if self._hour is None:
            self._hour = [hour, r.start_min, r.end_min, r.amount_u]
        else:
            self._hour[2] = r.end_min
            self._hour[3] += r.amount_u


@dataclass
class ChunkResult:
    """Per-5-minute traces of one chunk: arrays (T5, N) unless stated.

    ``reason`` holds an index into ``reasons`` (the proposal's reason); ``interventions`` maps a supervisor reason
    name to per-subject counts (N,).
    """

    names: tuple[str, ...]
    groups: tuple[str, ...]
    t_min: np.ndarray            # (T5,)
    bg_mg_dl: np.ndarray
    cgm_mg_dl: np.ndarray
    insulin_u: np.ndarray        # delivered over the 5 minutes starting at t
    bolus_u: np.ndarray          # bolus accepted by the pump at t (part of insulin_u)
    carbs_g: np.ndarray          # eaten over the 5 minutes starting at t
    carbs_announced_g: np.ndarray  # announced in (t - 5, t]
    reason: np.ndarray           # int codes into reasons
    reasons: tuple[str, ...]
    interventions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def days(self) -> float:
        return len(self.t_min) * SAMPLE_MIN / 1440.0


class SettingsColumns:
    """Therapy settings of N subjects as arrays, evaluated at a time (cached when every schedule is constant)."""

    def __init__(self, settings: Sequence[TherapySettings]) -> None:
        self.settings = tuple(settings)
        self.constant = all(len(s.basal_u_per_h.entries) == 1 and len(s.isf_mg_dl_per_u.entries) == 1
                            and len(s.carb_ratio_g_per_u.entries) == 1 for s in self.settings)
        self._cache: dict[str, np.ndarray] | None = None

    def at(self, now_min: float) -> dict[str, np.ndarray]:
        if self.constant and self._cache is not None:
            return self._cache
        from controller.baselines.common import settings_columns

        cols = [settings_columns(s, now_min) for s in self.settings]
        out = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
        if self.constant:
            self._cache = out
        return out


def announcement_matrix(realization, n: int, n_decisions: int) -> np.ndarray:
    """Carbs announced in each decision window (k*5 - 5, k*5], shape (n_decisions, n) -- what the person tells
    the device. An announcement before minute 0 counts at the first decision."""
    out = np.zeros((n_decisions, n))
    for i, sub in enumerate(realization.subjects):
        for meal in sub.meals:
            if not meal.announced or meal.announced_carbs_g <= 0:
                continue
            k = max(0, int(math.ceil(meal.announced_at_min / SAMPLE_MIN - 1e-9)))
            if k < n_decisions:
                out[k, i] += meal.announced_carbs_g
    return out


def announcements(realization, i: int, t0: float = 0.0) -> list[MealAnnouncement]:
    """Subject i's meal announcements on the absolute clock (simulation minute + ``t0``), ordered by the time
    they are made."""
    out = []
    for j, meal in enumerate(realization.subjects[i].meals):
        if meal.announced and meal.announced_carbs_g > 0:
            out.append(MealAnnouncement(t_min=t0 + float(meal.t_min), carbs_g=float(meal.announced_carbs_g),
                                        announced_at_min=t0 + float(meal.announced_at_min), entry_id=f"meal-{j}"))
    return sorted(out, key=lambda m: m.announced_at_min)


class _CGMHistory:
    """The last four 5-minute CGM samples of every subject (for the baselines' deltas)."""

    def __init__(self, n: int) -> None:
        self.values = np.full((4, n), np.nan)   # row 0 newest
        self.last_valid = np.full(n, np.nan)
        self.last_valid_t = np.full(n, -np.inf)

    def push(self, t_min: float, cgm: np.ndarray) -> None:
        self.values = np.roll(self.values, 1, axis=0)
        self.values[0] = cgm
        ok = np.isfinite(cgm)
        self.last_valid = np.where(ok, cgm, self.last_valid)
        self.last_valid_t = np.where(ok, t_min, self.last_valid_t)

    def deltas(self) -> tuple[np.ndarray, np.ndarray]:
        v = self.values
        delta = v[0] - v[1]
        avg = (v[0] - v[3]) / 3.0
        return delta, np.where(np.isfinite(avg), avg, delta)


def simulate_chunk(subjects: Sequence, settings: Sequence[TherapySettings], realization, controller,
                   supervisor, *, seed: int, minutes: int, vectorized: bool,
                   on_progress: Callable[[float], None] | None = None) -> ChunkResult:
    """Run one chunk; see the module docstring. ``supervisor`` comes from :mod:`trials.supervision`
    (a batch supervisor when ``vectorized``, a per-subject one otherwise). ``on_progress`` receives the
    patient-days done since its last call, about every simulated hour."""
    from patient_model.uva_padova import CohortSimulator, UvaPadovaParams

    n = len(subjects)
    names = tuple(s.name for s in subjects)
    t0 = float(realization.start_min_of_day)
    sim = CohortSimulator(UvaPadovaParams.from_subjects(subjects), t0_min=t0,
                          options=_physiology_options(realization), seed=seed, n_substeps=PLANT_SUBSTEPS)
    sensor = realization.make_cgm()
    pump = realization.make_pump(record=False)
    occlusions = [(i, a, b) for i, sub in enumerate(realization.subjects) for a, b in sub.occlusions]
    cols = SettingsColumns(settings)
    basal0 = cols.at(0.0)["basal_u_per_h"]
    pump.set_basal(basal0)

    n_dec = int(math.ceil(minutes / SAMPLE_MIN))
    cho = np.asarray(realization.cho_schedule(), dtype=float)[:minutes]
    if cho.shape[0] < minutes:
        cho = np.vstack([cho, np.zeros((minutes - cho.shape[0], n))])
    announced = announcement_matrix(realization, n, n_dec)

    traces = {k: np.full((n_dec, n), np.nan) for k in ("bg", "cgm", "ins")}
    traces["bolus"] = np.zeros((n_dec, n))
    reason_codes = np.zeros((n_dec, n), dtype=np.int16)
    reasons: list[str] = []
    reason_index: dict[str, int] = {}

    def code(text: str) -> int:
        if text not in reason_index:
            reason_index[text] = len(reasons)
            reasons.append(text)
        return reason_index[text]

    hist = _CGMHistory(n)
    net = np.zeros((n, HISTORY_BINS))
    ins_bin = np.zeros(n)
    occluded = np.zeros(n, dtype=bool)
    temp_rate = np.full(n, np.nan)   # running temporary basal (NaN = programmed basal)
    temp_until = np.full(n, -np.inf)

    if vectorized:
        state = controller.initial_batch_state(n)
        batch_codes = np.array([code(r) for r in controller.REASONS])
    else:
        states = [controller.initial_state(s) for s in settings]
        meal_lists = [announcements(realization, i, t0) for i in range(n)]
        readings: list[collections.deque] = [collections.deque(maxlen=READINGS_KEPT) for _ in range(n)]
        deliveries = [DeliveryHistory() for _ in range(n)]
        bolus_seq = [0] * n
    basal_now = pump.basal_rate_u_per_h.copy()

    progress_every = 60
    for t in range(minutes):
        now = t0 + t
        if occlusions:
            occ = np.zeros(n, dtype=bool)
            for i, a, b in occlusions:
                occ[i] |= a <= t < b
            if (occ != occluded).any():
                pump.set_occlusion(occ & ~occluded, True)
                pump.set_occlusion(~occ & occluded, False)
                occluded = occ
        if t % SAMPLE_MIN == 0:
            k = t // SAMPLE_MIN
            if k > 0:
                scheduled = cols.at(now - BIN_MIN)["basal_u_per_h"] * BIN_MIN / 60.0
                net[:, 1:] = net[:, :-1].copy()
                net[:, 0] = ins_bin - scheduled
                traces["ins"][k - 1] = ins_bin
                ins_bin = np.zeros(n)
            cgm = sensor.measure(float(t), sim.gsub_mg_dl)
            traces["bg"][k] = sim.bg_mg_dl
            traces["cgm"][k] = cgm
            hist.push(now, cgm)
            if vectorized:
                delta, avg = hist.deltas()
                inputs = BatchInputs(
                    now_min=now, glucose_mg_dl=hist.last_valid.copy(), glucose_age_min=now - hist.last_valid_t,
                    delta_mg_dl=delta, avg_delta_mg_dl=avg, net_insulin_u=net, meal_carbs_g=announced[k],
                    **cols.at(now))
                state, proposal = controller.decide_batch(state, inputs)
                rate, bolus = supervisor.step(proposal, inputs, cgm_mg_dl=cgm,
                                              active_rate_u_per_h=pump.basal_rate_u_per_h, occluded=occluded)
                duration = np.full(n, TEMP_BASAL_MAX_DURATION_MIN)
                reason_codes[k] = batch_codes[proposal.reason_code]
            else:
                rate = np.full(n, np.nan)
                bolus = np.zeros(n)
                duration = np.full(n, TEMP_BASAL_MAX_DURATION_MIN)
                for i in range(n):
                    if math.isfinite(cgm[i]):
                        readings[i].append(GlucoseReading(now, float(cgm[i]), source="sim:cgm"))
                    meals = tuple(m for m in meal_lists[i] if m.announced_at_min <= now)
                    snap = Snapshot(now_min=now, readings=tuple(readings[i]), deliveries=deliveries[i].snapshot(now),
                                    meals=meals, settings=settings[i])
                    states[i], prop = controller.decide(states[i], snap)
                    reason_codes[k, i] = code(_short_reason(prop.reason))
                    rate[i], bolus[i], duration[i] = supervisor.step_subject(i, prop, snap,
                                                                             occluded=bool(occluded[i]))
            # the pump takes plain numbers: a temp basal runs until it expires or is replaced; RESUME ends it
            started = np.isfinite(rate) & (rate >= 0.0)
            temp_rate = np.where(started, rate, np.where(rate == RESUME, np.nan, temp_rate))
            temp_until = np.where(started, now + duration, temp_until)
            temp_rate = np.where(now >= temp_until, np.nan, temp_rate)
            pump.set_basal(np.where(np.isnan(temp_rate), cols.at(now)["basal_u_per_h"], temp_rate))
            basal_now = pump.basal_rate_u_per_h.copy()
            accepted = pump.request_bolus(bolus) if np.any(bolus > 0) else np.zeros(n)
            traces["bolus"][k] = accepted
            if not vectorized:
                for i in np.flatnonzero(accepted > 0):
                    bolus_seq[i] += 1
                    deliveries[i].append(DeliveryRecord(f"bolus-{bolus_seq[i]}", DeliveryKind.BOLUS, now, now,
                                                        float(accepted[i]), DeliveryStatus.CONFIRMED))
        delivered = pump.deliver_minute(t)
        ins_bin = ins_bin + delivered
        if not vectorized and (t % SAMPLE_MIN == SAMPLE_MIN - 1 or t == minutes - 1):
            start = now - t % SAMPLE_MIN
            for i in range(n):
                amount = 0.0 if occluded[i] else basal_now[i] * (now + 1 - start) / 60.0
                deliveries[i].append(DeliveryRecord("", DeliveryKind.BASAL, start, now + 1.0, amount,
                                                    DeliveryStatus.CONFIRMED, rate_u_per_h=float(basal_now[i])))
        sim.step(cho[t], delivered)
        if on_progress is not None and (t + 1) % progress_every == 0:
            on_progress(n * progress_every / 1440.0)
    traces["ins"][n_dec - 1] = ins_bin
    if on_progress is not None and minutes % progress_every:
        on_progress(n * (minutes % progress_every) / 1440.0)
    carbs5 = np.add.reduceat(cho, np.arange(0, minutes, SAMPLE_MIN), axis=0)
    return ChunkResult(
        names=names, groups=tuple(s.group for s in subjects), t_min=t0 + np.arange(n_dec) * float(SAMPLE_MIN),
        bg_mg_dl=traces["bg"], cgm_mg_dl=traces["cgm"], insulin_u=traces["ins"], bolus_u=traces["bolus"], carbs_g=carbs5,
        carbs_announced_g=announced, reason=reason_codes, reasons=tuple(reasons),
        interventions=supervisor.counts(),
    )


def _physiology_options(realization):
    """The scenario's optional physiology, when it asks for any (None = the plain S2008 model)."""
    if not (realization.hypo_risk_term or realization.intraday_variation):
        return None
    from patient_model.physiology import PhysiologyOptions

    return PhysiologyOptions(hypo_risk_term=realization.hypo_risk_term,
                             intraday_variation=realization.intraday_variation)


def _short_reason(text: str, limit: int = 80) -> str:
    """A proposal's reason without its per-decision numbers, so that traces can dictionary-encode it."""
    head = text.split(";", 1)[0].strip()
    return head[:limit]

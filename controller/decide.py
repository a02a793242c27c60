"""The MPC dosing decision: ``decide(state, snapshot) -> (state, proposal)``.

A pure function of the snapshot (which carries ``now_min``) and of the controller's own JSON-serialisable state:
no clock, no I/O, no globals other than a cache of built solvers. Steps:

1. Inputs: readings with ``t_min <= now`` that are numeric, in sensor range and without an unreliable status,
   de-duplicated by time; meals announced at or before ``now`` (de-duplicated by entry id, or time and carbs);
   deliveries that did not fail (commanded and uncertain ones count as delivered: the safe side).
2. Filter: the UKF (:mod:`controller.twin_filter`) advances from its last time to ``now`` through every new reading
   with the recorded insulin and the announced carbs. On the first decision (or after a long gap) it starts from
   the twin driven by the last 6 h of deliveries and meals, at the first reading of the last hour.
3. Meal bolus: a newly announced meal (starting within 20 min ahead or 60 min past) gets ``carbs / CR`` reduced when
   the eventual glucose is below target, unless the person already bolused for it; a meal bolus the supervisor
   refused is proposed again 10 min later, and the rest of one capped at max bolus follows 20 min later.
4. MPC (:mod:`controller.mpc`): plan from the estimated state (plus the meal bolus) with future announced carbs as
   feed-forward, bounds ``0 .. min(max basal, 4 x scheduled, 3 x max daily scheduled)``; no rise above the scheduled
   basal with a reading older than 15 min, insulin on board at the limit or the CGM falling >= 1 mg/dL/min. Status
   is checked; on failure the proposal returns to the scheduled basal and says so.
5. Output: a 30-minute temporary basal at the plan's first rate (suspend when it rounds to zero), the optional meal
   bolus or, when glucose is at least 140 mg/dL with a fresh reading, the MPC's automatic correction bolus (its own
   decision variable, at most 30 % of max bolus, 40 % of the correction need and max IOB minus IOB; none within
   12 h after an announced meal: with meal announcements the meal boluses do that work; none from 23:00 to 07:00
   or while the CGM falls fast), the predicted glucose (5-minute steps from ``now``), the estimated states and a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from controller.mpc import MPCInputs, MPCResult, MPCSolver
from controller.mpc_problem import MPCConfig
from controller.reason import basal_words, decision_reason
from controller.twin_filter import FilterConfig, FilterState, FilterStateError, TwinUKF
from patient_model.bergman_twin import (
    IDX_D, IDX_G, IDX_ISC1, IDX_ISC2, IDX_Q1, IDX_Q2, IDX_S, IDX_X, STATE_NAMES, TwinParams, eventual_glucose, rhs,
    rk4_step,
)
from safety.commands import (
    TEMP_BASAL_MAX_DURATION_MIN, Bolus, BolusKind, DeliveryKind, DeliveryRecord, DeliveryStatus, Proposal, Resume,
    Suspend, TempBasal,
)
from safety.readings import UNRELIABLE_STATUS, GlucoseReading, MealAnnouncement
from safety.settings import AgeGroup, TherapySettings
from safety.snapshot import Snapshot
from safety.units import floor_to_increment

STATE_VERSION = 1
SENSOR_MIN_MG_DL = 39.0
SENSOR_MAX_MG_DL = 600.0


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Everything tunable about the MPC controller (units in names)."""

    mpc: MPCConfig = field(default_factory=MPCConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    zone_below_target_mg_dl: float = 10.0
    zone_above_target_mg_dl: float = 30.0
    hypo_margin_mg_dl: float = 10.0
    meal_bolus_fraction: float = 1.0
    meal_bolus_before_min: float = 20.0
    meal_bolus_after_min: float = 60.0
    stale_reading_min: float = 15.0
    fallback_reading_min: float = 30.0
    init_window_min: float = 60.0
    history_min: float = 360.0
    restart_gap_min: float = 360.0
    max_basal_x_scheduled: float = 4.0
    max_basal_x_max_daily: float = 3.0
    meal_tau_min: float = 40.0
    disturbance_tau_min: float = 90.0
    isf_rule_mg_dl: float | None = 1800.0
    insulin_action_tau_factor: float = 1.0
    insulin_action_tau_factor_child: float | None = 2.0
    auto_bolus: bool = True
    auto_bolus_min_glucose_mg_dl: float = 140.0
    auto_bolus_max_fraction_of_max_bolus: float = 0.3
    auto_bolus_max_reading_age_min: float = 10.0
    auto_bolus_fraction_of_need: float = 0.4
    auto_bolus_meal_window_min: float = 720.0
    auto_bolus_isf_from_twin: bool = False
    auto_bolus_quiet_start_min: float | None = 1380.0
    auto_bolus_quiet_end_min: float | None = 420.0
    falling_trend_mg_dl_per_min: float | None = -1.0
    falling_trend_window_min: float = 20.0
    meal_bolus_split_capped: bool = True
    meal_bolus_retry_min: float | None = 10.0
    meal_bolus_isf_from_twin: bool = True
    meal_bolus_rest_delay_min: float = 20.0
    meal_bolus_rest_expiry_min: float = 90.0


# -- inputs ---------------------------------------------------------------------------------------------------

def usable_readings(readings: Iterable[GlucoseReading], now_min: float,
                    since_min: float = -math.inf) -> list[tuple[float, float]]:
    """``(t_min, glucose_mg_dl)`` of usable readings in ``[since, now]``, oldest first, one per time."""
    by_time: dict[float, float] = {}
    unreliable = int(UNRELIABLE_STATUS)  # plain int: IntFlag arithmetic is slow in a per-reading loop
    for r in readings:
        if not (since_min <= r.t_min <= now_min):
            continue
        if not math.isfinite(r.glucose_mg_dl) or (int(r.status) & unreliable):
            continue
        if not (SENSOR_MIN_MG_DL <= r.glucose_mg_dl <= SENSOR_MAX_MG_DL):
            continue
        key = round(float(r.t_min), 3)
        by_time.setdefault(key, float(r.glucose_mg_dl))
    return sorted(by_time.items())


def meal_key(meal: MealAnnouncement) -> str:
    return meal.entry_id or f"{meal.t_min:.2f}/{meal.carbs_g:.2f}"


def visible_meals(meals: Iterable[MealAnnouncement], now_min: float) -> dict[str, MealAnnouncement]:
    """Meals announced at or before ``now`` with positive carbs, de-duplicated by :func:`meal_key`."""
    out: dict[str, MealAnnouncement] = {}
    for m in sorted(meals, key=lambda m: (m.announced_at_min, m.t_min)):
        if m.announced_at_min > now_min or not (m.carbs_g > 0.0) or not math.isfinite(m.t_min):
            continue
        out.setdefault(meal_key(m), m)
    return out


def insulin_delivered_u(deliveries: Iterable[DeliveryRecord], ta: float, tb: float,
                        settings: TherapySettings) -> float:
    """Insulin (U) delivered over ``[ta, tb)``.

    Boluses count when they start in the interval (extended ones pro rata). For basal, at every instant the most
    recently started record covering it applies (a new temporary basal supersedes the previous one even if that
    record still shows its planned end); time no basal record covers is assumed at the scheduled basal.
    """
    total = 0.0
    basal: list[DeliveryRecord] = []
    for d in deliveries:
        if d.status is DeliveryStatus.FAILED or d.end_min < ta or d.start_min >= tb:
            continue
        if d.kind is DeliveryKind.BOLUS:
            if d.end_min > d.start_min:
                total += d.amount_u * _overlap(d.start_min, d.end_min, ta, tb) / (d.end_min - d.start_min)
            elif ta <= d.start_min < tb:
                total += d.amount_u
        elif d.end_min > d.start_min and d.end_min > ta:
            basal.append(d)
    points = sorted({ta, tb} | {min(max(d.start_min, ta), tb) for d in basal}
                    | {min(max(d.end_min, ta), tb) for d in basal})
    for a, b in zip(points, points[1:]):
        if b <= a:
            continue
        mid = 0.5 * (a + b)
        cover = [d for d in basal if d.start_min <= mid < d.end_min]
        if cover:
            d = max(cover, key=lambda r: r.start_min)
            rate_u_per_min = d.amount_u / (d.end_min - d.start_min)
        else:
            rate_u_per_min = settings.basal_at(mid) / 60.0
        total += rate_u_per_min * (b - a)
    return total


class DeliveredInsulin:
    """:func:`insulin_delivered_u` over one decision's records, memoized by interval (a decision asks for the same
    one twice: the filter's last step and the glucose trend both cover the last 5 minutes)."""

    __slots__ = ("records", "settings", "_memo")

    def __init__(self, records: Sequence[DeliveryRecord], settings: TherapySettings) -> None:
        self.records = records
        self.settings = settings
        self._memo: dict[tuple[float, float], float] = {}

    def __call__(self, ta: float, tb: float) -> float:
        """Insulin (U) delivered over ``[ta, tb)``."""
        key = (ta, tb)
        total = self._memo.get(key)
        if total is None:
            total = self._memo[key] = insulin_delivered_u(self.records, ta, tb, self.settings)
        return total


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def twin_params(settings: TherapySettings, t_min: float, config: ControllerConfig) -> TwinParams:
    """The twin at ``t_min`` from the therapy settings in force then."""
    return TwinParams.from_settings(
        weight_kg=settings.weight_kg,
        tdi_u=settings.total_daily_insulin_u,
        basal_u_per_h=settings.basal_at(t_min),
        isf_mg_dl_per_u=settings.isf_at(t_min),
        carb_ratio_g_per_u=settings.carb_ratio_at(t_min),
        target_mg_dl=settings.target_mg_dl,
        insulin_peak_min=settings.insulin_curve.peak_min,
        meal_tau_min=config.meal_tau_min,
        disturbance_tau_min=config.disturbance_tau_min,
        isf_rule_mg_dl=config.isf_rule_mg_dl,
        action_tau_factor=_action_tau_factor(settings, config),
    )


def _action_tau_factor(settings: TherapySettings, config: ControllerConfig) -> float:
    """The twin's insulin action time constant factor; the settings' age group may select the child value."""
    if settings.age_group is AgeGroup.CHILD and config.insulin_action_tau_factor_child is not None:
        return config.insulin_action_tau_factor_child
    return config.insulin_action_tau_factor


def _gut_split(carbs_g: float, elapsed_min: float, tau_min: float) -> tuple[float, float]:
    """Carbs still in the two gut compartments ``elapsed_min`` after eating ``carbs_g``."""
    e = max(elapsed_min, 0.0) / tau_min
    return carbs_g * math.exp(-e), carbs_g * e * math.exp(-e)


# -- the controller -------------------------------------------------------------------------------------------

class MPCController:
    """Twin + UKF + MPC dosing algorithm (implements :class:`controller.api.Controller`).

    Args:
        config: tuning (:class:`ControllerConfig`).
        use_compiled: use the generated-C MPC solver when its library exists (see :mod:`controller.codegen`).
        library_dir: directory of the compiled library (default: the package's build directory).
        solver: inject a solver object with ``solve(MPCInputs) -> MPCResult`` (tests use this to inject failures).
    """

    name = "mpc"

    def __init__(self, config: ControllerConfig | None = None, *, use_compiled: bool = False,
                 library_dir: str | None = None, solver: Any = None) -> None:
        self.config = config or ControllerConfig()
        self.solver = solver or MPCSolver(self.config.mpc, use_compiled=use_compiled, library_dir=library_dir)
        self.ukf = TwinUKF(self.config.filter)

    def initial_state(self, settings: TherapySettings) -> dict[str, Any]:
        """State before the first decision: nothing estimated yet (the first decision initialises the filter)."""
        del settings
        return {"version": STATE_VERSION}

    # -- public entry ---------------------------------------------------------------------------------------
    def decide(self, state: Mapping[str, Any], snapshot: Snapshot) -> tuple[dict[str, Any], Proposal]:
        """One decision at ``snapshot.now_min``; never raises for bad input (returns a stated fallback)."""
        try:
            return self._decide(state or {}, snapshot)
        except Exception as exc:  # noqa: BLE001 - the loop must never crash; the error is named in the proposal
            now = float(getattr(snapshot, "now_min", float("nan")))
            reason = (f"Controller error ({type(exc).__name__}: {exc}); returning to the scheduled basal")
            return ({"version": STATE_VERSION},
                    Proposal(now_min=now, basal=Resume(), reason=reason, controller=self.name,
                             error=f"internal_error: {type(exc).__name__}"))

    # -- the steps ------------------------------------------------------------------------------------------
    def _decide(self, state: Mapping[str, Any], snapshot: Snapshot) -> tuple[dict[str, Any], Proposal]:
        cfg = self.config
        now = float(snapshot.now_min)
        if not math.isfinite(now):
            raise ValueError("snapshot.now_min is not finite")
        settings = snapshot.settings
        scheduled = settings.basal_at(now)
        fs = self._restore_filter(state, now)
        # older readings than the filter's time are not used again (a restored filter re-reads only its own time,
        # before its first update; a cold start looks back over its initialisation window) and the staleness
        # checks need only the newest one; the full history is scanned only when that window is empty
        start = fs.t_min if fs is not None else now - cfg.init_window_min
        readings = usable_readings(snapshot.readings, now, min(start, now - cfg.fallback_reading_min) - 1e-6)
        if not readings:
            readings = usable_readings(snapshot.readings, now)
        meals = visible_meals(snapshot.meals, now)
        deliveries = tuple(d for d in snapshot.deliveries
                           if d.status is not DeliveryStatus.FAILED and d.start_min <= now
                           and d.end_min >= now - cfg.history_min - cfg.init_window_min - 10.0)
        delivered = DeliveredInsulin(deliveries, settings)
        injected: dict[str, float] = {k: float(v) for k, v in dict(state.get("meals_in_filter", {})).items()}
        bolused: dict[str, float] = {k: float(v) for k, v in dict(state.get("meals_bolused", {})).items()}
        notes: list[str] = []

        if fs is None:
            fs, injected = self._cold_start(readings, meals, delivered, settings, now)
            if fs is None:
                return self._fallback(state, now, scheduled, None, "no_glucose",
                                      "No usable glucose reading in the last hour", injected, bolused)
        fs, rejected = self._advance_through_readings(fs, readings, meals, injected, delivered, settings, now)
        if rejected:
            notes.append(rejected[-1])
        fs = self._inject_due_meals(fs, meals, injected, now)

        last_age = now - readings[-1][0] if readings else math.inf
        new_state_base = {
            "version": STATE_VERSION,
            "filter": fs.to_json(),
            "meals_in_filter": _prune(injected, now),
        }
        if last_age > cfg.fallback_reading_min:
            return self._fallback(new_state_base, now, scheduled, fs, "cgm_stale",
                                  f"No usable glucose reading for {last_age:.0f} min", injected, bolused)

        params = twin_params(settings, now, cfg)
        pvec = params.vector()
        x0 = fs.x.copy()
        iob = self._iob(snapshot, fs.x, params, now)

        # meal bolus for newly announced meals (and the rest of one that max bolus capped)
        falling = self._falling_fast(snapshot.readings, now)
        rest: dict[str, float] = {k: float(v) for k, v in dict(state.get("meal_bolus_rest", {})).items()}
        proposed: dict[str, float] = {k: float(v) for k, v in dict(state.get("meals_bolus_proposed", {})).items()}
        bolus, bolus_note = self._meal_bolus(meals, bolused, deliveries, settings, x0, pvec, now, rest, proposed)
        if bolus is None and not bolus_note:
            bolus, bolus_note = self._meal_bolus_rest(rest, readings[-1][1], falling, settings, now)
        if bolus is not None:
            x0[IDX_ISC1] += bolus.bolus_u
        if bolus_note:
            notes.append(bolus_note)

        # bounds
        u_max = min(settings.max_basal_u_per_h, cfg.max_basal_x_scheduled * scheduled,
                    cfg.max_basal_x_max_daily * settings.basal_u_per_h.max_value)
        if last_age > cfg.stale_reading_min:
            u_max = min(u_max, scheduled)
            notes.append(f"last reading {last_age:.0f} min old: no increase above the scheduled basal")
        if iob >= settings.max_iob_u:
            u_max = min(u_max, scheduled)
            notes.append(f"insulin on board at the {settings.max_iob_u:.1f} U limit: no increase")
        if falling is not None:
            u_max = min(u_max, scheduled)
            notes.append(f"CGM falling {falling:.1f} mg/dL/min: no increase above the scheduled basal")
        u_max = max(u_max, 0.0)
        bolus_max = 0.0
        recent_meal = any(now - cfg.auto_bolus_meal_window_min <= m.t_min <= now + cfg.meal_bolus_before_min
                          for m in meals.values())
        if (cfg.auto_bolus and bolus is None and not recent_meal and falling is None and not self._quiet_hours(now)
                and last_age <= cfg.auto_bolus_max_reading_age_min
                and readings[-1][1] >= cfg.auto_bolus_min_glucose_mg_dl
                and fs.x[IDX_G] >= cfg.auto_bolus_min_glucose_mg_dl):
            isf = params.isf_mg_dl_per_u if cfg.auto_bolus_isf_from_twin else settings.isf_at(now)
            need_u = (readings[-1][1] - settings.target_mg_dl) / isf - iob
            bolus_max = max(0.0, min(cfg.auto_bolus_max_fraction_of_max_bolus * settings.max_bolus_u,
                                     settings.max_iob_u - max(iob, 0.0), cfg.auto_bolus_fraction_of_need * need_u))

        carbs = np.zeros(cfg.mpc.horizon_steps)
        for m in meals.values():
            if m.t_min > now and meal_key(m) not in injected:
                k = int((m.t_min - now) // cfg.mpc.dt_min)
                if k < len(carbs):
                    carbs[k] += m.carbs_g
        target = settings.target_mg_dl
        inputs = MPCInputs(
            x0=x0, twin=pvec, u_prev_u_per_h=float(state.get("last_rate_u_per_h", scheduled)), carbs_g=carbs,
            target_mg_dl=target, zone_lo_mg_dl=target - cfg.zone_below_target_mg_dl,
            zone_hi_mg_dl=target + cfg.zone_above_target_mg_dl,
            hypo_mg_dl=settings.suspend_threshold_mg_dl + cfg.hypo_margin_mg_dl,
            u_max_u_per_h=u_max, warm_start_u_per_h=state.get("plan_u_per_h"), bolus_max_u=bolus_max,
        )
        result: MPCResult = self.solver.solve(inputs)
        glucose_now = float(fs.x[IDX_G])
        trend = float(rhs(fs.x, delivered(now - 5.0, now) / 5.0, pvec)[IDX_G])
        if fs.x[IDX_D] >= 0.5:
            notes.append(f"unexplained rise of {fs.x[IDX_D]:+.1f} mg/dL/min (unannounced carbs?)")
        elif fs.x[IDX_D] <= -0.5:
            notes.append(f"unexplained fall of {fs.x[IDX_D]:+.1f} mg/dL/min (activity?)")
        estimated = self._estimated(fs.x, params, trend, iob)
        state_out: dict[str, Any] = dict(new_state_base)
        state_out["meals_bolused"] = _prune(bolused, now)
        if rest:
            state_out["meal_bolus_rest"] = rest
        if proposed:
            state_out["meals_bolus_proposed"] = _prune(proposed, now, 360.0)

        if not result.success:
            state_out["last_rate_u_per_h"] = scheduled
            action = basal_words(None, scheduled, TEMP_BASAL_MAX_DURATION_MIN)
            notes.insert(0, f"MPC solver failed ({result.status}); falling back to the scheduled basal")
            reason = decision_reason(glucose_now, trend, iob, (), action, notes)
            return state_out, Proposal(now_min=now, basal=Resume(), bolus=bolus, estimated_state=estimated,
                                       reason=reason, controller=self.name, error=f"mpc_failed: {result.status}")

        rate = floor_to_increment(result.plan_u_per_h[0], settings.basal_increment_u_per_h)
        rate = min(rate, u_max)
        basal_cmd: Any
        if rate < settings.basal_increment_u_per_h:
            basal_cmd = Suspend(TEMP_BASAL_MAX_DURATION_MIN)
            rate = 0.0
        else:
            basal_cmd = TempBasal(rate, TEMP_BASAL_MAX_DURATION_MIN)
        auto_u = floor_to_increment(min(result.bolus_u, bolus_max), settings.bolus_increment_u)
        if bolus is None and auto_u >= settings.bolus_increment_u:
            bolus = Bolus(auto_u, BolusKind.AUTOMATIC)
        state_out["plan_u_per_h"] = [round(v, 9) for v in result.plan_u_per_h]
        state_out["last_rate_u_per_h"] = rate
        predicted = (round(glucose_now, 2),) + tuple(round(g, 2) for g in result.predicted_glucose_mg_dl)
        action = basal_words(rate, scheduled, TEMP_BASAL_MAX_DURATION_MIN)
        if bolus is not None:
            what = "meal bolus" if bolus.kind is BolusKind.MEAL else "automatic correction bolus"
            action = f"{what} {bolus.bolus_u:.2f} U and " + action
        reason = decision_reason(glucose_now, trend, iob, predicted, action, notes)
        return state_out, Proposal(now_min=now, basal=basal_cmd, bolus=bolus, predicted_glucose_mg_dl=predicted,
                                   estimated_state=estimated, reason=reason, controller=self.name)

    def _quiet_hours(self, now: float) -> bool:
        """Inside the configured night hours (minutes of the day, may wrap midnight): no automatic boluses."""
        a, b = self.config.auto_bolus_quiet_start_min, self.config.auto_bolus_quiet_end_min
        if a is None or b is None:
            return False
        m = now % 1440.0
        return (a <= m < b) if a <= b else (m >= a or m < b)

    def _falling_fast(self, all_readings, now: float) -> float | None:
        """The CGM slope (mg/dL/min, least squares over ``falling_trend_window_min``) when it is at or below
        ``falling_trend_mg_dl_per_min`` (then insulin is not raised above the scheduled basal), else None."""
        limit = self.config.falling_trend_mg_dl_per_min
        if limit is None:
            return None
        recent = usable_readings(all_readings, now, now - self.config.falling_trend_window_min - 1e-6)
        if len(recent) < 3:
            return None
        t = np.array([r[0] for r in recent])
        g = np.array([r[1] for r in recent])
        tc = t - t.mean()
        slope = float(np.dot(tc, g - g.mean()) / np.dot(tc, tc))
        return slope if slope <= limit else None

    # -- filter -----------------------------------------------------------------------------------------------
    def _restore_filter(self, state: Mapping[str, Any], now: float) -> FilterState | None:
        data = state.get("filter")
        if not data:
            return None
        try:
            fs = FilterState.from_json(data)
        except FilterStateError:
            return None
        if fs.t_min > now + 1e-6 or now - fs.t_min > self.config.restart_gap_min:
            return None
        return fs

    def _cold_start(self, readings, meals, delivered, settings, now):
        cfg = self.config
        recent = [r for r in readings if r[0] >= now - cfg.init_window_min]
        if not recent:
            return None, {}
        t0, g0 = recent[0]
        t = t0 - cfg.history_min
        x = twin_params(settings, t, cfg).steady_state(g0)
        injected: dict[str, float] = {}
        dt = cfg.mpc.dt_min
        while t < t0 - 1e-9:
            step = min(dt, t0 - t)
            for key, m in meals.items():
                if key not in injected and m.t_min < t + step and m.t_min >= t0 - cfg.history_min - 1e-9:
                    q1, q2 = _gut_split(m.carbs_g, t - m.t_min, cfg.meal_tau_min)
                    x[IDX_Q1] += q1
                    x[IDX_Q2] += q2
                    injected[key] = m.t_min
            u = delivered(t, t + step) / step
            x = rk4_step(x, u, twin_params(settings, t, cfg).vector(), step)
            t += step
        x[IDX_G] = g0
        x[IDX_D] = 0.0
        x[IDX_S] = 1.0
        for key, m in meals.items():  # carbs eaten before the history window are taken as absorbed
            if m.t_min <= t0:
                injected.setdefault(key, m.t_min)
        fs = self.ukf.initial(x, t0)
        return fs, injected

    def _advance_through_readings(self, fs, readings, meals, injected, delivered, settings, now):
        rejected: list[str] = []
        for t, g in readings:
            if t <= fs.t_min + 1e-9:
                if fs.n_updates == 0 and abs(t - fs.t_min) < 1e-9:
                    fs, res = self.ukf.update(fs, g)
                continue
            fs = self._predict_to(fs, t, meals, injected, delivered, settings)
            fs, res = self.ukf.update(fs, g)
            if not res.accepted:
                rejected.append(res.reason)
        fs = self._predict_to(fs, now, meals, injected, delivered, settings)
        return fs, rejected

    def _predict_to(self, fs, t_end, meals, injected, delivered, settings):
        cfg = self.config
        dt = cfg.mpc.dt_min
        while fs.t_min < t_end - 1e-9:
            t = fs.t_min
            step = min(dt, t_end - t)
            x = fs.x
            for key, m in meals.items():
                if key not in injected and m.t_min < t + step:
                    q1, q2 = _gut_split(m.carbs_g, t - m.t_min, cfg.meal_tau_min)
                    x = x.copy()
                    x[IDX_Q1] += q1
                    x[IDX_Q2] += q2
                    injected[key] = m.t_min
            if x is not fs.x:
                fs = replace(fs, x=x)
            u = delivered(t, t + step) / step
            fs = self.ukf.predict(fs, step, u, 0.0, twin_params(settings, t, cfg).vector())
        return fs

    def _inject_due_meals(self, fs, meals, injected, now):
        x = fs.x
        for key, m in meals.items():
            if key not in injected and m.t_min <= now:
                q1, q2 = _gut_split(m.carbs_g, now - m.t_min, self.config.meal_tau_min)
                x = x.copy()
                x[IDX_Q1] += q1
                x[IDX_Q2] += q2
                injected[key] = m.t_min
        return fs if x is fs.x else replace(fs, x=x)

    # -- meal bolus ---------------------------------------------------------------------------------------------
    def _meal_bolus(self, meals, bolused, deliveries, settings, x0, pvec, now, rest=None, proposed=None):
        cfg = self.config
        due = [(k, m) for k, m in meals.items()
               if k not in bolused and now - cfg.meal_bolus_after_min <= m.t_min <= now + cfg.meal_bolus_before_min]
        retry = proposed is not None and cfg.meal_bolus_retry_min is not None
        if retry and due:
            # a proposed meal bolus counts once a bolus record started at or after the proposal; one the supervisor
            # refused (e.g. a predicted low at meal time) is proposed again after meal_bolus_retry_min
            waiting = set()
            for key, m in due:
                t_prop = proposed.get(key)
                if t_prop is None:
                    continue
                if any(d.kind is DeliveryKind.BOLUS and d.start_min >= t_prop - 1e-6 for d in deliveries):
                    bolused[key] = m.t_min
                    waiting.add(key)
                elif now - t_prop < cfg.meal_bolus_retry_min:
                    waiting.add(key)
            due = [(k, m) for k, m in due if k not in waiting]
        if not due:
            return None, ""
        total = 0.0
        for key, m in due:
            need = m.carbs_g / settings.carb_ratio_at(m.t_min)
            given = sum(d.amount_u for d in deliveries
                        if d.kind is DeliveryKind.BOLUS and m.t_min - 30.0 <= d.start_min <= now)
            if retry:
                proposed[key] = now
            else:
                bolused[key] = m.t_min
            if given >= 0.5 * need:
                bolused[key] = m.t_min
                continue
            total += cfg.meal_bolus_fraction * need
        if total <= 0.0:
            return None, "meal already bolused"
        carbs_g = sum(m.carbs_g for _, m in due)
        # the eventual glucose without the new meals' carbs (already injected ones are removed for the estimate)
        x_wo = x0.copy()
        for key, m in due:
            if m.t_min <= now:
                q1, q2 = _gut_split(m.carbs_g, now - m.t_min, self.config.meal_tau_min)
                x_wo[IDX_Q1] = max(x_wo[IDX_Q1] - q1, 0.0)
                x_wo[IDX_Q2] = max(x_wo[IDX_Q2] - q2, 0.0)
        eventual = float(eventual_glucose(x_wo, pvec))
        total /= max(float(x0[IDX_S]), 1.0)  # a patient estimated more sensitive than the settings needs less
        isf = settings.isf_at(now)
        if cfg.meal_bolus_isf_from_twin:  # the twin's ISF (sx * gref), the one its eventual glucose is computed with
            isf = float(pvec[2] * pvec[0])
        correction = 0.0
        if eventual < settings.target_mg_dl:
            correction = (eventual - settings.target_mg_dl) / isf
        wanted = max(total + correction, 0.0)
        bolus_u = min(wanted, settings.max_bolus_u)
        if rest is not None and cfg.meal_bolus_split_capped and wanted > bolus_u:
            rest.clear()
            rest.update({"u": wanted - bolus_u, "t_min": now})
        bolus_u = floor_to_increment(bolus_u, settings.bolus_increment_u)
        note = f"{carbs_g:.0f} g announced: meal bolus {bolus_u:.2f} U"
        if correction < 0.0:
            note += f" (reduced by {-correction:.2f} U: eventual glucose {eventual:.0f} mg/dL is below target)"
        if bolus_u < settings.bolus_increment_u:
            return None, note
        return Bolus(bolus_u, BolusKind.MEAL), note

    def _meal_bolus_rest(self, rest, glucose_mg_dl, falling, settings, now):
        """The rest of a meal bolus that max bolus capped, ``meal_bolus_rest_delay_min`` later (once; skipped when
        the CGM is below target or falling fast; forgotten after ``meal_bolus_rest_expiry_min``)."""
        cfg = self.config
        if not rest:
            return None, ""
        u, t = float(rest.get("u", 0.0)), float(rest.get("t_min", -math.inf))
        if u <= 0.0 or not (0.0 <= now - t <= cfg.meal_bolus_rest_expiry_min):
            rest.clear()
            return None, ""
        if now - t < cfg.meal_bolus_rest_delay_min:
            return None, ""
        rest.clear()
        if falling is not None or glucose_mg_dl < settings.target_mg_dl:
            return None, f"rest of the capped meal bolus ({u:.2f} U) skipped: glucose low or falling"
        u = floor_to_increment(min(u, settings.max_bolus_u), settings.bolus_increment_u)
        note = f"rest of the meal bolus that max bolus capped: {u:.2f} U"
        if u < settings.bolus_increment_u:
            return None, note
        return Bolus(u, BolusKind.MEAL), note

    # -- outputs ------------------------------------------------------------------------------------------------
    def _iob(self, snapshot: Snapshot, x: np.ndarray, params: TwinParams, now: float) -> float:
        try:
            from safety.iob import insulin_on_board_u  # written concurrently; optional until it lands
        except ImportError:
            insulin_on_board_u = None
        if insulin_on_board_u is not None:
            try:
                return float(insulin_on_board_u(snapshot.deliveries, snapshot.settings, now))
            except (TypeError, ValueError):
                pass
        return twin_iob_u(x, params)

    def _estimated(self, x: np.ndarray, params: TwinParams, trend: float, iob: float) -> dict[str, float]:
        est = {name: float(x[i]) for i, name in enumerate(STATE_NAMES)}
        est["trend_mg_dl_per_min"] = trend
        est["insulin_on_board_u"] = iob
        est["twin_insulin_on_board_u"] = twin_iob_u(x, params)
        est["carbs_on_board_g"] = float(x[IDX_Q1] + x[IDX_Q2])
        est["eventual_glucose_mg_dl"] = float(eventual_glucose(x, params.vector()))
        return {k: round(v, 6) for k, v in est.items()}

    def _fallback(self, state, now, scheduled, fs, error, why, injected, bolused):
        state_out = dict(state)
        state_out["version"] = STATE_VERSION
        state_out["meals_in_filter"] = _prune(injected, now)
        state_out["meals_bolused"] = _prune(bolused, now)
        state_out["last_rate_u_per_h"] = scheduled
        state_out.pop("plan_u_per_h", None)
        estimated: dict[str, float] = {}
        if fs is not None:
            estimated = {name: round(float(fs.x[i]), 6) for i, name in enumerate(STATE_NAMES)}
        reason = f"{why}; {basal_words(None, scheduled, TEMP_BASAL_MAX_DURATION_MIN)}"
        return state_out, Proposal(now_min=now, basal=Resume(), estimated_state=estimated, reason=reason,
                                   controller=self.name, error=error)


def twin_iob_u(x: np.ndarray, params: TwinParams) -> float:
    """Net insulin on board (U above the scheduled basal) as the twin sees it: depots plus pending action."""
    tau = params.insulin_tau_min
    return float(x[IDX_ISC1] + x[IDX_ISC2] - 2.0 * params.basal_u_per_min * tau
                 + x[IDX_X] * params.action_tau_min / params.sx_per_u)


def _prune(entries: Mapping[str, float], now: float, keep_min: float = 1440.0) -> dict[str, float]:
    return {k: float(v) for k, v in entries.items() if v >= now - keep_min}


_DEFAULT: MPCController | None = None


def default_controller() -> MPCController:
    """The shared default :class:`MPCController` (a cache of the built solver, not of any decision state)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MPCController()
    return _DEFAULT


def decide(state: Mapping[str, Any], snapshot: Snapshot) -> tuple[dict[str, Any], Proposal]:
    """``decide(state, snapshot) -> (state, proposal)`` with the default MPC controller."""
    return default_controller().decide(state, snapshot)

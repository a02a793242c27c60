"""The supervisor: every command passes here before it reaches a pump, real or virtual.

``supervise(proposal, context) -> Verdict`` is a pure function: no clock, no I/O, no randomness; command ids are
derived from ``now_min`` and ``state.counter``. The verdict holds the approved commands (possibly none), every
intervention with its reason, the alarms, the next supervisor state and, when the proposal was not followed, the
fallback that was applied. Rule constants and their sources are in :mod:`safety.limits`; CGM rules in
:mod:`safety.cgm_gate`.

Order of the rules (the first that applies to the basal decides it):

1. invalid settings -> Resume (the pump's programmed basal), no bolus, alarm; Suspend instead when glucose is low
   (measured or predicted) against the settings' threshold if it is within 67-110 mg/dL, else 80 mg/dL;
2. low-glucose suspend (measured, predicted by the supervisor's own regression, or held until glucose is valid,
   rising and at/above the threshold) -> Suspend(30), no bolus;
3. no valid CGM reading for >= 20 min -> Resume, alarm (automatic/correction boluses refused);
4. otherwise the proposal, with: temp basal duration <= 30 min; uncertain delivery -> only Suspend (proposed rate
   below scheduled) or Resume; caps in this order: max basal, 4 x current scheduled, 3 x max scheduled, scheduled
   (when CGM data is invalid, the controller reported an error, the clock jumped back or the proposal is stale),
   max IOB, max daily; then rounding down to the pump increment;
5. pump gating last: communication lost -> no command; occlusion or empty reservoir -> nothing but Suspend.

Boluses: refused during LGS, pump trouble, uncertain delivery, a bolus in progress or a stale proposal; automatic
and correction boluses also refused when CGM data is invalid, the controller reported an error or the clock jumped
back, and automatic ones within 4.5 min of the previous one. Caps in order: max bolus, 40 % (automatic) or 100 %
(correction) of the need (``limits.need_u``), reservoir, max IOB (``max_iob - iob``), max daily; round down.
Meal boluses are refused when two meal entries look like the same meal (double carb entry).
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from safety import limits as L
from safety.cgm_gate import CgmAssessment, assess_cgm
from safety.commands import (ApprovedCommand, Bolus, BolusKind, CancelBolus, InsulinCommand, Proposal, Resume,
                             Suspend, TempBasal, _approve)
from safety.errors import SettingsError
from safety.guardrails import validate_settings
from safety.deliveries import reduced_deliveries
from safety.iob import active_basal_rate_u_per_h, delivered_last_24h_u, insulin_on_board_u, pending_deliveries
from safety.readings import MealAnnouncement
from safety.snapshot import Snapshot

__all__ = ["PumpState", "SupervisorState", "SupervisorContext", "Reason", "Intervention", "Alarm", "Verdict",
           "supervise", "cancel_bolus", "reason_mask", "reasons_from_mask", "REASON_BIT"]


@dataclass(frozen=True, slots=True)
class PumpState:
    """What the pump (driver) reports. ``reservoir_u`` None = unknown."""

    occluded: bool = False
    reservoir_empty: bool = False
    reservoir_u: float | None = None
    communication_ok: bool = True
    bolus_in_progress: bool = False


@dataclass(frozen=True, slots=True)
class SupervisorState:
    """The supervisor's memory between decisions (JSON-serialisable with :meth:`to_dict` / :meth:`from_dict`)."""

    lgs_active: bool = False
    last_valid_reading_min: float | None = None
    last_auto_bolus_min: float | None = None
    counter: int = 0
    last_decision_min: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SupervisorState":
        def opt(key: str) -> float | None:
            v = data.get(key)
            return None if v is None else float(v)
        return cls(lgs_active=bool(data.get("lgs_active", False)),
                   last_valid_reading_min=opt("last_valid_reading_min"),
                   last_auto_bolus_min=opt("last_auto_bolus_min"),
                   counter=int(data.get("counter", 0)),
                   last_decision_min=opt("last_decision_min"))


@dataclass(frozen=True, slots=True)
class SupervisorContext:
    """Everything the supervisor may look at besides the proposal."""

    snapshot: Snapshot
    pump: PumpState = PumpState()
    state: SupervisorState = SupervisorState()


class Reason(enum.Enum):
    """One member per kind of intervention. Append only: the batch bitmask uses the definition order."""

    CAP_MAX_BASAL = "rate capped at max basal"
    CAP_4X_SCHEDULED = "rate capped at 4 x current scheduled basal"
    CAP_3X_MAX_DAILY = "rate capped at 3 x max daily scheduled basal"
    CAP_MAX_BOLUS = "bolus capped at max bolus"
    CAP_AUTO_BOLUS_FRACTION = "automatic bolus capped at 40 % of need"
    CAP_CORRECTION_NEED = "correction bolus capped at the need"
    CAP_MAX_IOB = "capped so insulin on board stays <= max IOB"
    CAP_MAX_DAILY = "capped so the 24-h total stays <= max daily"
    CAP_RESERVOIR = "bolus capped at the insulin left in the reservoir"
    LGS_MEASURED = "suspend: glucose below the suspend threshold"
    LGS_PREDICTED = "suspend: glucose predicted below the suspend threshold within 30 min"
    LGS_HOLD = "suspend held: glucose not yet rising above the threshold"
    CGM_STALE = "CGM data stale (> 12 min)"
    CGM_FUTURE = "CGM reading dated in the future (> 5 min)"
    CGM_DUPLICATE = "CGM readings < 20 s apart with different values"
    CGM_INVALID_VALUE = "CGM value invalid (special, <= 39, > 400 or flagged)"
    CGM_RATE_IMPOSSIBLE = "CGM rate of change impossible (> 6 mg/dL/min)"
    CGM_FLAT = "CGM trace flat for >= 45 min"
    CGM_LOSS_REVERT = "no valid CGM for >= 20 min: scheduled basal"
    DELIVERY_UNCERTAIN = "a delivery's outcome is uncertain: no new insulin"
    PUMP_OCCLUSION = "pump occluded"
    PUMP_RESERVOIR_EMPTY = "pump reservoir empty"
    PUMP_COMM_LOSS = "pump communication lost"
    BOLUS_IN_PROGRESS = "a bolus is in progress"
    TEMP_BASAL_DURATION = "temp basal duration capped at 30 min"
    ROUNDED_DOWN = "rounded down to the pump increment"
    CONTROLLER_ERROR = "controller reported an error"
    PROPOSAL_STALE = "proposal not made for this decision time"
    INVALID_PROPOSAL = "proposal value invalid (NaN, negative or zero duration)"
    TIME_JUMP = "clock went backwards"
    SETTINGS_INVALID = "therapy settings outside the guardrails"
    AUTO_BOLUS_TOO_SOON = "automatic bolus less than 4.5 min after the previous one"
    MEAL_DUPLICATE = "two meal entries look like the same meal"
    HIGH_TEMP_CANCELLED = "running temp basal above scheduled cancelled (data not trustworthy)"


REASON_BIT: dict[Reason, int] = {r: 1 << i for i, r in enumerate(Reason)}


def reason_mask(reasons) -> int:
    """Bitmask of a collection of reasons (bit i = i-th member of :class:`Reason`)."""
    mask = 0
    for r in reasons:
        mask |= REASON_BIT[r]
    return mask


def reasons_from_mask(mask: int) -> tuple[Reason, ...]:
    """Reasons whose bits are set in ``mask``."""
    return tuple(r for r, bit in REASON_BIT.items() if int(mask) & bit)


_FALLBACK_THRESHOLD_MG_DL = 80.0
"""Suspend threshold used when the settings are invalid (Loop's default)."""

_ALARMS = {Reason.LGS_MEASURED: "critical", Reason.CGM_LOSS_REVERT: "critical", Reason.PUMP_OCCLUSION: "critical",
           Reason.PUMP_RESERVOIR_EMPTY: "critical", Reason.PUMP_COMM_LOSS: "warning",
           Reason.DELIVERY_UNCERTAIN: "warning", Reason.SETTINGS_INVALID: "critical", Reason.TIME_JUMP: "warning",
           Reason.MEAL_DUPLICATE: "warning", Reason.CGM_FUTURE: "warning", Reason.CGM_DUPLICATE: "warning"}


@dataclass(frozen=True, slots=True)
class Intervention:
    """One thing the supervisor changed or refused, and why."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Alarm:
    """Something a person must know about now. ``severity`` is ``"warning"`` or ``"critical"``."""

    reason: Reason
    t_min: float
    message: str
    severity: str = "warning"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The supervisor's answer. ``fallback`` names the safe action taken instead of the proposal (None = followed,
    possibly capped)."""

    commands: tuple[ApprovedCommand, ...]
    interventions: tuple[Intervention, ...]
    alarms: tuple[Alarm, ...]
    state: SupervisorState
    fallback: str | None = None

    @property
    def reasons(self) -> frozenset[Reason]:
        return frozenset(i.reason for i in self.interventions)

    @property
    def summary(self) -> str:
        """One line for humans."""
        cmds = ", ".join(f"{type(c.command).__name__}{_fmt(c.command)}" for c in self.commands) or "no command"
        why = "; ".join(f"{i.reason.name}: {i.detail}" for i in self.interventions)
        fb = f" [fallback: {self.fallback}]" if self.fallback else ""
        return f"{cmds}{fb}" + (f" ({why})" if why else "")

    def to_dict(self) -> dict[str, Any]:
        from safety.serialization import to_jsonable
        return {"commands": [to_jsonable(c) for c in self.commands],
                "interventions": [{"reason": i.reason.name, "detail": i.detail} for i in self.interventions],
                "alarms": [{"reason": a.reason.name, "t_min": a.t_min, "message": a.message, "severity": a.severity}
                           for a in self.alarms],
                "state": self.state.to_dict(), "fallback": self.fallback, "summary": self.summary}


def _fmt(cmd: InsulinCommand) -> str:
    if isinstance(cmd, TempBasal):
        return f"({cmd.rate_u_per_h:g} U/h, {cmd.duration_min:g} min)"
    if isinstance(cmd, Bolus):
        return f"({cmd.bolus_u:g} U, {cmd.kind.value})"
    if isinstance(cmd, Suspend):
        return f"({cmd.duration_min:g} min)"
    return ""


class _Log:
    def __init__(self, now_min: float) -> None:
        self.now = now_min
        self.items: list[Intervention] = []
        self.alarms: list[Alarm] = []

    def add(self, reason: Reason, detail: str = "") -> None:
        self.items.append(Intervention(reason, detail or reason.value))
        if reason in _ALARMS and all(a.reason is not reason for a in self.alarms):
            self.alarms.append(Alarm(reason, self.now, detail or reason.value, _ALARMS[reason]))

    def cap(self, value: float, limit: float, reason: Reason, unit: str) -> float:
        if limit < value:
            self.add(reason, f"{value:.4g} -> {limit:.4g} {unit}")
            return limit
        return value


def _duplicate_meal(meals: tuple[MealAnnouncement, ...], now_min: float) -> bool:
    recent = [m for m in meals if now_min - m.announced_at_min <= 180.0]
    for i, a in enumerate(recent):
        for b in recent[i + 1:]:
            if (a.entry_id and a.entry_id == b.entry_id) or \
                    (abs(a.t_min - b.t_min) <= 15.0 and a.carbs_g == b.carbs_g):
                return True
    return False


def supervise(proposal: Proposal, context: SupervisorContext) -> Verdict:
    """Decide what actually happens (see the module docstring for the rules, in order)."""
    snap, pump, st = context.snapshot, context.pump, context.state
    s, now = snap.settings, snap.now_min
    log = _Log(now)
    pump_ok = pump.communication_ok and not pump.occluded and not pump.reservoir_empty

    try:
        validate_settings(s)
    except SettingsError as exc:
        log.add(Reason.SETTINGS_INVALID, str(exc))
        thr = s.suspend_threshold_mg_dl
        thr = thr if isinstance(thr, (int, float)) and 67.0 <= thr <= 110.0 else _FALLBACK_THRESHOLD_MG_DL
        low = assess_cgm(snap.readings, now, thr)
        if low.low_measured or low.low_predicted:
            log.add(Reason.LGS_MEASURED if low.low_measured else Reason.LGS_PREDICTED, f"below {thr:g} mg/dL")
            cmds: list[InsulinCommand] = [Suspend(L.TEMP_BASAL_MAX_DURATION_MIN)] if pump.communication_ok else []
            fallback = "suspend: low glucose (therapy settings invalid)"
        else:
            cmds = [Resume()] if pump_ok else []
            fallback = "programmed basal: therapy settings invalid"
        return _finish(log, cmds, st, now, bool(cmds) and isinstance(cmds[0], Suspend), st.last_valid_reading_min,
                       st.last_auto_bolus_min, fallback)

    cgm = assess_cgm(snap.readings, now, s.suspend_threshold_mg_dl)
    for flag in cgm.flags:
        log.add(Reason[flag], _cgm_detail(flag, cgm, now))
    prior_valid = st.last_valid_reading_min
    if prior_valid is not None and prior_valid > now + L.CGM_FUTURE_TOLERANCE_MIN:
        prior_valid = None  # from before a backwards clock jump
    candidates = [t for t in (prior_valid, cgm.latest_valid_t_min) if t is not None]
    last_valid = max(candidates) if candidates else None
    revert = last_valid is None or now - last_valid >= L.CGM_LOSS_REVERT_MIN
    fresh = "CGM_STALE" not in cgm.flags
    resume_ok = (fresh and cgm.latest_valid_mg_dl is not None and cgm.latest_valid_mg_dl >= s.suspend_threshold_mg_dl
                 and cgm.slope_mg_dl_per_min is not None and cgm.slope_mg_dl_per_min > 0.0)
    hold = st.lgs_active and not resume_ok and not revert
    lgs = cgm.low_measured or cgm.low_predicted or hold
    if cgm.low_measured:
        log.add(Reason.LGS_MEASURED, f"glucose below {s.suspend_threshold_mg_dl:g} mg/dL")
    if cgm.low_predicted:
        log.add(Reason.LGS_PREDICTED, f"predicted below {s.suspend_threshold_mg_dl:g} mg/dL within 30 min")
    if hold and not (cgm.low_measured or cgm.low_predicted):
        log.add(Reason.LGS_HOLD)

    no_increase = not cgm.ok
    if st.last_decision_min is not None and now < st.last_decision_min:
        log.add(Reason.TIME_JUMP, f"now {now:g} < previous decision {st.last_decision_min:g}")
        no_increase = True
    stale_proposal = not (now - L.PROPOSAL_MAX_AGE_MIN <= proposal.now_min <= now + 1e-6)
    if stale_proposal:
        log.add(Reason.PROPOSAL_STALE, f"proposal for {proposal.now_min:g}, decision at {now:g}")
        no_increase = True
    if proposal.error:
        log.add(Reason.CONTROLLER_ERROR, str(proposal.error))
        no_increase = True

    if not pump.communication_ok:
        log.add(Reason.PUMP_COMM_LOSS)
    if pump.occluded:
        log.add(Reason.PUMP_OCCLUSION)
    if pump.reservoir_empty:
        log.add(Reason.PUMP_RESERVOIR_EMPTY)
    deliveries = reduced_deliveries(snap.deliveries)  # reduced once (and its arrays built once), used four times
    pending = pending_deliveries(deliveries)
    uncertain = bool(pending)
    if uncertain:
        log.add(Reason.DELIVERY_UNCERTAIN, "unreconciled: " + ", ".join(r.command_id or "(pump)" for r in pending))

    iob = insulin_on_board_u(deliveries, s, now)
    total24 = delivered_last_24h_u(deliveries, s, now)
    if not (math.isfinite(iob) and math.isfinite(total24)):
        log.add(Reason.DELIVERY_UNCERTAIN, "delivery records are not numeric: insulin on board unknown")
        uncertain, iob, total24 = True, math.inf, math.inf
    sched = s.basal_at(now)

    # ---- bolus
    bolus_u = 0.0
    b = proposal.bolus
    auto_bolus = False
    if b is not None:
        amount = float(b.bolus_u)
        needs_glucose = b.kind in (BolusKind.AUTOMATIC, BolusKind.CORRECTION)
        if not math.isfinite(amount) or amount < 0.0:
            log.add(Reason.INVALID_PROPOSAL, f"bolus {amount!r} U")
        elif amount == 0.0 or lgs or not pump_ok or uncertain or stale_proposal:
            pass  # reasons already listed
        elif pump.bolus_in_progress:
            log.add(Reason.BOLUS_IN_PROGRESS)
        elif needs_glucose and (no_increase or revert):
            pass  # CGM / controller reasons already listed
        elif b.kind is BolusKind.MEAL and _duplicate_meal(snap.meals, now):
            log.add(Reason.MEAL_DUPLICATE, "meal bolus refused: confirm the carb entries")
        elif b.kind is BolusKind.AUTOMATIC and st.last_auto_bolus_min is not None and \
                now - st.last_auto_bolus_min < L.AUTO_BOLUS_MIN_INTERVAL_MIN:
            log.add(Reason.AUTO_BOLUS_TOO_SOON, f"previous at {st.last_auto_bolus_min:g}")
        else:
            amount = log.cap(amount, s.max_bolus_u, Reason.CAP_MAX_BOLUS, "U")
            if needs_glucose:
                need = L.need_u(cgm.latest_valid_mg_dl, s.target_mg_dl, s.isf_at(now), iob)
                if b.kind is BolusKind.AUTOMATIC:
                    amount = log.cap(amount, L.AUTO_BOLUS_FRACTION * max(0.0, need), Reason.CAP_AUTO_BOLUS_FRACTION, "U")
                else:
                    amount = log.cap(amount, L.CORRECTION_BOLUS_FRACTION * max(0.0, need), Reason.CAP_CORRECTION_NEED,
                                     "U")
            if pump.reservoir_u is not None:
                amount = log.cap(amount, max(0.0, pump.reservoir_u), Reason.CAP_RESERVOIR, "U")
            amount = log.cap(amount, max(0.0, s.max_iob_u - iob), Reason.CAP_MAX_IOB, "U")
            amount = log.cap(amount, max(0.0, s.max_daily_u - total24), Reason.CAP_MAX_DAILY, "U")
            bolus_u = log.cap(amount, L.round_down(amount, s.bolus_increment_u), Reason.ROUNDED_DOWN, "U")
            auto_bolus = bolus_u > 0.0 and b.kind is BolusKind.AUTOMATIC

    # ---- basal
    basal_cmd: InsulinCommand | None = None
    fallback: str | None = None
    proposed = proposal.basal
    if lgs:
        basal_cmd = Suspend(L.TEMP_BASAL_MAX_DURATION_MIN)
        fallback = "suspend: low glucose"
    elif revert:
        log.add(Reason.CGM_LOSS_REVERT, "no valid CGM reading" if last_valid is None
                else f"last valid CGM reading {now - last_valid:g} min ago")
        basal_cmd = Resume()
        fallback = "programmed basal: no valid CGM data for >= 20 min"
    elif proposed is None:
        if no_increase or uncertain:
            active = active_basal_rate_u_per_h(deliveries, now)
            if active is not None and active > sched:
                log.add(Reason.HIGH_TEMP_CANCELLED, f"running {active:g} U/h > scheduled {sched:g} U/h")
                basal_cmd = Resume()
    elif isinstance(proposed, Resume):
        basal_cmd = Resume()
    elif isinstance(proposed, (TempBasal, Suspend)):
        duration = float(proposed.duration_min)
        rate = float(proposed.rate_u_per_h) if isinstance(proposed, TempBasal) else 0.0
        if not math.isfinite(duration) or duration <= 0.0 or math.isnan(rate):
            log.add(Reason.INVALID_PROPOSAL, f"{proposed!r}")
            if isinstance(proposed, Suspend):
                basal_cmd = Suspend(L.TEMP_BASAL_MAX_DURATION_MIN)
                fallback = "suspend for 30 min: invalid suspend duration"
            else:
                basal_cmd = Resume()
                fallback = "programmed basal: invalid basal proposal"
        else:
            duration = log.cap(duration, L.TEMP_BASAL_MAX_DURATION_MIN, Reason.TEMP_BASAL_DURATION, "min")
            if rate < 0.0:
                log.add(Reason.INVALID_PROPOSAL, f"negative rate {rate:g} U/h -> 0")
                rate = 0.0
            if isinstance(proposed, Suspend):
                basal_cmd = Suspend(duration)
            elif uncertain:
                basal_cmd = Suspend(duration) if rate < sched else Resume()
                fallback = "suspend/programmed basal only: delivery uncertain"
            else:
                basal_cmd = TempBasal(_cap_rate(log, rate, duration, sched, s, no_increase, iob, total24, bolus_u),
                                      duration)
    if uncertain and bolus_u == 0.0 and proposal.bolus is not None and fallback is None:
        fallback = "no new insulin until the uncertain delivery is reconciled"

    cmds: list[InsulinCommand] = [] if basal_cmd is None else [basal_cmd]
    if bolus_u > 0.0:
        cmds.append(Bolus(bolus_u, proposal.bolus.kind))  # type: ignore[union-attr]
    if not pump.communication_ok:
        cmds = []
        fallback = "no command: pump unreachable (a running temp basal ends within 30 min)"
    elif pump.occluded or pump.reservoir_empty:
        cmds = [c for c in cmds if isinstance(c, Suspend)]
        fallback = "no insulin: " + ("occlusion" if pump.occluded else "reservoir empty")
    return _finish(log, cmds, st, now, lgs, last_valid, now if auto_bolus else st.last_auto_bolus_min, fallback)


def _cap_rate(log: _Log, rate: float, duration: float, sched: float, s, no_increase: bool, iob: float,
              total24: float, bolus_u: float) -> float:
    rate = log.cap(rate, s.max_basal_u_per_h, Reason.CAP_MAX_BASAL, "U/h")
    rate = log.cap(rate, L.MAX_BASAL_X_CURRENT_SCHEDULED * sched, Reason.CAP_4X_SCHEDULED, "U/h")
    rate = log.cap(rate, L.MAX_BASAL_X_MAX_SCHEDULED * s.basal_u_per_h.max_value, Reason.CAP_3X_MAX_DAILY, "U/h")
    if no_increase and rate > sched:
        rate = sched  # the gating reasons are already listed
    rate = log.cap(rate, sched + max(0.0, s.max_iob_u - iob - bolus_u) * 60.0 / duration, Reason.CAP_MAX_IOB, "U/h")
    rate = log.cap(rate, max(0.0, s.max_daily_u - total24 - bolus_u) * 60.0 / duration, Reason.CAP_MAX_DAILY, "U/h")
    return log.cap(rate, L.round_down(rate, s.basal_increment_u_per_h), Reason.ROUNDED_DOWN, "U/h")


def _cgm_detail(flag: str, cgm: CgmAssessment, now: float) -> str:
    if flag == "CGM_STALE" and cgm.latest_valid_t_min is not None:
        return f"latest valid reading {now - cgm.latest_valid_t_min:g} min old"
    return Reason[flag].value


def _finish(log: _Log, cmds: list[InsulinCommand], st: SupervisorState, now: float, lgs: bool,
            last_valid: float | None, last_auto: float | None, fallback: str | None) -> Verdict:
    approved = tuple(_approve(f"sv:{now:.3f}:{st.counter + i}", now, c) for i, c in enumerate(cmds))
    state = SupervisorState(lgs_active=lgs, last_valid_reading_min=last_valid, last_auto_bolus_min=last_auto,
                            counter=st.counter + len(approved), last_decision_min=now)
    return Verdict(approved, tuple(log.items), tuple(log.alarms), state, fallback)


def cancel_bolus(bolus_command_id: str, context: SupervisorContext) -> Verdict:
    """Approve cancelling a bolus in progress. Always approved (it removes insulin) unless the pump is unreachable;
    until the pump confirms the cancel, the bolus record stays uncertain and counts in full in the IOB."""
    log = _Log(context.snapshot.now_min)
    cmds: list[InsulinCommand] = [CancelBolus(bolus_command_id)]
    fallback = None
    if not context.pump.communication_ok:
        log.add(Reason.PUMP_COMM_LOSS, "cancel cannot be sent")
        cmds, fallback = [], "cancel not sent: pump unreachable"
    st = context.state
    return _finish(log, cmds, st, context.snapshot.now_min, st.lgs_active, st.last_valid_reading_min,
                   st.last_auto_bolus_min, fallback)

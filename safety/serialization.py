"""JSON encoding of the vocabulary, for the journal and for replaying a decision (``twinloop decide SNAPSHOT.json``).

``to_jsonable(obj)`` returns plain JSON data (dicts, lists, str, int, float, bool, None); ``from_jsonable(kind, data)``
rebuilds the object; the round trip is exact (``from_jsonable(kind_of(x), to_jsonable(x)) == x``). Every object is a
JSON object with a ``"type"`` member, which is its kind; ``from_jsonable("auto", data)`` reads the kind from it.

Conventions: floats are JSON numbers (``repr`` precision, exact); non-finite floats are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` (a NaN glucose is a legitimate reading); enums are their ``value`` (strings);
:class:`ReadingStatus` is its integer bit set; tuples are arrays; a schedule is ``[[start_min_of_day, value], ...]``.

Kinds and members (units in the names, as in the dataclasses)::

    reading           t_min, glucose_mg_dl, source, status (int), trend_mg_dl_per_min|null, sequence|null
    meal              t_min, carbs_g, announced_at_min, absorption_min, entry_id
    temp_basal        rate_u_per_h, duration_min
    bolus             bolus_u, kind ("automatic" | "meal" | "correction" | "user")
    suspend           duration_min
    resume            (no members)
    cancel_bolus      bolus_command_id
    proposal          now_min, basal (temp_basal|suspend|resume|null), bolus (bolus|null),
                      predicted_glucose_mg_dl [..], estimated_state {name: float}, reason, controller, error|null
    approved_command  command_id, issued_at_min, command (any command kind)
    delivery          command_id, kind ("basal"|"bolus"), start_min, end_min, amount_u,
                      status ("commanded"|"confirmed"|"uncertain"|"failed"), rate_u_per_h|null
    settings          basal_u_per_h, isf_mg_dl_per_u, carb_ratio_g_per_u (schedules), target_mg_dl,
                      suspend_threshold_mg_dl, max_basal_u_per_h, max_bolus_u, max_iob_u, max_daily_u,
                      insulin_curve {peak_min, duration_min}, age_group, weight_kg, total_daily_insulin_u,
                      basal_increment_u_per_h, bolus_increment_u, utc_offset_min
    snapshot          now_min, readings [reading], deliveries [delivery], meals [meal], settings
    supervisor_state  lgs_active, last_valid_reading_min, last_auto_bolus_min, counter, last_decision_min
    pump_state        occluded, reservoir_empty, reservoir_u|null, communication_ok, bolus_in_progress

An ``approved_command`` read back from JSON is re-created with the supervisor's approval key: only the journal's
restore path and replays should call ``from_jsonable`` for that kind.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Callable, Mapping

from safety.commands import (ApprovedCommand, Bolus, BolusKind, CancelBolus, DeliveryKind, DeliveryRecord,
                             DeliveryStatus, Proposal, Resume, Suspend, TempBasal, _approve)
from safety.errors import SerializationError
from safety.readings import GlucoseReading, MealAnnouncement, ReadingStatus
from safety.settings import AgeGroup, InsulinCurve, Schedule, ScheduleEntry, TherapySettings
from safety.snapshot import Snapshot

__all__ = ["to_jsonable", "from_jsonable", "kind_of", "KINDS"]


def _f(x: float) -> float | str:
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _fo(x: float | None) -> float | str | None:
    return None if x is None else _f(x)


def _rf(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise SerializationError(f"expected a number, got {x!r}")
    return float(x)


def _rfo(x: Any) -> float | None:
    return None if x is None else _rf(x)


def _schedule(s: Schedule) -> list[list[float | str]]:
    return [[_f(e.start_min_of_day), _f(e.value)] for e in s.entries]


def _rschedule(d: Any) -> Schedule:
    return Schedule(tuple(ScheduleEntry(_rf(a), _rf(b)) for a, b in d))


_SCALAR_SETTINGS = ("target_mg_dl", "suspend_threshold_mg_dl", "max_basal_u_per_h", "max_bolus_u", "max_iob_u",
                    "max_daily_u", "weight_kg", "total_daily_insulin_u", "basal_increment_u_per_h",
                    "bolus_increment_u", "utc_offset_min")


def _enc(obj: Any) -> dict[str, Any]:
    if isinstance(obj, GlucoseReading):
        return {"type": "reading", "t_min": _f(obj.t_min), "glucose_mg_dl": _f(obj.glucose_mg_dl),
                "source": obj.source, "status": int(obj.status), "trend_mg_dl_per_min": _fo(obj.trend_mg_dl_per_min),
                "sequence": obj.sequence}
    if isinstance(obj, MealAnnouncement):
        return {"type": "meal", "t_min": _f(obj.t_min), "carbs_g": _f(obj.carbs_g),
                "announced_at_min": _f(obj.announced_at_min), "absorption_min": _f(obj.absorption_min),
                "entry_id": obj.entry_id}
    if isinstance(obj, TempBasal):
        return {"type": "temp_basal", "rate_u_per_h": _f(obj.rate_u_per_h), "duration_min": _f(obj.duration_min)}
    if isinstance(obj, Bolus):
        return {"type": "bolus", "bolus_u": _f(obj.bolus_u), "kind": obj.kind.value}
    if isinstance(obj, Suspend):
        return {"type": "suspend", "duration_min": _f(obj.duration_min)}
    if isinstance(obj, Resume):
        return {"type": "resume"}
    if isinstance(obj, CancelBolus):
        return {"type": "cancel_bolus", "bolus_command_id": obj.bolus_command_id}
    if isinstance(obj, Proposal):
        return {"type": "proposal", "now_min": _f(obj.now_min),
                "basal": None if obj.basal is None else _enc(obj.basal),
                "bolus": None if obj.bolus is None else _enc(obj.bolus),
                "predicted_glucose_mg_dl": [_f(x) for x in obj.predicted_glucose_mg_dl],
                "estimated_state": {str(k): _f(v) for k, v in obj.estimated_state.items()},
                "reason": obj.reason, "controller": obj.controller, "error": obj.error}
    if isinstance(obj, ApprovedCommand):
        return {"type": "approved_command", "command_id": obj.command_id, "issued_at_min": _f(obj.issued_at_min),
                "command": _enc(obj.command)}
    if isinstance(obj, DeliveryRecord):
        return {"type": "delivery", "command_id": obj.command_id, "kind": obj.kind.value,
                "start_min": _f(obj.start_min), "end_min": _f(obj.end_min), "amount_u": _f(obj.amount_u),
                "status": obj.status.value, "rate_u_per_h": _fo(obj.rate_u_per_h)}
    if isinstance(obj, TherapySettings):
        d: dict[str, Any] = {"type": "settings", "basal_u_per_h": _schedule(obj.basal_u_per_h),
                             "isf_mg_dl_per_u": _schedule(obj.isf_mg_dl_per_u),
                             "carb_ratio_g_per_u": _schedule(obj.carb_ratio_g_per_u)}
        d.update({k: _f(getattr(obj, k)) for k in _SCALAR_SETTINGS})
        d["insulin_curve"] = {"peak_min": _f(obj.insulin_curve.peak_min),
                              "duration_min": _f(obj.insulin_curve.duration_min)}
        d["age_group"] = obj.age_group.value
        return d
    if isinstance(obj, Snapshot):
        return {"type": "snapshot", "now_min": _f(obj.now_min), "readings": [_enc(r) for r in obj.readings],
                "deliveries": [_enc(r) for r in obj.deliveries], "meals": [_enc(m) for m in obj.meals],
                "settings": _enc(obj.settings)}
    name = type(obj).__name__
    if name in ("SupervisorState", "PumpState"):
        d = {"type": "supervisor_state" if name == "SupervisorState" else "pump_state"}
        d.update({f.name: getattr(obj, f.name) for f in fields(obj)})
        return d
    raise SerializationError(f"no JSON encoding for {type(obj).__name__}")


def to_jsonable(obj: Any) -> dict[str, Any]:
    """Plain-JSON form of a vocabulary object (see the module docstring for the layout)."""
    return _enc(obj)


def kind_of(obj: Any) -> str:
    """The kind name ``to_jsonable(obj)`` would use."""
    return _enc(obj)["type"]


def _command(d: Mapping[str, Any]) -> Any:
    return from_jsonable(d["type"], d)


def _dec_settings(d: Mapping[str, Any]) -> TherapySettings:
    curve = d.get("insulin_curve") or {}
    kwargs = {k: _rf(d[k]) for k in _SCALAR_SETTINGS if k in d}
    return TherapySettings(basal_u_per_h=_rschedule(d["basal_u_per_h"]), isf_mg_dl_per_u=_rschedule(d["isf_mg_dl_per_u"]),
                           carb_ratio_g_per_u=_rschedule(d["carb_ratio_g_per_u"]),
                           insulin_curve=InsulinCurve(_rf(curve.get("peak_min", 75.0)),
                                                      _rf(curve.get("duration_min", 360.0))),
                           age_group=AgeGroup(d.get("age_group", "adult")), **kwargs)


def _dec_state(d: Mapping[str, Any]) -> Any:
    from safety.supervisor import SupervisorState
    return SupervisorState.from_dict(d)


def _dec_pump(d: Mapping[str, Any]) -> Any:
    from safety.supervisor import PumpState
    return PumpState(occluded=bool(d.get("occluded", False)), reservoir_empty=bool(d.get("reservoir_empty", False)),
                     reservoir_u=_rfo(d.get("reservoir_u")), communication_ok=bool(d.get("communication_ok", True)),
                     bolus_in_progress=bool(d.get("bolus_in_progress", False)))


_DECODERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "reading": lambda d: GlucoseReading(_rf(d["t_min"]), _rf(d["glucose_mg_dl"]), d.get("source", "cgm"),
                                        ReadingStatus(int(d.get("status", 0))), _rfo(d.get("trend_mg_dl_per_min")),
                                        d.get("sequence")),
    "meal": lambda d: MealAnnouncement(_rf(d["t_min"]), _rf(d["carbs_g"]), _rf(d["announced_at_min"]),
                                       _rf(d.get("absorption_min", 180.0)), d.get("entry_id", "")),
    "temp_basal": lambda d: TempBasal(_rf(d["rate_u_per_h"]), _rf(d.get("duration_min", 30.0))),
    "bolus": lambda d: Bolus(_rf(d["bolus_u"]), BolusKind(d.get("kind", "automatic"))),
    "suspend": lambda d: Suspend(_rf(d.get("duration_min", 30.0))),
    "resume": lambda d: Resume(),
    "cancel_bolus": lambda d: CancelBolus(str(d["bolus_command_id"])),
    "proposal": lambda d: Proposal(_rf(d["now_min"]), None if d.get("basal") is None else _command(d["basal"]),
                                   None if d.get("bolus") is None else _command(d["bolus"]),
                                   tuple(_rf(x) for x in d.get("predicted_glucose_mg_dl", ())),
                                   {str(k): _rf(v) for k, v in (d.get("estimated_state") or {}).items()},
                                   d.get("reason", ""), d.get("controller", ""), d.get("error")),
    "approved_command": lambda d: _approve(str(d["command_id"]), _rf(d["issued_at_min"]), _command(d["command"])),
    "delivery": lambda d: DeliveryRecord(str(d["command_id"]), DeliveryKind(d["kind"]), _rf(d["start_min"]),
                                         _rf(d["end_min"]), _rf(d["amount_u"]), DeliveryStatus(d["status"]),
                                         _rfo(d.get("rate_u_per_h"))),
    "settings": _dec_settings,
    "snapshot": lambda d: Snapshot(_rf(d["now_min"]), tuple(from_jsonable("reading", r) for r in d["readings"]),
                                   tuple(from_jsonable("delivery", r) for r in d["deliveries"]),
                                   tuple(from_jsonable("meal", m) for m in d["meals"]),
                                   from_jsonable("settings", d["settings"])),
    "supervisor_state": _dec_state,
    "pump_state": _dec_pump,
}
KINDS = tuple(_DECODERS)


def from_jsonable(kind: str, data: Mapping[str, Any]) -> Any:
    """Rebuild an object of ``kind`` (or of ``data["type"]`` when kind is ``"auto"``) from its JSON form.

    Raises :class:`SerializationError` naming the kind and the problem on malformed input.
    """
    if not isinstance(data, Mapping):
        raise SerializationError(f"{kind}: expected a JSON object, got {type(data).__name__}")
    if kind == "auto":
        kind = str(data.get("type"))
    declared = data.get("type")
    if declared is not None and declared != kind and not (kind == "command" and declared in _COMMAND_KINDS):
        raise SerializationError(f"expected kind {kind!r}, data says {declared!r}")
    if kind == "command":
        kind = str(declared)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise SerializationError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    try:
        return decoder(data)
    except SerializationError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"{kind}: malformed data ({type(exc).__name__}: {exc})") from exc


_COMMAND_KINDS = ("temp_basal", "bolus", "suspend", "resume", "cancel_bolus")

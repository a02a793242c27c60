"""The runtime's adapter to the safety kernel: supervisor, insulin on board, journal and JSON serialization.

The loop talks to a :class:`SafetyGate` (``supervise``, ``iob_u``) and a journal (``append``, ``restore``) only, so
tests can hand it small doubles; :func:`safety_gate` and :func:`open_journal` build the real ones from
:mod:`safety` (imported here, at start-up, never per cycle).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from safety.commands import ApprovedCommand, DeliveryRecord, Proposal
from safety.snapshot import Snapshot


@dataclass(frozen=True)
class GateVerdict:
    """What the supervisor decided, normalised for the loop (``raw`` keeps the supervisor's own verdict)."""

    commands: tuple[ApprovedCommand, ...]
    interventions: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()
    fallback: str | None = None
    raw: Any = None


@dataclass(frozen=True)
class PumpView:
    """What the runtime knows about the pump when it asks the supervisor."""

    status: Any | None  # drivers.interfaces.PumpStatus, None when the pump did not answer
    uncertain: tuple[DeliveryRecord, ...] = ()
    reachable: bool = True


class SafetyGate(Protocol):
    def supervise(self, proposal: Proposal, snapshot: Snapshot, pump: PumpView) -> GateVerdict: ...

    def iob_u(self, deliveries: tuple[DeliveryRecord, ...], snapshot_settings: Any, now_min: float) -> float: ...

    def state_jsonable(self) -> Any: ...

    def restore_state(self, state: Any) -> None: ...


class Journal(Protocol):
    def append(self, kind: str, t_min: float, payload: Any) -> int: ...


# ----------------------------------------------------------------------------------------------- serialization

def to_jsonable(obj: Any) -> Any:
    """JSON-ready form: the vocabulary through :func:`safety.serialization.to_jsonable` (so the journal can restore
    it), containers recursively, anything else as plain data."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity"))
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict) or (hasattr(obj, "items") and not dataclasses.is_dataclass(obj)):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if _SAFETY_TO is not None:
            try:
                return _SAFETY_TO(obj)
            except Exception:
                pass
        to_dict = getattr(obj, "to_dict", None)
        if callable(to_dict):
            return to_jsonable(to_dict())
        out: dict[str, Any] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            if not f.name.startswith("_"):
                out[f.name] = to_jsonable(getattr(obj, f.name))
        return out
    return repr(obj)


try:
    from safety.serialization import to_jsonable as _SAFETY_TO
except ImportError:  # pragma: no cover - the safety kernel ships it
    _SAFETY_TO = None


# ----------------------------------------------------------------------------------------------- the real gate

def _build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate a dataclass with the subset of ``values`` it has fields for."""
    if dataclasses.is_dataclass(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
    return cls(**values)


class SupervisorGate:
    """:class:`SafetyGate` over :func:`safety.supervisor.supervise` and :func:`safety.iob.insulin_on_board_u`."""

    def __init__(self) -> None:
        from safety import iob, supervisor
        self._sup = supervisor
        self._iob = iob.insulin_on_board_u
        self.state = supervisor.SupervisorState()

    def supervise(self, proposal: Proposal, snapshot: Snapshot, pump: PumpView) -> GateVerdict:
        sup = self._sup
        status = pump.status
        values: dict[str, Any] = {
            "communication_ok": bool(pump.reachable),
            "occluded": bool(status is not None and status.occluded),
            "reservoir_empty": bool(status is not None and status.reservoir_empty),
            "reservoir_u": None if status is None else status.reservoir_u,
            "bolus_in_progress": bool(getattr(pump, "bolus_in_progress", False)),
        }
        pump_state = _build(sup.PumpState, values)
        ctx = sup.SupervisorContext(snapshot, pump=pump_state, state=self.state)
        verdict = sup.supervise(proposal, ctx)
        self.state = verdict.state
        return GateVerdict(
            commands=tuple(verdict.commands),
            interventions=tuple(_describe(x) for x in verdict.interventions),
            alarms=tuple(_describe(x) for x in verdict.alarms),
            fallback=verdict.fallback,
            raw=verdict,
        )

    def iob_u(self, deliveries, settings, now_min: float) -> float:
        return float(self._iob(deliveries, settings, now_min))

    def state_jsonable(self) -> Any:
        return self.state.to_dict()

    def restore_state(self, state: Any) -> None:
        if state is None:
            return
        if isinstance(state, self._sup.SupervisorState):
            self.state = state
            return
        try:
            from safety.serialization import from_jsonable
            restored = from_jsonable(state)
            if isinstance(restored, self._sup.SupervisorState):
                self.state = restored
        except (ImportError, TypeError, ValueError, KeyError):
            pass


def _describe(item: Any) -> str:
    reason = getattr(item, "reason", None)
    text = getattr(item, "message", None) or getattr(item, "detail", None) or ""
    name = getattr(reason, "name", None) or str(reason or "")
    return f"{name}: {text}" if text else str(name or item)


def safety_gate() -> SupervisorGate:
    """The production gate. Raises ImportError when the safety kernel is incomplete (the runtime refuses to start)."""
    return SupervisorGate()


def open_journal(path: Any) -> Any:
    """Open (or create) the production journal at ``path``."""
    from pathlib import Path

    from safety.journal import Journal as SqliteJournal
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SqliteJournal(path)

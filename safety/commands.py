"""Insulin commands, controller proposals, supervisor-approved commands and delivery records.

Only the supervisor creates an :class:`ApprovedCommand` (it holds the approval key); drivers and pump adapters accept
nothing else. A pump that is sent a command but does not confirm it leaves a delivery record in the ``UNCERTAIN``
state; no new insulin is approved until that record is reconciled with the pump's delivery history.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Union

TEMP_BASAL_MAX_DURATION_MIN = 30.0
"""A temporary basal never lasts longer than this, so a dead controller falls back to the programmed basal."""


@dataclass(frozen=True, slots=True)
class TempBasal:
    """Temporary basal rate (absolute U/h) for ``duration_min`` minutes; then the pump returns to its schedule."""

    rate_u_per_h: float
    duration_min: float = TEMP_BASAL_MAX_DURATION_MIN


class BolusKind(enum.Enum):
    """Why a bolus is given. Automatic boluses are limited to a fraction of the need by the supervisor."""

    AUTOMATIC = "automatic"
    MEAL = "meal"
    CORRECTION = "correction"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Bolus:
    """Immediate bolus of ``bolus_u`` units."""

    bolus_u: float
    kind: BolusKind = BolusKind.AUTOMATIC


@dataclass(frozen=True, slots=True)
class Suspend:
    """Zero delivery for ``duration_min`` minutes (a zero temporary basal on pumps that implement it that way)."""

    duration_min: float = TEMP_BASAL_MAX_DURATION_MIN


@dataclass(frozen=True, slots=True)
class Resume:
    """Cancel any temporary basal or suspension: the pump returns to its programmed basal."""


@dataclass(frozen=True, slots=True)
class CancelBolus:
    """Stop a bolus in progress (identified by the command id that started it)."""

    bolus_command_id: str


InsulinCommand = Union[TempBasal, Bolus, Suspend, Resume, CancelBolus]
BasalCommand = Union[TempBasal, Suspend, Resume]


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a controller would like to do at ``now_min``; the supervisor decides what actually happens.

    Attributes:
        now_min: decision time (absolute minutes).
        basal: basal action for the next cycle (``None`` = leave the pump as it is).
        bolus: bolus to give now, or ``None``.
        predicted_glucose_mg_dl: the controller's predicted glucose at 5-minute steps from ``now_min``.
        estimated_state: the controller's state estimate (named, units in names).
        reason: human-readable explanation, for the journal and a clinician.
        controller: name of the algorithm that made it.
        error: a named error when the controller could not decide (then ``basal`` is its stated safe action).
    """

    now_min: float
    basal: BasalCommand | None
    bolus: Bolus | None = None
    predicted_glucose_mg_dl: tuple[float, ...] = ()
    estimated_state: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    controller: str = ""
    error: str | None = None


class UnapprovedCommandError(TypeError):
    """Raised when something other than the supervisor tries to create an approved command."""


_APPROVAL_KEY = object()  # held by safety.supervisor; an ApprovedCommand cannot be built without it


@dataclass(frozen=True, slots=True)
class ApprovedCommand:
    """A command that passed the supervisor. Created only by the supervisor; pumps accept nothing else.

    Attributes:
        command_id: unique, stable identifier (used for idempotent delivery: a retransmission is never delivered twice).
        issued_at_min: approval time (absolute minutes).
        command: the insulin command to execute.
    """

    command_id: str
    issued_at_min: float
    command: InsulinCommand
    _key: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._key is not _APPROVAL_KEY:
            raise UnapprovedCommandError("ApprovedCommand can only be created by safety.supervisor")


def _approve(command_id: str, issued_at_min: float, command: InsulinCommand) -> ApprovedCommand:
    """Create an approved command. For safety.supervisor (and the journal restoring approved commands) only."""
    return ApprovedCommand(command_id, issued_at_min, command, _APPROVAL_KEY)


class DeliveryStatus(enum.Enum):
    """Life of a delivery: commanded (sent), confirmed by the pump, uncertain (no confirmation), failed (refused)."""

    COMMANDED = "commanded"
    CONFIRMED = "confirmed"
    UNCERTAIN = "uncertain"
    FAILED = "failed"


class DeliveryKind(enum.Enum):
    BASAL = "basal"   # scheduled or temporary basal over [start, end)
    BOLUS = "bolus"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """Insulin that was (or may have been) delivered.

    Attributes:
        command_id: the approved command this delivery belongs to ("" for the pump's own scheduled basal).
        kind: basal or bolus.
        start_min: start of delivery (absolute minutes).
        end_min: end of delivery (absolute minutes); equal to ``start_min`` for a bolus treated as instantaneous.
        amount_u: insulin in units over [start_min, end_min].
        status: commanded, confirmed, uncertain or failed.
        rate_u_per_h: the rate for a basal record (amount_u / duration), for display.
    """

    command_id: str
    kind: DeliveryKind
    start_min: float
    end_min: float
    amount_u: float
    status: DeliveryStatus
    rate_u_per_h: float | None = None

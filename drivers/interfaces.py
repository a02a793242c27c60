"""The small interfaces every device transport implements (BLE CGMS/IDS and the serial bench protocol).

The runtime and the HIL bench depend on these protocols only, never on a concrete transport, so a board with a
Bluetooth CGM and a bench with a serial pump run the same loop.

Contract for every implementation:

- every I/O call has an explicit timeout and raises :class:`DeviceTimeoutError` (or a transport error subclassing
  :class:`DeviceError`) instead of hanging;
- a pump link accepts only :class:`safety.commands.ApprovedCommand` (anything else is a ``TypeError``);
- a command the pump does not confirm in time comes back as a :class:`DeliveryRecord` with status ``UNCERTAIN``;
  while such a record is unreconciled, :meth:`PumpLink.execute` raises :class:`DeliveryUncertainError` and sends
  nothing: the caller must call :meth:`PumpLink.reconcile` first (which reads the pump's own delivery history).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol, runtime_checkable

from safety.commands import ApprovedCommand, DeliveryRecord
from safety.readings import GlucoseReading

__all__ = [
    "CgmSource",
    "PumpLink",
    "PumpStatus",
    "DeviceError",
    "DeviceTimeoutError",
    "DeliveryUncertainError",
]


class DeviceError(RuntimeError):
    """A device link failed (not connected, refused, transport error). Base of the driver errors."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """A device I/O call did not complete within its timeout."""


class DeliveryUncertainError(DeviceError):
    """Raised by :meth:`PumpLink.execute` while an uncertain delivery is pending: reconcile before sending anything.

    Attributes:
        pending: the delivery records still ``UNCERTAIN``.
    """

    def __init__(self, message: str, pending: tuple[DeliveryRecord, ...] = ()) -> None:
        super().__init__(message)
        self.pending = pending


@dataclass(frozen=True, slots=True)
class PumpStatus:
    """What the pump says about itself.

    Attributes:
        occluded: an occlusion annunciation is active.
        reservoir_u: insulin remaining in the reservoir (U), ``None`` if the pump does not report it.
        reservoir_empty: the reservoir is empty (or the pump says so).
        suspended: delivery is stopped or paused (therapy control state not "run").
        battery_low: battery low or empty annunciation is active.
        active_basal_u_per_h: the basal rate being delivered now (U/h, temporary if one runs), ``None`` if unknown.
    """

    occluded: bool
    reservoir_u: float | None
    reservoir_empty: bool
    suspended: bool
    battery_low: bool
    active_basal_u_per_h: float | None


@runtime_checkable
class CgmSource(Protocol):
    """A continuous glucose monitor: connect, then iterate readings (back-filled after a gap), then close."""

    async def connect(self) -> None:
        """Connect (with the implementation's timeout) and prepare the session. Raises :class:`DeviceError`."""
        ...

    def readings(self) -> AsyncIterator[GlucoseReading]:
        """Yield readings in time order, without duplicates; survives reconnects and back-fills gaps.

        Implement it as an async generator (``async def readings(self): ... yield reading``); declared here with
        plain ``def`` because that is the correct static type of an async generator function.
        """
        ...

    async def close(self) -> None:
        """Disconnect and release the transport. Idempotent."""
        ...


@runtime_checkable
class PumpLink(Protocol):
    """An insulin pump that executes supervisor-approved commands and reports deliveries."""

    async def connect(self) -> None:
        """Connect (with the implementation's timeout). Raises :class:`DeviceError`."""
        ...

    async def execute(self, command: ApprovedCommand) -> DeliveryRecord:
        """Send one approved command; return its record: ``CONFIRMED``, ``UNCERTAIN`` or ``FAILED``.

        Raises :class:`DeliveryUncertainError` (without sending) while an uncertain delivery is unreconciled, and
        ``TypeError`` for anything that is not an :class:`ApprovedCommand`. Executing the same ``command_id`` twice
        never delivers twice.
        """
        ...

    async def reconcile(self) -> tuple[DeliveryRecord, ...]:
        """Resolve pending ``UNCERTAIN`` records from the pump's history; return the resolved records
        (``CONFIRMED`` if the pump delivered, ``FAILED`` if it did not). Empty if nothing was pending."""
        ...

    async def status(self) -> PumpStatus:
        """Read the pump's current status."""
        ...

    async def close(self) -> None:
        """Disconnect and release the transport. Idempotent."""
        ...

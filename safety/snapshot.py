"""The snapshot: everything a dosing decision may see, including the clock.

The runtime, the trial runner and the HIL bench all build one of these; ``controller.decide`` and the supervisor read
only it. Nothing in here can carry a virtual patient's parameters or true state.
"""

from __future__ import annotations

from dataclasses import dataclass

from safety.commands import DeliveryRecord
from safety.readings import GlucoseReading, MealAnnouncement
from safety.settings import TherapySettings


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Inputs of one decision.

    Attributes:
        now_min: decision time (absolute minutes). The decision must not look at any other clock.
        readings: recent glucose readings, oldest first (typically the last 6-24 h).
        deliveries: delivery records (commanded, confirmed, uncertain), oldest first (at least the insulin duration).
        meals: meal announcements made at or before ``now_min``.
        settings: therapy settings in force.
    """

    now_min: float
    readings: tuple[GlucoseReading, ...]
    deliveries: tuple[DeliveryRecord, ...]
    meals: tuple[MealAnnouncement, ...]
    settings: TherapySettings

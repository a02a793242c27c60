"""Glucose readings and meal announcements: what sensors and people tell the system.

Times are absolute minutes (``t_min``) on the system's timeline: in trials minute 0 is midnight of day one; on a
board it is minutes since the Unix epoch. Time of day is derived with :func:`safety.units.minute_of_day`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class ReadingStatus(enum.IntFlag):
    """Sensor status flags carried with a reading (mapped from CGMS annunciations or serial status bits)."""

    OK = 0
    SESSION_STOPPED = enum.auto()
    SENSOR_MALFUNCTION = enum.auto()
    DEVICE_FAULT = enum.auto()
    CALIBRATION_REQUIRED = enum.auto()
    CALIBRATION_RECOMMENDED = enum.auto()
    TEMPERATURE_OUT_OF_RANGE = enum.auto()
    BELOW_DEVICE_RANGE = enum.auto()
    ABOVE_DEVICE_RANGE = enum.auto()
    WARMUP = enum.auto()
    NOISY = enum.auto()
    BACKFILLED = enum.auto()
    """Reading recovered after a gap (e.g. RACP back-fill); valid, but arrived late."""


UNRELIABLE_STATUS = (
    ReadingStatus.SESSION_STOPPED
    | ReadingStatus.SENSOR_MALFUNCTION
    | ReadingStatus.DEVICE_FAULT
    | ReadingStatus.CALIBRATION_REQUIRED
    | ReadingStatus.TEMPERATURE_OUT_OF_RANGE
    | ReadingStatus.WARMUP
)
"""Any of these flags makes a reading unusable for raising insulin."""


@dataclass(frozen=True, slots=True)
class GlucoseReading:
    """One CGM (or fingerstick) glucose value.

    Attributes:
        t_min: measurement time, absolute minutes.
        glucose_mg_dl: glucose in mg/dL; NaN for a special value (SFLOAT NaN/NRes/INF) kept for the record.
        source: device identifier, e.g. ``"cgm:ble:AA:BB"`` or ``"sim:cgm"``.
        status: sensor status flags.
        trend_mg_dl_per_min: the sensor's own rate of change if it reports one.
        sequence: device sequence number or session time offset (minutes) used to de-duplicate and back-fill.
    """

    t_min: float
    glucose_mg_dl: float
    source: str = "cgm"
    status: ReadingStatus = ReadingStatus.OK
    trend_mg_dl_per_min: float | None = None
    sequence: int | None = None

    @property
    def is_numeric(self) -> bool:
        """True when the value is a finite number (says nothing about plausibility)."""
        return math.isfinite(self.glucose_mg_dl)


@dataclass(frozen=True, slots=True)
class MealAnnouncement:
    """A meal as announced by the person (not necessarily what was eaten).

    Attributes:
        t_min: when the meal starts (absolute minutes).
        carbs_g: announced carbohydrate in grams.
        announced_at_min: when the announcement was made (absolute minutes); the controller must not see a meal
            before this time.
        absorption_min: expected absorption time in minutes (default 180 = medium).
        entry_id: identifier of the entry, so a repeated entry can be recognised as a duplicate.
    """

    t_min: float
    carbs_g: float
    announced_at_min: float
    absorption_min: float = 180.0
    entry_id: str = ""

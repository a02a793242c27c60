"""A patient's recorded days, as imported from Nightscout or the plain CSV layout, and the data-quality report.

Times are minutes ``t_min`` from local midnight of the first day (local wall-clock time, so time-of-day schedules
line up with the patient's day). Glucose is in mg/dL whatever the source unit. Nothing is silently dropped: every
reading or treatment that is not used appears in :class:`DataIssue` records with the reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from safety.settings import Schedule, ScheduleEntry


class IssueKind(enum.Enum):
    GAP = "gap"                       # CGM gap longer than the allowed interval
    DUPLICATE = "duplicate"           # same timestamp twice (identical or conflicting values)
    IMPOSSIBLE_VALUE = "impossible_value"
    UNPARSEABLE = "unparseable"       # a row or entry that could not be read
    UNKNOWN_EVENT = "unknown_event"   # an event type twinloop does not use (kept for the record)
    TIME_JUMP = "time_jump"           # DST change or out-of-order timestamps
    CENSORED = "censored"             # CGM at its reporting limit (LOW/HIGH): a bound, not a measurement


@dataclass(frozen=True, slots=True)
class DataIssue:
    """One problem found in the data: what, where (t_min or row), and the raw value."""

    kind: IssueKind
    detail: str
    t_min: float | None = None
    source_row: int | None = None


CGM_LOW_MG_DL = 39.0
"""Readings at or below this are the CGM's "LOW" (Dexcom and Nightscout store LOW as 39): glucose is at most this."""
CGM_HIGH_MG_DL = 401.0
"""Readings at or above this are the CGM's "HIGH" (stored as 401): glucose is at least this."""


def censored_masks(cgm_mg_dl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the readings at the CGM's LOW and HIGH limits."""
    v = np.asarray(cgm_mg_dl, dtype=float)
    return v <= CGM_LOW_MG_DL, v >= CGM_HIGH_MG_DL


def censored_runs(t_min: np.ndarray, cgm_mg_dl: np.ndarray) -> list[DataIssue]:
    """One :class:`DataIssue` per run of consecutive readings at a CGM limit (start, length, which limit)."""
    low, high = censored_masks(cgm_mg_dl)
    issues: list[DataIssue] = []
    for mask, name, bound in ((low, "LOW", f"<= {CGM_LOW_MG_DL:g}"), (high, "HIGH", f">= {CGM_HIGH_MG_DL:g}")):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(idx) > 1) + 1
        for run in np.split(idx, breaks):
            t0, t1 = float(t_min[run[0]]), float(t_min[run[-1]])
            issues.append(DataIssue(IssueKind.CENSORED, f"CGM at its {name} limit ({bound} mg/dL) for {len(run)} "
                                    f"reading(s) from minute {t0:.0f} to {t1:.0f}: used as a bound, not a value", t0))
    return issues


@dataclass(frozen=True, slots=True)
class BolusEvent:
    t_min: float
    bolus_u: float


@dataclass(frozen=True, slots=True)
class TempBasalEvent:
    t_min: float
    rate_u_per_h: float
    duration_min: float


@dataclass(frozen=True, slots=True)
class CarbEvent:
    t_min: float
    carbs_g: float


@dataclass(frozen=True, slots=True)
class Profile:
    """Therapy profile as programmed: schedules as (minute_of_day, value) pairs, glucose values in mg/dL."""

    basal_u_per_h: tuple[tuple[float, float], ...]
    isf_mg_dl_per_u: tuple[tuple[float, float], ...]
    carb_ratio_g_per_u: tuple[tuple[float, float], ...]
    target_mg_dl: float = 110.0
    timezone: str = "UTC"
    insulin_duration_min: float = 360.0
    weight_kg: float | None = None
    """Body weight (kg) when the profile states it (twinloop's ``weight_kg``; Nightscout has no such field)."""

    @staticmethod
    def schedule(pairs: tuple[tuple[float, float], ...]) -> Schedule:
        """The safety kernel's :class:`~safety.settings.Schedule` for (minute_of_day, value) pairs."""
        return Schedule(tuple(ScheduleEntry(float(t), float(v)) for t, v in pairs))

    def basal_at(self, t_min: float) -> float:
        return self.schedule(self.basal_u_per_h).at(t_min)

    def isf_at(self, t_min: float) -> float:
        return self.schedule(self.isf_mg_dl_per_u).at(t_min)

    def carb_ratio_at(self, t_min: float) -> float:
        return self.schedule(self.carb_ratio_g_per_u).at(t_min)


@dataclass(frozen=True)
class PatientData:
    """Recorded days of one patient.

    Attributes:
        cgm_t_min, cgm_mg_dl: CGM readings (sorted, de-duplicated, plausible values only).
        boluses, temp_basals, carbs: treatments, sorted by time.
        profile: the programmed therapy.
        start_utc_iso: the UTC instant of t_min = 0 (local midnight of the first day).
        issues: everything that was odd about the data, each with its reason.
        weight_kg, total_daily_insulin_u: if known (else estimated from the data).
    """

    cgm_t_min: np.ndarray
    cgm_mg_dl: np.ndarray
    boluses: tuple[BolusEvent, ...]
    temp_basals: tuple[TempBasalEvent, ...]
    carbs: tuple[CarbEvent, ...]
    profile: Profile
    start_utc_iso: str = ""
    issues: tuple[DataIssue, ...] = field(default=())
    weight_kg: float | None = None

    @property
    def days(self) -> float:
        if self.cgm_t_min.size == 0:
            return 0.0
        return float(np.ceil((self.cgm_t_min[-1] + 1.0) / 1440.0))

    def insulin_u_per_min(self, n_min: int) -> np.ndarray:
        """Per-minute delivered insulin over [0, n_min): scheduled basal overridden by temp basals, plus boluses."""
        rate_u_per_h = self.profile.schedule(self.profile.basal_u_per_h).at_array(np.arange(n_min, dtype=float))
        for tb in self.temp_basals:
            a = max(int(round(tb.t_min)), 0)
            b = min(int(round(tb.t_min + tb.duration_min)), n_min)
            if b > a:
                rate_u_per_h[a:b] = tb.rate_u_per_h
        u = rate_u_per_h / 60.0
        for bolus in self.boluses:
            i = int(np.floor(bolus.t_min))
            if 0 <= i < n_min:
                u[i] += bolus.bolus_u
        return u

    def carbs_g_per_min(self, n_min: int, eating_min: float = 15.0) -> np.ndarray:
        """Per-minute carbohydrate intake over [0, n_min), each entry spread over ``eating_min`` minutes."""
        out = np.zeros(n_min)
        k = max(int(eating_min), 1)
        for c in self.carbs:
            i = int(np.floor(c.t_min))
            j = min(i + k, n_min)
            if 0 <= i < n_min:
                out[i:j] += c.carbs_g / k
        return out

    def total_daily_insulin_u(self) -> float:
        """Mean delivered insulin per day over the recorded span."""
        n = int(self.days * 1440)
        return float(self.insulin_u_per_min(n).sum() / max(self.days, 1.0)) if n else 0.0

    def window(self, start_min: float, end_min: float) -> "PatientData":
        """The same data restricted to [start_min, end_min), times kept on the same axis."""
        m = (self.cgm_t_min >= start_min) & (self.cgm_t_min < end_min)
        keep = lambda events: tuple(e for e in events if start_min <= e.t_min < end_min)  # noqa: E731
        return PatientData(self.cgm_t_min[m], self.cgm_mg_dl[m], keep(self.boluses), keep(self.temp_basals),
                           keep(self.carbs), self.profile, self.start_utc_iso, self.issues, self.weight_kg)


def write_csv(data: PatientData, folder: str, name: str = "patient") -> str:
    """Write ``data`` in the plain CSV layout (UTC timestamps) with its profile JSON; returns the CSV path."""
    import csv
    import json
    from datetime import datetime, timedelta
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    start = datetime.fromisoformat(data.start_utc_iso)

    def ts(t_min: float) -> str:
        return (start + timedelta(minutes=float(t_min))).isoformat()

    path = out / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "event", "value", "unit", "duration_min"])
        for t, v in zip(data.cgm_t_min, data.cgm_mg_dl):
            w.writerow([ts(t), "cgm", f"{v:.1f}", "mg/dL", ""])
        for b in data.boluses:
            w.writerow([ts(b.t_min), "bolus", f"{b.bolus_u:.2f}", "U", ""])
        for c in data.carbs:
            w.writerow([ts(c.t_min), "carbs", f"{c.carbs_g:.1f}", "g", ""])
        for tb in data.temp_basals:
            w.writerow([ts(tb.t_min), "temp_basal", f"{tb.rate_u_per_h:.3f}", "U/h", f"{tb.duration_min:g}"])
    p = data.profile
    hhmm = lambda m: f"{int(m) // 60:02d}:{int(m) % 60:02d}"  # noqa: E731
    (out / f"{name}.profile.json").write_text(json.dumps({
        "timezone": p.timezone, "units": "mg/dl", "target": p.target_mg_dl, "dia": p.insulin_duration_min / 60.0,
        "basal": [[hhmm(t), v] for t, v in p.basal_u_per_h], "isf": [[hhmm(t), v] for t, v in p.isf_mg_dl_per_u],
        "carb_ratio": [[hhmm(t), v] for t, v in p.carb_ratio_g_per_u],
        **({"weight_kg": data.weight_kg} if data.weight_kg is not None else {})}, indent=1), encoding="utf-8")
    return str(path)

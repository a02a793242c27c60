"""Import a patient's data: Nightscout exports and twinloop's plain CSV layout (docs/twin-fit.md).

Accepted inputs (``load_patient_data(path)``):

- a Nightscout export folder with ``entries.json``, ``treatments.json`` and ``profile.json`` (as downloaded from
  ``/api/v1/entries.json``, ``/api/v1/treatments.json``, ``/api/v1/profile.json``), or one JSON file holding
  ``{"entries": [...], "treatments": [...], "profile": [...]}``;
- a plain CSV file with columns ``timestamp,event,value,unit,duration_min`` (events ``cgm``, ``bolus``,
  ``temp_basal``, ``carbs``), with its profile in ``<name>.profile.json`` beside it (or ``profile.json`` in the
  same folder).

Timestamps are converted to local wall-clock minutes from local midnight of the first day using the profile's time
zone (IANA name). Glucose in mmol/L is converted to mg/dL. Gaps, duplicates, impossible values and rows that cannot
be read are reported as :class:`~trials.personal.patient_data.DataIssue`, never silently dropped.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from safety.units import mmol_l_to_mg_dl
from trials.personal.patient_data import (
    BolusEvent, CarbEvent, DataIssue, IssueKind, PatientData, Profile, TempBasalEvent, censored_runs,
)

GLUCOSE_PLAUSIBLE_MG_DL = (20.0, 600.0)
BOLUS_PLAUSIBLE_U = (0.0, 50.0)
RATE_PLAUSIBLE_U_PER_H = (0.0, 35.0)
CARBS_PLAUSIBLE_G = (0.0, 300.0)
WEIGHT_PLAUSIBLE_KG = (10.0, 250.0)
CGM_GAP_MIN = 15.0
DUPLICATE_WINDOW_S = 30.0


class PatientDataError(ValueError):
    """The data cannot be imported at all (missing file, no CGM, unreadable profile). Names the cause."""


@dataclass
class _Raw:
    """Events collected before time conversion: (utc datetime, value, source row)."""

    cgm: list[tuple[datetime, float, int]]
    boluses: list[tuple[datetime, float, int]]
    temps: list[tuple[datetime, float, float, int]]
    carbs: list[tuple[datetime, float, int]]
    issues: list[DataIssue]


def load_patient_data(path: str | Path) -> PatientData:
    """Load a Nightscout export or a plain CSV (see module doc). Raises :class:`PatientDataError` if unusable."""
    p = Path(path)
    if not p.exists():
        raise PatientDataError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "entries.json").exists():
            return _load_nightscout_dir(p)
        csvs = sorted(p.glob("*.csv"))
        if csvs:
            return load_csv(csvs[0])
        raise PatientDataError(f"{p}: neither a Nightscout export (entries.json) nor a CSV file inside")
    if p.suffix.lower() == ".json":
        doc = _read_json(p)
        if not isinstance(doc, dict) or "entries" not in doc:
            raise PatientDataError(f"{p}: a Nightscout JSON file must hold 'entries', 'treatments' and 'profile'")
        return nightscout_from_documents(doc.get("entries", []), doc.get("treatments", []), doc.get("profile", []))
    if p.suffix.lower() == ".csv":
        return load_csv(p)
    raise PatientDataError(f"{p}: unknown data format (expected a folder, .json or .csv)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PatientDataError(f"{path}: cannot read JSON ({exc})") from exc


# ----------------------------------------------------------------------------------------------- profile


def _schedule(items: Any, field: str, scale: float = 1.0) -> tuple[tuple[float, float], ...]:
    if not isinstance(items, list) or not items:
        raise PatientDataError(f"profile.{field}: expected a non-empty list of {{time, value}} entries")
    out = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, dict):
                hhmm, value = item.get("time", "00:00"), float(item["value"])
                secs = item.get("timeAsSeconds")
                minute = float(secs) / 60.0 if secs is not None else _hhmm(hhmm)
            else:
                minute, value = _hhmm(item[0]), float(item[1])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PatientDataError(f"profile.{field}[{i}]: unreadable entry {item!r} ({exc})") from exc
        if not math.isfinite(value) or value < 0:
            raise PatientDataError(f"profile.{field}[{i}]: impossible value {value!r}")
        out.append((minute, value * scale))
    out.sort()
    if out[0][0] != 0.0:
        raise PatientDataError(f"profile.{field}: the first entry must start at 00:00, got minute {out[0][0]:g}")
    return tuple(out)


def _hhmm(text: Any) -> float:
    hh, mm = str(text).split(":")[:2]
    return float(int(hh) * 60 + int(mm))


def parse_profile(doc: dict[str, Any]) -> Profile:
    """Parse one profile: Nightscout's store entry or twinloop's profile JSON (same field names).

    Fields: ``timezone``, ``units`` ("mg/dl" or "mmol"), ``basal``, ``sens`` (or ``isf``), ``carbratio`` (or
    ``carb_ratio``) schedules, ``target_low``/``target_high`` (or ``target``), ``dia`` (hours); optionally
    ``weight_kg`` (body weight, :data:`WEIGHT_PLAUSIBLE_KG`; Nightscout has no such field, twinloop's layout may).
    """
    units = str(doc.get("units", "mg/dl")).lower()
    scale = 18.0182 if units.startswith("mmol") else 1.0
    tz = str(doc.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PatientDataError(f"profile.timezone: unknown time zone {tz!r}") from exc
    basal = _schedule(doc.get("basal"), "basal")
    isf = _schedule(doc.get("sens", doc.get("isf")), "sens", scale)
    cr = _schedule(doc.get("carbratio", doc.get("carb_ratio")), "carbratio")
    if "target" in doc:
        target = float(doc["target"]) * scale
    else:
        lo = _schedule(doc.get("target_low", [{"time": "00:00", "value": 100 / scale}]), "target_low", scale)
        hi = _schedule(doc.get("target_high", [{"time": "00:00", "value": 120 / scale}]), "target_high", scale)
        target = 0.5 * (lo[0][1] + hi[0][1])
    dia_h = float(doc.get("dia", 6.0))
    return Profile(basal, isf, cr, target, tz, dia_h * 60.0, _weight_kg(doc.get("weight_kg")))


def _weight_kg(value: Any) -> float | None:
    if value is None:
        return None
    try:
        kg = float(value)
    except (TypeError, ValueError) as exc:
        raise PatientDataError(f"profile.weight_kg: not a number: {value!r}") from exc
    if not (math.isfinite(kg) and WEIGHT_PLAUSIBLE_KG[0] <= kg <= WEIGHT_PLAUSIBLE_KG[1]):
        raise PatientDataError(f"profile.weight_kg: impossible body weight {value!r} kg "
                               f"(expected {WEIGHT_PLAUSIBLE_KG[0]:g}-{WEIGHT_PLAUSIBLE_KG[1]:g})")
    return kg


def _nightscout_profile(profile_docs: Any) -> Profile:
    docs = profile_docs if isinstance(profile_docs, list) else [profile_docs]
    if not docs or not isinstance(docs[0], dict):
        raise PatientDataError("profile: no Nightscout profile document")
    doc = docs[0]
    if "store" in doc:
        name = doc.get("defaultProfile") or next(iter(doc["store"]))
        store = doc["store"].get(name)
        if not isinstance(store, dict):
            raise PatientDataError(f"profile.store: default profile {name!r} missing")
        merged = dict(store)
        merged.setdefault("units", doc.get("units", store.get("units", "mg/dl")))
        return parse_profile(merged)
    return parse_profile(doc)


# ----------------------------------------------------------------------------------------------- Nightscout


def _load_nightscout_dir(folder: Path) -> PatientData:
    entries = _read_json(folder / "entries.json")
    treatments = _read_json(folder / "treatments.json") if (folder / "treatments.json").exists() else []
    if not (folder / "profile.json").exists():
        raise PatientDataError(f"{folder}: profile.json missing (the therapy profile is needed to fit a twin)")
    return nightscout_from_documents(entries, treatments, _read_json(folder / "profile.json"))


def _parse_time(value: Any, tz: ZoneInfo) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)
    text = str(value).strip().replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(timezone.utc)


def nightscout_from_documents(entries: Iterable[Any], treatments: Iterable[Any], profile_docs: Any) -> PatientData:
    """Build :class:`PatientData` from Nightscout entries, treatments and profile documents."""
    profile = _nightscout_profile(profile_docs)
    tz = ZoneInfo(profile.timezone)
    raw = _Raw([], [], [], [], [])
    for row, e in enumerate(entries or []):
        if not isinstance(e, dict):
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"entry is not an object: {e!r}", source_row=row))
            continue
        kind = e.get("type", "sgv")
        if kind != "sgv":
            raw.issues.append(DataIssue(IssueKind.UNKNOWN_EVENT, f"entry type {kind!r} not used", source_row=row))
            continue
        try:
            when = _parse_time(e["date"] if "date" in e else e["dateString"], tz)
            raw.cgm.append((when, float(e["sgv"]), row))
        except (KeyError, TypeError, ValueError) as exc:
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"sgv entry unreadable ({exc}): {e!r}", source_row=row))
    for row, t in enumerate(treatments or []):
        if not isinstance(t, dict):
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"treatment is not an object: {t!r}", source_row=row))
            continue
        try:
            when = _parse_time(t.get("created_at", t.get("timestamp", t.get("date"))), tz)
        except (TypeError, ValueError) as exc:
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"treatment time unreadable ({exc})", source_row=row))
            continue
        event = str(t.get("eventType", ""))
        used = False
        try:
            if t.get("insulin") not in (None, "", 0):
                raw.boluses.append((when, float(t["insulin"]), row))
                used = True
            if t.get("carbs") not in (None, "", 0):
                raw.carbs.append((when, float(t["carbs"]), row))
                used = True
            if event == "Temp Basal":
                rate = t.get("absolute", t.get("rate"))
                raw.temps.append((when, float(rate), float(t.get("duration", 30.0)), row))
                used = True
        except (TypeError, ValueError) as exc:
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"treatment {event!r} unreadable ({exc})",
                                        source_row=row))
            continue
        if not used:
            raw.issues.append(DataIssue(IssueKind.UNKNOWN_EVENT, f"treatment {event!r} carries no insulin or carbs",
                                        source_row=row))
    return _assemble(raw, profile)


# ----------------------------------------------------------------------------------------------- CSV

CSV_COLUMNS = ("timestamp", "event", "value", "unit", "duration_min")


def load_csv(path: str | Path, profile: Profile | None = None) -> PatientData:
    """Load the plain CSV layout (``timestamp,event,value,unit,duration_min``) with its profile JSON."""
    p = Path(path)
    if profile is None:
        candidates = [p.with_suffix(".profile.json"), p.parent / "profile.json"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise PatientDataError(f"{p}: profile missing (expected {candidates[0].name} or profile.json beside it)")
        profile = parse_profile(_read_json(found))
    tz = ZoneInfo(profile.timezone)
    raw = _Raw([], [], [], [], [])
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS[:4] if c not in (reader.fieldnames or [])]
            if missing:
                raise PatientDataError(f"{p}: missing column(s) {', '.join(missing)}; expected {', '.join(CSV_COLUMNS)}")
            for row_no, row in enumerate(reader, start=2):
                _csv_row(row, row_no, tz, raw)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PatientDataError(f"{p}: cannot read CSV ({exc})") from exc
    return _assemble(raw, profile)


def _csv_row(row: dict[str, str], row_no: int, tz: ZoneInfo, raw: _Raw) -> None:
    try:
        when = _parse_time(row["timestamp"], tz)
        event = row["event"].strip().lower()
        value = float(row["value"])
        unit = (row.get("unit") or "").strip().lower()
    except (TypeError, ValueError, AttributeError) as exc:
        raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"row unreadable ({exc}): {row!r}", source_row=row_no))
        return
    if event == "cgm":
        if unit in ("mmol/l", "mmol"):
            value = mmol_l_to_mg_dl(value)
        elif unit not in ("mg/dl", ""):
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, f"cgm unit {unit!r} unknown", source_row=row_no))
            return
        raw.cgm.append((when, value, row_no))
    elif event == "bolus":
        raw.boluses.append((when, value, row_no))
    elif event == "carbs":
        raw.carbs.append((when, value, row_no))
    elif event == "temp_basal":
        try:
            duration = float(row.get("duration_min") or 30.0)
        except ValueError:
            raw.issues.append(DataIssue(IssueKind.UNPARSEABLE, "temp_basal duration_min unreadable", source_row=row_no))
            return
        raw.temps.append((when, value, duration, row_no))
    else:
        raw.issues.append(DataIssue(IssueKind.UNKNOWN_EVENT, f"event {event!r} not used", source_row=row_no))


# ----------------------------------------------------------------------------------------------- assembly


def _assemble(raw: _Raw, profile: Profile) -> PatientData:
    if not raw.cgm:
        raise PatientDataError("no CGM readings in the data: a twin cannot be fitted without glucose")
    tz = ZoneInfo(profile.timezone)
    first_local = min(w for w, _, _ in raw.cgm).astimezone(tz)
    midnight_local = first_local.replace(hour=0, minute=0, second=0, microsecond=0)
    issues = list(raw.issues)

    def local_min(when: datetime) -> float:
        # Wall-clock minutes: a DST change shifts the axis by the clock change, like the patient's day.
        local = when.astimezone(tz)
        naive = local.replace(tzinfo=None) - midnight_local.replace(tzinfo=None)
        return naive / timedelta(minutes=1)

    cgm = sorted(((local_min(w), v, r, w) for w, v, r in raw.cgm), key=lambda x: (x[3], x[2]))
    times: list[float] = []
    values: list[float] = []
    last_utc: datetime | None = None
    for t, v, r, w in cgm:
        if not (math.isfinite(v) and GLUCOSE_PLAUSIBLE_MG_DL[0] <= v <= GLUCOSE_PLAUSIBLE_MG_DL[1]):
            issues.append(DataIssue(IssueKind.IMPOSSIBLE_VALUE, f"glucose {v!r} mg/dL outside "
                                    f"{GLUCOSE_PLAUSIBLE_MG_DL}", t, r))
            continue
        if last_utc is not None and (w - last_utc).total_seconds() < DUPLICATE_WINDOW_S:
            same = abs(values[-1] - v) < 1e-9
            issues.append(DataIssue(IssueKind.DUPLICATE, ("identical" if same else f"conflicting ({values[-1]:g} vs "
                                    f"{v:g}); first kept") + " reading", t, r))
            continue
        if times and t - times[-1] > CGM_GAP_MIN:
            issues.append(DataIssue(IssueKind.GAP, f"no CGM for {t - times[-1]:.0f} min", times[-1], r))
        if times and t < times[-1]:
            issues.append(DataIssue(IssueKind.TIME_JUMP, f"wall clock went back {times[-1] - t:.0f} min "
                                    "(daylight-saving change?)", t, r))
        times.append(t)
        values.append(v)
        last_utc = w

    def events(items, make, lo_hi, what):  # noqa: ANN001
        out, seen = [], set()
        for item in sorted(items, key=lambda x: x[0]):
            w, v, r = item[0], item[1], item[-1]
            t = local_min(w)
            if not (math.isfinite(v) and lo_hi[0] <= v <= lo_hi[1]):
                issues.append(DataIssue(IssueKind.IMPOSSIBLE_VALUE, f"{what} {v!r} outside {lo_hi}", t, r))
                continue
            key = (round(w.timestamp()), round(v, 3))
            if key in seen:
                issues.append(DataIssue(IssueKind.DUPLICATE, f"{what} {v:g} entered twice; one kept", t, r))
                continue
            seen.add(key)
            out.append(make(t, item))
        return tuple(out)

    issues.extend(censored_runs(np.asarray(times, float), np.asarray(values, float)))
    boluses = events(raw.boluses, lambda t, it: BolusEvent(t, it[1]), BOLUS_PLAUSIBLE_U, "bolus")
    carbs = events(raw.carbs, lambda t, it: CarbEvent(t, it[1]), CARBS_PLAUSIBLE_G, "carbs")
    temps = events(raw.temps, lambda t, it: TempBasalEvent(t, it[1], it[2]), RATE_PLAUSIBLE_U_PER_H, "temp basal")
    return PatientData(np.asarray(times, float), np.asarray(values, float), boluses, temps, carbs, profile,
                       midnight_local.astimezone(timezone.utc).isoformat(), tuple(issues), profile.weight_kg)

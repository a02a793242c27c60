"""Importing a patient's data: Nightscout and CSV, time zones, units, and every oddity reported."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from trials.personal.importers import PatientDataError, load_csv, load_patient_data, nightscout_from_documents
from trials.personal.patient_data import IssueKind

PROFILE_MMOL = [{
    "defaultProfile": "Default",
    "store": {"Default": {
        "dia": 5, "timezone": "Europe/Berlin", "units": "mmol",
        "basal": [{"time": "00:00", "value": 0.8, "timeAsSeconds": 0}, {"time": "06:00", "value": 1.1}],
        "sens": [{"time": "00:00", "value": 2.5}],
        "carbratio": [{"time": "00:00", "value": 10}],
        "target_low": [{"time": "00:00", "value": 5.5}], "target_high": [{"time": "00:00", "value": 6.5}],
    }},
}]


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_nightscout_local_time_units_and_treatments() -> None:
    # 2026-01-10 06:00 UTC is 07:00 in Berlin (UTC+1 in winter).
    t0 = datetime(2026, 1, 10, 6, 0, tzinfo=timezone.utc)
    entries = [{"type": "sgv", "sgv": 100 + i, "date": _ms(t0 + timedelta(minutes=5 * i))} for i in range(12)]
    treatments = [
        {"eventType": "Meal Bolus", "created_at": "2026-01-10T06:10:00Z", "insulin": 4.0, "carbs": 45},
        {"eventType": "Temp Basal", "created_at": "2026-01-10T06:20:00.000Z", "absolute": 0.0, "duration": 30},
    ]
    data = nightscout_from_documents(entries, treatments, PROFILE_MMOL)
    assert data.cgm_t_min[0] == pytest.approx(7 * 60)           # local minute of day, not UTC
    assert data.cgm_mg_dl[3] == 103.0
    assert data.profile.isf_mg_dl_per_u[0][1] == pytest.approx(2.5 * 18.0182)   # mmol -> mg/dL
    assert data.profile.target_mg_dl == pytest.approx(6.0 * 18.0182)
    assert data.boluses[0].t_min == pytest.approx(7 * 60 + 10) and data.boluses[0].bolus_u == 4.0
    assert data.carbs[0].carbs_g == 45
    assert data.temp_basals[0].rate_u_per_h == 0.0 and data.temp_basals[0].duration_min == 30
    ins = data.insulin_u_per_min(24 * 60)
    assert ins[7 * 60 + 25] == 0.0                                  # temp basal of zero in force
    assert ins[7 * 60 + 60] == pytest.approx(1.1 / 60)               # back to the 06:00 schedule


def test_gaps_duplicates_and_impossible_values_are_reported_not_dropped_silently() -> None:
    t0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
    entries = [{"type": "sgv", "sgv": 120, "date": _ms(t0 + timedelta(minutes=5 * i))} for i in range(6)]
    entries.append({"type": "sgv", "sgv": 125, "date": _ms(t0 + timedelta(minutes=25))})    # conflicting duplicate
    entries.append({"type": "sgv", "sgv": 5000, "date": _ms(t0 + timedelta(minutes=30))})   # impossible
    entries.append({"type": "sgv", "sgv": 130, "date": _ms(t0 + timedelta(minutes=90))})    # after a gap
    entries.append({"type": "mbg", "mbg": 110, "date": _ms(t0)})                             # not used
    entries.append("garbage")
    treatments = [{"eventType": "Correction Bolus", "created_at": "2026-03-01T00:10:00Z", "insulin": 99.0}]
    profile = [{"store": {"p": {"timezone": "UTC", "basal": [{"time": "00:00", "value": 1}],
                                "sens": [{"time": "00:00", "value": 40}], "carbratio": [{"time": "00:00", "value": 9}]}},
                "defaultProfile": "p"}]
    data = nightscout_from_documents(entries, treatments, profile)
    kinds = [i.kind for i in data.issues]
    assert kinds.count(IssueKind.DUPLICATE) == 1
    assert kinds.count(IssueKind.IMPOSSIBLE_VALUE) == 2          # the 5000 mg/dL sgv and the 99 U bolus
    assert kinds.count(IssueKind.GAP) == 1
    assert kinds.count(IssueKind.UNKNOWN_EVENT) == 1
    assert kinds.count(IssueKind.UNPARSEABLE) == 1
    assert len(data.cgm_mg_dl) == 7 and data.boluses == ()
    # every input row is accounted for: used or reported
    assert len(data.cgm_mg_dl) + kinds.count(IssueKind.DUPLICATE) + 1 + 1 + 1 == len(entries)


def test_readings_at_the_cgm_limits_are_reported_as_censored_runs() -> None:
    """Nightscout stores the CGM's LOW as 39 and HIGH as 401: kept (they are information) and reported, one issue
    per run, as bounds rather than values."""
    t0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
    values = [80, 39, 39, 39, 70, 120, 401, 401, 300]
    entries = [{"type": "sgv", "sgv": v, "date": _ms(t0 + timedelta(minutes=5 * i))} for i, v in enumerate(values)]
    profile = [{"store": {"p": {"timezone": "UTC", "basal": [{"time": "00:00", "value": 1}],
                                "sens": [{"time": "00:00", "value": 40}], "carbratio": [{"time": "00:00", "value": 9}]}},
                "defaultProfile": "p"}]
    data = nightscout_from_documents(entries, [], profile)
    assert list(data.cgm_mg_dl) == values
    runs = [i for i in data.issues if i.kind is IssueKind.CENSORED]
    assert [(r.t_min, "LOW" in r.detail, "3 reading" in r.detail) for r in runs][0] == (5.0, True, True)
    assert runs[1].t_min == 30.0 and "HIGH" in runs[1].detail and "2 reading" in runs[1].detail
    assert len(runs) == 2


def test_csv_layout_with_mmol_and_naive_local_times(tmp_path) -> None:
    (tmp_path / "p.profile.json").write_text(json.dumps({
        "timezone": "America/New_York", "units": "mg/dl", "basal": [["00:00", 0.9]], "isf": [["00:00", 45]],
        "carb_ratio": [["00:00", 12]], "target": 105}))
    rows = ["timestamp,event,value,unit,duration_min",
            "2026-06-01T08:00:00,cgm,6.0,mmol/L,",
            "2026-06-01T08:05:00-04:00,cgm,110,mg/dL,",
            "2026-06-01T08:07:00,bolus,3.5,U,",
            "2026-06-01T08:07:00,carbs,40,g,",
            "2026-06-01T08:30:00,temp_basal,1.5,U/h,60",
            "2026-06-01T08:40:00,cgm,abc,mg/dL,",
            "2026-06-01T08:45:00,exercise,30,min,"]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    data = load_csv(tmp_path / "p.csv")
    assert data.cgm_t_min.tolist() == [480.0, 485.0]
    assert data.cgm_mg_dl[0] == pytest.approx(6.0 * 18.0182)
    assert data.temp_basals[0].duration_min == 60 and data.boluses[0].bolus_u == 3.5
    assert {i.kind for i in data.issues} == {IssueKind.UNPARSEABLE, IssueKind.UNKNOWN_EVENT}
    assert load_patient_data(tmp_path).cgm_mg_dl.size == 2    # a folder with a CSV works too


def test_unusable_inputs_raise_named_errors(tmp_path) -> None:
    with pytest.raises(PatientDataError, match="no such file"):
        load_patient_data(tmp_path / "missing")
    (tmp_path / "x.csv").write_text("timestamp,event\n")
    (tmp_path / "x.profile.json").write_text(json.dumps({"basal": [["00:00", 1]], "isf": [["00:00", 40]],
                                                         "carb_ratio": [["00:00", 10]]}))
    with pytest.raises(PatientDataError, match="missing column"):
        load_csv(tmp_path / "x.csv")
    with pytest.raises(PatientDataError, match="timezone"):
        nightscout_from_documents([], [], [{"timezone": "Mars/Olympus", "basal": [["00:00", 1]],
                                            "sens": [["00:00", 40]], "carbratio": [["00:00", 10]]}])
    with pytest.raises(PatientDataError, match="no CGM"):
        nightscout_from_documents([], [], [{"basal": [["00:00", 1]], "sens": [["00:00", 40]],
                                            "carbratio": [["00:00", 10]]}])
    with pytest.raises(PatientDataError, match="first entry must start"):
        nightscout_from_documents([], [], [{"basal": [["01:00", 1]], "sens": [["00:00", 40]],
                                            "carbratio": [["00:00", 10]]}])


def test_profile_weight_is_read_validated_and_written_back(tmp_path) -> None:
    from trials.personal.patient_data import write_csv

    profile = {"timezone": "UTC", "basal": [["00:00", 0.9]], "isf": [["00:00", 45]], "carb_ratio": [["00:00", 12]],
               "weight_kg": 31.5}
    (tmp_path / "p.profile.json").write_text(json.dumps(profile))
    (tmp_path / "p.csv").write_text("timestamp,event,value,unit,duration_min\n2026-06-01T08:00:00Z,cgm,110,mg/dL,\n")
    data = load_csv(tmp_path / "p.csv")
    assert data.weight_kg == 31.5 and data.profile.weight_kg == 31.5
    again = load_csv(write_csv(data, str(tmp_path / "out"), "q"))
    assert again.weight_kg == 31.5
    ns = nightscout_from_documents([{"type": "sgv", "sgv": 100, "date": 0}], [], [{**PROFILE_MMOL[0],
                                   "store": {"Default": {**PROFILE_MMOL[0]["store"]["Default"], "weight_kg": 80}}}])
    assert ns.weight_kg == 80.0
    assert nightscout_from_documents([{"type": "sgv", "sgv": 100, "date": 0}], [], PROFILE_MMOL).weight_kg is None
    for bad in (5, 400, "heavy", float("nan"), [70]):
        (tmp_path / "p.profile.json").write_text(json.dumps({**profile, "weight_kg": bad}))
        with pytest.raises(PatientDataError, match="profile.weight_kg"):
            load_csv(tmp_path / "p.csv")

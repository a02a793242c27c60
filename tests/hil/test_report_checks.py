"""The bench's acceptance checks on synthetic journals and pump histories (each check fails when it should)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hil.faults import KINDS, Fault, default_schedule
from hil.report import basal_time_after, check_double_delivery, check_uncertain, glycemic


@dataclass
class Ev:
    seq: int
    kind: str
    t_min: float
    payload: dict = field(default_factory=dict)


def sent(seq, t, cid, ctype):
    return Ev(seq, "command_sent", t, {"command": {"command_id": cid, "command": {"type": ctype}}})


def delivery(seq, t, cid, status, kind="ack", amount=0.0, dkind="basal"):
    return Ev(seq, kind, t, {"delivery": {"command_id": cid, "status": status, "amount_u": amount, "kind": dkind}})


def test_default_schedule_covers_every_kind_without_overlap():
    for hours in (4, 24):
        faults = default_schedule(hours)
        assert {f.kind for f in faults} == set(KINDS)
        spans = sorted((f.t_min, f.end_min) for f in faults)
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))
        assert spans[-1][1] <= hours * 60
    with pytest.raises(ValueError):
        default_schedule(2)
    with pytest.raises(ValueError):
        Fault("meteor", 10)


def test_uncertain_check_catches_insulin_while_uncertain():
    ok = [sent(1, 0, "a", "temp_basal"), delivery(2, 0, "a", "uncertain", "delivery"),
          sent(3, 5, "b", "suspend"), delivery(4, 6, "a", "confirmed", "delivery"), sent(5, 10, "c", "bolus")]
    assert check_uncertain(ok)["ok"]
    bad = ok[:2] + [sent(3, 5, "b", "bolus")]
    r = check_uncertain(bad)
    assert not r["ok"] and r["violations"][0]["command"] == "b"


def test_uncertain_check_counts_commands_in_flight_at_a_kill():
    events = [sent(1, 0, "a", "bolus"), Ev(2, "start", 3), sent(3, 5, "b", "temp_basal")]
    assert not check_uncertain(events)["ok"]
    events = [sent(1, 0, "a", "bolus"), Ev(2, "start", 3),
              delivery(3, 4, "a", "confirmed", "delivery"), sent(4, 5, "b", "temp_basal")]
    assert check_uncertain(events)["ok"]


def test_basal_time_after():
    entries = [{"kind": "basal", "start_min": 0.0, "end_min": 30.0, "rate_u_per_h": 2.0, "command_id": "t"}]
    assert basal_time_after(entries, 10.0, 1.0) == 30.0
    entries.append({"kind": "basal", "start_min": 18.0, "end_min": 18.0, "rate_u_per_h": 1.0, "command_id": "r"})
    assert basal_time_after(entries, 10.0, 1.0) == 18.0
    assert basal_time_after([], 10.0, 1.0) == 10.0


def test_double_delivery_check():
    entries = [{"command_id": "b1", "kind": "bolus", "amount_u": 1.0, "start_min": 0, "end_min": 0}]
    events = [delivery(1, 0, "b1", "confirmed", amount=1.0, dkind="bolus")]
    assert check_double_delivery(events, entries)["ok"]
    assert not check_double_delivery([], entries)["ok"]  # the pump gave a bolus the runtime does not know
    assert not check_double_delivery(events, entries + [dict(entries[0])])["ok"]  # executed twice
    assert not check_double_delivery(events, [], pump_bolus_total_u=2.0)["ok"]


def test_glycemic_metrics():
    g = glycemic([60.0, 100.0, 200.0, 150.0])
    assert g["tir_70_180_pct"] == 50.0 and g["tbr_70_pct"] == 25.0 and g["tar_180_pct"] == 25.0

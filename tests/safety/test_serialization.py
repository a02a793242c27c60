"""JSON encoding of the vocabulary: exact round trips, plain JSON, named errors on malformed input."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings as hsettings

from safety.commands import (ApprovedCommand, Bolus, BolusKind, CancelBolus, DeliveryStatus, Proposal, Resume,
                             Suspend, TempBasal, UnapprovedCommandError)
from safety.errors import SerializationError
from safety.readings import GlucoseReading, MealAnnouncement, ReadingStatus
from safety.serialization import from_jsonable, kind_of, to_jsonable
from safety.snapshot import Snapshot
from safety.supervisor import PumpState, SupervisorState, supervise

from safety_testkit import NOW, bolus_history, context, proposal, reading_windows, valid_settings


def roundtrip(obj):
    text = json.dumps(to_jsonable(obj), allow_nan=False)  # strict JSON
    return from_jsonable(kind_of(obj), json.loads(text))


def same(a, b):
    return a == b or repr(a) == repr(b)  # NaN != NaN: compare the representation


@hsettings(max_examples=60, deadline=None)
@given(valid_settings(), reading_windows(), bolus_history(statuses=tuple(DeliveryStatus)))
def test_snapshot_roundtrip_is_exact(s, readings, deliveries):
    meals = (MealAnnouncement(NOW - 30, 45.5, NOW - 35, 120.0, "m1"),)
    snap = Snapshot(NOW, readings, deliveries, meals, s)
    back = roundtrip(snap)
    assert same(back, snap)
    assert back.settings == s and back.deliveries == deliveries


@pytest.mark.parametrize("obj", [
    TempBasal(1.25, 30.0), Bolus(0.35, BolusKind.MEAL), Suspend(20.0), Resume(), CancelBolus("sv:1.000:3"),
    GlucoseReading(5.0, math.nan, "cgm:ble", ReadingStatus.NOISY | ReadingStatus.BACKFILLED, -1.5, 17),
    MealAnnouncement(1.0, 30.0, 0.5),
    Proposal(5.0, TempBasal(2.0), Bolus(1.0), (120.0, 118.5), {"x_mg_dl": 101.25, "bad": math.inf}, "why", "mpc",
             None),
    Proposal(5.0, None, None, error="solver failed"),
    SupervisorState(True, 1.0, None, 7, 2.0), PumpState(True, False, 12.5, False, True),
])
def test_roundtrip_each_kind(obj):
    assert same(roundtrip(obj), obj)
    assert to_jsonable(obj)["type"] == kind_of(obj)


def test_approved_command_roundtrip_and_only_supervisor_creates_them():
    v = supervise(proposal(rate=2.0, bolus=0.5), context())
    for cmd in v.commands:
        back = roundtrip(cmd)
        assert back == cmd and isinstance(back, ApprovedCommand)
    with pytest.raises(UnapprovedCommandError):
        ApprovedCommand("x", 0.0, Resume())
    json.dumps(v.to_dict(), allow_nan=False)


def test_json_layout_is_documented_shape():
    d = to_jsonable(TempBasal(1.5, 30.0))
    assert d == {"type": "temp_basal", "rate_u_per_h": 1.5, "duration_min": 30.0}
    d = to_jsonable(GlucoseReading(1.0, math.nan))
    assert d["glucose_mg_dl"] == "NaN" and d["status"] == 0


@pytest.mark.parametrize("kind,data", [("reading", {"t_min": 1.0}), ("bolus", {"bolus_u": "x"}), ("nope", {}),
                                       ("reading", []), ("temp_basal", {"type": "bolus", "bolus_u": 1.0}),
                                       ("delivery", {"command_id": "a", "kind": "basal", "start_min": 0,
                                                     "end_min": 1, "amount_u": 1, "status": "lost"})])
def test_malformed_payload_is_a_named_error(kind, data):
    with pytest.raises(SerializationError):
        from_jsonable(kind, data)


def test_auto_kind_and_command_kind():
    assert from_jsonable("auto", {"type": "resume"}) == Resume()
    assert from_jsonable("command", {"type": "suspend", "duration_min": 10}) == Suspend(10.0)

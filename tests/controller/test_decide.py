"""The MPC decision end to end: JSON fixtures, metamorphic properties, fallbacks, state, the replay CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest

from controller.decide import MPCController
from controller.mpc import MPCResult
from safety.commands import Bolus, BolusKind, Resume, Suspend, TempBasal
from safety.readings import GlucoseReading, MealAnnouncement, ReadingStatus
from safety.serialization import from_jsonable, to_jsonable
from safety.snapshot import Snapshot

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("mpc_fixtures", FIXTURES / "make_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)
SCENARIO_NAMES = sorted(p.name[: -len("_scenario.json")] for p in FIXTURES.glob("*_scenario.json"))


@pytest.fixture(scope="module")
def ctl() -> MPCController:
    return MPCController()


def decide_fresh(ctl, snap):
    return ctl.decide(ctl.initial_state(snap.settings), snap)


def shift(snap: Snapshot, dt: float) -> Snapshot:
    return Snapshot(
        snap.now_min + dt,
        tuple(dataclasses.replace(r, t_min=r.t_min + dt) for r in snap.readings),
        tuple(dataclasses.replace(d, start_min=d.start_min + dt, end_min=d.end_min + dt) for d in snap.deliveries),
        tuple(dataclasses.replace(m, t_min=m.t_min + dt, announced_at_min=m.announced_at_min + dt)
              for m in snap.meals),
        snap.settings,
    )


def assert_same_decision(a, b, atol=1e-6):
    assert type(a.basal) is type(b.basal)
    assert getattr(a.basal, "rate_u_per_h", None) == getattr(b.basal, "rate_u_per_h", None)
    assert a.bolus == b.bolus
    assert a.error == b.error
    assert len(a.predicted_glucose_mg_dl) == len(b.predicted_glucose_mg_dl)
    for x, y in zip(a.predicted_glucose_mg_dl, b.predicted_glucose_mg_dl):
        assert x == pytest.approx(y, abs=atol)


# -- fixtures (snapshot -> expected decision) ------------------------------------------------------------------

def test_fixtures_exist():
    assert len(SCENARIO_NAMES) >= 8


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_fixture_replays_to_the_expected_decision(ctl, name):
    data = json.loads((FIXTURES / f"{name}_scenario.json").read_text())
    want = json.loads((FIXTURES / f"{name}_decision.json").read_text())["expected"]
    snap = from_jsonable("snapshot", data["snapshot"])
    _, proposal = ctl.decide(data["state"], snap)
    got = fx.expected(proposal)
    assert got["basal"] == want["basal"]
    assert got["error"] == want["error"]
    assert got["bolus_kind"] == want["bolus_kind"]
    if want["rate_u_per_h"] is not None:
        assert got["rate_u_per_h"] == pytest.approx(want["rate_u_per_h"], abs=0.051)
    if want["bolus_u"] is not None:
        assert got["bolus_u"] == pytest.approx(want["bolus_u"], abs=0.051)
    assert len(got["predicted_glucose_mg_dl"]) == len(want["predicted_glucose_mg_dl"])
    for g, w in zip(got["predicted_glucose_mg_dl"], want["predicted_glucose_mg_dl"]):
        assert g == pytest.approx(w, abs=1.0)


def test_fixture_decisions_are_clinically_sensible(ctl):
    s = fx.scenarios()
    _, p = decide_fresh(ctl, s["rising_high"])
    assert isinstance(p.basal, TempBasal) and p.basal.rate_u_per_h > 1.0
    _, p = decide_fresh(ctl, s["falling_low"])
    assert isinstance(p.basal, Suspend)
    _, p = decide_fresh(ctl, s["announced_meal"])
    assert p.bolus is not None and p.bolus.kind is BolusKind.MEAL
    assert p.bolus.bolus_u == pytest.approx(ctl.config.meal_bolus_fraction * 60.0 / 10.0, abs=0.05)
    _, p = decide_fresh(ctl, s["meal_already_bolused"])
    assert p.bolus is None
    _, p = decide_fresh(ctl, s["unannounced_meal"])
    assert p.estimated_state["disturbance_mg_dl_per_min"] > 0.5
    assert isinstance(p.basal, TempBasal) and p.basal.rate_u_per_h > 1.0
    assert "unannounced" in p.reason


# -- metamorphic properties -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rising_high", "announced_meal", "bolus_on_board", "unannounced_meal"])
@pytest.mark.parametrize("days", [1, -2, 30])
def test_time_shift_by_whole_days_gives_the_same_decision(ctl, name, days):
    snap = fx.scenarios()[name]
    _, a = decide_fresh(ctl, snap)
    _, b = decide_fresh(ctl, shift(snap, 1440.0 * days))
    assert_same_decision(a, b)
    assert b.now_min == a.now_min + 1440.0 * days


@pytest.mark.parametrize("name", ["rising_high", "announced_meal", "falling_low"])
def test_duplicated_readings_and_meals_do_not_change_the_decision(ctl, name):
    snap = fx.scenarios()[name]
    doubled = dataclasses.replace(snap, readings=tuple(r for r in snap.readings for _ in range(2)),
                                  meals=snap.meals + snap.meals)
    _, a = decide_fresh(ctl, snap)
    _, b = decide_fresh(ctl, doubled)
    assert_same_decision(a, b)


def test_future_readings_and_unannounced_meals_are_ignored(ctl):
    snap = fx.scenarios()["steady_in_range"]
    now = snap.now_min
    extra = dataclasses.replace(
        snap,
        readings=snap.readings + (GlucoseReading(now + 5.0, 300.0), GlucoseReading(now + 10.0, 320.0)),
        meals=(MealAnnouncement(now + 30.0, 80.0, announced_at_min=now + 1.0, entry_id="later"),),
    )
    _, a = decide_fresh(ctl, snap)
    _, b = decide_fresh(ctl, extra)
    assert_same_decision(a, b)


def test_unreliable_and_out_of_range_readings_are_not_used(ctl):
    snap = fx.scenarios()["steady_in_range"]
    now = snap.now_min
    bad = tuple(r for r in snap.readings if r.t_min < now - 12.0) + (
        GlucoseReading(now - 10.0, 250.0, status=ReadingStatus.SENSOR_MALFUNCTION),
        GlucoseReading(now - 5.0, float("nan")),
        GlucoseReading(now, 20.0),
    )
    _, p = decide_fresh(ctl, dataclasses.replace(snap, readings=bad))
    assert p.error is None
    assert 100.0 < p.estimated_state["glucose_mg_dl"] < 130.0


# -- fallbacks -------------------------------------------------------------------------------------------------

class FailingSolver:
    def solve(self, inputs):
        return MPCResult(False, "Maximum_Iterations_Exceeded")


def test_solver_failure_falls_back_to_the_scheduled_basal_and_says_so():
    ctl = MPCController(solver=FailingSolver())
    snap = fx.scenarios()["rising_high"]
    state, p = decide_fresh(ctl, snap)
    assert isinstance(p.basal, Resume)
    assert p.error == "mpc_failed: Maximum_Iterations_Exceeded"
    assert "MPC solver failed" in p.reason and "scheduled basal" in p.reason
    json.dumps(state)


def test_solver_failure_keeps_the_meal_bolus():
    ctl = MPCController(solver=FailingSolver())
    _, p = decide_fresh(ctl, fx.scenarios()["announced_meal"])
    assert isinstance(p.basal, Resume)
    assert p.bolus == Bolus(round(ctl.config.meal_bolus_fraction * 6.0, 2), BolusKind.MEAL)


def test_solver_exception_is_contained():
    class Exploding:
        def solve(self, inputs):
            raise ZeroDivisionError("boom")

    _, p = decide_fresh(MPCController(solver=Exploding()), fx.scenarios()["rising_high"])
    assert isinstance(p.basal, Resume)
    assert p.error.startswith("internal_error")


def test_stale_cgm_falls_back(ctl):
    _, p = decide_fresh(ctl, fx.scenarios()["cgm_stale"])
    assert isinstance(p.basal, Resume)
    assert p.error == "cgm_stale"
    assert "40 min" in p.reason


def test_no_glucose_falls_back(ctl):
    snap = dataclasses.replace(fx.scenarios()["steady_in_range"], readings=())
    _, p = decide_fresh(ctl, snap)
    assert isinstance(p.basal, Resume)
    assert p.error == "no_glucose"


def test_reading_15_to_30_min_old_never_raises_above_scheduled(ctl):
    snap = fx.scenarios()["rising_high"]
    old = dataclasses.replace(snap, readings=tuple(r for r in snap.readings if r.t_min <= snap.now_min - 20.0))
    _, p = decide_fresh(ctl, old)
    assert p.error is None
    assert isinstance(p.basal, (Suspend, TempBasal))
    if isinstance(p.basal, TempBasal):
        assert p.basal.rate_u_per_h <= snap.settings.basal_at(snap.now_min) + 1e-9


# -- state, outputs --------------------------------------------------------------------------------------------

def test_state_is_json_and_a_json_round_trip_replays_identically(ctl):
    snap = fx.scenarios()["announced_meal"]
    state, _ = decide_fresh(ctl, snap)
    nxt = fx.snapshot(lambda a: 122.0, meals=snap.meals, now=snap.now_min + 5.0,
                      extra=(fx.bolus(snap.now_min, 4.8),))
    s1, p1 = ctl.decide(state, nxt)
    s2, p2 = ctl.decide(json.loads(json.dumps(state)), nxt)
    assert_same_decision(p1, p2, atol=0.0)
    assert json.dumps(s1) == json.dumps(s2)


def test_meal_bolus_is_not_repeated(ctl):
    snap = fx.scenarios()["announced_meal"]
    state, p = decide_fresh(ctl, snap)
    assert p.bolus is not None
    nxt = fx.snapshot(lambda a: 121.0, meals=snap.meals, now=snap.now_min + 5.0,
                      extra=(fx.bolus(snap.now_min, p.bolus.bolus_u),))
    _, p2 = ctl.decide(state, nxt)
    assert p2.bolus is None


def test_proposal_carries_prediction_estimates_and_a_reason(ctl):
    _, p = decide_fresh(ctl, fx.scenarios()["rising_high"])
    assert p.controller == "mpc"
    assert len(p.predicted_glucose_mg_dl) == 37  # now + 3 h in 5-minute steps
    assert all(math.isfinite(g) for g in p.predicted_glucose_mg_dl)
    for key in ("glucose_mg_dl", "insulin_on_board_u", "disturbance_mg_dl_per_min", "sensitivity_multiplier",
                "trend_mg_dl_per_min", "carbs_on_board_g"):
        assert key in p.estimated_state
    for words in ("Glucose", "mg/dL", "U on board", "predicted", "in 60 min", "U/h for 30 min"):
        assert words in p.reason
    json.dumps(to_jsonable(p))


def test_malformed_state_restarts_the_filter(ctl):
    snap = fx.scenarios()["steady_in_range"]
    _, a = decide_fresh(ctl, snap)
    _, b = ctl.decide({"version": 1, "filter": {"t_min": "x"}}, snap)
    assert_same_decision(a, b)


def test_module_level_decide_matches_the_controller():
    from controller import decide

    snap = fx.scenarios()["rising_high"]
    _, a = decide({}, snap)
    _, b = decide_fresh(MPCController(), snap)
    assert_same_decision(a, b)


# -- replay CLI --------------------------------------------------------------------------------------------------

def test_cli_decide_prints_the_decision_as_json(capsys):
    from twinloop.cli import main

    rc = main(["decide", str(FIXTURES / "rising_high_scenario.json"), "--indent", "0"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["proposal"]["type"] == "proposal"
    assert out["proposal"]["basal"]["type"] == "temp_basal"
    assert "filter" in out["state"]


def test_cli_decide_bad_input_exits_2(tmp_path, capsys):
    from twinloop.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["decide", str(bad)]) == 2
    assert "bad input" in capsys.readouterr().err


def test_automatic_correction_bolus_is_bounded_by_the_need(ctl):
    snap = fx.scenarios()["rising_high"]
    _, p = decide_fresh(ctl, snap)
    assert p.bolus is not None and p.bolus.kind is BolusKind.AUTOMATIC
    s = snap.settings
    need = (snap.readings[-1].glucose_mg_dl - s.target_mg_dl) / s.isf_at(snap.now_min) - \
        p.estimated_state["insulin_on_board_u"]
    assert 0.0 < p.bolus.bolus_u <= ctl.config.auto_bolus_fraction_of_need * need + 1e-9
    assert "automatic correction bolus" in p.reason


def test_no_automatic_bolus_below_the_threshold_or_when_disabled(ctl):
    _, p = decide_fresh(ctl, fx.scenarios()["steady_in_range"])
    assert p.bolus is None
    off = MPCController(dataclasses.replace(ctl.config, auto_bolus=False))
    _, p = decide_fresh(off, fx.scenarios()["rising_high"])
    assert p.bolus is None

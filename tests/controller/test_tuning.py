"""The clinical-tuning rules of the MPC decision: falling-CGM limit, retried and split meal boluses.

Each test sets the rule's configuration explicitly, so it checks the rule itself whatever the defaults are.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from controller.decide import ControllerConfig, MPCController
from safety.commands import BolusKind, Suspend, TempBasal
from safety.readings import MealAnnouncement

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("mpc_fixtures_tuning", FIXTURES / "make_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

NOW = fx.NOW


def controller(**overrides) -> MPCController:
    return MPCController(dataclasses.replace(ControllerConfig(), **overrides))


def fresh(ctl, snap):
    return ctl.decide(ctl.initial_state(snap.settings), snap)


# -- falling CGM ----------------------------------------------------------------------------------------------

def _falling_high():
    # 260 mg/dL an hour ago, steady, then falling 2 mg/dL/min over the last 30 minutes
    return fx.snapshot(lambda a: 200.0 + 2.0 * min(a, 30.0))


def test_no_increase_above_the_scheduled_basal_while_the_cgm_falls_fast():
    snap = _falling_high()
    _, p = fresh(controller(falling_trend_mg_dl_per_min=-1.0), snap)
    assert isinstance(p.basal, (TempBasal, Suspend))
    if isinstance(p.basal, TempBasal):
        assert p.basal.rate_u_per_h <= snap.settings.basal_at(NOW) + 1e-9
    assert p.bolus is None  # no automatic correction bolus either
    assert "falling" in p.reason


def test_the_falling_limit_is_off_when_not_configured():
    _, p = fresh(controller(falling_trend_mg_dl_per_min=None), _falling_high())
    assert "CGM falling" not in p.reason


# -- meal bolus refused by the supervisor: proposed again ----------------------------------------------------

def _meal_snapshots():
    meal = (MealAnnouncement(NOW + 5.0, 60.0, NOW - 2.0, entry_id="lunch"),)
    first = fx.snapshot(lambda a: 120.0, meals=meal)
    return meal, first


def test_a_refused_meal_bolus_is_proposed_again_after_the_retry_time():
    ctl = controller(meal_bolus_retry_min=10.0)
    meal, first = _meal_snapshots()
    state, p = fresh(ctl, first)
    assert p.bolus is not None and p.bolus.kind is BolusKind.MEAL
    # 5 minutes later, nothing delivered: wait for the pump
    state5, p5 = ctl.decide(state, fx.snapshot(lambda a: 121.0, meals=meal, now=NOW + 5.0))
    assert p5.bolus is None
    # 10 minutes after the proposal, still nothing delivered (the supervisor refused it): propose again
    _, p10 = ctl.decide(state5, fx.snapshot(lambda a: 122.0, meals=meal, now=NOW + 10.0))
    assert p10.bolus is not None and p10.bolus.kind is BolusKind.MEAL


def test_a_delivered_meal_bolus_is_not_proposed_again():
    ctl = controller(meal_bolus_retry_min=10.0)
    meal, first = _meal_snapshots()
    state, p = fresh(ctl, first)
    delivered = (fx.bolus(NOW, p.bolus.bolus_u),)
    for dt in (5.0, 10.0, 15.0):
        state, p2 = ctl.decide(state, fx.snapshot(lambda a: 121.0, meals=meal, now=NOW + dt, extra=delivered))
        assert p2.bolus is None


# -- meal bolus capped at max bolus: the rest later -----------------------------------------------------------

def test_the_rest_of_a_capped_meal_bolus_follows_once():
    ctl = controller(meal_bolus_split_capped=True, meal_bolus_rest_delay_min=20.0)
    meal = (MealAnnouncement(NOW + 5.0, 150.0, NOW - 2.0, entry_id="feast"),)
    max_bolus = fx.settings().max_bolus_u
    state, p = fresh(ctl, fx.snapshot(lambda a: 130.0, meals=meal))
    assert p.bolus is not None and p.bolus.bolus_u == pytest.approx(max_bolus)
    delivered = (fx.bolus(NOW, p.bolus.bolus_u),)
    rests = []
    for dt in (5.0, 10.0, 15.0, 20.0, 25.0, 30.0):
        state, p2 = ctl.decide(state, fx.snapshot(lambda a: 150.0, meals=meal, now=NOW + dt, extra=delivered))
        if p2.bolus is not None:
            rests.append((dt, p2.bolus))
            delivered = delivered + (fx.bolus(NOW + dt, p2.bolus.bolus_u, cid=f"r{dt}"),)
    assert len(rests) == 1
    dt, rest = rests[0]
    assert dt == 20.0 and rest.kind is BolusKind.MEAL
    assert 0.0 < rest.bolus_u <= ctl.config.meal_bolus_fraction * 150.0 / 10.0 - max_bolus + 1e-9


def test_the_rest_of_a_capped_meal_bolus_is_skipped_when_glucose_falls():
    ctl = controller(meal_bolus_split_capped=True, meal_bolus_rest_delay_min=20.0, falling_trend_mg_dl_per_min=-1.0)
    meal = (MealAnnouncement(NOW + 5.0, 150.0, NOW - 2.0, entry_id="feast"),)
    state, p = fresh(ctl, fx.snapshot(lambda a: 130.0, meals=meal))
    delivered = (fx.bolus(NOW, p.bolus.bolus_u),)
    for dt in (5.0, 10.0, 15.0, 20.0, 25.0):
        state, p2 = ctl.decide(state, fx.snapshot(lambda a, dt=dt: 130.0 + 2.0 * min(a, 30.0) - 2.0 * dt,
                                                  meals=meal, now=NOW + dt, extra=delivered))
        assert p2.bolus is None


# -- automatic boluses: quiet hours -----------------------------------------------------------------------------

def _rising(now):
    return fx.snapshot(lambda a: 120.0 if a > 40 else 120.0 + 0.08 * (40 - a) ** 2, now=now)


def test_no_automatic_bolus_in_the_quiet_hours():
    ctl = controller(auto_bolus_quiet_start_min=1380.0, auto_bolus_quiet_end_min=420.0)
    _, day = fresh(ctl, _rising(NOW))                       # 10:00
    assert day.bolus is not None and day.bolus.kind is BolusKind.AUTOMATIC
    _, night = fresh(ctl, _rising(3 * 1440.0 + 120.0))      # 02:00
    assert night.bolus is None
    _, late = fresh(ctl, _rising(3 * 1440.0 + 1410.0))      # 23:30 (the window wraps midnight)
    assert late.bolus is None


# -- the twin's insulin action for children ----------------------------------------------------------------------

def test_the_child_twin_has_the_slower_insulin_action():
    from controller.decide import twin_params
    from safety.settings import AgeGroup

    cfg = dataclasses.replace(ControllerConfig(), insulin_action_tau_factor=1.0, insulin_action_tau_factor_child=2.0)
    adult = fx.settings()
    child = dataclasses.replace(adult, age_group=AgeGroup.CHILD)
    pa, pc = twin_params(adult, NOW, cfg), twin_params(child, NOW, cfg)
    assert pa.action_tau_min == pytest.approx(pa.insulin_tau_min)
    assert pc.action_tau_min == pytest.approx(2.0 * pc.insulin_tau_min)

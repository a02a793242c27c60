"""Insulin on board and activity against the closed-form exponential model (control.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from safety.commands import DeliveryStatus
from safety.iob import (activity_fraction_per_min, delivered_last_24h_u, insulin_activity_u_per_min,
                        insulin_on_board_u, iob_fraction, pending_deliveries)
from safety.settings import InsulinCurve, Schedule

from safety_testkit import NOW, basal_record, bolus_record, settings

CURVES = [InsulinCurve(75, 360), InsulinCurve(65, 360), InsulinCurve(55, 360), InsulinCurve(75, 300),
          InsulinCurve(120, 480)]


def closed_form_iob(t, tp, td):
    """control.md, written out independently with math (not numpy)."""
    tau = tp * (1 - tp / td) / (1 - 2 * tp / td)
    a = 2 * tau / td
    s = 1 / (1 - a + (1 + a) * math.exp(-td / tau))
    return 1 - s * (1 - a) * ((t ** 2 / (tau * td * (1 - a)) - t / tau - 1) * math.exp(-t / tau) + 1)


@pytest.mark.parametrize("curve", CURVES)
def test_iob_endpoints_and_closed_form(curve):
    assert iob_fraction(0.0, curve) == pytest.approx(1.0, abs=1e-12)
    assert iob_fraction(curve.duration_min, curve) == 0.0
    assert iob_fraction(-5.0, curve) == 1.0 and iob_fraction(curve.duration_min + 100, curve) == 0.0
    for t in (1.0, 30.0, curve.peak_min, 180.0, curve.duration_min - 1):
        assert iob_fraction(t, curve) == pytest.approx(closed_form_iob(t, curve.peak_min, curve.duration_min),
                                                       abs=1e-12)
    assert closed_form_iob(curve.duration_min, curve.peak_min, curve.duration_min) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("curve", CURVES)
def test_iob_monotone_and_activity_integrates_to_one(curve):
    t = np.linspace(0.0, curve.duration_min, 20001)
    iob = iob_fraction(t, curve)
    assert np.all(np.diff(iob) <= 1e-15)
    act = activity_fraction_per_min(t, curve)
    assert np.all(act >= 0.0)
    assert np.trapezoid(act, t) == pytest.approx(1.0, abs=1e-6)
    # activity is minus the derivative of IOB, and peaks at the peak time
    assert np.allclose(-np.gradient(iob, t)[1:-1], act[1:-1], atol=1e-7)
    assert t[np.argmax(act)] == pytest.approx(curve.peak_min, abs=0.1)


def test_single_bolus_iob_and_activity():
    s = settings()
    d = [bolus_record("b1", NOW - 60.0, 4.0)]
    assert insulin_on_board_u(d, s, NOW) == pytest.approx(4.0 * iob_fraction(60.0, s.insulin_curve))
    assert insulin_activity_u_per_min(d, s, NOW) == pytest.approx(4.0 * activity_fraction_per_min(60.0,
                                                                                                 s.insulin_curve))
    assert insulin_on_board_u(d, s, NOW - 61.0) == 0.0  # not delivered yet


def test_basal_counts_relative_to_schedule_and_zero_temp_is_negative():
    s = settings()  # 0.9 U/h scheduled at NOW
    sched = [basal_record("", NOW - 120.0, NOW, 0.9)]
    assert insulin_on_board_u(sched, s, NOW) == pytest.approx(0.0, abs=1e-12)
    zero = [basal_record("z", NOW - 30.0, NOW, 0.0)]
    expected = -sum(0.9 / 60.0 * 5.0 * iob_fraction(NOW - (NOW - 30.0 + 5.0 * (k + 0.5)), s.insulin_curve)
                    for k in range(6))
    assert insulin_on_board_u(zero, s, NOW) == pytest.approx(expected, rel=1e-9)
    assert insulin_on_board_u(zero, s, NOW) < -0.4
    high = [basal_record("h", NOW - 30.0, NOW, 2.9)]
    assert insulin_on_board_u(high, s, NOW) > 0.9


def test_later_confirmed_temp_replaces_earlier_one():
    s = settings()
    a = basal_record("a", NOW - 30.0, NOW, 2.9)  # planned 30 min ...
    b = basal_record("b", NOW - 25.0, NOW + 5.0, 0.9)  # ... replaced after 5 min by scheduled-rate temp
    iob = insulin_on_board_u([a, b], s, NOW)
    only5 = insulin_on_board_u([basal_record("a", NOW - 30.0, NOW - 25.0, 2.9)], s, NOW)
    assert iob == pytest.approx(only5, rel=1e-9)


def test_uncertain_counted_failed_not_confirmed_wins():
    s = settings()
    cmd = bolus_record("x", NOW - 10.0, 3.0, DeliveryStatus.COMMANDED)
    unc = bolus_record("y", NOW - 10.0, 2.0, DeliveryStatus.UNCERTAIN)
    failed = [bolus_record("z", NOW - 10.0, 5.0, DeliveryStatus.COMMANDED),
              bolus_record("z", NOW - 10.0, 0.0, DeliveryStatus.FAILED)]
    confirmed = [bolus_record("w", NOW - 10.0, 5.0, DeliveryStatus.COMMANDED),
                 bolus_record("w", NOW - 10.0, 1.0, DeliveryStatus.CONFIRMED)]
    f = iob_fraction(10.0, s.insulin_curve)
    assert insulin_on_board_u([cmd, unc], s, NOW) == pytest.approx(5.0 * f)
    assert insulin_on_board_u([cmd, unc], s, NOW, include_uncertain=False) == 0.0
    assert insulin_on_board_u(failed, s, NOW) == 0.0
    assert insulin_on_board_u(confirmed, s, NOW) == pytest.approx(1.0 * f)
    assert [r.command_id for r in pending_deliveries([cmd, unc, *failed, *confirmed])] == ["x", "y"]


def test_daily_total_scheduled_plus_boluses_plus_net_basal():
    s = settings()
    assert delivered_last_24h_u([], s, NOW) == pytest.approx(s.basal_u_per_h.daily_total())
    d = [bolus_record("b", NOW - 100, 5.0), bolus_record("old", NOW - 1500, 50.0),
         basal_record("z", NOW - 60, NOW, 0.0)]
    assert delivered_last_24h_u(d, s, NOW) == pytest.approx(s.basal_u_per_h.daily_total() + 5.0 - 0.9, rel=1e-9)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 10)), max_size=6))
def test_iob_bounded_by_boluses_and_never_negative_without_basal(doses):
    s = settings()
    d = [bolus_record(f"b{i}", NOW - age, u) for i, (age, u) in enumerate(doses)]
    iob = insulin_on_board_u(d, s, NOW)
    assert -1e-12 <= iob <= sum(u for _, u in doses) + 1e-9


def test_schedule_varies_within_record():
    s = settings(basal_u_per_h=Schedule.constant(1.0))
    assert insulin_on_board_u([basal_record("", NOW - 300, NOW, 1.0)], s, NOW) == pytest.approx(0.0, abs=1e-12)

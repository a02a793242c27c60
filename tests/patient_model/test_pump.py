"""Tests of the pump model (patient_model.pump)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patient_model.pump import PumpError, PumpModel, PumpParams, quantize_down


def test_bundled_params_load() -> None:
    assert set(PumpParams.names()) == {"Cozmo", "Insulet"}
    p = PumpParams.named("Insulet")
    assert (p.inc_basal_u_per_h, p.inc_bolus_u, p.max_basal_u_per_h, p.max_bolus_u) == (0.05, 0.05, 30.0, 30.0)
    assert PumpParams.named("Cozmo").max_bolus_u == 75.0
    with pytest.raises(PumpError, match="unknown pump"):
        PumpParams.named("Nope")


def test_basal_quantization_never_rounds_up() -> None:
    pump = PumpModel(5)
    got = pump.set_basal(np.array([0.149, 0.15, 0.1, 0.0499, 1.2345]))
    np.testing.assert_allclose(got, [0.10, 0.15, 0.10, 0.0, 1.20])


def test_bolus_quantization_and_cap() -> None:
    pump = PumpModel(4)
    got = pump.request_bolus(np.array([0.149, 2.0, 31.0, 0.04]))
    np.testing.assert_allclose(got, [0.10, 2.0, 30.0, 0.0])
    assert np.all(got <= np.array([0.149, 2.0, 31.0, 0.04]))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.0, max_value=100.0, allow_nan=False), st.sampled_from(["Insulet", "Cozmo"]))
def test_quantized_commands_never_exceed_request_and_lose_less_than_one_step(x: float, name: str) -> None:
    pump = PumpModel(1, PumpParams.named(name))
    p = pump.params
    rate = pump.set_basal(np.array([x]))[0]
    assert rate <= min(x, p.max_basal_u_per_h) + 1e-12
    assert min(x, p.max_basal_u_per_h) - rate < p.inc_basal_u_per_h + 1e-9
    bolus = pump.request_bolus(np.array([x]))[0]
    assert bolus <= min(x, p.max_bolus_u) + 1e-12
    assert min(x, p.max_bolus_u) - bolus < p.inc_bolus_u + 1e-9


def test_basal_cap() -> None:
    pump = PumpModel(2)
    np.testing.assert_allclose(pump.set_basal(np.array([45.0, 30.0])), [30.0, 30.0])


def test_bolus_delivered_in_next_minute_by_default() -> None:
    pump = PumpModel(2)
    pump.set_basal(np.array([1.2, 0.0]))
    pump.request_bolus(np.array([2.0, 0.5]))
    d0 = pump.deliver_minute(0)
    np.testing.assert_allclose(d0, [2.0 + 1.2 / 60, 0.5])
    d1 = pump.deliver_minute(1)
    np.testing.assert_allclose(d1, [1.2 / 60, 0.0])


def test_bolus_speed_limit() -> None:
    pump = PumpModel(1, bolus_speed_u_per_min=1.5)
    pump.request_bolus(np.array([4.0]))
    got = [pump.deliver_minute(t)[0] for t in range(4)]
    np.testing.assert_allclose(got, [1.5, 1.5, 1.0, 0.0])
    np.testing.assert_allclose(pump.delivered_bolus_u, [4.0])


def test_exact_accounting_over_a_day() -> None:
    rng = np.random.default_rng(0)
    n = 20
    pump = PumpModel(n)
    expected = np.zeros(n)
    for t in range(1440):
        if t % 30 == 0:
            expected_rate = pump.set_basal(rng.uniform(0, 3, n))
        if t % 240 == 17:
            expected += pump.request_bolus(rng.uniform(0, 8, n))
        expected += expected_rate / 60.0
        pump.deliver_minute(t)
    np.testing.assert_allclose(pump.delivered_total_u, expected, rtol=1e-12)
    hist = pump.history_u()
    assert hist.shape == (1440, n)
    np.testing.assert_allclose(hist.sum(axis=0), pump.delivered_total_u, rtol=1e-12)
    np.testing.assert_allclose(pump.delivered_bolus_u, pump.history_bolus_u().sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pump.delivered_bolus_u, pump.accepted_bolus_u, rtol=1e-12)
    # every delivered basal minute is a whole number of 0.05 U/h steps
    basal_minutes = (hist - pump.history_bolus_u()) * 60.0 / 0.05
    np.testing.assert_allclose(basal_minutes, np.round(basal_minutes), atol=1e-9)


def test_occlusion_stops_delivery_and_resumes_after_clearing() -> None:
    pump = PumpModel(2)
    pump.set_basal(np.array([1.2, 1.2]))
    pump.request_bolus(np.array([3.0, 3.0]))
    mask = np.array([True, False])
    pump.set_occlusion(mask, True)  # bolus in progress of subject 0 is lost
    np.testing.assert_array_equal(pump.occluded, mask)
    np.testing.assert_allclose(pump.undelivered_bolus_u, [3.0, 0.0])
    delivered = [pump.deliver_minute(t) for t in range(60)]
    assert all(d[0] == 0.0 for d in delivered)
    np.testing.assert_allclose(pump.undelivered_basal_u, [1.2, 0.0])
    # new boluses are rejected while occluded
    np.testing.assert_allclose(pump.request_bolus(np.array([1.0, 1.0])), [0.0, 1.0])
    pump.set_occlusion(mask, False)
    assert not pump.occluded.any()
    d = pump.deliver_minute(60)
    np.testing.assert_allclose(d, [1.2 / 60, 1.2 / 60 + 1.0])
    np.testing.assert_allclose(pump.delivered_total_u, [1.2 / 60, 3.0 + 61 * 1.2 / 60 + 1.0])


def test_repeated_occlusion_does_not_double_count() -> None:
    pump = PumpModel(1)
    pump.request_bolus(np.array([2.0]))
    pump.set_occlusion(np.array([True]), True)
    pump.set_occlusion(np.array([True]), True)
    np.testing.assert_allclose(pump.undelivered_bolus_u, [2.0])


def test_reservoir_runs_empty() -> None:
    pump = PumpModel(2, reservoir_u=np.array([1.0, 100.0]))
    pump.set_basal(np.array([6.0, 6.0]))  # 0.1 U/min
    for t in range(15):
        pump.deliver_minute(t)
    np.testing.assert_allclose(pump.delivered_total_u, [1.0, 1.5])
    np.testing.assert_array_equal(pump.reservoir_empty, [True, False])
    np.testing.assert_allclose(pump.reservoir_u, [0.0, 98.5])
    np.testing.assert_allclose(pump.undelivered_basal_u, [0.5, 0.0])
    np.testing.assert_allclose(pump.request_bolus(np.array([1.0, 1.0])), [0.0, 1.0])


def test_reservoir_shortfall_cancels_bolus() -> None:
    pump = PumpModel(1, reservoir_u=2.0)
    pump.request_bolus(np.array([5.0]))
    d = pump.deliver_minute(0)
    np.testing.assert_allclose(d, [2.0])
    np.testing.assert_allclose(pump.undelivered_bolus_u, [3.0])
    assert pump.reservoir_empty[0]


def test_cancel_bolus() -> None:
    pump = PumpModel(2, bolus_speed_u_per_min=1.0)
    pump.request_bolus(np.array([3.0, 3.0]))
    pump.deliver_minute(0)
    np.testing.assert_allclose(pump.cancel_bolus(np.array([True, False])), [2.0, 0.0])
    pump.deliver_minute(1)
    np.testing.assert_allclose(pump.delivered_bolus_u, [1.0, 2.0])


def test_minutes_must_be_consecutive() -> None:
    pump = PumpModel(1)
    pump.deliver_minute(10)
    with pytest.raises(PumpError, match="expected minute 11"):
        pump.deliver_minute(12)
    with pytest.raises(PumpError, match="integer"):
        pump.deliver_minute(11.5)
    assert pump.first_t_min == 10


@pytest.mark.parametrize("call, match", [
    (lambda p: p.set_basal(np.array([-1.0, 0.0])), "rate_u_per_h: must be >= 0"),
    (lambda p: p.set_basal(np.array([np.nan, 0.0])), "rate_u_per_h: must be finite"),
    (lambda p: p.set_basal(np.zeros(3)), "shape"),
    (lambda p: p.request_bolus(np.array([-0.5, 0.0])), "bolus_u: must be >= 0"),
    (lambda p: p.set_occlusion(np.array([1, 0]), True), "mask"),
])
def test_bad_commands_raise_named_errors(call, match: str) -> None:
    with pytest.raises(PumpError, match=match):
        call(PumpModel(2))


def test_quantize_down_handles_binary_round_off() -> None:
    np.testing.assert_allclose(quantize_down(np.array([0.15, 0.3, 0.7, 2.85]), 0.05), [0.15, 0.3, 0.7, 2.85])
    assert issubclass(PumpError, ValueError)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["basal", "bolus", "occlude", "clear", "cancel", "tick"]),
                          st.floats(min_value=0.0, max_value=40.0, allow_nan=False),
                          st.lists(st.booleans(), min_size=3, max_size=3)), max_size=60),
       st.one_of(st.none(), st.floats(min_value=0.5, max_value=3.0)),
       st.one_of(st.none(), st.floats(min_value=1.0, max_value=50.0)))
def test_insulin_is_conserved_under_any_command_sequence(ops, speed, reservoir) -> None:
    pump = PumpModel(3, bolus_speed_u_per_min=speed, reservoir_u=reservoir)
    t = 0
    for op, x, mask_list in ops:
        mask = np.array(mask_list)
        if op == "basal":
            pump.set_basal(np.where(mask, x, 0.5))
        elif op == "bolus":
            pump.request_bolus(np.where(mask, x, 0.0))
        elif op == "occlude":
            pump.set_occlusion(mask, True)
        elif op == "clear":
            pump.set_occlusion(mask, False)
        elif op == "cancel":
            pump.cancel_bolus(mask)
        d = pump.deliver_minute(t)
        t += 1
        assert np.all(d >= 0.0)
        assert not np.any(d[pump.occluded] > 0.0)
    np.testing.assert_allclose(pump.programmed_basal_u, pump.delivered_basal_u + pump.undelivered_basal_u,
                               atol=1e-9)
    np.testing.assert_allclose(pump.accepted_bolus_u, pump.delivered_bolus_u + pump.undelivered_bolus_u
                               + pump.cancelled_bolus_u + pump.bolus_pending_u, atol=1e-9)
    if reservoir is not None:
        np.testing.assert_allclose(pump.delivered_total_u + pump.reservoir_u, reservoir, atol=1e-9)
        assert np.all(pump.reservoir_u >= 0.0)
    if t:
        np.testing.assert_allclose(pump.history_u().sum(axis=0), pump.delivered_total_u, atol=1e-9)

"""Tests of the CGM error model (patient_model.sensor)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from patient_model.sensor import (CGMModel, CompressionLow, SensorError, SensorFaults, SensorParams,
                                  subject_rng)

FLAT_MG_DL = 120.0


def run(model: CGMModel, times: np.ndarray, truth: float = FLAT_MG_DL) -> np.ndarray:
    return np.array([model.measure(float(t), np.full(model.n, truth)) for t in times])


def test_bundled_params_load() -> None:
    assert set(SensorParams.names()) == {"Dexcom", "GuardianRT", "Navigator"}
    p = SensorParams.named("Dexcom")
    assert (p.pacf, p.gamma, p.lambda_mg_dl, p.delta, p.xi_mg_dl) == (0.7, -0.5444, 15.9574, 1.6898, -5.47)
    assert (p.min_mg_dl, p.max_mg_dl) == (39.0, 600.0)
    assert SensorParams.named("Navigator").min_mg_dl == 32.0
    with pytest.raises(SensorError, match="unknown sensor"):
        SensorParams.named("Libre9")


def test_closed_form_noise_moments_match_published_model() -> None:
    p = SensorParams.named("Dexcom")
    # Breton & Kovatchev 2008: mean error 0.76 mg/dL, SD ~11-12 mg/dL
    assert p.noise_mean_mg_dl() == pytest.approx(0.76, abs=0.01)
    assert 11.0 < p.noise_sd_mg_dl() < 12.5


def test_stationary_noise_statistics_large_cohort() -> None:
    model = CGMModel(1000, seed=3)
    times = np.arange(0, 2 * 1440, 5.0)
    err = run(model, times) - FLAT_MG_DL
    assert not np.isnan(err).any()
    assert abs(err.mean() - 0.76) < 0.5
    assert 10.0 < err.std() < 12.5
    # on the 15-min knots the marginal law is exactly the Johnson SU transform of N(0, 1)
    knots = err[::3]
    assert knots.std() == pytest.approx(SensorParams.named("Dexcom").noise_sd_mg_dl(), rel=0.05)
    # skewed like the published distribution (Johnson SU with gamma < 0 has a right tail)
    assert np.mean(knots) > np.median(knots)


def test_noise_is_autocorrelated_on_the_knot_grid() -> None:
    model = CGMModel(400, seed=5)
    e = run(model, np.arange(0, 1440, 15.0)) - FLAT_MG_DL  # (T, N)
    e = e - e.mean()
    lag1 = np.mean(e[1:] * e[:-1]) / np.mean(e * e)
    lag4 = np.mean(e[4:] * e[:-4]) / np.mean(e * e)
    assert 0.55 < lag1 < 0.8   # AR(1) with PACF 0.7 (slightly changed by the sinh transform)
    assert abs(lag4) < 0.35


def test_noise_interpolates_smoothly_through_knots() -> None:
    model = CGMModel(3, seed=1)
    fine = run(model, np.arange(0, 300, 1.0))
    assert np.max(np.abs(np.diff(fine, axis=0))) < 15.0  # no jumps between 1-min samples


def test_same_seed_same_readings_other_seed_differs() -> None:
    times = np.arange(0, 600, 5.0)
    a = run(CGMModel(5, seed=11), times)
    b = run(CGMModel(5, seed=11), times)
    c = run(CGMModel(5, seed=12), times)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_chunking_invariance_subject_alone_or_in_cohort() -> None:
    keys = [f"adult#{i:03d}" for i in range(100)]
    times = np.arange(0, 3 * 1440, 5.0)
    cohort = run(CGMModel(100, seed=9, subject_keys=keys), times)
    for k in (0, 41, 99):
        alone = run(CGMModel(1, seed=9, subject_keys=[keys[k]]), times)
        np.testing.assert_array_equal(alone[:, 0], cohort[:, k])
    # order of subjects does not matter either
    rev = run(CGMModel(100, seed=9, subject_keys=keys[::-1]), times)
    np.testing.assert_array_equal(rev[:, ::-1], cohort)


def test_noise_does_not_depend_on_query_pattern() -> None:
    coarse = CGMModel(4, seed=2)
    fine = CGMModel(4, seed=2)
    late = coarse.measure(2000.0, np.full(4, 100.0))  # jump far ahead first
    for t in np.arange(0, 2001, 1.0):
        y = fine.measure(float(t), np.full(4, 100.0))
    np.testing.assert_array_equal(late, y)


def test_noise_off_returns_truth() -> None:
    model = CGMModel(3, noise=False)
    g = np.array([50.0, 120.0, 300.0])
    np.testing.assert_array_equal(model.measure(10.0, g), g)


def test_readings_are_clipped_to_sensor_range() -> None:
    model = CGMModel(50, seed=4)
    low = run(model, np.arange(0, 600, 5.0), truth=20.0)
    high = run(CGMModel(50, seed=4), np.arange(0, 600, 5.0), truth=900.0)
    assert low.min() == 39.0 and np.all(low >= 39.0)
    assert high.max() == 600.0 and np.all(high <= 600.0)
    nav = CGMModel(2, SensorParams.named("Navigator"), noise=False)
    np.testing.assert_array_equal(nav.measure(0.0, np.array([10.0, 700.0])), [32.0, 600.0])


def test_dropout_gives_nan_only_in_window() -> None:
    faults = SensorFaults(dropouts=((100.0, 130.0),))
    model = CGMModel(2, noise=False, faults=[faults, SensorFaults()])
    g = np.array([110.0, 110.0])
    assert math.isnan(model.measure(100.0, g)[0])
    assert math.isnan(model.measure(125.0, g)[0])
    assert model.measure(130.0, g)[0] == 110.0  # end exclusive
    assert model.measure(95.0, g)[0] == 110.0
    assert model.measure(110.0, g)[1] == 110.0  # other subject unaffected


def test_nonfinite_truth_gives_no_reading() -> None:
    model = CGMModel(2, noise=False)
    y = model.measure(0.0, np.array([np.nan, 100.0]))
    assert math.isnan(y[0]) and y[1] == 100.0


def test_compression_low_lowers_values_in_window_only() -> None:
    low = CompressionLow(start_min=200.0, end_min=260.0, depth_mg_dl=40.0, ramp_min=10.0)
    with_fault = CGMModel(1, seed=6, faults=[SensorFaults(compression_lows=(low,))])
    clean = CGMModel(1, seed=6)
    times = np.arange(0, 400, 5.0)
    d = (run(clean, times) - run(with_fault, times))[:, 0]
    inside = (times >= 200) & (times < 260)
    np.testing.assert_allclose(d[~inside], 0.0, atol=1e-9)
    assert np.all(d[inside] >= 0.0)
    np.testing.assert_allclose(d[(times >= 210) & (times <= 250)], 40.0)  # full depth between the ramps
    assert d[times == 205][0] == pytest.approx(20.0)  # half-way up the ramp
    assert low.depth_at(199.9) == 0.0 and low.depth_at(260.0) == 0.0


def test_drift_and_calibration_error() -> None:
    faults = SensorFaults(drift_pct_per_day=10.0, calibration_gain=1.1, calibration_offset_mg_dl=-5.0)
    model = CGMModel(1, noise=False, faults=[faults])
    assert model.measure(0.0, np.array([100.0]))[0] == pytest.approx(105.0)
    assert model.measure(1440.0, np.array([100.0]))[0] == pytest.approx(105.0 * 1.1)
    assert model.measure(720.0, np.array([100.0]))[0] == pytest.approx(105.0 * 1.05)


def test_set_faults_on_demand() -> None:
    model = CGMModel(2, noise=False)
    g = np.array([100.0, 100.0])
    assert not np.isnan(model.measure(10.0, g)).any()
    model.set_faults(1, SensorFaults(dropouts=((0.0, 1e9),)))
    y = model.measure(15.0, g)
    assert y[0] == 100.0 and math.isnan(y[1])


def test_first_order_lag_option() -> None:
    model = CGMModel(1, noise=False, lag_tau_min=5.0)
    assert model.measure(0.0, np.array([100.0]))[0] == 100.0
    y = model.measure(5.0, np.array([200.0]))[0]
    assert y == pytest.approx(200.0 - 100.0 * math.exp(-1.0))
    with pytest.raises(SensorError, match="t_min"):
        model.measure(4.0, np.array([200.0]))


def test_is_sample_time() -> None:
    model = CGMModel(1, sample_time_min=5.0)
    assert model.is_sample_time(0.0) and model.is_sample_time(5) and model.is_sample_time(1435.0)
    assert not model.is_sample_time(3.0) and not model.is_sample_time(-5.0)
    assert not model.is_sample_time(float("nan"))


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n:"),
    ({"n": 2, "subject_keys": ["a"]}, "subject_keys"),
    ({"n": 2, "subject_keys": ["a", "a"]}, "unique"),
    ({"n": 1, "sample_time_min": 0.0}, "sample_time_min"),
    ({"n": 1, "lag_tau_min": -1.0}, "lag_tau_min"),
    ({"n": 2, "faults": [SensorFaults()]}, "faults"),
    ({"n": 1, "faults": [((0.0, 1.0),)]}, r"faults\[0\]"),
    ({"n": 1, "seed": -1}, "seed"),
])
def test_bad_construction_raises(kwargs: dict, match: str) -> None:
    with pytest.raises(SensorError, match=match):
        CGMModel(**kwargs)


def test_bad_inputs_raise_named_errors() -> None:
    model = CGMModel(2)
    with pytest.raises(SensorError, match="gsub_mg_dl"):
        model.measure(0.0, np.zeros(3))
    with pytest.raises(SensorError, match="t_min"):
        model.measure(-1.0, np.zeros(2))
    with pytest.raises(SensorError):
        SensorFaults(dropouts=((10.0, 5.0),))
    with pytest.raises(SensorError):
        CompressionLow(0.0, 10.0, -3.0)
    with pytest.raises(SensorError):
        SensorFaults(calibration_gain=0.0)
    assert issubclass(SensorError, ValueError)


def test_subject_rng_is_stable() -> None:
    a = subject_rng(1, "x", 2).standard_normal(3)
    b = subject_rng(1, "x", 2).standard_normal(3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, subject_rng(1, "y", 2).standard_normal(3))
    assert not np.allclose(a, subject_rng(1, "x", 3).standard_normal(3))


@pytest.mark.slow
def test_noise_moments_and_autocorrelation_precisely_large_n() -> None:
    p = SensorParams.named("Dexcom")
    model = CGMModel(5000, seed=21)
    e = np.array([model.noise_mg_dl(t) for t in np.arange(0, 7 * 1440, 15.0)])  # knots only, (T, N)
    assert e.mean() == pytest.approx(p.noise_mean_mg_dl(), abs=0.15)
    assert e.std() == pytest.approx(p.noise_sd_mg_dl(), rel=0.02)
    # the underlying e_n is exactly stationary AR(1): recover it by inverting the Johnson transform
    z = p.gamma + p.delta * np.arcsinh((e - p.xi_mg_dl) / p.lambda_mg_dl)
    assert z.std() == pytest.approx(1.0, rel=0.01)
    assert np.mean(z[1:] * z[:-1]) / np.mean(z * z) == pytest.approx(p.pacf, abs=0.01)
    assert np.mean(z[2:] * z[:-2]) / np.mean(z * z) == pytest.approx(p.pacf ** 2, abs=0.01)

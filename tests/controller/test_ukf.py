"""The twin's UKF: tracking a twin-simulated trajectory, unannounced meals, CGM gaps, outliers, state round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controller.twin_filter import FilterState, FilterStateError, TwinUKF
from patient_model.bergman_twin import IDX_D, IDX_G, TwinParams, simulate

PARAMS = TwinParams.from_settings(weight_kg=70.0, tdi_u=40.0, basal_u_per_h=1.0, isf_mg_dl_per_u=50.0,
                                  carb_ratio_g_per_u=10.0, target_mg_dl=110.0)
N = 120
MEAL_STEP = 40


def _truth(meal_g: float = 0.0, seed: int = 0, sd: float = 8.0):
    u = np.full(N, PARAMS.basal_u_per_min)
    u[10] += 2.0 / 5.0  # a 2 U correction the filter is told about
    carbs = np.zeros(N)
    carbs[MEAL_STEP] = meal_g
    traj = simulate(PARAMS, PARAMS.steady_state(180.0), u, carbs)
    rng = np.random.default_rng(seed)
    return u, traj, traj[:, IDX_G] + rng.normal(0.0, sd, N + 1)


def _run(u, cgm, skip=(), spikes=None):
    ukf = TwinUKF()
    fs = ukf.initial(PARAMS.steady_state(float(cgm[0])), 0.0)
    fs, _ = ukf.update(fs, float(cgm[0]))
    est, var, dist, accepted = [], [], [], []
    for k in range(N):
        fs = ukf.predict(fs, 5.0, float(u[k]), 0.0, PARAMS.vector())
        z = float(cgm[k + 1]) if spikes is None or k + 1 not in spikes else spikes[k + 1]
        if k + 1 not in skip:
            fs, res = ukf.update(fs, z)
            accepted.append((k + 1, res.accepted))
        est.append(fs.x[IDX_G])
        var.append(fs.P[IDX_G, IDX_G])
        dist.append(fs.x[IDX_D])
    return fs, np.array(est), np.array(var), np.array(dist), dict(accepted)


def test_tracks_a_noisy_twin_trajectory():
    u, traj, cgm = _truth(seed=3)
    _, est, _, _, _ = _run(u, cgm)
    truth = traj[1:, IDX_G]
    rmse_filter = float(np.sqrt(np.mean((est[12:] - truth[12:]) ** 2)))
    rmse_cgm = float(np.sqrt(np.mean((cgm[13:] - truth[12:]) ** 2)))
    assert rmse_filter < 0.75 * rmse_cgm


def test_detects_an_unannounced_meal():
    u, traj, cgm = _truth(meal_g=60.0, seed=4)
    _, est, _, dist, _ = _run(u, cgm)
    before = dist[MEAL_STEP - 15:MEAL_STEP]
    after = dist[MEAL_STEP + 2:MEAL_STEP + 10]
    assert np.max(np.abs(before)) < 0.5
    assert np.max(after) > 0.8  # mg/dL/min of unexplained appearance
    assert abs(est[MEAL_STEP + 12] - traj[MEAL_STEP + 13, IDX_G]) < 25.0


def test_predicts_through_a_cgm_gap():
    u, traj, cgm = _truth(seed=5, sd=4.0)
    gap = set(range(60, 72))  # one hour without readings
    _, est, var, _, _ = _run(u, cgm, skip=gap)
    assert var[70] > 2.0 * var[58]  # uncertainty grows through the gap
    assert abs(est[70] - traj[71, IDX_G]) < 15.0  # but the prediction stays close
    assert abs(est[80] - traj[81, IDX_G]) < 10.0  # and it recovers once readings return


def test_rejects_an_outlier_but_follows_a_real_jump():
    u, traj, cgm = _truth(seed=6, sd=4.0)
    _, est, _, _, accepted = _run(u, cgm, spikes={50: float(cgm[50]) + 150.0})
    assert accepted[50] is False
    assert abs(est[49] - traj[50, IDX_G]) < 15.0
    jump = {k: float(cgm[k]) - 80.0 for k in range(90, 100)}  # a persistent offset is eventually accepted
    _, est2, _, _, accepted2 = _run(u, cgm, spikes=jump)
    assert any(accepted2[k] for k in range(90, 100))
    assert abs(est2[98] - (traj[99, IDX_G] - 80.0)) < 25.0


def test_state_round_trips_through_json():
    u, _, cgm = _truth(seed=7)
    fs, *_ = _run(u, cgm)
    back = FilterState.from_json(json.loads(json.dumps(fs.to_json())))
    np.testing.assert_array_equal(back.x, fs.x)
    np.testing.assert_array_equal(back.P, fs.P)
    assert back.t_min == fs.t_min


@pytest.mark.parametrize("bad", [{}, {"t_min": 0, "x": [1, 2], "P": [[1]]},
                                 {"t_min": 0, "x": [float("nan")] * 8, "P": np.eye(8).tolist()}])
def test_malformed_state_raises_a_named_error(bad):
    with pytest.raises(FilterStateError):
        FilterState.from_json(bad)


def test_vectorised_update_equals_filterpys_update():
    """The array-form measurement update gives filterpy's own update (loops over sigma points) to rounding."""
    from controller.twin_filter import _filterpy_kalman, _hx, _make_vector_ukf_class

    kalman = _filterpy_kalman()
    vector_ukf, points_cls = _make_vector_ukf_class()
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = PARAMS.steady_state(float(rng.uniform(60, 300)))
        x[IDX_D] = float(rng.uniform(-1, 3))
        a = rng.normal(size=(8, 8)) * np.array([5, 1e-4, 0.1, 0.1, 3, 3, 0.3, 0.05])
        P = a @ a.T + np.diag(np.full(8, 1e-9))
        z = float(x[IDX_G] + rng.normal(0, 15))
        filters = []
        for cls in (vector_ukf, kalman.UnscentedKalmanFilter):
            f = cls(dim_x=8, dim_z=1, dt=5.0, hx=_hx, fx=lambda s, dt: s,
                    points=points_cls(8, alpha=0.5, beta=2.0, kappa=0.0))
            f.x, f.P, f.R = x.copy(), P.copy(), np.array([[81.0]])
            f.sigmas_f = f.points_fn.sigma_points(f.x, f.P)
            f.update(np.array([z]))
            filters.append(f)
        fast, ref = filters
        np.testing.assert_allclose(fast.x, ref.x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fast.P, ref.P, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(fast.y, ref.y, rtol=1e-12)
        np.testing.assert_allclose(fast.S, ref.S, rtol=1e-12)


def test_sigma_points_equal_filterpys():
    from controller.twin_filter import _filterpy_kalman, _make_vector_ukf_class, _upper_cholesky

    kalman = _filterpy_kalman()
    _, points_cls = _make_vector_ukf_class()
    rng = np.random.default_rng(3)
    for _ in range(10):
        a = rng.normal(size=(8, 8))
        P = a @ a.T + np.eye(8) * 1e-6
        x = rng.normal(size=8) * 50
        ours = points_cls(8, alpha=0.5, beta=2.0, kappa=0.0, sqrt_method=_upper_cholesky).sigma_points(x, P)
        ref = kalman.MerweScaledSigmaPoints(8, alpha=0.5, beta=2.0, kappa=0.0).sigma_points(x, P)
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)

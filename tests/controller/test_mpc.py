"""The MPC problem and solver: condensed forecast against the twin, status, bounds, asymmetry, direction."""

from __future__ import annotations

import numpy as np
import pytest

from controller.mpc import MPCInputs, MPCSolver
from controller.mpc_problem import MPCConfig
from patient_model.bergman_twin import IDX_D, IDX_G, IDX_S, TwinParams, simulate

PARAMS = TwinParams.from_settings(weight_kg=70.0, tdi_u=40.0, basal_u_per_h=1.0, isf_mg_dl_per_u=50.0,
                                  carb_ratio_g_per_u=10.0, target_mg_dl=110.0)
CONFIG = MPCConfig()


@pytest.fixture(scope="module")
def solver() -> MPCSolver:
    return MPCSolver(CONFIG)


def problem(glucose=110.0, disturbance=0.0, carbs_at=None, carbs_g=0.0, u_max=4.0, sensitivity=1.0):
    x0 = PARAMS.steady_state(glucose)
    x0[IDX_D] = disturbance
    x0[IDX_S] = sensitivity
    carbs = np.zeros(CONFIG.horizon_steps)
    if carbs_at is not None:
        carbs[carbs_at] = carbs_g
    return MPCInputs(x0=x0, twin=PARAMS.vector(), u_prev_u_per_h=1.0, carbs_g=carbs, target_mg_dl=110.0,
                     zone_lo_mg_dl=100.0, zone_hi_mg_dl=140.0, hypo_mg_dl=80.0, u_max_u_per_h=u_max)


def test_condensed_forecast_equals_the_twin_simulation(solver):
    inp = problem(glucose=170.0, disturbance=0.5, carbs_at=3, carbs_g=40.0, sensitivity=1.2)
    plan = np.array([2.0, 1.5, 0.0, 1.0, 3.0, 0.5, 1.0, 1.2])
    rates = np.repeat(plan, CONFIG.move_blocks) / 60.0
    traj = simulate(PARAMS, inp.x0, rates, inp.carbs_g)
    np.testing.assert_allclose(solver.predict(plan, inp), traj[1:, IDX_G], rtol=0, atol=1e-8)


def test_steady_state_at_target_keeps_the_basal(solver):
    res = solver.solve(problem(110.0))
    assert res.success, res.status
    assert res.plan_u_per_h[0] == pytest.approx(1.0, abs=0.1)
    assert min(res.predicted_glucose_mg_dl) > 100.0


def test_high_glucose_raises_insulin_within_bounds(solver):
    res = solver.solve(problem(220.0, u_max=3.0))
    assert res.success, res.status
    assert res.plan_u_per_h[0] > 1.5
    assert max(res.plan_u_per_h) <= 3.0 + 1e-9
    assert min(res.plan_u_per_h) >= -1e-9
    assert res.predicted_glucose_mg_dl[-1] < 200.0


def test_low_glucose_suspends(solver):
    res = solver.solve(problem(75.0, disturbance=-0.3))
    assert res.success, res.status
    assert res.plan_u_per_h[0] == pytest.approx(0.0, abs=1e-3)


def test_announced_meal_is_fed_forward(solver):
    without = solver.solve(problem(120.0))
    with_meal = solver.solve(problem(120.0, carbs_at=2, carbs_g=60.0))
    assert with_meal.success
    assert with_meal.plan_u_per_h[0] > without.plan_u_per_h[0] + 0.5
    assert max(with_meal.predicted_glucose_mg_dl) > max(without.predicted_glucose_mg_dl) + 50.0


def test_cost_is_asymmetric_hypo_side(solver):
    """A forecast 40 mg/dL below target must cost more insulin reduction than 40 above costs increase."""
    high = solver.solve(problem(110.0, disturbance=+0.9))
    low = solver.solve(problem(110.0, disturbance=-0.9))
    up = high.plan_u_per_h[0] - 1.0
    down = 1.0 - low.plan_u_per_h[0]
    assert down >= up - 1e-6
    assert min(low.predicted_glucose_mg_dl) > min(high.predicted_glucose_mg_dl) - 60.0


def test_warm_start_gives_the_same_answer(solver):
    inp = problem(190.0, disturbance=0.4)
    cold = solver.solve(inp)
    warm = solver.solve(_with_warm(inp, cold.plan_u_per_h))
    assert warm.success
    np.testing.assert_allclose(warm.plan_u_per_h, cold.plan_u_per_h, atol=1e-5)
    assert warm.iterations <= cold.iterations


def _with_warm(inp: MPCInputs, warm) -> MPCInputs:
    from dataclasses import replace

    return replace(inp, warm_start_u_per_h=tuple(warm))


def test_non_finite_input_is_a_named_failure(solver):
    inp = problem(110.0)
    x0 = inp.x0.copy()
    x0[0] = float("nan")
    from dataclasses import replace

    res = solver.solve(replace(inp, x0=x0))
    assert not res.success
    assert res.status


def test_iteration_limit_is_reported_as_failure():
    tight = MPCSolver(MPCConfig(max_iter=1))
    res = tight.solve(problem(250.0, disturbance=1.0))
    assert not res.success
    assert "Maximum_Iterations" in res.status or res.status == "not_stationary"


def _recorded_stall():
    import json
    from pathlib import Path

    d = json.loads((Path(__file__).parent / "fixtures" / "stalled_solve.json").read_text())
    d.pop("_comment")
    arrays = ("x0", "twin", "carbs_g")
    return MPCInputs(**{k: (np.asarray(v, dtype=float) if k in arrays else v) for k, v in d.items()})


def test_a_stalled_solve_is_retried_from_the_next_start():
    """Recorded in fcl-3day: from its warm start sqpmethod stops at a non-stationary point; the retry solves it."""
    from controller.mpc import MPCSolver

    solver = MPCSolver(MPCConfig())
    inp = _recorded_stall()
    result = solver.solve(inp)
    assert result.success and "(start 2)" in result.status
    first = next(solver._starts(inp, inp.u_max_u_per_h))
    np.testing.assert_allclose(first[: len(inp.warm_start_u_per_h)], inp.warm_start_u_per_h)
    p, a, B, aE, bE = solver.parameters(inp)
    ubx = np.full(solver.config.n_vars, inp.u_max_u_per_h)
    ubx[-1] = inp.bolus_max_u
    alone = solver._solve_from(first, p, np.zeros(solver.config.n_vars), ubx, a, B, aE, bE)
    assert not alone.success and alone.status == "not_stationary"


def test_when_every_start_fails_the_last_failure_is_returned(monkeypatch):
    from controller.mpc import MPCResult, MPCSolver

    solver = MPCSolver(MPCConfig())
    calls = []

    def failing(w0, *args):
        calls.append(w0.copy())
        return MPCResult(False, "not_stationary")

    monkeypatch.setattr(solver, "_solve_from", failing)
    result = solver.solve(_recorded_stall())
    assert not result.success and result.status == "not_stationary"
    assert len(calls) == 4  # warm start, scheduled basal, zero, half the maximum
    assert np.all(calls[2] == 0.0)

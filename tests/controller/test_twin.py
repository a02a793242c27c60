"""The control twin: parameter derivation against closed-form targets, NumPy and CasADi agreement."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from patient_model.bergman_twin import (
    IDX_D, IDX_G, IDX_S, IDX_X, N_STATES, TwinParameterError, TwinParams, casadi_step_function, eventual_glucose,
    rk4_step, simulate,
)

PARAMS = TwinParams.from_settings(weight_kg=70.0, tdi_u=40.0, basal_u_per_h=0.9, isf_mg_dl_per_u=45.0,
                                  carb_ratio_g_per_u=12.0, target_mg_dl=110.0)
STEPS = 240  # 20 h: every insulin and carb effect is complete


def test_steady_state_at_basal_is_an_equilibrium_at_target():
    x0 = PARAMS.steady_state()
    traj = simulate(PARAMS, x0, np.full(STEPS, PARAMS.basal_u_per_min))
    assert np.max(np.abs(traj[:, IDX_G] - 110.0)) < 1e-9
    assert np.max(np.abs(traj - x0)) < 1e-9


def test_one_unit_lowers_glucose_by_isf():
    u = np.full(STEPS, PARAMS.basal_u_per_min)
    u[0] += 1.0 / 5.0  # 1 U over the first 5-minute step
    traj = simulate(PARAMS, PARAMS.steady_state(), u)
    assert traj[-1, IDX_G] == pytest.approx(110.0 - 45.0, abs=0.05)


def test_one_gram_raises_glucose_by_isf_over_cr():
    carbs = np.zeros(STEPS)
    carbs[0] = 30.0
    traj = simulate(PARAMS, PARAMS.steady_state(), np.full(STEPS, PARAMS.basal_u_per_min), carbs)
    assert traj[-1, IDX_G] == pytest.approx(110.0 + 30.0 * 45.0 / 12.0, abs=0.05)


def test_insulin_action_peaks_near_the_curve_peak():
    u = np.full(STEPS, PARAMS.basal_u_per_min)
    u[0] += 1.0 / 5.0
    traj = simulate(PARAMS, PARAMS.steady_state(), u)
    peak_min = 5.0 * int(np.argmax(traj[:, IDX_X]))
    assert 60.0 <= peak_min <= 90.0


def test_eventual_glucose_matches_the_long_run_simulation():
    x0 = PARAMS.steady_state(150.0)
    x0[2] += 2.0
    x0[4] += 20.0
    x0[IDX_X] = 0.002
    x0[IDX_D] = 0.4
    x0[IDX_S] = 1.3
    traj = simulate(PARAMS, x0, np.full(400, PARAMS.basal_u_per_min))
    assert float(eventual_glucose(x0, PARAMS.vector())) == pytest.approx(traj[-1, IDX_G], abs=0.05)


def test_numpy_and_casadi_steps_agree():
    step = casadi_step_function(5.0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = PARAMS.steady_state(float(rng.uniform(60, 300)))
        x[2:6] += rng.uniform(0, 3, 4)
        x[IDX_X] = rng.uniform(-0.003, 0.003)
        x[IDX_D] = rng.uniform(-1, 2)
        x[IDX_S] = rng.uniform(0.6, 1.6)
        u = float(rng.uniform(0, 0.1))
        expected = rk4_step(x, u, PARAMS.vector(), 5.0)
        got = np.asarray(step(x, u, PARAMS.vector()), dtype=float).ravel()
        assert got.shape == (N_STATES,)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_rk4_step_is_vectorised_over_columns():
    xs = np.stack([PARAMS.steady_state(g) for g in (80.0, 120.0, 200.0)], axis=1)
    out = rk4_step(xs, PARAMS.basal_u_per_min + 0.01, PARAMS.vector(), 5.0)
    for j in range(3):
        np.testing.assert_allclose(out[:, j], rk4_step(xs[:, j], PARAMS.basal_u_per_min + 0.01,
                                                       PARAMS.vector(), 5.0), rtol=1e-14)


@pytest.mark.parametrize("field,value", [("isf_mg_dl_per_u", 0.0), ("carb_ratio_g_per_u", -1.0),
                                         ("weight_kg", float("nan")), ("basal_u_per_h", -0.1)])
def test_bad_settings_raise_a_named_error(field, value):
    kwargs = dict(weight_kg=70.0, tdi_u=40.0, basal_u_per_h=0.9, isf_mg_dl_per_u=45.0, carb_ratio_g_per_u=12.0)
    kwargs[field] = value
    with pytest.raises(TwinParameterError, match=field):
        TwinParams.from_settings(**kwargs)


def test_params_round_trip_through_a_dict():
    assert TwinParams.from_dict(PARAMS.to_dict()) == PARAMS


def test_twin_module_imports_no_other_project_package():
    src = Path(__file__).resolve().parents[2] / "patient_model" / "bergman_twin.py"
    tree = ast.parse(src.read_text())
    project = {"safety", "controller", "trials", "twinloop", "hil", "drivers"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in project, name

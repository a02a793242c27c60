"""Behaviour of the vectorized S2008 simulator: steady state, API, validation, physiology options."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from patient_model.cohort import load_all, load_subject
from patient_model.physiology import InvalidOptionsError, PhysiologyOptions, daily_profile, hypo_risk
from patient_model.uva_padova import (
    N_STATES,
    STATE_NAMES,
    CohortSimulator,
    InvalidInputError,
    InvalidParameterError,
    InvalidStateError,
    UvaPadovaParams,
    basal_state,
    initial_state,
)


@pytest.fixture(scope="module")
def params_all() -> UvaPadovaParams:
    return UvaPadovaParams.from_subjects(load_all())


def _fasting(params: UvaPadovaParams, n_min: int) -> tuple[np.ndarray, np.ndarray]:
    cho = np.zeros((n_min, params.n))
    ins = np.tile(params.basal_insulin_u_per_min, (n_min, 1))
    return cho, ins


def test_state_names_and_shapes(params_all: UvaPadovaParams) -> None:
    assert len(STATE_NAMES) == N_STATES == 13
    assert params_all.n == 30
    x0 = initial_state(params_all)
    assert x0.shape == (13, 30)
    np.testing.assert_allclose(x0, basal_state(params_all), rtol=1e-9)


def test_basal_insulin_units(params_all: UvaPadovaParams) -> None:
    s = load_subject("adult#001")
    i = params_all.names.index("adult#001")
    # adult#001: u2ss 1.2386244136 pmol/kg/min, BW 102.32 kg -> 0.0211 U/min (the trace's basal)
    assert params_all.basal_insulin_u_per_min[i] == pytest.approx(0.021122675, rel=1e-6)
    assert s.basal_u_per_h == pytest.approx(0.021122675 * 60, rel=1e-6)


def test_every_subject_stays_at_gb_for_24h_at_basal(params_all: UvaPadovaParams) -> None:
    cho, ins = _fasting(params_all, 1440)
    res = CohortSimulator(params_all).run(cho, ins)
    assert res.bg_mg_dl.shape == (1441, 30)
    dev = np.abs(res.bg_mg_dl - params_all.Gb)
    assert dev.max() <= 0.5
    assert np.abs(res.gsub_mg_dl - params_all.Gb).max() <= 0.5


def test_meal_raises_and_insulin_lowers_glucose() -> None:
    p = UvaPadovaParams.from_subjects([load_subject("adult#001")] * 3)
    n_min = 300
    cho, ins = _fasting(p, n_min)
    cho[10:20, 1] = 5.0  # 50 g, no bolus
    ins[10, 2] += 3.0  # 3 U, no meal
    res = CohortSimulator(p).run(cho, ins)
    gb = p.Gb[0]
    assert abs(res.bg_mg_dl[-1, 0] - gb) < 0.5
    assert res.bg_mg_dl[:, 1].max() > gb + 40
    assert res.bg_mg_dl[:, 2].min() < gb - 20  # CF of adult#001 is 8.8 mg/dL/U; the fall is slow
    # subcutaneous glucose lags plasma glucose
    assert np.argmax(res.gsub_mg_dl[:, 1]) > np.argmax(res.bg_mg_dl[:, 1])


def test_step_equals_run_and_subjects_are_independent(params_all: UvaPadovaParams) -> None:
    rng = np.random.default_rng(3)
    n_min = 120
    cho, ins = _fasting(params_all, n_min)
    cho[5:15] = 5.0
    ins += rng.uniform(0, 0.05, size=ins.shape)
    res = CohortSimulator(params_all).run(cho, ins)
    sim = CohortSimulator(params_all)
    for t in range(n_min):
        sim.step(cho[t], ins[t])
    np.testing.assert_array_equal(sim.bg_mg_dl, res.bg_mg_dl[-1])
    assert sim.t_min == n_min
    # one subject alone gives the same answer as inside the cohort (vectorization has no cross-talk)
    j = 17
    alone = CohortSimulator(params_all.select([j])).run(cho[:, [j]], ins[:, [j]])
    np.testing.assert_allclose(alone.bg_mg_dl[:, 0], res.bg_mg_dl[:, j], rtol=1e-12)


def test_select_carries_state_and_meal_bookkeeping(params_all: UvaPadovaParams) -> None:
    cho, ins = _fasting(params_all, 60)
    cho[0:30] = 5.0
    sim = CohortSimulator(params_all)
    sim.run(cho[:20], ins[:20])
    sub = sim.select([2, 7])
    r_full = sim.run(cho[20:], ins[20:])
    r_sub = sub.run(cho[20:, [2, 7]], ins[20:, [2, 7]])
    np.testing.assert_allclose(r_sub.bg_mg_dl, r_full.bg_mg_dl[:, [2, 7]], rtol=1e-12)


def test_run_records_states_and_time() -> None:
    p = UvaPadovaParams.from_subjects([load_subject("child#002")])
    sim = CohortSimulator(p, t0_min=100.0)
    res = sim.run(np.zeros((5, 1)), np.full((5, 1), 0.01), record_states=True)
    np.testing.assert_array_equal(res.t_min, np.arange(100.0, 106.0))
    assert res.states is not None and res.states.shape == (6, 13, 1)
    np.testing.assert_allclose(res.bg_mg_dl[:, 0], res.states[:, 3, 0] / p.Vg[0])


def test_scalar_and_1d_inputs_broadcast(params_all: UvaPadovaParams) -> None:
    sim = CohortSimulator(params_all)
    sim.step(0.0, 0.02)
    res = CohortSimulator(params_all).run(np.zeros(3), np.full(3, 0.02))
    assert res.bg_mg_dl.shape == (4, 30)


@pytest.mark.parametrize(
    ("cho", "ins", "match"),
    [
        (-1.0, 0.0, "cho_g_per_min must be >= 0"),
        (0.0, np.nan, "insulin_u_per_min has non-finite"),
        (np.zeros(2), 0.0, "shape"),
    ],
)
def test_step_rejects_bad_inputs(cho: object, ins: object, match: str) -> None:
    sim = CohortSimulator(UvaPadovaParams.from_subjects([load_subject("adult#001")] * 3))
    with pytest.raises(InvalidInputError, match=match):
        sim.step(cho, ins)


def test_run_rejects_negative_with_minute_index() -> None:
    sim = CohortSimulator(UvaPadovaParams.from_subjects([load_subject("adult#001")]))
    ins = np.full((10, 1), 0.02)
    ins[7, 0] = -0.1
    with pytest.raises(InvalidInputError, match="minute index 7"):
        sim.run(np.zeros((10, 1)), ins)


def test_bad_parameters_and_state_are_named_errors() -> None:
    p = UvaPadovaParams.from_subjects([load_subject("adult#001")])
    with pytest.raises(InvalidParameterError, match="BW"):
        dataclasses.replace(p, BW=np.array([-1.0]))
    with pytest.raises(InvalidParameterError, match="Vg"):
        dataclasses.replace(p, Vg=np.array([np.nan]))
    with pytest.raises(InvalidParameterError):
        UvaPadovaParams.from_subjects([])
    with pytest.raises(InvalidStateError):
        CohortSimulator(p, x0=np.zeros((12, 1)))
    with pytest.raises(InvalidParameterError):
        CohortSimulator(p, n_substeps=0)
    assert not p.BW.flags.writeable


def test_one_substep_close_to_two() -> None:
    p = UvaPadovaParams.from_subjects(load_all()[:10])
    cho, ins = _fasting(p, 400)
    cho[30:42] = 5.0
    ins[30] += 4.0
    a = CohortSimulator(p, n_substeps=1).run(cho, ins).bg_mg_dl
    b = CohortSimulator(p, n_substeps=2).run(cho, ins).bg_mg_dl
    assert np.abs(a - b).max() < 0.1


# ---------------------------------------------------------------- optional physiology

def test_hypo_risk_matches_published_formula() -> None:
    opts = PhysiologyOptions(hypo_risk_term=True)
    gb = np.array([120.0, 120.0, 120.0, 120.0])
    g = np.array([150.0, 100.0, 60.0, 30.0])
    risk = hypo_risk(g, gb, opts)
    f100 = np.log(100.0) ** 0.8124 - np.log(120.0) ** 0.8124
    f60 = np.log(60.0) ** 0.8124 - np.log(120.0) ** 0.8124
    np.testing.assert_allclose(risk, [0.0, 10 * f100**2, 10 * f60**2, 10 * f60**2])


def test_hypo_risk_term_deepens_hypoglycaemia_only() -> None:
    p = UvaPadovaParams.from_subjects([load_subject("adult#003")])
    cho, ins = _fasting(p, 480)
    ins[10, 0] += 8.0  # large correction without a meal
    base = CohortSimulator(p).run(cho, ins).bg_mg_dl[:, 0]
    hypo = CohortSimulator(p, options=PhysiologyOptions(hypo_risk_term=True)).run(cho, ins).bg_mg_dl[:, 0]
    above = base >= p.Gb[0]
    assert base.min() < 70
    assert hypo.min() < base.min() - 1.0
    # identical until glucose first drops below Gb
    first = int(np.argmax(~above))
    np.testing.assert_allclose(hypo[: first + 1], base[: first + 1], rtol=1e-12)
    # fasting at basal, the term never activates
    cho0, ins0 = _fasting(p, 300)
    steady = CohortSimulator(p, options=PhysiologyOptions(hypo_risk_term=True)).run(cho0, ins0).bg_mg_dl
    assert np.abs(steady - p.Gb).max() < 0.5


def test_daily_profile_breakpoints() -> None:
    opts = PhysiologyOptions(intraday_variation=True)
    levels = np.array(opts.levels)
    assert daily_profile(120.0, opts) @ levels == pytest.approx(1.00)  # 02:00 night
    assert daily_profile(240.0, opts) @ levels == pytest.approx(1.00)  # 04:00 ramp starts
    assert daily_profile(270.0, opts) @ levels == pytest.approx(0.875)  # 04:30 half way
    assert daily_profile(480.0, opts) @ levels == pytest.approx(0.75)  # 08:00 morning
    assert daily_profile(900.0, opts) @ levels == pytest.approx(1.10)  # 15:00 afternoon
    assert daily_profile(1320.0 + 1440.0, opts) @ levels == pytest.approx(1.00)  # 22:00 next day
    with pytest.raises(InvalidOptionsError):
        PhysiologyOptions(breakpoints_min=(600.0, 300.0, 900.0))


def test_intraday_variation_is_seeded_and_raises_morning_glucose() -> None:
    p = UvaPadovaParams.from_subjects(load_all()[10:20])
    cho, ins = _fasting(p, 480)  # 03:00 -> 11:00
    opts = PhysiologyOptions(intraday_variation=True, day_to_day_sd=0.0)
    res = CohortSimulator(p, options=opts, t0_min=180.0).run(cho, ins).bg_mg_dl
    # lower sensitivity in the morning: glucose at 11:00 above its 04:00 value for every subject
    assert np.all(res[480] > res[60] + 1.0)
    noisy = PhysiologyOptions(intraday_variation=True)
    a = CohortSimulator(p, options=noisy, seed=5).run(cho[:120], ins[:120]).bg_mg_dl
    b = CohortSimulator(p, options=noisy, seed=5).run(cho[:120], ins[:120]).bg_mg_dl
    c = CohortSimulator(p, options=noisy, seed=6).run(cho[:120], ins[:120]).bg_mg_dl
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_expm_batched_matches_scipy(params_all: UvaPadovaParams) -> None:
    import scipy.linalg

    from patient_model.uva_padova import _linear_insulin_system, expm_batched

    m = _linear_insulin_system(params_all)
    for scale in (0.25, 1.0, 5.0):
        np.testing.assert_allclose(expm_batched(m * scale), scipy.linalg.expm(m * scale), rtol=1e-10, atol=1e-12)


def test_metamorphic_permutation_and_time_shift(params_all: UvaPadovaParams) -> None:
    """Permuting subjects permutes the outputs; without intraday physiology the start clock does not matter."""
    rng = np.random.default_rng(9)
    cho, ins = _fasting(params_all, 180)
    cho[20:32] = 5.0
    ins[20] += rng.uniform(0.5, 6.0, params_all.n)
    perm = rng.permutation(params_all.n)
    base = CohortSimulator(params_all).run(cho, ins).bg_mg_dl
    permuted = CohortSimulator(params_all.select(perm)).run(cho[:, perm], ins[:, perm]).bg_mg_dl
    np.testing.assert_allclose(permuted, base[:, perm], rtol=1e-12)
    shifted = CohortSimulator(params_all, t0_min=777.0).run(cho, ins)
    np.testing.assert_array_equal(shifted.bg_mg_dl, base)
    assert shifted.t_min[0] == 777.0


def test_fast_float32_exp_changes_glucose_negligibly(params_all: UvaPadovaParams) -> None:
    cho, ins = _fasting(params_all, 600)
    cho[30:40] = 5.0
    cho[200:216, ::2] = 5.0  # a second meal for half of them while the first is still being digested
    ins[30] += 3.0
    fast = CohortSimulator(params_all).run(cho, ins).bg_mg_dl
    exact = CohortSimulator(params_all, fast_exp=False).run(cho, ins).bg_mg_dl
    diff = np.abs(fast - exact).max()
    assert 0 < diff < 1e-4  # the paths differ, but far below the 0.1 mg/dL fidelity bar

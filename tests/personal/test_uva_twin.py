"""The physiological personal twin (patient_model/personal_uva.py): its equations against the UVA/Padova simulator,
its CasADi graph against its NumPy simulation, its steady state, its population prior, and twin files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from patient_model import personal_twin as pt
from patient_model import personal_uva as pu
from patient_model.cohort import load_subject
from patient_model.uva_padova import CohortSimulator, UvaPadovaParams


def _own_twin(name: str) -> tuple[pu.UvaTwinBase, np.ndarray, float]:
    """The twin with a reference subject's own S2008 parameters, at the subject's basal."""
    s = load_subject(name)
    p = s.params
    basal = p["u2ss"] * p["BW"] / 6000.0
    base = dataclasses.replace(pu.make_base(p["BW"], basal), fixed=tuple(float(p[n]) for n in pu.FIXED_NAMES))
    theta = np.array([p["Vmx"]] * 4 + [1.0] * 4 + [p["kmax"]] * 4
                     + [p["Gb"], p["EGPb"], p["kp3"], p["p2u"], 1.0, p["kmin"], min(p["kabs"], pu.KABS_MAX_PER_MIN)])
    return base, theta, basal


def _day(name: str, basal: float) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    s = load_subject(name)
    cho = np.zeros(1440)
    ins = np.full(1440, basal)
    meals = [(420.0, 50.0), (720.0, 70.0), (1080.0, 80.0)]
    for t, c in meals:
        cho[int(t):int(t) + 5] = c / 5.0
        ins[int(t)] += c / s.cr_g_per_u
    return cho, ins, meals


@pytest.mark.parametrize("name", ["adult#001", "adolescent#003", "child#005"])
def test_twin_with_a_subjects_own_parameters_reproduces_the_simulator(name: str) -> None:
    """Same equations (plasma insulin at quasi-steady state, 5-minute RK4): one day with three meals and their
    boluses on the twin and on the reference simulator agree within 2 mg/dL RMSE, 8 mg/dL at worst (the twin eats
    each meal at once and keeps plasma insulin at its quasi-steady state)."""
    base, theta, basal = _own_twin(name)
    cho, ins, meals = _day(name, basal)
    res = CohortSimulator(UvaPadovaParams.from_subjects([load_subject(name)])).run(cho[:, None], ins[:, None])
    truth = res.gsub_mg_dl[::5, 0][:288]
    inputs = pt.TwinInputs.from_minutes(0.0, ins, meals, 288)
    g = pu.simulate(base, theta, inputs, pu.initial_state(base, theta, float(truth[0])))[:-1, 0]
    assert float(np.sqrt(np.mean((g - truth) ** 2))) < 2.0
    assert float(np.max(np.abs(g - truth))) < 8.0
    assert truth.max() - truth.min() > 60.0          # the day has real excursions to reproduce


def test_steady_state_is_the_s2008_parameter_set() -> None:
    """kp1, Vm0 and Ib from the twin's steady state equal the reference subject's (which S2008 derives the same way)."""
    p = load_subject("adult#004").params
    base, theta, _ = _own_twin("adult#004")
    ss = pu._steady(base, theta)
    assert ss["kp1"] == pytest.approx(p["kp1"], rel=1e-6)
    assert ss["vm0"] == pytest.approx(p["Vm0"], rel=1e-6)
    assert ss["ib"] == pytest.approx(p["Ib"], rel=1e-6)
    # at the programmed basal with an empty gut the twin stays where it is
    x0 = pu.initial_state(base, theta, p["Gb"])
    inputs = pt.TwinInputs.from_minutes(0.0, np.full(1440, p["u2ss"] * p["BW"] / 6000.0), [], 288)
    g = pu.simulate(base, theta, inputs, x0)[:, 0]
    assert np.max(np.abs(g - p["Gb"])) < 1e-6


def test_casadi_graph_equals_numpy_simulation() -> None:
    import casadi as ca

    base, theta, basal = _own_twin("child#002")
    _, ins, meals = _day("child#002", basal)
    inputs = pt.TwinInputs.from_minutes(0.0, ins, meals, 288)
    z = ca.MX.sym("z", pu.N_FIT)
    f = ca.Function("f", [z], [pu.casadi_trajectory(base, ca.exp(z), inputs, 150.0)])
    traj = np.asarray(f(np.log(theta)))
    ref = pu.simulate(base, theta, inputs, pu.initial_state(base, theta, 150.0))
    np.testing.assert_allclose(traj.T, ref[1:], rtol=1e-9, atol=1e-9)


def test_population_prior_leaves_out_the_excluded_subject() -> None:
    full = pu.make_base(70.0, 0.02)
    loo = pu.make_base(70.0, 0.02, ("adult#001",))
    assert len(full.population) == 30 and len(loo.population) == 29 and "adult#001" not in loo.population
    assert full.prior_median != loo.prior_median
    median, sd = pu.prior(full)
    assert np.all(median > 0) and np.all(sd > 0)
    lo, hi = pu.log_bounds(full, 2.5)
    assert np.all(np.exp(hi[pu.I_KABS]) <= pu.KABS_MAX_PER_MIN + 1e-12)
    assert np.exp(lo[pu.I_EGPB]) >= pu.EGPB_MIN - 1e-12
    with pytest.raises(ValueError):
        pu.make_base(0.0, 0.02)
    with pytest.raises(ValueError):
        pu.make_base(70.0, float("nan"))


def test_base_round_trips_and_rejects_bad_values() -> None:
    base = pu.make_base(55.0, 0.015, ("child#001",))
    assert pu.UvaTwinBase.from_dict(base.to_dict()) == base
    bad = base.to_dict()
    bad["weight_kg"] = -1.0
    with pytest.raises(ValueError):
        pu.UvaTwinBase.from_dict(bad)
    short = base.to_dict()
    short["prior_log_sd"] = short["prior_log_sd"][:3]
    with pytest.raises(ValueError):
        pu.UvaTwinBase.from_dict(short)


def test_carb_counting_floor_is_exact_without_counting_error() -> None:
    """The floor of the same-therapy prediction (the true subject given the announced carbs) reproduces the record
    exactly when the announced carbs are the eaten ones, and departs from it when they are not."""
    from trials.personal.validation import carb_counting_floor

    exact = carb_counting_floor("adult#001", seed=2, days=3, fit_days=2, carb_error_sd_pct=0.0)
    assert abs(exact["tir_error"]) < 1e-9 and abs(exact["bias_mg_dl"]) < 5.0
    noisy = carb_counting_floor("adult#001", seed=2, days=3, fit_days=2, carb_error_sd_pct=20.0)
    assert noisy["rmse_mg_dl"] > exact["rmse_mg_dl"]

"""Fidelity of the fixed-step cohort integrator against (a) the shared simglucose traces and (b) an independent
adaptive reference integrator (scipy DOP853, rtol 1e-8, restarted every minute) on other meal/bolus patterns.

Bar (issue 2): per trace, bg RMSE <= 0.1 mg/dL and max abs error <= 0.5 mg/dL.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from patient_model.cohort import load_all, load_subject
from patient_model.uva_padova import CohortSimulator, UvaPadovaParams, initial_state

RMSE_BAR_MG_DL = 0.1
MAX_BAR_MG_DL = 0.5
GUARDED = (3, 4, 5, 9, 10, 11, 12)


def reference_rhs(x: np.ndarray, p: UvaPadovaParams, d_mg: np.ndarray, ins_pmol: np.ndarray,
                  dbar_mg: np.ndarray) -> np.ndarray:
    """simglucose's T1DPatient.model written out independently, over (13, N) states."""
    dx = np.zeros_like(x)
    qsto = x[0] + x[1]
    pos = dbar_mg > 0
    safe = np.where(pos, dbar_mg, 1.0)
    aa = 5 / 2 / (1 - p.b) / safe
    cc = 5 / 2 / p.d / safe
    kgut_meal = p.kmin + (p.kmax - p.kmin) / 2 * (np.tanh(aa * (qsto - p.b * safe))
                                                  - np.tanh(cc * (qsto - p.d * safe)) + 2)
    kgut = np.where(pos, kgut_meal, p.kmax)
    dx[0] = -p.kmax * x[0] + d_mg
    dx[1] = p.kmax * x[0] - x[1] * kgut
    dx[2] = kgut * x[1] - p.kabs * x[2]
    rat = p.f * p.kabs * x[2] / p.BW
    egp = p.kp1 - p.kp2 * x[3] - p.kp3 * x[8]
    et = np.where(x[3] > p.ke2, p.ke1 * (x[3] - p.ke2), 0.0)
    dx[3] = np.maximum(egp, 0) + rat - p.Fsnc - et - p.k1 * x[3] + p.k2 * x[4]
    uid = (p.Vm0 + p.Vmx * x[6]) * x[4] / (p.Km0 + x[4])
    dx[4] = -uid + p.k1 * x[3] - p.k2 * x[4]
    dx[5] = -(p.m2 + p.m4) * x[5] + p.m1 * x[9] + p.ka1 * x[10] + p.ka2 * x[11]
    it = x[5] / p.Vi
    dx[6] = -p.p2u * x[6] + p.p2u * (it - p.Ib)
    dx[7] = -p.ki * (x[7] - it)
    dx[8] = -p.ki * (x[8] - x[7])
    dx[9] = -(p.m1 + p.m30) * x[9] + p.m2 * x[5]
    dx[10] = ins_pmol - (p.ka1 + p.kd) * x[10]
    dx[11] = p.kd * x[10] - p.ka2 * x[11]
    dx[12] = -p.ksc * x[12] + p.ksc * x[3]
    for i in GUARDED:
        dx[i] = (x[i] >= 0) * dx[i]
    return dx


def reference_simulate(p: UvaPadovaParams, x0: np.ndarray, cho: np.ndarray, ins: np.ndarray) -> np.ndarray:
    """Plasma glucose (T+1, N) from DOP853 restarted each minute, with the meal bookkeeping of the traces."""
    n = p.n
    x = x0.copy()
    last_qsto = x[0] + x[1]
    food_mg = np.zeros(n)
    last_cho = np.zeros(n)
    bg = [x[3] / p.Vg]
    for t in range(cho.shape[0]):
        start = (cho[t] > 0) & (last_cho <= 0)
        last_qsto = np.where(start, x[0] + x[1], last_qsto)
        food_mg = np.where(start, 0.0, food_mg) + cho[t] * 1000
        last_cho = cho[t]
        dbar = last_qsto + food_mg
        d_mg = cho[t] * 1000
        ins_pmol = ins[t] * 6000 / p.BW

        def f(_t: float, flat: np.ndarray) -> np.ndarray:
            return reference_rhs(flat.reshape(13, n), p, d_mg, ins_pmol, dbar).ravel()

        sol = solve_ivp(f, (0.0, 1.0), x.ravel(), method="DOP853", rtol=1e-8, atol=1e-8)
        assert sol.success
        x = sol.y[:, -1].reshape(13, n)
        bg.append(x[3] / p.Vg)
    return np.array(bg)


def scenario(p: UvaPadovaParams, cr_g_per_u: np.ndarray, n_min: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random day per subject: 3-4 meals (20-110 g at 5 g/min, sometimes back to back) with correct, missed,
    oversized (2-3x) or late boluses, a 2-h basal suspension and a correction bolus."""
    rng = np.random.default_rng(seed)
    n = p.n
    cho = np.zeros((n_min, n))
    ins = np.tile(p.basal_insulin_u_per_min, (n_min, 1))
    for j in range(n):
        t = int(rng.integers(20, 90))
        while t < n_min - 60:
            carbs_g = float(rng.uniform(20, 110))
            full, rest = divmod(carbs_g, 5.0)
            m = int(full)
            cho[t:t + m, j] = 5.0
            if rest > 0 and t + m < n_min:
                cho[t + m, j] = rest
            kind = rng.integers(0, 4)
            bolus_u = carbs_g / cr_g_per_u[j]
            if kind == 0:
                ins[t, j] += bolus_u
            elif kind == 1:
                pass  # missed bolus
            elif kind == 2:
                ins[t, j] += bolus_u * rng.uniform(2.0, 3.0)  # oversized
            else:
                ins[min(t + 45, n_min - 1), j] += bolus_u  # late
            t += int(rng.choice([m + 15, int(rng.integers(180, 360))]))  # sometimes a second course right after
        s = int(rng.integers(0, n_min - 120))
        ins[s:s + 120, j] = 0.0
        ins[int(rng.integers(0, n_min)), j] += float(rng.uniform(0.5, 3.0))
    return cho, ins


def _errors(sim_bg: np.ndarray, ref_bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    err = sim_bg - ref_bg
    return np.sqrt(np.mean(err**2, axis=0)), np.max(np.abs(err), axis=0)


def _read_trace(path: Path) -> dict[str, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _trace_subject(path: Path) -> str:
    stem = path.stem.split("_", 1)[1]  # e.g. adult001
    for group in ("adolescent", "adult", "child"):
        if stem.startswith(group):
            return f"{group}#{stem[len(group):]}"
    raise ValueError(stem)


def test_matches_every_shared_trace(shared_reference: Path) -> None:
    paths = sorted((shared_reference / "uva_padova_s2008" / "traces").glob("*.csv"))
    assert paths, "no traces found"
    traces = [_read_trace(path) for path in paths]
    n_min = min(len(tr["t_min"]) for tr in traces) - 1
    # all traces at once, as one cohort (each subject with its own initial state and inputs)
    p = UvaPadovaParams.from_subjects([load_subject(_trace_subject(path)) for path in paths])
    x0 = np.array([[tr[f"x{i}"][0] for tr in traces] for i in range(13)])
    cho = np.stack([tr["cho_g_per_min"][:n_min] for tr in traces], axis=1)
    ins = np.stack([tr["insulin_u_per_min"][:n_min] for tr in traces], axis=1)
    res = CohortSimulator(p, x0=x0).run(cho, ins)
    ref_bg = np.stack([tr["bg_mg_dl"][: n_min + 1] for tr in traces], axis=1)
    ref_gsub = np.stack([tr["gsub_mg_dl"][: n_min + 1] for tr in traces], axis=1)
    rmse, mx = _errors(res.bg_mg_dl, ref_bg)
    assert np.all(rmse <= RMSE_BAR_MG_DL) and np.all(mx <= MAX_BAR_MG_DL), (rmse, mx)
    _, mx_sub = _errors(res.gsub_mg_dl, ref_gsub)
    assert np.all(mx_sub <= MAX_BAR_MG_DL), mx_sub
    # measured: max abs error 0.002 mg/dL; keep a margin of 20x below the bar as a regression guard
    assert mx.max() < 0.025
    # the glucose excursions are real (the check is not trivially satisfied by a flat line)
    assert np.all(np.ptp(ref_bg, axis=0) > 50)


def test_reference_integrator_itself_matches_a_trace(shared_reference: Path) -> None:
    """The test-side reference reproduces the shared trace, so it is a valid judge on other patterns."""
    tr = _read_trace(shared_reference / "uva_padova_s2008" / "traces" / "A_adult001.csv")
    p = UvaPadovaParams.from_subjects([load_subject("adult#001")])
    n_min = 600  # covers the first meal and bolus
    x0 = np.array([[tr[f"x{i}"][0]] for i in range(13)])
    ref = reference_simulate(p, x0, tr["cho_g_per_min"][:n_min, None], tr["insulin_u_per_min"][:n_min, None])
    assert np.max(np.abs(ref[:, 0] - tr["bg_mg_dl"][: n_min + 1])) < 0.01


def _check_against_reference(subjects: tuple, n_min: int, seed: int) -> tuple[float, float]:
    p = UvaPadovaParams.from_subjects(subjects)
    cr = np.array([s.cr_g_per_u for s in subjects])
    cho, ins = scenario(p, cr, n_min, seed)
    x0 = initial_state(p)
    ref = reference_simulate(p, x0, cho, ins)
    res = CohortSimulator(p).run(cho, ins)
    rmse, mx = _errors(res.bg_mg_dl, ref)
    bad = [(subjects[i].name, rmse[i], mx[i]) for i in range(p.n) if rmse[i] > RMSE_BAR_MG_DL or mx[i] > MAX_BAR_MG_DL]
    assert not bad, bad
    # the scenarios exercise hypo- and hyperglycaemia (EGP clamp, renal threshold)
    return float(ref.min()), float(ref.max())


def test_other_meal_patterns_against_reference_few_subjects() -> None:
    names = ("adolescent#003", "adult#004", "child#005")
    subjects = tuple(load_subject(n) for n in names)
    lo, hi = _check_against_reference(subjects, n_min=720, seed=11)
    assert hi > 180


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_other_meal_patterns_against_reference_all_30(seed: int) -> None:
    lo, hi = _check_against_reference(load_all(), n_min=1440, seed=seed)
    assert lo < 70 and hi > 250

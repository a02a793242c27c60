"""Virtual population generator: steady-state relations, plausibility, determinism, therapy settings."""

from __future__ import annotations

import numpy as np
import pytest

from patient_model.cohort import GROUPS, Subject, UnknownGroupError, load_all, load_group
from patient_model.population import (
    AGE_RANGE_Y,
    CONSTANT,
    LOG_FREE,
    LOGIT_FREE,
    PopulationError,
    complete_parameters,
    generate_population,
)
from patient_model.uva_padova import PARAM_NAMES, CohortSimulator, UvaPadovaParams

DERIVED = ("Gpb", "Ipb", "m2", "m4", "m30", "Ilb", "u2ss", "isc1ss", "isc2ss", "kp1", "Gtb", "Vm0", "Rdb", "PCRb")


def _fasting_deviation(subjects: tuple[Subject, ...], n_min: int = 1440) -> np.ndarray:
    """Independent re-check: max |bg - Gb| over n_min minutes at the subject's own basal rate."""
    p = UvaPadovaParams.from_subjects(subjects)
    cho = np.zeros((n_min, p.n))
    ins = np.tile(p.basal_insulin_u_per_min, (n_min, 1))
    res = CohortSimulator(p).run(cho, ins)
    return np.abs(res.bg_mg_dl - p.Gb).max(axis=0)


@pytest.fixture(scope="module")
def pop50() -> dict[str, tuple[Subject, ...]]:
    return {g: generate_population(g, 50, seed=2024) for g in GROUPS}


def test_steady_state_relations_reproduce_reference_columns() -> None:
    for s in load_all():
        free = {k: np.array([s.params[k]]) for k in LOG_FREE + LOGIT_FREE}
        if s.name == "adult#004":
            # data quirk: this subject's m2 and m4 imply a CL 5.4 % below its CL column; use the implied value
            assert s.params["m4"] * s.params["Vi"] * s.params["BW"] / 0.4 == pytest.approx(s.params["CL"] / 1.0572,
                                                                                          rel=1e-4)
            free["CL"] = np.array([s.params["m4"] * s.params["Vi"] * s.params["BW"] / 0.4])
        full = complete_parameters(free, {k: s.params[k] for k in CONSTANT})
        for k in DERIVED + tuple(f"x0_{i}" for i in range(1, 14)):
            assert full[k][0] == pytest.approx(s.params[k], rel=1e-6, abs=1e-9), (s.name, k)


def test_fifty_per_group_are_plausible(pop50: dict[str, tuple[Subject, ...]]) -> None:
    everyone = tuple(s for g in GROUPS for s in pop50[g])
    assert len(everyone) == 150
    assert np.all(_fasting_deviation(everyone) <= 2.0)
    for g in GROUPS:
        subjects = pop50[g]
        assert [s.name for s in subjects[:2]] == [f"pop-{g}#0001", f"pop-{g}#0002"]
        assert {s.group for s in subjects} == {g}
        assert len({s.name for s in subjects}) == 50
        for s in subjects:
            assert set(PARAM_NAMES) <= set(s.params)
            assert 70 <= s.params["Gb"] <= 200
            assert s.params["d"] < s.params["b"] < 1 and s.params["kmin"] < s.params["kmax"]
            assert AGE_RANGE_Y[g][0] <= s.age_y <= AGE_RANGE_Y[g][1]
            assert s.weight_kg == s.params["BW"]
            assert s.basal_u_per_h * 24 < s.tdi_u  # bolus share is positive
            assert 1.0 < s.cr_g_per_u < 80 and 1.0 < s.cf_mg_dl_per_u < 200


def test_population_resembles_its_group(pop50: dict[str, tuple[Subject, ...]]) -> None:
    for g in GROUPS:
        refs, pop = load_group(g), pop50[g]
        for k in ("BW", "Vmx", "kp3", "kabs", "u2ss"):
            ref_log = np.log([s.params[k] for s in refs])
            pop_log = np.log([s.params[k] for s in pop])
            assert abs(pop_log.mean() - ref_log.mean()) < 1.2 * ref_log.std() + 0.05, (g, k)
            assert 0.3 * ref_log.std() < pop_log.std() < 2.5 * ref_log.std() + 1e-9, (g, k)
        # children are lighter than adults in the population too
    assert np.median([s.weight_kg for s in pop50["child"]]) < np.median([s.weight_kg for s in pop50["adult"]])


def test_therapy_follows_insulin_sensitivity(pop50: dict[str, tuple[Subject, ...]]) -> None:
    for g in GROUPS:
        pop = pop50[g]
        sens = np.log([s.params["Vmx"] for s in pop])
        cf = np.log([s.cf_mg_dl_per_u for s in pop])
        assert np.corrcoef(sens, cf)[0, 1] > 0.3  # more sensitive -> larger correction factor


def test_same_seed_same_subjects_and_prefix_property() -> None:
    a = generate_population("adults", 6, seed=7)
    b = generate_population("adult", 6, seed=7)
    c = generate_population("adult", 3, seed=7)
    d = generate_population("adult", 3, seed=8)
    assert a == b
    assert a[:3] == c
    assert a[0].params["Vmx"] != d[0].params["Vmx"]


def test_bad_arguments() -> None:
    with pytest.raises(PopulationError):
        generate_population("adult", 0, seed=1)
    with pytest.raises(UnknownGroupError):
        generate_population("infant", 3, seed=1)


@pytest.mark.slow
def test_thousand_per_group_all_plausible() -> None:
    for g in GROUPS:
        subjects = generate_population(g, 1000, seed=1)
        assert len(subjects) == 1000 and len({s.name for s in subjects}) == 1000
        dev = _fasting_deviation(subjects)
        assert np.all(dev <= 2.0), (g, float(dev.max()))
        assert all(70 <= s.params["Gb"] <= 200 for s in subjects)

"""Embedded path: the generated-C MPC solver agrees with the Python CasADi solver; ``twinloop export-c``.

The compile test builds the library once per session into a temporary directory (about 20-90 s on a loaded
machine at -O0) and skips cleanly when there is no C compiler.
"""

from __future__ import annotations

import numpy as np
import pytest

from controller.codegen import build_library, find_c_compiler, library_path, load_compiled
from controller.mpc import MPCInputs, MPCSolver
from controller.mpc_problem import MPCConfig
from patient_model.bergman_twin import IDX_D, IDX_S, TwinParams

CONFIG = MPCConfig()


@pytest.fixture(scope="module")
def library_dir(tmp_path_factory):
    if find_c_compiler() is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("mpc_lib")
    build_library(CONFIG, d, cflags=("-O0",))
    return d


def problems():
    rng = np.random.default_rng(11)
    out = []
    for _ in range(8):
        tp = TwinParams.from_settings(weight_kg=float(rng.uniform(20, 100)), tdi_u=float(rng.uniform(15, 70)),
                                      basal_u_per_h=float(rng.uniform(0.3, 2.0)),
                                      isf_mg_dl_per_u=float(rng.uniform(15, 120)),
                                      carb_ratio_g_per_u=float(rng.uniform(5, 25)))
        x0 = tp.steady_state(float(rng.uniform(60, 320)))
        x0[IDX_D] = float(rng.uniform(-1, 2))
        x0[IDX_S] = float(rng.uniform(0.6, 1.5))
        carbs = np.zeros(CONFIG.horizon_steps)
        if rng.uniform() < 0.5:
            carbs[int(rng.integers(0, 6))] = float(rng.uniform(20, 80))
        basal = tp.basal_u_per_min * 60.0
        out.append(MPCInputs(x0=x0, twin=tp.vector(), u_prev_u_per_h=basal, carbs_g=carbs, target_mg_dl=110.0,
                             zone_lo_mg_dl=100.0, zone_hi_mg_dl=140.0, hypo_mg_dl=80.0,
                             u_max_u_per_h=4.0 * basal))
    return out


def test_compiled_and_python_solvers_agree(library_dir):
    py = MPCSolver(CONFIG)
    c = MPCSolver(CONFIG, use_compiled=True, library_dir=str(library_dir))
    assert c.compiled_loaded
    for inp in problems():
        a = py.solve(inp)
        b = c.solve(inp)
        assert a.success and b.success, (a.status, b.status)
        assert b.solver == "compiled_c"
        np.testing.assert_allclose(b.plan_u_per_h, a.plan_u_per_h, atol=1e-6, rtol=0)
        np.testing.assert_allclose(b.predicted_glucose_mg_dl, a.predicted_glucose_mg_dl, atol=1e-6, rtol=0)


def test_controller_uses_the_compiled_solver_when_present(library_dir):
    import importlib.util
    from pathlib import Path

    from controller.decide import MPCController

    spec = importlib.util.spec_from_file_location("mpc_fixtures",
                                                  Path(__file__).parent / "fixtures" / "make_fixtures.py")
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    snap = fx.scenarios()["rising_high"]
    _, a = MPCController().decide({}, snap)
    _, b = MPCController(use_compiled=True, library_dir=str(library_dir)).decide({}, snap)
    assert a.basal == b.basal
    np.testing.assert_allclose(a.predicted_glucose_mg_dl, b.predicted_glucose_mg_dl, atol=1e-6)


def test_missing_library_means_the_python_solver(tmp_path):
    assert load_compiled(CONFIG, tmp_path) is None
    s = MPCSolver(CONFIG, use_compiled=True, library_dir=str(tmp_path))
    assert not s.compiled_loaded
    assert library_path(CONFIG, tmp_path).name.startswith("libtwinloop_mpc_")


def test_export_c_writes_sources_and_build_files(tmp_path, capsys):
    from twinloop.cli import main

    out = tmp_path / "board"
    assert main(["export-c", "--out", str(out)]) == 0
    for name in ("twinloop_mpc.c", "twinloop_mpc.h", "Makefile", "CMakeLists.txt", "README.txt"):
        assert (out / name).is_file(), name
    src = (out / "twinloop_mpc.c").read_text()
    assert "twinloop_mpc(" in src and "twinloop_condense(" in src
    assert "#include <casadi" not in src  # self-contained
    assert "lib" in (out / "Makefile").read_text()


def test_compiled_condenser_and_gradient_match_casadi(library_dir):
    """The ctypes calls decode CasADi's sparse outputs (B is lower block-triangular) exactly like CasADi does."""
    from controller.c_function import CompiledFunctionError
    from controller.mpc import build_gradient
    from controller.mpc_problem import build_condenser

    compiled = load_compiled(CONFIG, library_dir)
    ref_condense, ref_grad = build_condenser(CONFIG), build_gradient(CONFIG)
    py = MPCSolver(CONFIG)
    for inp in problems():
        got = compiled.condenser(inp.x0, inp.twin, inp.carbs_g)
        want = ref_condense(inp.x0, inp.twin, inp.carbs_g)
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g).reshape(np.asarray(w).shape), np.asarray(w), rtol=1e-12,
                                       atol=1e-9)
        p = py.parameters(inp)[0]
        w = np.linspace(0.0, 2.0, CONFIG.n_vars)
        np.testing.assert_allclose(compiled.gradient(w, p)[0], np.asarray(ref_grad(w, p)).ravel(), rtol=1e-10,
                                   atol=1e-12)
    with pytest.raises(CompiledFunctionError, match="takes 3 arguments"):
        compiled.condenser(np.zeros(8))
    with pytest.raises(CompiledFunctionError, match="expected 8"):
        compiled.condenser(np.zeros(7), np.zeros(8), np.zeros(CONFIG.horizon_steps))


def test_ensure_library_returns_a_built_library_and_says_why_when_it_cannot(library_dir, tmp_path, monkeypatch):
    import controller.codegen as codegen

    messages = []
    assert codegen.ensure_library(CONFIG, library_dir, log=messages.append) == library_path(CONFIG, library_dir)
    assert messages == []  # already built: nothing to do
    monkeypatch.setattr(codegen, "find_c_compiler", lambda: None)
    assert codegen.ensure_library(CONFIG, tmp_path, log=messages.append) is None
    assert messages and "no C compiler" in messages[0]

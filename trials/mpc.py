"""The MPC controllers of a trial.

* ``mpc``: the product's controller as a device runs it: the generated-C solver when its library is built for the
  current problem (``twinloop export-c --build``), otherwise the CasADi solver in Python. The two agree to 1e-6 on
  every problem (tests/controller/test_codegen.py); ``trial.json`` records the solver (``mpc_solver``), the
  report's header and ``twinloop trial`` name it.
* ``mpc-c``: the generated-C solver, required (an error when the library is missing).
"""

from __future__ import annotations

import functools


class CompiledSolverMissing(RuntimeError):
    """``mpc-c`` was asked for but the generated C solver library is not built (``twinloop export-c``)."""


@functools.lru_cache(maxsize=2)
def make_mpc(compiled: bool = False):
    """The :class:`controller.decide.MPCController` of this process (built once: building the CasADi solver takes
    seconds; its warm starts travel in the per-subject controller state, so sharing it is deterministic).

    ``compiled=True`` is ``mpc-c``: the compiled solver or :class:`CompiledSolverMissing`.
    """
    from controller.decide import MPCController

    ctl = MPCController(use_compiled=True)
    if compiled and not ctl.solver.compiled_loaded:
        raise CompiledSolverMissing("mpc-c needs the generated C solver; build it with `twinloop export-c --build` "
                                    "(see docs/controller.md)")
    if compiled:
        ctl.name = "mpc-c"
    return ctl


def solver_kind(controller) -> str:
    """``"compiled C"`` or ``"CasADi (Python)"``: which MPC solver a trial's controller runs."""
    solver = getattr(controller, "solver", None)
    return "compiled C" if getattr(solver, "compiled_loaded", False) else "CasADi (Python)"

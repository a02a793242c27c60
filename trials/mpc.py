"""The MPC controllers of a trial: ``mpc`` (CasADi solver in Python) and ``mpc-c`` (the generated C solver)."""

from __future__ import annotations

import functools


class CompiledSolverMissing(RuntimeError):
    """``mpc-c`` was asked for but the generated C solver library is not built (``twinloop export-c``)."""


@functools.lru_cache(maxsize=2)
def make_mpc(compiled: bool = False):
    """The :class:`controller.decide.MPCController` of this process (built once: building the CasADi solver takes
    seconds; its warm starts travel in the per-subject controller state, so sharing it is deterministic)."""
    from controller.decide import MPCController

    ctl = MPCController(use_compiled=compiled)
    if compiled:
        loaded = getattr(ctl.solver, "compiled_loaded", None)
        ok = loaded() if callable(loaded) else bool(loaded)
        if not ok:
            raise CompiledSolverMissing("mpc-c needs the generated C solver; build it with `twinloop export-c` "
                                        "(see docs/controller.md)")
        ctl.name = "mpc-c"
    return ctl

"""The MPC solve: builds (once) the sqpmethod + qrqp solver of :mod:`controller.mpc_problem`, warm-starts it, checks
its status and returns a plan or a named failure. Uses the generated-C solver when asked to and present.

Nothing here decides what to do on failure: :mod:`controller.decide` falls back to the scheduled basal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

import numpy as np

from controller.mpc_problem import MPCConfig, build_condenser, build_nlp, build_solver, layout_for


_CONVERGED_IF_STATIONARY = frozenset({"Search_Direction_Becomes_Too_Small"})
"""sqpmethod statuses that mean "no further progress": accepted when first-order optimality holds."""


@dataclass(frozen=True, slots=True)
class MPCInputs:
    """One MPC problem (units in names). ``carbs_g[k]`` enter the gut at the start of step ``k``."""

    x0: np.ndarray
    twin: np.ndarray
    u_prev_u_per_h: float
    carbs_g: np.ndarray
    target_mg_dl: float
    zone_lo_mg_dl: float
    zone_hi_mg_dl: float
    hypo_mg_dl: float
    u_max_u_per_h: float
    warm_start_u_per_h: Sequence[float] | None = None
    bolus_max_u: float = 0.0


@dataclass(frozen=True, slots=True)
class MPCResult:
    """Outcome of one solve. ``success`` False means the plan must not be used (``status`` says why)."""

    success: bool
    status: str
    plan_u_per_h: tuple[float, ...] = ()
    predicted_glucose_mg_dl: tuple[float, ...] = ()
    eventual_glucose_mg_dl: float = float("nan")
    iterations: int = 0
    solver: str = "python"
    bolus_u: float = 0.0


_EMPTY = np.zeros(0)


def build_gradient(config: MPCConfig, name: str = "twinloop_grad") -> Any:
    """``Function(w, p) -> gradient of the NLP cost`` (for the first-order optimality check of a solution)."""
    import casadi as ca

    nlp, _ = build_nlp(config)
    return ca.Function(name, [nlp["x"], nlp["p"]], [ca.gradient(nlp["f"], nlp["x"])], ["w", "p"], ["g"])


class MPCSolveError(RuntimeError):
    """Raised by a solver backend that cannot produce a plan; :class:`MPCSolver` turns it into a failed result."""


@dataclass
class MPCSolver:
    """Solver for :class:`MPCConfig` problems.

    Args:
        config: horizon, blocks and weights.
        use_compiled: use the generated-C library from :mod:`controller.codegen` when it exists for ``config``.
        library_dir: where to look for the compiled library (default: :func:`controller.codegen.default_build_dir`).
    """

    config: MPCConfig = field(default_factory=MPCConfig)
    use_compiled: bool = False
    library_dir: str | None = None

    def __post_init__(self) -> None:
        self._solver: Any = None
        self._condenser: Any = None
        self._compiled: Any = None
        self._grad: Any = None
        self.layout = layout_for(self.config)

    # -- construction (lazy: casadi is imported on first use) ---------------------------------------------------
    def _ensure(self) -> None:
        if self._grad is not None:
            return
        if self.use_compiled:
            from controller.codegen import load_compiled

            compiled = load_compiled(self.config, self.library_dir)
            if compiled is not None:
                self._compiled, self._condenser, self._grad = compiled.solver, compiled.condenser, compiled.gradient
                return
        self._condenser = build_condenser(self.config)
        self._grad = build_gradient(self.config)
        self._solver, _ = build_solver(self.config)

    @property
    def compiled_loaded(self) -> bool:
        self._ensure()
        return self._compiled is not None

    def condense(self, inp: MPCInputs) -> tuple[np.ndarray, ...]:
        """The affine forecasts of this problem: ``a, B, ap, Bp, aE, bE`` (see :func:`build_condenser`)."""
        self._ensure()
        a, B, ap, Bp, aE, bE = self._condenser(inp.x0, inp.twin, inp.carbs_g)
        return (np.asarray(a, dtype=float).ravel(), np.asarray(B, dtype=float), np.asarray(ap, dtype=float).ravel(),
                np.asarray(Bp, dtype=float), float(np.asarray(aE, dtype=float).ravel()[0]),
                np.asarray(bE, dtype=float).ravel())

    def parameters(self, inp: MPCInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
        """The NLP parameter vector and the forecast pieces it was made from."""
        a, B, ap, Bp, aE, bE = self.condense(inp)
        p = self.layout.pack(a, B, ap, Bp, aE, bE, inp.u_prev_u_per_h, float(inp.twin[1]) * 60.0, inp.target_mg_dl,
                             inp.zone_lo_mg_dl, inp.zone_hi_mg_dl, inp.hypo_mg_dl)
        return p, a, B, aE, bE

    # -- solving ------------------------------------------------------------------------------------------------
    def solve(self, inp: MPCInputs) -> MPCResult:
        """Solve one problem; never raises for a numerical failure (returns ``success=False``).

        The problem is convex, but sqpmethod can stall short of the optimum (a step judged too small at a point
        whose projected gradient is not zero). Every solution is checked for first-order optimality; one that
        fails it is retried from the next starting point of :meth:`_starts` (the warm start, the scheduled basal,
        no insulin, half the maximum), and the first that passes is used. When none does, the last failure is
        returned (the controller then falls back to the scheduled basal).
        """
        self._ensure()
        m = self.config.n_moves
        n = self.config.n_vars
        try:
            p, a, B, aE, bE = self.parameters(inp)
        except RuntimeError as exc:
            return MPCResult(False, f"condense_error: {exc}".splitlines()[0][:200])
        u_max = float(max(inp.u_max_u_per_h, 0.0))
        b_max = float(max(inp.bolus_max_u, 0.0))
        lbx = np.zeros(n)
        ubx = np.full(n, u_max)
        ubx[m] = b_max
        if not np.isfinite(p).all():
            return MPCResult(False, "non_finite_input")
        result = MPCResult(False, "no_start")
        for attempt, w0 in enumerate(self._starts(inp, u_max)):
            if not np.isfinite(w0).all():
                return MPCResult(False, "non_finite_input")
            result = self._solve_from(w0, p, lbx, ubx, a, B, aE, bE)
            if result.success:
                return result if attempt == 0 else replace(result, status=f"{result.status} (start {attempt + 1})")
            if result.status.startswith("solver_error"):
                return result
        return result

    def _starts(self, inp: MPCInputs, u_max: float) -> Iterator[np.ndarray]:
        """Starting points, in the order tried: the warm start (when given), the scheduled basal, zero, half max
        (made one at a time: nearly every solve needs only the first)."""
        m, n = self.config.n_moves, self.config.n_vars
        if inp.warm_start_u_per_h is not None and len(inp.warm_start_u_per_h) == m:
            w = np.zeros(n)
            w[:m] = np.clip(np.asarray(inp.warm_start_u_per_h, dtype=float), 0.0, u_max)
            yield w
        for rate in (min(float(inp.twin[1]) * 60.0, u_max), 0.0, 0.5 * u_max):
            w = np.zeros(n)
            w[:m] = rate
            yield w

    def _solve_from(self, w0: np.ndarray, p: np.ndarray, lbx: np.ndarray, ubx: np.ndarray, a: np.ndarray,
                    B: np.ndarray, aE: float, bE: np.ndarray) -> MPCResult:
        m, n = self.config.n_moves, self.config.n_vars
        solver_name = "python"
        iterations = 0
        try:
            if self._compiled is not None:
                solver_name = "compiled_c"
                w = self._compiled(w0, p, lbx, ubx, _EMPTY, _EMPTY, np.zeros(n), _EMPTY, outputs=(0,))[0]
                status = "compiled"
                ok = True
            else:
                res = self._solver(x0=w0, p=p, lbx=lbx, ubx=ubx)
                stats = self._solver.stats()
                status = str(stats.get("return_status", "unknown"))
                ok = bool(stats.get("success", False))
                iterations = int(stats.get("iter_count", 0))
                w = np.asarray(res["x"], dtype=float).ravel()
        except (RuntimeError, MPCSolveError) as exc:  # casadi (and c_function) raise RuntimeErrors on failure
            return MPCResult(False, f"solver_error: {exc}".splitlines()[0][:200], solver=solver_name)
        if not ok and status in _CONVERGED_IF_STATIONARY:
            ok = True  # e.g. a warm start already at the optimum: accepted only after the stationarity check below
        if not ok:
            return MPCResult(False, status, tuple(float(v) for v in w), iterations=iterations, solver=solver_name)
        if not np.isfinite(w).all():
            return MPCResult(False, "non_finite_solution", iterations=iterations, solver=solver_name)
        w = np.clip(w, 0.0, ubx)
        if not self._stationary(w, p, ubx):
            return MPCResult(False, "not_stationary", tuple(float(v) for v in w), iterations=iterations,
                             solver=solver_name)
        glucose = a + B @ w
        eventual = aE + float(bE @ w)
        if not np.isfinite(glucose).all():
            return MPCResult(False, "non_finite_prediction", iterations=iterations, solver=solver_name)
        # tolist: the same Python floats as float() of each element, without a Python-level loop
        return MPCResult(True, status, tuple(w[:m].tolist()), tuple(glucose.tolist()), float(eventual), iterations,
                         solver_name, float(w[m]))

    def _stationary(self, w: np.ndarray, p: np.ndarray, ubx: np.ndarray, tol: float = 1e-4) -> bool:
        """First-order optimality for the box: the projected gradient is (nearly) zero."""
        g = np.asarray(self._grad(w, p), dtype=float).ravel()
        projected = w - np.clip(w - g, 0.0, ubx)
        return bool(np.all(np.isfinite(g)) and np.max(np.abs(projected)) <= tol * max(1.0, np.max(np.abs(g))))

    def predict(self, plan_u_per_h: Sequence[float], inp: MPCInputs) -> np.ndarray:
        """Glucose forecast (mg/dL, one per step) of a given plan (block rates, optionally then the bolus)."""
        a, B = self.condense(inp)[:2]
        w = np.zeros(self.config.n_vars)
        plan = np.asarray(plan_u_per_h, dtype=float)
        w[: len(plan)] = plan
        return a + B @ w

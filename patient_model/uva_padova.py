"""UVA/Padova S2008 type 1 diabetes model (Dalla Man 2007, Kovatchev 2009), vectorized over a cohort.

The equations are those of simglucose's ``T1DPatient.model`` (13 states, same order and units, same meal
bookkeeping for gastric emptying, same clamps), so a simulation reproduces simglucose's traces.

Gastric emptying ``kgut`` depends on D = stomach content when the current meal started + food eaten since; a meal
starts when CHO becomes positive after a minute without CHO, and ``kgut = kmax`` while D = 0. D is kept in mg
throughout. (The current simglucose source adds the food eaten in grams to the stomach content in mg; the shared
reference traces were generated with D in mg, and only that reproduces them.)

States (row ``i`` of the ``(13, N)`` state array; see :data:`STATE_NAMES`):

====  =====================  ==========  ====================================================
x0    qsto1                  mg          glucose in the stomach, solid phase
x1    qsto2                  mg          glucose in the stomach, liquid phase
x2    qgut                   mg          glucose in the intestine
x3    Gp                     mg/kg       plasma glucose mass
x4    Gt                     mg/kg       glucose mass in slowly equilibrating tissues
x5    Ip                     pmol/kg     plasma insulin mass
x6    X                      pmol/L      insulin action on glucose utilization
x7    I1                     pmol/L      delayed insulin signal (first compartment)
x8    Id                     pmol/L      delayed insulin action on glucose production
x9    Il                     pmol/kg     liver insulin mass
x10   Isc1                   pmol/kg     subcutaneous insulin, non-monomeric
x11   Isc2                   pmol/kg     subcutaneous insulin, monomeric
x12   Gs                     mg/kg       subcutaneous glucose mass
====  =====================  ==========  ====================================================

Outputs: plasma glucose ``bg_mg_dl = Gp / Vg`` and subcutaneous glucose ``gsub_mg_dl = Gs / Vg``.
Inputs over each minute ``[t, t+1)`` are held constant: ``cho_g_per_min`` (g/min, converted to mg/min) and
``insulin_u_per_min`` (U/min, converted to pmol/kg/min as ``u * 6000 / BW``).

Integration (fixed step, aligned to minute boundaries): the insulin subsystem (x5..x11) is linear with constant
input over a minute, so it is advanced exactly with per-subject matrix exponentials computed once; the six
glucose/meal states (x0..x4, x12) are advanced with classical RK4 in ``n_substeps`` substeps per minute (default 2),
using the exact insulin trajectory (X and Id) at the RK4 stage times. The non-negativity guards of simglucose
(derivative set to 0 while the state is negative, for x3, x4, x5, x9, x10, x11, x12) are applied in the RK4
stages; in the exact linear part they never bind, because with non-negative inputs those states cannot become
negative. By default the two exponentials of the gastric-emptying curve are evaluated in float32 (``fast_exp``),
which changes glucose by less than 1e-6 mg/dL and makes a step about 30 % faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from patient_model.cohort import Subject
    from patient_model.physiology import PhysiologyModifier, PhysiologyOptions

STATE_NAMES: tuple[str, ...] = (
    "qsto1_mg",
    "qsto2_mg",
    "qgut_mg",
    "gp_mg_per_kg",
    "gt_mg_per_kg",
    "ip_pmol_per_kg",
    "x_pmol_per_l",
    "i1_pmol_per_l",
    "id_pmol_per_l",
    "il_pmol_per_kg",
    "isc1_pmol_per_kg",
    "isc2_pmol_per_kg",
    "gs_mg_per_kg",
)
N_STATES = 13

U_TO_PMOL = 6000.0  # pmol per U of insulin (simglucose convention)
_min = np.minimum.reduce  # the ufunc itself: ndarray.min goes through a Python wrapper


class InvalidParameterError(ValueError):
    """Model parameters that are missing, non-finite or physically impossible."""


class InvalidInputError(ValueError):
    """Inputs (CHO, insulin) of the wrong shape, negative or non-finite."""


class InvalidStateError(ValueError):
    """An initial state of the wrong shape or with non-finite values."""


@dataclass(frozen=True, eq=False)
class UvaPadovaParams:
    """S2008 parameters of N subjects: one array of shape (N,) per simglucose parameter name.

    Units follow simglucose / Dalla Man 2007: BW kg; Gb mg/dL; Ib pmol/L; EGPb, kp1, Fsnc, Vm0 mg/kg/min;
    Vg dL/kg; Vi L/kg; rate constants 1/min; u2ss pmol/kg/min; ``x0_1`` .. ``x0_13`` the initial state.
    """

    names: tuple[str, ...]
    BW: np.ndarray
    EGPb: np.ndarray
    Gb: np.ndarray
    Ib: np.ndarray
    kabs: np.ndarray
    kmax: np.ndarray
    kmin: np.ndarray
    b: np.ndarray
    d: np.ndarray
    Vg: np.ndarray
    Vi: np.ndarray
    Ipb: np.ndarray
    Vmx: np.ndarray
    Km0: np.ndarray
    k2: np.ndarray
    k1: np.ndarray
    p2u: np.ndarray
    m1: np.ndarray
    m5: np.ndarray
    CL: np.ndarray
    HEb: np.ndarray
    m2: np.ndarray
    m4: np.ndarray
    m30: np.ndarray
    Ilb: np.ndarray
    ki: np.ndarray
    kp2: np.ndarray
    kp3: np.ndarray
    f: np.ndarray
    Gpb: np.ndarray
    ke1: np.ndarray
    ke2: np.ndarray
    Fsnc: np.ndarray
    Gtb: np.ndarray
    Vm0: np.ndarray
    Rdb: np.ndarray
    PCRb: np.ndarray
    kd: np.ndarray
    ksc: np.ndarray
    ka1: np.ndarray
    ka2: np.ndarray
    dosekempt: np.ndarray
    u2ss: np.ndarray
    isc1ss: np.ndarray
    isc2ss: np.ndarray
    kp1: np.ndarray
    x0_1: np.ndarray
    x0_2: np.ndarray
    x0_3: np.ndarray
    x0_4: np.ndarray
    x0_5: np.ndarray
    x0_6: np.ndarray
    x0_7: np.ndarray
    x0_8: np.ndarray
    x0_9: np.ndarray
    x0_10: np.ndarray
    x0_11: np.ndarray
    x0_12: np.ndarray
    x0_13: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise InvalidParameterError("a cohort needs at least one subject")
        for name in PARAM_NAMES:
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.shape != (n,):
                raise InvalidParameterError(f"parameter {name} has shape {arr.shape}, expected ({n},)")
            if not np.all(np.isfinite(arr)):
                raise InvalidParameterError(f"parameter {name} is not finite for {_first_bad(self.names, arr)}")
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name in _POSITIVE:
            arr = getattr(self, name)
            if np.any(arr <= 0):
                bad = self.names[int(np.argmax(arr <= 0))]
                raise InvalidParameterError(f"parameter {name} must be > 0 (subject {bad})")
        if np.any(self.b >= 1) or np.any(self.d >= 1):
            raise InvalidParameterError("gastric emptying shape parameters b and d must be < 1")

    @classmethod
    def from_subjects(cls, subjects: Sequence[Subject]) -> UvaPadovaParams:
        """Stack the parameters of subjects (anything with ``name`` and a ``params`` mapping)."""
        if len(subjects) == 0:
            raise InvalidParameterError("a cohort needs at least one subject")
        values: dict[str, np.ndarray] = {}
        for name in PARAM_NAMES:
            try:
                values[name] = np.array([float(s.params[name]) for s in subjects])
            except KeyError as exc:
                raise InvalidParameterError(f"subject lacks parameter {name}") from exc
        return cls(names=tuple(s.name for s in subjects), **values)

    @property
    def n(self) -> int:
        """Number of subjects."""
        return len(self.names)

    @property
    def basal_insulin_u_per_min(self) -> np.ndarray:
        """Basal insulin that holds each subject at Gb, U/min (u2ss * BW / 6000)."""
        return self.u2ss * self.BW / U_TO_PMOL

    def select(self, indices: Sequence[int] | np.ndarray) -> UvaPadovaParams:
        """The parameters of a subset of subjects (in the given order)."""
        idx = np.asarray(indices, dtype=int)
        values = {name: getattr(self, name)[idx] for name in PARAM_NAMES}
        return UvaPadovaParams(names=tuple(self.names[i] for i in idx), **values)

    def to_dicts(self) -> list[dict[str, float]]:
        """One ``{name: value}`` dict per subject (handy to build :class:`Subject` objects)."""
        return [{name: float(getattr(self, name)[i]) for name in PARAM_NAMES} for i in range(self.n)]


PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in fields(UvaPadovaParams) if f.name != "names")
_POSITIVE = ("BW", "Vg", "Vi", "Km0", "kabs", "kmax", "kmin", "ki", "ksc", "p2u", "ka1", "ka2", "kd", "m1", "m30")


def _first_bad(names: tuple[str, ...], arr: np.ndarray) -> str:
    return names[int(np.argmax(~np.isfinite(arr)))]


def initial_state(params: UvaPadovaParams) -> np.ndarray:
    """The initial state stored with the parameters (``x0_1`` .. ``x0_13``), shape (13, N)."""
    return np.stack([getattr(params, f"x0_{i + 1}") for i in range(N_STATES)]).astype(float)


def basal_state(params: UvaPadovaParams) -> np.ndarray:
    """The basal steady state at ``u2ss`` with an empty gut, shape (13, N) (equal to ``initial_state`` for the
    reference subjects)."""
    p = params
    zeros = np.zeros(p.n)
    return np.stack([zeros, zeros, zeros, p.Gpb, p.Gtb, p.Ipb, zeros, p.Ib, p.Ib, p.Ilb, p.isc1ss, p.isc2ss, p.Gpb])


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Outputs of :meth:`CohortSimulator.run`.

    Attributes:
        t_min: minutes since midnight of day 0, shape (T+1,).
        bg_mg_dl: plasma glucose at the start of each minute and after the last one, shape (T+1, N).
        gsub_mg_dl: subcutaneous glucose, shape (T+1, N).
        names: subject names, length N.
        states: the 13 states, shape (T+1, 13, N), only when ``record_states=True`` (else None).
    """

    t_min: np.ndarray
    bg_mg_dl: np.ndarray
    gsub_mg_dl: np.ndarray
    names: tuple[str, ...]
    states: np.ndarray | None = None


def _linear_insulin_system(p: UvaPadovaParams) -> np.ndarray:
    """Augmented matrix M (N, 9, 9) of the insulin subsystem z = (x5..x11, u, 1): dz/dt = M z."""
    n = p.n
    m = np.zeros((n, 9, 9))
    # rows: 0 Ip(x5), 1 X(x6), 2 I1(x7), 3 Id(x8), 4 Il(x9), 5 Isc1(x10), 6 Isc2(x11), 7 u, 8 one
    m[:, 0, 0] = -(p.m2 + p.m4)
    m[:, 0, 4] = p.m1
    m[:, 0, 5] = p.ka1
    m[:, 0, 6] = p.ka2
    m[:, 1, 0] = p.p2u / p.Vi
    m[:, 1, 1] = -p.p2u
    m[:, 1, 8] = -p.p2u * p.Ib
    m[:, 2, 0] = p.ki / p.Vi
    m[:, 2, 2] = -p.ki
    m[:, 3, 2] = p.ki
    m[:, 3, 3] = -p.ki
    m[:, 4, 0] = p.m2
    m[:, 4, 4] = -(p.m1 + p.m30)
    m[:, 5, 5] = -(p.ka1 + p.kd)
    m[:, 5, 7] = 1.0
    m[:, 6, 5] = p.kd
    m[:, 6, 6] = -p.ka2
    return m


def expm_batched(m: np.ndarray, terms: int = 20) -> np.ndarray:
    """Matrix exponentials of a stack of small matrices (N, k, k): scaling and squaring with a Taylor series.

    Scaled so that every 1-norm is at most 0.5; 20 Taylor terms then leave a truncation error below 1e-25.
    """
    norm = float(np.max(np.sum(np.abs(m), axis=-2))) if m.size else 0.0
    squarings = max(0, int(np.ceil(np.log2(norm / 0.5)))) if norm > 0.5 else 0
    a = m / (2.0**squarings)
    eye = np.broadcast_to(np.eye(m.shape[-1]), m.shape)
    result = eye + a / terms
    for j in range(terms - 1, 0, -1):  # Horner: I + a/1 (I + a/2 (I + ... ))
        result = eye + np.matmul(a, result) / j
    for _ in range(squarings):
        result = np.matmul(result, result)
    return result


class CohortSimulator:
    """Simulates N subjects of the S2008 model at once, one minute per :meth:`step`.

    Args:
        params: the cohort's parameters.
        x0: initial state (13, N); default :func:`initial_state` (params).
        t0_min: clock at the start, minutes since midnight of day 0 (used by the optional physiology).
        options: optional physiology (:class:`patient_model.physiology.PhysiologyOptions`); default all off.
        seed: seeds the random parts of the optional physiology (unused when it is off).
        n_substeps: RK4 substeps per minute for the glucose/meal states (default 2).
        fast_exp: evaluate the exponentials of the gastric-emptying curve in float32 (SIMD, about 3x faster;
            changes glucose by < 1e-4 mg/dL, see the tests); False for float64 throughout.
    """

    def __init__(
        self,
        params: UvaPadovaParams,
        x0: np.ndarray | None = None,
        t0_min: float = 0.0,
        options: PhysiologyOptions | None = None,
        seed: int = 0,
        n_substeps: int = 2,
        fast_exp: bool = True,
    ) -> None:
        if not isinstance(n_substeps, int) or n_substeps < 1:
            raise InvalidParameterError(f"n_substeps must be a positive integer, got {n_substeps!r}")
        self.params = params
        n = params.n
        state = initial_state(params) if x0 is None else np.array(x0, dtype=float)
        if state.shape != (N_STATES, n):
            raise InvalidStateError(f"initial state has shape {state.shape}, expected ({N_STATES}, {n})")
        if not np.all(np.isfinite(state)):
            raise InvalidStateError("initial state has non-finite values")
        self.state = state
        self.t_min = float(t0_min)
        self.n_substeps = n_substeps
        self.fast_exp = bool(fast_exp)
        self.seed = seed
        self._options = options
        self._physiology: PhysiologyModifier | None = None
        if options is not None and options.any_enabled:
            from patient_model.physiology import PhysiologyModifier as _Modifier

            self._physiology = _Modifier(options, params, seed)
        self._hypo = self._physiology is not None and options is not None and options.hypo_risk_term
        self._intraday = self._physiology is not None and options is not None and options.intraday_variation

        # meal bookkeeping: stomach content at meal start and food eaten since, both mg; previous CHO in g/min
        self.last_qsto_mg = state[0] + state[1]
        self.last_foodtaken_mg = np.zeros(n)
        self.last_cho_g_per_min = np.zeros(n)
        self._anyone_ate_last_minute = False
        self._meal_idle = False

        self._build_linear()
        self._build_buffers()
        self._refresh_meal_shape()

    # ------------------------------------------------------------------ construction
    def _build_linear(self) -> None:
        p = self.params
        m = _linear_insulin_system(p)
        h = 1.0 / self.n_substeps
        k = 2 * self.n_substeps  # stage times: j*h/2 for j = 1..2*n_substeps
        # exact propagators over j*h/2, j = 1..k, as powers of the one for h/2
        step = expm_batched(m * (h / 2.0))
        powers = [step]
        for _ in range(1, k):
            powers.append(np.matmul(powers[-1], step))
        # One table, one einsum per minute: rows X (1) and Id (3) at the stage times 0, h/2, h, ... (time 0 is
        # the identity row: it gives X and Id themselves exactly), then the first 7 rows over one minute.
        eye = np.broadcast_to(np.eye(9), step.shape)
        x_rows = [e[:, 1, :] for e in [eye] + powers]
        id_rows = [e[:, 3, :] for e in [eye] + powers]
        full_rows = [powers[-1][:, i, :] for i in range(7)]
        self._phi = np.ascontiguousarray(np.moveaxis(np.stack(x_rows + id_rows + full_rows, axis=1), 0, -1))
        self._zaug = np.empty((9, p.n))
        self._zaug[8] = 1.0
        self._lin_out = np.empty((2 * (k + 1) + 7, p.n))
        self._stage_x = self._lin_out[:k + 1]  # X at stage times 0, h/2, h, ... (views into the einsum output)
        self._stage_id = self._lin_out[k + 1:2 * (k + 1)]
        self._lin_new = self._lin_out[2 * (k + 1):]
        self._stage_vmxx = np.empty((k + 1, p.n))  # Vmx * X
        self._stage_gt_coef = np.empty((k + 1, 2, p.n))  # what multiplies Gt at each stage: k2, Vm0 + Vmx X
        self._stage_gt_coef[:, 0] = p.k2
        self._stage_egp0 = np.empty((k + 1, p.n))  # kp1 - kp3 * Id

    def _build_buffers(self) -> None:
        p = self.params
        n = p.n
        self._y = np.empty((6, n))
        self._yt = np.empty((6, n))
        self._k = np.empty((6, n))
        self._acc = np.empty((6, n))
        self._t = [np.empty(n) for _ in range(4)]
        self._d_mg = np.zeros(n)
        self._coef2 = np.zeros((2, n))  # 2 * aa, 2 * cc (1/mg)
        self._flux = np.empty((3, n))  # kmax qsto1, kgut qsto2, kabs qgut (mg/min)
        self._flux_coef = np.stack([p.kmax, p.kmax, p.kabs])  # row 1 is overwritten with kgut at each stage
        self._gp_coef = np.stack([p.kp2, p.k1])  # both multiply Gp
        self._gp_terms = np.empty((2, n))
        self._gt_terms = np.empty((2, n))
        self._shift2 = np.zeros((2, n))  # b * D, d * D (mg)
        self._e2 = np.empty((2, n))
        self._e32: np.ndarray | None = np.empty((2, n), dtype=np.float32) if self.fast_exp else None
        self._dk = p.kmax - p.kmin
        self._ra_coef = p.f * p.kabs / p.BW
        self._aa_coef = 5.0 / (1.0 - p.b)  # 2 * aa * D
        self._cc_coef = 5.0 / p.d  # 2 * cc * D
        self._ins_coef = U_TO_PMOL / p.BW
        self._vmx = p.Vmx
        self._kp3 = p.kp3

    # ------------------------------------------------------------------ outputs
    @property
    def n(self) -> int:
        """Number of subjects."""
        return self.params.n

    @property
    def bg_mg_dl(self) -> np.ndarray:
        """Current plasma glucose Gp/Vg, mg/dL, shape (N,)."""
        return self.state[3] / self.params.Vg

    @property
    def gsub_mg_dl(self) -> np.ndarray:
        """Current subcutaneous glucose Gs/Vg, mg/dL, shape (N,)."""
        return self.state[12] / self.params.Vg

    # ------------------------------------------------------------------ stepping
    def _check_inputs(self, cho_g_per_min: np.ndarray, insulin_u_per_min: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        out = []
        for label, value in (("cho_g_per_min", cho_g_per_min), ("insulin_u_per_min", insulin_u_per_min)):
            arr = np.asarray(value, dtype=float)
            if arr.shape == (n,) and arr.min() >= 0.0 and arr.max() < np.inf:  # the common case: two reductions
                out.append(arr)
                continue
            if arr.ndim == 0:
                arr = np.full(n, float(arr))
            if arr.shape != (n,):
                raise InvalidInputError(f"{label} has shape {arr.shape}, expected ({n},)")
            if not np.all(np.isfinite(arr)):
                raise InvalidInputError(f"{label} has non-finite values")
            if np.any(arr < 0):
                raise InvalidInputError(f"{label} must be >= 0 (subject {self.params.names[int(np.argmax(arr < 0))]})")
            out.append(arr)
        return out[0], out[1]

    def step(self, cho_g_per_min: np.ndarray | float, insulin_u_per_min: np.ndarray | float) -> None:
        """Advance one minute with inputs held constant over [t, t+1).

        Args:
            cho_g_per_min: carbohydrate intake, g/min, shape (N,) or scalar.
            insulin_u_per_min: subcutaneous insulin, U/min, shape (N,) or scalar.

        Raises:
            InvalidInputError: wrong shape, negative or non-finite input.
        """
        cho, ins = self._check_inputs(cho_g_per_min, insulin_u_per_min)
        self._step_unchecked(cho, ins)

    def _update_meal(self, cho: np.ndarray) -> None:
        if not cho.any():
            # nobody eats this minute: D is unchanged, only the "previous CHO" memory is cleared
            if self._anyone_ate_last_minute:
                self.last_cho_g_per_min.fill(0.0)
                self._anyone_ate_last_minute = False
            return
        self._anyone_ate_last_minute = True
        start = (cho > 0) & (self.last_cho_g_per_min <= 0)
        if start.any():
            qsto = self.state[0] + self.state[1]
            np.copyto(self.last_qsto_mg, qsto, where=start)
            np.copyto(self.last_foodtaken_mg, 0.0, where=start)
        self.last_foodtaken_mg += cho * 1000.0
        np.copyto(self.last_cho_g_per_min, cho)
        self._refresh_meal_shape()

    def _refresh_meal_shape(self) -> None:
        """Recompute the gastric-emptying shape coefficients from D = stomach content at meal start + food since."""
        dbar = self.last_qsto_mg + self.last_foodtaken_mg
        pos = dbar > 0
        safe = np.where(pos, dbar, 1.0)
        np.divide(self._aa_coef, safe, out=self._coef2[0])
        np.divide(self._cc_coef, safe, out=self._coef2[1])
        self._coef2 *= pos
        np.multiply(self.params.b, dbar, out=self._shift2[0])
        np.multiply(self.params.d, dbar, out=self._shift2[1])

    def _step_unchecked(self, cho: np.ndarray, ins: np.ndarray) -> None:
        st = self.state
        self._update_meal(cho)
        np.multiply(cho, 1000.0, out=self._d_mg)
        if self._intraday:
            self._vmx, self._kp3 = self._physiology.factors(self.t_min)

        # exact insulin subsystem: stage values of X and Id, then the end-of-minute state
        z = self._zaug
        z[:7] = st[5:12]
        np.multiply(ins, self._ins_coef, out=z[7])
        np.einsum("kjn,jn->kn", self._phi, z, out=self._lin_out)
        np.multiply(self._vmx, self._stage_x, out=self._stage_vmxx)
        np.add(self._stage_vmxx, self.params.Vm0, out=self._stage_gt_coef[:, 1])  # Vm0 + Vmx X
        np.multiply(self._kp3, self._stage_id, out=self._stage_egp0)
        np.subtract(self.params.kp1, self._stage_egp0, out=self._stage_egp0)

        # RK4 on the glucose/meal states
        y = self._y
        y[:5] = st[:5]
        y[5] = st[12]
        # empty stomach and gut and no CHO for everybody: meal derivatives and Ra are exactly 0 all minute
        self._meal_idle = not self._d_mg.any() and not y[:3].any()
        if self._meal_idle:
            self._k[:3] = 0.0
            self._acc[:3] = 0.0
        with np.errstate(over="ignore"):
            self._rk4(y)
        st[:5] = y[:5]
        st[12] = y[5]
        st[5:12] = self._lin_new
        self.t_min += 1.0

    def _rk4(self, y: np.ndarray) -> None:
        """``n_substeps`` classical RK4 steps over one minute on the glucose/meal states ``y`` (in place)."""
        h = 1.0 / self.n_substeps
        k, acc, yt = self._k, self._acc, self._yt
        for s in range(self.n_substeps):
            a, m, b = 2 * s, 2 * s + 1, 2 * s + 2  # stage rows at the start, middle and end of the substep
            self._rhs(y, a, acc)  # k1, straight into the accumulator
            np.multiply(acc, h / 2, out=yt)
            yt += y
            self._rhs(yt, m, k)  # k2
            acc += k
            acc += k
            np.multiply(k, h / 2, out=yt)
            yt += y
            self._rhs(yt, m, k)  # k3
            acc += k
            acc += k
            np.multiply(k, h, out=yt)
            yt += y
            self._rhs(yt, b, k)  # k4
            acc += k
            acc *= h / 6
            y += acc

    def _meal_rhs(self, y: np.ndarray, out: np.ndarray) -> None:
        """Derivatives of (qsto1, qsto2, qgut) into ``out[:3]``.

        Gastric emptying kgut(qsto) = kmin + (kmax - kmin)/2 (tanh(A) - tanh(C) + 2) with A = aa (qsto - b D),
        C = cc (qsto - d D); using tanh(u) = 1 - 2 / (1 + exp(2u)) (one exp each, faster than np.tanh):
        kgut = kmax + (kmax - kmin) (1 / (1 + exp(2C)) - 1 / (1 + exp(2A))). exp may overflow to inf, which gives
        the exact limit (the caller silences the warning).
        """
        p = self.params
        t1 = self._t[0]
        q1, q2, qg = y[0], y[1], y[2]
        e = self._e2  # rows: A and C terms, computed together
        np.add(q1, q2, out=t1)
        np.subtract(t1, self._shift2, out=e)
        e *= self._coef2
        if self._e32 is None:
            np.exp(e, out=e)
            e += 1.0
        else:  # float32 exp is SIMD-vectorized (3x faster); relative error ~1e-6 in exp, ~1e-7 in kgut
            np.exp(e, out=self._e32, dtype=np.float32, casting="same_kind")
            np.add(self._e32, 1.0, out=e, dtype=np.float64)
        np.reciprocal(e, out=e)
        np.subtract(e[1], e[0], out=t1)
        t1 *= self._dk
        flux, coef = self._flux, self._flux_coef
        np.add(t1, p.kmax, out=coef[1])  # kgut
        np.multiply(coef, y[:3], out=flux)  # kmax qsto1, kgut qsto2, kabs qgut
        np.subtract(self._d_mg, flux[0], out=out[0])
        np.subtract(flux[:2], flux[1:], out=out[1:3])

    def _rhs(self, y: np.ndarray, stage: int, out: np.ndarray) -> None:
        """Derivatives of (qsto1, qsto2, qgut, Gp, Gt, Gs) into ``out`` at RK4 stage time ``stage`` (h/2 units).

        Vmx * X and kp1 - kp3 * Id at that time come from the exact insulin subsystem.
        While ``_meal_idle`` (nothing in stomach or gut and no CHO, for every subject) the meal derivatives and Ra
        are exactly 0 and are not computed.
        """
        p = self.params
        t1, t2, t3, t4 = self._t
        qg, gp, gt, gs = y[2], y[3], y[4], y[5]
        meal_active = not self._meal_idle
        if meal_active:
            self._meal_rhs(y, out)
        # plasma glucose: max(EGP, 0) + Ra - Fsnc - E - (k1 Gp - k2 Gt)
        gp_terms = self._gp_terms
        np.multiply(self._gp_coef, gp, out=gp_terms)  # kp2 Gp, k1 Gp
        np.subtract(self._stage_egp0[stage], gp_terms[0], out=t1)
        np.maximum(t1, 0.0, out=t1)
        if meal_active:
            np.multiply(self._ra_coef, qg, out=t2)
            t1 += t2
        t1 -= p.Fsnc
        np.subtract(gp, p.ke2, out=t2)
        np.maximum(t2, 0.0, out=t2)
        t2 *= p.ke1
        t1 -= t2
        gt_terms = self._gt_terms
        np.multiply(self._stage_gt_coef[stage], gt, out=gt_terms)  # k2 Gt, (Vm0 + Vmx X) Gt
        np.subtract(gp_terms[1], gt_terms[0], out=t3)  # k1 Gp - k2 Gt
        np.subtract(t1, t3, out=out[3])
        # tissue glucose: -(Vm0 + Vmx X) Gt / (Km0 + Gt) + k1 Gp - k2 Gt
        if self._hypo and self._physiology is not None:
            np.multiply(self._stage_vmxx[stage], self._physiology.hypo_factor(gp, p.Vg, p.Gb), out=t1)
            t1 += p.Vm0
            t1 *= gt
        else:
            t1 = gt_terms[1]
        np.add(p.Km0, gt, out=t2)
        t1 /= t2
        np.subtract(t3, t1, out=out[4])
        # subcutaneous glucose
        np.subtract(gp, gs, out=t4)
        np.multiply(p.ksc, t4, out=out[5])
        # simglucose guards: derivative is 0 while the state is negative (Gp, Gt, Gs)
        if _min(y[3:6], axis=None) < 0.0:
            out[3:6] *= y[3:6] >= 0.0

    def run(
        self,
        cho_g_per_min: np.ndarray,
        insulin_u_per_min: np.ndarray,
        record_states: bool = False,
    ) -> SimulationResult:
        """Advance T minutes with per-minute inputs of shape (T, N) (a (T,) input is broadcast to all subjects).

        Returns:
            :class:`SimulationResult` with bg and gsub of shape (T+1, N): the current values, then after each
            minute.
        """
        cho = np.asarray(cho_g_per_min, dtype=float)
        ins = np.asarray(insulin_u_per_min, dtype=float)
        n = self.n
        if cho.ndim == 1:
            cho = np.repeat(cho[:, None], n, axis=1)
        if ins.ndim == 1:
            ins = np.repeat(ins[:, None], n, axis=1)
        if cho.ndim != 2 or cho.shape[1] != n or ins.shape != cho.shape:
            raise InvalidInputError(f"inputs must have shape (T, {n}); got {cho.shape} and {ins.shape}")
        for label, arr in (("cho_g_per_min", cho), ("insulin_u_per_min", ins)):
            if not np.all(np.isfinite(arr)):
                raise InvalidInputError(f"{label} has non-finite values")
            if np.any(arr < 0):
                row = int(np.argmax((arr < 0).any(axis=1)))
                raise InvalidInputError(f"{label} must be >= 0 (minute index {row})")
        n_min = cho.shape[0]
        t = self.t_min + np.arange(n_min + 1, dtype=float)
        gp = np.empty((n_min + 1, n))
        gs = np.empty((n_min + 1, n))
        states = np.empty((n_min + 1, N_STATES, n)) if record_states else None
        gp[0] = self.state[3]
        gs[0] = self.state[12]
        if states is not None:
            states[0] = self.state
        for i in range(n_min):
            self._step_unchecked(cho[i], ins[i])
            gp[i + 1] = self.state[3]
            gs[i + 1] = self.state[12]
            if states is not None:
                states[i + 1] = self.state
        gp /= self.params.Vg
        gs /= self.params.Vg
        return SimulationResult(t_min=t, bg_mg_dl=gp, gsub_mg_dl=gs, names=self.params.names, states=states)

    def select(self, indices: Sequence[int] | np.ndarray) -> CohortSimulator:
        """A new simulator for a subset of subjects, carrying over their current state and meal bookkeeping."""
        idx = np.asarray(indices, dtype=int)
        sim = CohortSimulator(
            self.params.select(idx),
            x0=self.state[:, idx],
            t0_min=self.t_min,
            options=self._options,
            seed=self.seed,
            n_substeps=self.n_substeps,
            fast_exp=self.fast_exp,
        )
        sim.last_qsto_mg = self.last_qsto_mg[idx].copy()
        sim.last_foodtaken_mg = self.last_foodtaken_mg[idx].copy()
        sim.last_cho_g_per_min = self.last_cho_g_per_min[idx].copy()
        sim._anyone_ate_last_minute = bool(sim.last_cho_g_per_min.any())
        sim._refresh_meal_shape()
        return sim

    subset = select

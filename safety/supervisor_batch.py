"""The supervisor's rules over a whole cohort at once (numpy arrays, one row per subject).

Same rules and constants (:mod:`safety.limits`) as :func:`safety.supervisor.supervise`; a hypothesis test checks
that both agree subject by subject. Covered here: CGM gating, low-glucose suspend (measured, predicted, held), the
CGM-loss revert, every cap, the temp basal duration, rounding, the automatic-bolus fraction and interval. Not covered
(handle per subject with :func:`supervise` when they occur; a trial's virtual pump confirms every command): settings
validation, pump communication loss and empty reservoir, uncertain deliveries, controller errors, stale proposals,
clock jumps, meal duplicates. Occlusion is covered (``pump_occluded``).

Encoding: a proposed rate of NaN means "no basal command"; an approved rate of NaN means "no basal command",
0 means Suspend (or a zero temp), the scheduled rate after a revert means Resume. Readings windows are (N, K),
any order along K (a subject's readings are sorted here like :func:`safety.cgm_gate.assess_cgm` sorts, unless they
are in time order already); a missing entry has NaN time and may sit anywhere; the entries must cover at least the
last 60 min (:data:`safety.limits.CGM_LOOKBACK_MIN`) for the result to equal the scalar supervisor's.

Speed: the rules run time-major, on (K, N) arrays; a caller that keeps its window as a (K, N) array passes ``a.T``
and nothing is copied (:class:`trials.supervision.BatchSupervision`). The cost is mostly per call, not per subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from safety import limits as L
from safety.settings import TherapySettings
from safety.supervisor import REASON_BIT

__all__ = ["BatchVerdict", "supervise_batch", "cohort_settings"]

_BIT = SimpleNamespace(**{r.name: np.int64(bit) for r, bit in REASON_BIT.items()})  # attribute access: no Enum hash
# the rules on recent readings run on the rows holding a recent reading only; the low-glucose evidence must be
# among them
assert L.CGM_STALE_MIN <= L.CGM_CHECK_WINDOW_MIN


@dataclass(frozen=True)
class BatchVerdict:
    """Approved rate (U/h, NaN = no basal command), bolus (U), reason bitmask (see
    :func:`safety.supervisor.reasons_from_mask`) and the next state, all shape (N,)."""

    rate_u_per_h: np.ndarray
    bolus_u: np.ndarray
    reasons: np.ndarray
    lgs_active: np.ndarray
    last_valid_reading_min: np.ndarray
    last_auto_bolus_min: np.ndarray


def cohort_settings(settings: Sequence[TherapySettings], now_min: float | Sequence[float]) -> dict[str, np.ndarray]:
    """Per-subject setting arrays for :func:`supervise_batch` (keyword arguments) at ``now_min``."""
    now = np.broadcast_to(np.asarray(now_min, dtype=float), (len(settings),))
    col = lambda f: np.array([f(s, t) for s, t in zip(settings, now)], dtype=float)  # noqa: E731
    return {
        "scheduled_basal_u_per_h": col(lambda s, t: s.basal_at(t)),
        "max_scheduled_basal_u_per_h": col(lambda s, t: s.basal_u_per_h.max_value),
        "max_basal_u_per_h": col(lambda s, t: s.max_basal_u_per_h),
        "max_bolus_u": col(lambda s, t: s.max_bolus_u),
        "max_iob_u": col(lambda s, t: s.max_iob_u),
        "max_daily_u": col(lambda s, t: s.max_daily_u),
        "target_mg_dl": col(lambda s, t: s.target_mg_dl),
        "isf_mg_dl_per_u": col(lambda s, t: s.isf_at(t)),
        "suspend_threshold_mg_dl": col(lambda s, t: s.suspend_threshold_mg_dl),
        "basal_increment_u_per_h": col(lambda s, t: s.basal_increment_u_per_h),
        "bolus_increment_u": col(lambda s, t: s.bolus_increment_u),
    }


def _col(x, n: int, dtype=float) -> np.ndarray:
    """``x`` as an (n,) array; nothing below writes into these arrays, so a right-shaped input is used as is."""
    a = np.asarray(x, dtype=dtype)
    return a if a.shape == (n,) else np.broadcast_to(a, (n,)).copy()


def _time_major(x, dtype=float) -> np.ndarray:
    """An (N, K) window as a C-contiguous (K, N) array: every rule below then works on whole rows of N subjects,
    and sums along K are sequential. No copy when the caller keeps its window time-major and passes ``a.T``."""
    return np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=dtype)).T)


def _window(g: np.ndarray, t: np.ndarray, st: np.ndarray | None):
    """The readings in the scalar gate's order (:func:`safety.cgm_gate.assess_cgm`), time-major (K, N), and the
    mask of the readings that count (not an exact repeat; None = all of them).

    Every rule looks at present readings only (a missing entry's NaN time fails every time test), so missing
    entries may sit anywhere. A subject whose present readings are already strictly increasing in time is in that
    order and has no repeat: only the other subjects are sorted (as cgm_gate._order) and de-duplicated."""
    present = np.isfinite(t)
    with np.errstate(invalid="ignore"):
        newest_before = _running_max_rows(np.where(present, t, -np.inf))
        unsorted = np.any(present[1:] & ~(t[1:] > newest_before[:-1]), axis=0)
    if not unsorted.any():
        return g, t, st, None
    j = np.flatnonzero(unsorted)
    g, t = g.copy(), t.copy()  # never write into the caller's arrays
    st = np.zeros(g.shape, np.int64) if st is None else st.copy()
    gj, tj, sj = g[:, j], t[:, j], st[:, j]
    order = np.lexsort((sj, np.where(np.isnan(gj), 0.0, gj), np.isnan(gj), tj), axis=0)
    gj, tj, sj = (np.take_along_axis(a, order, axis=0) for a in (gj, tj, sj))
    pj = np.isfinite(tj)  # missing entries are last now: the previous present reading is the row above
    same = np.zeros_like(pj)
    same[1:] = pj[:-1] & (tj[1:] == tj[:-1]) & (gj[1:] == gj[:-1]) & (sj[1:] == sj[:-1])
    g[:, j], t[:, j], st[:, j] = gj, tj, sj
    present[:, j] = pj & ~same
    return g, t, st, present


def _seq_sum(a: np.ndarray) -> np.ndarray:
    """Sum along K in row order, as the scalar gate adds (numpy's pairwise ``sum`` adds in another order; a row
    loop is faster than ``cumsum`` along axis 0). Starts from 0.0 like the scalar sum (a sum of -0.0 is +0.0)."""
    out = np.zeros(a.shape[1])
    for row in a:
        out += row
    return out


def _running_max_rows(a: np.ndarray) -> np.ndarray:
    """``np.maximum.accumulate(a, axis=0)`` in place, row by row (accumulate along axis 0 is slow in numpy)."""
    for j in range(1, a.shape[0]):
        np.maximum(a[j - 1], a[j], out=a[j])
    return a


def supervise_batch(now_min, rate_u_per_h, bolus_u, *, glucose_mg_dl, glucose_t_min, glucose_status=None,
                    iob_u, delivered_24h_u, lgs_active, scheduled_basal_u_per_h, max_scheduled_basal_u_per_h,
                    max_basal_u_per_h, max_bolus_u, max_iob_u, max_daily_u, target_mg_dl, isf_mg_dl_per_u,
                    suspend_threshold_mg_dl, basal_increment_u_per_h=0.05, bolus_increment_u=0.05, duration_min=30.0,
                    bolus_automatic=True, last_valid_reading_min=None, last_auto_bolus_min=None,
                    active_rate_u_per_h=None, pump_occluded=None) -> BatchVerdict:
    """Supervise N subjects at once (module docstring for the encoding). All per-subject inputs broadcast to (N,)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN marks "none" throughout
        st = None if glucose_status is None else _time_major(glucose_status, np.int64)
        g, t = _time_major(glucose_mg_dl), _time_major(glucose_t_min)
        if g.shape[0] == 0:  # no readings at all: one missing reading says the same
            g, t, st = np.full((1, g.shape[1]), np.nan), np.full((1, g.shape[1]), np.nan), None
        g, t, st, counted = _window(g, t, st)
        k_len, n = g.shape
        now = _col(now_min, n)
        thr = _col(suspend_threshold_mg_dl, n)
        sched = _col(scheduled_basal_u_per_h, n)
        iob = _col(iob_u, n)
        total24 = _col(delivered_24h_u, n)
        nan = np.full(n, np.nan)
        prior_valid = nan if last_valid_reading_min is None else _col(last_valid_reading_min, n)
        last_auto = nan if last_auto_bolus_min is None else _col(last_auto_bolus_min, n)
        reasons = np.zeros(n, np.int64)

        def flag(mask, bit: np.int64) -> None:
            np.bitwise_or(reasons, bit, out=reasons, where=mask)

        # ---- CGM gate (mirrors safety.cgm_gate.assess_cgm; sums in the same order). Arrays are (K, N).
        rows = np.arange(k_len)[:, None]
        cols = np.arange(n)

        def last_index(mask: np.ndarray) -> np.ndarray:
            """Per subject, the row of the last True (-1 = none), shape (N,)."""
            return np.max(np.where(mask, rows, -1), axis=0, initial=-1)

        def previous_index(mask: np.ndarray) -> np.ndarray:
            """Per row and subject, the row of the last True strictly before it (-1 = none), shape (K, N)."""
            idx = _running_max_rows(np.where(mask, rows, -1))
            out = np.empty_like(idx)
            out[:1] = -1
            out[1:] = idx[:-1]
            return out

        def take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
            """``a`` at row ``idx`` of each subject's column (row 0 where idx < 0: callers mask those)."""
            return a.ravel().take(np.maximum(idx, 0) * n + cols)

        def value_at(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return np.where(idx >= 0, take(a, idx), np.nan)

        future = t > now + L.CGM_FUTURE_TOLERANCE_MIN  # a repeat of a future reading is one too
        flag(np.any(future, axis=0), _BIT.CGM_FUTURE)
        cons = (t >= now - L.CGM_LOOKBACK_MIN) & ~future
        if counted is not None:
            cons &= counted
        # without status flags value_ok is the range test (NaN fails it)
        vok = cons & ((g > L.CGM_MIN_VALID_MG_DL) & (g <= L.CGM_MAX_VALID_MG_DL) if st is None
                      else L.value_ok(g, st))
        recent = cons & (t >= now - L.CGM_CHECK_WINDOW_MIN)
        rvalid = vok & recent

        i_c, i_v = last_index(cons), last_index(vok)
        has_cons = i_c >= 0
        last_ok = has_cons & (i_c == i_v)  # the last considered reading is valid
        lv_t, lv_g = value_at(t, i_v), value_at(g, i_v)
        t_break = np.max(np.where(vok & (g != lv_g), t, -np.inf), axis=0, initial=-np.inf)
        flat = ~np.isnan(lv_t) & np.any(vok & (g == lv_g) & (t > t_break) & (t <= lv_t - L.CGM_FLAT_MIN), axis=0)
        # the rules on recent readings (duplicates, rates, the regression, low evidence) look at the rows holding a
        # recent reading only (a trial's 13-reading window: the last 5): fewer rows, same readings, same order
        # (the low-glucose evidence looks at the last 12 min, inside the 20 recent ones: see the assert at the top)
        near = np.flatnonzero(np.any(recent, axis=1))
        if near.size == 0:  # nobody has one: any single row gives the same (empty) answers
            near = np.array([k_len - 1])
        rn = slice(near[0], near[-1] + 1) if near[-1] - near[0] + 1 == near.size else near
        t, g, cons, recent, rvalid = t[rn], g[rn], cons[rn], recent[rn], rvalid[rn]
        st = None if st is None else st[rn]
        rows = rows[:t.shape[0]]
        k_len = t.shape[0]
        if not isinstance(rn, slice):  # take() indexes the flattened rows: keep them contiguous
            t, g = np.ascontiguousarray(t), np.ascontiguousarray(g)
        finite_g = np.isfinite(g)
        low_now = ~finite_g | (g < thr)
        usable_value = finite_g if st is None else finite_g | ((st & L.BELOW_RANGE_STATUS) != 0)
        lms = cons & (t >= now - L.CGM_STALE_MIN) & usable_value
        p_idx, q_idx = previous_index(recent), previous_index(rvalid)
        p_t, p_g, q_t, q_g = take(t, p_idx), take(g, p_idx), take(t, q_idx), take(g, q_idx)
        differ = ~((p_g == g) | (np.isnan(p_g) & np.isnan(g)))
        dup = np.any(recent & (p_idx >= 0) & (t - p_t < L.CGM_DUPLICATE_WINDOW_MIN) & differ, axis=0)
        rate_bad = np.any(rvalid & (q_idx >= 0) & (np.abs(g - q_g) > L.CGM_MAX_RATE_MG_DL_PER_MIN
                                                    * np.maximum(t - q_t, L.CGM_RATE_MIN_DT_MIN)), axis=0)
        last_usable = value_at(t, last_index(lms))
        # sums in row order, as the scalar gate adds them
        cnt = np.count_nonzero(rvalid, axis=0).astype(float)
        s_t = _seq_sum(np.where(rvalid, t, 0.0))
        s_g = _seq_sum(np.where(rvalid, g, 0.0))
        first_idx = np.min(np.where(rvalid, rows, k_len), axis=0, initial=k_len)
        first_rt = np.where(first_idx < k_len, take(t, np.minimum(first_idx, k_len - 1)), np.nan)
        q_t = value_at(t, last_index(rvalid))  # the last recent valid reading (for the regression span)
        low_measured = np.any(lms & low_now & (t >= last_usable - L.CGM_DUPLICATE_WINDOW_MIN), axis=0)
        flag(has_cons & ~last_ok, _BIT.CGM_INVALID_VALUE)
        stale = np.isnan(lv_t) | (now - lv_t > L.CGM_STALE_MIN)
        flag(stale, _BIT.CGM_STALE)
        flag(dup, _BIT.CGM_DUPLICATE)
        flag(rate_bad, _BIT.CGM_RATE_IMPOSSIBLE)
        flag(flat, _BIT.CGM_FLAT)
        no_inc = reasons != 0  # only CGM flags are set so far
        # an occluded pump gets no insulin: no bolus, and of the basal commands only a suspend (as supervise() does)
        occluded = np.zeros(n, bool) if pump_occluded is None else _col(pump_occluded, n, bool)
        flag(occluded, _BIT.PUMP_OCCLUSION)

        # ---- the supervisor's own prediction
        have_reg = (cnt >= L.LGS_MIN_READINGS) & (q_t - first_rt >= L.LGS_MIN_SPAN_MIN)
        mt, mg = s_t / cnt, s_g / cnt
        dt = t - mt
        sxy = _seq_sum(np.where(rvalid, dt * (g - mg), 0.0))
        sxx = _seq_sum(np.where(rvalid, dt * dt, 0.0))
        slope = np.where(have_reg, sxy / sxx, np.nan)
        pred = np.minimum(mg + slope * (now - mt), mg + slope * (now + L.LGS_HORIZON_MIN - mt))
        low_pred = have_reg & (pred < thr)

        # ---- low-glucose suspend and CGM-loss revert
        prior_valid = np.where(prior_valid > now + L.CGM_FUTURE_TOLERANCE_MIN, np.nan, prior_valid)
        last_valid = np.fmax(prior_valid, lv_t)
        revert = np.isnan(last_valid) | (now - last_valid >= L.CGM_LOSS_REVERT_MIN)
        resume_ok = ~stale & ~np.isnan(lv_g) & (lv_g >= thr) & have_reg & (slope > 0.0)
        hold = _col(lgs_active, n, bool) & ~resume_ok & ~revert
        lgs = low_measured | low_pred | hold
        flag(low_measured, _BIT.LGS_MEASURED)
        flag(low_pred, _BIT.LGS_PREDICTED)
        flag(hold & ~low_measured & ~low_pred, _BIT.LGS_HOLD)

        # ---- bolus, then basal
        b = _col(bolus_u, n)
        auto = _col(bolus_automatic, n, bool)
        eligible = (b > 0.0) & ~lgs & ~occluded & ~(auto & (no_inc | revert))
        too_soon = eligible & auto & ~np.isnan(last_auto) & (now - last_auto < L.AUTO_BOLUS_MIN_INTERVAL_MIN)
        flag(too_soon, _BIT.AUTO_BOLUS_TOO_SOON)
        eligible &= ~too_soon
        bolus = np.zeros(n)
        if eligible.any():  # (most decisions give nobody a bolus)
            need = L.need_u(lv_g, _col(target_mg_dl, n), _col(isf_mg_dl_per_u, n), iob)
            bolus = _bolus_caps(b, eligible, auto, need, iob, total24, flag, n, max_bolus_u=max_bolus_u,
                                max_iob_u=max_iob_u, max_daily_u=max_daily_u, bolus_increment_u=bolus_increment_u)
            last_auto = np.where(auto & (bolus > 0.0), now, last_auto)

        r = _col(rate_u_per_h, n)
        active_rate = nan if active_rate_u_per_h is None else _col(active_rate_u_per_h, n)
        none = np.isnan(r)
        cancel_high = ~lgs & ~revert & none & no_inc & (active_rate > sched)
        temp = ~lgs & ~revert & ~none
        flag(~lgs & revert, _BIT.CGM_LOSS_REVERT)
        flag(cancel_high, _BIT.HIGH_TEMP_CANCELLED)
        v = nan
        if temp.any():  # (a controller that keeps the programmed basal proposes no temp basal)
            v = _temp_basal_caps(r, temp, no_inc, sched, iob, total24, bolus, flag, n, duration_min=duration_min,
                                 max_basal_u_per_h=max_basal_u_per_h,
                                 max_scheduled_basal_u_per_h=max_scheduled_basal_u_per_h, max_iob_u=max_iob_u,
                                 max_daily_u=max_daily_u, basal_increment_u_per_h=basal_increment_u_per_h)
        rate = np.where(lgs, 0.0, np.where(revert | cancel_high, sched, np.where(temp, v, np.nan)))
        rate = np.where(occluded & ~lgs, np.nan, rate)
        return BatchVerdict(rate, bolus, reasons, lgs, last_valid, np.array(last_auto))  # never the caller's array


def _cap(v: np.ndarray, limit: np.ndarray, bit: np.int64, active: np.ndarray, flag) -> np.ndarray:
    """``v`` capped at ``limit`` where ``active``; flags the subjects it capped."""
    hit = active & (limit < v)
    flag(hit, bit)
    return np.where(hit, limit, v)


def _bolus_caps(b, eligible, auto, need, iob, total24, flag, n: int, *, max_bolus_u, max_iob_u, max_daily_u,
                bolus_increment_u) -> np.ndarray:
    """The approved bolus (U): every cap of :func:`safety.supervisor.supervise`, in its order (0 where not
    ``eligible``)."""
    v = _cap(b, _col(max_bolus_u, n), _BIT.CAP_MAX_BOLUS, eligible, flag)
    v = _cap(v, L.AUTO_BOLUS_FRACTION * np.maximum(0.0, need), _BIT.CAP_AUTO_BOLUS_FRACTION, eligible & auto, flag)
    v = _cap(v, np.maximum(0.0, _col(max_iob_u, n) - iob), _BIT.CAP_MAX_IOB, eligible, flag)
    v = _cap(v, np.maximum(0.0, _col(max_daily_u, n) - total24), _BIT.CAP_MAX_DAILY, eligible, flag)
    v = _cap(v, L.round_down(np.where(eligible, v, 0.0), _col(bolus_increment_u, n)), _BIT.ROUNDED_DOWN, eligible,
             flag)
    return np.where(eligible, v, 0.0)


def _temp_basal_caps(r, temp, no_inc, sched, iob, total24, bolus, flag, n: int, *, duration_min, max_basal_u_per_h,
                     max_scheduled_basal_u_per_h, max_iob_u, max_daily_u, basal_increment_u_per_h) -> np.ndarray:
    """The approved temporary basal rate (U/h) where ``temp``: every cap of :func:`safety.supervisor.supervise`,
    in its order."""
    dur = _cap(_col(duration_min, n), np.full(n, L.TEMP_BASAL_MAX_DURATION_MIN), _BIT.TEMP_BASAL_DURATION, temp, flag)
    flag(temp & (r < 0.0), _BIT.INVALID_PROPOSAL)
    v = np.where(temp & (r < 0.0), 0.0, r)
    v = _cap(v, _col(max_basal_u_per_h, n), _BIT.CAP_MAX_BASAL, temp, flag)
    v = _cap(v, L.MAX_BASAL_X_CURRENT_SCHEDULED * sched, _BIT.CAP_4X_SCHEDULED, temp, flag)
    v = _cap(v, L.MAX_BASAL_X_MAX_SCHEDULED * _col(max_scheduled_basal_u_per_h, n), _BIT.CAP_3X_MAX_DAILY, temp,
             flag)
    v = np.where(temp & no_inc & (v > sched), sched, v)
    v = _cap(v, sched + np.maximum(0.0, _col(max_iob_u, n) - iob - bolus) * 60.0 / dur, _BIT.CAP_MAX_IOB, temp, flag)
    v = _cap(v, np.maximum(0.0, _col(max_daily_u, n) - total24 - bolus) * 60.0 / dur, _BIT.CAP_MAX_DAILY, temp, flag)
    return _cap(v, L.round_down(np.where(temp, v, 0.0), _col(basal_increment_u_per_h, n)), _BIT.ROUNDED_DOWN, temp,
                flag)

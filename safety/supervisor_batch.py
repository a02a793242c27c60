"""The supervisor's rules over a whole cohort at once (numpy arrays, one row per subject).

Same rules and constants (:mod:`safety.limits`) as :func:`safety.supervisor.supervise`; a hypothesis test checks
that both agree subject by subject. Covered here: CGM gating, low-glucose suspend (measured, predicted, held), the
CGM-loss revert, every cap, the temp basal duration, rounding, the automatic-bolus fraction and interval. Not covered
(handle per subject with :func:`supervise` when they occur; a trial's virtual pump confirms every command): settings
validation, pump communication loss and empty reservoir, uncertain deliveries, controller errors, stale proposals,
clock jumps, meal duplicates. Occlusion is covered (``pump_occluded``).

Encoding: a proposed rate of NaN means "no basal command"; an approved rate of NaN means "no basal command",
0 means Suspend (or a zero temp), the scheduled rate after a revert means Resume. Readings windows are (N, K),
any order along K (rows are sorted here like :func:`safety.cgm_gate.assess_cgm` sorts); a missing entry has NaN
time; the entries must cover at least the last 60 min (:data:`safety.limits.CGM_LOOKBACK_MIN`) for the result to equal the scalar supervisor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from safety import limits as L
from safety.settings import TherapySettings
from safety.supervisor import REASON_BIT, Reason

__all__ = ["BatchVerdict", "supervise_batch", "cohort_settings"]

_B = {r: np.int64(bit) for r, bit in REASON_BIT.items()}


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


def supervise_batch(now_min, rate_u_per_h, bolus_u, *, glucose_mg_dl, glucose_t_min, glucose_status=None,
                    iob_u, delivered_24h_u, lgs_active, scheduled_basal_u_per_h, max_scheduled_basal_u_per_h,
                    max_basal_u_per_h, max_bolus_u, max_iob_u, max_daily_u, target_mg_dl, isf_mg_dl_per_u,
                    suspend_threshold_mg_dl, basal_increment_u_per_h=0.05, bolus_increment_u=0.05, duration_min=30.0,
                    bolus_automatic=True, last_valid_reading_min=None, last_auto_bolus_min=None,
                    active_rate_u_per_h=None, pump_occluded=None) -> BatchVerdict:
    """Supervise N subjects at once (module docstring for the encoding). All per-subject inputs broadcast to (N,)."""
    g = np.atleast_2d(np.asarray(glucose_mg_dl, dtype=float))
    t = np.atleast_2d(np.asarray(glucose_t_min, dtype=float))
    n, k_len = g.shape
    st = np.zeros((n, k_len), np.int64) if glucose_status is None else np.asarray(glucose_status, np.int64)
    order = np.lexsort((st, np.where(np.isnan(g), 0.0, g), np.isnan(g), t), axis=1)  # as cgm_gate._order
    g, t, st = (np.take_along_axis(a, order, axis=1) for a in (g, t, st))
    now = _col(now_min, n)
    thr = _col(suspend_threshold_mg_dl, n)
    sched = _col(scheduled_basal_u_per_h, n)
    iob = _col(iob_u, n)
    total24 = _col(delivered_24h_u, n)
    nan = np.full(n, np.nan)
    prior_valid = nan.copy() if last_valid_reading_min is None else _col(last_valid_reading_min, n)
    last_auto = nan.copy() if last_auto_bolus_min is None else _col(last_auto_bolus_min, n)
    reasons = np.zeros(n, np.int64)

    def flag(mask, reason: Reason) -> None:
        nonlocal reasons
        reasons = reasons | np.where(mask, _B[reason], np.int64(0))

    # ---- CGM gate (mirrors safety.cgm_gate.assess_cgm; sums in the same order)
    # Rows are sorted by time with missing (NaN) times last, so the previous present reading of a present one is
    # the column before it: an exact repeat of it is one reading.
    present = np.isfinite(t)
    same = np.zeros((n, k_len), bool)
    same[:, 1:] = present[:, :-1] & (t[:, 1:] == t[:, :-1]) & (g[:, 1:] == g[:, :-1]) & (st[:, 1:] == st[:, :-1])
    present &= ~same
    with np.errstate(invalid="ignore"):
        flag(np.any(present & (t > now[:, None] + L.CGM_FUTURE_TOLERANCE_MIN), axis=1), Reason.CGM_FUTURE)
        cons = present & (t >= now[:, None] - L.CGM_LOOKBACK_MIN) & (t <= now[:, None] + L.CGM_FUTURE_TOLERANCE_MIN)
        vok = cons & L.value_ok(g, st)
        recent = cons & (t >= now[:, None] - L.CGM_CHECK_WINDOW_MIN)
        rvalid = vok & recent
        low_now = np.where(np.isfinite(g), g < thr[:, None], True)
        lms = cons & (t >= now[:, None] - L.CGM_STALE_MIN) & (np.isfinite(g) | ((st & L.BELOW_RANGE_STATUS) != 0))

    cols = np.arange(k_len)
    rows = np.arange(n)[:, None]

    def last_index(mask: np.ndarray) -> np.ndarray:
        """Per row, the index of the last True column up to and including each column (-1 = none yet)."""
        return np.maximum.accumulate(np.where(mask, cols, -1), axis=1)

    def before(idx: np.ndarray) -> np.ndarray:
        """The same, strictly before each column."""
        out = np.full_like(idx, -1)
        out[:, 1:] = idx[:, :-1]
        return out

    def at(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.where(idx >= 0, a[rows, np.maximum(idx, 0)], np.nan)

    has_cons = cons.any(axis=1)
    i_c, i_v = last_index(cons)[:, -1], last_index(vok)[:, -1]
    last_ok = np.where(i_c >= 0, vok[np.arange(n), np.maximum(i_c, 0)], False)
    lv_t, lv_g = at(t, i_v[:, None])[:, 0], at(g, i_v[:, None])[:, 0]
    p_idx, q_idx = before(last_index(recent)), before(last_index(rvalid))
    p_t, p_g, q_t, q_g = at(t, p_idx), at(g, p_idx), at(t, q_idx), at(g, q_idx)
    with np.errstate(invalid="ignore"):
        differ = ~((p_g == g) | (np.isnan(p_g) & np.isnan(g)))
        dup = np.any(recent & (p_idx >= 0) & (t - p_t < L.CGM_DUPLICATE_WINDOW_MIN) & differ, axis=1)
        rate_bad = np.any(rvalid & (q_idx >= 0) & (np.abs(g - q_g) > L.CGM_MAX_RATE_MG_DL_PER_MIN
                                                    * np.maximum(t - q_t, L.CGM_RATE_MIN_DT_MIN)), axis=1)
    last_usable = at(t, last_index(lms)[:, -1:])[:, 0]
    # running sums in column order (cumsum is sequential), as the scalar gate adds them
    cnt = np.cumsum(rvalid, axis=1, dtype=float)[:, -1]
    s_t = np.cumsum(np.where(rvalid, t, 0.0), axis=1)[:, -1]
    s_g = np.cumsum(np.where(rvalid, g, 0.0), axis=1)[:, -1]
    first_idx = np.where(rvalid.any(axis=1), np.argmax(rvalid, axis=1), -1)
    first_rt = at(t, first_idx[:, None])[:, 0]
    q_t = at(t, last_index(rvalid)[:, -1:])[:, 0]  # the last recent valid reading (for the regression span)
    with np.errstate(invalid="ignore"):
        low_measured = np.any(lms & low_now & (t >= (last_usable - L.CGM_DUPLICATE_WINDOW_MIN)[:, None]), axis=1)
    flag(has_cons & ~last_ok, Reason.CGM_INVALID_VALUE)
    stale = np.isnan(lv_t) | (now - lv_t > L.CGM_STALE_MIN)
    flag(stale, Reason.CGM_STALE)
    flag(dup, Reason.CGM_DUPLICATE)
    flag(rate_bad, Reason.CGM_RATE_IMPOSSIBLE)
    with np.errstate(invalid="ignore"):
        t_break = np.max(np.where(vok & (g != lv_g[:, None]), t, -np.inf), axis=1, initial=-np.inf)
        flat = ~np.isnan(lv_t) & np.any(vok & (g == lv_g[:, None]) & (t > t_break[:, None])
                                        & (t <= (lv_t - L.CGM_FLAT_MIN)[:, None]), axis=1)
    flag(flat, Reason.CGM_FLAT)
    no_inc = reasons != 0  # only CGM flags are set so far
    # an occluded pump gets no insulin: no bolus, and of the basal commands only a suspend (as supervise() does)
    occluded = np.zeros(n, bool) if pump_occluded is None else _col(pump_occluded, n, bool)
    flag(occluded, Reason.PUMP_OCCLUSION)

    # ---- the supervisor's own prediction
    have_reg = (cnt >= L.LGS_MIN_READINGS) & (q_t - first_rt >= L.LGS_MIN_SPAN_MIN)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt, mg = s_t / cnt, s_g / cnt
        dt = t - mt[:, None]
        sxy = np.cumsum(np.where(rvalid, dt * (g - mg[:, None]), 0.0), axis=1)[:, -1]
        sxx = np.cumsum(np.where(rvalid, dt * dt, 0.0), axis=1)[:, -1]
        slope = np.where(have_reg, sxy / sxx, np.nan)
        pred = np.minimum(mg + slope * (now - mt), mg + slope * (now + L.LGS_HORIZON_MIN - mt))
        low_pred = have_reg & (pred < thr)

    # ---- low-glucose suspend and CGM-loss revert
    prior_valid = np.where(prior_valid > now + L.CGM_FUTURE_TOLERANCE_MIN, np.nan, prior_valid)
    last_valid = np.fmax(prior_valid, lv_t)
    with np.errstate(invalid="ignore"):
        revert = np.isnan(last_valid) | (now - last_valid >= L.CGM_LOSS_REVERT_MIN)
        resume_ok = ~stale & ~np.isnan(lv_g) & (lv_g >= thr) & have_reg & (slope > 0.0)
    hold = _col(lgs_active, n, bool) & ~resume_ok & ~revert
    lgs = low_measured | low_pred | hold
    flag(low_measured, Reason.LGS_MEASURED)
    flag(low_pred, Reason.LGS_PREDICTED)
    flag(hold & ~low_measured & ~low_pred, Reason.LGS_HOLD)

    # ---- bolus
    b = _col(bolus_u, n)
    auto = _col(bolus_automatic, n, bool)
    with np.errstate(invalid="ignore"):
        eligible = (b > 0.0) & ~lgs & ~occluded & ~(auto & (no_inc | revert))
        too_soon = eligible & auto & ~np.isnan(last_auto) & (now - last_auto < L.AUTO_BOLUS_MIN_INTERVAL_MIN)
    flag(too_soon, Reason.AUTO_BOLUS_TOO_SOON)
    eligible &= ~too_soon

    def cap(v, limit, reason: Reason, active):
        hit = active & (limit < v)
        flag(hit, reason)
        return np.where(hit, limit, v)

    v = cap(b, _col(max_bolus_u, n), Reason.CAP_MAX_BOLUS, eligible)
    with np.errstate(invalid="ignore"):
        need = L.need_u(lv_g, _col(target_mg_dl, n), _col(isf_mg_dl_per_u, n), iob)
        v = cap(v, L.AUTO_BOLUS_FRACTION * np.maximum(0.0, need), Reason.CAP_AUTO_BOLUS_FRACTION, eligible & auto)
    v = cap(v, np.maximum(0.0, _col(max_iob_u, n) - iob), Reason.CAP_MAX_IOB, eligible)
    v = cap(v, np.maximum(0.0, _col(max_daily_u, n) - total24), Reason.CAP_MAX_DAILY, eligible)
    v = cap(v, L.round_down(np.where(eligible, v, 0.0), _col(bolus_increment_u, n)), Reason.ROUNDED_DOWN, eligible)
    bolus = np.where(eligible, v, 0.0)
    last_auto = np.where(auto & (bolus > 0.0), now, last_auto)

    # ---- basal
    r = _col(rate_u_per_h, n)
    dur = _col(duration_min, n)
    active_rate = nan if active_rate_u_per_h is None else _col(active_rate_u_per_h, n)
    none = np.isnan(r)
    with np.errstate(invalid="ignore"):
        cancel_high = ~lgs & ~revert & none & no_inc & (active_rate > sched)
        temp = ~lgs & ~revert & ~none
    flag(~lgs & revert, Reason.CGM_LOSS_REVERT)
    flag(cancel_high, Reason.HIGH_TEMP_CANCELLED)
    dur = cap(dur, np.full(n, L.TEMP_BASAL_MAX_DURATION_MIN), Reason.TEMP_BASAL_DURATION, temp)
    flag(temp & (r < 0.0), Reason.INVALID_PROPOSAL)
    v = np.where(temp & (r < 0.0), 0.0, r)
    v = cap(v, _col(max_basal_u_per_h, n), Reason.CAP_MAX_BASAL, temp)
    v = cap(v, L.MAX_BASAL_X_CURRENT_SCHEDULED * sched, Reason.CAP_4X_SCHEDULED, temp)
    v = cap(v, L.MAX_BASAL_X_MAX_SCHEDULED * _col(max_scheduled_basal_u_per_h, n), Reason.CAP_3X_MAX_DAILY, temp)
    with np.errstate(invalid="ignore"):
        v = np.where(temp & no_inc & (v > sched), sched, v)
    v = cap(v, sched + np.maximum(0.0, _col(max_iob_u, n) - iob - bolus) * 60.0 / dur, Reason.CAP_MAX_IOB, temp)
    v = cap(v, np.maximum(0.0, _col(max_daily_u, n) - total24 - bolus) * 60.0 / dur, Reason.CAP_MAX_DAILY, temp)
    v = cap(v, L.round_down(np.where(temp, v, 0.0), _col(basal_increment_u_per_h, n)), Reason.ROUNDED_DOWN, temp)
    rate = np.where(lgs, 0.0, np.where(revert | cancel_high, sched, np.where(temp, v, np.nan)))
    rate = np.where(occluded & ~lgs, np.nan, rate)
    return BatchVerdict(rate, bolus, reasons, lgs, last_valid, last_auto)

"""Insulin on board and insulin activity with the exponential insulin model (oref0 / Loop).

With peak time ``tp`` and duration ``td`` (minutes)::

    tau = tp (1 - tp/td) / (1 - 2 tp/td);   a = 2 tau / td;   S = 1 / (1 - a + (1 + a) exp(-td/tau))
    activity(t) = S / tau^2 * t (1 - t/td) exp(-t/tau)                      [fraction of the dose per minute]
    IOB(t) = 1 - S (1 - a) [ (t^2 / (tau td (1 - a)) - t/tau - 1) exp(-t/tau) + 1 ]   [fraction remaining]

so ``IOB(0) = 1``, ``IOB(td) = 0`` and activity integrates to 1 over ``[0, td]``.

How deliveries are counted (see :func:`insulin_on_board_u`):

- records are grouped by ``command_id``: a CONFIRMED record wins; a FAILED one means nothing was delivered;
  otherwise the command is pending (COMMANDED or UNCERTAIN) and is counted as fully delivered when
  ``include_uncertain`` (the worst case for the IOB and daily caps). Records with an empty ``command_id`` (the
  pump's own history) count one by one.
- a basal record counts relative to the scheduled basal: ``(rate - scheduled) * dt``, so a zero temp gives negative
  IOB; time not covered by any basal record is assumed to be scheduled basal (net zero). A later CONFIRMED basal
  record ends an earlier one (the pump replaces a running temp basal); pending ones end nothing (worst case).
- only insulin delivered up to ``now_min`` counts; basal is integrated in slices of at most 5 minutes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus
from safety.deliveries import effective_deliveries, pending_deliveries, reduced_deliveries
from safety.settings import InsulinCurve, TherapySettings

__all__ = ["iob_fraction", "activity_fraction_per_min", "insulin_on_board_u", "insulin_activity_u_per_min",
           "delivered_last_24h_u", "pending_deliveries", "effective_deliveries", "active_basal_rate_u_per_h"]

_SLICE_MIN = 5.0
_DAY_MIN = 1440.0


@functools.lru_cache(maxsize=32)
def _params(curve: InsulinCurve) -> tuple[float, float, float, float]:
    tp, td = float(curve.peak_min), float(curve.duration_min)
    if not (0.0 < tp < td / 2.0):
        raise ValueError(f"insulin curve needs 0 < peak_min < duration_min/2, got peak={tp} duration={td}")
    tau = tp * (1.0 - tp / td) / (1.0 - 2.0 * tp / td)
    a = 2.0 * tau / td
    s = 1.0 / (1.0 - a + (1.0 + a) * math.exp(-td / tau))
    return td, tau, a, s


def iob_fraction(t_min, curve: InsulinCurve):
    """Fraction of a dose still on board ``t_min`` minutes after it was given (1 for t <= 0, 0 for t >= td)."""
    td, tau, a, s = _params(curve)
    t = np.minimum(np.maximum(np.asarray(t_min, dtype=float), 0.0), td)  # np.clip, without its Python overhead
    iob = 1.0 - s * (1.0 - a) * ((t * t / (tau * td * (1.0 - a)) - t / tau - 1.0) * np.exp(-t / tau) + 1.0)
    iob = np.where(t >= td, 0.0, np.minimum(np.maximum(iob, 0.0), 1.0))
    return float(iob) if np.ndim(iob) == 0 else iob


def activity_fraction_per_min(t_min, curve: InsulinCurve):
    """Fraction of a dose acting per minute ``t_min`` minutes after it was given (0 outside [0, td])."""
    td, tau, _, s = _params(curve)
    t = np.asarray(t_min, dtype=float)
    act = np.where((t >= 0.0) & (t <= td), s / (tau * tau) * t * (1.0 - t / td) * np.exp(-t / tau), 0.0)
    return float(act) if np.ndim(act) == 0 else act


_CONFIRMED = DeliveryStatus.CONFIRMED
_BASAL, _BOLUS = DeliveryKind.BASAL, DeliveryKind.BOLUS
_EMPTY = np.zeros(0)
_EMPTY.setflags(write=False)


@dataclass(frozen=True, slots=True)
class _Records:
    """The records the insulin sums count, as arrays: boluses (start, end, amount) in record order; basal records
    sorted by start (stable): start, effective end (a later confirmed basal record ends an earlier one: the pump
    replaces a running temp basal), rate (U/min) and whether the record delivers at all. Built once per record set
    (:func:`_records`); only the window [since, now] changes between the sums."""

    boluses: tuple[tuple[float, float, float], ...]
    basal_start: np.ndarray
    basal_end: np.ndarray
    basal_rate: np.ndarray
    basal_delivers: np.ndarray


def _records(deliveries: Sequence[DeliveryRecord], include_uncertain: bool) -> _Records:
    """The arrays of the effective deliveries (uncertain ones too when ``include_uncertain``), memoized on the
    reduced record set (a supervisor decision sums them three times)."""
    eff = reduced_deliveries(deliveries)
    memo = eff.memo
    key = ("iob-records", include_uncertain)
    out = memo.get(key)
    if out is None:
        out = memo[key] = _build_records(eff, include_uncertain)
    return out


def _build_records(records: Sequence[DeliveryRecord], include_uncertain: bool) -> _Records:
    if not include_uncertain:
        records = [r for r in records if r.status is _CONFIRMED]
    boluses = tuple((r.start_min, r.end_min, r.amount_u) for r in records if r.kind is _BOLUS)
    basal = [r for r in records if r.kind is _BASAL]
    if not basal:
        return _Records(boluses, _EMPTY, _EMPTY, _EMPTY, np.zeros(0, bool))
    start = np.array([r.start_min for r in basal], dtype=float)
    end = np.array([r.end_min for r in basal], dtype=float)
    amount = np.array([r.amount_u for r in basal], dtype=float)
    if not np.all(start[1:] >= start[:-1]):  # a history is usually in time order already
        order = np.argsort(start, kind="stable")  # by start, ties in record order
        start, end, amount = start[order], end[order], amount[order]
    confirmed_starts = np.sort(np.array([r.start_min for r in basal if r.status is _CONFIRMED], dtype=float))
    k = np.searchsorted(confirmed_starts, start, side="right")
    later = k < confirmed_starts.size
    end_eff = end.copy()
    end_eff[later] = np.minimum(end[later], confirmed_starts[k[later]])
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(end > start, amount / np.where(end > start, end - start, 1.0), 0.0)
    return _Records(boluses, start, end_eff, rate, end_eff > start)


def _impulses(deliveries: Sequence[DeliveryRecord], settings: TherapySettings, now_min: float, since_min: float,
              include_uncertain: bool) -> tuple[np.ndarray, np.ndarray]:
    """(times, amounts) of point doses equivalent to the deliveries in [since_min, now_min]; basal net of schedule.

    Order: boluses as recorded, then basal slices by record start, each record's slices in time order.
    """
    rec = _records(deliveries, include_uncertain)
    times: list[float] = []
    amounts: list[float] = []
    for start, end, amount in rec.boluses:
        if end > start:  # extended bolus: spread evenly
            _spread(times, amounts, start, end, amount / (end - start), None, settings, since_min, now_min)
        elif since_min <= start <= now_min:
            times.append(start)
            amounts.append(amount)
    bt, ba = _basal_slices(rec, settings, since_min, now_min)
    if not times:
        return bt, ba
    return (np.concatenate([np.asarray(times, dtype=float), bt]),
            np.concatenate([np.asarray(amounts, dtype=float), ba]))


def _basal_slices(rec: _Records, settings: TherapySettings, since_min: float,
                  now_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Basal records (sorted by start) as slices of at most 5 min, net of the scheduled basal (vectorized)."""
    start, end_eff, rate = rec.basal_start, rec.basal_end, rec.basal_rate
    if start.size == 0:
        return _EMPTY, _EMPTY
    lo, hi = np.maximum(start, since_min), np.minimum(end_eff, now_min)
    ok = rec.basal_delivers & (hi > lo)
    lo, hi, rate = lo[ok], hi[ok], rate[ok]
    if lo.size == 0:
        return _EMPTY, _EMPTY
    n = np.maximum(1, np.ceil((hi - lo) / _SLICE_MIN - 1e-9)).astype(np.int64)
    dt = (hi - lo) / n
    if n.max() == 1:  # one slice per record (5-minute records): no repeat needed
        mid = lo + 0.5 * dt
        net = rate - settings.basal_u_per_h.at_array(mid, settings.utc_offset_min) / 60.0
        return mid, net * dt
    idx = np.repeat(np.arange(lo.size), n)
    kk = np.arange(idx.size) - np.repeat(np.cumsum(n) - n, n)
    mid = lo[idx] + (kk + 0.5) * dt[idx]
    net = rate[idx] - settings.basal_u_per_h.at_array(mid, settings.utc_offset_min) / 60.0
    return mid, net * dt[idx]


def _spread(times: list[float], amounts: list[float], start: float, end: float, rate_u_per_min: float,
            basal: DeliveryRecord | None, settings: TherapySettings, since_min: float, now_min: float) -> None:
    lo, hi = max(start, since_min), min(end, now_min)
    if hi <= lo:
        return
    n = max(1, math.ceil((hi - lo) / _SLICE_MIN - 1e-9))
    dt = (hi - lo) / n
    for k in range(n):
        mid = lo + (k + 0.5) * dt
        net = rate_u_per_min - (settings.basal_at(mid) / 60.0 if basal is not None else 0.0)
        times.append(mid)
        amounts.append(net * dt)


def insulin_on_board_u(deliveries: Sequence[DeliveryRecord], settings: TherapySettings, now_min: float,
                       include_uncertain: bool = True) -> float:
    """Insulin on board (U) at ``now_min``: boluses plus basal relative to the scheduled basal (may be negative).

    Uncertain and commanded-but-unconfirmed deliveries count as delivered when ``include_uncertain`` (worst case for
    the IOB cap).
    """
    memo = reduced_deliveries(deliveries).memo  # the controller and the supervisor ask for the same one
    key = ("iob", now_min, include_uncertain)
    hit = memo.get(key)
    if hit is not None and hit[0] is settings:
        return hit[1]
    td = settings.insulin_curve.duration_min
    t, u = _impulses(deliveries, settings, now_min, now_min - td, include_uncertain)
    iob = 0.0 if t.size == 0 else float(np.sum(u * iob_fraction(now_min - t, settings.insulin_curve)))
    memo[key] = (settings, iob)
    return iob


def insulin_activity_u_per_min(deliveries: Sequence[DeliveryRecord], settings: TherapySettings,
                               now_min: float, include_uncertain: bool = True) -> float:
    """Insulin acting now (U/min), same counting as :func:`insulin_on_board_u`."""
    td = settings.insulin_curve.duration_min
    t, u = _impulses(deliveries, settings, now_min, now_min - td, include_uncertain)
    if t.size == 0:
        return 0.0
    return float(np.sum(u * activity_fraction_per_min(now_min - t, settings.insulin_curve)))


def delivered_last_24h_u(deliveries: Sequence[DeliveryRecord], settings: TherapySettings, now_min: float) -> float:
    """Insulin delivered over ``(now - 24 h, now]`` (U): the scheduled daily basal plus the net of recorded basal
    against the schedule plus boluses; uncertain deliveries count as delivered (worst case for the daily cap)."""
    t, u = _impulses(deliveries, settings, now_min, now_min - _DAY_MIN, True)
    return float(settings.basal_u_per_h.daily_total() + (np.sum(u) if t.size else 0.0))


def active_basal_rate_u_per_h(deliveries: Sequence[DeliveryRecord], now_min: float) -> float | None:
    """Rate of the latest-starting non-failed basal record that covers ``now_min`` (None when none does)."""
    active = None
    for r in effective_deliveries(deliveries):
        if r.kind is DeliveryKind.BASAL and r.start_min <= now_min < r.end_min:
            if active is None or r.start_min >= active.start_min:
                active = r
    if active is None:
        return None
    if active.rate_u_per_h is not None:
        return float(active.rate_u_per_h)
    return active.amount_u * 60.0 / (active.end_min - active.start_min)

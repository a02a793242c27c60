"""The fast insulin sums (arrays built once per record set, memoized) equal a straightforward per-record
implementation of the rules in :mod:`safety.iob`'s docstring, bit for bit, on random delivery histories."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus
from safety.deliveries import EffectiveDeliveries, effective_deliveries, reduced_deliveries
from safety.iob import (activity_fraction_per_min, active_basal_rate_u_per_h, delivered_last_24h_u,
                        insulin_activity_u_per_min, insulin_on_board_u, iob_fraction)
from safety.settings import InsulinCurve, Schedule, ScheduleEntry, TherapySettings

NOW = 10_000.0
_RANK = {DeliveryStatus.CONFIRMED: 3, DeliveryStatus.FAILED: 2, DeliveryStatus.UNCERTAIN: 1,
         DeliveryStatus.COMMANDED: 0}


# ---------------------------------------------------------------- the reference: one record at a time

def reference_effective(deliveries):
    """One record per command (most definite status, the later one on ties) at the place of the command's first
    record; records without a command id one by one; FAILED dropped."""
    first: dict[str, int] = {}
    best: dict[str, DeliveryRecord] = {}
    keep: list[tuple[int, DeliveryRecord | None, str]] = []
    for i, r in enumerate(deliveries):
        if not r.command_id:
            keep.append((i, r, ""))
        elif r.command_id not in first:
            first[r.command_id] = i
            best[r.command_id] = r
            keep.append((i, None, r.command_id))
        elif _RANK[r.status] >= _RANK[best[r.command_id].status]:
            best[r.command_id] = r
    out = [r if r is not None else best[cid] for _, r, cid in keep]
    return [r for r in out if r.status is not DeliveryStatus.FAILED]


def reference_impulses(deliveries, s: TherapySettings, now: float, since: float, include_uncertain: bool):
    records = [r for r in reference_effective(deliveries)
               if include_uncertain or r.status is DeliveryStatus.CONFIRMED]
    times: list[float] = []
    amounts: list[float] = []

    def slices(lo, hi):
        n = max(1, math.ceil((hi - lo) / 5.0 - 1e-9))
        dt = (hi - lo) / n
        return [(lo + (k + 0.5) * dt, dt) for k in range(n)]

    for r in records:  # boluses first, in record order
        if r.kind is not DeliveryKind.BOLUS:
            continue
        if r.end_min > r.start_min:  # extended: spread evenly
            rate = r.amount_u / (r.end_min - r.start_min)
            lo, hi = max(r.start_min, since), min(r.end_min, now)
            if hi > lo:
                for mid, dt in slices(lo, hi):
                    times.append(mid)
                    amounts.append((rate - 0.0) * dt)
        elif since <= r.start_min <= now:
            times.append(r.start_min)
            amounts.append(r.amount_u)
    basal = sorted((r for r in records if r.kind is DeliveryKind.BASAL), key=lambda r: r.start_min)
    confirmed = sorted(r.start_min for r in basal if r.status is DeliveryStatus.CONFIRMED)
    for r in basal:
        end = r.end_min
        later = [c for c in confirmed if c > r.start_min]  # a later confirmed record ends this one
        if later:
            end = min(end, later[0])
        if not end > r.start_min:
            continue
        rate = r.amount_u / (r.end_min - r.start_min) if r.end_min > r.start_min else 0.0
        lo, hi = max(r.start_min, since), min(end, now)
        if hi > lo:
            for mid, dt in slices(lo, hi):
                times.append(mid)
                amounts.append((rate - s.basal_at(mid) / 60.0) * dt)
    return np.array(times, dtype=float), np.array(amounts, dtype=float)


def reference_iob(deliveries, s, now, include_uncertain=True):
    t, u = reference_impulses(deliveries, s, now, now - s.insulin_curve.duration_min, include_uncertain)
    return 0.0 if t.size == 0 else float(np.sum(u * iob_fraction(now - t, s.insulin_curve)))


def reference_activity(deliveries, s, now):
    t, u = reference_impulses(deliveries, s, now, now - s.insulin_curve.duration_min, True)
    return 0.0 if t.size == 0 else float(np.sum(u * activity_fraction_per_min(now - t, s.insulin_curve)))


def reference_24h(deliveries, s, now):
    t, u = reference_impulses(deliveries, s, now, now - 1440.0, True)
    return float(s.basal_u_per_h.daily_total() + (np.sum(u) if t.size else 0.0))


# ---------------------------------------------------------------- random histories

@st.composite
def therapy(draw):
    starts = sorted(set([0.0] + draw(st.lists(st.sampled_from([60.0, 300.0, 720.0, 1380.0, 1439.5]), max_size=3))))
    basal = Schedule(tuple(ScheduleEntry(t, draw(st.floats(0.05, 3.0))) for t in starts))
    curve = draw(st.sampled_from([InsulinCurve(), InsulinCurve(65.0, 360.0), InsulinCurve(120.0, 480.0)]))
    return TherapySettings(basal, Schedule.constant(50.0), Schedule.constant(10.0), insulin_curve=curve,
                           utc_offset_min=draw(st.sampled_from([0.0, 0.0, 60.0, -330.0])))


@st.composite
def record(draw, ids):
    kind = draw(st.sampled_from([DeliveryKind.BASAL, DeliveryKind.BASAL, DeliveryKind.BOLUS]))
    start = draw(st.floats(NOW - 1600.0, NOW + 30.0) | st.sampled_from([NOW - 5.0, NOW - 360.0, NOW - 1440.0]))
    if kind is DeliveryKind.BOLUS:
        length = draw(st.sampled_from([0.0, 0.0, 0.0, 30.0, 120.0]))
    else:
        length = draw(st.sampled_from([5.0, 5.0, 5.0, 30.0, 60.0, 0.0]) | st.floats(0.0, 200.0))
    rate = draw(st.floats(0.0, 6.0))
    amount = draw(st.floats(0.0, 10.0)) if kind is DeliveryKind.BOLUS else rate * length / 60.0
    status = draw(st.sampled_from([DeliveryStatus.CONFIRMED] * 4 + list(DeliveryStatus)))
    return DeliveryRecord(draw(st.sampled_from(ids)), kind, start, start + length, amount, status,
                          rate if kind is DeliveryKind.BASAL else None)


histories = st.lists(record(["", "", "", "a", "b", "c"]), max_size=40) | st.lists(record([""]), max_size=120)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, therapy(), st.floats(NOW - 30.0, NOW + 30.0), st.booleans(), st.booleans())
def test_fast_sums_equal_the_reference(history, s, now, sorted_history, include_uncertain):
    if sorted_history:  # a pump history comes in time order: the fast path skips sorting it
        history = sorted(history, key=lambda r: r.start_min)
    deliveries = tuple(history)
    assert effective_deliveries(deliveries) == reference_effective(deliveries)
    assert insulin_on_board_u(deliveries, s, now, include_uncertain) == reference_iob(deliveries, s, now,
                                                                                      include_uncertain)
    assert insulin_activity_u_per_min(deliveries, s, now) == reference_activity(deliveries, s, now)
    assert delivered_last_24h_u(deliveries, s, now) == reference_24h(deliveries, s, now)
    # the answers from the tuple, its reduction (arrays memoized on it) and a list are the same
    reduced = reduced_deliveries(deliveries)
    assert isinstance(reduced, EffectiveDeliveries) and reduced_deliveries(reduced) is reduced
    for again in (deliveries, reduced, list(deliveries)):
        assert insulin_on_board_u(again, s, now, include_uncertain) == reference_iob(deliveries, s, now,
                                                                                     include_uncertain)
        assert delivered_last_24h_u(again, s, now) == reference_24h(deliveries, s, now)
    assert active_basal_rate_u_per_h(reduced, now) == active_basal_rate_u_per_h(list(deliveries), now)


def test_memo_follows_the_settings():
    """The memoized IOB belongs to the settings it was computed with."""
    d = (DeliveryRecord("", DeliveryKind.BASAL, NOW - 60.0, NOW, 2.0, DeliveryStatus.CONFIRMED, 2.0),)
    a = TherapySettings(Schedule.constant(1.0), Schedule.constant(50.0), Schedule.constant(10.0))
    b = TherapySettings(Schedule.constant(0.5), Schedule.constant(50.0), Schedule.constant(10.0))
    assert insulin_on_board_u(d, a, NOW) == reference_iob(d, a, NOW)
    assert insulin_on_board_u(d, b, NOW) == reference_iob(d, b, NOW)
    assert insulin_on_board_u(d, b, NOW) > insulin_on_board_u(d, a, NOW) > 0.0

"""Acceptance properties over random proposals and contexts (hypothesis): the approved commands never violate a cap,
never push insulin on board over its maximum, never deliver above scheduled basal while CGM data is invalid, and
always suspend below the threshold."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from safety import limits as L
from safety.cgm_gate import assess_cgm
from safety.commands import Bolus, BolusKind, DeliveryStatus, Proposal, Resume, Suspend, TempBasal
from safety.iob import delivered_last_24h_u, insulin_on_board_u
from safety.readings import UNRELIABLE_STATUS
from safety.snapshot import Snapshot
from safety.supervisor import PumpState, SupervisorContext, SupervisorState, supervise

from safety_testkit import NOW, bolus_history, reading_windows, valid_settings

EPS = 1e-9

basal_proposals = st.one_of(
    st.none(), st.builds(Resume), st.builds(Suspend, st.floats(1.0, 240.0)),
    st.builds(TempBasal, st.one_of(st.floats(0.0, 40.0), st.sampled_from([0.0, math.inf])),
              st.floats(1.0, 240.0)))
bolus_proposals = st.one_of(st.none(), st.builds(Bolus, st.one_of(st.floats(0.0, 60.0), st.just(math.nan)),
                                                 st.sampled_from(list(BolusKind))))
pumps = st.one_of(st.just(PumpState()), st.builds(PumpState, st.booleans(), st.booleans(),
                                                  st.one_of(st.none(), st.floats(0.0, 300.0)), st.booleans(),
                                                  st.booleans()))
states = st.builds(SupervisorState, st.booleans(), st.one_of(st.none(), st.floats(NOW - 100.0, NOW)),
                   st.one_of(st.none(), st.floats(NOW - 30.0, NOW)), st.integers(0, 10 ** 6), st.none())
statuses = (DeliveryStatus.CONFIRMED,) * 4 + (DeliveryStatus.UNCERTAIN, DeliveryStatus.COMMANDED,
                                              DeliveryStatus.FAILED)


@st.composite
def cases(draw):
    s = draw(valid_settings())
    snap = Snapshot(NOW, draw(reading_windows()), draw(bolus_history(statuses=statuses)), (), s)
    ctx = SupervisorContext(snap, draw(pumps), draw(states))
    return Proposal(NOW, draw(basal_proposals), draw(bolus_proposals)), ctx


def _latest_low(readings, threshold):
    """Independent oracle: the newest finite reading within 12 min (or one < 20 s older) is below the threshold."""
    fresh = [r for r in readings if NOW - L.CGM_STALE_MIN <= r.t_min <= NOW + L.CGM_FUTURE_TOLERANCE_MIN
             and math.isfinite(r.glucose_mg_dl)]
    if not fresh:
        return False
    newest = max(r.t_min for r in fresh)
    return any(r.glucose_mg_dl < threshold for r in fresh if r.t_min >= newest - 20.0 / 60.0)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_supervisor_invariants(case):
    proposal, ctx = case
    v = supervise(proposal, ctx)
    snap, s = ctx.snapshot, ctx.snapshot.settings
    sched = s.basal_at(NOW)
    iob = insulin_on_board_u(snap.deliveries, s, NOW)
    total = delivered_last_24h_u(snap.deliveries, s, NOW)
    temps = [c.command for c in v.commands if isinstance(c.command, TempBasal)]
    boluses = [c.command for c in v.commands if isinstance(c.command, Bolus)]
    bolus_u = sum(b.bolus_u for b in boluses)
    assert len(boluses) <= 1 and len(v.commands) <= 2

    # caps
    for tb in temps:
        assert 0.0 <= tb.rate_u_per_h <= s.max_basal_u_per_h + EPS
        assert tb.rate_u_per_h <= 4 * sched + EPS and tb.rate_u_per_h <= 3 * s.basal_u_per_h.max_value + EPS
        assert 0.0 < tb.duration_min <= 30.0
        k = tb.rate_u_per_h / s.basal_increment_u_per_h
        assert abs(k - round(k)) < 1e-6
    for sp in (c.command for c in v.commands if isinstance(c.command, Suspend)):
        assert 0.0 < sp.duration_min <= 30.0
    for b in boluses:
        assert 0.0 < b.bolus_u <= s.max_bolus_u + EPS
        k = b.bolus_u / s.bolus_increment_u
        assert abs(k - round(k)) < 1e-6
        if ctx.pump.reservoir_u is not None:
            assert b.bolus_u <= ctx.pump.reservoir_u + EPS
    # insulin on board never pushed over its maximum; 24-h total never over max daily
    extra = bolus_u + sum(max(0.0, t.rate_u_per_h - sched) * t.duration_min / 60.0 for t in temps)
    if extra > 0.0:
        assert iob + extra <= s.max_iob_u + 1e-7
    if bolus_u > 0.0 or any(t.rate_u_per_h > 0.0 for t in temps):
        assert total + bolus_u + sum(t.rate_u_per_h * t.duration_min / 60.0 for t in temps) <= s.max_daily_u + 1e-7
    # CGM invalid -> nothing above scheduled basal, no automatic or correction bolus
    gate = assess_cgm(snap.readings, NOW, s.suspend_threshold_mg_dl)
    newest = max((r for r in snap.readings if r.t_min <= NOW + 5.0), key=lambda r: r.t_min, default=None)
    obviously_bad = newest is None or NOW - newest.t_min > 12.0 or not (39.0 < newest.glucose_mg_dl <= 400.0) \
        or bool(newest.status & UNRELIABLE_STATUS)
    if obviously_bad:
        assert not gate.ok
    if not gate.ok:
        assert all(t.rate_u_per_h <= sched + EPS for t in temps)
        assert all(b.kind not in (BolusKind.AUTOMATIC, BolusKind.CORRECTION) for b in boluses)
    if proposal.bolus is not None and proposal.bolus.kind is BolusKind.AUTOMATIC and boluses:
        need = (gate.latest_valid_mg_dl - s.target_mg_dl) / s.isf_at(NOW) - iob
        assert bolus_u <= 0.4 * need + 1e-7
    # below the threshold -> suspend (whenever the pump can be reached)
    if _latest_low(snap.readings, s.suspend_threshold_mg_dl) and ctx.pump.communication_ok:
        assert [type(c.command) for c in v.commands] == [Suspend]
        assert v.state.lgs_active
    # pump gating
    pending = any(r.status in (DeliveryStatus.UNCERTAIN, DeliveryStatus.COMMANDED) for r in snap.deliveries
                  if not any(o.command_id == r.command_id and o.status in (DeliveryStatus.CONFIRMED,
                                                                           DeliveryStatus.FAILED)
                             for o in snap.deliveries))
    if pending:
        assert not boluses and not temps
    if not ctx.pump.communication_ok:
        assert v.commands == ()
    if ctx.pump.occluded or ctx.pump.reservoir_empty:
        assert all(isinstance(c.command, Suspend) for c in v.commands)
    # determinism, ids, reasons
    assert supervise(proposal, ctx) == v
    ids = [c.command_id for c in v.commands]
    assert ids == [f"sv:{NOW:.3f}:{ctx.state.counter + i}" for i in range(len(ids))]
    assert v.state.counter == ctx.state.counter + len(ids)
    if v.commands or v.interventions:
        assert v.summary


junk_floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def junk_cases(draw):
    from safety.readings import GlucoseReading, ReadingStatus
    from safety_testkit import bolus_record
    s = draw(valid_settings())
    readings = tuple(GlucoseReading(draw(st.one_of(junk_floats, st.floats(NOW - 60, NOW + 10))), draw(junk_floats),
                                    "junk", ReadingStatus(draw(st.integers(0, 2 ** 11 - 1))))
                     for _ in range(draw(st.integers(0, 6))))
    deliveries = tuple(bolus_record(f"j{i}", draw(st.one_of(junk_floats, st.floats(NOW - 300, NOW))),
                                    draw(junk_floats), draw(st.sampled_from(list(DeliveryStatus))))
                       for i in range(draw(st.integers(0, 3))))
    basal = draw(st.one_of(st.none(), st.builds(TempBasal, junk_floats, junk_floats), st.builds(Suspend, junk_floats)))
    bolus = draw(st.one_of(st.none(), st.builds(Bolus, junk_floats, st.sampled_from(list(BolusKind)))))
    return Proposal(draw(st.one_of(st.just(NOW), junk_floats)), basal, bolus), \
        SupervisorContext(Snapshot(NOW, readings, deliveries, (), s), draw(pumps), draw(states))


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk_cases())
def test_garbage_in_never_crashes_and_never_breaks_a_cap(case):
    proposal, ctx = case
    v = supervise(proposal, ctx)
    s = ctx.snapshot.settings
    for c in v.commands:
        if isinstance(c.command, TempBasal):
            assert 0.0 <= c.command.rate_u_per_h <= min(s.max_basal_u_per_h, 4 * s.basal_at(NOW)) + EPS
            assert 0.0 < c.command.duration_min <= 30.0
        if isinstance(c.command, Bolus):
            assert 0.0 < c.command.bolus_u <= s.max_bolus_u + EPS
        if isinstance(c.command, Suspend):
            assert 0.0 < c.command.duration_min <= 30.0
    assert v.summary is not None


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.data())
def test_metamorphic_repeated_readings_and_order_change_nothing(case, data):
    """A reading delivered twice (BLE re-notification, back-fill overlap) or readings in another order give the
    same verdict (Loop's metamorphic fixtures)."""
    proposal, ctx = case
    readings = ctx.snapshot.readings
    if not readings:
        return
    repeated = tuple(readings) + tuple(data.draw(st.lists(st.sampled_from(readings), min_size=1, max_size=3)))
    shuffled = tuple(sorted(repeated, key=lambda r: (r.t_min, -len(repr(r)))))  # any order by time
    base = supervise(proposal, ctx)
    for variant in (repeated, shuffled):
        snap = ctx.snapshot
        other = SupervisorContext(Snapshot(snap.now_min, variant, snap.deliveries, snap.meals, snap.settings),
                                  ctx.pump, ctx.state)
        assert supervise(proposal, other) == base

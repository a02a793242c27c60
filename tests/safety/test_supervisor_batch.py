"""The cohort supervisor equals the scalar supervisor subject by subject, on random inputs."""

from __future__ import annotations

import math
import time

import numpy as np
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from safety.commands import Bolus, BolusKind, Proposal, Resume, Suspend, TempBasal
from safety.iob import active_basal_rate_u_per_h, delivered_last_24h_u, insulin_on_board_u
from safety.snapshot import Snapshot
from safety.supervisor import PumpState, SupervisorContext, SupervisorState, reason_mask, supervise
from safety.supervisor_batch import cohort_settings, supervise_batch

from safety_testkit import NOW, bolus_history, reading_windows, valid_settings

K = 16


@st.composite
def subject(draw):
    s = draw(valid_settings())
    readings = draw(reading_windows(max_n=K))
    deliveries = draw(bolus_history())
    state = SupervisorState(draw(st.booleans()), draw(st.one_of(st.none(), st.floats(NOW - 60.0, NOW))),
                            draw(st.one_of(st.none(), st.floats(NOW - 10.0, NOW))), draw(st.integers(0, 99)))
    rate = draw(st.one_of(st.none(), st.floats(0.0, 15.0)))
    duration = draw(st.sampled_from([30.0, 30.0, 15.0, 60.0]))
    bolus = draw(st.sampled_from([0.0, 0.0, 0.5, 2.0, 25.0]) | st.floats(0.0, 20.0))
    automatic = draw(st.booleans())
    occluded = draw(st.sampled_from([False, False, False, True]))
    return s, readings, deliveries, state, rate, duration, bolus, automatic, occluded


def _scalar_rate(verdict, sched):
    rate = math.nan
    for c in verdict.commands:
        if isinstance(c.command, Suspend):
            rate = 0.0
        elif isinstance(c.command, Resume):
            rate = sched
        elif isinstance(c.command, TempBasal):
            rate = c.command.rate_u_per_h
    return rate


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(subject(), min_size=1, max_size=6))
def test_batch_equals_scalar(subjects):
    _check_batch_equals_scalar(subjects, [list(range(K - len(sub[1]), K)) for sub in subjects])  # missing first


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(subject(), min_size=1, max_size=6), st.randoms(use_true_random=False), st.booleans())
def test_batch_equals_scalar_any_window_order(subjects, rnd, shuffled):
    """Missing entries anywhere (a trial's window keeps its gaps), readings in time order or in any order."""
    columns = []
    for sub in subjects:
        cols = sorted(rnd.sample(range(K), len(sub[1])))
        if shuffled:
            rnd.shuffle(cols)
        columns.append(cols)
    _check_batch_equals_scalar(subjects, columns, time_major=rnd.random() < 0.5)


def _check_batch_equals_scalar(subjects, columns, time_major=False):
    """Subject i's j-th reading goes to column ``columns[i][j]`` of the (N, K) window."""
    n = len(subjects)
    g = np.full((n, K), np.nan)
    t = np.full((n, K), np.nan)
    status = np.zeros((n, K), np.int64)
    expected = []
    iob = np.zeros(n)
    total = np.zeros(n)
    active = np.full(n, np.nan)
    for i, (s, readings, deliveries, state, rate, duration, bolus, automatic, occluded) in enumerate(subjects):
        for j, r in zip(columns[i], readings):
            g[i, j], t[i, j], status[i, j] = r.glucose_mg_dl, r.t_min, int(r.status)
        iob[i] = insulin_on_board_u(deliveries, s, NOW)
        total[i] = delivered_last_24h_u(deliveries, s, NOW)
        running = active_basal_rate_u_per_h(deliveries, NOW)
        active[i] = np.nan if running is None else running
        kind = BolusKind.AUTOMATIC if automatic else BolusKind.USER
        proposal = Proposal(NOW, None if rate is None else TempBasal(rate, duration),
                            Bolus(bolus, kind) if bolus > 0 else None)
        expected.append(supervise(proposal, SupervisorContext(Snapshot(NOW, readings, deliveries, (), s),
                                                              pump=PumpState(occluded=occluded), state=state)))
    opt = lambda x: np.array([np.nan if v is None else v for v in x], dtype=float)  # noqa: E731
    if time_major:  # (K, N) arrays passed as (N, K) views, as trials.supervision keeps its window
        g, t, status = (np.ascontiguousarray(a.T).T for a in (g, t, status))
    g_in, t_in = g.copy(), t.copy()
    out = supervise_batch(
        NOW, opt([sub[4] for sub in subjects]), np.array([sub[6] for sub in subjects]),
        glucose_mg_dl=g, glucose_t_min=t, glucose_status=status, iob_u=iob, delivered_24h_u=total,
        lgs_active=np.array([sub[3].lgs_active for sub in subjects]),
        duration_min=np.array([sub[5] for sub in subjects]), bolus_automatic=np.array([sub[7] for sub in subjects]),
        last_valid_reading_min=opt([sub[3].last_valid_reading_min for sub in subjects]),
        last_auto_bolus_min=opt([sub[3].last_auto_bolus_min for sub in subjects]), active_rate_u_per_h=active,
        pump_occluded=np.array([sub[8] for sub in subjects]),
        **cohort_settings([sub[0] for sub in subjects], NOW))
    for i, v in enumerate(expected):
        sched = subjects[i][0].basal_at(NOW)
        bolus = sum(c.command.bolus_u for c in v.commands if isinstance(c.command, Bolus))
        assert int(out.reasons[i]) == reason_mask(v.reasons), (i, v.summary)
        np.testing.assert_equal(out.rate_u_per_h[i], _scalar_rate(v, sched))
        assert out.bolus_u[i] == bolus
        assert bool(out.lgs_active[i]) == v.state.lgs_active
        np.testing.assert_equal(out.last_valid_reading_min[i], opt([v.state.last_valid_reading_min])[0])
        np.testing.assert_equal(out.last_auto_bolus_min[i], opt([v.state.last_auto_bolus_min])[0])
    np.testing.assert_array_equal(g, g_in)  # the inputs are left alone
    np.testing.assert_array_equal(t, t_in)


def test_ten_thousand_subjects_quickly():
    n, k = 10_000, 13
    rng = np.random.default_rng(1)
    t = np.tile(np.arange(-60.0, 1.0, 5.0), (n, 1))
    g = 60.0 + 200.0 * rng.random((n, 1)) + rng.normal(0.0, 3.0, (n, k))
    kw = dict(glucose_mg_dl=g, glucose_t_min=t, iob_u=rng.random(n) * 5, delivered_24h_u=np.full(n, 30.0),
              lgs_active=np.zeros(n, bool), scheduled_basal_u_per_h=1.0, max_scheduled_basal_u_per_h=1.2,
              max_basal_u_per_h=3.0, max_bolus_u=5.0, max_iob_u=6.0, max_daily_u=80.0, target_mg_dl=110.0,
              isf_mg_dl_per_u=50.0, suspend_threshold_mg_dl=70.0)
    start = time.perf_counter()
    out = supervise_batch(0.0, rng.random(n) * 6, rng.random(n) * 3, **kw)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0  # typically ~0.05 s
    assert np.all(out.rate_u_per_h <= 3.0) and np.all(out.bolus_u <= 5.0)
    low = g[:, -1] < 70.0
    assert np.all(out.rate_u_per_h[low] == 0.0) and np.all(out.bolus_u[low] == 0.0)

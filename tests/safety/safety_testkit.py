"""Builders shared by the safety tests (not a test module)."""

from __future__ import annotations

from dataclasses import replace

from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus, Proposal, TempBasal, Bolus, BolusKind
from safety.readings import GlucoseReading, ReadingStatus
from safety.settings import Schedule, ScheduleEntry, TherapySettings
from safety.snapshot import Snapshot
from safety.supervisor import PumpState, SupervisorContext, SupervisorState

NOW = 10_000.0


def settings(**kw) -> TherapySettings:
    base = TherapySettings(
        basal_u_per_h=Schedule((ScheduleEntry(0.0, 0.8), ScheduleEntry(360.0, 1.0), ScheduleEntry(1200.0, 0.9))),
        isf_mg_dl_per_u=Schedule.constant(50.0),
        carb_ratio_g_per_u=Schedule.constant(10.0),
        target_mg_dl=110.0, suspend_threshold_mg_dl=70.0, max_basal_u_per_h=3.0, max_bolus_u=10.0,
        max_iob_u=8.0, max_daily_u=120.0)
    return replace(base, **kw)


def trace(values, now=NOW, step=5.0, status=ReadingStatus.OK) -> tuple[GlucoseReading, ...]:
    """Readings ending at ``now`` (the last value is the newest), ``step`` minutes apart."""
    n = len(values)
    return tuple(GlucoseReading(now - step * (n - 1 - i), float(v), "test", status) for i, v in enumerate(values))


def steady(value=150.0, n=13, now=NOW):
    """A plausible, slightly varying trace around ``value`` (never flat)."""
    return trace([value + (0.5 if i % 2 else -0.5) for i in range(n)], now)


def bolus_record(cid, t, amount, status=DeliveryStatus.CONFIRMED):
    return DeliveryRecord(cid, DeliveryKind.BOLUS, t, t, amount, status)


def basal_record(cid, start, end, rate, status=DeliveryStatus.CONFIRMED):
    return DeliveryRecord(cid, DeliveryKind.BASAL, start, end, rate * (end - start) / 60.0, status, rate)


def context(readings=None, deliveries=(), meals=(), s=None, now=NOW, pump=PumpState(), state=SupervisorState()):
    snap = Snapshot(now, steady() if readings is None else tuple(readings), tuple(deliveries), tuple(meals),
                    s or settings())
    return SupervisorContext(snap, pump, state)


def proposal(rate=None, bolus=None, kind=BolusKind.AUTOMATIC, now=NOW, duration=30.0, **kw) -> Proposal:
    return Proposal(now, None if rate is None else TempBasal(rate, duration),
                    None if bolus is None else Bolus(bolus, kind), **kw)


def commands_of(verdict, cls):
    return [c.command for c in verdict.commands if isinstance(c.command, cls)]


# ---------------------------------------------------------------- hypothesis strategies
import math  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

from safety.guardrails import validate_settings  # noqa: E402
from safety.settings import AgeGroup  # noqa: E402

FLAGS = [ReadingStatus.OK] * 30 + [ReadingStatus.NOISY, ReadingStatus.SENSOR_MALFUNCTION, ReadingStatus.WARMUP,
                                  ReadingStatus.BELOW_DEVICE_RANGE, ReadingStatus.BACKFILLED,
                                  ReadingStatus.CALIBRATION_RECOMMENDED]


@st.composite
def valid_settings(draw):
    b1 = draw(st.floats(0.1, 2.0))
    b2 = draw(st.floats(0.1, 2.0))
    basal = Schedule((ScheduleEntry(0.0, b1), ScheduleEntry(draw(st.sampled_from([60.0, 720.0, 1380.0])), b2)))
    target = draw(st.floats(87.0, 180.0))
    s = settings(
        basal_u_per_h=basal,
        isf_mg_dl_per_u=Schedule.constant(draw(st.floats(10.0, 500.0))),
        target_mg_dl=target,
        suspend_threshold_mg_dl=draw(st.floats(67.0, min(110.0, target))),
        max_basal_u_per_h=draw(st.floats(max(b1, b2), 10.0)),
        max_bolus_u=draw(st.floats(0.1, 17.0)),
        max_iob_u=draw(st.floats(0.0, 22.0)),
        max_daily_u=draw(st.floats(basal.daily_total(), 300.0)),
        basal_increment_u_per_h=draw(st.sampled_from([0.05, 0.1, 0.025, 0.01])),
        bolus_increment_u=draw(st.sampled_from([0.05, 0.1, 0.025, 0.5])),
        age_group=AgeGroup.ADULT)
    return validate_settings(s)


@st.composite
def reading_windows(draw, now=NOW, max_n=14):
    """Readings oldest first, in ascending time (ties allowed), shaped to hit every gate now and then."""
    n = draw(st.integers(0, max_n))
    mode = draw(st.sampled_from(["regular", "regular", "flat", "random", "falling", "rising", "dup"]))
    shift = draw(st.sampled_from([0.0, 0.0, 0.0, -3.0, -14.0, -25.0, 4.0, 8.0]))
    if mode == "random":
        times = sorted(draw(st.lists(st.floats(now - 70.0, now + 10.0), min_size=n, max_size=n)))
    else:
        times = [now + shift - 5.0 * (n - 1 - i) for i in range(n)]
    if mode == "dup" and n >= 2:
        times[-1] = times[-2] + draw(st.sampled_from([0.0, 0.1, 0.3]))
    v0 = draw(st.floats(40.0, 400.0))
    slope = draw(st.floats(0.0, 8.0))
    values = []
    for i in range(n):
        if mode == "flat":
            v = float(round(v0))
        elif mode == "falling":
            v = v0 - slope * 5.0 * i
        elif mode == "rising":
            v = v0 + slope * 5.0 * i
        elif mode == "regular":
            v = v0 + draw(st.floats(-6.0, 6.0))
        else:
            v = draw(st.one_of(st.floats(20.0, 450.0), st.sampled_from([math.nan, 39.0, 400.0, 401.0, 0.0, 70.0])))
        if draw(st.integers(0, 9)) == 0:
            v = draw(st.sampled_from([math.nan, 39.0, 30.0, 401.0, 65.0]))
        values.append(float(v))
    flags = [draw(st.sampled_from(FLAGS)) for _ in range(n)]
    return tuple(GlucoseReading(t, v, "test", f) for t, v, f in zip(times, values, flags))


@st.composite
def bolus_history(draw, now=NOW, statuses=(DeliveryStatus.CONFIRMED,)):
    out = []
    for i in range(draw(st.integers(0, 4))):
        age = draw(st.floats(0.0, 1500.0))
        out.append(bolus_record(f"h{i}", now - age, draw(st.floats(0.0, 12.0)), draw(st.sampled_from(statuses))))
    if draw(st.booleans()):
        start = now - draw(st.floats(5.0, 200.0))
        out.append(basal_record("hb", start, start + 30.0, draw(st.floats(0.0, 4.0)),
                                draw(st.sampled_from(statuses))))
    return tuple(out)

"""One test per hazard of docs/hazards.md: each fails if its control is removed."""

from __future__ import annotations

import math

from safety.commands import (Bolus, BolusKind, CancelBolus, DeliveryStatus, Proposal, Resume, Suspend, TempBasal)
from safety.iob import insulin_on_board_u, iob_fraction
from safety.limits import round_down
from safety.readings import GlucoseReading, MealAnnouncement, ReadingStatus
from safety.supervisor import PumpState, Reason, SupervisorState, cancel_bolus, supervise

from safety_testkit import NOW, basal_record, bolus_record, commands_of, context, proposal, settings, steady, trace

HIGH = 250.0  # glucose at which an unguarded controller would dose up
SCHED = 0.9   # scheduled basal at NOW in the test settings


def no_increase(v):
    """Nothing above the scheduled basal and no automatic bolus."""
    return all(t.rate_u_per_h <= SCHED for t in commands_of(v, TempBasal)) and not commands_of(v, Bolus)


def high_trace(n=13, now=NOW):
    return trace([HIGH + (0.7 if i % 2 else -0.7) for i in range(n)], now)


def test_control_baseline_doses_up_when_data_is_good():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace()))
    assert commands_of(v, TempBasal)[0].rate_u_per_h > SCHED and commands_of(v, Bolus)


# ---- sensor inaccurate or noisy
def test_hazard_sensor_noisy_flag_blocks_increase():
    rs = high_trace()[:-1] + (GlucoseReading(NOW, HIGH, "test", ReadingStatus.NOISY),)
    v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
    assert no_increase(v) and Reason.CGM_INVALID_VALUE in v.reasons


def test_hazard_sensor_spike_rate_impossible_blocks_increase():
    rs = trace([120.0, 121.0, 119.0, 120.5, 122.0, 121.0, 120.0, 121.5, 120.0, 119.5, 121.0, 120.0, 200.0])
    v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
    assert no_increase(v) and Reason.CGM_RATE_IMPOSSIBLE in v.reasons


def test_hazard_sensor_special_values_block_increase():
    for bad in (math.nan, 39.0, 401.0):
        rs = high_trace()[:-1] + (GlucoseReading(NOW, bad),)
        v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
        assert no_increase(v) and Reason.CGM_INVALID_VALUE in v.reasons, bad


# ---- compression low
def test_hazard_compression_low_suspends_and_is_flagged():
    rs = trace([140.0, 141.0, 139.0, 140.0, 141.0, 140.0, 139.5, 140.0, 141.0, 140.0, 139.0, 140.0, 62.0])
    v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
    assert [type(c.command) for c in v.commands] == [Suspend]
    assert {Reason.LGS_MEASURED, Reason.CGM_RATE_IMPOSSIBLE} <= v.reasons


def test_hazard_compression_drop_above_threshold_blocks_increase():
    rs = trace([190.0, 191.0, 189.0, 190.0, 191.0, 190.0, 189.5, 190.0, 191.0, 190.0, 189.0, 190.0, 150.0])
    v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
    assert no_increase(v) and Reason.CGM_RATE_IMPOSSIBLE in v.reasons


# ---- sensor stuck
def test_hazard_sensor_stuck_flat_trace_blocks_increase():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(trace([HIGH] * 11)))  # 50 min of identical values
    assert no_increase(v) and Reason.CGM_FLAT in v.reasons
    short = supervise(proposal(rate=2.5), context(trace([HIGH - 3, HIGH - 1] + [HIGH] * 8)))  # 35 min: not flat
    assert Reason.CGM_FLAT not in short.reasons


# ---- CGM data loss
def test_hazard_cgm_loss_stale_then_revert_with_alarm():
    stale = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(now=NOW - 15.0)))
    assert no_increase(stale) and Reason.CGM_STALE in stale.reasons
    assert Reason.CGM_LOSS_REVERT not in stale.reasons
    lost = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(now=NOW - 20.0)))
    assert [type(c.command) for c in lost.commands] == [Resume]
    assert any(a.reason is Reason.CGM_LOSS_REVERT and a.severity == "critical" for a in lost.alarms)
    assert lost.fallback and "programmed basal" in lost.fallback


def test_hazard_cgm_loss_cancels_running_high_temp():
    deliveries = [basal_record("t1", NOW - 10.0, NOW + 20.0, 2.5)]
    v = supervise(proposal(rate=None), context(high_trace(now=NOW - 15.0), deliveries=deliveries))
    assert [type(c.command) for c in v.commands] == [Resume] and Reason.HIGH_TEMP_CANCELLED in v.reasons


# ---- duplicated or conflicting CGM readings (hazards.md row 20a)
def test_hazard_conflicting_duplicate_readings_block_increase():
    """Two different values less than 20 s apart (a re-notification that disagrees) -> CGM_DUPLICATE, no increase;
    an exact repeat of the same reading counts once and changes nothing."""
    base = high_trace()
    conflicting = base + (GlucoseReading(NOW - 10.0 / 60.0, HIGH + 15.0),)
    v = supervise(proposal(rate=2.5, bolus=1.0), context(conflicting))
    assert no_increase(v) and Reason.CGM_DUPLICATE in v.reasons
    repeated = base + (base[-1],)
    r = supervise(proposal(rate=2.5, bolus=1.0), context(repeated))
    assert Reason.CGM_DUPLICATE not in r.reasons and commands_of(r, TempBasal)[0].rate_u_per_h > SCHED


# ---- time jumps
def test_hazard_time_jump_future_readings_block_increase():
    rs = high_trace() + (GlucoseReading(NOW + 30.0, HIGH),)
    v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
    assert no_increase(v) and Reason.CGM_FUTURE in v.reasons


def test_hazard_time_jump_backwards_blocks_increase():
    v = supervise(proposal(rate=2.5, bolus=1.0),
                  context(high_trace(), state=SupervisorState(last_decision_min=NOW + 60.0)))
    assert no_increase(v) and Reason.TIME_JUMP in v.reasons and v.alarms


# ---- double carb entry
def test_hazard_double_carb_entry():
    meal = MealAnnouncement(NOW - 5.0, 60.0, NOW - 5.0, entry_id="a")
    twice = (meal, MealAnnouncement(NOW - 2.0, 60.0, NOW - 2.0, entry_id="b"))
    v = supervise(proposal(bolus=6.0, kind=BolusKind.MEAL), context(high_trace(), meals=twice))
    assert not commands_of(v, Bolus) and Reason.MEAL_DUPLICATE in v.reasons and v.alarms
    once = supervise(proposal(bolus=6.0, kind=BolusKind.MEAL), context(high_trace(), meals=(meal,)))
    assert commands_of(once, Bolus)
    # automatic insulin is measured from glucose, never from carbs: a duplicate entry cannot raise it
    auto1 = supervise(proposal(bolus=9.0), context(high_trace(), meals=(meal,)))
    auto2 = supervise(proposal(bolus=9.0), context(high_trace(), meals=twice))
    assert commands_of(auto1, Bolus) == commands_of(auto2, Bolus)
    assert Reason.CAP_AUTO_BOLUS_FRACTION in auto1.reasons
    need = (HIGH - 110.0) / 50.0  # (glucose - target) / ISF - IOB(0)
    assert commands_of(auto1, Bolus)[0].bolus_u == round_down(0.4 * need, 0.05)


# ---- malicious or erroneous bolus request
def test_hazard_malicious_bolus_capped_by_max_bolus_iob_and_daily():
    v = supervise(proposal(bolus=60.0, kind=BolusKind.USER), context(high_trace()))
    assert commands_of(v, Bolus)[0].bolus_u == 8.0  # max IOB 8 < max bolus 10
    assert {Reason.CAP_MAX_BOLUS, Reason.CAP_MAX_IOB} <= v.reasons
    on_board = [bolus_record("b", NOW - 10.0, 7.5)]
    v = supervise(proposal(bolus=5.0, kind=BolusKind.USER), context(high_trace(), deliveries=on_board))
    iob = insulin_on_board_u(on_board, settings(), NOW)
    assert sum(b.bolus_u for b in commands_of(v, Bolus)) <= 8.0 - iob + 1e-9
    s = settings(max_daily_u=30.0)
    v = supervise(proposal(bolus=5.0, kind=BolusKind.USER),
                  context(high_trace(), deliveries=[bolus_record("c", NOW - 400.0, 6.0)], s=s))
    assert sum(b.bolus_u for b in commands_of(v, Bolus)) <= 30.0 - 22.4 - 6.0 + 1e-9
    assert Reason.CAP_MAX_DAILY in v.reasons
    bad = supervise(proposal(bolus=math.nan, kind=BolusKind.USER), context(high_trace()))
    assert not commands_of(bad, Bolus) and Reason.INVALID_PROPOSAL in bad.reasons


# ---- bolus cancel fails
def test_hazard_bolus_cancel_fails():
    # the cancel was sent but never confirmed: the bolus stays uncertain and counts in full
    deliveries = [bolus_record("sv:1:0", NOW - 5.0, 6.0, DeliveryStatus.UNCERTAIN)]
    ctx = context(high_trace(), deliveries=deliveries)
    assert insulin_on_board_u(deliveries, settings(), NOW) == 6.0 * iob_fraction(5.0, settings().insulin_curve)
    v = supervise(proposal(rate=2.5, bolus=2.0), ctx)
    assert not commands_of(v, Bolus) and not commands_of(v, TempBasal)
    assert Reason.DELIVERY_UNCERTAIN in v.reasons
    c = cancel_bolus("sv:1:0", ctx)  # retrying the cancel is always approved
    assert commands_of(c, CancelBolus) == [CancelBolus("sv:1:0")]


# ---- pump communication loss
def test_hazard_pump_communication_loss():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(), pump=PumpState(communication_ok=False)))
    assert v.commands == () and Reason.PUMP_COMM_LOSS in v.reasons and v.alarms
    assert "30 min" in v.fallback


# ---- command delivered but not acknowledged
def test_hazard_command_delivered_not_acknowledged():
    deliveries = [bolus_record("sv:1:0", NOW - 5.0, 3.0, DeliveryStatus.COMMANDED)]
    v = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(), deliveries=deliveries))
    assert [type(c.command) for c in v.commands] == [Resume]
    assert Reason.DELIVERY_UNCERTAIN in v.reasons
    low = supervise(proposal(rate=0.2), context(high_trace(), deliveries=deliveries))
    assert [type(c.command) for c in low.commands] == [Suspend]
    reconciled = deliveries + [bolus_record("sv:1:0", NOW - 5.0, 3.0, DeliveryStatus.CONFIRMED)]
    ok = supervise(proposal(rate=2.5), context(high_trace(), deliveries=reconciled))
    assert commands_of(ok, TempBasal)


# ---- duplicated command
def test_hazard_duplicated_decision_cannot_bolus_twice():
    ctx = context(high_trace())
    first = supervise(proposal(bolus=1.0), ctx)
    assert commands_of(first, Bolus)
    # the same decision again (e.g. a retried cycle) before the first bolus shows up in the deliveries
    second = supervise(proposal(bolus=1.0, now=NOW + 1.0), context(high_trace(now=NOW + 1.0), now=NOW + 1.0,
                                                                    state=first.state))
    assert not commands_of(second, Bolus) and Reason.AUTO_BOLUS_TOO_SOON in second.reasons
    ids = {c.command_id for c in first.commands} | {c.command_id for c in second.commands}
    assert len(ids) == len(first.commands) + len(second.commands)  # ids never repeat


# ---- occlusion / empty reservoir
def test_hazard_occlusion():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(), pump=PumpState(occluded=True)))
    assert v.commands == () and any(a.reason is Reason.PUMP_OCCLUSION for a in v.alarms)
    s = supervise(Proposal(NOW, Suspend()), context(high_trace(), pump=PumpState(occluded=True)))
    assert [type(c.command) for c in s.commands] == [Suspend]


def test_hazard_empty_reservoir():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(), pump=PumpState(reservoir_empty=True)))
    assert v.commands == () and any(a.reason is Reason.PUMP_RESERVOIR_EMPTY for a in v.alarms)
    low = supervise(proposal(bolus=5.0, kind=BolusKind.USER), context(high_trace(), pump=PumpState(reservoir_u=1.3)))
    assert commands_of(low, Bolus)[0].bolus_u == 1.3 and Reason.CAP_RESERVOIR in low.reasons


# ---- controller crash mid-command (restart path: see also test_journal_crash.py)
def test_hazard_controller_crash_mid_command(tmp_path):
    from safety.journal import Journal
    v = supervise(proposal(bolus=1.0), context(high_trace()))
    (cmd,) = v.commands
    j = Journal.open(tmp_path / "j.db")
    j.record_verdict(v, NOW)
    j.record_command_sent(cmd, bolus_record(cmd.command_id, NOW, cmd.command.bolus_u, DeliveryStatus.COMMANDED))
    del j  # crash: no ack, no close
    j = Journal.open(tmp_path / "j.db")
    r = j.restore()
    assert [d.command_id for d in r.uncertain_deliveries] == [cmd.command_id]
    again = supervise(proposal(bolus=1.0, now=NOW + 5.0),
                      context(high_trace(now=NOW + 5.0), now=NOW + 5.0, deliveries=r.deliveries,
                              state=r.supervisor_state))
    assert not commands_of(again, Bolus) and Reason.DELIVERY_UNCERTAIN in again.reasons
    j.close()


# ---- controller hang
def test_hazard_controller_hang_stale_proposal():
    stale = Proposal(NOW - 12.0, TempBasal(2.5), Bolus(1.0))
    v = supervise(stale, context(high_trace()))
    assert no_increase(v) and Reason.PROPOSAL_STALE in v.reasons


def test_hazard_controller_hang_temp_basals_expire_in_30_min():
    v = supervise(proposal(rate=2.5, duration=240.0), context(high_trace()))
    assert commands_of(v, TempBasal)[0].duration_min == 30.0 and Reason.TEMP_BASAL_DURATION in v.reasons
    s = supervise(Proposal(NOW, Suspend(600.0)), context(high_trace()))
    assert commands_of(s, Suspend)[0].duration_min == 30.0


def test_hazard_controller_error_blocks_increase():
    v = supervise(proposal(rate=2.5, bolus=1.0, error="solver failed"), context(high_trace()))
    assert no_increase(v) and Reason.CONTROLLER_ERROR in v.reasons


# ---- invalid settings
def test_hazard_invalid_settings_fall_back_to_programmed_basal():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(high_trace(), s=settings(max_bolus_u=80.0)))
    assert [type(c.command) for c in v.commands] == [Resume]
    assert Reason.SETTINGS_INVALID in v.reasons and "max_bolus_u" in v.interventions[0].detail
    assert any(a.reason is Reason.SETTINGS_INVALID and a.severity == "critical" for a in v.alarms)
    low = supervise(proposal(rate=2.5), context(steady(60.0), s=settings(suspend_threshold_mg_dl=20.0)))
    assert [type(c.command) for c in low.commands] == [Suspend]


# ---- low glucose (measured, predicted, hold until rising)
def test_hazard_low_glucose_measured_suspends():
    v = supervise(proposal(rate=2.5, bolus=1.0), context(steady(65.0)))
    assert [type(c.command) for c in v.commands] == [Suspend] and v.state.lgs_active
    # without enough valid data for a prediction, the measured value alone must suspend
    for rs in ((GlucoseReading(NOW - 1.0, 65.0),),
               steady(120.0)[:-1] + (GlucoseReading(NOW, 39.0),),  # sensor "LOW" code
               steady(120.0)[:-1] + (GlucoseReading(NOW, math.nan, "test", ReadingStatus.BELOW_DEVICE_RANGE),)):
        v = supervise(proposal(rate=2.5, bolus=1.0), context(rs))
        assert [type(c.command) for c in v.commands] == [Suspend], rs[-1]
        assert Reason.LGS_MEASURED in v.reasons and Reason.LGS_PREDICTED not in v.reasons


def test_hazard_low_glucose_predicted_suspends():
    rs = trace([130.0, 126.0, 122.0, 118.0, 114.0, 110.0, 106.0])  # -0.8 mg/dL/min, 30 min ahead: 82... then:
    v = supervise(proposal(rate=2.5), context(rs))
    assert Reason.LGS_PREDICTED not in v.reasons
    falling = trace([115.0, 106.0, 97.0, 88.0, 80.0])  # ~-1.75 mg/dL/min: below 70 within 30 min
    v = supervise(proposal(rate=2.5, bolus=1.0), context(falling))
    assert [type(c.command) for c in v.commands] == [Suspend] and Reason.LGS_PREDICTED in v.reasons


def test_hazard_lgs_resumes_only_when_rising_above_threshold():
    held = SupervisorState(lgs_active=True, last_valid_reading_min=NOW - 5.0)
    flat_above = supervise(proposal(rate=1.5), context(steady(90.0), state=held))
    assert [type(c.command) for c in flat_above.commands] == [Suspend] and Reason.LGS_HOLD in flat_above.reasons
    rising = supervise(proposal(rate=1.5), context(trace([72.0, 74.0, 77.0, 80.0, 84.0]), state=held))
    assert commands_of(rising, TempBasal) and not rising.state.lgs_active

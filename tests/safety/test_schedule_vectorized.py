"""The vectorized schedule look-up and the once-reduced delivery records give exactly the scalar answers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus
from safety.deliveries import EffectiveDeliveries, effective_deliveries, pending_deliveries
from safety.iob import insulin_on_board_u
from safety.settings import Schedule, ScheduleEntry, TherapySettings


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1439.0), min_size=1, max_size=5, unique=True),
       st.lists(st.floats(-5000.0, 5000.0), min_size=1, max_size=40), st.floats(-720, 720))
def test_at_array_equals_at(starts, times, offset):
    starts = sorted(set([0.0] + starts))
    sched = Schedule(tuple(ScheduleEntry(t, float(i + 1)) for i, t in enumerate(starts)))
    vec = sched.at_array(np.array(times), offset)
    assert vec.tolist() == [sched.at(t, offset) for t in times]


def test_effective_deliveries_pass_through_gives_the_same_iob_and_pending():
    s = TherapySettings(Schedule((ScheduleEntry(0, 0.8), ScheduleEntry(360, 1.2))), Schedule.constant(50),
                        Schedule.constant(10))
    recs = [DeliveryRecord(f"c{i}", DeliveryKind.BASAL, 300 + 5 * i, 305 + 5 * i, 0.05 * (i % 4), DeliveryStatus.CONFIRMED)
            for i in range(60)]
    recs.append(DeliveryRecord("b1", DeliveryKind.BOLUS, 400, 400, 2.0, DeliveryStatus.COMMANDED))
    recs.append(DeliveryRecord("b1", DeliveryKind.BOLUS, 400, 400, 2.0, DeliveryStatus.UNCERTAIN))
    recs.append(DeliveryRecord("b2", DeliveryKind.BOLUS, 410, 410, 1.0, DeliveryStatus.FAILED))
    eff = EffectiveDeliveries(effective_deliveries(recs))
    assert insulin_on_board_u(eff, s, 600.0) == insulin_on_board_u(recs, s, 600.0)
    assert pending_deliveries(eff) == pending_deliveries(recs) and [r.command_id for r in pending_deliveries(eff)] == ["b1"]

"""The safety kernel's shortcuts give exactly the answers of the paths they skip."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from safety import limits as L
from safety.cgm_gate import assess_cgm
from safety.readings import GlucoseReading, ReadingStatus

from safety_testkit import FLAGS, NOW, reading_windows

old_readings = st.lists(st.builds(GlucoseReading, st.floats(NOW - 400.0, NOW - 60.001), st.floats(20.0, 450.0),
                                  st.just("test"), st.sampled_from(FLAGS)), max_size=20)


@hsettings(max_examples=300, deadline=None)
@given(reading_windows(max_n=16), old_readings, st.booleans(), st.randoms(use_true_random=False))
def test_gate_sees_the_same_without_old_readings(window, old, nan_time, rnd):
    readings = list(old) + list(window)
    if nan_time and readings:  # a reading with a NaN time
        i = rnd.randrange(len(readings))
        r = readings[i]
        readings[i] = GlucoseReading(math.nan, r.glucose_mg_dl, r.source, r.status)
    rnd.shuffle(readings)
    # the gate sorts only its look-back window: readings older than it (or with a NaN time) change nothing
    kept = [r for r in readings if r.t_min >= NOW - L.CGM_LOOKBACK_MIN]
    assert assess_cgm(kept, NOW, 70.0) == assess_cgm(readings, NOW, 70.0)


@hsettings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([39.0, 39.0000001, 400.0, 400.0000001]),
       st.sampled_from(FLAGS + [ReadingStatus.BELOW_DEVICE_RANGE | ReadingStatus.NOISY]))
def test_scalar_value_ok_equals_the_array_rule(glucose, status):
    fast = L.value_ok(float(glucose), int(status))
    assert isinstance(fast, bool)
    assert fast == bool(L.value_ok(np.array([glucose]), np.array([int(status)]))[0])

"""Clinical metrics against hand-computed values and the published definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from trials.cvga import cvga_points, cvga_x, cvga_y, cvga_zone, zone_counts
from trials.metrics import (
    GLUCOSE_KEYS, METRIC_KEYS, bg_risk, glucose_metrics, glucose_stats, gmi_pct, gri, hypo_events, meets_target,
    metrics_from_stats, pool,
)


def test_time_in_ranges_hand_computed():
    # 10 readings: 2 < 54, 1 in 54-69, 4 in 70-180 (70 and 180 included), 2 in 181-250, 1 > 250
    g = np.array([40, 50, 60, 70, 100, 150, 180, 200, 250, 300], dtype=float)
    m = glucose_metrics(g)
    assert m["tbr54_pct"] == pytest.approx(20.0)
    assert m["tbr70_pct"] == pytest.approx(30.0)
    assert m["tir_pct"] == pytest.approx(40.0)
    assert m["tar180_pct"] == pytest.approx(30.0)
    assert m["tar250_pct"] == pytest.approx(10.0)
    assert m["mean_mg_dl"] == pytest.approx(140.0)
    sd = math.sqrt(sum((x - 140.0) ** 2 for x in g) / 9)
    assert m["sd_mg_dl"] == pytest.approx(sd)
    assert m["cv_pct"] == pytest.approx(100 * sd / 140.0)
    # GRI = 3.0*20 + 2.4*10 + 1.6*10 + 0.8*20 = 116 -> capped at 100
    assert m["gri"] == 100.0


def test_gmi_published_formula():
    assert gmi_pct(154.0) == pytest.approx(3.31 + 0.02392 * 154.0)
    assert gmi_pct(154.0) == pytest.approx(6.99, abs=0.01)  # Bergenstal 2018: 154 mg/dL ~ GMI 7.0 %
    assert glucose_metrics(np.full(12, 154.0))["gmi_pct"] == pytest.approx(6.99368)


def test_gri_components_and_cap():
    assert gri(1.0, 3.0, 5.0, 20.0) == pytest.approx(3.0 + 7.2 + 8.0 + 16.0)
    assert gri(40.0, 0.0, 0.0, 0.0) == 100.0
    assert gri(0.0, 0.0, 0.0, 0.0) == 0.0


def test_kovatchev_risk_published_points():
    rl, rh = bg_risk(np.array([112.5, 20.0, 600.0, 50.0]))
    # the risk function is symmetric around 112.5 mg/dL and reaches ~100 at 20 and at 600 mg/dL
    assert rl[0] == pytest.approx(0.0, abs=1e-3) and rh[0] == pytest.approx(0.0, abs=1e-3)
    assert rl[1] == pytest.approx(100.0, abs=0.5) and rh[1] == 0.0
    assert rh[2] == pytest.approx(100.0, abs=0.5) and rl[2] == 0.0
    f50 = 1.509 * (math.log(50.0) ** 1.084 - 5.381)
    assert rl[3] == pytest.approx(10 * f50 * f50)


def test_lbgi_hbgi_are_means_over_all_readings():
    g = np.array([50.0, 300.0, 112.5, 112.5])
    f = [1.509 * (math.log(x) ** 1.084 - 5.381) for x in g]
    m = glucose_metrics(g)
    assert m["lbgi"] == pytest.approx(sum(10 * min(v, 0) ** 2 for v in f) / 4)
    assert m["hbgi"] == pytest.approx(sum(10 * max(v, 0) ** 2 for v in f) / 4)


@pytest.mark.parametrize("trace, events", [
    ([100, 50, 50, 100], 0),                      # 10 min below: not an event
    ([100, 50, 50, 50, 100], 1),                  # 15 min below
    ([50, 50, 50, 100, 50, 50, 50], 1),           # back below after 5 min: the same event
    ([50, 50, 50, 100, 100, 100, 50, 50, 50], 2),  # 15 min recovered: a new event
    ([53.9, 53.9, 53.9], 1),
    ([54, 54, 54, 54], 0),                        # 54 is not below 54
    ([50, float("nan"), 50, 50], 1),              # a missing reading pauses the count
])
def test_hypo_events(trace, events):
    assert int(hypo_events(np.array(trace, dtype=float))) == events


def test_nan_readings_are_ignored():
    g = np.array([100.0, np.nan, 200.0, np.nan])
    m = glucose_metrics(g)
    assert m["mean_mg_dl"] == 150.0
    assert m["tir_pct"] == 50.0 and m["tar180_pct"] == 50.0
    empty = glucose_metrics(np.array([np.nan, np.nan]))
    assert math.isnan(empty["tir_pct"]) and math.isnan(empty["mean_mg_dl"])


def test_keys_match_issue_layout():
    assert METRIC_KEYS == ("tir_pct", "tbr70_pct", "tbr54_pct", "tar180_pct", "tar250_pct", "mean_mg_dl",
                           "sd_mg_dl", "cv_pct", "gmi_pct", "lbgi", "hbgi", "gri", "tdi_u", "hypo_events",
                           "interventions")
    assert set(GLUCOSE_KEYS) == set(METRIC_KEYS) - {"tdi_u", "interventions"}


def test_consensus_targets():
    assert meets_target("tir_pct", 70.1) and not meets_target("tir_pct", 70.0)
    assert meets_target("tbr70_pct", 3.9) and not meets_target("tbr70_pct", 4.0)
    assert meets_target("cv_pct", 36.0) and not meets_target("cv_pct", 36.1)
    assert meets_target("mean_mg_dl", 100.0) is None and meets_target("tir_pct", None) is None


glucose_lists = st.lists(st.floats(min_value=30, max_value=450, allow_nan=False), min_size=2, max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(glucose_lists, min_size=1, max_size=5))
def test_pooling_equals_concatenation(profiles):
    width = max(len(p) for p in profiles)
    mat = np.full((len(profiles), width), np.nan)
    for i, p in enumerate(profiles):
        mat[i, :len(p)] = p
    stats = glucose_stats(mat)
    pooled = metrics_from_stats({k: np.array([v]) for k, v in pool(stats).items()})
    direct = glucose_stats(np.concatenate([np.array(p) for p in profiles])[None, :])
    direct_m = metrics_from_stats(direct)
    for key in GLUCOSE_KEYS:
        if key == "hypo_events":
            continue
        assert pooled[key][0] == pytest.approx(direct_m[key][0], rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize("lo, hi, zone", [
    (100, 170, "A"), (80, 170, "Lower B"), (80, 250, "B"), (100, 250, "Upper B"),
    (60, 170, "Lower C"), (100, 350, "Upper C"), (60, 250, "Lower D"), (80, 350, "Upper D"), (60, 350, "E"),
    (90, 170, "Lower B"), (91, 179, "A"),  # on the grid line: the worse zone
])
def test_cvga_zones(lo, hi, zone):
    assert cvga_zone(lo, hi) == zone


def test_cvga_axes():
    assert cvga_x(110) == 0 and cvga_x(90) == 20 and cvga_x(70) == 40 and cvga_x(40) == 60 and cvga_x(200) == 0
    assert cvga_y(110) == 0 and cvga_y(180) == 20 and cvga_y(300) == 40 and cvga_y(400) == 60 and cvga_y(500) == 60
    assert cvga_y(240) == pytest.approx(30.0)
    x, y, zones = cvga_points(np.array([[100.0, 150.0, np.nan], [60.0, 350.0, 200.0]]))
    assert zones == ["A", "E"] and x[0] == 10 and y[1] == 50
    counts = zone_counts(zones)
    assert counts["A"] == 1 and counts["E"] == 1 and sum(counts.values()) == 2

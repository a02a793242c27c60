"""Tests of scenario loading, validation and realization (patient_model.scenarios)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patient_model.meal_generator import truncated_normal_from_uniform
from patient_model.scenario_schema import TOP_LEVEL_FIELDS, TruncatedNormal
from patient_model.scenarios import (Scenario, ScenarioError, bundled_scenarios, load_scenario, parse_scenario,
                                     realize)

DATA = Path(__file__).parent / "data"
BAD_EXPECTED: dict[str, str] = json.loads((DATA / "bad_expected.json").read_text())
KEYS_100 = [f"adult#{i:03d}" for i in range(100)]


def base_dict() -> dict:
    return json.loads((DATA / "good" / "base.json").read_text())


# ---------------------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------------------
def test_bundled_scenarios_are_listed() -> None:
    assert set(bundled_scenarios()) >= {"default-1day", "hcl-3day", "fcl-3day", "reference-3meals", "faults-1day"}


@pytest.mark.parametrize("name", bundled_scenarios())
def test_every_bundled_scenario_loads_and_realizes(name: str) -> None:
    sc = load_scenario(name)
    assert isinstance(sc, Scenario) and sc.name == name and sc.description
    real = realize(sc, KEYS_100[:5])
    assert real.duration_min == sc.days * 1440
    cho = real.cho_schedule()
    assert cho.shape == (sc.days * 1440, 5)
    total = np.array([sum(m.carbs_g for m in s.meals) for s in real.subjects])
    np.testing.assert_allclose(cho.sum(axis=0), total, rtol=1e-9)
    assert (total > 0).all()
    for s in real.subjects:
        assert all(0 <= m.t_min < real.duration_min for m in s.meals)
    cgm = real.make_cgm()
    y = cgm.measure(0.0, np.full(5, 120.0))
    assert y.shape == (5,)
    pump = real.make_pump()
    assert pump.n == 5


@pytest.mark.parametrize("good", sorted(p.name for p in (DATA / "good").glob("*.json")))
def test_good_files_load(good: str) -> None:
    sc = load_scenario(DATA / "good" / good)
    realize(sc, ["a", "b"])


@pytest.mark.parametrize("bad", sorted(BAD_EXPECTED))
def test_bad_file_names_the_field(bad: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(DATA / "bad" / f"{bad}.json")
    assert str(info.value).startswith(BAD_EXPECTED[bad]), str(info.value)


def test_every_bad_file_has_an_expectation() -> None:
    files = {p.stem for p in (DATA / "bad").glob("*.json")}
    assert files == set(BAD_EXPECTED)


def test_error_message_format_from_the_brief() -> None:
    d = base_dict()
    d["meals"][2]["carbs_g"] = -5
    with pytest.raises(ScenarioError, match=r"^meals\[2\]\.carbs_g: must be >= 0, got -5$"):
        parse_scenario(d)
    assert issubclass(ScenarioError, ValueError)


def test_unknown_name_or_missing_file() -> None:
    with pytest.raises(ScenarioError, match="no bundled scenario or file"):
        load_scenario("no-such-scenario")


def test_meal_window_outside_simulation_is_rejected() -> None:
    d = {"name": "x", "days": 1, "start_min_of_day": 600, "meals": [{"time": "07:00", "carbs_g": 10, "days": [0]}]}
    with pytest.raises(ScenarioError, match=r"^meals\[0\]\.days\[0\]: day 0 at 07:00 is outside"):
        parse_scenario(d)


def test_schema_file_lists_the_same_fields_as_the_parser() -> None:
    schema = json.loads(resources.files("patient_model").joinpath("data/scenario.schema.json").read_text())
    assert set(schema["properties"]) == set(TOP_LEVEL_FIELDS)
    assert set(schema["required"]) == {"name", "days"}
    assert schema["additionalProperties"] is False


def test_bundled_files_reference_the_schema() -> None:
    for name in bundled_scenarios():
        text = resources.files("patient_model").joinpath(f"data/scenarios/{name}.json").read_text()
        assert json.loads(text)["$schema"] == "../scenario.schema.json"


# ---------------------------------------------------------------------------------------------------------
# realization
# ---------------------------------------------------------------------------------------------------------
def test_reference_scenario_matches_shared_trace_meals() -> None:
    real = realize(load_scenario("reference-3meals"), ["adult#001"])
    cho = real.cho_schedule()[:, 0]
    expected = np.zeros(1440)
    expected[420:430] = 5.0
    expected[720:734] = 5.0
    expected[1080:1096] = 5.0
    np.testing.assert_allclose(cho, expected, atol=1e-12)
    assert not real.scenario.sensor.noise
    ann = real.announcements(0)
    assert [(m.t_min, m.announced_carbs_g, m.announced_at_min) for m in ann] == [
        (420.0, 50.0, 420.0), (720.0, 70.0, 720.0), (1080.0, 80.0, 1080.0)]


def test_reference_scenario_matches_trace_file(shared_reference: Path) -> None:
    trace = np.genfromtxt(shared_reference / "uva_padova_s2008" / "traces" / "A_adult001.csv", delimiter=",",
                          names=True)
    real = realize(load_scenario("reference-3meals"), ["adult#001"])
    np.testing.assert_allclose(real.cho_schedule()[:, 0], trace["cho_g_per_min"][:1440], atol=1e-9)


def test_cho_g_per_min_agrees_with_schedule_and_handles_fractional_overlap() -> None:
    real = realize(load_scenario("hcl-3day"), KEYS_100[:7])
    sched = real.cho_schedule()
    for t in (0, 425, 431, 760, 1100, 4319):
        np.testing.assert_allclose(real.cho_g_per_min(t), sched[t], rtol=1e-12, atol=1e-12)
    d = {"name": "x", "days": 1, "meals": [{"time": "07:00", "carbs_g": 30, "duration_min": 2.5}]}
    r = realize(parse_scenario(d), ["a"])
    np.testing.assert_allclose([r.cho_g_per_min(t)[0] for t in (419, 420, 421, 422, 423)], [0, 12, 12, 6, 0])
    np.testing.assert_allclose(r.cho_g_per_min(420.5), [12.0])


def test_determinism_same_seed_same_meals() -> None:
    sc = load_scenario("hcl-3day")
    a = realize(sc, KEYS_100[:10])
    b = realize(sc, KEYS_100[:10])
    assert a.subjects == b.subjects
    c = realize(sc, KEYS_100[:10], seed=sc.seed + 1)
    assert a.subjects != c.subjects
    assert a.seed == sc.seed


def test_chunking_invariance_of_realizations() -> None:
    sc = load_scenario("hcl-3day")
    cohort = realize(sc, KEYS_100)
    for k in (0, 57, 99):
        alone = realize(sc, [KEYS_100[k]])
        assert alone.subjects[0] == cohort.subjects[k]
        np.testing.assert_array_equal(alone.cho_schedule()[:, 0], cohort.cho_schedule()[:, k])
    shuffled = realize(sc, KEYS_100[::-1])
    assert shuffled.subjects[::-1] == cohort.subjects


def test_different_subjects_get_different_meals() -> None:
    real = realize(load_scenario("hcl-3day"), KEYS_100[:20])
    assert len({tuple(m.t_min for m in s.meals) for s in real.subjects}) == 20


def test_hcl_and_fcl_share_meals_but_fcl_announces_none() -> None:
    hcl = realize(load_scenario("hcl-3day"), KEYS_100[:5])
    fcl = realize(load_scenario("fcl-3day"), KEYS_100[:5])
    for h, f in zip(hcl.subjects, fcl.subjects):
        assert [(m.t_min, m.carbs_g) for m in h.meals] == [(m.t_min, m.carbs_g) for m in f.meals]
        assert all(m.announced for m in h.meals)
        assert not any(m.announced for m in f.meals)
    assert fcl.announcements(0) == ()


def test_random_meal_times_and_sizes_within_bounds() -> None:
    sc = load_scenario("hcl-3day")
    assert sc.random_meals is not None
    slots = {s.label: s for s in sc.random_meals.slots}
    real = realize(sc, KEYS_100)
    counts = {label: 0 for label in slots}
    for s in real.subjects:
        for m in s.meals:
            slot = slots[m.label]
            tod = m.t_min % 1440
            assert slot.time_min_of_day.lo <= tod <= slot.time_min_of_day.hi
            assert slot.carbs_g.lo <= m.carbs_g <= slot.carbs_g.hi
            assert -15 <= m.announced_at_min - m.t_min <= 0 or m.announced_at_min == 0
            counts[m.label] += 1
    n_days = 100 * 3
    for label in ("breakfast", "lunch", "dinner"):
        assert counts[label] == n_days
    # snacks occur with their probability (binomial, 300 trials: +-4 SD)
    for label, p in (("morning snack", 0.3), ("afternoon snack", 0.5), ("evening snack", 0.3)):
        sd = (n_days * p * (1 - p)) ** 0.5
        assert abs(counts[label] - n_days * p) < 4 * sd


def test_random_meal_time_distribution_is_centred() -> None:
    real = realize(load_scenario("hcl-3day"), [f"s{i}" for i in range(300)])
    bt = np.array([m.t_min % 1440 for s in real.subjects for m in s.meals if m.label == "breakfast"])
    assert abs(bt.mean() - 450.0) < 5.0  # mean 07:30, SD 30 min, bounds nearly symmetric
    assert 22.0 < bt.std() < 32.0


def test_carb_counting_error_statistics() -> None:
    d = {"name": "cce", "days": 10, "meals": [{"time": "12:00", "carbs_g": 60}],
         "carb_counting_error": {"sd_pct": 20, "bias_pct": -10}}
    real = realize(parse_scenario(d), [f"s{i}" for i in range(300)])
    ratio = np.array([m.announced_carbs_g / m.carbs_g for s in real.subjects for m in s.meals])
    assert ratio.size == 3000
    assert ratio.mean() == pytest.approx(0.9, abs=0.015)
    assert ratio.std() == pytest.approx(0.2, rel=0.06)


def test_random_meal_carb_counting_error_statistics() -> None:
    real = realize(load_scenario("hcl-3day"), [f"s{i}" for i in range(300)])
    ratio = np.array([m.announced_carbs_g / m.carbs_g for s in real.subjects for m in s.meals])
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    assert ratio.std() == pytest.approx(0.2, rel=0.08)


def test_explicit_announced_carbs_and_offset() -> None:
    d = {"name": "x", "days": 2, "meals": [
        {"time": "07:00", "carbs_g": 50, "announced_carbs_g": 40, "announce_offset_min": -20, "days": [1]},
        {"time": "00:05", "carbs_g": 10, "announce_offset_min": -15}]}
    real = realize(parse_scenario(d), ["a"])
    meals = real.subjects[0].meals
    assert [(m.t_min, m.announced_at_min) for m in meals] == [(5.0, 0.0), (1445.0, 1430.0), (1860.0, 1840.0)]
    assert meals[2].announced_carbs_g == 40.0
    assert real.announcements_between(1430, 1431) == ((0, meals[1]),)


def test_start_min_of_day_shifts_events_and_wraps_days() -> None:
    real = realize(load_scenario(DATA / "good" / "overnight.json"), ["a"])
    assert real.start_min_of_day == 1320
    assert [m.t_min for m in real.subjects[0].meals] == [60.0, 540.0]


def test_faults_scenario_realizes_device_faults() -> None:
    real = realize(load_scenario("faults-1day"), ["a", "b"])
    s = real.subjects[0]
    assert s.occlusions == ((540.0, 660.0),)
    assert s.sensor_faults.dropouts == ((120.0, 150.0), (840.0, 860.0))
    assert len(s.sensor_faults.compression_lows) == 1
    np.testing.assert_array_equal(real.occluded_at(539), [False, False])
    np.testing.assert_array_equal(real.occluded_at(540), [True, True])
    np.testing.assert_array_equal(real.occluded_at(660), [False, False])
    cgm = real.make_cgm()
    assert np.isnan(cgm.measure(125.0, np.full(2, 120.0))).all()
    truth = np.full(2, 120.0)
    clean = realize(load_scenario("faults-1day"), ["a", "b"]).make_cgm()
    clean.set_faults(0, type(s.sensor_faults)())
    clean.set_faults(1, type(s.sensor_faults)())
    np.testing.assert_allclose(clean.measure(210.0, truth) - cgm.measure(210.0, truth), [45.0, 45.0])


def test_fault_probability_is_per_subject() -> None:
    d = {"name": "x", "days": 1, "pump": {"faults": {"occlusions": [
        {"day": 0, "time": "09:00", "duration_min": 60, "probability": 0.5}]}}}
    real = realize(parse_scenario(d), [f"s{i}" for i in range(400)])
    frac = np.mean([bool(s.occlusions) for s in real.subjects])
    assert 0.4 < frac < 0.6


def test_physiology_flags_and_devices_pass_through() -> None:
    real = realize(load_scenario(DATA / "good" / "base.json"), ["a"])
    assert real.hypo_risk_term is True and real.intraday_variation is False
    assert real.sensor_params().name == "GuardianRT"
    assert real.pump_params().name == "Cozmo"


def test_realize_rejects_bad_keys_and_seed() -> None:
    sc = load_scenario("default-1day")
    with pytest.raises(ScenarioError, match="unique"):
        realize(sc, ["a", "a"])
    with pytest.raises(ScenarioError, match="subject_keys"):
        realize(sc, [])
    with pytest.raises(ScenarioError, match="subject_keys"):
        realize(sc, "abc")
    with pytest.raises(ScenarioError, match="seed"):
        realize(sc, ["a"], seed=-3)


def test_default_day_is_realistic() -> None:
    real = realize(load_scenario("default-1day"), [f"s{i}" for i in range(50)])
    for s in real.subjects:
        by = {m.label: m for m in s.meals}
        assert 390 <= by["breakfast"].t_min <= 450 and 45 <= by["breakfast"].carbs_g <= 60
        assert 720 <= by["lunch"].t_min <= 780 and 60 <= by["lunch"].carbs_g <= 70
        assert 1080 <= by["dinner"].t_min <= 1140 and 70 <= by["dinner"].carbs_g <= 80
        for m in s.meals:
            assert m.announced and -15 <= m.announced_at_min - m.t_min <= 0


def test_truncated_normal_sampler_edges() -> None:
    d = TruncatedNormal(mean=10.0, sd=0.0, lo=5.0, hi=20.0)
    assert truncated_normal_from_uniform(0.3, d) == 10.0
    far = TruncatedNormal(mean=0.0, sd=1.0, lo=50.0, hi=60.0)
    assert 50.0 <= truncated_normal_from_uniform(0.5, far) <= 60.0
    d = TruncatedNormal(mean=0.0, sd=1.0, lo=-1.0, hi=1.0)
    assert truncated_normal_from_uniform(0.0, d) == pytest.approx(-1.0)
    assert truncated_normal_from_uniform(0.5, d) == pytest.approx(0.0, abs=1e-12)


def test_parse_does_not_mutate_input() -> None:
    d = base_dict()
    before = copy.deepcopy(d)
    parse_scenario(d)
    assert d == before


def test_schema_definitions_match_the_parser_fields() -> None:
    from patient_model import scenario_schema as ss
    schema = json.loads(resources.files("patient_model").joinpath("data/scenario.schema.json").read_text())
    defs = schema["$defs"]
    assert set(defs["fixed_meal"]["properties"]) == set(ss._MEAL_FIELDS)
    assert set(defs["slot"]["properties"]) == set(ss._SLOT_FIELDS)
    assert set(schema["properties"]["sensor"]["properties"]["model"]["enum"]) == set(ss.SENSOR_MODELS)
    assert set(schema["properties"]["pump"]["properties"]["model"]["enum"]) == set(ss.PUMP_MODELS)


def test_patient_model_device_modules_import_no_other_project_package() -> None:
    import ast
    pkg = Path(resources.files("patient_model"))
    forbidden = {"safety", "controller", "drivers", "trials", "hil", "twinloop"}
    for mod in ("sensor.py", "pump.py", "scenarios.py", "scenario_schema.py", "meal_generator.py"):
        tree = ast.parse((pkg / mod).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & forbidden, (mod, names)


@pytest.mark.parametrize("source", [*bundled_scenarios(), *(str(p) for p in sorted((DATA / "good").glob("*.json")))])
def test_scenario_round_trips_through_a_dict(source: str) -> None:
    from patient_model.scenarios import scenario_to_dict
    sc = load_scenario(source)
    d = scenario_to_dict(sc)
    assert parse_scenario(json.loads(json.dumps(d))) == sc


_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                         st.sampled_from(["07:00", "all", "Dexcom", "24:00", ""]))
_JSON_VALUES = st.recursive(_JSON_LEAVES, lambda kids: st.lists(kids, max_size=3)
                            | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=6)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_mutation_gives_a_scenario_or_a_scenario_error(data) -> None:
    d = base_dict()
    paths = [p for p in _paths(d) if p]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(_JSON_VALUES)
    target = d
    for k in path[:-1]:
        target = target[k]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    try:
        sc = parse_scenario(d)
    except ScenarioError as exc:
        msg = str(exc)
        heads = [f"{k}{sep}" for k in TOP_LEVEL_FIELDS for sep in (":", ".", "[")]
        assert msg.startswith((*heads, "<root>", "[")), (path, msg)  # the message starts with a field path
        assert ": " in msg
        return
    realize(sc, ["a", "b"]).cho_schedule()


def test_replacing_days_keeps_a_consistent_scenario() -> None:
    from dataclasses import replace
    sc = load_scenario("faults-1day")
    longer = replace(sc, days=3)
    real = realize(longer, ["a"])
    assert real.duration_min == 3 * 1440
    assert [m.t_min for m in real.subjects[0].meals][3:6] == [1860.0, 2160.0, 2520.0]
    with pytest.raises(ScenarioError, match="days"):
        replace(sc, days=0)
    short = replace(load_scenario(DATA / "good" / "base.json"), days=1)  # explicit day-1 lunch drops out
    assert all(m.t_min < 1440 for m in realize(short, ["a"]).subjects[0].meals)


def test_realization_and_devices_pickle_for_distributed_runs() -> None:
    import pickle
    real = realize(load_scenario("faults-1day"), ["a", "b"])
    again = pickle.loads(pickle.dumps(real))
    assert again == real
    np.testing.assert_array_equal(again.cho_schedule(), real.cho_schedule())
    cgm = real.make_cgm()
    cgm.measure(0.0, np.full(2, 100.0))
    cgm2 = pickle.loads(pickle.dumps(cgm))
    np.testing.assert_array_equal(cgm.measure(3000.0, np.full(2, 100.0)), cgm2.measure(3000.0, np.full(2, 100.0)))

"""Scenario file format: the parsed, validated scenario and its hand-written validator.

The format is documented in ``docs/scenarios.md`` and described by ``data/scenario.schema.json``
(JSON Schema, for editors and other tools). Validation here uses no external library: every problem raises
:class:`ScenarioError` whose message starts with the path of the offending field, e.g.
``meals[2].carbs_g: must be >= 0, got -5``. Unknown fields and wrong types are rejected.

Times of day are ``"HH:MM"`` strings (00:00-23:59); day indices are 0-based (day 0 is the first simulated
day). Simulation minute 0 is ``start_min_of_day`` on day 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "ScenarioError",
    "OffsetRange",
    "FixedMeal",
    "TruncatedNormal",
    "RandomMealSlot",
    "RandomMeals",
    "CarbCountingError",
    "PhysiologySpec",
    "FaultWindow",
    "CompressionLowSpec",
    "SensorSpec",
    "PumpSpec",
    "Scenario",
    "parse_scenario",
    "scenario_to_dict",
    "SENSOR_MODELS",
    "PUMP_MODELS",
    "MIN_PER_DAY",
]

MIN_PER_DAY = 1440
SENSOR_MODELS = ("Dexcom", "GuardianRT", "Navigator")
PUMP_MODELS = ("Cozmo", "Insulet")
MAX_DAYS = 366

_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_MISSING: Any = object()


class ScenarioError(ValueError):
    """A scenario file or mapping is invalid; the message starts with the field path."""


# --------------------------------------------------------------------------------------------------------
# parsed scenario
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OffsetRange:
    """Announcement time relative to meal start (min), drawn uniformly in [lo_min, hi_min] per meal."""

    lo_min: float = 0.0
    hi_min: float = 0.0


@dataclass(frozen=True)
class FixedMeal:
    """A meal at a fixed time of day. ``days`` is None for every day, else the 0-based day indices."""

    time_min_of_day: int
    carbs_g: float
    duration_min: float
    days: tuple[int, ...] | None
    announced: bool
    announced_carbs_g: float | None
    announce_offset: OffsetRange
    label: str


@dataclass(frozen=True)
class TruncatedNormal:
    """Normal(mean, sd) truncated to [lo, hi] (units of the field that holds it)."""

    mean: float
    sd: float
    lo: float
    hi: float


@dataclass(frozen=True)
class RandomMealSlot:
    """A meal that occurs each day with ``probability``; time (min of day) and carbs (g) truncated normal."""

    label: str
    probability: float
    time_min_of_day: TruncatedNormal
    carbs_g: TruncatedNormal
    duration_min: float
    announced: bool
    announce_offset: OffsetRange


@dataclass(frozen=True)
class RandomMeals:
    """The random meal generator: ``slots`` drawn on ``days`` (None = every day)."""

    days: tuple[int, ...] | None
    slots: tuple[RandomMealSlot, ...]


@dataclass(frozen=True)
class CarbCountingError:
    """Announced carbs = true carbs x (1 + bias_pct/100 + sd_pct/100 x z), z ~ N(0, 1), floored at 0."""

    sd_pct: float = 0.0
    bias_pct: float = 0.0


@dataclass(frozen=True)
class PhysiologySpec:
    """Switches of the UVA/Padova model (mirrors ``physiology.PhysiologyOptions``)."""

    hypo_risk_term: bool = False
    intraday_variation: bool = False


@dataclass(frozen=True)
class FaultWindow:
    """A fault that starts on ``day`` at ``time_min_of_day`` and lasts ``duration_min``; it happens to
    each subject independently with ``probability``."""

    day: int
    time_min_of_day: int
    duration_min: float
    probability: float = 1.0


@dataclass(frozen=True)
class CompressionLowSpec:
    """A compression low window: the reading is pulled down by ``depth_mg_dl`` with ``ramp_min`` ramps."""

    window: FaultWindow
    depth_mg_dl: float
    ramp_min: float


@dataclass(frozen=True)
class SensorSpec:
    """CGM settings: bundled model name, sample time (min), noise on/off, optional extra lag, faults."""

    model: str = "Dexcom"
    sample_time_min: float = 5.0
    noise: bool = True
    lag_tau_min: float | None = None
    dropouts: tuple[FaultWindow, ...] = ()
    compression_lows: tuple[CompressionLowSpec, ...] = ()
    drift_pct_per_day: float = 0.0
    calibration_gain: float = 1.0
    calibration_offset_mg_dl: float = 0.0


@dataclass(frozen=True)
class PumpSpec:
    """Pump settings: bundled model name, optional reservoir (U) and bolus speed (U/min), occlusions."""

    model: str = "Insulet"
    reservoir_u: float | None = None
    bolus_speed_u_per_min: float | None = None
    occlusions: tuple[FaultWindow, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A parsed, validated scenario. ``duration_min = days * 1440``."""

    name: str
    description: str
    days: int
    start_min_of_day: int
    seed: int
    meals: tuple[FixedMeal, ...]
    random_meals: RandomMeals | None
    carb_counting_error: CarbCountingError
    physiology: PhysiologySpec
    sensor: SensorSpec
    pump: PumpSpec

    def __post_init__(self) -> None:
        # re-checked here so that dataclasses.replace(scenario, days=...) cannot build a broken scenario
        if isinstance(self.days, bool) or not isinstance(self.days, int) or not 1 <= self.days <= MAX_DAYS:
            raise ScenarioError(f"days: must be an integer in [1, {MAX_DAYS}], got {self.days!r}")
        if isinstance(self.start_min_of_day, bool) or not isinstance(self.start_min_of_day, int) \
                or not 0 <= self.start_min_of_day < MIN_PER_DAY:
            raise ScenarioError(f"start_min_of_day: must be an integer in [0, 1439], got {self.start_min_of_day!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ScenarioError(f"seed: must be an integer >= 0, got {self.seed!r}")

    @property
    def duration_min(self) -> int:
        """Simulated time (min)."""
        return self.days * MIN_PER_DAY

    def t_min_of(self, day: int, time_min_of_day: float) -> float:
        """Simulation minute of ``time_min_of_day`` on 0-based ``day``."""
        return day * MIN_PER_DAY + time_min_of_day - self.start_min_of_day

    def calendar_days(self) -> range:
        """Calendar day indices that overlap the simulated window."""
        return range(self.days + (1 if self.start_min_of_day > 0 else 0))


# --------------------------------------------------------------------------------------------------------
# validation primitives
# --------------------------------------------------------------------------------------------------------
_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def _join(path: str, key: str) -> str:
    if not _PLAIN_KEY_RE.match(key):  # quote odd keys so the path stays unambiguous
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


def _describe(v: Any) -> str:
    if isinstance(v, str):
        return f"string {v!r}"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, Mapping):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    return f"{type(v).__name__} {v!r}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _object(v: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ScenarioError(f"{path or '<root>'}: must be an object, got {_describe(v)}")
    for k in v:
        if not isinstance(k, str):
            raise ScenarioError(f"{path or '<root>'}: keys must be strings, got {k!r}")
        if k not in allowed:
            raise ScenarioError(f"{_join(path, k)}: unknown field (allowed: {', '.join(allowed)})")
    for k in required:
        if k not in v:
            raise ScenarioError(f"{_join(path, k)}: required field missing")
    return v


def _array(v: Any, path: str) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise ScenarioError(f"{path}: must be an array, got {_describe(v)}")
    return list(v)


def _number(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING, *, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            nullable: bool = False) -> Any:
    p = _join(path, key)
    if key not in d:
        if default is _MISSING:
            raise ScenarioError(f"{p}: required field missing")
        return default
    v = d[key]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ScenarioError(f"{p}: must be a number, got {_describe(v)}")
    if not math.isfinite(v):
        raise ScenarioError(f"{p}: must be finite, got {v}")
    if ge is not None and v < ge:
        raise ScenarioError(f"{p}: must be >= {_fmt(ge)}, got {_fmt(v)}")
    if gt is not None and v <= gt:
        raise ScenarioError(f"{p}: must be > {_fmt(gt)}, got {_fmt(v)}")
    if le is not None and v > le:
        raise ScenarioError(f"{p}: must be <= {_fmt(le)}, got {_fmt(v)}")
    if lt is not None and v >= lt:
        raise ScenarioError(f"{p}: must be < {_fmt(lt)}, got {_fmt(v)}")
    return float(v)


def _integer(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING, *, ge: int | None = None,
             le: int | None = None) -> int:
    p = _join(path, key)
    if key not in d:
        if default is _MISSING:
            raise ScenarioError(f"{p}: required field missing")
        return int(default)
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ScenarioError(f"{p}: must be an integer, got {_describe(v)}")
    if ge is not None and v < ge:
        raise ScenarioError(f"{p}: must be >= {ge}, got {v}")
    if le is not None and v > le:
        raise ScenarioError(f"{p}: must be <= {le}, got {v}")
    return int(v)


def _boolean(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> bool:
    p = _join(path, key)
    if key not in d:
        if default is _MISSING:
            raise ScenarioError(f"{p}: required field missing")
        return bool(default)
    v = d[key]
    if not isinstance(v, bool):
        raise ScenarioError(f"{p}: must be true or false, got {_describe(v)}")
    return v


def _string(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING, *,
            choices: tuple[str, ...] | None = None, nonempty: bool = False) -> str:
    p = _join(path, key)
    if key not in d:
        if default is _MISSING:
            raise ScenarioError(f"{p}: required field missing")
        return str(default)
    v = d[key]
    if not isinstance(v, str):
        raise ScenarioError(f"{p}: must be a string, got {_describe(v)}")
    if nonempty and not v.strip():
        raise ScenarioError(f"{p}: must not be empty")
    if choices is not None and v not in choices:
        raise ScenarioError(f"{p}: must be one of {', '.join(choices)}, got {v!r}")
    return v


def _time_of_day(v: Any, path: str) -> int:
    if not isinstance(v, str):
        raise ScenarioError(f"{path}: must be a time \"HH:MM\", got {_describe(v)}")
    m = _TIME_RE.match(v)
    if m is None:
        raise ScenarioError(f"{path}: must be a time \"HH:MM\" between 00:00 and 23:59, got {v!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def _time_field(d: Mapping[str, Any], key: str, path: str) -> int:
    if key not in d:
        raise ScenarioError(f"{_join(path, key)}: required field missing")
    return _time_of_day(d[key], _join(path, key))


def _days(d: Mapping[str, Any], key: str, path: str, n_days: int) -> tuple[int, ...] | None:
    p = _join(path, key)
    if key not in d:
        return None
    v = d[key]
    if v == "all":
        return None
    if isinstance(v, str):
        raise ScenarioError(f"{p}: must be \"all\" or an array of day indices, got {v!r}")
    items = _array(v, p)
    if not items:
        raise ScenarioError(f"{p}: must not be empty (use \"all\" or list days)")
    out = []
    for i, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int):
            raise ScenarioError(f"{p}[{i}]: must be an integer day index, got {_describe(x)}")
        if not 0 <= x < n_days:
            raise ScenarioError(f"{p}[{i}]: must be in [0, {n_days - 1}], got {x}")
        out.append(int(x))
    if len(set(out)) != len(out):
        raise ScenarioError(f"{p}: day indices must be unique")
    return tuple(sorted(out))


def _offset(d: Mapping[str, Any], key: str, path: str, default: OffsetRange) -> OffsetRange:
    p = _join(path, key)
    if key not in d:
        return default
    v = d[key]
    if isinstance(v, Mapping):
        o = _object(v, p, ("min", "max"), ("min", "max"))
        lo = _number(o, "min", p, ge=-720, le=720)
        hi = _number(o, "max", p, ge=-720, le=720)
        if hi < lo:
            raise ScenarioError(f"{p}.max: must be >= {p}.min ({_fmt(lo)}), got {_fmt(hi)}")
        return OffsetRange(lo, hi)
    x = _number(d, key, path, ge=-720, le=720)
    return OffsetRange(x, x)


# --------------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------------
_MEAL_FIELDS = ("label", "time", "carbs_g", "duration_min", "days", "announced", "announced_carbs_g",
                "announce_offset_min")


def _fixed_meal(v: Any, path: str, n_days: int, scenario_days: int, start: int) -> FixedMeal:
    o = _object(v, path, _MEAL_FIELDS, ("time", "carbs_g"))
    tod = _time_field(o, "time", path)
    days = _days(o, "days", path, n_days)
    if days is not None:
        for i, day in enumerate(days):
            t = day * MIN_PER_DAY + tod - start
            if not 0 <= t < scenario_days * MIN_PER_DAY:
                raise ScenarioError(f"{path}.days[{i}]: day {day} at {o['time']} is outside the simulated window")
    return FixedMeal(
        time_min_of_day=tod,
        carbs_g=_number(o, "carbs_g", path, ge=0, le=500),
        duration_min=_number(o, "duration_min", path, 15.0, gt=0, le=240),
        days=days,
        announced=_boolean(o, "announced", path, True),
        announced_carbs_g=_number(o, "announced_carbs_g", path, None, ge=0, le=500, nullable=True),
        announce_offset=_offset(o, "announce_offset_min", path, OffsetRange()),
        label=_string(o, "label", path, ""),
    )


def _truncnorm(d: Mapping[str, Any], key: str, path: str, *, time: bool, lo_bound: float, hi_bound: float
               ) -> TruncatedNormal:
    p = _join(path, key)
    if key not in d:
        raise ScenarioError(f"{p}: required field missing")
    sd_key = "sd_min" if time else "sd"
    o = _object(d[key], p, ("mean", sd_key, "min", "max"), ("mean", sd_key, "min", "max"))
    if time:
        mean, lo, hi = (float(_time_field(o, k, p)) for k in ("mean", "min", "max"))
    else:
        mean, lo, hi = (_number(o, k, p, ge=lo_bound, le=hi_bound) for k in ("mean", "min", "max"))
    sd = _number(o, sd_key, p, ge=0, le=hi_bound)
    if lo > hi:
        raise ScenarioError(f"{p}.max: must be >= {p}.min, got {o['max']!r} < {o['min']!r}")
    if not lo <= mean <= hi:
        raise ScenarioError(f"{p}.mean: must lie within [{p}.min, {p}.max], got {o['mean']!r}")
    return TruncatedNormal(mean, sd, lo, hi)


_SLOT_FIELDS = ("label", "probability", "time", "carbs_g", "duration_min", "announced", "announce_offset_min")


def _random_meals(v: Any, path: str, n_days: int) -> RandomMeals:
    o = _object(v, path, ("days", "announced", "announce_offset_min", "slots"), ("slots",))
    announced = _boolean(o, "announced", path, True)
    offset = _offset(o, "announce_offset_min", path, OffsetRange())
    days = _days(o, "days", path, n_days)
    slots = []
    for i, s in enumerate(_array(o["slots"], f"{path}.slots")):
        sp = f"{path}.slots[{i}]"
        so = _object(s, sp, _SLOT_FIELDS, ("label", "time", "carbs_g"))
        slots.append(RandomMealSlot(
            label=_string(so, "label", sp, nonempty=True),
            probability=_number(so, "probability", sp, 1.0, ge=0, le=1),
            time_min_of_day=_truncnorm(so, "time", sp, time=True, lo_bound=0, hi_bound=MIN_PER_DAY),
            carbs_g=_truncnorm(so, "carbs_g", sp, time=False, lo_bound=0, hi_bound=500),
            duration_min=_number(so, "duration_min", sp, 15.0, gt=0, le=240),
            announced=_boolean(so, "announced", sp, announced),
            announce_offset=_offset(so, "announce_offset_min", sp, offset),
        ))
    return RandomMeals(days=days, slots=tuple(slots))


def _window(v: Any, path: str, extra: tuple[str, ...], scenario: tuple[int, int]) -> tuple[FaultWindow, Mapping]:
    days, start = scenario
    o = _object(v, path, ("day", "time", "duration_min", "probability", *extra), ("day", "time", "duration_min"))
    day = _integer(o, "day", path, ge=0, le=days)
    tod = _time_field(o, "time", path)
    t = day * MIN_PER_DAY + tod - start
    if not 0 <= t < days * MIN_PER_DAY:
        raise ScenarioError(f"{path}.day: day {day} at {o['time']} is outside the simulated window")
    w = FaultWindow(day=day, time_min_of_day=tod,
                    duration_min=_number(o, "duration_min", path, gt=0, le=days * MIN_PER_DAY),
                    probability=_number(o, "probability", path, 1.0, ge=0, le=1))
    return w, o


def _sensor(v: Any, path: str, scenario: tuple[int, int]) -> SensorSpec:
    o = _object(v, path, ("model", "sample_time_min", "noise", "lag_tau_min", "faults"))
    dropouts: list[FaultWindow] = []
    lows: list[CompressionLowSpec] = []
    drift, gain, offset = 0.0, 1.0, 0.0
    if "faults" in o:
        fp = f"{path}.faults"
        f = _object(o["faults"], fp, ("dropouts", "compression_lows", "drift_pct_per_day", "calibration_gain",
                                      "calibration_offset_mg_dl"))
        for i, w in enumerate(_array(f.get("dropouts", []), f"{fp}.dropouts")):
            dropouts.append(_window(w, f"{fp}.dropouts[{i}]", (), scenario)[0])
        for i, w in enumerate(_array(f.get("compression_lows", []), f"{fp}.compression_lows")):
            cp = f"{fp}.compression_lows[{i}]"
            win, co = _window(w, cp, ("depth_mg_dl", "ramp_min"), scenario)
            lows.append(CompressionLowSpec(win, _number(co, "depth_mg_dl", cp, ge=0, le=300),
                                           _number(co, "ramp_min", cp, 10.0, ge=0, le=240)))
        drift = _number(f, "drift_pct_per_day", fp, 0.0, ge=-50, le=50)
        gain = _number(f, "calibration_gain", fp, 1.0, gt=0, le=5)
        offset = _number(f, "calibration_offset_mg_dl", fp, 0.0, ge=-200, le=200)
    return SensorSpec(
        model=_string(o, "model", path, "Dexcom", choices=SENSOR_MODELS),
        sample_time_min=_number(o, "sample_time_min", path, 5.0, gt=0, le=60),
        noise=_boolean(o, "noise", path, True),
        lag_tau_min=_number(o, "lag_tau_min", path, None, gt=0, le=60, nullable=True),
        dropouts=tuple(dropouts), compression_lows=tuple(lows),
        drift_pct_per_day=drift, calibration_gain=gain, calibration_offset_mg_dl=offset)


def _pump(v: Any, path: str, scenario: tuple[int, int]) -> PumpSpec:
    o = _object(v, path, ("model", "reservoir_u", "bolus_speed_u_per_min", "faults"))
    occlusions: list[FaultWindow] = []
    if "faults" in o:
        fp = f"{path}.faults"
        f = _object(o["faults"], fp, ("occlusions",))
        for i, w in enumerate(_array(f.get("occlusions", []), f"{fp}.occlusions")):
            occlusions.append(_window(w, f"{fp}.occlusions[{i}]", (), scenario)[0])
    return PumpSpec(
        model=_string(o, "model", path, "Insulet", choices=PUMP_MODELS),
        reservoir_u=_number(o, "reservoir_u", path, None, gt=0, le=1000, nullable=True),
        bolus_speed_u_per_min=_number(o, "bolus_speed_u_per_min", path, None, gt=0, le=100, nullable=True),
        occlusions=tuple(occlusions))


TOP_LEVEL_FIELDS = ("$schema", "name", "description", "days", "start_min_of_day", "seed", "meals", "random_meals",
                    "carb_counting_error", "physiology", "sensor", "pump")


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate a scenario mapping (e.g. parsed JSON) and return the :class:`Scenario`.

    Raises :class:`ScenarioError` naming the first offending field.
    """
    o = _object(data, "", TOP_LEVEL_FIELDS, ("name", "days"))
    if "$schema" in o and not isinstance(o["$schema"], str):
        raise ScenarioError(f"$schema: must be a string, got {_describe(o['$schema'])}")
    name = _string(o, "name", "", nonempty=True)
    days = _integer(o, "days", "", ge=1, le=MAX_DAYS)
    start = _integer(o, "start_min_of_day", "", 0, ge=0, le=MIN_PER_DAY - 1)
    seed = _integer(o, "seed", "", 0, ge=0, le=2 ** 63 - 1)
    n_cal = days + (1 if start > 0 else 0)
    meals = tuple(_fixed_meal(m, f"meals[{i}]", n_cal, days, start)
                  for i, m in enumerate(_array(o.get("meals", []), "meals")))
    random_meals = None if o.get("random_meals") is None else _random_meals(o["random_meals"], "random_meals",
                                                                             n_cal)
    cce = CarbCountingError()
    if "carb_counting_error" in o:
        c = _object(o["carb_counting_error"], "carb_counting_error", ("sd_pct", "bias_pct"))
        cce = CarbCountingError(_number(c, "sd_pct", "carb_counting_error", 0.0, ge=0, le=100),
                                _number(c, "bias_pct", "carb_counting_error", 0.0, gt=-100, le=100))
    phys = PhysiologySpec()
    if "physiology" in o:
        ph = _object(o["physiology"], "physiology", ("hypo_risk_term", "intraday_variation"))
        phys = PhysiologySpec(_boolean(ph, "hypo_risk_term", "physiology", False),
                              _boolean(ph, "intraday_variation", "physiology", False))
    sensor = _sensor(o.get("sensor", {}), "sensor", (days, start))
    pump = _pump(o.get("pump", {}), "pump", (days, start))
    return Scenario(name=name, description=_string(o, "description", "", ""), days=days, start_min_of_day=start,
                    seed=seed, meals=meals, random_meals=random_meals, carb_counting_error=cce, physiology=phys,
                    sensor=sensor, pump=pump)


# --------------------------------------------------------------------------------------------------------
# back to JSON
# --------------------------------------------------------------------------------------------------------
def _hhmm(tod: float) -> str:
    m = int(tod)
    return f"{m // 60:02d}:{m % 60:02d}"


def _offset_out(r: OffsetRange) -> Any:
    return r.lo_min if r.lo_min == r.hi_min else {"min": r.lo_min, "max": r.hi_min}


def _days_out(days: tuple[int, ...] | None) -> Any:
    return "all" if days is None else list(days)


def _window_out(w: FaultWindow) -> dict[str, Any]:
    return {"day": w.day, "time": _hhmm(w.time_min_of_day), "duration_min": w.duration_min,
            "probability": w.probability}


def scenario_to_dict(sc: Scenario) -> dict[str, Any]:
    """The scenario as a JSON-ready mapping with every default written out;
    ``parse_scenario(scenario_to_dict(sc)) == sc``."""
    out: dict[str, Any] = {
        "name": sc.name, "description": sc.description, "days": sc.days,
        "start_min_of_day": sc.start_min_of_day, "seed": sc.seed,
        "meals": [{"label": m.label, "time": _hhmm(m.time_min_of_day), "carbs_g": m.carbs_g,
                   "duration_min": m.duration_min, "days": _days_out(m.days), "announced": m.announced,
                   "announced_carbs_g": m.announced_carbs_g, "announce_offset_min": _offset_out(m.announce_offset)}
                  for m in sc.meals],
        "random_meals": None,
        "carb_counting_error": {"sd_pct": sc.carb_counting_error.sd_pct,
                                "bias_pct": sc.carb_counting_error.bias_pct},
        "physiology": {"hypo_risk_term": sc.physiology.hypo_risk_term,
                       "intraday_variation": sc.physiology.intraday_variation},
        "sensor": {"model": sc.sensor.model, "sample_time_min": sc.sensor.sample_time_min,
                   "noise": sc.sensor.noise, "lag_tau_min": sc.sensor.lag_tau_min,
                   "faults": {"dropouts": [_window_out(w) for w in sc.sensor.dropouts],
                              "compression_lows": [{**_window_out(c.window), "depth_mg_dl": c.depth_mg_dl,
                                                    "ramp_min": c.ramp_min} for c in sc.sensor.compression_lows],
                              "drift_pct_per_day": sc.sensor.drift_pct_per_day,
                              "calibration_gain": sc.sensor.calibration_gain,
                              "calibration_offset_mg_dl": sc.sensor.calibration_offset_mg_dl}},
        "pump": {"model": sc.pump.model, "reservoir_u": sc.pump.reservoir_u,
                 "bolus_speed_u_per_min": sc.pump.bolus_speed_u_per_min,
                 "faults": {"occlusions": [_window_out(w) for w in sc.pump.occlusions]}},
    }
    rm = sc.random_meals
    if rm is not None:
        out["random_meals"] = {"days": _days_out(rm.days), "slots": [
            {"label": s.label, "probability": s.probability,
             "time": {"mean": _hhmm(s.time_min_of_day.mean), "sd_min": s.time_min_of_day.sd,
                      "min": _hhmm(s.time_min_of_day.lo), "max": _hhmm(s.time_min_of_day.hi)},
             "carbs_g": {"mean": s.carbs_g.mean, "sd": s.carbs_g.sd, "min": s.carbs_g.lo, "max": s.carbs_g.hi},
             "duration_min": s.duration_min, "announced": s.announced,
             "announce_offset_min": _offset_out(s.announce_offset)} for s in rm.slots]}
    return out

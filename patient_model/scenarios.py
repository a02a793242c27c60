"""Scenarios: load, validate and realize what happens to a cohort (meals, announcements, device faults).

A scenario is a JSON file (format: ``docs/scenarios.md``, schema: ``data/scenario.schema.json``); bundled
ones live in ``data/scenarios/`` and load by name::

    sc = load_scenario("hcl-3day")
    real = realize(sc, ["adult#001", "adult#002"])
    cho = real.cho_g_per_min(420)          # (N,) g/min eaten over [420, 421)
    cgm = real.make_cgm()                  # CGMModel with the scenario's sensor, noise and faults
    pump = real.make_pump()                # PumpModel; drive occlusions with real.occluded_at(t)

Simulation minute 0 is ``start_min_of_day`` (default midnight) on day 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .meal_generator import MealEvent, SubjectRealization, realize_subject
from .pump import PumpModel, PumpParams
from .scenario_schema import Scenario, ScenarioError, parse_scenario, scenario_to_dict
from .sensor import CGMModel, SensorParams

__all__ = [
    "Scenario",
    "ScenarioError",
    "MealEvent",
    "SubjectRealization",
    "ScenarioRealization",
    "load_scenario",
    "bundled_scenarios",
    "parse_scenario",
    "scenario_to_dict",
    "realize",
]

_SCENARIO_DIR = "data/scenarios"


def bundled_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped in ``patient_model/data/scenarios`` (sorted)."""
    d = resources.files("patient_model").joinpath(_SCENARIO_DIR)
    return tuple(sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".json")))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name (e.g. ``"hcl-3day"``) or a scenario JSON file by path.

    Raises :class:`ScenarioError` if the name is unknown, the file cannot be read or parsed, or a field is
    invalid.
    """
    if isinstance(name_or_path, str) and name_or_path in bundled_scenarios():
        text = resources.files("patient_model").joinpath(f"{_SCENARIO_DIR}/{name_or_path}.json").read_text(
            encoding="utf-8")
        source = f"bundled scenario {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ScenarioError(f"<file>: no bundled scenario or file named {str(name_or_path)!r} "
                                f"(bundled: {', '.join(bundled_scenarios())})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"<file>: cannot read {str(path)!r}: {exc}") from exc
        source = str(path)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"<file>: {source} is not valid JSON: {exc}") from exc
    return parse_scenario(data)


def _reject_constant(name: str) -> Any:
    raise ScenarioError(f"<file>: {name} is not allowed in a scenario")


@dataclass(frozen=True)
class ScenarioRealization:
    """A scenario realized for a cohort: one :class:`SubjectRealization` per subject, in the given order."""

    scenario: Scenario
    seed: int
    subjects: tuple[SubjectRealization, ...]
    _starts: np.ndarray = field(init=False, repr=False, compare=False)
    _ends: np.ndarray = field(init=False, repr=False, compare=False)
    _rates: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.subjects)
        m = max([len(s.meals) for s in self.subjects] + [1])
        starts = np.zeros((n, m))
        ends = np.zeros((n, m))
        rates = np.zeros((n, m))
        for i, s in enumerate(self.subjects):
            for j, e in enumerate(s.meals):
                starts[i, j] = e.t_min
                ends[i, j] = e.t_min + e.duration_min
                rates[i, j] = e.carbs_g / e.duration_min
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_ends", ends)
        object.__setattr__(self, "_rates", rates)

    # -- summary -----------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of subjects."""
        return len(self.subjects)

    @property
    def subject_keys(self) -> tuple[str, ...]:
        """The subjects' keys, in order."""
        return tuple(s.subject_key for s in self.subjects)

    @property
    def duration_min(self) -> int:
        """Simulated time (min)."""
        return self.scenario.duration_min

    @property
    def start_min_of_day(self) -> int:
        """Time of day (min after midnight) of simulation minute 0."""
        return self.scenario.start_min_of_day

    @property
    def hypo_risk_term(self) -> bool:
        """Physiology switch for the UVA/Padova hypoglycaemia risk term."""
        return self.scenario.physiology.hypo_risk_term

    @property
    def intraday_variation(self) -> bool:
        """Physiology switch for intraday variation of insulin sensitivity."""
        return self.scenario.physiology.intraday_variation

    # -- meals ---------------------------------------------------------------------------------------------
    def cho_g_per_min(self, t_min: float) -> np.ndarray:
        """Carbohydrate eaten over [t_min, t_min + 1) per subject (g, i.e. g/min), shape (N,)."""
        overlap = np.clip(np.minimum(t_min + 1.0, self._ends) - np.maximum(float(t_min), self._starts), 0.0, 1.0)
        return (overlap * self._rates).sum(axis=1)

    def cho_schedule(self) -> np.ndarray:
        """Carbohydrate eaten in every minute of the scenario (g/min), shape (duration_min, N)."""
        T = self.duration_min
        out = np.zeros((T, self.n))
        for i, s in enumerate(self.subjects):
            for m in s.meals:
                end = m.t_min + m.duration_min
                lo, hi = max(0, int(np.floor(m.t_min))), min(T, int(np.ceil(end)))
                if hi <= lo:
                    continue
                t = np.arange(lo, hi, dtype=float)
                ov = np.clip(np.minimum(t + 1.0, end) - np.maximum(t, m.t_min), 0.0, 1.0)
                out[lo:hi, i] += ov * (m.carbs_g / m.duration_min)
        return out

    def announcements(self, subject_index: int) -> tuple[MealEvent, ...]:
        """The announced meals of one subject, sorted by ``announced_at_min``."""
        if not 0 <= subject_index < self.n:
            raise IndexError(f"subject_index: must be in [0, {self.n}), got {subject_index}")
        ann = [m for m in self.subjects[subject_index].meals if m.announced]
        return tuple(sorted(ann, key=lambda m: (m.announced_at_min, m.t_min)))

    def announcements_between(self, t0_min: float, t1_min: float) -> tuple[tuple[int, MealEvent], ...]:
        """``(subject_index, meal)`` for every announcement with ``t0_min <= announced_at_min < t1_min``."""
        return tuple((i, m) for i, s in enumerate(self.subjects) for m in s.meals
                     if m.announced and t0_min <= m.announced_at_min < t1_min)

    # -- devices -------------------------------------------------------------------------------------------
    def occluded_at(self, t_min: float) -> np.ndarray:
        """True where the subject's pump is occluded at ``t_min``, shape (N,)."""
        return np.array([any(a <= t_min < b for a, b in s.occlusions) for s in self.subjects], dtype=bool)

    def sensor_params(self) -> SensorParams:
        """The bundled parameters of the scenario's sensor model."""
        return SensorParams.named(self.scenario.sensor.model)

    def pump_params(self) -> PumpParams:
        """The bundled parameters of the scenario's pump model."""
        return PumpParams.named(self.scenario.pump.model)

    def make_cgm(self) -> CGMModel:
        """A :class:`CGMModel` for this cohort with the scenario's sensor, sample time, noise, lag and faults,
        seeded with this realization's seed and the subject keys."""
        s = self.scenario.sensor
        return CGMModel(self.n, self.sensor_params(), sample_time_min=s.sample_time_min, seed=self.seed,
                        subject_keys=self.subject_keys, noise=s.noise,
                        faults=[sub.sensor_faults for sub in self.subjects], lag_tau_min=s.lag_tau_min)

    def make_pump(self, *, record: bool = True) -> PumpModel:
        """A :class:`PumpModel` for this cohort with the scenario's pump, reservoir and bolus speed.
        Occlusions are not applied automatically: call ``pump.set_occlusion`` from :meth:`occluded_at`."""
        p = self.scenario.pump
        return PumpModel(self.n, self.pump_params(), reservoir_u=p.reservoir_u,
                         bolus_speed_u_per_min=p.bolus_speed_u_per_min, record=record)


def realize(scenario: Scenario, subject_keys: Sequence[str], seed: int | None = None) -> ScenarioRealization:
    """Realize ``scenario`` for the subjects ``subject_keys`` (unique, non-empty strings).

    ``seed`` defaults to the scenario's seed. Subject ``k``'s realization depends only on
    ``(scenario, seed, subject_keys[k])``.
    """
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"scenario: expected a Scenario, got {type(scenario).__name__}")
    keys = list(subject_keys) if not isinstance(subject_keys, str) else None
    if keys is None or not keys:
        raise ScenarioError("subject_keys: must be a non-empty sequence of strings")
    for i, k in enumerate(keys):
        if not isinstance(k, str) or not k:
            raise ScenarioError(f"subject_keys[{i}]: must be a non-empty string, got {k!r}")
    if len(set(keys)) != len(keys):
        raise ScenarioError("subject_keys: keys must be unique")
    if seed is None:
        seed = scenario.seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ScenarioError(f"seed: must be an integer >= 0, got {seed!r}")
    subjects = tuple(realize_subject(scenario, k, int(seed)) for k in keys)
    return ScenarioRealization(scenario=scenario, seed=int(seed), subjects=subjects)


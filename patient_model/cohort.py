"""The 30 UVA/Padova S2008 reference subjects (as distributed with simglucose) and cohort specs.

Data ship inside the package (``patient_model/data/vpatient_params.csv`` and ``Quest.csv``) and are read once
with :mod:`importlib.resources`. See ``patient_model/data/ATTRIBUTION.md`` for their origin and licence.

Cohort specs understood by :func:`resolve_cohort`:

- ``'all'``: the 30 reference subjects (adolescents, adults, children in file order);
- ``'adults'``, ``'adolescents'``, ``'children'`` (singular accepted): the 10 reference subjects of a group;
- ``'adult#001,child#003'``: a comma-separated list of subject names (reference or generated ``pop-...`` names are
  not accepted here; only reference names);
- ``'population:N:SEED'``: N generated subjects in total, split as evenly as possible across the three groups in the
  order adolescent, adult, child (the first ``N % 3`` groups get one extra), each group drawn with
  :func:`patient_model.population.generate_population` (group, n_group, SEED). Deterministic in SEED.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

GROUPS: tuple[str, ...] = ("adolescent", "adult", "child")

_GROUP_ALIASES = {
    "adolescent": "adolescent",
    "adolescents": "adolescent",
    "adult": "adult",
    "adults": "adult",
    "child": "child",
    "children": "child",
    "childs": "child",
}


class UnknownSubjectError(ValueError):
    """A subject name that is not one of the reference subjects."""


class UnknownGroupError(ValueError):
    """A group name other than adolescent(s), adult(s), child(ren)."""


class CohortSpecError(ValueError):
    """A cohort specification string that cannot be parsed."""


@dataclass(frozen=True)
class Subject:
    """One virtual subject: its S2008 parameters and its therapy settings.

    Attributes:
        name: e.g. ``'adult#001'`` or ``'pop-adult#0001'``.
        group: ``'adolescent'``, ``'adult'`` or ``'child'``.
        params: every simglucose parameter by name (``BW`` kg, ``Gb`` mg/dL, ``u2ss`` pmol/kg/min, ...);
            the initial state is under ``x0_1`` .. ``x0_13``. Immutable mapping.
        cr_g_per_u: carbohydrate ratio, g of CHO covered by 1 U.
        cf_mg_dl_per_u: correction factor, mg/dL glucose drop per 1 U.
        tdi_u: total daily insulin, U/day.
        age_y: age, years.
        weight_kg: body weight, kg (equal to ``params['BW']``).
    """

    name: str
    group: str
    params: Mapping[str, float] = field(hash=False)
    cr_g_per_u: float
    cf_mg_dl_per_u: float
    tdi_u: float
    age_y: float
    weight_kg: float

    @property
    def basal_u_per_h(self) -> float:
        """Basal insulin rate that holds the subject at its basal glucose, U/h (u2ss * BW / 6000 * 60)."""
        return self.params["u2ss"] * self.params["BW"] / 6000.0 * 60.0

    @property
    def basal_glucose_mg_dl(self) -> float:
        """Basal plasma glucose Gb, mg/dL."""
        return self.params["Gb"]


def normalize_param_name(column: str) -> str:
    """Map a simglucose CSV column to an identifier (``'x0_ 1'`` -> ``'x0_1'``)."""
    return column.replace(" ", "")


def _read_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files("patient_model").joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def group_of(name: str) -> str:
    """The group of a subject name (``'adult#001'`` -> ``'adult'``; ``'pop-child#0003'`` -> ``'child'``)."""
    base = name.split("#", 1)[0]
    if base.startswith("pop-"):
        base = base[4:]
    if base not in GROUPS:
        raise UnknownGroupError(f"cannot tell the group of subject {name!r}")
    return base


@functools.cache
def load_all() -> tuple[Subject, ...]:
    """All 30 reference subjects, in the order of ``vpatient_params.csv``."""
    quest = {row["Name"]: row for row in _read_csv("Quest.csv")}
    subjects = []
    for row in _read_csv("vpatient_params.csv"):
        name = row["Name"]
        params = {normalize_param_name(k): float(v) for k, v in row.items() if k != "Name"}
        q = quest[name]
        subjects.append(
            Subject(
                name=name,
                group=group_of(name),
                params=MappingProxyType(params),
                cr_g_per_u=float(q["CR"]),
                cf_mg_dl_per_u=float(q["CF"]),
                tdi_u=float(q["TDI"]),
                age_y=float(q["Age"]),
                weight_kg=params["BW"],
            )
        )
    return tuple(subjects)


def subject_names() -> tuple[str, ...]:
    """Names of the 30 reference subjects."""
    return tuple(s.name for s in load_all())


def load_subject(name: str) -> Subject:
    """One reference subject by name, e.g. ``'adult#001'``.

    Raises:
        UnknownSubjectError: the name is not a reference subject (the message lists the valid names).
    """
    for s in load_all():
        if s.name == name.strip():
            return s
    raise UnknownSubjectError(f"unknown subject {name!r}; valid subjects: {', '.join(subject_names())}")


def canonical_group(group: str) -> str:
    """``'adults'`` -> ``'adult'`` etc. Raises :class:`UnknownGroupError` for anything else."""
    key = group.strip().lower()
    if key not in _GROUP_ALIASES:
        raise UnknownGroupError(f"unknown group {group!r}; valid groups: {', '.join(GROUPS)} (plural accepted)")
    return _GROUP_ALIASES[key]


def load_group(group: str) -> tuple[Subject, ...]:
    """The 10 reference subjects of a group (``'adult'`` or ``'adults'``, ``'child'`` or ``'children'``, ...)."""
    g = canonical_group(group)
    return tuple(s for s in load_all() if s.group == g)


def split_evenly(n: int) -> tuple[int, ...]:
    """Numbers of generated subjects per group for a total of ``n`` (adolescent, adult, child)."""
    return tuple(n // len(GROUPS) + (1 if i < n % len(GROUPS) else 0) for i in range(len(GROUPS)))


def resolve_cohort(spec: str) -> tuple[Subject, ...]:
    """Turn a cohort spec into subjects (see the module docstring for the accepted specs).

    Raises:
        UnknownSubjectError: a listed name is not a reference subject.
        CohortSpecError: a malformed ``population:N:SEED`` spec or an empty spec.
    """
    text = spec.strip()
    if not text:
        raise CohortSpecError("empty cohort spec")
    low = text.lower()
    if low == "all":
        return load_all()
    if low in _GROUP_ALIASES:
        return load_group(low)
    if low.startswith("population:"):
        parts = text.split(":")
        if len(parts) != 3:
            raise CohortSpecError(f"population spec must be 'population:N:SEED', got {spec!r}")
        try:
            n, seed = int(parts[1]), int(parts[2])
        except ValueError as exc:
            raise CohortSpecError(f"population spec must be 'population:N:SEED' with integers, got {spec!r}") from exc
        if n <= 0:
            raise CohortSpecError(f"population size must be positive, got {n}")
        from patient_model.population import generate_population

        out: list[Subject] = []
        for group, n_group in zip(GROUPS, split_evenly(n)):
            if n_group:
                out.extend(generate_population(group, n_group, seed))
        return tuple(out)
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise CohortSpecError(f"no subject names in cohort spec {spec!r}")
    return tuple(load_subject(n) for n in names)

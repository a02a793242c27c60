"""In-silico trials: a cohort x a scenario x one or several controllers, chunked, streamed to disk.

A trial is split into tasks, one per (controller, chunk of subjects). The chunks depend only on the cohort size and
the chunk size (never on the number of workers), every random stream is keyed by (seed, subject), and the summary is
assembled from the per-chunk files in subject order, so the same :class:`TrialSpec` gives the same ``summary.json``
byte for byte whether the tasks run serially, on local worker processes or on a Dask cluster.

Output folder layout::

    OUT/trial.json                         the spec, cohort size, chunking, software versions
    OUT/summary.json                       metrics (see docs/trials.md)
    OUT/cvga.json                          CVGA point and zone of every subject
    OUT/chunks/CONTROLLER/chunk-00000.npz  per-chunk per-subject statistics, AGP histograms, example traces
    OUT/traces/CONTROLLER/part-00000.parquet   per-5-minute traces (CSV where pyarrow is absent)
    OUT/report.html, OUT/*.png             the report (trials.report)
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

CONTROLLERS: tuple[str, ...] = ("mpc", "mpc-c", "bb", "pid", "oref")
VECTORIZED_CHUNK = 500
PER_SUBJECT_CHUNK = 15  # the plant steps a chunk together: 15 spreads its per-minute cost


class TrialSpecError(ValueError):
    """A trial specification that cannot run (unknown controller, bad days, empty cohort...)."""


@dataclass(frozen=True)
class TrialSpec:
    """What to run. ``days=None`` keeps the scenario's length; ``seed=None`` uses the scenario's seed;
    ``chunk_size=None`` uses 500 subjects per task for vectorized controllers and 5 for per-subject ones."""

    cohort: str = "all"
    scenario: str = "default-1day"
    controllers: tuple[str, ...] = ("mpc", "bb")
    days: int | None = None
    seed: int | None = None
    chunk_size: int | None = None
    traces: bool = True

    def validate(self) -> None:
        if not self.controllers:
            raise TrialSpecError("no controller given")
        for name in self.controllers:
            if name not in CONTROLLERS:
                raise TrialSpecError(f"unknown controller {name!r}; valid: {', '.join(CONTROLLERS)}")
        if len(set(self.controllers)) != len(self.controllers):
            raise TrialSpecError(f"controller listed twice: {', '.join(self.controllers)}")
        if self.days is not None and (not isinstance(self.days, int) or self.days < 1):
            raise TrialSpecError(f"days must be a positive integer, got {self.days!r}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise TrialSpecError(f"chunk_size must be >= 1, got {self.chunk_size!r}")


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: subjects ``[start, stop)`` of the cohort under ``controller``."""

    spec: TrialSpec
    controller: str
    index: int
    start: int
    stop: int
    out_dir: str
    subjects: tuple = ()
    """The chunk's subjects as picklable records (:func:`subject_record`), so a worker never re-generates a
    population; empty = resolve from ``spec.cohort``."""


def subject_record(subject) -> tuple:
    """A :class:`patient_model.cohort.Subject` as plain picklable values (its params are a read-only mapping)."""
    return (subject.name, subject.group, dict(subject.params), subject.cr_g_per_u, subject.cf_mg_dl_per_u,
            subject.tdi_u, subject.age_y, subject.weight_kg)


def subject_from_record(record: tuple):
    from types import MappingProxyType

    from patient_model.cohort import Subject

    name, group, params, cr, cf, tdi, age, weight = record
    return Subject(name=name, group=group, params=MappingProxyType(dict(params)), cr_g_per_u=cr, cf_mg_dl_per_u=cf,
                   tdi_u=tdi, age_y=age, weight_kg=weight)


# -- cached, per process ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def cohort(spec_text: str):
    """The subjects of a cohort spec (cached per process: a worker resolves a population once)."""
    from patient_model.cohort import resolve_cohort

    return resolve_cohort(spec_text)


@functools.lru_cache(maxsize=8)
def scenario(name: str, days: int | None):
    """A scenario by name or path, with its length replaced by ``days`` when given."""
    from patient_model.scenarios import load_scenario

    sc = load_scenario(name)
    return sc if days is None else replace(sc, days=int(days))


def resolved_seed(spec: TrialSpec) -> int:
    return int(scenario(spec.scenario, spec.days).seed if spec.seed is None else spec.seed)


def is_vectorized(controller: str) -> bool:
    from controller.baselines import BASELINES

    return controller in BASELINES


def make_controller(name: str):
    """A controller by its trial name (``bb``, ``pid``, ``oref``, ``mpc``, ``mpc-c``)."""
    from controller.baselines import BASELINES

    if name in BASELINES:
        return BASELINES[name]()
    if name in ("mpc", "mpc-c"):
        from trials.mpc import make_mpc

        return make_mpc(compiled=(name == "mpc-c"))
    raise TrialSpecError(f"unknown controller {name!r}; valid: {', '.join(CONTROLLERS)}")


def check_controllers(spec: TrialSpec) -> None:
    """Build every controller of the spec once, so that a missing piece (e.g. the compiled solver of ``mpc-c``)
    is a clear :class:`TrialSpecError` before any work starts."""
    for name in spec.controllers:
        try:
            make_controller(name)
        except TrialSpecError:
            raise
        except Exception as exc:  # noqa: BLE001 - any construction failure is reported with its cause
            raise TrialSpecError(f"controller {name!r} cannot run here: {exc}") from exc


def chunk_size_for(spec: TrialSpec, controller: str) -> int:
    if spec.chunk_size is not None:
        return spec.chunk_size
    return VECTORIZED_CHUNK if is_vectorized(controller) else PER_SUBJECT_CHUNK


def plan(spec: TrialSpec, out_dir: str | os.PathLike) -> list[ChunkTask]:
    """The tasks of a trial, per-subject (slow) controllers first so that they start early."""
    subjects = cohort(spec.cohort)
    n = len(subjects)
    tasks: list[ChunkTask] = []
    order = sorted(spec.controllers, key=lambda c: is_vectorized(c))
    for name in order:
        size = chunk_size_for(spec, name)
        for k, start in enumerate(range(0, n, size)):
            stop = min(n, start + size)
            records = tuple(subject_record(x) for x in subjects[start:stop])
            tasks.append(ChunkTask(spec, name, k, start, stop, str(out_dir), records))
    return tasks


def run_task(task: ChunkTask, on_progress: Callable[[float], None] | None = None) -> dict:
    """Simulate one chunk and write its files; returns a small record (controller, index, subjects, days)."""
    from patient_model.scenarios import realize
    from trials.chunkio import write_chunk
    from trials.simulate import simulate_chunk
    from trials.supervision import make_supervisor
    from trials.therapy import therapy_settings

    spec = task.spec
    if task.subjects:
        subjects = [subject_from_record(r) for r in task.subjects]
    else:
        subjects = list(cohort(spec.cohort)[task.start:task.stop])
    settings = [therapy_settings(s) for s in subjects]
    sc = scenario(spec.scenario, spec.days)
    seed = resolved_seed(spec)
    real = realize(sc, [s.name for s in subjects], seed)
    vectorized = is_vectorized(task.controller)
    controller = make_controller(task.controller)
    supervisor = make_supervisor(settings, vectorized=vectorized)
    result = simulate_chunk(subjects, settings, real, controller, supervisor, seed=seed,
                            minutes=int(real.duration_min), vectorized=vectorized, on_progress=on_progress)
    write_chunk(Path(task.out_dir), task.controller, task.index, task.start, result, traces=spec.traces)
    return {"controller": task.controller, "index": task.index, "subjects": task.stop - task.start,
            "patient_days": (task.stop - task.start) * result.days}


@dataclass
class TrialOutput:
    out_dir: Path
    summary_path: Path
    report_path: Path | None
    elapsed_s: float
    patient_days: float
    timings: dict = field(default_factory=dict)


def run_trial(spec: TrialSpec, out_dir: str | os.PathLike, *, workers: int = 1, scheduler: str | None = None,
              progress: bool | Callable = True, report: bool = True) -> TrialOutput:
    """Run every task, then write ``summary.json`` (and the report). See the module docstring for the layout."""
    from trials.distributed import execute
    from trials.progress import ProgressBar
    from trials.summary import write_outputs

    spec.validate()
    check_controllers(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = plan(spec, out.resolve())  # absolute: Dask workers may run in another working directory
    subjects = cohort(spec.cohort)
    sc = scenario(spec.scenario, spec.days)
    days = sc.duration_min / 1440.0
    bar = ProgressBar(n_subjects=len(subjects) * len(spec.controllers), days=days,
                      enabled=bool(progress)) if not callable(progress) else progress
    # clear stale chunk files of a previous run in the same folder
    for name in spec.controllers:
        for sub in ("chunks", "traces"):
            d = out / sub / name
            if d.is_dir():
                for f in d.iterdir():
                    f.unlink()
    done_days = execute(run_task, tasks, workers=workers, scheduler=scheduler, progress=bar)
    getattr(bar, "close", lambda: None)()
    t_sim = time.perf_counter() - t0
    summary_path = write_outputs(out, spec, resolved_seed(spec), [s.name for s in subjects],
                                 [s.group for s in subjects])
    report_path = None
    t_rep = time.perf_counter()
    if report:
        from trials.report import write_report

        report_path = write_report(out)
    elapsed = time.perf_counter() - t0
    return TrialOutput(out, summary_path, report_path, elapsed, done_days,
                       {"simulate_s": t_sim, "report_s": time.perf_counter() - t_rep})


def trial_manifest(spec: TrialSpec, n_subjects: int) -> dict:
    """What ``trial.json`` records (not part of the byte-identical summary)."""
    import platform

    d = asdict(spec)
    d["controllers"] = list(spec.controllers)
    d["seed"] = resolved_seed(spec)
    d["n_subjects"] = n_subjects
    d["chunk_sizes"] = {c: chunk_size_for(spec, c) for c in spec.controllers}
    d["days_simulated"] = scenario(spec.scenario, spec.days).days
    d["python"] = platform.python_version()
    d["numpy"] = np.__version__
    mpc = next((c for c in spec.controllers if c.startswith("mpc")), None)
    if mpc is not None:
        from trials.mpc import solver_kind

        d["mpc_solver"] = solver_kind(make_controller(mpc))   # this host's: the instance check_controllers built
    return d


__all__ = ["TrialSpec", "TrialSpecError", "ChunkTask", "TrialOutput", "CONTROLLERS", "plan", "run_task",
           "run_trial", "make_controller"]

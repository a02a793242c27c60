"""Trial throughput: simulated patient-days per second for bb and mpc, on one core and on two workers, simglucose's
figure on the same scenario where it is installed, and a 10,000-subject x 1-day bb trial on two workers with its
peak memory.

Prints human-readable lines, then as the LAST line one JSON object with the keys ``bb_patient_days_per_s``,
``mpc_patient_days_per_s`` (one core; ``mpc_solver`` says which solver ran: the generated C, built first when a
compiler exists, as the product uses it), ``simglucose_patient_days_per_s`` (null if simglucose is absent),
``workers``, ``bb_patient_days_per_s_workers``, ``mpc_patient_days_per_s_workers``, ``peak_rss_mb_10k``,
``seconds_10k``, and ``bb_patient_days_per_cpu_s`` / ``mpc_patient_days_per_cpu_s`` (patient-days per CPU-second
of the one-core runs: what a dedicated core gives when the machine is shared) and ``load_average``.

    .venv/bin/python benchmarks/trial_throughput.py            # full run (the 10k trial takes minutes)
    .venv/bin/python benchmarks/trial_throughput.py --quick    # small sizes, no 10k trial

Times cover the simulation only: population generation, the CasADi solver build and the imports a task makes on
first use are done before the clock starts. The 10k figure is wall time of the whole trial (cohort generation,
simulation, summary, no report). The one-core figures run in this process with one thread (OMP/OpenBLAS/MKL thread
counts are set to 1 before numpy is imported); on a shared machine the per-CPU-second figures are the steadier ones.
"""

from __future__ import annotations

import os

# One core means one thread: set before numpy is imported, so that no BLAS/OpenMP pool spreads the one-core run
# over more cores (worker processes inherit it: each worker is one thread too).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trials.distributed import execute  # noqa: E402
from trials.runner import TrialSpec, cohort, make_controller, plan, run_task, run_trial  # noqa: E402

SCENARIO = "default-1day"


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _rate(spec: TrialSpec, workers: int, out: Path) -> tuple[float, float, float]:
    """(patient-days, wall seconds, CPU seconds) of every task of ``spec`` (cohort already resolved)."""
    tasks = plan(spec, out)
    t0, c0 = time.perf_counter(), _cpu_s()
    days = execute(run_task, tasks, workers=workers)
    return days, time.perf_counter() - t0, _cpu_s() - c0


def _import_task_modules() -> None:
    """Import what a task imports on first use (scipy.special among them, ~0.2 s) before the clock starts: a trial
    pays it once per process, whatever its size."""
    import patient_model.scenarios  # noqa: F401
    import trials.chunkio  # noqa: F401
    import trials.simulate  # noqa: F401
    import trials.supervision  # noqa: F401
    import trials.therapy  # noqa: F401


def bench(controller: str, cohort_spec: str, chunk: int, workers: int, tmp: Path) -> tuple[float, float]:
    """(patient-days per wall second, patient-days per CPU second)."""
    spec = TrialSpec(cohort=cohort_spec, scenario=SCENARIO, controllers=(controller,), chunk_size=chunk,
                     traces=False)
    cohort(cohort_spec)
    _import_task_modules()
    if controller.startswith("mpc"):
        make_controller(controller).solver._ensure()  # build the CasADi solver before the clock starts
    days, secs, cpu = _rate(spec, workers, tmp / f"{controller}-{workers}")
    rate, cpu_rate = days / secs, days / max(cpu, 1e-9)
    print(f"{controller:>4}: {days:7.0f} patient-days in {secs:7.2f} s on {workers} worker(s): "
          f"{rate:8.2f} patient-days/s wall, {cpu_rate:8.2f} per CPU-second")
    return rate, cpu_rate


def simglucose_rate() -> float | None:
    """simglucose with its own basal-bolus controller, 1 day of one adult, patient-days/s (None if absent)."""
    try:
        from datetime import datetime

        from simglucose.actuator.pump import InsulinPump
        from simglucose.controller.basal_bolus_ctrller import BBController
        from simglucose.patient.t1dpatient import T1DPatient
        from simglucose.sensor.cgm import CGMSensor
        from simglucose.simulation.env import T1DSimEnv
        from simglucose.simulation.scenario import CustomScenario
        from simglucose.simulation.sim_engine import SimObj, sim
    except ImportError:
        print("simglucose: not installed (figure null)")
        return None
    start = datetime(2026, 1, 1, 0, 0, 0)
    scen = CustomScenario(start_time=start, scenario=[(7, 52), (12.5, 65), (18.5, 75)])  # default-1day means
    env = T1DSimEnv(T1DPatient.withName("adult#001"), CGMSensor.withName("Dexcom", seed=1),
                    InsulinPump.withName("Insulet"), scen)
    from datetime import timedelta

    with tempfile.TemporaryDirectory() as d:
        obj = SimObj(env, BBController(), timedelta(days=1), animate=False, path=d)
        t0 = time.perf_counter()
        sim(obj)
        secs = time.perf_counter() - t0
    print(f"simglucose (its BBController, 1 patient-day): {secs:.1f} s -> {1 / secs:.3f} patient-days/s")
    return 1.0 / secs


def ensure_compiled_solver() -> str:
    """Build the generated-C MPC solver when it is missing and a C compiler exists (once, before any clock: the
    product's ``mpc`` runs it when built); returns the solver the mpc runs use."""
    from controller.codegen import ensure_library
    from trials.mpc import make_mpc, solver_kind

    ensure_library(log=lambda text: print(text, flush=True))
    make_mpc.cache_clear()
    kind = solver_kind(make_mpc(compiled=False))
    print(f"mpc solver: {kind}")
    return kind


def peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and no 10k trial")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bb-subjects", type=int, default=None)
    ap.add_argument("--mpc-subjects", type=int, default=None)
    ap.add_argument("--big", type=int, default=10_000, help="subjects of the memory run (0 = skip)")
    args = ap.parse_args(argv)
    n_bb = args.bb_subjects or (300 if args.quick else 1000)
    n_mpc = args.mpc_subjects or (2 if args.quick else 10)
    big = 0 if args.quick else args.big
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; scenario {SCENARIO}, 1 day")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bb_pop = f"population:{n_bb}:1"
        bb1, bb1_cpu = bench("bb", bb_pop, n_bb, 1, tmp)
        bbw, _ = bench("bb", bb_pop, max(1, n_bb // args.workers), args.workers, tmp)
        mpc_cohort = ",".join(f"adult#{i:03d}" for i in range(1, n_mpc + 1))
        solver = ensure_compiled_solver()
        mpc1, mpc1_cpu = bench("mpc", mpc_cohort, n_mpc, 1, tmp)
        mpcw, _ = bench("mpc", mpc_cohort, max(1, n_mpc // args.workers), args.workers, tmp)
        sg = simglucose_rate()
        if sg:
            print(f"ratio bb / simglucose: {bb1 / sg:,.0f} x; mpc / simglucose: {mpc1 / sg:,.1f} x")
        rss, secs_big = None, None
        if big:
            t0 = time.perf_counter()
            out = run_trial(TrialSpec(cohort=f"population:{big}:2", scenario=SCENARIO, controllers=("bb",)),
                            tmp / "big", workers=args.workers, progress=False, report=False)
            secs_big = time.perf_counter() - t0
            rss = peak_rss_mb()
            print(f"{big} subjects x 1 day bb on {args.workers} workers: {secs_big:.1f} s wall "
                  f"({out.timings['simulate_s']:.1f} s until every chunk was on disk), peak RSS {rss:.0f} MB")
    print(json.dumps({
        "bb_patient_days_per_s": round(bb1, 2),
        "mpc_patient_days_per_s": round(mpc1, 3),
        "mpc_solver": solver,
        "simglucose_patient_days_per_s": None if sg is None else round(sg, 4),
        "workers": args.workers,
        "bb_patient_days_per_cpu_s": round(bb1_cpu, 2),
        "mpc_patient_days_per_cpu_s": round(mpc1_cpu, 3),
        "load_average": round(os.getloadavg()[0], 1),
        "bb_patient_days_per_s_workers": round(bbw, 2),
        "mpc_patient_days_per_s_workers": round(mpcw, 3),
        "peak_rss_mb_10k": None if rss is None else round(rss, 1),
        "seconds_10k": None if secs_big is None else round(secs_big, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

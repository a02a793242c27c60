"""Throughput of the vectorized UVA/Padova S2008 simulator on one core.

Runs 1,000 subjects (the 30 reference subjects tiled) x 1 day with three meals, CR boluses and basal, then 10,000
subjects x 1 day in one batch, and (if ../shared/reference is present) the fidelity on the shared simglucose traces.
Prints human-readable lines and, last, one JSON object:
``{"patient_days_per_s", "peak_rss_mb", "n_subjects", "peak_rss_mb_10k", ...}``.

Usage: ``.venv/bin/python benchmarks/twin_throughput.py [--substeps 2]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from patient_model.cohort import load_all, load_subject  # noqa: E402
from patient_model.uva_padova import CohortSimulator, UvaPadovaParams  # noqa: E402

MEALS = ((420, 50.0), (720, 70.0), (1110, 80.0))  # (minute of day, g): 07:00, 12:00, 18:30
EAT_RATE_G_PER_MIN = 5.0
DAY_MIN = 1440


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux ru_maxrss is in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def day_inputs(params: UvaPadovaParams, cr_g_per_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cho g/min, insulin U/min), each (1440, N): basal all day, three meals eaten at 5 g/min, CR boluses."""
    n = params.n
    cho = np.zeros((DAY_MIN, n))
    ins = np.tile(params.basal_insulin_u_per_min, (DAY_MIN, 1))
    for t, carbs_g in MEALS:
        full, rest = divmod(carbs_g, EAT_RATE_G_PER_MIN)
        cho[t:t + int(full)] = EAT_RATE_G_PER_MIN
        if rest:
            cho[t + int(full)] = rest
        ins[t] += carbs_g / cr_g_per_u
    return cho, ins


def run_day(n_subjects: int, substeps: int) -> tuple[float, float, np.ndarray]:
    """Simulate a day; returns (wall s, CPU s of this process, bg (1441, N))."""
    subjects = load_all()
    tiled = [subjects[i % len(subjects)] for i in range(n_subjects)]
    params = UvaPadovaParams.from_subjects(tiled)
    cr = np.array([s.cr_g_per_u for s in tiled])
    cho, ins = day_inputs(params, cr)
    start, cpu_start = time.perf_counter(), time.process_time()
    sim = CohortSimulator(params, n_substeps=substeps)
    res = sim.run(cho, ins)
    return time.perf_counter() - start, time.process_time() - cpu_start, res.bg_mg_dl


def fidelity(substeps: int) -> float | None:
    """Largest bg RMSE (mg/dL) over the shared simglucose traces, or None when they are absent."""
    traces = sorted((REPO.parent / "shared" / "reference" / "uva_padova_s2008" / "traces").glob("*.csv"))
    if not traces:
        return None
    worst = 0.0
    for path in traces:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        col = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
        stem = path.stem.split("_", 1)[1]
        group = next(g for g in ("adolescent", "adult", "child") if stem.startswith(g))
        params = UvaPadovaParams.from_subjects([load_subject(f"{group}#{stem[len(group):]}")])
        x0 = np.array([[col[f"x{i}"][0]] for i in range(13)])
        res = CohortSimulator(params, x0=x0, n_substeps=substeps).run(col["cho_g_per_min"][:-1, None],
                                                                      col["insulin_u_per_min"][:-1, None])
        worst = max(worst, float(np.sqrt(np.mean((res.bg_mg_dl[:, 0] - col["bg_mg_dl"]) ** 2))))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--substeps", type=int, default=2, help="RK4 substeps per minute (default 2)")
    args = parser.parse_args()

    run_day(30, args.substeps)  # warm-up
    elapsed, cpu, bg = run_day(1000, args.substeps)
    pdps = 1000 / elapsed
    rss_1k = peak_rss_mb()
    print(f"1,000 subjects x 1 day: {elapsed:.2f} s wall -> {pdps:.0f} patient-days/s "
          f"({elapsed / DAY_MIN * 1e3:.3f} ms per simulated minute), n_substeps={args.substeps}")
    print(f"  CPU time {cpu:.2f} s -> {1000 / cpu:.0f} patient-days per CPU-second "
          f"(wall > CPU means the core was shared; load average {os.getloadavg()[0]:.1f})")
    print(f"  glucose range over the day: {bg.min():.0f}..{bg.max():.0f} mg/dL; peak RSS {rss_1k:.0f} MB")

    elapsed_10k, _, bg10 = run_day(10_000, args.substeps)
    rss_10k = peak_rss_mb()
    print(f"10,000 subjects x 1 day in one batch: {elapsed_10k:.2f} s -> {10_000 / elapsed_10k:.0f} patient-days/s; "
          f"peak RSS {rss_10k:.0f} MB (limit 2048 MB)")
    del bg10

    worst = fidelity(args.substeps)
    if worst is None:
        print("fidelity: shared traces not found, skipped")
    else:
        print(f"fidelity on the shared simglucose traces: max bg RMSE {worst:.2e} mg/dL (bar 0.1)")

    out = {
        "patient_days_per_s": round(pdps, 1),
        "patient_days_per_cpu_s": round(1000 / cpu, 1),
        "peak_rss_mb": round(rss_1k, 1),
        "n_subjects": 1000,
        "peak_rss_mb_10k": round(rss_10k, 1),
        "patient_days_per_s_10k": round(10_000 / elapsed_10k, 1),
        "n_substeps": args.substeps,
        "max_trace_rmse_mg_dl": worst,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 8's validation figures: the personal twin on virtual patients with known truth, the whole protocol.

For every reference subject (default: all 30) and seed (default 1, 2, 3): 10 days of basal-bolus life with Dexcom
CGM noise and 10 % carb-counting error, a twin fitted to days 1-7, days 8-10 predicted under the same therapy and
under the MPC (:mod:`trials.personal.validation`; docs/twin-fit.md, section 6). Prints one line per run as it
finishes, a summary per seed and overall, the cohort's acceptance, and, last, one JSON object:
``{"met", "runs", "refused", "all_three", "criteria": {name: {"mean", "median", "p75", "p90", "within", "limit",
"met", ...}}, "per_seed": {seed: {"met", "all_three", "runs", "means"}}, "forecast_check": {...}, "wall_s"}``.

Runs are deterministic: the same seeds give the same figures on any number of workers.
About 23 min for the 90 runs on 2 cores (1,355 s measured).

Usage: ``.venv/bin/python benchmarks/twin_validation.py [SUBJECT|COHORT ...] [--seeds 1 2 3] [--workers N]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trials.personal.validation import (cohort_acceptance, forecast_check_split, resolve_subjects,  # noqa: E402
                                        run_validation, summaries)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("subjects", nargs="*", default=["all"], help="subject names or cohort specs (default: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    names = resolve_subjects(args.subjects)
    seeds = list(dict.fromkeys(args.seeds))
    print(f"{len(names)} subjects x seeds {seeds} on {args.workers} workers", flush=True)

    def show(row: dict) -> None:
        print(f"seed {row['seed']}  {row.pop('line')}", flush=True)

    t0 = time.perf_counter()
    rows = run_validation(names, seeds, workers=args.workers, progress=show)
    wall_s = time.perf_counter() - t0
    print("\n".join(summaries(rows, seeds)))
    per_seed = {}
    for seed in seeds:
        acc = cohort_acceptance([r for r in rows if r["seed"] == seed])
        per_seed[str(seed)] = {"met": acc.met, "runs": acc.runs, "all_three": acc.all_three,
                               "means": {c.name: c.mean for c in acc.criteria},
                               "medians": {c.name: c.median for c in acc.criteria}}
    acceptance = cohort_acceptance(rows)
    print(acceptance.line())
    print(json.dumps({**acceptance.to_dict(), "per_seed": per_seed, "forecast_check": forecast_check_split(rows),
                      "subjects": len(names), "seeds": seeds, "wall_s": round(wall_s, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``twinloop trial``: an in-silico trial (cohort x scenario x controllers), its summary and its report."""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_OUT = "reports/trial"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trial", help="run an in-silico trial and write summary.json, traces and report.html",
        description="Run virtual patients through a scenario under one or several controllers side by side. "
                    "With no options: the 30 reference subjects, the realistic 1-day scenario, mpc versus bb.")
    p.add_argument("--cohort", default="all",
                   help="all | adults | adolescents | children | NAME,NAME,... | population:N:SEED (default: all)")
    p.add_argument("--scenario", default="default-1day",
                   help="bundled scenario name or a scenario JSON file (default: default-1day)")
    p.add_argument("--controllers", default=None,
                   help="comma-separated: mpc, mpc-c, bb, pid, oref (default: mpc,bb)")
    p.add_argument("--days", type=int, default=None, help="simulated days (default: the scenario's)")
    p.add_argument("--seed", type=int, default=None, help="seed of meals and sensor noise (default: the scenario's)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: 2, or 1 on a single-CPU machine); results do not depend "
                        "on it")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="subjects per task (default: 500 for baselines, 15 for the MPC)")
    p.add_argument("--no-traces", action="store_true", help="do not write per-5-minute traces")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def default_controllers() -> tuple[str, ...]:
    """mpc versus bb; bb alone if the MPC cannot be built in this installation."""
    try:
        from trials.mpc import make_mpc

        make_mpc(compiled=False)
    except Exception as exc:  # noqa: BLE001 - any failure means: run what works, say so
        print(f"twinloop trial: the MPC is not available ({exc}); running bb only", file=sys.stderr)
        return ("bb",)
    return ("mpc", "bb")


def run(args: argparse.Namespace) -> int:
    from trials.runner import TrialSpec, TrialSpecError, run_trial

    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip()) if args.controllers \
        else default_controllers()
    spec = TrialSpec(cohort=args.cohort, scenario=args.scenario, controllers=controllers, days=args.days,
                     seed=args.seed, chunk_size=args.chunk_size, traces=not args.no_traces)
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    if workers < 1:
        print("twinloop trial: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        spec.validate()
        _check_inputs(spec)
        out = run_trial(spec, args.out, workers=workers, scheduler=args.scheduler,
                        progress=not args.quiet, report=not args.no_report)
    except TrialSpecError as exc:
        print(f"twinloop trial: {exc}", file=sys.stderr)
        return 2
    kind = json.loads((out.out_dir / "trial.json").read_text(encoding="utf-8")).get("mpc_solver")
    if kind is not None:
        hint = "" if kind == "compiled C" else " (`twinloop export-c --out DIR --build` makes MPC trials faster)"
        print(f"mpc solver: {kind}{hint}")
    print(f"summary: {out.summary_path}")
    if out.report_path is not None:
        print(f"report:  {out.report_path}")
    print(f"{out.patient_days:.0f} patient-days in {out.elapsed_s:.1f} s")
    return 0


def _check_inputs(spec) -> None:
    """Turn a bad cohort or scenario into a clear TrialSpecError before any work starts."""
    from trials.runner import TrialSpecError, cohort, scenario

    try:
        cohort(spec.cohort)
    except (ValueError, ImportError) as exc:
        raise TrialSpecError(f"cohort {spec.cohort!r}: {exc}") from exc
    try:
        scenario(spec.scenario, spec.days)
    except (ValueError, TypeError) as exc:
        raise TrialSpecError(f"scenario {spec.scenario!r}: {exc}") from exc

"""``twinloop replay twin.json DATA --controller mpc``: the same days on the twin under another therapy."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay a patient's days on their twin under other therapies",
                       description="Runs the recorded therapy and each requested alternative on the fitted twin and "
                                   "writes summary.json and report.html side by side.")
    p.add_argument("twin", help="twin file from `twinloop fit`")
    p.add_argument("data", help="the patient's data (same layouts as `twinloop fit`)")
    p.add_argument("--controller", action="append", default=[], choices=["bb", "pid", "oref", "mpc"],
                   help="closed-loop controller to try (repeatable)")
    p.add_argument("--basal-scale", type=float, default=1.0)
    p.add_argument("--isf-scale", type=float, default=1.0)
    p.add_argument("--cr-scale", type=float, default=1.0)
    p.add_argument("--bolus-scale", type=float, default=None, help="open loop: recorded boluses times this")
    p.add_argument("--samples", type=int, default=5, help="posterior samples to replay for the spread")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/replay", help="output folder")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trials.personal.importers import PatientDataError, load_patient_data
    from trials.personal.replay import SettingsChange
    from trials.personal.report import ArmSpec, run_replay, write_replay_report
    from trials.personal.twin_file import TwinFileError, load

    for name in ("basal_scale", "isf_scale", "cr_scale"):
        if not 0.1 <= getattr(args, name) <= 10.0:
            print(f"twinloop replay: --{name.replace('_', '-')} must be in [0.1, 10]", file=sys.stderr)
            return 2
    try:
        fit = load(args.twin)
        data = load_patient_data(args.data)
    except (TwinFileError, PatientDataError) as exc:
        print(f"twinloop replay: {exc}", file=sys.stderr)
        return 2
    change = SettingsChange(args.basal_scale, args.isf_scale, args.cr_scale)
    arms = [ArmSpec()]
    if args.bolus_scale is not None:
        arms.append(ArmSpec(None, SettingsChange(bolus_scale=args.bolus_scale)))
    arms += [ArmSpec(c, change) for c in args.controller]
    result = run_replay(fit, data, arms, samples=args.samples, seed=args.seed)
    path = write_replay_report(result, fit, data, args.out)
    for name, arm in result.arms.items():
        m = arm.metrics
        print(f"{name:28s} TIR {m['tir_pct']:5.1f} %  <70 {m['tbr70_pct']:4.1f} %  <54 {m['tbr54_pct']:4.1f} %  "
              f"mean {m['mean_mg_dl']:5.1f} mg/dL")
    print(f"report: {path}")
    return 0

"""Closed-loop check of the MPC on the UVA/Padova reference subjects (a tuning aid; the trial runner is the judge).

Uses the trial runner's plant loop (:func:`trials.simulate.simulate_chunk`: UVA/Padova plant, CGM noise model, pump
quantization, the scenario's meals with their announcement and counting error) with the MPC controller, and the
trial supervisor when :mod:`trials.supervision` is present (otherwise a pass-through that applies the proposal).

Usage::

    .venv/bin/python benchmarks/closed_loop_check.py --scenario hcl-3day [--subjects adult#001,child#002]
        [--days 1] [--controller mpc|bb] [--out result.json]

Prints one line per subject, the pooled metrics, then a JSON object (last line).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class PassThroughSupervisor:
    """Applies a proposal as the pump would (only when trials.supervision is not available)."""

    def __init__(self, settings):
        self.settings = settings

    def step_subject(self, i, proposal, snapshot, **kwargs):
        from safety.commands import Resume, Suspend, TempBasal

        rate, bolus, duration = math.nan, 0.0, 30.0
        b = proposal.basal
        if isinstance(b, TempBasal):
            rate = min(b.rate_u_per_h, self.settings[i].max_basal_u_per_h)
        elif isinstance(b, Suspend):
            rate = 0.0
        elif isinstance(b, Resume):
            rate = -1.0  # trials.supervision.RESUME
        if b is not None and hasattr(b, "duration_min"):
            duration = float(b.duration_min)
        if proposal.bolus is not None:
            bolus = min(proposal.bolus.bolus_u, self.settings[i].max_bolus_u)
        return rate, bolus, duration

    def counts(self):
        return {}


def make_supervisor(settings):
    try:
        from trials.supervision import make_supervisor as trial_supervisor

        return trial_supervisor(settings, vectorized=False), "trials.supervision"
    except ImportError:  # the trial supervisor (or safety.supervisor under it) is not there yet
        return PassThroughSupervisor(settings), "pass-through"


def config_with(overrides):
    """ControllerConfig with ``KEY=VALUE`` overrides (``mpc.w_hi=2``, ``filter.measurement_sd_mg_dl=12``)."""
    import ast
    import dataclasses

    from controller.decide import ControllerConfig

    cfg = ControllerConfig()
    for item in overrides:
        key, _, value = item.partition("=")
        val = ast.literal_eval(value)
        if "." in key:
            part, name = key.split(".", 1)
            sub = dataclasses.replace(getattr(cfg, part), **{name: val})
            cfg = dataclasses.replace(cfg, **{part: sub})
        else:
            cfg = dataclasses.replace(cfg, **{key: val})
    return cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="hcl-3day")
    ap.add_argument("--subjects", default="all", help="comma-separated names, a group, or 'all'")
    ap.add_argument("--days", type=float, default=None)
    ap.add_argument("--controller", default="mpc", choices=("mpc", "mpc-c", "bb"))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--traces", default=None, help="write the 5-minute traces (bg, cgm, insulin, boluses, carbs, "
                    "announced carbs, reasons) to this .npz file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a ControllerConfig field, or mpc.FIELD / filter.FIELD (tuning)")
    args = ap.parse_args(argv)

    from patient_model.cohort import load_all
    from patient_model.scenarios import load_scenario, realize
    from trials.metrics import glucose_metrics
    from trials.simulate import simulate_chunk
    from trials.therapy import therapy_settings

    everyone = load_all()
    if args.subjects == "all":
        subjects = [s for s in everyone if "#" in s.name and not s.name.startswith("pop-")]
    elif args.subjects in ("adult", "adolescent", "child"):
        subjects = [s for s in everyone if s.group == args.subjects and not s.name.startswith("pop-")]
    else:
        wanted = args.subjects.split(",")
        subjects = [s for s in everyone if s.name in wanted]
    settings = [therapy_settings(s) for s in subjects]
    sc = load_scenario(args.scenario)
    seed = args.seed if args.seed is not None else sc.seed
    real = realize(sc, [s.name for s in subjects], seed)
    minutes = int(real.duration_min if args.days is None else args.days * 1440)
    if args.controller == "bb":
        from controller.baselines import BASELINES

        controller = BASELINES["bb"]()
        vectorized = True
        try:
            from trials.supervision import make_supervisor as trial_supervisor

            supervisor, sup_name = trial_supervisor(settings, vectorized=True), "trials.supervision"
        except ImportError:
            print("bb needs trials.supervision", file=sys.stderr)
            return 2
    else:
        from controller.decide import MPCController

        controller = MPCController(config_with(args.set), use_compiled=args.controller == "mpc-c")
        vectorized = False
        supervisor, sup_name = make_supervisor(settings)
    t0 = time.perf_counter()
    res = simulate_chunk(subjects, settings, real, controller, supervisor, seed=seed, minutes=minutes,
                         vectorized=vectorized)
    wall = time.perf_counter() - t0
    if args.traces:
        np.savez_compressed(args.traces, names=np.array(res.names), t_min=res.t_min, bg=res.bg_mg_dl,
                            cgm=res.cgm_mg_dl, insulin=res.insulin_u, bolus=res.bolus_u, carbs=res.carbs_g,
                            announced=res.carbs_announced_g, reason=res.reason, reasons=np.array(res.reasons))
    per = {}
    for i, s in enumerate(subjects):
        m = glucose_metrics(res.bg_mg_dl[:, i])
        per[s.name] = {k: round(float(m[k]), 2) for k in ("tir_pct", "tbr70_pct", "tbr54_pct", "tar180_pct",
                                                           "mean_mg_dl") if k in m}
        print(f"{s.name:16s} TIR {m['tir_pct']:5.1f}  <70 {m['tbr70_pct']:4.1f}  <54 {m['tbr54_pct']:4.1f}  "
              f">180 {m['tar180_pct']:5.1f}  mean {m.get('mean_mg_dl', float('nan')):5.0f}  "
              f"min {np.nanmin(res.bg_mg_dl[:, i]):4.0f}")
    pooled = glucose_metrics(res.bg_mg_dl.T.ravel())
    groups = {}
    for g in sorted({s.group for s in subjects}):
        idx = [i for i, s in enumerate(subjects) if s.group == g]
        groups[g] = round(float(glucose_metrics(res.bg_mg_dl[:, idx].T.ravel())["tir_pct"]), 2)
    summary = {
        "scenario": args.scenario, "controller": args.controller, "supervisor": sup_name,
        "subjects": len(subjects), "minutes": minutes, "wall_s": round(wall, 1),
        "tir_pct": round(pooled["tir_pct"], 2), "tbr70_pct": round(pooled["tbr70_pct"], 3),
        "tbr54_pct": round(pooled["tbr54_pct"], 3), "tar180_pct": round(pooled["tar180_pct"], 2),
        "max_subject_tbr54_pct": max(v["tbr54_pct"] for v in per.values()),
        "tir_by_group": groups, "overrides": args.set,
    }
    print(f"pooled: TIR {summary['tir_pct']}  <70 {summary['tbr70_pct']}  <54 {summary['tbr54_pct']}  "
          f"groups {groups}  ({wall:.0f} s, supervisor {sup_name})")
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "subjects": per}, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

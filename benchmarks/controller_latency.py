"""Latency of one whole MPC decision (filter update + MPC solve + supervisor) over a closed-loop run.

The decisions come from a closed loop on UVA/Padova reference subjects (the trial runner's plant loop,
:func:`trials.simulate.simulate_chunk`, hcl-3day: 864 decisions per subject). Each decision's wall time is
``controller.decide`` plus the supervisor's handling of its proposal. The same recorded inputs are then replayed with
the generated-C solver (built first if a C compiler is present and the library is missing), each snapshot with a
fresh delivery record set (nothing memoized by the recorded run), the way the device runtime runs a decision: the
garbage collector frozen and disabled, one collection in the slack after each cycle (twinloop.runtime.realtime); the
same replay with Python's automatic collection is printed beside it. The cold start is timed in a fresh interpreter:
``import twinloop``, the controller, and the first decision on a recorded snapshot.

Usage::

    .venv/bin/python benchmarks/controller_latency.py [--subjects adult#001,adolescent#001] [--no-c]

Prints human-readable lines, then one JSON object (last line) with ``decision_ms_p50``, ``decision_ms_p99``,
``decision_ms_max``, ``decision_c_ms_p99``, ``cold_start_s`` (and a few more).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class TimedController:
    """Wraps a controller: records each decision's inputs and its wall time."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.records: list[tuple[dict, object]] = []
        self.decide_s: list[float] = []

    def initial_state(self, settings):
        return self.inner.initial_state(settings)

    def decide(self, state, snapshot):
        t0 = time.perf_counter()
        out = self.inner.decide(state, snapshot)
        self.decide_s.append(time.perf_counter() - t0)
        self.records.append((state, snapshot))
        return out


class TimedSupervisor:
    """Wraps the trial supervisor (or a pass-through) and records the time of each per-subject step."""

    def __init__(self, inner):
        self.inner = inner
        self.step_s: list[float] = []

    def step_subject(self, i, proposal, snapshot, **kwargs):
        t0 = time.perf_counter()
        out = self.inner.step_subject(i, proposal, snapshot, **kwargs)
        self.step_s.append(time.perf_counter() - t0)
        return out

    def counts(self):
        return self.inner.counts()


def supervise_fn():
    """``f(proposal, snapshot)`` running the safety supervisor, or None when it is not available."""
    try:
        from safety.supervisor import SupervisorContext, supervise
    except ImportError:
        return None

    def run(proposal, snapshot):
        return supervise(proposal, SupervisorContext(snapshot))

    return run


def replay_c(controller, records, supervise, runtime_gc: bool) -> list[float]:
    """Wall time of each recorded decision (decide + supervisor) with ``controller``. ``runtime_gc``: as the device
    runtime runs (twinloop.runtime.realtime: the collector frozen and disabled, one collection in the slack after
    each cycle, outside the timed decision); otherwise with Python's automatic collection."""
    from twinloop.runtime import realtime

    times = []
    if runtime_gc:
        realtime.freeze_gc()
    try:
        for state, snap in records:
            snap = fresh_snapshot(snap)
            t1 = time.perf_counter()
            _, prop = controller.decide(state, snap)
            if supervise is not None:
                supervise(prop, snap)
            times.append(time.perf_counter() - t1)
            if runtime_gc:
                realtime.collect_in_slack(2)
    finally:
        if runtime_gc:
            gc.unfreeze()
            gc.enable()
    return times


def fresh_snapshot(snap):
    """``snap`` with its delivery records in a new reduced set, as the runtime builds each cycle's snapshot: nothing
    derived during the recorded run (the insulin-on-board arrays memoized on the record set) carries over into the
    replayed decision, which recomputes it once for the controller and the supervisor."""
    from dataclasses import replace

    from safety.deliveries import reduced_deliveries

    return replace(snap, deliveries=reduced_deliveries(list(snap.deliveries)))


def percentiles(values_s):
    a = np.asarray(values_s) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(np.max(a))


COLD_START = r"""
import sys, time
t0 = time.perf_counter()
import twinloop, controller
from controller.decide import MPCController
from safety.serialization import from_jsonable
import json
snap = from_jsonable("snapshot", json.load(open(sys.argv[1])))
state, proposal = MPCController().decide({}, snap)
print(time.perf_counter() - t0)
"""


def cold_start_s(snapshot_path: Path, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", COLD_START, str(snapshot_path)], capture_output=True, text=True,
                             cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default="adult#001,adolescent#001")
    ap.add_argument("--scenario", default="hcl-3day")
    ap.add_argument("--no-c", action="store_true", help="skip the generated-C replay")
    ap.add_argument("--days", type=float, default=None, help="simulate fewer days (smoke test)")
    args = ap.parse_args(argv)

    from controller.decide import MPCController
    from patient_model.cohort import load_subject
    from patient_model.scenarios import load_scenario, realize
    from safety.serialization import to_jsonable
    from trials.simulate import simulate_chunk
    from trials.therapy import therapy_settings

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from closed_loop_check import make_supervisor

    subjects = [load_subject(n) for n in args.subjects.split(",")]
    settings = [therapy_settings(s) for s in subjects]
    sc = load_scenario(args.scenario)
    real = realize(sc, [s.name for s in subjects], sc.seed)
    ctl = TimedController(MPCController())
    inner_sup, sup_name = make_supervisor(settings)
    sup = TimedSupervisor(inner_sup)
    minutes = int(real.duration_min if args.days is None else args.days * 1440)
    t0 = time.perf_counter()
    res = simulate_chunk(subjects, settings, real, ctl, sup, seed=sc.seed, minutes=minutes, vectorized=False)
    wall = time.perf_counter() - t0
    n = len(ctl.decide_s)
    whole = np.asarray(ctl.decide_s) + np.asarray(sup.step_s[:n])
    p50, p99, mx = percentiles(whole)
    d50, d99, dmx = percentiles(ctl.decide_s)
    print(f"closed loop: {len(subjects)} subjects, {args.scenario}, {n} decisions in {wall:.1f} s "
          f"(supervisor: {sup_name})")
    print(f"whole decision (decide + supervisor): p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {mx:.2f} ms")
    print(f"controller.decide only:               p50 {d50:.2f} ms  p99 {d99:.2f} ms  max {dmx:.2f} ms")
    bg = res.bg_mg_dl
    print(f"glucose: TIR {100 * np.mean((bg >= 70) & (bg <= 180)):.1f} %  <70 {100 * np.mean(bg < 70):.2f} %")

    supervise = supervise_fn()
    c_p50 = c_p99 = c_max = None
    agree = None
    if not args.no_c:
        from controller.codegen import ensure_library

        ensure_library(log=lambda text: print(text, flush=True))
        cctl = MPCController(use_compiled=True)
        pyctl = MPCController()
        if cctl.solver.compiled_loaded:
            diffs = []
            auto_gc = replay_c(cctl, ctl.records, supervise, runtime_gc=False)
            times = replay_c(cctl, ctl.records, supervise, runtime_gc=True)
            for state, snap in ctl.records[:: max(1, n // 100)]:
                _, a = pyctl.decide(state, snap)
                _, b = cctl.decide(state, snap)
                if a.predicted_glucose_mg_dl and b.predicted_glucose_mg_dl:
                    diffs.append(max(abs(x - y) for x, y in zip(a.predicted_glucose_mg_dl,
                                                                 b.predicted_glucose_mg_dl)))
            c_p50, c_p99, c_max = percentiles(times)
            g_p50, g_p99, g_max = percentiles(auto_gc)
            agree = float(max(diffs)) if diffs else None
            print(f"generated C (replayed inputs):        p50 {c_p50:.2f} ms  p99 {c_p99:.2f} ms  max {c_max:.2f} ms"
                  f"  (max |dG| vs Python {agree:.2e} mg/dL; garbage collected between decisions, as the runtime)")
            print(f"generated C, automatic GC:            p50 {g_p50:.2f} ms  p99 {g_p99:.2f} ms  max {g_max:.2f} ms")
        else:
            print("generated-C solver not available (no compiler or build failed)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.json"
        path.write_text(json.dumps(to_jsonable(ctl.records[len(ctl.records) // 2][1])))
        cold = cold_start_s(path)
    print(f"cold start (import twinloop + controller + first decision, fresh interpreter): {cold:.2f} s")
    out = {
        "decision_ms_p50": round(p50, 3), "decision_ms_p99": round(p99, 3), "decision_ms_max": round(mx, 3),
        "decision_c_ms_p99": None if c_p99 is None else round(c_p99, 3),
        "cold_start_s": round(cold, 3),
        "decisions": n, "decision_c_ms_p50": None if c_p50 is None else round(c_p50, 3),
        "decision_c_ms_max": None if c_max is None else round(c_max, 3), "supervisor": sup_name,
        "c_vs_python_max_abs_mg_dl": agree,
        "decision_c_ms_p99_automatic_gc": None if c_p99 is None else round(g_p99, 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wake-up lateness of the runtime's periodic scheduler, side by side with cyclictest on the same machine.

Runs ``twinloop.runtime.scheduler.PeriodicScheduler`` (the scheduler the production loop uses: a thread sleeping to
absolute deadlines with clock_nanosleep(TIMER_ABSTIME)) with the runtime's real-time setup (SCHED_FIFO, mlockall,
frozen gc; whatever is permitted), then ``cyclictest -p<prio> -m -i<interval> -l<loops> -t1 -h`` with the same
priority, interval and loop count. Target: the runtime's p99 within 3x cyclictest's p99.

Usage: .venv/bin/python benchmarks/rt_jitter.py [--loops 5000] [--interval-us 1000] [--priority 90]
Prints human-readable lines, then one JSON object as the last line (keys ``runtime_us_p99``, ``cyclictest_us_p99``;
the cyclictest figures are null when cyclictest is not installed: ``apt-get install rt-tests``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twinloop.runtime import realtime  # noqa: E402
from twinloop.runtime.scheduler import PeriodicScheduler  # noqa: E402


def run_runtime(loops: int, interval_us: int, priority: int) -> tuple[dict, str]:
    """Measure the runtime scheduler in a dedicated thread (as the runtime runs it)."""
    report = realtime.apply(realtime.RealtimeOptions(enabled=True, priority=0, lock_memory=True, freeze_gc=True))
    sched = PeriodicScheduler(interval_us / 1e6, None, priority=priority)
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("stats", sched.run_for(loops)))
    t.start()
    t.join()
    stats = result["stats"].as_dict()
    note = report.summary()
    if sched.priority_error:
        note += f"; SCHED_FIFO refused for the scheduler thread ({sched.priority_error})"
    return stats, note


def parse_cyclictest_histogram(text: str) -> dict:
    """p50/p99/max (us) from ``cyclictest -h`` output (bucket lines ``<us> <count>`` and ``# Max Latencies``)."""
    buckets: list[tuple[int, int]] = []
    overflows = 0
    max_us = math.nan
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0].isdigit() and len(parts) >= 2 and parts[1].isdigit():
            buckets.append((int(parts[0]), int(parts[1])))
        elif line.startswith("# Max Latencies:"):
            max_us = float(parts[3])
        elif line.startswith("# Histogram Overflows:"):
            overflows = int(parts[3])
    total = sum(c for _, c in buckets) + overflows
    if total == 0:
        return {"count": 0, "p50_us": None, "p99_us": None, "max_us": None}

    def pct(q: float) -> float:
        target = math.ceil(q / 100 * total)
        acc = 0
        for us, count in buckets:
            acc += count
            if acc >= target:
                return float(us)
        return max_us  # inside the overflow bucket: the max is the best bound we have
    return {"count": total, "p50_us": pct(50), "p99_us": pct(99), "max_us": max_us}


def run_cyclictest(loops: int, interval_us: int, priority: int) -> dict | None:
    exe = shutil.which("cyclictest")
    if exe is None:
        return None
    cmd = [exe, "-q", f"-p{priority}", "-m", f"-i{interval_us}", f"-l{loops}", "-t1", "-h", "20000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=loops * interval_us / 1e6 + 60)
    if proc.returncode != 0:
        print(f"cyclictest failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
        return None
    return parse_cyclictest_histogram(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, default=5000)
    ap.add_argument("--interval-us", type=int, default=1000)
    ap.add_argument("--priority", type=int, default=90)
    args = ap.parse_args(argv)

    runtime_stats, note = run_runtime(args.loops, args.interval_us, args.priority)
    print(f"machine: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs")
    print(f"runtime scheduler: {note}")
    print(f"runtime    p50 {runtime_stats['p50_us']:8.1f} us  p99 {runtime_stats['p99_us']:8.1f} us  "
          f"max {runtime_stats['max_us']:8.1f} us  ({runtime_stats['count']} wake-ups, {args.interval_us} us period, "
          f"{runtime_stats['missed']} missed)")
    cyc = run_cyclictest(args.loops, args.interval_us, args.priority)
    if cyc is None or cyc.get("p99_us") is None:
        print("cyclictest: not available (apt-get install rt-tests)")
        cyc = {"p50_us": None, "p99_us": None, "max_us": None}
        ratio = None
    else:
        print(f"cyclictest p50 {cyc['p50_us']:8.1f} us  p99 {cyc['p99_us']:8.1f} us  max {cyc['max_us']:8.1f} us  "
              f"({cyc['count']} wake-ups, -p{args.priority} -m -i{args.interval_us})")
        ratio = runtime_stats["p99_us"] / cyc["p99_us"] if cyc["p99_us"] else None
        if ratio is not None:
            verdict = "within" if ratio <= 3.0 else "NOT within"
            print(f"runtime p99 / cyclictest p99 = {ratio:.2f} ({verdict} the 3x target)")
    out = {
        "runtime_us_p50": round(runtime_stats["p50_us"], 1),
        "runtime_us_p99": round(runtime_stats["p99_us"], 1),
        "runtime_us_max": round(runtime_stats["max_us"], 1),
        "cyclictest_us_p50": cyc["p50_us"],
        "cyclictest_us_p99": cyc["p99_us"],
        "cyclictest_us_max": cyc["max_us"],
        "p99_ratio": None if ratio is None else round(ratio, 2),
        "loops": args.loops,
        "interval_us": args.interval_us,
        "priority": args.priority,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

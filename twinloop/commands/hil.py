"""``twinloop hil``: a virtual patient behind emulated devices, the production runtime against it, faults injected,
and a report (JSON, HTML, PNG)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hil", help="run the hardware-in-the-loop bench (emulated devices, faults, report)",
                              description="Run a virtual subject behind emulated devices (serial on "
                                          "pseudo-terminals, BLE through bumble) with the production runtime, inject "
                                          "faults (CGM dropouts, corrupted packets, disconnects, delayed or lost pump "
                                          "responses, occlusions, SIGKILL of the runtime) and write a report.")
    p.add_argument("--transport", choices=["serial", "ble"], default="serial")
    p.add_argument("--subject", default="adult#001", help="reference or generated subject (default adult#001)")
    p.add_argument("--scenario", default="faults-1day", help="bundled scenario name or JSON path")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument("--speed", type=float, default=60.0,
                   help="simulated seconds per real second (60 = one hour per minute; 1 = real time)")
    p.add_argument("--controller", default="oref", choices=["mpc", "bb", "pid", "oref"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-faults", action="store_true", help="run without injected faults")
    p.add_argument("--out", default="reports/hil", help="output directory (report.json, report.html, report.png)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path

    from twinloop.bench import BenchOptions, run_bench
    from hil.report import analyse, write

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if args.speed <= 0 or args.hours <= 0:
        print("twinloop hil: --speed and --hours must be > 0", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        opts = BenchOptions(transport=args.transport, subject=args.subject, scenario=args.scenario,
                            hours=args.hours, speed=args.speed, controller=args.controller, seed=args.seed,
                            faults=[] if args.no_faults else None, workdir=out / "bench")
        print(f"HIL {args.transport}: {args.subject} / {args.scenario}, {args.hours:g} h at {args.speed:g}x "
              f"(~{args.hours * 3600 / args.speed:.0f} s)...", flush=True)
        bench = run_bench(opts)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"twinloop hil: {exc}", file=sys.stderr)
        return 2
    result = analyse(bench)
    paths = write(result, bench, out)
    for name, check in result["checks"].items():
        print(f"  {'PASS' if check['ok'] else 'FAIL'}  {name}")
    lat = result["latency"]
    print(f"  latency CGM emission -> pump: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms "
          f"({lat['count']} commands)")
    g = result["glycemic_bg"]
    if g:
        print(f"  glucose: mean {g['mean_mg_dl']} mg/dL, TIR {g['tir_70_180_pct']}%, <70 {g['tbr_70_pct']}%")
    print(f"report: {paths['html']}")
    return 0 if result["passed"] else 1

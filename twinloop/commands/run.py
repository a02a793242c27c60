"""``twinloop run --config board.toml``: the production loop on a board (or under the HIL bench)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run the closed loop against the configured CGM and pump",
                              description="Run the production loop: CGM reading -> decide -> supervise -> pump -> "
                                          "journal, with real-time setup, the systemd watchdog and the control "
                                          "socket.")
    p.add_argument("--config", required=True, help="board configuration (TOML)")
    p.add_argument("--speed", type=float, default=None,
                   help="accelerated time: simulated seconds per real second (60 = one hour per minute)")
    p.add_argument("--sim-clock", default=None, help=argparse.SUPPRESS)  # speed:start_min:epoch_s (HIL bench)
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import sys

    from twinloop.runtime import config as cfgmod
    from twinloop.runtime import realtime
    from twinloop.runtime.clock import clock_from_args

    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = cfgmod.load(args.config)
        clock = clock_from_args(args.speed, args.sim_clock)
    except (cfgmod.ConfigError, ValueError) as exc:
        print(f"twinloop run: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK (cgm {cfg.cgm.transport}, pump {cfg.pump.transport}, controller {cfg.controller})")
        return 0
    rt = cfg.realtime
    realtime.apply(realtime.RealtimeOptions(enabled=rt.enabled, priority=rt.priority, cpus=rt.cpus,
                                            lock_memory=rt.lock_memory, freeze_gc=False))
    from twinloop.runtime.service import service_from_config
    try:
        service = service_from_config(cfg, clock)
    except cfgmod.ConfigError as exc:
        print(f"twinloop run: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"twinloop run: a required component is missing: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the journal cannot be opened (permissions, disk, ...) (permissions, disk): say so, exit non-zero
        print(f"twinloop run: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if rt.enabled and rt.freeze_gc:
        realtime.freeze_gc()  # after start-up allocations; collections then happen only in slack time
    return asyncio.run(service.run())

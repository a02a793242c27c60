"""``twinloop bolus 2.0``: ask the running loop for a bolus; the supervisor decides what is given."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bolus", help="request a bolus from the running loop (passes the supervisor)")
    p.add_argument("bolus_u", type=float, help="units of insulin")
    from twinloop.runtime.control_socket import add_client_arguments
    add_client_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import math
    import sys

    from twinloop.runtime.control_socket import call, describe_verdict
    if not (math.isfinite(args.bolus_u) and args.bolus_u > 0):
        print(f"twinloop bolus: bolus_u must be > 0, got {args.bolus_u:g}", file=sys.stderr)
        return 2
    code, reply = call(args, {"op": "bolus", "bolus_u": args.bolus_u})
    if reply and not args.json and reply.get("verdict") is not None:
        print(f"bolus of {args.bolus_u:g} U requested")
        print(describe_verdict(reply))
    return code

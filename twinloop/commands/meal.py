"""``twinloop meal 45``: announce a meal (grams of carbohydrate) to the running loop."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("meal", help="announce a meal to the running loop (passes the supervisor)")
    p.add_argument("carbs_g", type=float, help="carbohydrate in grams")
    from twinloop.runtime.control_socket import add_client_arguments
    add_client_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from twinloop.runtime.control_socket import MAX_CARBS_G, call, describe_verdict
    if not 0 < args.carbs_g <= MAX_CARBS_G:
        print(f"twinloop meal: carbs_g must be in (0, {MAX_CARBS_G:g}], got {args.carbs_g:g}", file=sys.stderr)
        return 2
    code, reply = call(args, {"op": "meal", "carbs_g": args.carbs_g})
    if reply and not args.json and reply.get("meal"):
        print(f"meal of {args.carbs_g:g} g announced")
        print(describe_verdict(reply))
    return code

"""``twinloop decide SNAPSHOT.json``: replay one MPC decision and print it as JSON.

The input is a snapshot in the journal's JSON form (:mod:`safety.serialization`, kind ``snapshot``), or an object
``{"snapshot": {...}, "state": {...}}`` holding the controller state to start from. The output (stdout) is
``{"proposal": {...}, "state": {...}}``. Bad input -> a message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``decide`` sub-command (argument definitions only)."""
    parser = subparsers.add_parser(
        "decide", help="replay one MPC decision from a snapshot JSON file", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", help="snapshot JSON file ('-' for stdin)")
    parser.add_argument("--state", default=None, help="controller state JSON file to start from")
    parser.add_argument("--compiled", action="store_true", help="use the generated-C solver when it is built")
    parser.add_argument("--indent", type=int, default=1, help="JSON indentation (0 = one line)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from safety.errors import SerializationError
    from safety.serialization import from_jsonable, to_jsonable

    try:
        text = sys.stdin.read() if args.snapshot == "-" else Path(args.snapshot).read_text(encoding="utf-8")
        data = json.loads(text)
        state = {}
        if isinstance(data, dict) and "snapshot" in data:
            state = data.get("state") or {}
            data = data["snapshot"]
        if args.state:
            state = json.loads(Path(args.state).read_text(encoding="utf-8"))
        snapshot = from_jsonable("snapshot", data)
    except (OSError, json.JSONDecodeError, SerializationError) as exc:
        print(f"twinloop decide: bad input: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not isinstance(state, dict):
        print("twinloop decide: bad input: the controller state must be a JSON object", file=sys.stderr)
        return EXIT_BAD_INPUT

    from controller.decide import MPCController

    controller = MPCController(use_compiled=args.compiled)
    new_state, proposal = controller.decide(state, snapshot)
    out = {"proposal": to_jsonable(proposal), "state": new_state}
    print(json.dumps(out, indent=args.indent or None, allow_nan=False))
    return 0

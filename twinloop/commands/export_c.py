"""``twinloop export-c --out DIR``: write the MPC solver as self-contained C with a Makefile and a CMakeLists.txt.

The sources are CasADi-generated C99 (sqpmethod + qrqp and the twin's fixed-step RK4 condensing), depending only on
libm; build them on or for a board with ``make`` (``make CC=<cross-gcc>``) or CMake. ``--build`` also compiles the
shared library the controller loads with ``use_compiled=True``.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-c`` sub-command (argument definitions only)."""
    parser = subparsers.add_parser(
        "export-c", help="export the MPC solver as C sources with a build file", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--build", action="store_true",
                        help="also compile the shared library into the controller's library directory")
    parser.add_argument("--library-dir", default=None, help="where --build puts the library "
                        "(default $TWINLOOP_MPC_LIB_DIR or ~/.cache/twinloop/mpc)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from controller.codegen import CodegenError, build_library, config_hash, generate_c
    from controller.mpc_problem import MPCConfig

    config = MPCConfig()
    try:
        files = generate_c(config, args.out)
    except OSError as exc:
        print(f"twinloop export-c: cannot write to {args.out}: {exc}", file=sys.stderr)
        return 2
    for f in files:
        print(f)
    print(f"configuration hash {config_hash(config)}; build with: make -C {args.out}")
    if args.build:
        try:
            lib = build_library(config, args.library_dir)
        except CodegenError as exc:
            print(f"twinloop export-c: {exc}", file=sys.stderr)
            return 1
        print(f"built {lib}")
    return 0

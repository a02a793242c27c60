"""``twinloop simulate``: replay a per-minute input schedule on one UVA/Padova reference subject.

Input CSV columns: ``t_min, cho_g_per_min, insulin_u_per_min`` (one row per minute, consecutive integer minutes;
the inputs of a row are applied over [t, t+1)). Output CSV: ``t_min, bg_mg_dl, gsub_mg_dl, x0..x12`` with the state
at the start of each input minute plus a final row for the state after the last input.
Bad input -> a message on stderr naming the problem (line and column) and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REQUIRED_COLUMNS = ("t_min", "cho_g_per_min", "insulin_u_per_min")
EXIT_BAD_INPUT = 2


class InputScheduleError(ValueError):
    """An input schedule CSV that cannot be replayed (missing column, bad value, gap in time)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` sub-command (argument definitions only)."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a per-minute CHO/insulin schedule on a virtual patient",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--patient", required=True, help="reference subject, e.g. adult#001")
    parser.add_argument("--inputs", required=True, help="CSV with t_min, cho_g_per_min, insulin_u_per_min")
    parser.add_argument("--out", required=True, help="output CSV ('-' for stdout)")
    parser.add_argument("--hypo-risk", action="store_true", help="enable the S2013 hypoglycaemia risk term")
    parser.add_argument("--intraday", action="store_true", help="enable intraday insulin-sensitivity variation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the optional random physiology")
    parser.set_defaults(handler=run)


def read_schedule(path: Path) -> tuple[float, list[float], list[float]]:
    """Parse and validate the schedule: (first t_min, cho g/min per minute, insulin U/min per minute).

    Raises:
        InputScheduleError: with the file line and column of the first problem.
    """
    import csv
    import math

    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheet exports) is not data
    except UnicodeDecodeError as exc:
        raise InputScheduleError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputScheduleError(f"cannot read inputs file {str(path)!r}: {exc.strerror or exc}") from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise InputScheduleError(f"{path}: empty file (expected header {', '.join(REQUIRED_COLUMNS)})")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputScheduleError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    idx = {c: header.index(c) for c in REQUIRED_COLUMNS}
    times: list[float] = []
    cho: list[float] = []
    ins: list[float] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise InputScheduleError(f"{path}: line {line_no}: {len(row)} fields for {len(header)} columns "
                                     f"({', '.join(header)})")
        values = {}
        for col, i in idx.items():
            cell = row[i].strip() if i < len(row) else ""
            try:
                v = float(cell)
            except ValueError:
                raise InputScheduleError(f"{path}: line {line_no}, column {col}: not a number: {cell!r}") from None
            if not math.isfinite(v):
                raise InputScheduleError(f"{path}: line {line_no}, column {col}: not finite: {cell!r}")
            if col != "t_min" and v < 0:
                raise InputScheduleError(f"{path}: line {line_no}, column {col}: negative input {v:g}")
            values[col] = v
        t = values["t_min"]
        if t != int(t):
            raise InputScheduleError(f"{path}: line {line_no}, column t_min: not a whole minute: {t:g}")
        if times and t != times[-1] + 1:
            kind = "gap" if t > times[-1] + 1 else "out of order or repeated"
            raise InputScheduleError(
                f"{path}: line {line_no}, column t_min: {kind} (t_min {t:g} after {times[-1]:g}; rows must be "
                "consecutive minutes)"
            )
        times.append(t)
        cho.append(values["cho_g_per_min"])
        ins.append(values["insulin_u_per_min"])
    if not times:
        raise InputScheduleError(f"{path}: no input rows")
    return times[0], cho, ins


def run(args: argparse.Namespace) -> int:
    """Replay the schedule; 0 on success, 2 on bad input (message on stderr)."""
    import numpy as np

    from patient_model.cohort import UnknownSubjectError, load_subject
    from patient_model.physiology import PhysiologyOptions
    from patient_model.uva_padova import CohortSimulator, UvaPadovaParams

    try:
        subject = load_subject(args.patient)
        t0, cho, ins = read_schedule(Path(args.inputs))
    except (UnknownSubjectError, InputScheduleError) as exc:
        print(f"twinloop simulate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    options = PhysiologyOptions(hypo_risk_term=args.hypo_risk, intraday_variation=args.intraday)
    sim = CohortSimulator(UvaPadovaParams.from_subjects([subject]), t0_min=t0, options=options, seed=args.seed)
    res = sim.run(np.asarray(cho)[:, None], np.asarray(ins)[:, None], record_states=True)
    states = res.states if res.states is not None else np.empty((0, 13, 1))

    header = ["t_min", "bg_mg_dl", "gsub_mg_dl"] + [f"x{i}" for i in range(13)]
    lines = [",".join(header)]
    for k in range(res.t_min.shape[0]):
        vals = [res.bg_mg_dl[k, 0], res.gsub_mg_dl[k, 0], *states[k, :, 0]]
        lines.append(f"{int(res.t_min[k])}," + ",".join(f"{v:.10g}" for v in vals))
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"twinloop simulate: cannot write {args.out!r}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return 0

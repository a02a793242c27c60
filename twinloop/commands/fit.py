"""``twinloop fit DATA --out twin.json``: fit a personal twin to a patient's data."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit a personal twin to a patient's data (Nightscout export or CSV)",
                       description="Identify the twin's parameters by MAP (and optionally MCMC) from CGM, insulin "
                                   "and carbs. See docs/twin-fit.md for the accepted data layouts.")
    p.add_argument("data", help="Nightscout export folder/JSON or plain CSV (with its profile JSON)")
    p.add_argument("--out", required=True, help="twin file to write (JSON)")
    p.add_argument("--mcmc", type=int, default=0, metavar="N", help="posterior samples by MCMC (default 0: MAP only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=float, default=None, help="fit only the first DAYS days")
    p.add_argument("--model", choices=("uva", "bergman"), default="uva",
                   help="twin equations: uva (UVA/Padova structure, population priors; default) or bergman "
                        "(minimal model around the programmed settings)")
    p.add_argument("--weight", type=float, default=None, metavar="KG",
                   help="body weight in kg (default: the profile's weight_kg, else 70)")
    p.add_argument("--meal-effects", action="store_true",
                   help="estimate every carb entry's counting error as a random effect (see docs/twin-fit.md)")
    p.add_argument("--check-days", type=float, default=None, metavar="D",
                   help="forecast check: fit again without the last D days and predict them against the CGM "
                        "(default 2; 0 skips it). Reported and stored in the twin file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from trials.personal.fit import FitFailedError, FitRefusedError, fit_twin
    from trials.personal.forecast_check import DEFAULT_HELD_OUT_DAYS, check_forecast
    from trials.personal.importers import WEIGHT_PLAUSIBLE_KG, PatientDataError, load_patient_data
    from trials.personal.twin_file import save

    lo_kg, hi_kg = WEIGHT_PLAUSIBLE_KG
    check_days = DEFAULT_HELD_OUT_DAYS if args.check_days is None else args.check_days
    if args.mcmc < 0 or (args.days is not None and not args.days > 0) or (
            args.weight is not None and not lo_kg <= args.weight <= hi_kg) or not check_days >= 0:
        print(f"twinloop fit: --mcmc must be >= 0, --days > 0, --check-days >= 0 and --weight within "
              f"{lo_kg:g}-{hi_kg:g} kg", file=sys.stderr)
        return 2
    try:
        data = load_patient_data(args.data)
    except PatientDataError as exc:
        print(f"twinloop fit: {exc}", file=sys.stderr)
        return 2
    for issue in data.issues:
        where = f" at t={issue.t_min:.0f} min" if issue.t_min is not None else ""
        row = f" (row {issue.source_row})" if issue.source_row is not None else ""
        print(f"data issue: {issue.kind.value}{where}{row}: {issue.detail}", file=sys.stderr)
    end = None if args.days is None else float(data.cgm_t_min[0] + args.days * 1440)
    try:
        fit = fit_twin(data, mcmc_samples=args.mcmc, seed=args.seed, end_min=end, meal_effects=args.meal_effects,
                       model=args.model, weight_kg=args.weight)
    except FitRefusedError as exc:
        print(f"twinloop fit: refused: {exc}", file=sys.stderr)
        return 2
    except FitFailedError as exc:
        print(f"twinloop fit: {exc}", file=sys.stderr)
        return 1
    if check_days > 0:
        try:
            check = check_forecast(data, check_days, end_min=end, meal_effects=args.meal_effects,
                                   model=args.model, weight_kg=args.weight)
            fit = dataclasses.replace(fit, forecast_check=check)
        except (FitRefusedError, FitFailedError) as exc:
            # the twin itself is fitted: a record too short to hold days out is reported, not fatal
            print(f"forecast check skipped: {exc}", file=sys.stderr)
    save(fit, args.out)
    if fit.model == "uva" and args.weight is None and data.weight_kg is None:
        print("note: body weight unknown, 70 kg assumed (give --weight)", file=sys.stderr)
    print(f"twin written to {args.out} ({fit.model} twin): CGM RMSE {fit.rmse_mg_dl:.1f} mg/dL, "
          f"MARD {fit.mard_pct:.1f} % "
          f"over {fit.n_readings} readings; {len(data.issues)} data issue(s) reported")
    for row in fit.parameter_table():
        print(f"  {row['name']:32s} {row['map']:10.4g}  95% [{row['low95']:.4g}, {row['high95']:.4g}]")
    for note in fit.notes:
        print(f"  note: {note}")
    if fit.forecast_check is not None:
        print(fit.forecast_check.summary())
    return 0

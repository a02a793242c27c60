"""Validation of the personal twin on virtual patients with known truth (issue 8 acceptance).

For a reference subject: generate ``days`` days of basal-bolus life (CGM noise, carb-counting errors), fit a twin
to the first ``fit_days`` days, then

* **same therapy**: predict the remaining days open loop from the twin's state at the end of the fit window with
  the recorded insulin and carbs. RMSE and TIR predicted: that trace (MAP parameters, announced carbs: what
  ``twinloop replay`` shows for the recorded therapy). The mean TIR over :data:`N_DRAWS` seeded draws of the
  carb-counting uncertainty (:func:`trials.personal.replay.open_loop_ensemble`) is reported beside it: over the
  30 reference subjects x 3 seeds it missed the true TIR by more (mean 3.2 against 2.5 points), the assumed
  15 % spread pulling TIR down. TIR is compared with the true TIR of the subject's interstitial glucose every
  5 min (the glucose the CGM measures, before its noise: the twin is fitted to CGM readings, so its glucose is
  that one, not plasma; comparing it with plasma TIR would mix two quantities; plasma TIR is reported beside it);
* **changed therapy**: run ``controller`` closed loop on the twin (:func:`trials.personal.replay.closed_loop`) over
  the same days and compare its TIR with the truth: the same subject, same meals and CGM, switched to the same
  controller (same settings) at the same minute on the UVA/Padova simulator.

Acceptance (:func:`cohort_acceptance`): over the fitted runs of a cohort, the mean and the median of each error
within its limit: prediction RMSE <= 20 mg/dL, |TIR predicted - TIR true| <= 5 points for both therapies. Each
run is also marked against the limits (``passed``), and the summary counts the runs within each. The issue does not
say per run or per cohort; a per-run reading is out of reach of any twin (the true subject itself, driven by the
announced carbs, misses the same-therapy limits in 7 of 86 runs: :func:`carb_counting_floor`), and twin validations
report cohort statistics, so the cohort is what is accepted and the per-run counts are printed beside it.
Usage: ``.venv/bin/python -m trials.personal.validation [SUBJECT|COHORT ...] [--seed 1 [2 ...]] [--carb-error 10]
[--workers N] [--floor]`` (``all`` = the 30 reference subjects); the last lines are a summary per seed and overall,
the cohort's acceptance, and the figures as JSON. Exit code 0 when the cohort's acceptance is met.
``benchmarks/twin_validation.py`` runs the whole protocol (30 subjects x seeds 1-3) and prints its figures as JSON.
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass

import numpy as np

from trials.metrics import glucose_metrics
from trials.personal.fit import DEFAULT_MODEL, FORECAST_RMSE_LIMIT_MG_DL, FORECAST_TIR_LIMIT_POINTS
from trials.personal.forecast_check import DEFAULT_HELD_OUT_DAYS

RMSE_LIMIT_MG_DL = FORECAST_RMSE_LIMIT_MG_DL
TIR_LIMIT_POINTS = FORECAST_TIR_LIMIT_POINTS
"""The acceptance limits; the forecast check of ``twinloop fit`` applies the same ones to a patient's own days."""
CARB_ERROR_SD_PCT = 10.0
N_DRAWS = 30
"""Carb-counting draws of the same-therapy prediction (see :func:`trials.personal.replay.open_loop_ensemble`)."""
CHECK_DAYS = DEFAULT_HELD_OUT_DAYS
"""Days of the fit window the twin's own forecast check holds out, as ``twinloop fit`` does by default."""
SUBJECTS: tuple[str, ...] = ("adult#001", "adult#004", "adolescent#003", "adolescent#006", "child#002", "child#005")
"""The representative set: two reference subjects per group (fixed, not chosen by result)."""


@dataclass(frozen=True)
class SubjectValidation:
    subject: str
    seed: int
    fit_rmse_mg_dl: float
    fit_cpu_s: float
    pred_rmse_mg_dl: float
    pred_bias_mg_dl: float
    tir_true_pct: float
    tir_pred_pct: float
    """The twin's replay of the record (recorded insulin, announced carbs, MAP parameters): the prediction."""
    tir_draws_pct: float
    """Mean over :data:`N_DRAWS` draws of carb-counting errors (the assumed spread), reported beside it."""
    carb_error_log_sd: float
    ctrl_tir_true_pct: float
    ctrl_tir_twin_pct: float
    tir_true_plasma_pct: float = float("nan")
    ctrl_tir_true_plasma_pct: float = float("nan")
    check_rmse_mg_dl: float = float("nan")
    """The twin's own forecast check (:mod:`trials.personal.forecast_check`: fitted without the last
    ``check_days`` of the fit window, predicting them against the CGM); NaN when not run or refused."""
    check_tir_error: float = float("nan")
    check_within_limits: bool | None = None

    @property
    def tir_error(self) -> float:
        return self.tir_pred_pct - self.tir_true_pct

    @property
    def ctrl_tir_error(self) -> float:
        return self.ctrl_tir_twin_pct - self.ctrl_tir_true_pct

    @property
    def passed(self) -> bool:
        ctrl_ok = abs(self.ctrl_tir_error) <= TIR_LIMIT_POINTS or bool(np.isnan(self.ctrl_tir_error))
        return bool(self.pred_rmse_mg_dl <= RMSE_LIMIT_MG_DL and abs(self.tir_error) <= TIR_LIMIT_POINTS and ctrl_ok)

    def to_dict(self) -> dict:
        return {**asdict(self), "tir_error": self.tir_error, "ctrl_tir_error": self.ctrl_tir_error,
                "passed": self.passed}

    def line(self) -> str:
        return (f"{self.subject:15s} fit RMSE {self.fit_rmse_mg_dl:5.1f}  pred RMSE {self.pred_rmse_mg_dl:5.1f} "
                f"(bias {self.pred_bias_mg_dl:+5.1f})  TIR true {self.tir_true_pct:5.1f} pred {self.tir_pred_pct:5.1f}"
                f" ({self.tir_error:+5.1f}; carb draws {self.tir_draws_pct:5.1f}, sd {self.carb_error_log_sd:.2f})"
                f" [plasma {self.tir_true_plasma_pct:5.1f}]  ctrl TIR true {self.ctrl_tir_true_pct:5.1f}"
                f" [plasma {self.ctrl_tir_true_plasma_pct:5.1f}] twin "
                f"{self.ctrl_tir_twin_pct:5.1f} ({self.ctrl_tir_error:+5.1f})  fit {self.fit_cpu_s:4.1f} s CPU  "
                f"check {self.check_rmse_mg_dl:5.1f} ({self.check_tir_error:+5.1f}) "
                f"{'-' if self.check_within_limits is None else 'ok' if self.check_within_limits else 'FLAG'}  "
                f"{'PASS' if self.passed else 'FAIL'}")


@dataclass(frozen=True)
class CriterionFigures:
    """One acceptance criterion over a cohort's fitted runs: the error's mean, median and quartile (absolute values
    for the TIR errors), and how many runs are within the limit."""
    name: str
    limit: float
    unit: str
    runs: int
    within: int
    mean: float
    median: float
    p75: float
    p90: float

    @property
    def met(self) -> bool:
        """The cohort's reading of the criterion: the mean and the median error within the limit."""
        return bool(self.runs > 0 and self.mean <= self.limit and self.median <= self.limit)

    def text(self) -> str:
        return (f"{self.name} mean {self.mean:.1f}, median {self.median:.1f} {self.unit} (limit {self.limit:g}; "
                f"p75 {self.p75:.1f}, p90 {self.p90:.1f}; {self.within} of {self.runs} runs within) "
                f"{'met' if self.met else 'NOT MET'}")


@dataclass(frozen=True)
class CohortAcceptance:
    """Issue 8's acceptance over a cohort of validation runs (see the module doc)."""
    runs: int
    refused: tuple[str, ...]
    all_three: int
    """Runs meeting all three limits by themselves (the per-run reading, reported, not the acceptance)."""
    criteria: tuple[CriterionFigures, ...]

    @property
    def met(self) -> bool:
        return bool(self.criteria) and all(c.met for c in self.criteria)

    def line(self) -> str:
        verdict = "MET" if self.met else "NOT MET"
        return (f"cohort acceptance {verdict} over {self.runs} fitted runs ({len(self.refused)} refused): "
                + "; ".join(c.text() for c in self.criteria)
                + f". All three limits in {self.all_three} of {self.runs} runs")

    def to_dict(self) -> dict:
        return {"met": self.met, "runs": self.runs, "refused": list(self.refused), "all_three": self.all_three,
                "criteria": {c.name: {**asdict(c), "met": c.met} for c in self.criteria}}


def cohort_acceptance(rows: list[dict]) -> CohortAcceptance:
    """The acceptance over validation rows (``SubjectValidation.to_dict()`` or refusals). Refused fits are listed,
    not scored: refusing data that cannot identify the twin is the behaviour the issue asks for. Runs without a
    changed-therapy arm (NaN) are left out of that criterion only."""
    refused = tuple(f"{r['subject']} s{r['seed']}" for r in rows if "refused" in r)
    fitted = [r for r in rows if "refused" not in r]

    def figures(name: str, values: list[float], limit: float, unit: str) -> CriterionFigures:
        v = np.abs(np.asarray([x for x in values if not np.isnan(x)], dtype=float))
        if v.size == 0:
            return CriterionFigures(name, limit, unit, 0, 0, *([float("nan")] * 4))
        q50, q75, q90 = np.percentile(v, [50, 75, 90])
        return CriterionFigures(name, limit, unit, int(v.size), int(np.sum(v <= limit)), float(v.mean()),
                                float(q50), float(q75), float(q90))

    criteria = (
        figures("prediction RMSE", [r["pred_rmse_mg_dl"] for r in fitted], RMSE_LIMIT_MG_DL, "mg/dL"),
        figures("same-therapy |TIR error|", [r["tir_error"] for r in fitted], TIR_LIMIT_POINTS, "points"),
        figures("changed-therapy |TIR error|", [r["ctrl_tir_error"] for r in fitted], TIR_LIMIT_POINTS, "points"),
    )
    return CohortAcceptance(len(fitted), refused, sum(bool(r["passed"]) for r in fitted), criteria)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def validate_subject(name: str, *, seed: int = 1, days: int = 10, fit_days: int = 7,
                     carb_error_sd_pct: float = CARB_ERROR_SD_PCT, controller: str = "mpc",
                     scenario: str = "hcl-3day", changed_therapy: bool = True,
                     model: str = DEFAULT_MODEL, meal_effects: bool | None = None,
                     check_days: float = CHECK_DAYS) -> SubjectValidation:
    """Fit, predict under the same therapy and (``changed_therapy``) under ``controller``; see the module doc.
    The twin's population (``uva`` model) leaves the subject out: its own parameters are not in its prior.
    ``check_days`` > 0 also runs the twin's own forecast check on the fit window (what ``twinloop fit`` reports
    to a clinician), to measure how well it tells good twins from bad ones."""
    from trials.personal.fit import FitFailedError, FitRefusedError, fit_twin
    from trials.personal.forecast_check import check_forecast
    from trials.personal.replay import (closed_loop, open_loop, open_loop_ensemble, prediction_at_readings,
                                        settings_from_profile)
    from trials.personal.synthetic import generate
    from trials.runner import make_controller

    rec = generate(name, days=days, seed=seed, scenario=scenario, carb_error_sd_pct=carb_error_sd_pct)
    data = rec.data
    split = fit_days * 1440.0
    end = days * 1440.0
    fit_data = data.window(-np.inf, split)
    c0 = _cpu()
    fit = fit_twin(fit_data, end_min=split, model=model, population_exclude=(name,),
                    meal_effects=meal_effects)
    fit_cpu = _cpu() - c0
    check = {}
    if check_days > 0:
        try:
            fc = check_forecast(fit_data, check_days, end_min=split, model=model, population_exclude=(name,),
                                meal_effects=meal_effects)
            check = {"check_rmse_mg_dl": fc.rmse_mg_dl, "check_tir_error": fc.tir_error_points,
                     "check_within_limits": fc.within_limits}
        except (FitRefusedError, FitFailedError):
            check = {"check_within_limits": False}   # a twin that cannot be checked is not vouched for
    t0 = fit.t_end_min
    n = int((end - t0) // 5)
    # same therapy: open loop on the recorded inputs from the twin's state at the end of the fit window
    pred = open_loop(fit, fit.theta, data, t0, n, fit.end_state)
    g_at, cgm_at = prediction_at_readings(pred, data)
    err = g_at - cgm_at
    window = slice(int(t0), int(t0) + 5 * n, 5)
    # The twin's glucose is the CGM's (interstitial) glucose: compare with the subject's, not with plasma.
    tir_true = glucose_metrics(rec.gsub_mg_dl[window])["tir_pct"]
    tir_plasma = glucose_metrics(rec.bg_mg_dl[window])["tir_pct"]
    tir_pred = pred.metrics["tir_pct"]
    draws = open_loop_ensemble(fit, fit.theta, data, t0, n, fit.end_state, n_draws=N_DRAWS, seed=seed)
    tir_draws = float(np.mean([d.metrics["tir_pct"] for d in draws]))
    if not changed_therapy:
        return SubjectValidation(name, seed, fit.rmse_mg_dl, fit_cpu, float(np.sqrt(np.mean(err ** 2))),
                                 float(np.mean(err)), tir_true, tir_pred, tir_draws, fit.carb_error_log_sd,
                                 float("nan"), float("nan"), tir_plasma, **check)
    # changed therapy: the controller on the twin vs on the simulated subject (same settings, same meals)
    tdi = max(fit_data.total_daily_insulin_u(), 1.0)
    settings = settings_from_profile(data.profile, weight_kg=fit.weight_kg, tdi_u=tdi)
    twin_arm = closed_loop(fit, fit.theta, data, t0, n, fit.end_state, make_controller(controller), settings, seed=seed)
    truth = generate(name, days=days, seed=seed, scenario=scenario, carb_error_sd_pct=carb_error_sd_pct,
                     controller=make_controller(controller), switch_min=t0, settings=settings)
    ctrl_true = glucose_metrics(truth.gsub_mg_dl[window])["tir_pct"]
    ctrl_plasma = glucose_metrics(truth.bg_mg_dl[window])["tir_pct"]
    return SubjectValidation(name, seed, fit.rmse_mg_dl, fit_cpu, float(np.sqrt(np.mean(err ** 2))),
                             float(np.mean(err)), tir_true, tir_pred, tir_draws, fit.carb_error_log_sd, ctrl_true,
                             twin_arm.metrics["tir_pct"], tir_plasma, ctrl_plasma, **check)


def carb_counting_floor(name: str, *, seed: int = 1, days: int = 10, fit_days: int = 7,
                        carb_error_sd_pct: float = CARB_ERROR_SD_PCT, scenario: str = "hcl-3day") -> dict:
    """The best any twin can do on the same-therapy prediction: the subject itself (true parameters, true state)
    driven by the recorded insulin and the *announced* carbs (each eaten meal scaled to its entry), scored like
    :func:`validate_subject` against the CGM of the predicted days (RMSE, bias) and the true TIR (single trace)."""
    from patient_model.cohort import load_subject
    from patient_model.uva_padova import CohortSimulator, UvaPadovaParams
    from trials.personal.synthetic import generate

    rec = generate(name, days=days, seed=seed, scenario=scenario, carb_error_sd_pct=carb_error_sd_pct)
    eaten = rec.cho_g_per_min
    announced = eaten.copy()
    for c in rec.data.carbs:
        if c.t_min < fit_days * 1440:
            continue                  # the fitted days are eaten as eaten: the true state at the split
        t = end = int(c.t_min)
        while end < eaten.size and eaten[end] > 0:
            end += 1
        total = eaten[t:end].sum()
        if total > 0:
            announced[t:end] *= c.carbs_g / total
    sim = CohortSimulator(UvaPadovaParams.from_subjects([load_subject(name)]))
    g = sim.run(announced[:, None], rec.insulin_u_per_min[:, None]).gsub_mg_dl[:, 0]
    t0 = fit_days * 1440
    m = rec.data.cgm_t_min >= t0
    err = g[rec.data.cgm_t_min[m].astype(int)] - rec.data.cgm_mg_dl[m]
    tir = glucose_metrics(g[t0:days * 1440:5])["tir_pct"]
    tir_true = glucose_metrics(rec.gsub_mg_dl[t0:days * 1440:5])["tir_pct"]
    return {"subject": name, "seed": seed, "rmse_mg_dl": float(np.sqrt(np.mean(err ** 2))),
            "bias_mg_dl": float(np.mean(err)), "tir_pct": tir, "tir_true_pct": tir_true, "tir_error": tir - tir_true}


def resolve_subjects(specs: list[str]) -> list[str]:
    """Subject names from names or cohort specs (``all``, ``adults``, ...; :func:`patient_model.cohort.resolve_cohort`),
    in order, without repeats."""
    from patient_model.cohort import resolve_cohort

    names: list[str] = []
    for spec in specs:
        for subject in resolve_cohort(spec):
            if subject.name not in names:
                names.append(subject.name)
    return names


def _validate_task(task: dict) -> dict:
    """One subject on a worker process: the figures and the printed line; a refused fit is a row with the reason
    (the twin declining data it cannot fit is the behaviour asked for, not an error of the run)."""
    from trials.personal.fit import FitRefusedError

    try:
        v = validate_subject(**task)
    except FitRefusedError as exc:
        return {"subject": task["name"], "seed": task["seed"], "refused": str(exc), "passed": False,
                "line": f"{task['name']:15s} fit refused: {exc}"}
    return {**v.to_dict(), "line": v.line()}


def _floor_task(task: dict) -> dict:
    return carb_counting_floor(**task)


def summarize(rows: list[dict], floor: bool = False) -> str:
    """One line: how many runs meet each criterion, and the mean errors."""
    refused = [r["subject"] for r in rows if "refused" in r]
    rows = [r for r in rows if "refused" not in r]
    n = len(rows)
    note = f" ({len(refused)} more refused by the fit: {', '.join(refused)})" if refused else ""
    if n == 0:
        return "no runs" + note
    rmse_key = "rmse_mg_dl" if floor else "pred_rmse_mg_dl"
    rmse = np.array([r[rmse_key] for r in rows])
    tir = np.abs([r["tir_error"] for r in rows])
    text = (f"{n} runs: RMSE <= {RMSE_LIMIT_MG_DL:g} in {int(np.sum(rmse <= RMSE_LIMIT_MG_DL))}, "
            f"|TIR error| <= {TIR_LIMIT_POINTS:g} in {int(np.sum(tir <= TIR_LIMIT_POINTS))}")
    if not floor:
        ctrl = np.abs([r["ctrl_tir_error"] for r in rows])
        text += (f", changed therapy |TIR error| <= {TIR_LIMIT_POINTS:g} in {int(np.sum(ctrl <= TIR_LIMIT_POINTS))}; "
                 f"all three in {sum(bool(r['passed']) for r in rows)}. Means: RMSE {rmse.mean():.1f} mg/dL, "
                 f"|TIR error| {tir.mean():.1f}, changed therapy {np.mean(ctrl):.1f} points{note}")
        split = forecast_check_split(rows)
        if split["within_limits"] + split["flagged"]:
            text += (f". Own forecast check within its limits in {split['within_limits']}: all three in "
                     f"{split['within_limits_all_three']} of them; flagged {split['flagged']}: all three in "
                     f"{split['flagged_all_three']}")
    else:
        text += (f"; both in {int(np.sum((rmse <= RMSE_LIMIT_MG_DL) & (tir <= TIR_LIMIT_POINTS)))}. "
                 f"Means: RMSE {rmse.mean():.1f} mg/dL, |TIR error| {tir.mean():.1f} points")
    return text


def summaries(rows: list[dict], seeds: list[int], floor: bool = False) -> list[str]:
    """The summary lines: one per seed when there are several (prefixed ``seed N:``), then the overall one."""
    lines = [f"seed {seed}: " + summarize([r for r in rows if r["seed"] == seed], floor=floor)
             for seed in seeds] if len(seeds) > 1 else []
    return lines + [summarize(rows, floor=floor)]


def forecast_check_split(rows: list[dict]) -> dict:
    """How the twins' own forecast check separates the fitted runs that ran it: how many were within its limits
    and how many flagged, and how many of each met all three criteria."""
    checked = [r for r in rows if "refused" not in r and r.get("check_within_limits") is not None]
    ok = [r for r in checked if r["check_within_limits"]]
    flagged = [r for r in checked if not r["check_within_limits"]]
    return {"within_limits": len(ok), "within_limits_all_three": sum(bool(r["passed"]) for r in ok),
            "flagged": len(flagged), "flagged_all_three": sum(bool(r["passed"]) for r in flagged)}


def run_validation(names: list[str], seeds: list[int], *, floor: bool = False, workers: int = 1,
                   scheduler=None, progress=None, **options) -> list[dict]:
    """Every subject x seed (:func:`validate_subject`, or :func:`carb_counting_floor` with ``floor``) on ``workers``
    local processes or a Dask ``scheduler``; rows in seed order, then subject order. ``progress(row)`` sees each
    row as it arrives (validation rows carry their printed ``line``). ``options``: the keyword arguments of the
    function run (``carb_error_sd_pct``, ``controller``, ``model``, ``meal_effects``, ``check_days``).
    Raises :class:`trials.distributed.SchedulerError` when the scheduler cannot be reached."""
    from trials.distributed import execute

    fn = _floor_task if floor else _validate_task
    tasks = [{"name": name, "seed": seed, **options} for seed in seeds for name in names]
    rows: list[dict] = []

    def collect(row: dict) -> None:
        rows.append(row)
        if progress is not None:
            progress(row)

    execute(fn, tasks, workers=workers, scheduler=scheduler, progress=collect)
    rows.sort(key=lambda r: (seeds.index(r["seed"]), names.index(r["subject"])))
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from patient_model.cohort import CohortSpecError, UnknownGroupError, UnknownSubjectError
    from trials.distributed import SchedulerError

    ap = argparse.ArgumentParser(description="validate the personal twin on reference subjects")
    ap.add_argument("subjects", nargs="*", default=list(SUBJECTS),
                    help="subject names or cohort specs (all, adults, adolescents, children); default: "
                         + ", ".join(SUBJECTS))
    ap.add_argument("--seed", type=int, nargs="+", default=[1], help="one or more seeds (each a separate run)")
    ap.add_argument("--carb-error", type=float, default=CARB_ERROR_SD_PCT)
    ap.add_argument("--controller", default="mpc")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="twin equations: uva (default) or bergman")
    ap.add_argument("--meal-effects", choices=("default", "on", "off"), default="default",
                    help="per-entry carb-counting random effects in the fit (default: the fit's default)")
    ap.add_argument("--check-days", type=float, default=CHECK_DAYS,
                    help="days the twin's own forecast check holds out of the fit window (0: skip it)")
    ap.add_argument("--floor", action="store_true",
                    help="print the carb-counting floor (the true subject given the announced carbs) instead")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (one subject each)")
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port) instead")
    args = ap.parse_args(argv)
    try:
        names = resolve_subjects(args.subjects)
    except (CohortSpecError, UnknownGroupError, UnknownSubjectError) as exc:
        ap.error(str(exc))
    seeds = list(dict.fromkeys(args.seed))
    options: dict = {"carb_error_sd_pct": args.carb_error}
    if not args.floor:
        options.update(controller=args.controller, model=args.model, check_days=args.check_days,
                       meal_effects=None if args.meal_effects == "default" else args.meal_effects == "on")

    def show(r: dict) -> None:
        if args.floor:
            print(f"{r['subject']:15s} seed {r['seed']}  floor RMSE {r['rmse_mg_dl']:5.1f} "
                  f"(bias {r['bias_mg_dl']:+5.1f})"
                  f"  TIR {r['tir_pct']:5.1f} vs true {r['tir_true_pct']:5.1f} ({r['tir_error']:+5.1f})", flush=True)
        else:
            print(f"seed {r['seed']}  {r.pop('line')}", flush=True)

    try:
        rows = run_validation(names, seeds, floor=args.floor, workers=args.workers, scheduler=args.scheduler,
                              progress=show, **options)
    except SchedulerError as exc:
        print(f"validation: {exc}")
        return 2
    print("\n".join(summaries(rows, seeds, floor=args.floor)))
    if args.floor:
        print(json.dumps(rows))
        return 0
    acceptance = cohort_acceptance(rows)
    print(acceptance.line())
    print(json.dumps(rows))
    return 0 if acceptance.met else 1


if __name__ == "__main__":
    raise SystemExit(main())

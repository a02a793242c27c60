"""The validation command line (fast parts): cohort specs, the summary it ends with, the floor on a worker pool."""

from __future__ import annotations

import json

import pytest

from trials.personal import validation as v


def test_cohort_specs_resolve_in_order_without_repeats() -> None:
    names = v.resolve_subjects(["child#002", "children", "adult#001"])
    assert names[0] == "child#002" and names[-1] == "adult#001"
    assert len(names) == 11 and len(set(names)) == 11
    assert all(n.startswith("child#") for n in names[:10])


def test_unknown_subject_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        v.main(["--floor", "adult#999"])
    assert exc.value.code == 2
    assert "adult#999" in capsys.readouterr().err


def _row(rmse: float, tir: float, ctrl: float) -> dict:
    passed = rmse <= v.RMSE_LIMIT_MG_DL and abs(tir) <= v.TIR_LIMIT_POINTS and abs(ctrl) <= v.TIR_LIMIT_POINTS
    return {"pred_rmse_mg_dl": rmse, "tir_error": tir, "ctrl_tir_error": ctrl, "passed": passed}


def test_summary_counts_each_criterion() -> None:
    rows = [_row(12.0, -1.0, 2.0), _row(21.0, 3.0, -1.0), _row(15.0, -6.0, 5.5), _row(20.0, 5.0, -5.0)]
    text = v.summarize(rows)
    assert text.startswith("4 runs: RMSE <= 20 in 3, |TIR error| <= 5 in 3, changed therapy |TIR error| <= 5 in 3;")
    assert "all three in 2." in text
    assert "RMSE 17.0 mg/dL" in text and "|TIR error| 3.8" in text


def test_floor_on_two_workers_matches_one(capsys) -> None:
    """Same figures whether the subjects run in this process or on worker processes; summary, then JSON."""
    assert v.main(["--floor", "adult#001", "child#002"]) == 0
    serial = capsys.readouterr().out.splitlines()
    assert v.main(["--floor", "--workers", "2", "child#002", "adult#001"]) == 0
    pooled = capsys.readouterr().out.splitlines()
    a, b = json.loads(serial[-1]), json.loads(pooled[-1])
    assert [r["subject"] for r in b] == ["child#002", "adult#001"]
    assert {r["subject"]: r for r in a} == {r["subject"]: r for r in b}
    assert serial[-2].startswith("2 runs: RMSE <= 20 in 2")


def test_summary_splits_the_runs_by_the_twins_own_forecast_check() -> None:
    rows = [{**_row(12.0, -1.0, 2.0), "check_within_limits": True},
            {**_row(21.0, 3.0, -1.0), "check_within_limits": True},
            {**_row(15.0, -1.0, 1.0), "check_within_limits": False},
            {**_row(25.0, -9.0, 7.0), "check_within_limits": False},
            {**_row(26.0, -9.0, 7.0), "check_within_limits": False}]
    text = v.summarize(rows)
    assert text.endswith("Own forecast check within its limits in 2: all three in 1 of them; "
                         "flagged 3: all three in 1")
    # runs without the check (older JSON) leave the split out
    assert "forecast check" not in v.summarize([_row(12.0, -1.0, 2.0)])


def test_cohort_acceptance_reads_mean_and_median_and_lists_refusals() -> None:
    rows = [{**_row(12.0, -1.0, 2.0), "subject": "a", "seed": 1},
            {**_row(24.0, 6.0, -6.5), "subject": "b", "seed": 1},
            {**_row(16.0, -2.0, 1.0), "subject": "c", "seed": 2},
            {"subject": "d", "seed": 2, "refused": "CGM at LOW", "passed": False}]
    acc = v.cohort_acceptance(rows)
    assert acc.runs == 3 and acc.refused == ("d s2",) and acc.all_three == 2
    rmse, same, changed = acc.criteria
    assert rmse.mean == pytest.approx(52.0 / 3) and rmse.median == 16.0 and rmse.within == 2
    assert same.mean == pytest.approx(3.0) and same.median == 2.0      # absolute errors: 1, 6, 2
    assert changed.median == 2.0 and changed.within == 2
    assert acc.met and acc.line().startswith("cohort acceptance MET over 3 fitted runs (1 refused)")
    assert acc.to_dict()["criteria"]["prediction RMSE"]["met"] is True


def test_cohort_acceptance_fails_on_the_mean_or_on_the_median() -> None:
    # the median within, the mean outside: one run far off drags the mean
    mean_off = v.cohort_acceptance([{**_row(r, 0.0, 0.0), "subject": "s", "seed": 1} for r in (10.0, 11.0, 45.0)])
    assert mean_off.criteria[0].median == 11.0 and mean_off.criteria[0].mean == pytest.approx(22.0)
    assert not mean_off.criteria[0].met and not mean_off.met
    assert "prediction RMSE mean 22.0, median 11.0 mg/dL (limit 20" in mean_off.line()
    assert "NOT MET" in mean_off.line()
    # the mean within, the median outside: most runs just over the limit
    median_off = v.cohort_acceptance([{**_row(0.0, t, 0.0), "subject": "s", "seed": 1} for t in (5.5, -5.2, 0.0)])
    assert median_off.criteria[1].mean <= v.TIR_LIMIT_POINTS < median_off.criteria[1].median
    assert not median_off.met and median_off.criteria[0].met and median_off.criteria[2].met


def test_cohort_acceptance_without_fitted_runs_or_changed_therapy_is_not_met() -> None:
    assert not v.cohort_acceptance([{"subject": "d", "seed": 1, "refused": "x", "passed": False}]).met
    nan = float("nan")
    acc = v.cohort_acceptance([{**_row(12.0, 1.0, 0.0), "ctrl_tir_error": nan, "subject": "s", "seed": 1}])
    assert acc.criteria[0].met and acc.criteria[1].met
    assert acc.criteria[2].runs == 0 and not acc.met


def test_floor_over_two_seeds_prints_a_summary_per_seed(capsys) -> None:
    assert v.main(["--floor", "adult#001", "--seed", "2", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = json.loads(out[-1])
    assert [(r["subject"], r["seed"]) for r in rows] == [("adult#001", 2), ("adult#001", 1)]
    assert out[-4].startswith("seed 2: 1 runs:") and out[-3].startswith("seed 1: 1 runs:")
    assert out[-2].startswith("2 runs:")


def _fake_task(errors: dict[str, tuple[float, float, float]]):
    """A stand-in for one validation run (the real one fits a twin: ~1 min): the row and printed line it returns."""
    def task(t: dict) -> dict:
        if t["name"] not in errors:
            return {"subject": t["name"], "seed": t["seed"], "refused": "CGM at LOW", "passed": False,
                    "line": f"{t['name']} fit refused"}
        return {**_row(*errors[t["name"]]), "subject": t["name"], "seed": t["seed"], "line": f"{t['name']} run"}
    return task


def test_validation_command_exits_on_the_cohort_acceptance(monkeypatch, capsys) -> None:
    monkeypatch.setattr(v, "_validate_task", _fake_task({"adult#001": (14.0, 1.0, -2.0),
                                                         "adult#002": (23.0, -6.0, 1.0),
                                                         "adult#003": (16.0, 2.0, 3.0)}))
    assert v.main(["adult#001", "adult#002", "adult#003", "adult#004", "--seed", "1", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "seed 1  adult#001 run" and "seed 2  adult#004 fit refused" in out
    assert out[-4].startswith("seed 2: 3 runs:") and out[-3].startswith("6 runs:")
    assert out[-2].startswith("cohort acceptance MET over 6 fitted runs (2 refused)")
    rows = json.loads(out[-1])
    assert len(rows) == 8 and all("line" not in r for r in rows)
    # one far-off subject drags the mean RMSE over the limit: the command says so and exits 1
    monkeypatch.setattr(v, "_validate_task", _fake_task({"adult#001": (14.0, 1.0, -2.0),
                                                         "adult#002": (40.0, -6.0, 1.0)}))
    assert v.main(["adult#001", "adult#002"]) == 1
    assert "cohort acceptance NOT MET" in capsys.readouterr().out

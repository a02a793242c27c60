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

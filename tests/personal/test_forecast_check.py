"""The forecast check: a twin fitted without the record's last days predicts them against the CGM; it is stored in
the twin file, printed by ``twinloop fit`` and shown by the replay report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from trials.personal.fit import FORECAST_RMSE_LIMIT_MG_DL, FitRefusedError, ForecastCheck, fit_twin
from trials.personal.forecast_check import check_forecast
from trials.personal.patient_data import write_csv
from trials.personal.synthetic import generate
from trials.personal.twin_file import TwinFileError, load, save
from twinloop.cli import main as cli_main

HELD_OUT_DAYS = 0.5


@pytest.fixture(scope="module")
def record():
    return generate("adult#001", days=3, seed=3, carb_error_sd_pct=10.0)


@pytest.fixture(scope="module")
def check(record):
    return check_forecast(record.data, HELD_OUT_DAYS)


def _shift_held_out(data, held_out_days: float, shift_mg_dl: float):
    """The same record with the CGM of its last days raised: what the twin could not have seen coming."""
    t_split = data.cgm_t_min[-1] - held_out_days * 1440.0
    cgm = np.where(data.cgm_t_min >= t_split, data.cgm_mg_dl + shift_mg_dl, data.cgm_mg_dl)
    return dataclasses.replace(data, cgm_mg_dl=cgm)


def test_the_twin_forecasts_its_patients_held_out_hours(record, check) -> None:
    # 12 h of 5-minute readings held out, and a twin of a reference subject predicts them within the limits
    assert check.held_out_days == HELD_OUT_DAYS
    assert 130 <= check.n_readings <= 145
    assert 0.0 < check.rmse_mg_dl <= FORECAST_RMSE_LIMIT_MG_DL
    assert 0.0 <= check.tir_predicted_pct <= 100.0 and 0.0 <= check.tir_cgm_pct <= 100.0
    assert check.within_limits
    assert "within the validation's limits" in check.summary()


def test_a_forecast_the_held_out_days_contradict_is_flagged(record, check) -> None:
    """CGM 80 mg/dL higher over the held-out hours than anything the fitted days explain: the check sees it."""
    shifted = check_forecast(_shift_held_out(record.data, HELD_OUT_DAYS, 80.0), HELD_OUT_DAYS)
    assert shifted.rmse_mg_dl > check.rmse_mg_dl + 50.0
    assert shifted.bias_mg_dl == pytest.approx(check.bias_mg_dl - 80.0, abs=1.0)
    assert not shifted.within_limits
    assert "OUTSIDE the validation's limits" in shifted.summary()


def test_the_check_refuses_what_it_cannot_measure(record) -> None:
    # too little left to fit once 1.5 of 3 days are held out
    with pytest.raises(FitRefusedError, match="forecast check: without the last 1.5 days: only 1.5 days of CGM"):
        check_forecast(record.data, 1.5)
    # held-out hours without CGM
    data = record.data
    keep = data.cgm_t_min < data.cgm_t_min[-1] - 6 * 60.0
    keep[-1] = True
    gappy = dataclasses.replace(data, cgm_t_min=data.cgm_t_min[keep], cgm_mg_dl=data.cgm_mg_dl[keep])
    with pytest.raises(FitRefusedError, match="covers"):
        check_forecast(gappy, HELD_OUT_DAYS)
    with pytest.raises(ValueError, match="held_out_days"):
        check_forecast(data, 0.0)


def test_the_check_is_stored_in_the_twin_file(record, check, tmp_path) -> None:
    fit = dataclasses.replace(fit_twin(record.data.window(0, 2.5 * 1440)), forecast_check=check)
    back = load(save(fit, tmp_path / "twin.json"))
    assert back.forecast_check == check
    doc = json.loads((tmp_path / "twin.json").read_text())
    # older files without it still load; a damaged one is refused by name
    (tmp_path / "none.json").write_text(json.dumps({**doc, "fit": {**doc["fit"], "forecast_check": None}}))
    assert load(tmp_path / "none.json").forecast_check is None
    for field, value in (("rmse_mg_dl", "high"), ("held_out_days", -1), ("tir_cgm_pct", float("nan"))):
        bad = {**doc, "fit": {**doc["fit"], "forecast_check": {**doc["fit"]["forecast_check"], field: value}}}
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(TwinFileError, match="fit.forecast_check"):
            load(tmp_path / "bad.json")
    bad = {**doc, "fit": {**doc["fit"], "forecast_check": {k: v for k, v in doc["fit"]["forecast_check"].items()
                                                           if k != "n_readings"}}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(TwinFileError, match="fit.forecast_check.n_readings: missing"):
        load(tmp_path / "bad.json")


def test_cli_fit_reports_the_check_and_replay_shows_it(record, tmp_path, capsys) -> None:
    csv_path = write_csv(record.data, str(tmp_path / "data"), "p")
    twin = tmp_path / "twin.json"
    assert cli_main(["fit", csv_path, "--out", str(twin), "--check-days", str(HELD_OUT_DAYS)]) == 0
    out = capsys.readouterr().out
    assert "forecast check (twin fitted without the last 0.5 days" in out
    stored = load(twin).forecast_check
    assert isinstance(stored, ForecastCheck) and stored.n_readings > 100
    assert cli_main(["replay", str(twin), csv_path, "--samples", "0", "--out", str(tmp_path / "rep")]) == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["twin_fit"]["forecast_check"]["rmse_mg_dl"] == pytest.approx(stored.rmse_mg_dl)
    assert "Forecast check (twin fitted without the last 0.5 days" in (tmp_path / "rep" / "report.html").read_text()
    # the default 2 days cannot be held out of 3 days: the twin is still written, the skip is said
    assert cli_main(["fit", csv_path, "--out", str(tmp_path / "t2.json")]) == 0
    assert "forecast check skipped" in capsys.readouterr().err
    assert load(tmp_path / "t2.json").forecast_check is None
    assert cli_main(["fit", csv_path, "--out", str(tmp_path / "t3.json"), "--check-days", "-1"]) == 2

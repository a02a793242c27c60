"""Fitting a personal twin: fit quality on a short synthetic record, refusal with reasons, the twin file, replay
arms and the fit/replay CLI exit codes."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from patient_model import personal_twin as pt
from patient_model import personal_uva as pu
from trials.personal import fit as fit_mod
from trials.personal.fit import FitRefusedError, check_identifiable, fit_twin
from trials.personal.patient_data import write_csv
from trials.personal.synthetic import generate
from trials.personal.twin_file import TwinFileError, load, save
from twinloop.cli import main as cli_main


@pytest.fixture(scope="module")
def record():
    return generate("adult#001", days=3, seed=3, carb_error_sd_pct=10.0)


@pytest.fixture(scope="module")
def fitted(record):
    return fit_twin(record.data, mcmc_samples=150, seed=1)


def test_fit_reproduces_the_record(record, fitted) -> None:
    assert fitted.rmse_mg_dl < 20.0
    assert fitted.mard_pct < 15.0
    assert fitted.n_readings > 500
    assert np.all(np.isfinite(fitted.theta)) and np.all(fitted.theta > 0)
    # the Laplace intervals are finite and contain the MAP
    for row in fitted.parameter_table():
        assert row["low95"] <= row["map"] <= row["high95"], row
    # MCMC samples are seeded, inside the bounds and move
    assert fitted.model == "uva"
    assert fitted.samples.shape == (150, pu.N_FIT)
    assert np.ptp(np.log(fitted.samples), axis=0).max() > 0.0
    # the fitted end state is a finite twin state at the end of the window
    assert fitted.end_state.shape == (pu.N_TWIN_STATES,) and np.all(np.isfinite(fitted.end_state))
    assert fitted.t_end_min >= record.data.cgm_t_min[-1]


def test_mcmc_is_reproducible(record) -> None:
    a = fit_twin(record.data.window(0, 2.5 * 1440), mcmc_samples=10, seed=7)
    b = fit_twin(record.data.window(0, 2.5 * 1440), mcmc_samples=10, seed=7)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_meal_effects_option(record) -> None:
    """Per-entry carb-counting effects (off by default): the fit explains the record at least as well and
    estimates the counting-error spread."""
    data = record.data.window(0, 2.5 * 1440)
    plain = fit_twin(data)
    with_effects = fit_twin(data, meal_effects=True)
    assert with_effects.rmse_mg_dl <= plain.rmse_mg_dl + 0.5
    assert 0.0 < with_effects.carb_error_log_sd < 0.7
    assert plain.carb_error_log_sd == pytest.approx(0.15)


def _reasons(data) -> str:
    with pytest.raises(FitRefusedError) as exc:
        fit_twin(data)
    assert exc.value.reasons
    return " | ".join(exc.value.reasons)


def test_refuses_one_day(record) -> None:
    assert "days of CGM" in _reasons(record.data.window(0, 1440))


def test_refuses_without_boluses(record) -> None:
    assert "no boluses" in _reasons(dataclasses.replace(record.data, boluses=()))


def test_refuses_without_carbs(record) -> None:
    assert "carbohydrate" in _reasons(dataclasses.replace(record.data, carbs=()))


def test_refuses_sparse_cgm(record) -> None:
    d = record.data
    sparse = dataclasses.replace(d, cgm_t_min=d.cgm_t_min[::4], cgm_mg_dl=d.cgm_mg_dl[::4])
    assert "CGM covers" in _reasons(sparse)


def test_refuses_no_cgm(record) -> None:
    d = record.data
    assert "no CGM" in _reasons(dataclasses.replace(d, cgm_t_min=d.cgm_t_min[:0], cgm_mg_dl=d.cgm_mg_dl[:0]))


def test_refuses_cgm_stuck_at_its_limits(record) -> None:
    """A record mostly at the sensor's LOW (39) or HIGH (401) is refused: such readings bound glucose."""
    d = record.data
    v = d.cgm_mg_dl.copy()
    v[: v.size // 2] = 39.0
    assert "sensor's limits" in _reasons(dataclasses.replace(d, cgm_mg_dl=v))
    v[: v.size // 10] = 401.0
    v[v.size // 10:] = d.cgm_mg_dl[v.size // 10:]
    assert "sensor's limits" not in " ".join(check_identifiable(dataclasses.replace(d, cgm_mg_dl=v)))


def test_readings_at_the_cgm_limits_are_one_sided_bounds(record) -> None:
    """LOW/HIGH readings are not in the AR(1) chain of values: a HIGH (>= 401) reading costs only while the twin
    is below 401, by (401 - g) / sd; a LOW (<= 39) one only while it is above 39."""
    d = record.data.window(0, 2.5 * 1440)
    v = d.cgm_mg_dl.copy()
    k_high, k_low = 300, 400
    v[k_high], v[k_low] = 401.0, 39.0
    data = dataclasses.replace(d, cgm_mg_dl=v)
    base = fit_mod._base_from(data, None)
    t0 = float(np.floor(d.cgm_t_min[0] / 5.0) * 5.0)
    n = int(np.ceil((d.cgm_t_min[-1] - t0) / 5.0)) + 1
    prob = fit_mod._Problem(data, base, t0, n, float(v[0]), False, pu)
    clean = fit_mod._Problem(d, base, t0, n, float(v[0]), False, pu)
    assert prob.cgm.size == clean.cgm.size - 2 and 401.0 not in prob.cgm and 39.0 not in prob.cgm
    z = prob.prior_mu
    r = prob.residuals(z)
    g = pu.simulate(base, np.exp(z), prob.inputs, pu.initial_state(base, np.exp(z), float(v[0])))[1:, 0]
    g_high, g_low = g[prob._grid_index(d.cgm_t_min[[k_high, k_low]])]
    n_chain = prob.cgm.size
    assert r[n_chain] == pytest.approx(max(g_low - 39.0, 0.0) / fit_mod.CGM_SD_MG_DL, rel=1e-6)
    assert r[n_chain + 1] == pytest.approx((401.0 - g_high) / fit_mod.CGM_SD_MG_DL, rel=1e-6)
    assert r.size == clean.residuals(z).size


def test_twin_file_round_trip(fitted, tmp_path) -> None:
    path = save(fitted, tmp_path / "twin.json")
    back = load(path)
    np.testing.assert_allclose(back.theta, fitted.theta)
    np.testing.assert_allclose(back.cov_log, fitted.cov_log)
    np.testing.assert_allclose(back.samples, fitted.samples)
    np.testing.assert_allclose(back.end_state, fitted.end_state)
    assert back.base == fitted.base
    assert back.t0_min == fitted.t0_min and back.t_end_min == fitted.t_end_min
    assert back.notes == fitted.notes
    assert back.model == fitted.model == "uva"


def test_minimal_model_twin_still_fits_and_version_1_files_load(record, tmp_path) -> None:
    """``model="bergman"``: the minimal-model twin around the programmed settings; a version-1 twin file (no
    ``model`` field, written before the UVA/Padova twin) loads as one and simulates the same."""
    from trials.personal.replay import open_loop

    data = record.data.window(0, 2.5 * 1440)
    fit = fit_twin(data, model="bergman")
    assert fit.model == "bergman" and fit.theta.shape == (pt.N_FIT,) and fit.rmse_mg_dl < 25.0
    doc = json.loads(save(fit, tmp_path / "b.json").read_text())
    doc["version"] = 1
    del doc["model"]
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    back = load(tmp_path / "v1.json")
    assert back.model == "bergman"
    a = open_loop(fit, fit.theta, data, fit.t0_min, 100, fit.x0)
    b = open_loop(back, back.theta, data, back.t0_min, 100, back.x0)
    np.testing.assert_allclose(a.glucose_mg_dl, b.glucose_mg_dl)
    with pytest.raises(ValueError):
        fit_twin(data, model="no-such-model")


@pytest.mark.parametrize("corrupt", [
    lambda d: "{not json",
    lambda d: json.dumps({**d, "format": "something-else"}),
    lambda d: json.dumps({**d, "version": 99}),
    lambda d: json.dumps({**d, "parameters": {k: v for k, v in list(d["parameters"].items())[1:]}}),
    lambda d: json.dumps({**d, "parameters": {**d["parameters"], pu.FIT_PARAM_NAMES[0]: -1.0}}),
    lambda d: json.dumps({**d, "model": "unknown"}),
    lambda d: json.dumps({**d, "base": {**d["base"], "weight_kg": -3}}),
    lambda d: json.dumps({**d, "x0": [1.0, 2.0]}),
    lambda d: json.dumps({**d, "cov_log": "nope"}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "base"}),
    lambda d: json.dumps({**d, "t0_min": "soon"}),
])
def test_corrupt_twin_file(fitted, tmp_path, corrupt) -> None:
    good = json.loads(save(fitted, tmp_path / "good.json").read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(corrupt(good))
    with pytest.raises(TwinFileError):
        load(bad)


def test_version_2_twin_file_must_name_its_model(fitted, tmp_path) -> None:
    """A version-2 file without ``model`` is refused by name, not read as another model's parameters."""
    doc = json.loads(save(fitted, tmp_path / "good.json").read_text())
    del doc["model"]
    (tmp_path / "nomodel.json").write_text(json.dumps(doc))
    with pytest.raises(TwinFileError, match="^model: missing"):
        load(tmp_path / "nomodel.json")


def test_twin_file_errors_name_the_field(fitted, tmp_path) -> None:
    doc = json.loads(save(fitted, tmp_path / "good.json").read_text())
    for field, value in (("mard_pct", "x"), ("carb_error_log_sd", float("inf"))):
        (tmp_path / "bad.json").write_text(json.dumps({**doc, "fit": {**doc["fit"], field: value}}))
        with pytest.raises(TwinFileError, match=f"^fit.{field}: not"):
            load(tmp_path / "bad.json")


def test_missing_twin_file(tmp_path) -> None:
    with pytest.raises(TwinFileError):
        load(tmp_path / "absent.json")


def test_replay_arms_produce_metrics(record, fitted, tmp_path) -> None:
    from trials.personal.replay import SettingsChange
    from trials.personal.report import ArmSpec, run_replay, write_replay_report

    data = record.data.window(0, 2 * 1440)
    arms = [ArmSpec(), ArmSpec(None, SettingsChange(bolus_scale=1.3)), ArmSpec("bb")]
    result = run_replay(fitted, data, arms, samples=2, seed=0)
    assert set(result.arms) == {"recorded", "recorded (bolus x1.3)", "bb"}
    for arm in result.arms.values():
        assert 0.0 <= arm.metrics["tir_pct"] <= 100.0
        assert math.isfinite(arm.metrics["mean_mg_dl"])
        assert np.all(arm.glucose_mg_dl > 0)
    # more bolus insulin on the twin: lower mean glucose
    assert result.arms["recorded (bolus x1.3)"].metrics["mean_mg_dl"] < result.arms["recorded"].metrics["mean_mg_dl"]
    assert result.n_samples == 2 and "recorded" in result.spread
    out = write_replay_report(result, fitted, data, tmp_path / "rep")
    assert (tmp_path / "rep" / "summary.json").is_file() and str(out).endswith(".html")


def test_replayed_controllers_run_with_the_twins_body_weight(record, fitted, monkeypatch) -> None:
    import dataclasses

    import trials.personal.report as report

    seen: list[float] = []
    real = report.closed_loop

    def spy(fit, theta, data, t0, n, x0, controller, settings, **kw):  # noqa: ANN001
        seen.append(settings.weight_kg)
        return real(fit, theta, data, t0, n, x0, controller, settings, **kw)

    monkeypatch.setattr(report, "closed_loop", spy)
    # data without a weight of its own: the twin's weight (the one it was fitted with), not a 70 kg default
    data = dataclasses.replace(record.data.window(0, 1440), weight_kg=None)
    report.run_replay(fitted, data, [report.ArmSpec("bb")], samples=0)
    assert seen == [pytest.approx(fitted.weight_kg)] and fitted.weight_kg == pytest.approx(record.subject.weight_kg)
    assert abs(fitted.weight_kg - 70.0) > 1.0


def test_cli_fit_and_replay(record, tmp_path, capsys) -> None:
    csv_path = write_csv(record.data.window(0, 2.5 * 1440), str(tmp_path / "data"), "p")
    twin = tmp_path / "twin.json"
    assert cli_main(["fit", csv_path, "--out", str(twin)]) == 0
    out = capsys.readouterr()
    assert "CGM RMSE" in out.out
    assert "body weight unknown" not in out.err      # the CSV's profile carries the weight
    assert load(twin).rmse_mg_dl < 20.0
    assert load(twin).weight_kg == pytest.approx(record.data.weight_kg)
    assert cli_main(["replay", str(twin), csv_path, "--controller", "bb", "--samples", "0",
                     "--out", str(tmp_path / "rep")]) == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert "bb" in json.dumps(summary)


def test_cli_exit_codes_on_bad_input(record, tmp_path, capsys) -> None:
    # data that cannot be imported
    assert cli_main(["fit", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "t.json")]) == 2
    # data that cannot identify the twin (one day): refused with the reason
    one_day = write_csv(record.data.window(0, 1440), str(tmp_path / "d1"), "p")
    assert cli_main(["fit", one_day, "--out", str(tmp_path / "t.json")]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()
    # a corrupt twin file
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli_main(["replay", str(bad), one_day, "--out", str(tmp_path / "r")]) == 2
    # settings out of range
    assert cli_main(["replay", str(bad), one_day, "--isf-scale", "50", "--out", str(tmp_path / "r")]) == 2
    assert cli_main(["fit", one_day, "--out", str(tmp_path / "t.json"), "--mcmc", "-1"]) == 2
    # argparse errors (missing --out) exit 2 as well
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit", one_day])
    assert exc.value.code == 2


def test_likelihood_whitens_autocorrelated_residuals(record) -> None:
    """CGM residuals are AR(1) between consecutive readings: the likelihood's residuals are the innovations
    (e_k - phi e_(k-1)) / (sd sqrt(1 - phi^2)), restarting after a gap."""
    from trials.personal import fit as fit_mod

    data = record.data.window(0, 2.5 * 1440)
    t0 = float(np.floor(data.cgm_t_min[0] / pt.DT_MIN) * pt.DT_MIN)
    n_steps = int(np.ceil((data.cgm_t_min[-1] - t0) / pt.DT_MIN)) + 1
    base = fit_mod._base_from(data, None, fit_mod.DEFAULT_MODEL)
    prob = fit_mod._Problem(data, base, t0, n_steps, float(data.cgm_mg_dl[0]), meal_effects=False,
                            model=fit_mod.twin_model(fit_mod.DEFAULT_MODEL))
    z0 = prob.prior_mu
    e = np.asarray(prob.f_traj(z0))[0, prob.idx] - prob.cgm
    phi, sd = fit_mod.RESIDUAL_AR1, fit_mod.CGM_SD_MG_DL
    assert 0.5 < phi < 1.0
    consecutive = np.concatenate([[False], np.diff(prob.cgm_t) <= 7.5])
    expected = np.where(consecutive, (e - phi * np.concatenate([[0.0], e[:-1]])) / (sd * math.sqrt(1 - phi ** 2)),
                        e / sd)
    np.testing.assert_allclose(prob.residuals(z0)[:e.size], expected, rtol=1e-9, atol=1e-9)


def test_recorded_insulin_is_the_delivered_insulin(record) -> None:
    # the synthetic record's pump data (programmed basal + boluses) add up to what the subject really got
    n = record.insulin_u_per_min.size
    np.testing.assert_allclose(record.data.insulin_u_per_min(n)[:n], record.insulin_u_per_min, atol=1e-9)


def test_replayed_controller_learns_meals_when_they_were_announced(record) -> None:
    from trials.personal.replay import ANNOUNCE_LEAD_MAX_MIN, announcement_times

    data = record.data
    times = announcement_times(data)
    bolus_t = {b.t_min for b in data.boluses}
    assert len(times) == len(data.carbs)
    for c, a in zip(data.carbs, times):
        assert c.t_min - ANNOUNCE_LEAD_MAX_MIN <= a <= c.t_min
        assert a == c.t_min or a in bolus_t
    # the scenario announces (and boluses) 0-15 min before eating
    assert any(a < c.t_min for c, a in zip(data.carbs, times))

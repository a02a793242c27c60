"""The trial runner: settings from clinic data, the supervisor adapter, summary layout, traces, reproducibility
(serial == local workers == Dask), progress and the command line."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from trials.metrics import GLUCOSE_KEYS, METRIC_KEYS
from trials.runner import TrialSpec, TrialSpecError, plan, run_trial

COHORT = "adult#001,child#001,adolescent#001"


@pytest.fixture(scope="module")
def small_trial(tmp_path_factory):
    out = tmp_path_factory.mktemp("trial")
    spec = TrialSpec(cohort=COHORT, controllers=("bb", "oref"))
    result = run_trial(spec, out, progress=False)
    return spec, out, result


def test_therapy_settings_come_from_clinic_data_only():
    from patient_model.cohort import load_subject
    from safety.settings import AgeGroup
    from trials.therapy import therapy_settings

    adult, child = load_subject("adult#002"), load_subject("child#001")
    s = therapy_settings(adult)
    assert s.basal_at(0) == pytest.approx(round(adult.basal_u_per_h, 4))
    assert s.isf_at(0) == pytest.approx(max(adult.cf_mg_dl_per_u, 10.0))
    assert s.carb_ratio_at(0) == pytest.approx(adult.cr_g_per_u)
    assert s.total_daily_insulin_u == adult.tdi_u and s.weight_kg == adult.weight_kg
    assert s.target_mg_dl == 110.0 and s.suspend_threshold_mg_dl == 70.0 and s.age_group is AgeGroup.ADULT
    c = therapy_settings(child)
    assert c.target_mg_dl == 120.0 and c.age_group is AgeGroup.CHILD and c.max_bolus_u == 5.0


def test_adapter_accepts_only_approved_commands():
    from safety.commands import Proposal, TempBasal
    from safety.readings import GlucoseReading
    from safety.snapshot import Snapshot
    from safety.supervisor import SupervisorContext, supervise
    from trials.supervision import RESUME, AdapterError, unwrap
    from trials.therapy import therapy_settings
    from patient_model.cohort import load_subject

    settings = therapy_settings(load_subject("adult#001"))
    readings = tuple(GlucoseReading(100.0 + 5 * i, 150.0 + i) for i in range(13))
    snap = Snapshot(now_min=160.0, readings=readings, deliveries=(), meals=(), settings=settings)
    verdict = supervise(Proposal(now_min=160.0, basal=TempBasal(1.5)), SupervisorContext(snap))
    rate, bolus, duration = unwrap(verdict.commands)
    assert rate == pytest.approx(1.5) and bolus == 0.0 and duration == 30.0
    assert unwrap(()) == (pytest.approx(math.nan, nan_ok=True), 0.0, 30.0)
    assert RESUME < 0
    with pytest.raises(AdapterError):
        unwrap([TempBasal(1.0)])


def test_plan_chunks_depend_on_the_spec_only(tmp_path):
    spec = TrialSpec(cohort=COHORT, controllers=("bb", "pid"), chunk_size=2)
    tasks = plan(spec, tmp_path)
    assert [(t.controller, t.start, t.stop) for t in tasks] == [("bb", 0, 2), ("bb", 2, 3), ("pid", 0, 2),
                                                                ("pid", 2, 3)]
    with pytest.raises(TrialSpecError):
        TrialSpec(controllers=("nope",)).validate()
    with pytest.raises(TrialSpecError):
        TrialSpec(days=0).validate()


def test_summary_layout(small_trial):
    spec, out, result = small_trial
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["seed", "scenario", "controllers"]
    assert summary["scenario"] == "default-1day"
    assert list(summary["controllers"]) == ["bb", "oref"]
    for entry in summary["controllers"].values():
        assert list(entry) == ["overall", "groups", "subjects"]
        assert set(entry["groups"]) == {"adult", "child", "adolescent"}
        assert list(entry["subjects"]) == COHORT.split(",")
        for m in [entry["overall"], *entry["groups"].values(), *entry["subjects"].values()]:
            assert list(m) == list(METRIC_KEYS) + ["cgm"]
            assert list(m["cgm"]) == list(GLUCOSE_KEYS)
            assert 0 <= m["tir_pct"] <= 100 and m["mean_mg_dl"] > 40
            assert m["tir_pct"] + m["tbr70_pct"] + m["tar180_pct"] == pytest.approx(100.0, abs=1e-3)
            assert m["tdi_u"] > 5 and isinstance(m["interventions"], dict)
    # group metrics of one-subject groups equal the subject's
    bb = summary["controllers"]["bb"]
    assert bb["groups"]["adult"]["tir_pct"] == bb["subjects"]["adult#001"]["tir_pct"]
    assert result.patient_days == pytest.approx(6.0)


def test_traces_and_report_files(small_trial):
    import pyarrow.parquet as pq

    _, out, result = small_trial
    table = pq.read_table(out / "traces" / "bb")
    cols = table.column_names
    for c in ("t_min", "subject", "controller", "bg_mg_dl", "cgm_mg_dl", "insulin_u", "carbs_g",
              "carbs_announced_g", "reason"):
        assert c in cols
    assert table.num_rows == 3 * 288
    d = table.to_pydict()
    assert set(d["subject"]) == set(COHORT.split(","))
    assert sum(d["carbs_g"]) > 3 * 150 and sum(d["carbs_announced_g"]) > 3 * 100
    assert result.report_path is not None and result.report_path.exists()
    html = result.report_path.read_text()
    for needle in ("Ambulatory glucose profile", "Control variability grid", "consensus", "agp_adult.png",
                   "cvga.png", "traces_child.png"):
        assert needle in html
    for png in ("agp_adult.png", "cvga.png", "time_in_ranges.png", "traces_adult.png"):
        assert (out / png).stat().st_size > 5000


def _dask_roundtrip(spec, reference: bytes, tmp_path, processes: bool) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1 if not processes else 2, threads_per_worker=2 if not processes else 1,
                      processes=processes, dashboard_address=None) as cluster:
        run_trial(spec, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False, report=False)
    assert (tmp_path / "dask" / "summary.json").read_bytes() == reference


DET_SPEC = TrialSpec(cohort="adult#003,child#003", controllers=("bb",), chunk_size=1, traces=False)


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    run_trial(DET_SPEC, out, progress=False, report=False)
    return out, (out / "summary.json").read_bytes()


def test_same_seed_same_bytes_serial_workers_dask(serial_reference, tmp_path):
    from trials.progress import ProgressBar

    out, reference = serial_reference
    buf = io.StringIO()
    bar = ProgressBar(n_subjects=2, days=1.0, stream=buf)
    run_trial(DET_SPEC, tmp_path / "w2", workers=2, progress=bar, report=False)
    assert (tmp_path / "w2" / "summary.json").read_bytes() == reference
    assert "2/2 patients" in buf.getvalue()  # progress came back from the worker processes
    _dask_roundtrip(DET_SPEC, reference, tmp_path, processes=False)


@pytest.mark.slow
def test_same_bytes_on_a_multiprocess_dask_cluster(serial_reference, tmp_path):
    _dask_roundtrip(DET_SPEC, serial_reference[1], tmp_path, processes=True)


def test_another_seed_gives_another_trial(serial_reference, tmp_path):
    from dataclasses import replace

    other = run_trial(replace(DET_SPEC, seed=7, cohort="adult#003"), tmp_path, progress=False, report=False)
    got = json.loads(other.summary_path.read_text())
    ref = json.loads(serial_reference[1])
    assert got["seed"] == 7 and ref["seed"] != 7
    assert got["controllers"]["bb"]["subjects"]["adult#003"] != ref["controllers"]["bb"]["subjects"]["adult#003"]


def test_chunk_files_stream_in_subject_order(serial_reference):
    from trials.chunkio import iter_chunks

    out, _ = serial_reference
    chunks = list(iter_chunks(out, "bb"))
    assert [str(c["names"][0]) for c in chunks] == ["adult#003", "child#003"]
    assert all(int(np.asarray(c["agp_hist"]).sum()) == 288 for c in chunks)


def test_progress_bar_reports_patients_and_days():
    from trials.progress import ProgressBar

    buf = io.StringIO()
    bar = ProgressBar(n_subjects=4, days=2.0, stream=buf)
    bar.advance(1.0)
    bar({"subjects": 2, "patient_days": 4.0})
    bar({"subjects": 2, "patient_days": 4.0})
    bar.close()
    text = buf.getvalue()
    assert "4/4 patients" in text and "8.0/8.0 patient-days" in text and text.endswith("\n")


def test_cli_trial(tmp_path, capsys):
    from twinloop.cli import main

    out = tmp_path / "cli"
    assert main(["trial", "--cohort", "child#002", "--controllers", "pid", "--out", str(out), "--quiet",
                 "--no-traces"]) == 0
    assert (out / "summary.json").exists() and (out / "report.html").exists()
    assert "summary:" in capsys.readouterr().out
    assert main(["trial", "--controllers", "nope", "--out", str(out), "--quiet"]) == 2
    assert main(["trial", "--cohort", "adult#999", "--controllers", "bb", "--out", str(out), "--quiet"]) == 2
    assert "adult#999" in capsys.readouterr().err


def test_delivery_history_keeps_a_day_of_insulin_in_few_records():
    from safety.commands import DeliveryKind, DeliveryRecord, DeliveryStatus
    from trials.simulate import DeliveryHistory

    h = DeliveryHistory()
    total = 0.0
    for k in range(2 * 288):  # two days of 5-minute basal records and a bolus every 6 hours
        t = 5.0 * k
        h.append(DeliveryRecord("", DeliveryKind.BASAL, t, t + 5.0, 0.1, DeliveryStatus.CONFIRMED, 1.2))
        if k % 72 == 0:
            h.append(DeliveryRecord(f"b{k}", DeliveryKind.BOLUS, t, t, 2.0, DeliveryStatus.CONFIRMED))
    now = 2 * 1440.0
    records = h.snapshot(now)
    assert len(records) < 96 + 20 + 8
    start = min(r.start_min for r in records)
    assert start <= now - 1440.0  # a whole day is covered
    boluses = sum(1 for k in range(0, 2 * 288, 72) if 5.0 * k >= start)
    total = sum(r.amount_u for r in records)
    assert total == pytest.approx(0.1 * (now - start) / 5.0 + 2.0 * boluses, abs=1e-9)
    assert all(a.end_min <= b.start_min + 1e-9 for a, b in zip(records, records[1:])
               if a.kind is DeliveryKind.BASAL and b.kind is DeliveryKind.BASAL)
    # handed over already reduced (one record per command, none failed): the reduction changes nothing
    from safety.deliveries import EffectiveDeliveries, _effective

    assert isinstance(records, EffectiveDeliveries) and tuple(records) == tuple(_effective(tuple(records)))
    assert tuple(records) == tuple(h.old) + tuple(h.recent) or len(records) == len(h.old) + len(h.recent) + 1


def test_per_subject_path_agrees_with_the_vectorized_path():
    """bb through Snapshot + scalar supervisor (the MPC's path) gives nearly the trial of the vectorized path."""
    from controller.baselines import BasalBolus
    from patient_model.cohort import load_subject
    from patient_model.scenarios import realize
    from trials.runner import scenario
    from trials.simulate import simulate_chunk
    from trials.supervision import make_supervisor
    from trials.therapy import therapy_settings

    subjects = [load_subject("adult#004")]
    settings = [therapy_settings(s) for s in subjects]
    sc = scenario("default-1day", None)
    out = {}
    for vectorized in (True, False):
        real = realize(sc, [s.name for s in subjects], sc.seed)
        out[vectorized] = simulate_chunk(subjects, settings, real, BasalBolus(),
                                         make_supervisor(settings, vectorized=vectorized), seed=sc.seed,
                                         minutes=sc.duration_min, vectorized=vectorized)
    a, b = out[True], out[False]
    assert np.nansum(a.bolus_u) == pytest.approx(np.nansum(b.bolus_u), rel=0.02)
    assert np.nansum(a.insulin_u) == pytest.approx(np.nansum(b.insulin_u), rel=0.03)
    assert np.nanmax(np.abs(a.bg_mg_dl - b.bg_mg_dl)) < 15.0


def test_mpc_runs_side_by_side_with_bb(tmp_path):
    """The default comparison (mpc versus bb) on one subject: both controllers are in summary.json, the MPC goes
    through the supervisor (its interventions are counted) and keeps the subject out of hypoglycaemia."""
    spec = TrialSpec(cohort="adult#001", controllers=("mpc", "bb"), traces=False)
    result = run_trial(spec, tmp_path, progress=False, report=False, workers=1)
    summary = json.loads(result.summary_path.read_text())
    assert list(summary["controllers"]) == ["mpc", "bb"]
    mpc, bb = (summary["controllers"][c]["overall"] for c in ("mpc", "bb"))
    assert list(mpc) == list(METRIC_KEYS) + ["cgm"]
    assert mpc["tir_pct"] > 70.0 and mpc["tbr54_pct"] == 0.0 and mpc["hypo_events"] == 0
    assert 20.0 < mpc["tdi_u"] < 100.0 and isinstance(mpc["interventions"], dict)
    assert mpc != bb  # a different controller gives a different trial
    assert result.patient_days == pytest.approx(2.0)
    from trials.mpc import make_mpc, solver_kind

    manifest = json.loads((tmp_path / "trial.json").read_text())
    assert manifest["mpc_solver"] == solver_kind(make_mpc()) in ("compiled C", "CasADi (Python)")

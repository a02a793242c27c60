"""Pieces of the report: AGP percentiles from histograms, histogram building, figures render."""

from __future__ import annotations

import numpy as np
import pytest

from trials.chunkio import AGP_SLOTS, agp_histogram
from trials.plots import percentiles_from_histogram


def test_percentiles_from_histogram_match_numpy():
    rng = np.random.default_rng(3)
    values = np.rint(rng.normal(150, 40, size=(4, 500)).clip(40, 400))
    hist = np.zeros((4, 601), dtype=np.int64)
    for s in range(4):
        np.add.at(hist[s], values[s].astype(int), 1)
    got = percentiles_from_histogram(hist)
    for j, q in enumerate((5, 25, 50, 75, 95)):
        want = np.percentile(values, q, axis=1, method="inverted_cdf")
        np.testing.assert_allclose(got[j], want)
    empty = percentiles_from_histogram(np.zeros((1, 601)))
    assert np.isnan(empty).all()


def test_agp_histogram_slots_and_groups():
    t = np.arange(0, 1440 * 2, 5.0)  # two days of 5-minute samples
    g = np.full((t.size, 3), 120.0)
    g[:, 1] = np.nan
    hist = agp_histogram(t, g, ("adult", "adult", "child"))
    assert hist.shape == (3, AGP_SLOTS, 601)
    assert hist[1].sum() == t.size  # adults: one valid subject
    assert hist[2].sum() == t.size and hist[0].sum() == 0
    assert (hist[1, :, 120] == 6).all()  # 3 samples per 15-minute slot x 2 days


def test_figures_render(tmp_path):
    from trials import plots

    hist = np.zeros((AGP_SLOTS, 601), dtype=np.int64)
    hist[:, 100:200] = 1
    assert plots.agp_figure(tmp_path / "agp.png", "Adults", {"bb": hist, "pid": hist}).stat().st_size > 5000
    pts = {"bb": (np.array([10.0, 50.0]), np.array([10.0, 50.0]))}
    assert plots.cvga_figure(tmp_path / "cvga.png", pts).stat().st_size > 5000
    m = {"tir_pct": 80.0, "tbr70_pct": 3.0, "tbr54_pct": 1.0, "tar180_pct": 17.0, "tar250_pct": 5.0}
    assert plots.time_in_ranges_figure(tmp_path / "tir.png", [("bb", m)]).stat().st_size > 3000
    t = np.arange(0, 1440, 5.0)
    d = {"t_min": t, "bg": 120 + 30 * np.sin(t / 200), "insulin": np.full(t.size, 0.1),
         "bolus": np.where(t == 420, 5.0, 0.0), "carbs": np.where(t == 420, 50.0, 0.0)}
    path = plots.traces_figure(tmp_path / "tr.png", "Adults", ["adult#001"], {"bb": {"adult#001": d}})
    assert path.stat().st_size > 5000


def test_report_marks_use_consensus_targets():
    from trials.report import _mark

    assert "pass" in _mark("tir_pct", 71.0) and "fail" in _mark("tir_pct", 69.0)
    assert _mark("mean_mg_dl", 150.0) == "" and _mark("tir_pct", None) == ""


def _tiny_result():
    from trials.simulate import ChunkResult

    t5, n = 4, 2
    z = np.zeros((t5, n))
    return ChunkResult(names=("adult#001", "child#001"), groups=("adult", "child"), t_min=np.arange(t5) * 5.0,
                       bg_mg_dl=z + 120.0, cgm_mg_dl=z + 118.0, insulin_u=z + 0.1, bolus_u=z, carbs_g=z,
                       carbs_announced_g=z, reason=np.zeros((t5, n), dtype=np.int16), reasons=("programmed basal",),
                       interventions={"LGS_MEASURED": np.array([1, 0])})


def test_traces_fall_back_to_csv_without_pyarrow(tmp_path, monkeypatch):
    import csv
    import sys

    from trials.chunkio import write_traces

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = write_traces(tmp_path, "bb", 0, _tiny_result())
    assert path.suffix == ".csv"
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 8 and rows[0]["subject"] == "adult#001" and rows[0]["controller"] == "bb"
    assert float(rows[0]["bg_mg_dl"]) == 120.0 and rows[0]["reason"] == "programmed basal"


def test_chunk_file_roundtrip(tmp_path):
    from trials.chunkio import iter_chunks, write_chunk

    write_chunk(tmp_path, "bb", 0, 0, _tiny_result(), traces=False)
    (chunk,) = list(iter_chunks(tmp_path, "bb"))
    assert chunk["names"].tolist() == ["adult#001", "child#001"]
    assert chunk["bg_n"].tolist() == [4, 4] and chunk["insulin_u"].tolist() == pytest.approx([0.4, 0.4])
    assert chunk["intervention_names"].tolist() == ["LGS_MEASURED"] and chunk["interventions"].tolist() == [[1, 0]]

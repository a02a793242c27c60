"""``twinloop simulate``: replays a schedule, reproduces a shared trace, and rejects bad input with status 2."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twinloop.cli import main

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, rows: list[str], header: str = "t_min,cho_g_per_min,insulin_u_per_min") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def test_replays_shared_trace(tmp_path: Path, shared_reference: Path) -> None:
    trace = shared_reference / "uva_padova_s2008" / "traces" / "A_adult001.csv"
    tr = _read(trace)
    n = 600  # the first meal and bolus
    rows = [f"{int(t)},{float(c)!r},{float(u)!r}" for t, c, u in
            zip(tr["t_min"][:n], tr["cho_g_per_min"][:n], tr["insulin_u_per_min"][:n])]
    inp = _write(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    assert main(["simulate", "--patient", "adult#001", "--inputs", str(inp), "--out", str(out)]) == 0
    got = _read(out)
    assert list(got) == ["t_min", "bg_mg_dl", "gsub_mg_dl"] + [f"x{i}" for i in range(13)]
    assert len(got["t_min"]) == n + 1  # one row per minute plus the state after the last input
    np.testing.assert_array_equal(got["t_min"], np.arange(n + 1))
    assert np.abs(got["bg_mg_dl"] - tr["bg_mg_dl"][: n + 1]).max() < 0.05
    assert np.abs(got["x3"] - tr["x3"][: n + 1]).max() < 0.1
    assert got["bg_mg_dl"].max() > 150  # the meal is really there


def test_fasting_at_basal_stays_flat(tmp_path: Path) -> None:
    inp = _write(tmp_path / "in.csv", [f"{t},0,0.021122675" for t in range(30, 90)])
    out = tmp_path / "out.csv"
    assert main(["simulate", "--patient", "adult#001", "--inputs", str(inp), "--out", str(out)]) == 0
    got = _read(out)
    assert got["t_min"][0] == 30 and got["t_min"][-1] == 90
    assert np.abs(got["bg_mg_dl"] - 138.56).max() < 0.01


@pytest.mark.parametrize(
    ("rows", "header", "needle"),
    [
        (["0,0,0.02"], "t_min,cho_g_per_min", "missing column(s) insulin_u_per_min"),
        (["0,0,0.02", "1,abc,0.02"], None, "line 3, column cho_g_per_min: not a number"),
        (["0,0,0.02", "1,0,-0.5"], None, "line 3, column insulin_u_per_min: negative"),
        (["0,0,0.02", "2,0,0.02"], None, "line 3, column t_min: gap"),
        (["0,0,0.02", "1,0,0.02", "1,0,0.02"], None, "line 4, column t_min: out of order"),
        (["0,0,0.02", "1,nan,0.02"], None, "not finite"),
        ([], None, "no input rows"),
    ],
)
def test_bad_inputs_exit_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[str],
                                        header: str | None, needle: str) -> None:
    inp = _write(tmp_path / "in.csv", rows, header or "t_min,cho_g_per_min,insulin_u_per_min")
    out = tmp_path / "out.csv"
    assert main(["simulate", "--patient", "adult#001", "--inputs", str(inp), "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_unknown_patient_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = _write(tmp_path / "in.csv", ["0,0,0.02"])
    assert main(["simulate", "--patient", "adult#042", "--inputs", str(inp), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "adult#042" in err and "adult#001" in err
    assert main(["simulate", "--patient", "adult#001", "--inputs", str(tmp_path / "nope.csv"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_console_script_subprocess(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "twinloop"
    if not exe.exists():
        pytest.skip("console script not installed")
    inp = _write(tmp_path / "in.csv", ["0,5,0.5", "1,5,0.01", "2,0,0.01"])
    ok = subprocess.run([str(exe), "simulate", "--patient", "child#003", "--inputs", str(inp), "--out", "-"],
                        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert lines[0].startswith("t_min,bg_mg_dl,gsub_mg_dl,x0") and len(lines) == 5
    bad = subprocess.run([str(exe), "simulate", "--patient", "child#999", "--inputs", str(inp), "--out", "-"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and "child#999" in bad.stderr


def test_extra_fields_are_refused_and_a_byte_order_mark_is_accepted(tmp_path, capsys):
    from twinloop.cli import main

    extra = tmp_path / "extra.csv"
    extra.write_text("t_min,cho_g_per_min,insulin_u_per_min\n0,0,0.02,7\n")
    assert main(["simulate", "--patient", "adult#001", "--inputs", str(extra), "--out", str(tmp_path / "o.csv")]) == 2
    assert "line 2" in capsys.readouterr().err
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefft_min,cho_g_per_min,insulin_u_per_min\n0,0,0.02\n1,0,0.02\n".encode("utf-8"))
    assert main(["simulate", "--patient", "adult#001", "--inputs", str(bom), "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "b.csv").read_text().splitlines()[0].startswith("t_min,bg_mg_dl,gsub_mg_dl")

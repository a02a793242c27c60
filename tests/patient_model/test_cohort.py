"""Reference subjects, groups and cohort specs."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from patient_model.cohort import (
    CohortSpecError,
    Subject,
    UnknownGroupError,
    UnknownSubjectError,
    load_all,
    load_group,
    load_subject,
    resolve_cohort,
    split_evenly,
)


def test_thirty_subjects_ten_per_group() -> None:
    subjects = load_all()
    assert len(subjects) == 30
    assert [s.group for s in subjects].count("adult") == 10
    assert subjects[0].name == "adolescent#001" and subjects[-1].name == "child#010"
    assert load_all() is subjects  # cached


def test_subject_fields_from_both_files() -> None:
    s = load_subject("adult#001")
    assert s.group == "adult"
    assert s.weight_kg == pytest.approx(102.32) == s.params["BW"]
    assert s.cr_g_per_u == 10 and s.cf_mg_dl_per_u == pytest.approx(8.77310657487)
    assert s.age_y == 61 and s.tdi_u == pytest.approx(50.416652)
    assert s.params["x0_4"] == pytest.approx(s.params["Gpb"])  # 'x0_ 4' column normalised
    assert s.basal_u_per_h == pytest.approx(1.2386244136 * 102.32 / 6000 * 60)


def test_subject_is_immutable() -> None:
    s = load_subject("child#002")
    with pytest.raises(TypeError):
        s.params["BW"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]


def test_bundled_data_equals_shared_reference(shared_reference: Path) -> None:
    with (shared_reference / "uva_padova_s2008" / "vpatient_params.csv").open() as fh:
        rows = {r["Name"]: r for r in csv.DictReader(fh)}
    for s in load_all():
        assert s.params["Vmx"] == float(rows[s.name]["Vmx"])
        assert s.params["u2ss"] == float(rows[s.name]["u2ss"])


@pytest.mark.parametrize("name", ["vpatient_params.csv", "Quest.csv", "sensor_params.csv", "pump_params.csv"])
def test_bundled_csv_files_equal_the_shared_reference(shared_reference: Path, name: str) -> None:
    """Every parameter of the bundled subjects, sensors and pumps is the reference's (line endings aside)."""
    from importlib.resources import files

    bundled = files("patient_model").joinpath("data", name).read_bytes().replace(b"\r\n", b"\n")
    shared = (shared_reference / "uva_padova_s2008" / name).read_bytes().replace(b"\r\n", b"\n")
    assert bundled == shared


@pytest.mark.parametrize("alias", ["adult", "adults", "Adults"])
def test_group_aliases(alias: str) -> None:
    assert [s.name for s in load_group(alias)] == [f"adult#{i:03d}" for i in range(1, 11)]


def test_children_alias_and_unknown_group() -> None:
    assert all(s.group == "child" for s in load_group("children"))
    with pytest.raises(UnknownGroupError, match="elderly"):
        load_group("elderly")


def test_unknown_subject_lists_valid_names() -> None:
    with pytest.raises(UnknownSubjectError) as info:
        load_subject("adult#011")
    assert "adult#011" in str(info.value) and "child#010" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_resolve_cohort_specs() -> None:
    assert len(resolve_cohort("all")) == 30
    assert {s.group for s in resolve_cohort("adolescents")} == {"adolescent"}
    assert [s.name for s in resolve_cohort(" adult#002, child#010 ")] == ["adult#002", "child#010"]
    with pytest.raises(UnknownSubjectError, match="adult#0x"):
        resolve_cohort("adult#001,adult#0x")
    for bad in ["", "population:3", "population:a:1", "population:0:1"]:
        with pytest.raises(CohortSpecError):
            resolve_cohort(bad)


def test_population_spec_splits_evenly_and_is_deterministic() -> None:
    assert split_evenly(10) == (4, 3, 3)
    a = resolve_cohort("population:7:42")
    b = resolve_cohort("population:7:42")
    assert [s.group for s in a] == ["adolescent"] * 3 + ["adult"] * 2 + ["child"] * 2
    assert a == b
    assert all(isinstance(s, Subject) and s.name.startswith("pop-") for s in a)
    c = resolve_cohort("population:1:43")
    assert [s.group for s in c] == ["adolescent"]
    assert a[0].params["Vmx"] != c[0].params["Vmx"]

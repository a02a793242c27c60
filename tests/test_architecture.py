"""The house rules of docs/architecture.md, enforced: imports point downward only, and heavy libraries are imported
inside the functions that need them (so the controller starts fast on a small board)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("safety", "patient_model", "controller", "drivers", "hil", "trials", "twinloop")
ALLOWED = {
    "safety": set(),
    "patient_model": set(),
    "controller": {"safety", "patient_model"},
    "drivers": {"safety"},
    "hil": {"safety", "patient_model", "controller", "drivers"},
    "trials": {"safety", "patient_model", "controller"},
    "twinloop": {"safety", "patient_model", "controller", "drivers", "hil", "trials"},
}
HEAVY = {"bleak", "bumble", "dask", "distributed", "matplotlib", "pyarrow"}
LAZY_MODULES = {"drivers/ble/bumble_backend.py"}
"""Modules that exist to subclass a heavy library's class; they are only ever imported inside functions."""


def _imports(path: Path, top_level_only: bool) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module.split(".")[0], node.lineno))
    return out


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_downward_only(package: str) -> None:
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod}"
           for f in _files(package) for mod, line in _imports(f, top_level_only=False)
           if mod in PACKAGES and mod != package and mod not in ALLOWED[package]]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ("safety", "patient_model", "controller", "drivers", "twinloop"))
def test_heavy_libraries_are_imported_inside_functions(package: str) -> None:
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod} at module level"
           for f in _files(package) for mod, line in _imports(f, top_level_only=True)
           if mod in HEAVY and str(f.relative_to(ROOT)) not in LAZY_MODULES]
    assert not bad, "\n".join(bad)


def test_lazy_modules_are_imported_lazily() -> None:
    names = {m[:-3].replace("/", ".") for m in LAZY_MODULES}
    bad = [f"{f.relative_to(ROOT)}:{line}" for p in PACKAGES for f in _files(p)
           for node in ast.parse(f.read_text(encoding="utf-8")).body
           if isinstance(node, ast.ImportFrom) and node.module in names for line in [node.lineno]]
    assert not bad, "module-level import of a lazy module: " + ", ".join(bad)


def test_starting_the_controller_loads_no_heavy_library() -> None:
    import subprocess
    import sys

    code = ("import sys; import twinloop.cli, controller.decide, safety.supervisor, safety.journal, drivers.interfaces, "
            "drivers.ble, drivers.serial; twinloop.cli.build_parser(); "
            f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

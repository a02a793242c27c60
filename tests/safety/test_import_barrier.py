"""safety/ imports no other package of the project, and nothing heavy (AST scan of every module)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SAFETY = Path(__file__).resolve().parents[2] / "safety"
PROJECT = {"twinloop", "hil", "trials", "controller", "drivers", "patient_model", "benchmarks", "tests"}
ALLOWED_THIRD_PARTY = {"numpy"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, "safety"  # relative import stays inside the package
            else:
                yield node.lineno, node.module or ""


def test_safety_imports_only_stdlib_numpy_and_itself():
    files = sorted(SAFETY.rglob("*.py"))
    assert len(files) >= 10
    bad = []
    for f in files:
        for line, name in _imports(f):
            top = name.split(".")[0]
            if top in PROJECT:
                bad.append(f"{f.name}:{line} imports project package {name}")
            elif top != "safety" and top not in ALLOWED_THIRD_PARTY and top not in sys.stdlib_module_names \
                    and top != "__future__":
                bad.append(f"{f.name}:{line} imports third-party {name}")
    assert not bad, "\n".join(bad)


def test_the_scan_catches_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import os\nfrom controller.api import Controller\ndef f():\n    import casadi\n")
    names = [n for _, n in _imports(f)]
    assert "controller.api" in names and "casadi" in names

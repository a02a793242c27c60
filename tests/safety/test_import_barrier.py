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


def test_only_the_safety_kernel_creates_approved_commands():
    """Issue 3: an approved command is created only by the supervisor. Outside safety/, no project module names the
    private constructor (``_approve``) or the approval key; ``ApprovedCommand(...)`` without the key is refused."""
    import pytest

    from safety.commands import ApprovedCommand, Resume, UnapprovedCommandError

    root = SAFETY.parent
    offenders = []
    for pkg in ("controller", "drivers", "hil", "patient_model", "trials", "twinloop"):
        for f in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(f.read_text(), filename=str(f))
            for node in ast.walk(tree):
                name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) \
                    else node.name if isinstance(node, ast.alias) else None
                if name in ("_approve", "_APPROVAL_KEY"):
                    offenders.append(f"{f.relative_to(root)}:{node.lineno} uses {name}")
    assert not offenders, "\n".join(offenders)
    with pytest.raises(UnapprovedCommandError):
        ApprovedCommand("forged", 0.0, Resume())

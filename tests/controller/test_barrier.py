"""Information barrier: the controller sees only what a real device sees.

* No module under ``controller/`` imports a virtual patient's model, parameters, sensor or pump model, or scenarios
  (AST scan, including imports inside functions).
* ``decide`` (module level and :class:`MPCController`) takes only the controller state and a :class:`Snapshot`.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

CONTROLLER = Path(__file__).resolve().parents[2] / "controller"
FORBIDDEN = ("patient_model.uva_padova", "patient_model.cohort", "patient_model.population", "patient_model.sensor",
             "patient_model.pump", "patient_model.scenarios", "trials", "hil")
ALLOWED_PATIENT_MODEL = ("patient_model.bergman_twin",)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                continue  # relative imports stay inside controller/
            mod = node.module or ""
            out.append(mod)
            out.extend(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            out.append(str(node.args[0].value))
    return out


SOURCES = sorted(CONTROLLER.rglob("*.py"))


def test_there_are_sources_to_scan():
    names = {p.name for p in SOURCES}
    assert {"decide.py", "mpc.py", "twin_filter.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CONTROLLER)))
def test_controller_never_imports_the_virtual_patient(path):
    for name in _imports(path):
        for bad in FORBIDDEN:
            assert not (name == bad or name.startswith(bad + ".")), f"{path.name} imports {name}"
        if name == "patient_model" or name.startswith("patient_model."):
            assert any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_PATIENT_MODEL), \
                f"{path.name} imports {name}: only the twin's equations may come from patient_model"


def test_decide_receives_only_state_and_snapshot():
    from controller.decide import MPCController, decide
    from safety.snapshot import Snapshot

    for fn in (decide, MPCController.decide):
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        assert [p.name for p in params] == ["state", "snapshot"]
        hints = inspect.get_annotations(fn, eval_str=True)
        assert hints["snapshot"] is Snapshot


def test_snapshot_carries_no_patient_truth():
    from dataclasses import fields

    from safety.snapshot import Snapshot

    assert {f.name for f in fields(Snapshot)} == {"now_min", "readings", "deliveries", "meals", "settings"}

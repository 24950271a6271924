"""The architecture rules of docs/DESIGN.md, checked on the source tree and in fresh processes.

* ``vloss/`` never imports ray or ``pipelines``;
* the stages (``pipelines/pseudo_masks``, ``pipelines/train``, ``pipelines/evaluate``) import
  ``pipelines.common`` and ``vloss``, never each other; ``pipelines/common`` imports no stage;
* the decode modules of the Ray stages import neither torch nor Ray (decode workers would pay
  seconds for it), and a stage package's ``__init__`` imports nothing heavy.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("pseudo_masks", "train", "evaluate", "predict")


def _imports(path: Path) -> set[str]:
    """Every module name a file imports (absolute imports; function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _py_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_the_tree_has_the_three_stage_packages_and_common():
    for name in (*STAGES, "common"):
        assert (REPO / "pipelines" / name / "__init__.py").is_file(), name
    flat = [p.name for p in (REPO / "pipelines").glob("*.py") if p.name != "__init__.py"]
    assert flat == [], f"modules outside the stage packages: {flat}"


def test_vloss_never_imports_ray_or_pipelines():
    for path in _py_files(REPO / "vloss"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("ray", "pipelines", "jobs")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_common_never_each_other(stage):
    others = {f"pipelines.{s}" for s in STAGES if s != stage}
    for path in _py_files(REPO / "pipelines" / stage):
        bad = {m for m in _imports(path) if any(m == o or m.startswith(o + ".") for o in others)}
        assert not bad, f"{path.relative_to(REPO)} imports another stage: {sorted(bad)}"


def test_common_imports_no_stage():
    stages = {f"pipelines.{s}" for s in STAGES}
    for path in _py_files(REPO / "pipelines" / "common"):
        bad = {m for m in _imports(path) if any(m == s or m.startswith(s + ".") for s in stages)}
        assert not bad, f"{path.relative_to(REPO)} imports a stage: {sorted(bad)}"


def _heavy_after_import(modules: list[str]) -> dict[str, bool]:
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(json.dumps({k: k in sys.modules for k in ('torch', 'ray', 'timm', 'open_clip')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_decode_modules_of_both_ray_stages_do_not_import_torch():
    heavy = _heavy_after_import(["pipelines.pseudo_masks.decode", "pipelines.common.inference_decode",
                                 "pipelines.train.transforms"])
    assert heavy == {"torch": False, "ray": False, "timm": False, "open_clip": False}


def test_stage_packages_import_nothing_heavy():
    heavy = _heavy_after_import([f"pipelines.{s}" for s in STAGES] + ["pipelines.common"])
    assert not any(heavy.values()), heavy


def test_control_a_model_module_does_import_torch():
    """The probe itself works: a module that needs torch shows it."""
    assert _heavy_after_import(["pipelines.evaluate.predictor"])["torch"] is True

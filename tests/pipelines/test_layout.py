"""The architecture rules of docs/DESIGN.md, checked on the source tree and in fresh processes.

* ``vloss/`` never imports ray or ``pipelines``;
* the stages (``pipelines/pseudo_masks``, ``pipelines/train``, ``pipelines/evaluate``) import
  ``pipelines.common`` and ``vloss``, never each other; ``pipelines/common`` imports no stage;
* the decode modules of the Ray stages import neither torch nor Ray (decode workers would pay
  seconds for it), and a stage package's ``__init__`` imports nothing heavy;
* the import graph of ``vloss/`` and ``pipelines/`` has no cycle (function-local imports included),
  and ``import vloss.config`` loads no torch (issue #25 item 4).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("pseudo_masks", "train", "evaluate", "predict")


def _module_name(path: Path, root: Path = REPO) -> str:
    """``vloss/model/weights.py`` -> ``vloss.model.weights``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_statements(path: Path, root: Path = REPO) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in a file: ``import a.b`` -> ``("a.b", [])``,
    ``from a import b, c`` -> ``("a", ["b", "c"])``. Module level, inside functions and classes and
    under ``if TYPE_CHECKING:`` alike; relative imports resolved against the file's package."""
    module = _module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            found.append((source, [a.name for a in node.names if a.name != "*"]))
    return found


def _imports(path: Path) -> set[str]:
    """Every module name a file imports (absolute or resolved relative; function-level imports included)."""
    return {source for source, _ in _import_statements(path)}


def _import_graph(root: Path = REPO, tops: tuple[str, ...] = ("vloss", "pipelines")) -> dict[str, set[str]]:
    """module -> the modules under ``tops`` it imports.

    ``from pkg import name`` is an edge to the submodule ``pkg.name`` when that is a module file,
    else to ``pkg``; ``import a.b.c`` is an edge to ``a.b.c`` (or the longest module it starts with).
    The package ``__init__`` files Python runs on the way (``a``, ``a.b``) are deliberately no edges:
    with them, every submodule of a package whose ``__init__`` imports that submodule (``vloss.model``,
    ``vloss.losses``: the ordinary way a package re-exports its parts) would close a cycle with it.
    A module naming its own package (``from vloss.model import VLOSS`` inside ``vloss/model/``) is
    an explicit edge and counts.
    """
    files = {_module_name(p, root): p for top in tops for p in sorted((root / top).rglob("*.py"))}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets: set[str | None] = set()
        for source, names in _import_statements(path, root):
            subs = [f"{source}.{n}" for n in names if f"{source}.{n}" in files]
            targets.update(subs)
            if not names or len(subs) < len(names):
                targets.add(known(source))
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through every strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:  # walk the group from its first module back to it (breadth-first: shortest)
        start = min(group)
        paths = {w: [start, w] for w in sorted(graph[start] & group)}
        frontier = list(paths)
        while start not in paths:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        cycles.append(paths[start])
    return sorted(cycles)


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


def test_no_import_cycle_in_vloss_or_pipelines():
    """Over every module of both trees, function-local and TYPE_CHECKING imports included: an import
    cycle makes import order matter and hides a layering mistake (issue #25 item 4)."""
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_function_local_relative_and_package_imports(tmp_path: Path):
    """The probe itself works: it finds cycles closed by a function-local import, a relative import
    and ``from package import submodule``, and reports the path."""
    pkg = tmp_path / "vloss" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "vloss" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from vloss.sub.a import f\n")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    return b\n")
    (pkg / "b.py").write_text("def g():\n    from vloss.sub.a import f\n    return f\n")
    (tmp_path / "vloss" / "c.py").write_text("import json\nfrom vloss import d\n")
    (tmp_path / "vloss" / "d.py").write_text("def h():\n    from vloss.c import json\n")
    graph = _import_graph(tmp_path, ("vloss",))
    assert graph["vloss.sub"] == {"vloss.sub.a"} and graph["vloss.sub.a"] == {"vloss.sub.b"}
    assert graph["vloss.c"] == {"vloss.d"} and graph["vloss.d"] == {"vloss.c"}
    assert _cycles(graph) == [["vloss.c", "vloss.d", "vloss.c"], ["vloss.sub.a", "vloss.sub.b", "vloss.sub.a"]]


def test_vloss_config_imports_no_torch():
    """Configs are read by the drivers and by the CLIs before any model exists: no torch for them."""
    assert _heavy_after_import(["vloss.config"]) == {"torch": False, "ray": False, "timm": False,
                                                     "open_clip": False}


def test_the_module_map_names_every_module():
    """docs/DESIGN.md's picture names every module of pipelines/ and vloss/ (the dataset writers of
    vloss/data/synthetic/ and vloss/data/prepare/ are named by their folder), so that the map a newcomer
    reads is the tree they find (issue #25 item 8)."""
    design = (REPO / "docs" / "DESIGN.md").read_text()
    picture = design.split("## The architecture in one picture", 1)[1].split("## Rules", 1)[0]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", picture))
    missing = []
    for tree in ("pipelines", "vloss"):
        for path in sorted((REPO / tree).rglob("*.py")):
            rel = path.relative_to(REPO)
            if path.stem in ("__init__", "__main__") or rel.parts[1:3] in (("data", "synthetic"), ("data", "prepare")):
                continue
            if path.stem not in words:
                missing.append(str(rel))
    assert not missing, f"modules missing from docs/DESIGN.md's module map: {missing}"

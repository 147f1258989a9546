"""The package's layers import only downward, and no module reaches into another
package's private names or private modules.

    core  ->  inputs, models and theory  ->  train, report  ->  studies, integrations  ->  cli
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nclab"

#: Top-level subpackage or module of nclab -> its layer (higher may import lower).
LAYERS = {
    "core": 0,
    "capture": 1, "data": 1, "models": 1, "runs": 1, "histories": 1,
    "ufm": 1, "kernels": 1, "finegrained": 1, "transfer": 1,
    "train": 2, "report": 2, "ood": 2,
    "studies": 3, "integrations": 3,
    "cli": 4,
    "__init__": 5, "__main__": 5,
}
#: Pairs on one layer that must stay independent of each other.
SIBLINGS = {frozenset({"train", "report"})}
#: The only upward imports allowed: a result's ``plot`` method imports its drawing from
#: report/displays.py when it is called, so that the result object can draw itself while
#: matplotlib and the drawing stay in report/ (layer 2). Listed one by one as
#: (module, class, method); each may import nothing else from above, and only inside
#: that method's body (``ast.walk`` sees imports inside functions as well).
DISPLAY_HOOKS = {
    ("nclab.core.metrics", "CollapseMetrics", "plot"),
    ("nclab.runs", "RunRecord", "plot"),
    ("nclab.capture.tracking", "LayerProfile", "plot"),
    ("nclab.finegrained.recovery", "FineRecovery", "plot"),
}
DISPLAYS = "nclab.report.displays"


def _unit(module: str) -> str:
    """'nclab.core.stats' -> 'core'; 'nclab' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported, line) for every nclab import of ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "nclab" or node.module.startswith("nclab."):
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names
                      if a.name == "nclab" or a.name.startswith("nclab.")]
    return found


def _all_imports() -> list[tuple[str, str, list[str], int]]:
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for target, names, line in _imports(path):
            if target == "nclab" and names:
                # 'from nclab import capture' names a submodule or a re-export
                for name in names:
                    sub = f"nclab.{name}"
                    unit = name if name in LAYERS else "__init__"
                    rows.append((source, sub if unit != "__init__" else "nclab", [], line))
            else:
                rows.append((source, target, names, line))
    return rows


def _display_hooks(path: Path) -> set[tuple[str, int]]:
    """(module, line) of each import of DISPLAYS inside a method of DISPLAY_HOOKS."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            if (module, cls.name, method.name) in DISPLAY_HOOKS:
                found |= {(module, node.lineno) for node in ast.walk(method)
                          if isinstance(node, ast.ImportFrom) and node.module == DISPLAYS}
    return found


def _allowed(rows: list[tuple[str, str, list[str], int]],
             hooks: set[tuple[str, int]]) -> list[tuple[str, str, list[str], int]]:
    """``rows`` less the imports of DISPLAYS that sit in a listed ``plot`` method."""
    return [row for row in rows if not (row[1] == DISPLAYS and (row[0], row[3]) in hooks)]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), f"give these a layer: {sorted(units - set(LAYERS))}"


def _upward(rows: list[tuple[str, str, list[str], int]]) -> list[str]:
    found = []
    for source, target, _, line in rows:
        src_unit, dst_unit = _unit(source), _unit(target)
        if src_unit == dst_unit:
            continue
        if LAYERS[dst_unit] > LAYERS[src_unit]:
            found.append(f"{source}:{line} imports {target} (layer {LAYERS[dst_unit]} > "
                         f"{LAYERS[src_unit]})")
        if frozenset({src_unit, dst_unit}) in SIBLINGS:
            found.append(f"{source}:{line} imports its sibling {target}")
    return found


def _private(rows: list[tuple[str, str, list[str], int]]) -> list[str]:
    """Private names imported from another module (a module's own ``_x`` stays inside)."""
    return [f"{source}:{line} imports {target}.{name}"
            for source, target, names, line in rows
            for name in names if name.startswith("_") and target != source]


def _private_modules(rows: list[tuple[str, str, list[str], int]]) -> list[str]:
    """Imports of a ``_private`` module from outside its package (``nclab.ufm._base`` is
    for ``nclab.ufm`` and its modules; others use what ``nclab.ufm`` exports)."""
    found = []
    for source, target, _, line in rows:
        parts = target.split(".")
        for depth, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                package = ".".join(parts[:depth])
                if source != package and not source.startswith(package + "."):
                    found.append(f"{source}:{line} imports the private module {target}")
                break
    return found


def test_imports_go_down() -> None:
    hooks = set().union(*(_display_hooks(p) for p in PACKAGE.rglob("*.py")))
    upward = _upward(_allowed(_all_imports(), hooks))
    assert not upward, "\n".join(upward)


def test_each_display_hook_is_used_and_imports_only_the_displays() -> None:
    hooks = set().union(*(_display_hooks(p) for p in PACKAGE.rglob("*.py")))
    assert {module for module, _ in hooks} == {module for module, _, _ in DISPLAY_HOOKS}
    # the same import elsewhere in the module (or another module from a hook) stays upward
    rows = [("nclab.runs", DISPLAYS, ["HistoryDisplay"], 1),
            ("nclab.runs", "nclab.report.figures", ["PANELS"], 2)]
    assert len(_upward(_allowed(rows, {("nclab.runs", 2)}))) == 2
    assert len(_upward(_allowed(rows, {("nclab.runs", 1)}))) == 1


def test_no_private_names_across_modules() -> None:
    private = _private(_all_imports())
    assert not private, "\n".join(private)


def test_no_private_modules_across_packages() -> None:
    private = _private_modules(_all_imports())
    assert not private, "\n".join(private)


def test_the_checks_catch_what_they_forbid() -> None:
    rows = [("nclab.core.stats", "nclab.cli.app", ["main"], 1),
            ("nclab.train.trainer", "nclab.report.figures", ["Panel"], 2),
            ("nclab.cli.train", "nclab.cli.app", ["_fmt"], 3)]
    assert len(_upward(rows)) == 2
    assert _private(rows) == ["nclab.cli.train:3 imports nclab.cli.app._fmt"]
    modules = [("nclab.report.ufm", "nclab.ufm._base", ["UFMSolution"], 1),
               ("nclab.studies.kernel_sweep", "nclab.kernels._arrays", ["torch_threads"], 2),
               ("nclab.ufm.sphere", "nclab.ufm._base", ["check_sizes"], 3),
               ("nclab.ufm", "nclab.ufm._base", ["UFMSolution"], 4),
               ("nclab.cli", "nclab.__main__", [], 5)]
    assert _private_modules(modules) == [
        "nclab.report.ufm:1 imports the private module nclab.ufm._base",
        "nclab.studies.kernel_sweep:2 imports the private module nclab.kernels._arrays"]

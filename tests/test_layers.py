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
    "capture": 1, "data": 1, "models": 1, "runs": 1,
    "ufm": 1, "kernels": 1, "finegrained": 1,
    "train": 2, "report": 2,
    "studies": 3, "integrations": 3,
    "cli": 4,
    "__init__": 5, "__main__": 5,
}
#: Pairs on one layer that must stay independent of each other.
SIBLINGS = {frozenset({"train", "report"})}


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
    upward = _upward(_all_imports())
    assert not upward, "\n".join(upward)


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

"""Every python and console block of README.md and docs/*.md runs here, in page order,
and prints what the page shows (tests/docs_helpers.py says how); every docstring example
(``>>>``) of the package runs as a doctest."""

import ast
import doctest
import importlib
import importlib.util
import os
import pkgutil
from pathlib import Path

import pytest
from docs_helpers import (
    PAGES,
    ROOT,
    Block,
    compare_output,
    console_commands,
    page_blocks,
    run_command,
    run_python,
)
from torch_threads import one_thread  # noqa: F401  (two shared cores: no spin-waiting)

import nclab

pytestmark = pytest.mark.usefixtures("one_thread")
BLOCKS = [block for page in PAGES for block in page_blocks(page)]
#: page -> (namespace, folder): a page's blocks share them, in page order
PAGE_STATE: dict[str, tuple[dict, Path]] = {}
#: folders of the repository that console examples name by their relative path
LINKED = ("src", "benchmarks", "experiments", "Makefile", "pyproject.toml")


def page_state(page: str, factory) -> tuple[dict, Path]:
    if page not in PAGE_STATE:
        folder = factory.mktemp(Path(page).stem)
        for name in LINKED:
            (folder / name).symlink_to(ROOT / name)
        PAGE_STATE[page] = ({"__name__": "__main__"}, folder)
    return PAGE_STATE[page]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_documented_block_runs_and_prints_what_the_page_shows(block: Block, monkeypatch,
                                                             tmp_path_factory):
    if block.skipped:
        pytest.skip(f"{block.skipped} (its short twin runs: {block.page}, before line "
                    f"{block.line})")
    namespace, folder = page_state(block.page, tmp_path_factory)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("HOME", str(folder))  # "~/data" of the examples: the page's folder
    environment = dict(os.environ)  # an example may set a variable for its own process
    try:
        run_block(block, namespace)
    finally:
        os.environ.clear()
        os.environ.update(environment)


def run_block(block: Block, namespace: dict) -> None:
    if block.kind == "python":
        printed = run_python(block.source, namespace, f"{block.page}:{block.line}")
        if block.shown is not None:
            problem = compare_output(printed, block.shown)
            assert problem is None, problem
        return
    for command, shown in console_commands(block.source):
        code, printed = run_command(command)
        failing = shown.lstrip().startswith("error:")
        assert (code != 0) == failing, f"$ {command}\nexited {code}:\n{printed}"
        problem = compare_output(printed, shown)
        assert problem is None, f"$ {command}\n{problem}"


def test_every_page_has_blocks_and_each_skip_has_a_twin():
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/index.md",
                                                "docs/training.md"}
    for page in PAGES:
        blocks = [block for block in BLOCKS if block.page == page]
        for before, block in zip([None, *blocks], blocks, strict=False):
            if block.skipped:
                assert before is not None and before.twin, f"{block.name}: no twin"


# ------------------------------------------------------------------ doctests
def package_modules():
    found = [nclab.__name__]
    for info in pkgutil.walk_packages(nclab.__path__, "nclab."):
        if not info.name.endswith(".__main__"):  # importing it runs the command line
            found.append(info.name)
    return found


@pytest.mark.parametrize("module_name", package_modules())
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    tests = [test for test in doctest.DocTestFinder().find(module, module_name)
             if test.examples]
    if not tests:
        return
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


# ------------------------------------------------------------------ the names the pages use
def imported_names():
    """(module, name) of every ``from nclab... import name`` and ``nclab.name`` of the
    pages' python blocks."""
    found = set()
    for block in BLOCKS:
        if block.kind != "python":
            continue
        for node in ast.walk(ast.parse(block.source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nclab"):
                found |= {(node.module, alias.name) for alias in node.names}
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "nclab"):
                found.add(("nclab", node.attr))
    return sorted(found)


@pytest.mark.parametrize(("module_name", "name"), imported_names())
def test_pages_use_only_exported_names(module_name, name):
    """What a page imports is in its module's ``__all__``: the public surface, documented
    by the API reference."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__") and importlib.util.find_spec(f"{module_name}.{name}"):
        return  # a subpackage (``import nclab.ood``; ``nclab.ood.evaluate``)
    if not hasattr(module, "__all__"):
        pytest.fail(f"{module_name} has no __all__: which of its names are public?")
    assert name in module.__all__, f"{module_name}.__all__ lacks {name}"


# ------------------------------------------------------------------ the comparison itself
@pytest.mark.parametrize(("printed", "shown", "same"), [
    ("nc1 0.10005 acc 1", "nc1 0.1 acc 1", True),              # within the tolerance
    ("nc1 0.1010 acc 1", "nc1 0.1 acc 1", False),              # 1% off
    ("nc1 0.1 acc 1", "nc1 0.1 accuracy 1", False),            # another word
    ("gap 3.1e-17\n", "gap 6.9e-17", True),                    # numerical zeros
    ("trained 5 epochs in 3 s", "trained 5 epochs in 143 s", True),  # a time
    ("a long line that wraps\nat 80 columns 0.5", "a long line that wraps at 80 columns 0.5",
     True),
    ("warning: x\nrow 1 2\nrow 3 4\nend", "row 1 2\n...\nend", True),  # passed over
    ("row 3 4\nrow 1 2", "row 1 2\nrow 3 4", False),           # out of order
])
def test_printed_output_is_compared_word_by_word(printed, shown, same):
    assert (compare_output(printed, shown) is None) == same


def test_console_commands_join_continued_lines_and_keep_each_output():
    source = "$ nclab a \\\n    --b 1  # note\nout 1\n$ nclab c\nout 2\nout 3\n"
    assert console_commands(source) == [("nclab a  --b 1  # note", "out 1"),
                                        ("nclab c", "out 2\nout 3")]

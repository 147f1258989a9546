"""tools/check_types.py: how mypy's output is compared with the baseline (mypy itself is
not run here; `make test` runs the script)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "check_types.py"
_spec = importlib.util.spec_from_file_location("check_types", SCRIPT)
assert _spec is not None and _spec.loader is not None
check_types = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_types)

OUTPUT = """\
src/nclab/cli/run.py:12: error: Item "None" of "X | None" has no attribute "y"  [union-attr]
src/nclab/cli/run.py:40: error: Item "None" of "X | None" has no attribute "y"  [union-attr]
src/nclab/cli/run.py:41: note: See https://mypy.readthedocs.io
src/nclab/train/loop.py:7: error: Name "f" already defined on line 3  [no-redef]
"""


def test_errors_are_keyed_without_line_numbers():
    errors = check_types.errors_of(OUTPUT)
    assert check_types.counted(errors) == Counter({
        'src/nclab/cli/run.py: Item "None" of "X | None" has no attribute "y"  [union-attr]': 2,
        'src/nclab/train/loop.py: Name "f" already defined on line N  [no-redef]': 1,
    })
    moved = OUTPUT.replace(":12:", ":99:").replace("on line 3", "on line 5")
    assert check_types.counted(check_types.errors_of(moved)) == check_types.counted(errors)


def test_an_error_more_often_than_recorded_fails_and_fewer_passes():
    current = check_types.counted(check_types.errors_of(OUTPUT))
    fewer = current.copy()
    key = next(iter(current))
    fewer[key] -= 1
    failing, fixed = check_types.compare(current, fewer)
    assert failing == [key] and fixed == []
    failing, fixed = check_types.compare(fewer, current)
    assert failing == [] and fixed == [key]


def test_a_new_message_fails_even_in_a_file_with_recorded_errors():
    current = check_types.counted(check_types.errors_of(
        OUTPUT + 'src/nclab/train/loop.py:9: error: Missing return statement  [return]\n'))
    baseline = check_types.counted(check_types.errors_of(OUTPUT))
    assert check_types.compare(current, baseline)[0] == [
        "src/nclab/train/loop.py: Missing return statement  [return]"]


def test_strict_packages_fail_even_when_recorded():
    line = "src/nclab/capture/hooks.py:3: error: Bad  [misc]\n"
    current = check_types.counted(check_types.errors_of(line))
    assert check_types.compare(current, current)[0] == ["src/nclab/capture/hooks.py: Bad  [misc]"]


def test_the_checked_in_baseline_records_no_strict_package():
    recorded = check_types.read_baseline()
    assert recorded and not [key for key in recorded if key.startswith(check_types.STRICT)]

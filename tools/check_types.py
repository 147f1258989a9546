"""mypy over src/nclab against a baseline that may only shrink.

    python tools/check_types.py            # what `make test` runs
    python tools/check_types.py --update   # after fixing errors: drop them from the baseline

``core``, ``capture`` and ``integrations`` must have no error at all. Elsewhere each
error of mypy is compared, without its line number, with the recorded ones in
``tools/mypy-baseline.txt``: any error beyond those (a new message, or one message more
often in a file) fails. ``--update`` only removes the errors that are gone; a new error
is fixed, never recorded (edit the baseline by hand, in review, if one must stay).
mypy's settings are those of pyproject.toml; its cache is ``.mypy_cache``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "mypy-baseline.txt"
#: Packages held at zero errors: never recorded in the baseline.
STRICT = ("src/nclab/core/", "src/nclab/capture/", "src/nclab/integrations/")
ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+: error: (?P<message>.*)$")
UPDATE = "python tools/check_types.py --update"


def errors_of(output: str) -> dict[str, list[str]]:
    """mypy's error lines by key ``path: message  [code]``; numbers of lines inside
    messages ("defined on line 12") are blanked too, so that edits elsewhere in the file
    do not make an error look new."""
    errors: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = ERROR.match(line.strip())
        if match:
            message = re.sub(r"\bline \d+", "line N", match["message"])
            errors.setdefault(f"{match['path']}: {message}", []).append(line.strip())
    return errors


def counted(errors: dict[str, list[str]]) -> Counter[str]:
    return Counter({key: len(lines) for key, lines in errors.items()})


def compare(current: Counter[str], baseline: Counter[str]) -> tuple[list[str], list[str]]:
    """(failing, fixed): the keys of the errors in a strict package or beyond the
    baseline, and the recorded errors that are gone."""
    failing = {key for key in current if key.startswith(STRICT)}
    failing |= set(current - baseline)
    return sorted(failing), sorted((baseline - current).elements())


def run_mypy() -> dict[str, list[str]]:
    """mypy's errors over src/nclab (:func:`errors_of`); exits when mypy did not run."""
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-pretty", "--show-error-codes",
                             "--no-error-summary"], cwd=ROOT, capture_output=True, text=True)
    errors = errors_of(result.stdout)
    if result.returncode != (1 if errors else 0):
        sys.exit(f"mypy did not run (exit {result.returncode}):\n{result.stderr}{result.stdout}"
                 "(is it installed? pip install -e '.[test]')")
    return errors


def read_baseline() -> Counter[str]:
    lines = BASELINE.read_text(encoding="utf-8").splitlines() if BASELINE.exists() else []
    return Counter(line for line in lines if line and not line.startswith("#"))


def write_baseline(errors: Counter[str]) -> None:
    header = "# mypy errors allowed outside core/capture/integrations: only ever fewer.\n"
    body = "".join(f"{error}\n" for error in sorted(errors.elements()))
    BASELINE.write_text(header + body, encoding="utf-8")


def main(argv: list[str]) -> int:
    errors, baseline = run_mypy(), read_baseline()
    current = counted(errors)
    failing, fixed = compare(current, baseline)
    if failing:
        for key in failing:
            allowed = 0 if key.startswith(STRICT) else baseline[key]
            print("\n".join(errors[key]) + (f"  (recorded: {allowed})" if allowed else ""))
        print(f"mypy: errors beyond the baseline ({len(failing)} kinds above), and none is "
              "allowed in core, capture or integrations: fix them")
        return 1
    if "--update" in argv:
        write_baseline(current)
        print(f"baseline: {sum(baseline.values())} -> {sum(current.values())} errors")
    elif fixed:
        print(f"mypy: {len(fixed)} recorded error(s) fixed; shrink the baseline: {UPDATE}")
    print(f"mypy: {sum(current.values())} error(s), none beyond the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

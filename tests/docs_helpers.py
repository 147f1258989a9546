"""Run a page's example as it stands in docs/ and read the output the page shows."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def documented(page, heading):
    """The first python block of ``docs/page`` after ``heading``, and the first text block
    after that one (the output the page shows)."""
    text = (DOCS / page).read_text()
    section = text[text.index(heading):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    output = re.search(r"```text\n(.*?)```", section[code.end():], re.S)
    return code.group(1), output.group(1)


def run_documented(page, heading):
    """Execute the example; return its namespace (what it defined)."""
    code, _ = documented(page, heading)
    namespace = {}
    exec(compile(code, str(DOCS / page), "exec"), namespace)
    return namespace


def numbers(text):
    """Every number of ``text``, in order."""
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]

"""The examples of README.md and docs/*.md as tests: read the blocks, run them, compare.

A page is read with sybil's Markdown lexers (fenced blocks, HTML-comment directives)
into :class:`Block` objects in page order:

- a ``python`` block runs in the page's namespace (shared by the page's blocks, in
  order); a ``console`` or ``bash`` block (or an unlabelled one whose lines start with
  ``$``) runs each command: ``nclab ...`` in this process, ``python ...`` and other
  programs as subprocesses;
- the output the page shows is the next fenced block before the next heading when it is
  a ``text`` block or an unlabelled one without ``$``, or, in a console block, the
  lines after each command; what is printed must hold those lines in that order, with
  the same words and the same numbers within :data:`REL_TOL` (timings and sizes, which
  differ between machines, are left out: :data:`VOLATILE`), wherever its lines break.
  A line ``...`` stands for lines the page leaves out. A command whose shown output
  begins with ``error:`` must fail.

Directives, in HTML comments that no renderer shows:

- ``<!-- invisible-code-block: python ... -->`` (sybil's spelling): code run before the
  next block, which defines what a fragment assumes (``features``, ``loader``, ...);
- ``<!-- docs-test: long "REASON" ... -->``: the next block is skipped with REASON and
  the directive's body, a short twin of it (python code or ``$`` commands), runs
  instead;
- ``<!-- docs-test: not-run "REASON" ... -->``: the same for a block that cannot run
  in a test at all (it starts a server, it is the test suite itself); its twin checks
  what can be checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The pages whose every block runs (docs/notes/ holds measured investigations, not
#: examples to copy).
PAGES = ("README.md", *sorted(f"docs/{path.name}" for path in DOCS.glob("*.md")))
#: Relative tolerance on each number the page shows.
REL_TOL = 2e-3
#: Magnitudes below this are numerical zeros (1e-17 on one machine, 3e-17 on another).
ZERO = 1e-9
#: Numbers that differ from run to run or machine to machine: times, rates, sizes,
#: load averages, versions.
VOLATILE = re.compile(
    r"-?\d[\d,.]*(?:e[-+]?\d+)?\s*(?:s\b|ms\b|it/s|GFLOP/s|MiB|MB|GB|%\))"
    r"|load average [\d.]+|torch \S+|numpy \S+|\bin \d+ s\b"
)
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")
HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)


@dataclass
class Block:
    """One example of a page: what runs, what it should print, or why it does not run."""

    page: str
    line: int
    kind: str  # "python" or "console"
    source: str
    shown: str | None = None  # the output the page shows after a python block
    skipped: str | None = None  # the reason, for a long or unrunnable block
    twin: bool = False  # the short twin of a skipped block

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}" + (":twin" if self.twin else "")


def page_blocks(page: str) -> list[Block]:
    """Every block of ``page`` (relative to the repository) in page order, twins and
    invisible set-up code included; output blocks are attached to their examples."""
    # imported here: the helpers below serve tests that run without the docs' extra
    from sybil import Document
    from sybil.parsers.markdown.lexers import (
        DirectiveInHTMLCommentLexer,
        RawFencedCodeBlockLexer,
    )

    fences = RawFencedCodeBlockLexer(
        info_pattern=re.compile(r"(?P<language>[\w-]*)[^\n]*$\n", re.MULTILINE))
    directives = DirectiveInHTMLCommentLexer(directive=r"docs-test|invisible-code-block")
    text = (ROOT / page).read_text()
    document = Document(text, str(ROOT / page))
    regions = sorted([*fences(document), *directives(document)], key=lambda r: r.start)
    blocks: list[Block] = []
    pending_skip: str | None = None
    for index, region in enumerate(regions):
        line = text.count("\n", 0, region.start) + 1
        source = str(region.lexemes["source"])
        if "directive" in region.lexemes:
            directive, argument = region.lexemes["directive"], region.lexemes["arguments"]
            if directive == "invisible-code-block":
                blocks.append(Block(page, line, "python", source))
            else:
                pending_skip = _skip_reason(argument, page, line)
                twin_kind = "console" if source.lstrip().startswith("$") else "python"
                blocks.append(Block(page, line, twin_kind, source, twin=True))
            continue
        kind = _kind(region.lexemes["language"], source)
        if kind is None:
            continue
        block = Block(page, line, kind, source, skipped=pending_skip)
        pending_skip = None
        if kind == "python" and index + 1 < len(regions):
            block.shown = _output_after(text, region, regions[index + 1])
        blocks.append(block)
    return blocks


def _skip_reason(argument: str, page: str, line: int) -> str:
    match = re.fullmatch(r'(long|not-run)\s+"([^"]+)"\s*', argument)
    if match is None:
        raise ValueError(f'{page}:{line}: write <!-- docs-test: long "REASON" (or not-run) '
                         f"then the twin's code -->; got {argument!r}")
    return f"{match.group(1)}: {match.group(2)}"


def _kind(language: str, source: str) -> str | None:
    if language == "python":
        return "python"
    if language in ("console", "bash", "sh", "shell"):
        return "console"
    if language == "" and source.lstrip().startswith("$ "):
        return "console"
    return None  # output, a file listing, a synopsis, JSON


def _output_after(text: str, region, following) -> str | None:
    """The source of ``following`` when it is the output shown for ``region``."""
    if "language" not in following.lexemes or following.lexemes["language"] not in ("text", ""):
        return None
    between = text[region.end:following.start]
    source = str(following.lexemes["source"])
    if HEADING.search(between) or source.lstrip().startswith("$ "):
        return None
    return source


# ------------------------------------------------------------------ comparing output
def compare_output(printed: str, shown: str) -> str | None:
    """None when ``printed`` holds the lines of ``shown`` in order, else what is missing.

    Lines are compared as runs of words, wherever the printed lines break (a console
    of another width wraps a paragraph elsewhere); a ``...`` line of ``shown`` stands for
    any lines, and printed lines the page does not show (warnings, progress) are passed
    over.
    """
    words = tokens(printed)
    position = 0
    for expected in shown.splitlines():
        wanted = tokens(expected)
        if not wanted or expected.strip() == "...":
            continue
        found = next((i for i in range(position, len(words) - len(wanted) + 1)
                      if all(same_word(words[i + k], w) for k, w in enumerate(wanted))), None)
        if found is None:
            rest = " ".join(words[position:])
            return (f"the page shows\n    {expected.strip()}\nbut what was printed after "
                    f"the lines matched so far does not hold it:\n{printed}\n(from: {rest[:300]})")
        position = found + len(wanted)
    return None


def tokens(text: str) -> list[str]:
    """The words of ``text``, times and sizes replaced by ``#``, rules of table borders
    shortened to one character."""
    text = VOLATILE.sub("#", text)
    text = re.sub(r"([─━═┄-])\1+", r"\1", text)
    return text.split()


def same_word(printed: str, shown: str) -> bool:
    """The same word, numbers equal within REL_TOL (numerical zeros equal)."""
    if NUMBER.sub("0", printed) != NUMBER.sub("0", shown):
        return False
    return all(close(a, b) for a, b in zip(numbers(printed), numbers(shown), strict=True))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b)) or max(abs(a), abs(b)) < ZERO


def numbers(text):
    """Every number of ``text``, in order."""
    return [float(v.replace(",", "")) for v in NUMBER.findall(text)]


# ------------------------------------------------------------------ running
def run_python(source: str, namespace: dict, filename: str) -> str:
    """Execute ``source`` in ``namespace``; return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, filename, "exec"), namespace)
    return out.getvalue()


def console_commands(source: str) -> list[tuple[str, str]]:
    """(command, the output the page shows after it) for each ``$`` line (or each line
    of a block without prompts); ``\\`` continues a command on the next line."""
    commands: list[tuple[str, list[str]]] = []
    prompts = any(line.startswith("$ ") for line in source.splitlines())
    continued = False
    for line in source.splitlines():
        if continued:
            commands[-1] = (commands[-1][0] + " " + line.strip().rstrip("\\"), commands[-1][1])
        elif line.startswith("$ ") or (not prompts and line.strip()
                                        and not line.lstrip().startswith("#")):
            commands.append((line.removeprefix("$ ").strip().rstrip("\\"), []))
        elif commands:
            commands[-1][1].append(line)
        continued = line.rstrip().endswith("\\")
    return [(command, "\n".join(shown)) for command, shown in commands]


def run_command(command: str) -> tuple[int, str]:
    """Run one console command in the current folder: (exit code, what it printed).

    ``nclab ARGS`` runs in this process (no second start of Python and torch);
    ``[VAR=value ...] program ARGS`` as a subprocess, ``python`` being this interpreter,
    with ``src/`` importable.
    """
    words = shlex.split(command, comments=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    assigned = False
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = str(ROOT / value) if name == "PYTHONPATH" else value
        assigned = True
    if words[0] == "nclab" and not assigned:
        return run_cli_here(words[1:])
    if words[0] == "python":
        words = [sys.executable, *words[1:]]
    elif (Path(sys.executable).parent / words[0]).exists():  # a program of this venv
        words = [str(Path(sys.executable).parent / words[0]), *words[1:]]
    done = subprocess.run(words, capture_output=True, text=True, env=env, timeout=600)
    return done.returncode, done.stdout + done.stderr


def run_cli_here(args: list[str]) -> tuple[int, str]:
    """``nclab ARGS`` in this process: (exit code, stdout and stderr)."""
    from nclab.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(args)
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code if isinstance(exit_info.code, int) else 0
    return code, out.getvalue()


# ------------------------------------------------------------------ one heading's example
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

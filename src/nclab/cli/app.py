"""The typer boards the sub-commands register on, the consoles and the printing helpers.

A command module registers with ``@app.command("name")`` (or ``@regress_app.command``
for ``nclab regress name``) and is listed in ``nclab.cli.COMMANDS``, which imports it
only when the command runs.
"""

import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nclab.core.io import write_json

app = typer.Typer(name="nclab", add_completion=False, pretty_exceptions_enable=False)
regress_app = typer.Typer(name="regress", add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one message, one line


class OptionValueError(Exception):
    """A bad option value found while typer parses the command line: one ``error:`` line.

    Not a ValueError, so that typer passes it on instead of wrapping it in a usage box.
    """


def refuse_empty_paths(command: Any, args: Sequence[str]) -> None:
    """Raise OptionValueError when ``args`` give an empty value to a path option of
    ``command``: ``Path('')`` is the current folder, so ``--out ''`` would silently write
    there and ``--json ''`` fail on the folder."""
    try:
        hints = typing.get_type_hints(getattr(command, "callback", None) or (lambda: None))
    except (NameError, TypeError):  # unresolvable annotations: nothing to check
        return
    for param in getattr(command, "params", ()):
        if not _is_path(hints.get(param.name)):
            continue
        names = [*param.opts, *param.secondary_opts]
        # each word with the one after it (None after the last; nothing for no words)
        for word, following in zip(args, [*args[1:], None], strict=False):
            if (word in names and following == "") or word in {f"{n}=" for n in names}:
                raise OptionValueError(f"{names[0]} is empty: give a file or folder name")


def _is_path(hint: Any) -> bool:
    return hint is Path or Path in typing.get_args(hint)


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def short(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits with short exponents (1.6e-15, 2e-9): fits 80 columns."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}".replace("e-0", "e-").replace("e+0", "e+")


def value_table(title: str, rows: Iterable[tuple[str, float | None]], *, fmt: str = ".6g",
                missing: str = "n/a", header: bool = True) -> Table:
    """A two-column (name, value) table; ``missing`` stands for a value that is None."""
    table = Table(title=title, show_header=header)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, missing if value is None else format(value, fmt))
    return table


def show_result(table: Table, result: Any, file: Path, json_out: Path | None) -> None:
    """Print a metrics table and the result's warnings; write it as JSON if asked."""
    console.print(table)
    for note in result.warnings:
        warn(note)
    if json_out is not None:
        write_json(json_out, {"file": str(file), **result.to_dict()})
        console.print(f"wrote {json_out}")

"""The ``nclab`` command line. Each sub-command lives in a module of this package."""

from __future__ import annotations

import sys

from nclab.cli import demo, report, train  # noqa: F401  (register train, report, compare, demo)
from nclab.cli import finegrained as _finegrained  # noqa: F401  (registers the command)
from nclab.cli import measure as _measure  # noqa: F401  (registers the command)
from nclab.cli import regress as _regress  # noqa: F401  (registers the command)
from nclab.cli.app import app, err_console
from nclab.errors import NCInputError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: one-line errors, no traceback soup."""
    try:
        app(args=argv, prog_name="nclab")
    except NCInputError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

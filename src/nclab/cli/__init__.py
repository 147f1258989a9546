"""The ``nclab`` command line. Each sub-command lives in a module of this package."""

from __future__ import annotations

import sys

# importing a command module registers its command(s) on ``app``
from nclab.cli import (  # noqa: F401
    demo,
    finegrained,
    kernel,
    measure,
    normcompare,
    regress,
    regress_train,
    report,
    train,
    ufm,
)
from nclab.cli.app import app, err_console
from nclab.core.errors import NCInputError

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

"""The typer application every sub-command registers on."""

import typer
from rich.console import Console

app = typer.Typer(
    name="nclab",
    help="Measure, reproduce and explain Neural Collapse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one message, one line


@app.callback()
def _root() -> None:
    """Measure, reproduce and explain Neural Collapse."""

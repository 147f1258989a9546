"""The ``nclab`` command line: a thin dispatcher that imports a command only to run it.

``COMMANDS`` names every sub-command, the module that defines it and its one-line help;
``nclab --help`` lists them without importing any (so it costs little more than
starting Python and torch). A module registers its command(s) on the typer boards of
:mod:`nclab.cli.app` (``app``, or ``regress_app`` for ``nclab regress ...``).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup, TyperOption

from nclab.cli.app import OptionValueError, err_console, refuse_empty_paths, warn
from nclab.core.errors import Interrupted, NCInputError

__all__ = ["COMMANDS", "DEPRECATED", "main", "root_group"]

#: name -> (module, one-line help), or name -> (help, {sub-command: (module, help)}).
COMMANDS: dict[str, Any] = {
    "measure": ("nclab.cli.measure", "Every Neural Collapse metric of a feature file."),
    "ood": ("nclab.cli.ood", "OOD detection (NECO, NCI, baselines) of feature files."),
    "transfer": ("nclab.cli.transfer", "Few-shot NCC error and CDNV on novel classes."),
    "train": ("nclab.cli.train", "Train a network into the terminal phase."),
    "demo": ("nclab.cli.demo", "Neural collapse on MNIST-1D in a few minutes."),
    "report": ("nclab.cli.report", "Report (HTML, figures) of one training run."),
    "compare": ("nclab.cli.report", "Overlay the collapse curves of several runs."),
    "profile": ("nclab.cli.profile", "Collapse layer by layer of a trained run."),
    "normcompare": ("nclab.cli.normcompare", "Normalized features against weight decay."),
    "finegrained": ("nclab.cli.finegrained", "Recover fine labels from coarse training."),
    "ufm": ("nclab.cli.ufm", "Unconstrained features models from random starts."),
    "kernel": ("nclab.cli.kernel", "Kernel NC1 (NNGP, NTK, adaptive) on Gaussian data."),
    "regress": ("Regression collapse: NRC1-NRC3, the UFM, imitation data.", {
        "ufm": ("nclab.cli.regress", "Regression UFM: gradient descent vs closed form."),
        "data": ("nclab.cli.regress", "Make a regression data set offline (.npz)."),
        "measure": ("nclab.cli.regress", "NRC metrics of a feature file."),
        "train": ("nclab.cli.regress_train", "Train the paper's MLP with MSE, log NRC."),
        "sweep": ("nclab.cli.regress_train", "One run per weight decay; NRC against epoch."),
    }),
}

#: Old spellings accepted for one release, with a warning: command path -> old -> new.
DEPRECATED: dict[tuple[str, ...], dict[str, str]] = {
    ("train",): {"--run-dir": "--out"},
    ("demo",): {"--run-dir": "--out"},
    ("ufm",): {"-K": "--classes", "-d": "--dim", "-n": "--per-class"},
    ("normcompare",): {"--tau": "--taus", "--weight-decay": "--weight-decays"},
    ("regress", "ufm"): {"--n": "--target-dim", "--d": "--dim", "--m": "--samples"},
    ("regress", "data"): {"--n": "--target-dim"},
    ("regress", "train"): {"--n": "--target-dim", "--run-dir": "--out"},
    ("regress", "sweep"): {"--n": "--target-dim"},
}


class LazyGroup(TyperGroup):
    """A command group whose commands are imported when one of them runs.

    Help listings and command-name suggestions use placeholders that carry only the
    name and the one-line help.
    """

    def __init__(self, name: str, help: str, entries: dict[str, Any], board: str) -> None:
        self.entries, self.board = entries, board
        placeholders = {key: TyperCommand(name=key, short_help=_short(value))
                        for key, value in entries.items()}
        super().__init__(name=name, help=help, commands=placeholders, no_args_is_help=True)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.entries)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, _, rest = super().resolve_command(ctx, args)
        command = self.load(name)
        refuse_empty_paths(command, rest)
        if command is not None:  # click makes (and keeps) a command's --help when asked
            polish(command.get_help_option(ctx))
        return name, command, rest

    def get_help_option(self, ctx: Any) -> Any:
        return polish(super().get_help_option(ctx))

    def load(self, name: str | None) -> Any:
        """The real command ``name`` (a nested group for ``regress``)."""
        entry = self.entries.get(name) if name else None
        if entry is None:
            return None
        first, second = entry
        if isinstance(second, dict):
            return LazyGroup(name, first, second, f"{name}_app")
        importlib.import_module(first)
        board = getattr(importlib.import_module("nclab.cli.app"), self.board)
        command = typer.main.get_group(board).commands[name]
        command.short_help = second
        return polish(command)


def _short(entry: Any) -> str:
    first, second = entry
    return first if isinstance(second, dict) else second


def version() -> str:
    """The installed version of nclab."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("nclab")
    except PackageNotFoundError:  # run from a source tree that pip has not installed
        return "(not installed)"


#: The metavar of an option by the type typer reads it as (our own parsers set theirs).
METAVARS = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "Path": "PATH",
            "list[str]": "TEXT", "list[Path]": "PATH"}


def polish(command: Any) -> Any:
    """``command`` with the help look of every nclab option, through click's public
    attributes (``metavar``, ``help``, ``show_default``):

    - a flag shows no type (typer would print ``<bool>`` after it, as if it took one);
    - every value has an upper-case metavar (INTEGER, NUMBER, TEXT, PATH, LIST, ...);
    - a default given as text (``show_default="every epoch"``) is shown as typer shows a
      default value, ``[default: every epoch]``, where typer would add parentheses.
    """
    params = getattr(command, "params", [command])
    for param in params:
        if not isinstance(param, TyperOption):
            continue
        if param.is_flag:
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = METAVARS.get(param.bare_type(), "TEXT")
        if isinstance(param.show_default, str):
            shown = escape(f"[default: {param.show_default}]")
            param.help = f"{param.help or ''} [dim]{shown}[/dim]".strip()
            param.show_default = False
    return command


def _print_version(value: bool) -> None:
    if value:
        print(f"nclab {version()}")
        raise typer.Exit(0)


def root_options() -> list[Any]:
    """The options of ``nclab`` itself (``--version``), as typer makes them."""
    board = typer.Typer(add_completion=False)

    @board.callback()
    def options(show: bool = typer.Option(False, "--version", is_eager=True,
                                          callback=_print_version,
                                          help="Print the version of nclab and exit.")
                ) -> None:
        """nclab's own options."""

    return [polish(param) for param in typer.main.get_group(board).params]


def root_group() -> LazyGroup:
    """The ``nclab`` group, with every command registered lazily, and ``--version``."""
    group = LazyGroup("nclab", "Measure, reproduce and explain Neural Collapse.", COMMANDS,
                      "app")
    group.params.extend(root_options())
    return group


def translate_deprecated(argv: list[str]) -> list[str]:
    """``argv`` with the old spellings of ``DEPRECATED`` replaced, each with a warning."""
    path = tuple(word for word in argv[:2] if not word.startswith("-"))
    table = DEPRECATED.get(path[:2]) or DEPRECATED.get(path[:1]) or {}
    out = []
    for word in argv:
        name, sep, value = word.partition("=")
        if name in table:
            warn(f"{name} is deprecated and will be removed: use {table[name]}")
            word = table[name] + sep + value
        out.append(word)
    return out


def _one_line_warning(message: Any, category: Any, *_: Any, **__: Any) -> None:
    warn(str(message))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: one-line errors, no traceback soup."""
    args = translate_deprecated(list(sys.argv[1:] if argv is None else argv))
    warnings.showwarning = _one_line_warning
    _escape_unprintable_output()
    try:
        code = root_group().main(args=args, prog_name="nclab", standalone_mode=False)
    except (NCInputError, OptionValueError) as exc:
        _error(str(exc))
    except typer.TyperException as exc:
        _error(exc.format_message(), exc.exit_code)
    except Interrupted as exc:  # a run stopped by a signal: how to resume it
        err_console.print(escape(str(exc)), highlight=False)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file-system fault that no check foresaw: still one line
        _error(_os_error_line(exc))
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _escape_unprintable_output() -> None:
    """Print what the terminal cannot encode (a file name that is not UTF-8, on a UTF-8
    terminal) escaped, ``\\udce9``, rather than fail with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _os_error_line(exc: OSError) -> str:
    from nclab.core.io import shown  # here: the help screens do not import numpy

    cause = exc.strerror or type(exc).__name__
    return f"{shown(exc.filename)}: {cause}" if exc.filename is not None else cause


def _error(message: str, code: int = 2) -> None:
    # escaped: a message is text, and rich would take 'nclab[tensorboard]' for markup
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}",
                      highlight=False)
    sys.exit(code)

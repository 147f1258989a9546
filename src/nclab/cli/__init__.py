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
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from nclab.cli.app import OptionValueError, err_console, warn
from nclab.core.errors import Interrupted, NCInputError

__all__ = ["COMMANDS", "DEPRECATED", "main", "root_group"]

#: name -> (module, one-line help), or name -> (help, {sub-command: (module, help)}).
COMMANDS: dict[str, Any] = {
    "measure": ("nclab.cli.measure", "Every Neural Collapse metric of a feature file."),
    "ood": ("nclab.cli.ood", "OOD detection (NECO, NCI, baselines) of feature files."),
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
        return name, self.load(name), rest

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
        return command


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


def _flag_aware_type(self: TyperOption, ctx: Any) -> str | None:
    # typer 0.29 prints "<bool>" after a flag, which reads as if the flag took a value
    return None if self.is_flag else _typer_display_type(self, ctx)


def _plain_default(self: Any, *, ctx: Any, show_default_is_str: bool, default_value: Any) -> str:
    # typer 0.29 prints a default given as text in parentheses: "[default: (350)]"
    if show_default_is_str:
        return str(self.show_default)
    return _typer_default_string(self, ctx=ctx, show_default_is_str=False,
                                 default_value=default_value)


_typer_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_aware_type  # type: ignore[method-assign]
_typer_default_string = TyperOption._get_default_string
for _kind in (TyperOption, TyperArgument):
    _kind._get_default_string = _plain_default  # type: ignore[method-assign]


def root_group() -> LazyGroup:
    """The ``nclab`` group, with every command registered lazily."""
    return LazyGroup("nclab", "Measure, reproduce and explain Neural Collapse. "
                     "nclab --version prints the version.", COMMANDS, "app")


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
    if args[:1] == ["--version"]:
        print(f"nclab {version()}")
        sys.exit(0)
    warnings.showwarning = _one_line_warning
    try:
        code = root_group().main(args=args, prog_name="nclab", standalone_mode=False)
    except (NCInputError, OptionValueError) as exc:
        _error(str(exc))
    except typer.TyperException as exc:
        _error(exc.format_message(), exc.exit_code)
    except Interrupted as exc:  # a run stopped by a signal: how to resume it
        err_console.print(escape(str(exc)), highlight=False)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str, code: int = 2) -> None:
    # escaped: a message is text, and rich would take 'nclab[tensorboard]' for markup
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}",
                      highlight=False)
    sys.exit(code)

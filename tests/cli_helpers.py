"""Running the nclab command line inside a test."""

import pytest

from nclab.cli import main


def run_cli(args, capsys):
    """Run ``nclab ARGS``; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err

"""Atomic writes, strict JSON, and one-line errors for file-system faults."""

import errno
import json
import math
import os
import stat

import numpy as np
import pytest

from nclab.core.errors import first_line
from nclab.core.io import FileWriteError, make_dirs, remove_dirs, write_atomic, write_json


def test_first_line_quotes_the_cause_of_an_error_in_one_line():
    assert first_line(ValueError("  bad header\n  at byte 12\n")) == "bad header"
    assert first_line(KeyError()) == "KeyError"  # no message: the type's name
    assert first_line(OSError("")) == "OSError"


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json(path, {"nc1": 0.5})
    write_json(path, {"nc1": 0.25})
    assert path.read_text().strip().startswith("{") and "0.25" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    modes = [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.txt", "b.txt")]
    assert modes == [0o644, 0o644]



def test_json_holds_null_for_nan_and_inf_at_any_depth(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (np.float32(2),
                                                                                   np.nan)})
    text = path.read_text()
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.0, None]}
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_keeps_the_old_file_and_names_the_path_and_cause(tmp_path, monkeypatch,
                                                                        code):
    path = tmp_path / "result.json"
    write_json(path, {"nc1": 0.5})

    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(FileWriteError) as info:
        write_json(path, {"nc1": 0.25})
    assert str(info.value) == f"{path}: cannot write ({os.strerror(code)})"
    assert json.loads(path.read_text()) == {"nc1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left


def test_make_dirs_returns_what_it_made_and_remove_dirs_undoes_it(tmp_path):
    made = make_dirs(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert make_dirs(tmp_path / "a" / "b") == []
    remove_dirs(made)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileWriteError, match="f is a file, not a folder"):
        make_dirs(tmp_path / "f" / "g")

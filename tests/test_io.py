"""Atomic writes."""

import os
import stat

from nclab.core.io import write_atomic, write_json


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


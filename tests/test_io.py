"""Atomic writes, strict JSON, and one-line errors for file-system faults."""

import errno
import json
import math
import os
import socket
import stat
import struct
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import nclab.core.io
from nclab.core.errors import NCInputError, first_line
from nclab.core.io import (
    FileWriteError,
    load_npz,
    make_dirs,
    remove_dirs,
    shown,
    write_atomic,
    write_json,
)


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


# --- what is at the path: only regular files are replaced ---------------------------------


@pytest.fixture
def renames_only_under_tmp(tmp_path, monkeypatch):
    """A write that would rename over a path outside tmp_path (over /dev/null, should the
    code regress) fails the test instead of replacing that path."""
    real = os.replace

    def guarded(src, dst, *args, **kwargs):
        assert Path(os.path.realpath(dst)).is_relative_to(tmp_path), f"renames over {dst}"
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guarded)


@pytest.mark.usefixtures("renames_only_under_tmp")
def test_a_character_device_is_written_through_not_replaced(tmp_path):
    before = os.stat("/dev/null")
    write_json("/dev/null", {"nc1": 0.5})
    write_atomic(Path("/dev/null"), b"x" * 10)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino


def test_a_named_pipe_is_written_through_to_its_reader(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_json(fifo, {"nc1": 0.25})
    reader.join(timeout=10)
    assert json.loads(received[0]) == {"nc1": 0.25}
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.usefixtures("renames_only_under_tmp")
def test_a_link_stays_a_link_and_its_target_is_written(tmp_path):
    to_null = tmp_path / "null.json"
    to_null.symlink_to("/dev/null")
    write_json(to_null, {"nc1": 1.0})
    assert to_null.is_symlink() and os.readlink(to_null) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "result.json"
    target.write_text("old")
    link = tmp_path / "result.json"
    link.symlink_to(target)
    write_json(link, {"nc1": 2.0})
    assert link.is_symlink() and json.loads(target.read_text()) == {"nc1": 2.0}
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_a_folder_or_a_socket_at_the_path_is_refused_in_one_line(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileWriteError) as info:
        write_json(tmp_path / "folder", {})
    assert str(info.value) == f"{tmp_path / 'folder'}: cannot write (a folder, not a file)"
    assert (tmp_path / "folder").is_dir() and not list((tmp_path / "folder").iterdir())
    with tempfile.TemporaryDirectory(dir="/tmp") as short:  # AF_UNIX paths are short
        path = Path(short) / "s"
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(path))
            with pytest.raises(FileWriteError, match=r"s: cannot write \(a socket, not a file\)"):
                write_atomic(path, "x")
            assert stat.S_ISSOCK(path.lstat().st_mode)
        finally:
            server.close()


# --- names the file system refuses, names that are not UTF-8 -------------------------------


def test_a_name_too_long_is_one_line_everywhere(tmp_path):
    long = tmp_path / ("a" * 300)
    for call, doing in ((lambda: write_json(long / "r.json", {}), "cannot write"),
                        (lambda: write_json(tmp_path / ("b" * 300 + ".json"), {}),
                         "cannot write"),
                        (lambda: make_dirs(long / "run"), "cannot create the folder"),
                        (lambda: load_npz(tmp_path / ("c" * 300 + ".npz")), "cannot read")):
        with pytest.raises(NCInputError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and message.endswith(f"{doing} (File name too long)")
    assert list(tmp_path.iterdir()) == []


def test_names_that_are_not_utf8_are_shown_escaped(tmp_path):
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    assert shown(folder / "x.npz").endswith("caf\\xe9/x.npz")
    assert shown("line\nbreak") == "line\\nbreak"
    with pytest.raises(NCInputError) as info:
        load_npz(folder / "x.npz")
    message = str(info.value)
    assert message.endswith("caf\\xe9/x.npz: no such file")
    message.encode("ascii")  # printable anywhere
    write_atomic(folder / "page.html", f"<h1>{folder}</h1>")  # the text holds the name too
    assert (folder / "page.html").read_bytes().endswith(b"caf\\udce9</h1>")


# --- bounded decompression of .npz ----------------------------------------------------------


def npz_member(path, name, header: bytes, body: bytes = b"", compress=zipfile.ZIP_DEFLATED):
    """A .npz of one member: the .npy magic, version 1.0, ``header`` padded, ``body``."""
    padded = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(padded)) + padded + body
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr(f"{name}.npy", data)


def test_a_small_npz_that_would_become_a_huge_array_is_refused_before_decompressing(
        tmp_path, monkeypatch):
    monkeypatch.setattr(nclab.core.io, "FREE_EXPANSION", 2**20)  # a bomb of test size
    path = tmp_path / "bomb.npz"
    count = 4 * 2**20  # booleans: 4 MiB stored, 32 MiB as float64, a few KiB compressed
    npz_member(path, "features", f"{{'descr': '|b1', 'fortran_order': False, 'shape': "
                                 f"({count},), }}".encode(), bytes(count))
    assert path.stat().st_size < 10_000

    def never(*args, **kwargs):
        raise AssertionError("decompressed")

    monkeypatch.setattr(np, "load", never)
    with pytest.raises(NCInputError) as info:
        load_npz(path)
    message = str(info.value)
    assert "\n" not in message and "array 'features'" in message
    assert f"shape ({count},) of bool, {count:,} bytes" in message
    assert f"would take {8 * count:,} bytes" in message and "decompression bomb" in message
    monkeypatch.undo()
    monkeypatch.setattr(nclab.core.io, "FREE_EXPANSION", 2**20)
    features = np.random.default_rng(0).normal(size=(2000, 64))  # 1 MiB, barely compressible
    np.savez_compressed(tmp_path / "real.npz", features=features)
    assert np.array_equal(load_npz(tmp_path / "real.npz")["features"], features)
    np.savez(tmp_path / "stored.npz", features=np.zeros(count, bool))  # stored: file-sized
    assert load_npz(tmp_path / "stored.npz")["features"].shape == (count,)


@pytest.mark.parametrize("header", [
    b"{'descr': '<f8, 'fortran_order': False, 'shape': (2,), }",  # unterminated literal
    b"{'descr': '<f8', 'fortran_order': False, 'shape': " + b"(" * 300 + b"2,)",
    b"{'descr': '<f8', 'fortran_order': False}",  # no shape
])
def test_a_damaged_npy_header_is_one_line(tmp_path, header):
    path = tmp_path / "d.npz"
    npz_member(path, "x", header, bytes(16))
    with pytest.raises(NCInputError, match=r"not a readable .npz file \(array 'x' has a "
                                           "damaged .npy header") as info:
        load_npz(path)
    assert "\n" not in str(info.value)

"""Atomic writes: a reader sees the old file or the whole new one; nothing is left behind."""

import os
import stat

import pytest

from kdkeras import _io


def test_atomic_write_cleans_up_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old!TFL3")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write_bytes(target, b"new!TFL3 data")
    assert target.read_bytes() == b"old!TFL3"
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_atomic_path_keeps_the_suffix_and_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "model.keras"
    with _io.atomic_path(target) as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == target.parent and not target.exists()
        tmp.write_bytes(b"zip")
    assert target.read_bytes() == b"zip"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert os.listdir(target.parent) == ["model.keras"]


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "report.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with _io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["report.png"]


def test_atomic_replace_dir_swaps_whole_folders(tmp_path):
    out, new = tmp_path / "android", tmp_path / ".new"
    out.mkdir()
    (out / "old.txt").write_text("old")
    new.mkdir()
    (new / "model.json").write_text("{}")
    _io.atomic_replace_dir(new, out)
    assert sorted(os.listdir(out)) == ["model.json"] and sorted(os.listdir(tmp_path)) == ["android"]

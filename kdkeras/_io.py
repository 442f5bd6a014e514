"""Atomic file writes: readers see the old file or the complete new one, never a partial file.

Every artifact kdkeras writes (``.tflite`` files, logit caches, saved models, reports, plots,
bundles) goes through this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> str:
    """Writes ``data`` to ``path`` through a temporary file in the same directory + ``os.replace``.

    The file gets mode 0644 (``mkstemp`` would leave it private); on any failure the temporary
    file is removed and an existing ``path`` is left untouched.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return os.fspath(path)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (``model.save``,
    ``savefig``); renamed over ``path`` (mode 0644) when the block succeeds, removed otherwise.

    The temporary name keeps ``path``'s suffix, since Keras and matplotlib choose the format
    from it.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                    suffix=f".tmp{path.suffix}")
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(e.errno, f"Cannot write {str(path)!r}: {e.strerror}. Choose a writable "
                               "folder.") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_replace_dir(tmp_dir: PathLike, out_dir: PathLike) -> None:
    """Moves the finished directory ``tmp_dir`` to ``out_dir``, replacing an old one whole."""
    tmp_dir, out_dir = os.fspath(tmp_dir), os.fspath(out_dir)
    if not os.path.exists(out_dir):
        os.replace(tmp_dir, out_dir)
        return
    backup = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out_dir)), prefix=".old-")
    os.rmdir(backup)
    os.replace(out_dir, backup)
    try:
        os.replace(tmp_dir, out_dir)
    except BaseException:
        os.replace(backup, out_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out_dir: PathLike, tag: str = "tmp") -> Iterator[Path]:
    """A temporary folder beside ``out_dir`` to fill (mode 0755, hidden name
    ``.{name}.{tag}-*``); it replaces ``out_dir`` whole (:func:`atomic_replace_dir`) when the
    block succeeds and is removed otherwise (an exception or Ctrl-C leaves nothing).

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "bundle")
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("done")
    >>> os.listdir(target)
    ['a.txt']
    """
    out_dir = Path(out_dir)
    parent = out_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out_dir.name}.{tag}-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is as readable as the rest
    try:
        yield tmp
        atomic_replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

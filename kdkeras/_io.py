"""Atomic file writes: readers see the old file or the complete new one, never a partial file."""

from __future__ import annotations

import os
import tempfile
from typing import Union

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> str:
    """Writes ``data`` to ``path`` through a temporary file in the same directory + ``os.replace``.

    The file gets mode 0644 (``mkstemp`` would leave it private); on any failure the temporary
    file is removed and an existing ``path`` is left untouched.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path

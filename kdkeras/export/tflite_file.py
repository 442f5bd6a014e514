"""Is this a ``.tflite`` file? The cheap check every reader of a file makes first."""

from __future__ import annotations

import os
from typing import Union

__all__ = ["TFLITE_IDENTIFIER", "check_tflite_file"]

TFLITE_IDENTIFIER = b"TFL3"

PathLike = Union[str, "os.PathLike[str]"]


def check_tflite_file(path: PathLike) -> str:
    """Checks that ``path`` is a TFLite flatbuffer ("TFL3" at bytes 4..8) and returns it.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the path, when it is not a TFLite file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"TFLite file not found. Received: path={path!r}. Export one first with "
            "kdkeras.export_tflite(model, path) or `kdkeras export`."
        )
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise ValueError(f"Not a TFLite file: it holds {len(head)} byte(s). Received: "
                         f"path={path!r}. Export it again (kdkeras.export_tflite).")
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(
            f"Not a TFLite file: bytes 4..8 are {head[4:8]!r}, expected {TFLITE_IDENTIFIER!r}. "
            f"Received: path={path!r}. Pass a .tflite file written by the TFLite converter "
            "(kdkeras.export_tflite)."
        )
    return path

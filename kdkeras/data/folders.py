"""Data sets laid out as folders: ``<root>/<class>/<files>`` or ``<root>/train/<class>/...`` plus
``<root>/test/<class>/...``, holding images (read with Pillow) or ``.txt`` files (one example
per file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from kdkeras.data.dataset import SplitData
from kdkeras.data.splits import finish

logger = logging.getLogger("kdkeras.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEXT_EXTENSIONS = (".txt",)
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _class_files(folder: Path) -> List[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / n for n in sorted(filenames) if not n.startswith(".")]
    return files


def _scan_classes(root: Path, source: str) -> Dict[str, Dict[str, List[Path]]]:
    """``{class_name: {"images": [...], "text": [...]}}`` for the class folders of ``root``."""
    out: Dict[str, Dict[str, List[Path]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        found: Dict[str, List[Path]] = {"images": [], "text": []}
        ignored = []
        for f in _class_files(folder):
            ext = f.suffix.lower()
            if ext in IMAGE_EXTENSIONS:
                found["images"].append(f)
            elif ext in TEXT_EXTENSIONS:
                found["text"].append(f)
            else:
                ignored.append(f.name)
        if not found["images"] and not found["text"]:
            raise ValueError(
                f"Class folder {str(folder)!r} has no usable files (images: "
                f"{' '.join(IMAGE_EXTENSIONS)}; text: .txt); it holds {ignored[:5] or 'nothing'}. "
                f"Received: source={source!r}. Add examples or remove the folder."
            )
        if ignored:
            logger.warning(
                "Ignored %d file(s) of unsupported type in %s: %s", len(ignored), folder,
                ", ".join(ignored[:5]),
            )
        out[folder.name] = found
    return out


def _read_image(path: Path, size: Tuple[int, int], color_mode: str) -> np.ndarray:
    from PIL import Image

    mode, _ = COLOR_MODES[color_mode]
    try:
        with Image.open(path) as im:
            im = im.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ValueError(
            f"Could not read image {str(path)!r} ({type(e).__name__}: {e}). Remove or replace "
            "the file."
        ) from e
    return x[..., None] if x.ndim == 2 else x


def _read_text(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def load_directory(
    root: Path, source: str, test_fraction: float, seed: int, image_size: Tuple[int, int],
    color_mode: str, sequence_length: int, max_tokens: int,
) -> SplitData:
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if "train" in subdirs and "test" in subdirs:
        others = [d for d in subdirs if d not in ("train", "test")]
        if others:
            raise ValueError(
                f"The directory has train/ and test/ and also {others}. Use either train/ and "
                "test/ (each with one folder per class) or one folder per class. Received: "
                f"source={source!r}."
            )
        splits = {"train": _scan_classes(root / "train", source),
                  "test": _scan_classes(root / "test", source)}
        unknown = sorted(set(splits["test"]) - set(splits["train"]))
        if unknown:
            raise ValueError(
                f"test/ has class folders {unknown} that train/ lacks; the model could not learn "
                f"them. Received: source={source!r}."
            )
    else:
        splits = {"all": _scan_classes(root, source)}
    names = sorted({c for classes in splits.values() for c in classes})
    if len(names) < 2:
        raise ValueError(
            f"A classification data set needs at least 2 classes (one folder each); found "
            f"{len(names)} ({names}). Received: source={source!r}. Lay out files as "
            "<root>/<class>/<file> or <root>/train/<class>/<file> + <root>/test/<class>/<file>."
        )
    kinds = sorted({k for classes in splits.values() for found in classes.values()
                    for k, files in found.items() if files})
    if len(kinds) != 1:
        raise ValueError(
            "The class folders mix images and .txt files; a data set is either images "
            f"({' '.join(IMAGE_EXTENSIONS)}) or text (.txt). Received: source={source!r}."
        )
    kind = kinds[0]
    lookup = {c: i for i, c in enumerate(names)}
    examples: Dict[str, list] = {}
    labels: Dict[str, list] = {}
    for split, classes in splits.items():
        xs, ys = [], []
        for cls, found in classes.items():
            for path in found[kind]:
                if kind == "images":
                    xs.append(_read_image(path, image_size, color_mode))
                else:
                    xs.append(_read_text(path))
                ys.append(lookup[cls])
        examples[split] = np.stack(xs) if kind == "images" else xs
        labels[split] = ys
    return finish(
        examples, labels, kind, source, test_fraction, seed, sequence_length, max_tokens,
        class_names=names, normalization={"mean": 0.0, "std": 255.0},  # pixels / 255
    )

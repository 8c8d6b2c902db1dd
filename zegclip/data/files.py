"""Reading the files of a dataset: RGB images, single-channel index masks and class-name lists.

Each reader returns plain numpy arrays (or a list) and raises FileNotFoundError / ValueError naming the file, so
that a bad dataset is reported by the path to fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .classes import read_text_file

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_label", "read_class_names"]

PathLike = str | os.PathLike
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@contextlib.contextmanager
def _open_image(path: PathLike, kind: str, errors: tuple[type[BaseException], ...]) -> Iterator[Image.Image]:
    """The loaded image at ``path``, open for the block: FileNotFoundError ``"{kind} file not found: {path}"`` if
    it is not a file, and ValueError ``"cannot read {kind} {path}: ..."`` for any of ``errors`` raised while opening
    or inside the block."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            yield im
    except errors as e:
        raise ValueError(f"cannot read {kind} {path}: {e}") from None


def read_image(path: PathLike) -> np.ndarray:
    """An RGB image as a (H, W, 3) uint8 array; FileNotFoundError / ValueError naming the file."""
    with _open_image(path, "image", (UnidentifiedImageError, OSError, SyntaxError, ValueError)) as im:
        rgb = im.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def read_label(path: PathLike) -> np.ndarray:
    """A single-channel index mask as a (H, W) int64 array of the raw stored values.

    Palette PNGs (VOC ``SegmentationClass``) are read as their indices, not their colours.
    """
    path = Path(path)
    # ValueError is not among the errors wrapped here: the mode check below raises it with its own message.
    with _open_image(path, "label", (UnidentifiedImageError, OSError, SyntaxError)) as im:
        mode = im.mode
        if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"):
            raise ValueError(
                f"label {path} is a {mode} image; expected a single-channel index mask (palette or grey PNG"
                " with class ids; convert VOC colour targets with voc_color_to_index)"
            )
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise ValueError(f"label {path} has shape {arr.shape}; expected a single-channel (H, W) mask")
    return arr.astype(np.int64)


def read_class_names(path: PathLike) -> list[str]:
    """Class names, one per line (surrounding whitespace stripped; a trailing empty line is allowed).

    Empty names (blank lines in the middle) and duplicates raise ValueError naming the file.
    """
    path = Path(path)
    text = read_text_file(
        path,
        missing=FileNotFoundError(f"class-name file not found: {path}"),
        unreadable=f"cannot read class-name file {path}",
    )
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise ValueError(f"class-name file {path} lists no classes")
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(f"class-name file {path}: empty class name on line(s) {empty}")
    seen: dict[str, int] = {}
    dups = []
    for i, n in enumerate(names):
        if n in seen:
            dups.append(f"{n!r} (lines {seen[n] + 1} and {i + 1})")
        else:
            seen[n] = i
    if dups:
        raise ValueError(f"class-name file {path}: duplicate class names {', '.join(dups)}")
    return names

"""Find a dataset's folder whatever level of its download the user names.

Users pass ``VOCdevkit``, ``VOCdevkit/VOC2012`` or the folder above ``VOCdevkit``; SBD's ``benchmark_RELEASE``, its
``dataset`` folder or the folder above. :func:`find_root` tries a fixed list of sub-folders and returns the first that
holds a marker folder (``JPEGImages``, ``cls``); the named wrappers are the ones the builders
(:mod:`zegclip.data.datasets`) and converters (:mod:`zegclip.data.prepare`) use. Errors are one line naming every
place looked in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_root", "voc2012_root", "voc2010_root", "sbd_root"]


def find_root(
    path: str | os.PathLike, what: str, marker: str, candidates: Sequence[str], marker_what: str = "folder"
) -> Path:
    """The first of ``path / c`` for ``c`` in ``candidates`` (``"."`` = ``path`` itself) that holds the folder
    ``marker``. FileNotFoundError: ``"<what> folder not found: <path>"`` when ``path`` does not exist, else
    ``"<what> <marker_what> not found: no <marker>/ in <every candidate>"``."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{what} folder not found: {root}")
    places = [root / c for c in candidates]
    for cand in places:
        if (cand / marker).is_dir():
            return cand
    listed = ", ".join(str(p) for p in places[:-1]) + (" or " if len(places) > 1 else "") + str(places[-1])
    raise FileNotFoundError(f"{what} {marker_what} not found: no {marker}/ in {listed}")


def voc2012_root(path: str | os.PathLike) -> Path:
    """``VOC2012`` (holding ``JPEGImages``) from itself, ``VOCdevkit`` or the folder above ``VOCdevkit``."""
    return find_root(path, "VOC2012", "JPEGImages", (".", "VOC2012", "VOCdevkit/VOC2012"), "image folder")


def voc2010_root(path: str | os.PathLike) -> Path:
    """``VOC2010`` (PASCAL Context's images) from itself, ``VOCdevkit`` or the folder above ``VOCdevkit``."""
    candidates = (".", "VOC2010", "VOCdevkit/VOC2010")
    return find_root(path, "PASCAL Context (VOC2010)", "JPEGImages", candidates, "image folder")


def sbd_root(path: str | os.PathLike) -> Path:
    """SBD's ``dataset`` folder (holding ``cls/*.mat``) from itself, ``benchmark_RELEASE`` or the folder above."""
    return find_root(path, "SBD", "cls", (".", "dataset", "benchmark_RELEASE/dataset"), "class-label folder")

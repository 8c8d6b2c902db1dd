"""PASCAL Context: per-image ``.mat`` files (``LabelMap``, 459-class ids) -> ``VOC2010/SegmentationClassContext/*.png``
(0 = background/other, 1..59) and ``VOC2010/ImageSets/SegmentationContext/{train,val}.txt``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...io import read_id_list, write_id_list
from ..classes import load_class_split
from ..roots import voc2010_root
from .common import _mat_field, _run, _verify_pngs, _write_png

__all__ = ["prepare_context", "CONTEXT_459_IDS", "context59_lut"]

PathLike = str | os.PathLike

# Ids of the 59 PASCAL-Context classes in the 459-class list (labels.txt of the PASCAL-Context release, 1-based;
# 0 = unlabeled). The same id set is mmseg's ``_mapping`` in tools/convert_datasets/pascal_context.py (there
# sorted ascending, so class k of the alphabetical 59-class list gets value k+1) and the Detail API's
# ``eval_orders``. Every other id (and 0) becomes 0 = background, as in the Detail-API masks mmseg converts.
CONTEXT_459_IDS = {
    "aeroplane": 2, "bag": 9, "bed": 18, "bedclothes": 19, "bench": 22, "bicycle": 23, "bird": 25, "boat": 31,
    "book": 33, "bottle": 34, "building": 44, "bus": 45, "cabinet": 46, "car": 59, "cat": 65, "ceiling": 68,
    "chair": 72, "cloth": 80, "computer": 85, "cow": 98, "cup": 104, "curtain": 105, "dog": 113, "door": 115,
    "fence": 144, "floor": 158, "flower": 159, "food": 162, "grass": 187, "ground": 189, "horse": 207,
    "keyboard": 220, "light": 232, "motorbike": 258, "mountain": 259, "mouse": 260, "person": 284, "plate": 295,
    "platform": 296, "pottedplant": 308, "road": 324, "rock": 326, "sheep": 347, "shelves": 349, "sidewalk": 354,
    "sign": 355, "sky": 360, "snow": 366, "sofa": 368, "table": 397, "track": 415, "train": 416, "tree": 420,
    "truck": 424, "tvmonitor": 427, "wall": 440, "water": 445, "window": 454, "wood": 458,
}  # fmt: skip
_CONTEXT_MAX_ID = 459


def context59_lut() -> np.ndarray:
    """Lookup table over 459-class ids 0..459 -> Context-60 values (0 background/other, 1..59 in the packaged
    ``context60`` class order)."""
    classes = load_class_split("context60").classes
    lut = np.zeros(_CONTEXT_MAX_ID + 1, dtype=np.uint8)
    for value, name in enumerate(classes):
        if value == 0:
            continue
        lut[CONTEXT_459_IDS[name]] = value
    return lut


_CONTEXT_LUT: np.ndarray | None = None


def _convert_context_mat(task: tuple[str, str]) -> tuple[str, str | None]:
    from scipy.io import loadmat

    global _CONTEXT_LUT
    if _CONTEXT_LUT is None:
        _CONTEXT_LUT = context59_lut()

    src, dst = task
    try:
        label = _mat_field(loadmat(src), "LabelMap")
        if label.ndim != 2:
            raise ValueError(f"LabelMap has shape {label.shape}, expected (H, W)")
        label = label.astype(np.int64)
        if label.size and (label.min() < 0 or label.max() > _CONTEXT_MAX_ID):
            raise ValueError(f"LabelMap values {int(label.min())}..{int(label.max())} outside 0..{_CONTEXT_MAX_ID}")
        _write_png(_CONTEXT_LUT[label], Path(dst))
        return dst, None
    except Exception as e:  # noqa: BLE001
        return dst, f"cannot convert {src}: {e}"


def _context_splits(
    base: Path, json_path: PathLike | None, split_files: Mapping[str, PathLike] | None
) -> tuple[dict[str, list[str]], str]:
    if split_files is not None:
        out = {}
        for split in ("train", "val"):
            if split not in split_files:
                raise ValueError(f"split_files must name a 'train' and a 'val' list, got {sorted(split_files)}")
            out[split] = read_id_list(Path(split_files[split]))
        return out, "split_files"
    if json_path is not None:
        import json

        path = Path(json_path)
        if not path.is_file():
            raise FileNotFoundError(f"annotation JSON not found: {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
        out = {"train": [], "val": []}
        for img in data.get("images", []):
            phase = img.get("phase")
            if phase in out:
                out[phase].append(Path(img["file_name"]).stem)
        if not out["train"] and not out["val"]:
            raise ValueError(f"{path}: no images with phase 'train' or 'val'")
        return {k: sorted(set(v)) for k, v in out.items()}, str(path)
    main = base / "ImageSets" / "Main"
    return {split: read_id_list(main / f"{split}.txt") for split in ("train", "val")}, str(main)


def prepare_context(
    context_dir: PathLike,
    voc2010_dir: PathLike,
    *,
    json_path: PathLike | None = None,
    split_files: Mapping[str, PathLike] | None = None,
    progress: bool = True,
    num_workers: int = 0,
) -> dict[str, Any]:
    """PASCAL-Context ``.mat`` labels -> mmseg's Context layout inside ``VOCdevkit/VOC2010``.

    Args:
        context_dir: the extracted PASCAL-Context ``trainval.tar.gz`` (a ``trainval/`` folder of ``<id>.mat`` files
            with a ``LabelMap`` of 459-class ids; the folder itself is accepted too).
        voc2010_dir: ``VOCdevkit/VOC2010`` from ``VOCtrainval_03-May-2010.tar`` (``VOCdevkit`` accepted).
        json_path: ``trainval_merged.json`` (Detail API); its images' ``phase`` gives the train/val lists.
        split_files: ``{"train": path, "val": path}`` id lists (e.g. mmseg's generated lists), used first.

    Without ``split_files`` or ``json_path`` the lists are ``VOC2010/ImageSets/Main/{train,val}.txt`` restricted
    to the ids that have a ``.mat`` (4,998 / 5,105 images; mmseg's Detail-API lists have 4,996 / 5,104).
    Values: 0 = background (every class outside the 59, and unlabeled), 1..59 = the 59 classes in alphabetical
    order (the packaged ``context60`` order). Context-59 later ignores 0 via ``reduce_zero_label``.
    """
    ctx = Path(context_dir)
    if not ctx.exists():
        raise FileNotFoundError(f"PASCAL-Context folder not found: {ctx}")
    mat_dir = ctx / "trainval" if (ctx / "trainval").is_dir() else ctx
    mats = {p.stem: p for p in mat_dir.glob("*.mat")}
    if not mats:
        raise FileNotFoundError(f"no .mat label files in {mat_dir}")
    base = voc2010_root(voc2010_dir)

    splits, split_source = _context_splits(base, json_path, split_files)
    problems: list[str] = []
    lists: dict[str, list[str]] = {}
    for split, ids in splits.items():
        present = [i for i in ids if i in mats]
        missing = [i for i in ids if i not in mats]
        if missing:
            problems.append(f"{len(missing)} {split} ids have no .mat label in {mat_dir} (first: {missing[:5]})")
        lists[split] = sorted(present)

    out_dir = base / "SegmentationClassContext"
    wanted = sorted(set(lists["train"]) | set(lists["val"]))
    tasks = [(str(mats[i]), str(out_dir / f"{i}.png")) for i in wanted]
    results = _run(_convert_context_mat, tasks, "Context .mat -> png", progress, num_workers)
    problems += [err for _, err in results if err]
    list_dir = base / "ImageSets" / "SegmentationContext"
    for split, ids in lists.items():
        write_id_list(list_dir / f"{split}.txt", ids)

    # ---- verification
    for i in wanted:
        if not (base / "JPEGImages" / f"{i}.jpg").is_file():
            problems.append(f"image not found: {base / 'JPEGImages' / f'{i}.jpg'}")
    written = [out_dir / f"{i}.png" for i in wanted if (out_dir / f"{i}.png").is_file()]
    if len(written) != len(wanted):
        problems.append(f"{len(wanted) - len(written)} labels were not written to {out_dir}")
    values, bad = _verify_pngs(written, set(range(60)), "SegmentationClassContext", progress, num_workers)
    problems += bad
    return {
        "dataset": "context",
        "out_root": str(base),
        "split_source": split_source,
        "mat_files": len(mats),
        "train": len(lists["train"]),
        "val": len(lists["val"]),
        "labels": len(written),
        "label_values": values,
        "problems": problems,
        "ok": not problems,
    }

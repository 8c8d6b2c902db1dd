"""COCO-Stuff 164k: ``stuffthingmaps_trainval2017`` (ids 0..181, 255 unlabeled) ->
``annotations/{train2017,val2017}/*_labelTrainIds.png`` (0..170, 255)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..classes import load_class_split
from .common import _distinct_values, _link_or_copy, _run, _verify_pngs, _write_png

__all__ = ["prepare_coco_stuff", "COCO_STUFF_UNUSED_IDS", "COCO_STUFF_USED_IDS", "coco_stuff_lut"]

PathLike = str | os.PathLike

# COCO-Stuff's 182 label ids (0-based, as stored in stuffthingmaps_trainval2017 PNGs: 0..90 things, 91..181
# stuff) of which 171 are used. The 11 unused thing ids and their names are those of the COCO-Stuff label list
# (github.com/nightrome/cocostuff, labels.txt: 1-based ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91), i.e. the
# keys missing from mmseg's ``clsID_to_trID`` in tools/convert_datasets/coco_stuff164k.py. The used ids, in
# ascending order, are the 171 classes of the packaged "coco" split in order (mmseg's labelTrainIds).
COCO_STUFF_UNUSED_IDS = {
    11: "street sign",
    25: "hat",
    28: "shoe",
    29: "eye glasses",
    44: "plate",
    65: "mirror",
    67: "window",
    68: "desk",
    70: "door",
    82: "blender",
    90: "hair brush",
}
COCO_STUFF_USED_IDS = tuple(i for i in range(182) if i not in COCO_STUFF_UNUSED_IDS)


def coco_stuff_lut() -> np.ndarray:
    """256-entry lookup table: stuffthingmaps id -> labelTrainId (0..170); unused ids and 255 -> 255."""
    classes = load_class_split("coco").classes
    if len(classes) != len(COCO_STUFF_USED_IDS):
        raise RuntimeError(f"the coco class list has {len(classes)} names, expected {len(COCO_STUFF_USED_IDS)}")
    lut = np.full(256, 255, dtype=np.uint8)
    for train_id, raw_id in enumerate(COCO_STUFF_USED_IDS):
        lut[raw_id] = train_id
    return lut


_COCO_LUT: np.ndarray | None = None


def _convert_coco_mask(task: tuple[str, str]) -> tuple[str, tuple[int, ...] | None, str | None]:
    global _COCO_LUT
    if _COCO_LUT is None:
        _COCO_LUT = coco_stuff_lut()
    src, dst = task
    try:
        with Image.open(src) as im:
            arr = np.asarray(im)
        if arr.ndim != 2:
            raise ValueError(f"expected a single-channel mask, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(f"values {int(arr.min())}..{int(arr.max())} outside 0..255")
            arr = arr.astype(np.uint8)
        raw = _distinct_values(arr)
        _write_png(_COCO_LUT[arr], Path(dst))
        return dst, raw, None
    except Exception as e:  # noqa: BLE001
        return dst, None, f"cannot convert {src}: {e}"


def prepare_coco_stuff(
    coco_dir: PathLike,
    out_dir: PathLike | None = None,
    *,
    splits: Sequence[str] = ("train2017", "val2017"),
    progress: bool = True,
    num_workers: int = 0,
) -> dict[str, Any]:
    """COCO-Stuff 164k -> ``*_labelTrainIds.png`` (as mmseg's ``coco_stuff164k.py``, unused ids -> 255).

    ``coco_dir`` holds ``images/{train2017,val2017}/*.jpg`` and the extracted ``stuffthingmaps_trainval2017.zip``
    either as ``annotations/{train2017,val2017}/*.png`` (mmseg's instructions) or as
    ``stuffthingmaps_trainval2017/{train2017,val2017}/*.png``. Output goes to
    ``(out_dir or coco_dir)/annotations/<split>/<id>_labelTrainIds.png``.
    """
    coco = Path(coco_dir)
    if not coco.exists():
        raise FileNotFoundError(f"COCO-Stuff folder not found: {coco}")
    out = coco if out_dir is None else Path(out_dir)
    if out.resolve() != coco.resolve() and (coco / "images").is_dir():
        _link_or_copy(coco / "images", out / "images")
    problems: list[str] = []
    summary: dict[str, Any] = {"dataset": "coco", "out_root": str(out), "splits": {}}
    raw_values: set[int] = set()
    for split in splits:
        src_dir = coco / "annotations" / split
        sources = sorted(p for p in src_dir.glob("*.png") if not p.name.endswith("_labelTrainIds.png")) if src_dir.is_dir() else []
        if not sources:
            alt = coco / "stuffthingmaps_trainval2017" / split
            if alt.is_dir():
                src_dir = alt
                sources = sorted(alt.glob("*.png"))
        if not sources:
            raise FileNotFoundError(f"no stuffthingmaps PNGs found in {coco / 'annotations' / split}")
        dst_dir = out / "annotations" / split
        tasks = [(str(p), str(dst_dir / f"{p.stem}_labelTrainIds.png")) for p in sources]
        results = _run(_convert_coco_mask, tasks, f"COCO-Stuff {split}", progress, num_workers)
        for _, raw, err in results:
            if err:
                problems.append(err)
            else:
                raw_values.update(raw)
        # ---- verification
        written = sorted(dst_dir.glob("*_labelTrainIds.png"))
        values, bad = _verify_pngs(written, set(range(171)) | {255}, f"{split} labels", progress, num_workers)
        problems += bad
        img_dir = out / "images" / split
        images = sorted(img_dir.glob("*.jpg")) if img_dir.is_dir() else []
        label_stems = {p.name[: -len("_labelTrainIds.png")] for p in written}
        no_label = [p for p in images if p.stem not in label_stems]
        problems += [f"image without label: {p}" for p in no_label[:100]]
        if len(no_label) > 100:
            problems.append(f"... and {len(no_label) - 100} more images without labels in {img_dir}")
        if not images:
            problems.append(f"no images found in {img_dir}")
        summary["splits"][split] = {
            "sources": len(sources),
            "labels": len(written),
            "images": len(images),
            "label_values": [int(v) for v in values],
        }
    unmapped = sorted(v for v in raw_values if v in COCO_STUFF_UNUSED_IDS or 181 < v < 255)
    summary["unmapped_raw_values"] = unmapped
    summary["problems"] = problems
    summary["ok"] = not problems
    return summary

"""PASCAL VOC 2012 + SBD (``benchmark_RELEASE``) -> ``SegmentationClassAug/*.png`` and
``ImageSets/Segmentation/{aug,trainaug}.txt`` (mmseg's VOC-aug layout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...io import read_id_list, write_id_list
from ..roots import sbd_root, voc2012_root
from .common import _link_or_copy, _mat_field, _run, _verify_pngs, _write_png

__all__ = ["prepare_voc", "VOC_AUG_TRAIN_LEN"]

PathLike = str | os.PathLike

# mmseg's converter asserts (VOC train ∪ SBD train ∪ SBD val) − VOC val has this many ids (its trainaug.txt).
VOC_AUG_TRAIN_LEN = 10582


def _convert_sbd_mat(task: tuple[str, str]) -> tuple[str, str | None]:
    from scipy.io import loadmat

    src, dst = task
    try:
        mat = loadmat(src)
        seg = _mat_field(mat, "GTcls", "Segmentation")
        if seg.ndim != 2:
            raise ValueError(f"GTcls.Segmentation has shape {seg.shape}, expected (H, W)")
        if seg.size and (seg.min() < 0 or seg.max() > 255):
            raise ValueError(f"GTcls.Segmentation values {int(seg.min())}..{int(seg.max())} do not fit in uint8")
        _write_png(seg.astype(np.uint8), Path(dst))
        return dst, None
    except Exception as e:  # noqa: BLE001 - collected and reported
        return dst, f"cannot convert {src}: {e}"


def _convert_voc_png(task: tuple[str, str]) -> tuple[str, str | None]:
    src, dst = task
    try:
        with Image.open(src) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"expected a palette or grey PNG, got mode {im.mode}")
            arr = np.asarray(im)
        _write_png(arr, Path(dst))
        return dst, None
    except Exception as e:  # noqa: BLE001
        return dst, f"cannot convert {src}: {e}"


def prepare_voc(
    voc_dir: PathLike,
    sbd_dir: PathLike,
    out_root: PathLike | None = None,
    *,
    progress: bool = True,
    num_workers: int = 0,
) -> dict[str, Any]:
    """PASCAL VOC 2012 + SBD -> mmseg's VOC-aug layout (as ``tools/convert_datasets/voc_aug.py`` does).

    Args:
        voc_dir: the extracted ``VOCtrainval_11-May-2012.tar`` (``VOCdevkit/VOC2012``; ``VOCdevkit`` is accepted).
        sbd_dir: the extracted SBD ``benchmark.tgz`` (``benchmark_RELEASE``, holding ``dataset/cls/*.mat``,
            ``dataset/train.txt`` and ``dataset/val.txt``).
        out_root: where to write (default: ``voc_dir`` itself). A different folder gets links to ``JPEGImages`` and
            ``SegmentationClass`` and copies of ``train.txt``/``val.txt`` so that it is a complete VOC root.

    Writes ``SegmentationClassAug/<id>.png`` (raw indices 0..20, from ``GTcls.Segmentation`` of every SBD
    ``.mat``; VOC train/val ids that SBD lacks get their ``SegmentationClass`` PNG as a grey index PNG) and, in
    ``ImageSets/Segmentation``:

    * ``aug.txt`` = (SBD train ∪ SBD val) − (VOC train ∪ VOC val): 9,118 ids with the full data. mmseg's training
      set is ``train.txt`` + ``aug.txt`` (10,582 distinct ids), exactly mmseg's converter.
    * ``trainaug.txt`` = (VOC train ∪ SBD train ∪ SBD val) − VOC val: 10,582 ids (the classic "train_aug" list).
    """
    voc = voc2012_root(voc_dir)
    sbd = sbd_root(sbd_dir)
    out = voc if out_root is None else Path(out_root)
    seg_lists = voc / "ImageSets" / "Segmentation"
    voc_train = read_id_list(seg_lists / "train.txt")
    voc_val = read_id_list(seg_lists / "val.txt")
    sbd_ids = read_id_list(sbd / "train.txt") + read_id_list(sbd / "val.txt")

    if out.resolve() != voc.resolve():
        for sub in ("JPEGImages", "SegmentationClass"):
            if (voc / sub).exists():
                _link_or_copy(voc / sub, out / sub)
        for name in ("train.txt", "val.txt"):
            write_id_list(out / "ImageSets" / "Segmentation" / name, voc_train if name == "train.txt" else voc_val)

    aug_dir = out / "SegmentationClassAug"
    aug_dir.mkdir(parents=True, exist_ok=True)
    mats = sorted((sbd / "cls").glob("*.mat"))
    if not mats:
        raise FileNotFoundError(f"no SBD .mat files in {sbd / 'cls'}")
    mat_ids = {m.stem for m in mats}
    problems: list[str] = []

    results = _run(
        _convert_sbd_mat, [(str(m), str(aug_dir / f"{m.stem}.png")) for m in mats], "SBD .mat -> png", progress, num_workers
    )
    problems += [err for _, err in results if err]

    voc_only = sorted((set(voc_train) | set(voc_val)) - mat_ids)
    voc_tasks, missing = [], []
    for i in voc_only:
        src = voc / "SegmentationClass" / f"{i}.png"
        if src.is_file():
            voc_tasks.append((str(src), str(aug_dir / f"{i}.png")))
        else:
            missing.append(f"VOC label not found: {src}")
    problems += missing
    results = _run(_convert_voc_png, voc_tasks, "VOC png -> index png", progress, num_workers)
    problems += [err for _, err in results if err]

    sbd_set, train_set, val_set = set(sbd_ids), set(voc_train), set(voc_val)
    aug = sorted(sbd_set - train_set - val_set)
    trainaug = sorted((train_set | sbd_set) - val_set)
    write_id_list(out / "ImageSets" / "Segmentation" / "aug.txt", aug)
    write_id_list(out / "ImageSets" / "Segmentation" / "trainaug.txt", trainaug)

    # ---- verification
    for i in sorted(set(aug) | set(voc_train) | set(voc_val)):
        if not (out / "JPEGImages" / f"{i}.jpg").is_file():
            problems.append(f"image not found: {out / 'JPEGImages' / f'{i}.jpg'}")
    for i in trainaug:
        if not (aug_dir / f"{i}.png").is_file():
            problems.append(f"label not found: {aug_dir / f'{i}.png'}")
    written = sorted(aug_dir.glob("*.png"))
    values, bad = _verify_pngs(written, set(range(21)) | {255}, "SegmentationClassAug", progress, num_workers)
    problems += bad
    return {
        "dataset": "voc",
        "out_root": str(out),
        "sbd_masks": len(mats),
        "voc_only_masks": len(voc_tasks),
        "segmentation_class_aug": len(written),
        "train": len(voc_train),
        "val": len(voc_val),
        "aug": len(aug),
        "trainaug": len(trainaug),
        "train_plus_aug": len(set(voc_train) | set(aug)),
        "expected_trainaug": VOC_AUG_TRAIN_LEN,
        "matches_official_count": len(trainaug) == VOC_AUG_TRAIN_LEN,
        "label_values": values,
        "problems": problems,
        "ok": not problems,
    }

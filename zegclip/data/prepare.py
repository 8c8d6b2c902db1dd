"""Turn the official downloads into the mmseg layouts read by :mod:`zegclip.data.datasets`.

* :func:`prepare_voc` -- VOC2012 tar + SBD (``benchmark_RELEASE``) -> ``SegmentationClassAug/*.png`` and
  ``ImageSets/Segmentation/{aug,trainaug}.txt``.
* :func:`prepare_coco_stuff` -- ``stuffthingmaps_trainval2017`` (ids 0..181, 255 unlabeled) ->
  ``annotations/{train2017,val2017}/*_labelTrainIds.png`` (0..170, 255).
* :func:`prepare_context` -- PASCAL-Context per-image ``.mat`` files (``LabelMap``, 459-class ids) ->
  ``VOC2010/SegmentationClassContext/*.png`` (0 = background/other, 1..59) and
  ``VOC2010/ImageSets/SegmentationContext/{train,val}.txt``.

Each writes every file atomically (temporary file + rename, so an interrupted run never leaves a truncated PNG),
shows a tqdm progress bar, and ends with a verification pass (file counts, label value ranges) whose summary
dict it returns (``summary["ok"]`` is False when a problem was found; ``summary["problems"]`` lists them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io import atomic_path, read_id_list, write_id_list
from .classes import load_class_split

__all__ = [
    "prepare_voc",
    "prepare_coco_stuff",
    "prepare_context",
    "COCO_STUFF_UNUSED_IDS",
    "COCO_STUFF_USED_IDS",
    "coco_stuff_lut",
    "CONTEXT_459_IDS",
    "context59_lut",
    "VOC_AUG_TRAIN_LEN",
]

PathLike = str | os.PathLike

# mmseg's converter asserts (VOC train ∪ SBD train ∪ SBD val) − VOC val has this many ids (its trainaug.txt).
VOC_AUG_TRAIN_LEN = 10582


# ============================================================================ small utilities
def _write_png(array: np.ndarray, path: Path) -> None:
    """Write a single-channel uint8 PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(tmp, format="PNG")


def _run(fn: Callable[[Any], Any], tasks: Sequence[Any], desc: str, progress: bool, num_workers: int) -> list[Any]:
    """Map ``fn`` over ``tasks`` with a progress bar, in worker processes when ``num_workers > 1``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc=desc, unit="file", disable=not progress)
    results = []
    try:
        if num_workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=num_workers) as pool:
                for r in pool.map(fn, tasks, chunksize=max(1, min(64, len(tasks) // (4 * num_workers) or 1))):
                    results.append(r)
                    bar.update(1)
        else:
            for t in tasks:
                results.append(fn(t))
                bar.update(1)
    finally:
        bar.close()
    return results


def _distinct_values(arr: np.ndarray) -> tuple[int, ...]:
    if arr.dtype == np.uint8:  # bincount is much faster than np.unique on label maps
        return tuple(int(v) for v in np.flatnonzero(np.bincount(arr.reshape(-1), minlength=256)))
    return tuple(int(v) for v in np.unique(arr))


def _values_of_png(path: str) -> tuple[str, tuple[int, ...] | None, str | None]:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
        return path, _distinct_values(arr), None
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return path, None, f"cannot read {path}: {e}"


def _verify_pngs(paths: Sequence[Path], allowed: set[int], what: str, progress: bool, num_workers: int) -> tuple[list[int], list[str]]:
    """Read every PNG; return (sorted union of values, problems)."""
    results = _run(_values_of_png, [str(p) for p in paths], f"verifying {what}", progress, num_workers)
    union: set[int] = set()
    problems = []
    for path, values, err in results:
        if err is not None:
            problems.append(err)
            continue
        union.update(values)
        bad = sorted(set(values) - allowed)
        if bad:
            problems.append(f"{path}: label values outside the expected range: {bad[:20]}")
    return sorted(union), problems


def _unwrap(x: Any) -> Any:
    """Unwrap the nested object/struct arrays that scipy.io.loadmat returns for MATLAB structs and cells."""
    while isinstance(x, np.ndarray) and (x.dtype == object or x.dtype.names is not None) and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _mat_field(mat: Mapping[str, Any], *keys: str) -> np.ndarray:
    node: Any = mat
    for key in keys:
        node = _unwrap(node)
        if isinstance(node, np.void) or (isinstance(node, np.ndarray) and node.dtype.names is not None):
            node = node[key]
        elif isinstance(node, Mapping):
            node = node[key]
        else:
            node = getattr(node, key)
    node = _unwrap(node)
    return np.asarray(node)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    except OSError:
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


# ============================================================================ VOC + SBD
def _sbd_root(sbd_dir: PathLike) -> Path:
    root = Path(sbd_dir)
    if not root.exists():
        raise FileNotFoundError(f"SBD folder not found: {root}")
    for cand in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if (cand / "cls").is_dir():
            return cand
    raise FileNotFoundError(f"SBD class-label folder not found: {root / 'dataset' / 'cls'}")


def _voc2012_dir(voc_dir: PathLike) -> Path:
    root = Path(voc_dir)
    if not root.exists():
        raise FileNotFoundError(f"VOC folder not found: {root}")
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise FileNotFoundError(f"VOC image folder not found: {root / 'JPEGImages'}")


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
    voc = _voc2012_dir(voc_dir)
    sbd = _sbd_root(sbd_dir)
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


# ============================================================================ COCO-Stuff
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


# ============================================================================ PASCAL Context
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
    root = Path(voc2010_dir)
    if not root.exists():
        raise FileNotFoundError(f"VOC2010 folder not found: {root}")
    base = root if (root / "JPEGImages").is_dir() or not (root / "VOC2010").is_dir() else root / "VOC2010"
    if not (base / "JPEGImages").is_dir():
        raise FileNotFoundError(f"VOC2010 image folder not found: {base / 'JPEGImages'}")

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

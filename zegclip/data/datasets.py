"""Segmentation datasets in the standard (mmseg) layouts, a generic folder dataset, and the dataset registry.

Layouts (reference §8.2; ``python -m zegclip prepare`` / :mod:`zegclip.data.prepare` writes them):

* **VOC 2012 + SBD aug** -- ``root`` = ``VOCdevkit/VOC2012`` (``VOCdevkit`` or the folder above it is accepted too;
  :mod:`zegclip.data.roots`)::

      JPEGImages/<id>.jpg  SegmentationClass/<id>.png (palette PNG, raw 0..20 + 255)
      SegmentationClassAug/<id>.png  ImageSets/Segmentation/{train,val,aug}.txt

  train = ``train.txt`` with ``SegmentationClass`` followed by ``aug.txt`` with ``SegmentationClassAug`` (mmseg's
  VOC-aug ConcatDataset); val = ``val.txt``. ``reduce_zero_label``: raw 0 (background) -> 255, k -> k-1.
* **COCO-Stuff 164k** -- ``images/{train2017,val2017}/<id>.jpg``,
  ``annotations/{train2017,val2017}/<id>_labelTrainIds.png`` (0..170, 255 unlabeled).
* **PASCAL Context** -- ``root`` = ``VOCdevkit`` (or ``VOCdevkit/VOC2010``, or the folder above):
  ``VOC2010/JPEGImages``, ``VOC2010/SegmentationClassContext/<id>.png`` (0 = background, 1..59),
  ``VOC2010/ImageSets/SegmentationContext/{train,val}.txt``. Context-59 reduces the zero label (background
  ignored), Context-60 keeps it as class 0.
* **folder** -- images (``*.jpg``/``*.jpeg``/``*.png``) and index masks with the same stem (``*.png``, 255 = ignore)
  plus a class-name file (one name per line).

Every dataset item is a dict ``{"image": Tensor, "label": LongTensor (H, W), "name": str}``
(:class:`zegclip.data.segmentation.SegmentationDataset`). Bad input raises an error naming the file;
:func:`zegclip.data.checks.check_dataset` scans a whole dataset and returns every problem instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..io import read_id_list
from .classes import ClassSplit, load_class_split
from .files import IMAGE_SUFFIXES, read_class_names
from .roots import voc2010_root, voc2012_root
from .segmentation import SegmentationDataset, Transforms

__all__ = [
    "voc",
    "coco_stuff",
    "context",
    "folder",
    "build_dataset",
    "DATASET_NAMES",
    "register_dataset",
    "registered_datasets",
]

PathLike = str | os.PathLike
DATASET_NAMES = ("voc", "coco", "context59", "context60", "folder")
# Datasets that other packages register (the mini world's generated scenes): name -> builder(split, transforms,
# **options). They need no root. The data layer never imports them.
_REGISTERED: dict[str, Callable[..., Any]] = {}


def register_dataset(name: str, builder: Callable[..., Any]) -> None:
    """Make ``build_dataset(name, root, split, transforms, **options)`` call ``builder(split, transforms=...,
    **options)`` (``root`` is ignored: registered datasets are generated or located by their builder)."""
    key = name.strip().lower()
    if key in DATASET_NAMES:
        raise ValueError(f"dataset name {name!r} is built in and cannot be registered")
    _REGISTERED[key] = builder


def registered_datasets() -> tuple[str, ...]:
    """Names of the registered datasets, in registration order (plugins loaded first)."""
    from ..plugins import load_plugins

    load_plugins()
    return tuple(_REGISTERED)


# ============================================================================ layout helpers
def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _listing(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


def _pair_items(
    pairs: Sequence[tuple[Path, Path, str]], strict: bool
) -> tuple[list[tuple[Path, Path, str]], list[str]]:
    """Check that every image and label exists (one directory listing per folder). In strict mode the first
    missing file raises FileNotFoundError naming it; otherwise all problems are returned."""
    listings: dict[Path, set[str]] = {}

    def exists(p: Path) -> bool:
        parent = p.parent
        if parent not in listings:
            listings[parent] = _listing(parent)
        return p.name in listings[parent]

    problems = []
    for img, lab, name in pairs:
        if not exists(img):
            msg = f"image file not found: {img}"
            if strict:
                raise FileNotFoundError(msg)
            problems.append(msg)
        if not exists(lab):
            msg = f"label file not found: {lab} (for image {img})"
            if strict:
                raise FileNotFoundError(msg)
            problems.append(msg)
    return list(pairs), problems


def _check_split_name(split: str, allowed: Sequence[str]) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}, got {split!r}")
    return split


# ============================================================================ builders
def voc(
    root: PathLike,
    split: str = "train",
    aug: bool = True,
    transforms: Transforms | None = None,
    *,
    class_split: ClassSplit | str | None = None,
    strict: bool = True,
) -> SegmentationDataset:
    """PASCAL VOC 2012 (20 classes, background ignored). ``split="train"`` with ``aug=True`` is mmseg's VOC-aug
    training set (``train.txt`` + ``aug.txt``); ``split="val"`` is ``val.txt`` (1,449 images)."""
    _check_split_name(split, ("train", "val"))
    base = voc2012_root(root)
    cs = _resolve_split(class_split, "voc")
    lists = base / "ImageSets" / "Segmentation"
    sources = [(f"{split}.txt", "SegmentationClass")]
    if split == "train" and aug:
        sources.append(("aug.txt", "SegmentationClassAug"))
    pairs = []
    for list_name, ann_dir in sources:
        _require_dir(base / ann_dir, "VOC annotation folder")
        for i in read_id_list(lists / list_name):
            pairs.append((base / "JPEGImages" / f"{i}.jpg", base / ann_dir / f"{i}.png", i))
    pairs, problems = _pair_items(pairs, strict)
    desc = f"VOC2012 {split}{' + aug' if split == 'train' and aug else ''} at {base}"
    return SegmentationDataset(pairs, cs, True, transforms, problems=problems, description=desc)


def coco_stuff(
    root: PathLike,
    split: str = "train",
    transforms: Transforms | None = None,
    *,
    class_split: ClassSplit | str | None = None,
    strict: bool = True,
) -> SegmentationDataset:
    """COCO-Stuff 164k, 171 classes, ``*_labelTrainIds.png`` (255 = unlabeled), no reduction."""
    _check_split_name(split, ("train", "val"))
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    img_dir = _require_dir(root / "images" / f"{split}2017", "COCO-Stuff image folder")
    ann_dir = _require_dir(root / "annotations" / f"{split}2017", "COCO-Stuff annotation folder")
    stems = sorted(Path(n).stem for n in _listing(img_dir) if n.lower().endswith(".jpg"))
    if not stems:
        raise FileNotFoundError(f"no *.jpg images in {img_dir}")
    pairs = [(img_dir / f"{s}.jpg", ann_dir / f"{s}_labelTrainIds.png", s) for s in stems]
    pairs, problems = _pair_items(pairs, strict)
    cs = _resolve_split(class_split, "coco")
    return SegmentationDataset(pairs, cs, False, transforms, problems=problems, description=f"COCO-Stuff {split} at {root}")


def context(
    root: PathLike,
    split: str = "train",
    classes: int = 59,
    transforms: Transforms | None = None,
    *,
    class_split: ClassSplit | str | None = None,
    strict: bool = True,
) -> SegmentationDataset:
    """PASCAL Context (mmseg layout). ``classes=59``: background (0) ignored via reduce_zero_label;
    ``classes=60``: background kept as class 0. ``class_split`` overrides the packaged split (e.g. another
    unseen set)."""
    _check_split_name(split, ("train", "val"))
    if classes not in (59, 60):
        raise ValueError(f"classes must be 59 or 60, got {classes!r}")
    base = voc2010_root(root)
    ann_dir = _require_dir(base / "SegmentationClassContext", "PASCAL Context annotation folder")
    ids = read_id_list(base / "ImageSets" / "SegmentationContext" / f"{split}.txt")
    pairs = [(base / "JPEGImages" / f"{i}.jpg", ann_dir / f"{i}.png", i) for i in ids]
    pairs, problems = _pair_items(pairs, strict)
    cs = _resolve_split(class_split, f"context{classes}")
    if cs.num_classes != classes:
        raise ValueError(f"class split {cs.name!r} has {cs.num_classes} classes, expected {classes}")
    return SegmentationDataset(
        pairs, cs, classes == 59, transforms, problems=problems, description=f"PASCAL Context-{classes} {split} at {base}"
    )


def _folder_split(names: list[str], split_file: Path | None, class_file: Path) -> ClassSplit:
    base = ClassSplit(
        name=class_file.stem,
        classes=tuple(names),
        seen=tuple(range(len(names))),
        unseen=(),
        source=f"class names from {class_file}; all classes seen",
    )
    if split_file is None:
        return base
    if not split_file.is_file():
        raise FileNotFoundError(f"split file not found: {split_file}")
    try:
        data = json.loads(split_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read split file {split_file}: {e}") from None
    if isinstance(data, dict) and "classes" in data:
        cs = load_class_split(split_file)
        if list(cs.classes) != names:
            raise ValueError(f"split file {split_file}: its class list differs from the names in {class_file}")
        return cs
    if not isinstance(data, dict) or not isinstance(data.get("unseen"), list):
        raise ValueError(
            f"split file {split_file}: expected a full class-split JSON or an object {{\"unseen\": [ids or names]}}"
        )
    unseen = []
    for u in data["unseen"]:
        if isinstance(u, str):
            if u not in names:
                raise ValueError(f"split file {split_file}: unseen class {u!r} is not in {class_file}")
            unseen.append(names.index(u))
        elif isinstance(u, int) and not isinstance(u, bool):
            unseen.append(u)
        else:
            raise ValueError(f"split file {split_file}: unseen entries must be class ids or names, got {u!r}")
    try:
        return base.with_unseen(unseen, source=f"class names from {class_file}; unseen set from {split_file}")
    except ValueError as e:
        raise ValueError(f"split file {split_file}: {e}") from None


def folder(
    images_dir: PathLike,
    masks_dir: PathLike,
    class_names_file: PathLike,
    transforms: Transforms | None = None,
    *,
    split_file: PathLike | None = None,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
    strict: bool = True,
) -> SegmentationDataset:
    """A generic dataset: images ``*.jpg``/``*.jpeg``/``*.png`` in ``images_dir``, index masks ``<stem>.png`` in
    ``masks_dir`` (values = class ids in the order of ``class_names_file``, ``ignore_index`` = unlabelled).

    All classes are seen unless ``split_file`` is given: either a full class-split JSON (see
    :mod:`zegclip.data.classes`; its class list must equal the names file) or ``{"unseen": [ids or names]}``.
    """
    images_dir, masks_dir, class_file = Path(images_dir), Path(masks_dir), Path(class_names_file)
    _require_dir(images_dir, "image folder")
    _require_dir(masks_dir, "mask folder")
    names = read_class_names(class_file)
    cs = _folder_split(names, None if split_file is None else Path(split_file), class_file)
    if ignore_index != cs.ignore_index or reduce_zero_label != cs.reduce_zero_label:
        import dataclasses

        try:
            cs = dataclasses.replace(cs, ignore_index=int(ignore_index), reduce_zero_label=bool(reduce_zero_label))
        except ValueError as e:
            raise ValueError(f"class-name file {class_file}: {e}") from None
    files = sorted(n for n in _listing(images_dir) if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
    if not files:
        raise FileNotFoundError(f"no images (*.jpg, *.jpeg, *.png) in {images_dir}")
    stems: dict[str, str] = {}
    for n in files:
        stem = Path(n).stem
        if stem in stems:
            raise ValueError(f"two images share the stem {stem!r} in {images_dir}: {stems[stem]} and {n}")
        stems[stem] = n
    pairs = [(images_dir / n, masks_dir / f"{Path(n).stem}.png", Path(n).stem) for n in files]
    pairs, problems = _pair_items(pairs, strict)
    return SegmentationDataset(
        pairs, cs, cs.reduce_zero_label, transforms, problems=problems, description=f"folder {images_dir}"
    )


def _resolve_split(class_split: ClassSplit | str | None, default: str) -> ClassSplit:
    if class_split is None:
        return load_class_split(default)
    if isinstance(class_split, ClassSplit):
        return class_split
    return load_class_split(class_split)


def build_dataset(
    name: str,
    root: PathLike,
    split: str = "train",
    transforms: Transforms | None = None,
    **kwargs: Any,
) -> SegmentationDataset:
    """One entry point: ``name`` in ``voc``, ``coco``, ``context59``, ``context60``, ``folder``, or a registered
    dataset (:func:`register_dataset`; the mini world registers ``mini-voc``, ``mini-coco`` and ``mini-voc-b``,
    whose options are ``size`` and ``seed``; ``root`` is ignored).

    ``folder`` reads ``root/images[/<split>]``, ``root/masks[/<split>]`` (the split sub-folders are used when they
    exist), ``root/classes.txt`` and, when present, ``root/split.json``. Extra keyword arguments go to the builder
    (e.g. ``aug=False`` for VOC, ``class_split=...``, ``strict=False``).
    """
    key = name.strip().lower()
    if key == "voc":
        return voc(root, split, transforms=transforms, **kwargs)
    if key in ("coco", "coco_stuff", "coco-stuff"):
        return coco_stuff(root, split, transforms=transforms, **kwargs)
    if key in ("context59", "context60"):
        return context(root, split, classes=int(key[-2:]), transforms=transforms, **kwargs)
    if key in registered_datasets():  # e.g. the mini world's scenes, generated on the fly; root is ignored
        return _REGISTERED[key](split, transforms=transforms, **kwargs)
    if key == "folder":
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"dataset root not found: {root}")
        images, masks = root / "images", root / "masks"
        if (images / split).is_dir():
            images = images / split
        if (masks / split).is_dir():
            masks = masks / split
        if "split_file" not in kwargs and (root / "split.json").is_file():
            kwargs["split_file"] = root / "split.json"
        return folder(images, masks, kwargs.pop("class_names_file", root / "classes.txt"), transforms=transforms, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES + registered_datasets())}")

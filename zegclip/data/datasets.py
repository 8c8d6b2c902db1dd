"""Segmentation datasets in the standard (mmseg) layouts, a generic folder dataset, and a checker.

Layouts (reference §8.2; ``python -m zegclip prepare`` / :mod:`zegclip.data.prepare` writes them):

* **VOC 2012 + SBD aug** -- ``root`` = ``VOCdevkit/VOC2012`` (``VOCdevkit`` is accepted too)::

      JPEGImages/<id>.jpg  SegmentationClass/<id>.png (palette PNG, raw 0..20 + 255)
      SegmentationClassAug/<id>.png  ImageSets/Segmentation/{train,val,aug}.txt

  train = ``train.txt`` with ``SegmentationClass`` followed by ``aug.txt`` with ``SegmentationClassAug`` (mmseg's
  VOC-aug ConcatDataset); val = ``val.txt``. ``reduce_zero_label``: raw 0 (background) -> 255, k -> k-1.
* **COCO-Stuff 164k** -- ``images/{train2017,val2017}/<id>.jpg``,
  ``annotations/{train2017,val2017}/<id>_labelTrainIds.png`` (0..170, 255 unlabeled).
* **PASCAL Context** -- ``root`` = ``VOCdevkit`` (or ``VOCdevkit/VOC2010``): ``VOC2010/JPEGImages``,
  ``VOC2010/SegmentationClassContext/<id>.png`` (0 = background, 1..59), ``VOC2010/ImageSets/SegmentationContext/
  {train,val}.txt``. Context-59 reduces the zero label (background ignored), Context-60 keeps it as class 0.
* **folder** -- images (``*.jpg``/``*.jpeg``/``*.png``) and index masks with the same stem (``*.png``, 255 = ignore)
  plus a class-name file (one name per line).

Every dataset item is a dict ``{"image": Tensor, "label": LongTensor (H, W), "name": str}``. Bad input raises an
error naming the file; :func:`check_dataset` scans a whole dataset and returns every problem instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors

from ..io import read_id_list
from .classes import ClassSplit, load_class_split

__all__ = [
    "SegmentationDataset",
    "voc",
    "coco_stuff",
    "context",
    "folder",
    "build_dataset",
    "check_dataset",
    "make_item",
    "DATASET_NAMES",
    "register_dataset",
    "registered_datasets",
    "voc_palette",
    "class_colours",
    "png_palette",
    "voc_color_to_index",
    "read_image",
    "read_label",
    "read_class_names",
]

PathLike = str | os.PathLike
Transforms = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[Any, Any]]
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
    """Names of the registered datasets, in registration order."""
    return tuple(_REGISTERED)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# ============================================================================ file reading
def read_image(path: PathLike) -> np.ndarray:
    """An RGB image as a (H, W, 3) uint8 array; FileNotFoundError / ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    return np.asarray(rgb, dtype=np.uint8)


def read_label(path: PathLike) -> np.ndarray:
    """A single-channel index mask as a (H, W) int64 array of the raw stored values.

    Palette PNGs (VOC ``SegmentationClass``) are read as their indices, not their colours.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"):
                raise ValueError(
                    f"label {path} is a {mode} image; expected a single-channel index mask (palette or grey PNG"
                    " with class ids; convert VOC colour targets with voc_color_to_index)"
                )
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read label {path}: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"label {path} has shape {arr.shape}; expected a single-channel (H, W) mask")
    return arr.astype(np.int64)


def read_class_names(path: PathLike) -> list[str]:
    """Class names, one per line (surrounding whitespace stripped; a trailing empty line is allowed).

    Empty names (blank lines in the middle) and duplicates raise ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read class-name file {path}: {e}") from None
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


def _reduce_zero_label(label: np.ndarray, ignore_index: int) -> np.ndarray:
    """mmseg's reduce_zero_label: 0 -> ignore, k -> k-1, ignore stays ignore."""
    out = label - 1
    out[label == 0] = ignore_index
    out[label == ignore_index] = ignore_index
    return out


def _bad_values(label: np.ndarray, num_classes: int, ignore_index: int) -> list[int]:
    bad = (label < 0) | ((label >= num_classes) & (label != ignore_index))
    if not bad.any():
        return []
    return [int(v) for v in np.unique(label[bad])]


def _describe_values(values: list[int], limit: int = 20) -> str:
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", ... ({len(values)} distinct)" if len(values) > limit else "")


# ============================================================================ dataset
@dataclass(frozen=True)
class _Item:
    image: Path
    label: Path
    name: str


def make_item(image: np.ndarray, label: np.ndarray, transforms: Transforms | None, name: str) -> dict[str, Any]:
    """One dataset item from an (H, W, 3) uint8 image and an (H, W) label array: both through the joint
    ``transforms`` (torchvision v2, as tv_tensors), returned as plain tensors ``{"image", "label" (H, W) int64,
    "name"}``. Shared by every dataset, the mini world's included."""
    img_t = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
    lab_dtype = torch.uint8 if label.max(initial=0) <= 255 else torch.int64
    mask = tv_tensors.Mask(torch.from_numpy(label).to(lab_dtype))
    img_out, lab_out = transforms(img_t, mask) if transforms is not None else (img_t, mask)
    img_out = img_out.as_subclass(torch.Tensor) if isinstance(img_out, torch.Tensor) else img_out
    lab_out = torch.as_tensor(lab_out).as_subclass(torch.Tensor).to(torch.int64)
    if lab_out.ndim == 3 and lab_out.shape[0] == 1:
        lab_out = lab_out[0]
    return {"image": img_out, "label": lab_out, "name": name}


class ClassSplitMixin:
    """Class-list properties shared by every segmentation dataset (needs a ``class_split`` attribute)."""

    class_split: ClassSplit

    @property
    def num_classes(self) -> int:
        return self.class_split.num_classes

    @property
    def ignore_index(self) -> int:
        return self.class_split.ignore_index

    @property
    def classes(self) -> tuple[str, ...]:
        return self.class_split.classes


class SegmentationDataset(ClassSplitMixin, torch.utils.data.Dataset):
    """Image/label pairs plus their class list.

    Args:
        items: ``(image_path, label_path)`` pairs (or ``(image_path, label_path, name)``); the name defaults to
            the image file's stem.
        class_split: the classes (ids = label values after reduction) and their seen/unseen partition.
        reduce_zero_label: mmseg's convention (raw 0 -> ignore, k -> k-1); ``None`` takes the split's setting.
        transforms: a callable ``(tv_tensors.Image uint8 (3,H,W), tv_tensors.Mask (H,W)) -> (image, label)``,
            e.g. :func:`zegclip.data.transforms.train_transforms`. ``None`` returns the uint8 image as is.
        problems: problems found while building (missing files in non-strict mode); reported by
            :func:`check_dataset`.

    ``dataset[i]`` is ``{"image": Tensor, "label": LongTensor (H, W), "name": str}``. A missing file raises
    FileNotFoundError, a corrupt image, a label whose size differs from the image, or label values outside
    ``[0, num_classes)`` and the ignore index raise ValueError -- each naming the file(s).
    """

    def __init__(
        self,
        items: Iterable[Sequence[PathLike]],
        class_split: ClassSplit,
        reduce_zero_label: bool | None = None,
        transforms: Transforms | None = None,
        *,
        problems: Sequence[str] = (),
        description: str = "",
    ) -> None:
        self.items: list[_Item] = []
        for entry in items:
            if len(entry) == 3:
                img, lab, name = entry  # type: ignore[misc]
            elif len(entry) == 2:
                img, lab = entry  # type: ignore[misc]
                name = Path(img).stem
            else:
                raise ValueError(f"dataset items must be (image, label) or (image, label, name), got {entry!r}")
            self.items.append(_Item(Path(img), Path(lab), str(name)))
        if not isinstance(class_split, ClassSplit):
            raise TypeError(f"class_split must be a ClassSplit, got {type(class_split).__name__}")
        self.class_split = class_split
        self.reduce_zero_label = class_split.reduce_zero_label if reduce_zero_label is None else bool(reduce_zero_label)
        self.transforms = transforms
        self.problems = list(problems)
        self.description = description

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        desc = f", {self.description}" if self.description else ""
        return (
            f"{type(self).__name__}({len(self)} items, split {self.class_split.name!r}, "
            f"{self.num_classes} classes, reduce_zero_label={self.reduce_zero_label}{desc})"
        )

    # ------------------------------------------------------------------ loading
    def load_label(self, index: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """The label of item ``index`` in training ids (after reduction), validated; (H, W) int64."""
        item = self.items[index]
        raw = read_label(item.label)
        if image_size is not None and tuple(raw.shape) != tuple(image_size):
            raise ValueError(
                f"label {item.label} has size {raw.shape[1]}x{raw.shape[0]} (WxH) but image {item.image} has size "
                f"{image_size[1]}x{image_size[0]}"
            )
        label = _reduce_zero_label(raw, self.ignore_index) if self.reduce_zero_label else raw
        bad = _bad_values(label, self.num_classes, self.ignore_index)
        if bad:
            stage = " after reduce_zero_label" if self.reduce_zero_label else ""
            raise ValueError(
                f"label {item.label} has values outside [0, {self.num_classes}) and the ignore index "
                f"{self.ignore_index}{stage}: {_describe_values(bad)}"
            )
        return label

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, label (H, W) int64 in training ids) of item ``index``, untransformed."""
        item = self.items[index]
        image = read_image(item.image)
        return image, self.load_label(index, image.shape[:2])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        image, label = self.load(index)
        return make_item(image, label, self.transforms, self.items[index].name)


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


def _voc2012_root(root: PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    if not (root / "JPEGImages").is_dir() and (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    return _require_dir(root / "JPEGImages", "VOC image folder").parent


def _voc2010_root(root: PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    if not (root / "JPEGImages").is_dir() and (root / "VOC2010").is_dir():
        root = root / "VOC2010"
    return _require_dir(root / "JPEGImages", "PASCAL Context (VOC2010) image folder").parent


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
    base = _voc2012_root(root)
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
    base = _voc2010_root(root)
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
    if key in _REGISTERED:  # e.g. the mini world's scenes, generated on the fly; root is ignored
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


# ============================================================================ checking
def check_dataset(dataset: SegmentationDataset, *, progress: bool = True, decode: bool = True) -> list[str]:
    """Scan every item and return ALL problems (an empty list means the dataset is clean).

    Reports missing files, unreadable/corrupt images and labels, label/image size mismatches and label values
    outside ``[0, num_classes)`` and the ignore index (after reduction). ``decode=False`` only reads image
    headers (faster; corrupt pixel data may go unnoticed).
    """
    from tqdm.auto import tqdm

    problems = list(dataset.problems)
    for index in tqdm(range(len(dataset)), desc="checking dataset", unit="img", disable=not progress):
        item = dataset.items[index]
        size = None
        if not item.image.is_file():
            if not any(str(item.image) in p for p in problems):
                problems.append(f"image file not found: {item.image}")
        else:
            try:
                if decode:
                    size = read_image(item.image).shape[:2]
                else:
                    with Image.open(item.image) as im:
                        size = (im.height, im.width)
            except (ValueError, OSError, UnidentifiedImageError, SyntaxError) as e:
                msg = str(e)
                problems.append(msg if str(item.image) in msg else f"cannot read image {item.image}: {msg}")
        if not item.label.is_file():
            if not any(str(item.label) in p for p in problems):
                problems.append(f"label file not found: {item.label} (for image {item.image})")
            continue
        try:
            dataset.load_label(index, size)
        except (ValueError, OSError) as e:
            problems.append(str(e))
    return problems


# ============================================================================ VOC colours
def voc_palette(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map: (n, 3) uint8, class k's colour from the bits of k."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    return palette



def class_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 colours for class ids 0..n-1 of a label map: class k gets the VOC colour of raw id k + 1 (raw 0
    is VOC's black background, which a reduced label map no longer has). The one label palette of the package:
    predictions, overlays and the saved sample PNGs use it."""
    return voc_palette(n + 1)[1:]


def png_palette() -> list[int]:
    """The 768-entry PIL palette of a label PNG (mode ``P``): :func:`class_colours` for ids 0..254, white for 255
    (ignore)."""
    return [*class_colours(255).reshape(-1).tolist(), 255, 255, 255]

_VOC_NUM_RAW = 21  # background + 20 classes


def voc_color_to_index(rgb: np.ndarray, *, name: str | None = None) -> np.ndarray:
    """Colour-coded VOC target (H, W, 3) -> raw index map (H, W) uint8: 0 background, 1..20 classes,
    255 for the void/boundary colour (224, 224, 192). Any other colour raises ValueError."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
    arr = arr[..., :3].astype(np.int64)
    codes = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    palette = voc_palette(256).astype(np.int64)
    lut = {int((p[0] << 16) | (p[1] << 8) | p[2]): k for k, p in enumerate(palette[:_VOC_NUM_RAW])}
    lut[(224 << 16) | (224 << 8) | 192] = 255
    uniq, inverse = np.unique(codes.reshape(-1), return_inverse=True)
    unknown = [int(u) for u in uniq if int(u) not in lut]
    if unknown:
        cols = ", ".join(f"({u >> 16},{(u >> 8) & 255},{u & 255})" for u in unknown[:10])
        where = f" in {name}" if name else ""
        raise ValueError(f"unknown VOC colour(s){where}: {cols}{' ...' if len(unknown) > 10 else ''}")
    mapped = np.array([lut[int(u)] for u in uniq], dtype=np.uint8)
    return mapped[inverse].reshape(codes.shape)

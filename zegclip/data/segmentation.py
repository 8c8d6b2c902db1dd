"""The segmentation dataset: image/label file pairs, their class list, loading with validation, and the item dict.

Every dataset item is a dict ``{"image": Tensor, "label": LongTensor (H, W), "name": str}`` made by
:func:`make_item` (the mini world's generated scenes use it too). Bad input raises an error naming the file;
:func:`zegclip.data.checks.check_dataset` scans a whole dataset and returns every problem instead. The builders of
the standard layouts are in :mod:`zegclip.data.datasets`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from .classes import ClassSplit
from .files import read_image, read_label

__all__ = ["SegmentationDataset", "ClassSplitMixin", "make_item", "Transforms"]

PathLike = str | os.PathLike
Transforms = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[Any, Any]]


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
            :func:`zegclip.data.checks.check_dataset`.

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

"""Evaluation metrics for zero-shot semantic segmentation (reference Sec. 11 and 15).

The protocol is the one of mmseg's ``eval_metrics`` as used by the official
ZegCLIP ``test.py --eval mIoU``:

* Intersection, union, prediction area and label area are accumulated per
  class over the **whole dataset** (here: a (C, C) int64 confusion matrix,
  rows = ground truth, columns = prediction), and only then turned into
  ratios. Pixels whose ground truth equals ``ignore_index`` (255) are skipped.
* ``IoU_c = I_c / U_c`` with ``U_c = label_c + pred_c - I_c``; NaN when
  ``U_c = 0`` (class absent from both the ground truth and the predictions),
  and NaN classes are left out of every mean (``nanmean``).
* ``Acc_c = I_c / label_c`` (NaN when the class has no ground-truth pixel).
* ``pAcc`` (mmseg's ``aAcc``) ``= sum_c I_c / sum_c label_c``: overall pixel
  accuracy over all classes, the same number in the seen and unseen tables.
* ``mIoU`` / ``mAcc``: nanmean over all classes; ``mIoU(S)``, ``mIoU(U)``,
  ``mAcc(S)``, ``mAcc(U)``: nanmean over the seen / unseen class indices.
* ``hIoU = 2 S U / (S + U)`` with ``S = mIoU(S)``, ``U = mIoU(U)``. The
  official code does not compute it; the paper does (e.g. 2*91.9*77.8/169.7
  = 84.26, reported as 84.3). NaN when there are no unseen classes (e.g. the
  cross-dataset COCO->VOC setting, where every class counts as seen).

All values are returned as python floats in percent (x100, like the paper),
not rounded (the paper and mmseg print 1 and 2 decimals respectively).

This is generalized zero-shot evaluation: predictions are argmax'ed over
*all* classes (seen and unseen) and the ground truth lives in the full label
space; the metric does not remap anything.

Why not ``torchmetrics.segmentation.MeanIoU``: it computes an IoU per sample /
batch and averages those, which differs from the dataset-level ratio of
summed intersections and unions used here (a class that is tiny in one image
and large in another weighs the same per image but not per pixel). It also has
no ``ignore_index``, so the 255 "void" pixels cannot be excluded. Neither
matches the published protocol, hence this module.

``SegmentationMetrics`` keeps only the confusion matrix as state, with
``dist_reduce_fx="sum"``, so it is safe under DDP (each rank counts its own
pixels; the matrices are summed on ``compute()``). The numbers can be
recomputed offline from a saved matrix with :func:`metrics_from_confmat`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

__all__ = [
    "SegmentationMetrics",
    "confusion_matrix",
    "harmonic",
    "metrics_from_confmat",
    "partition_classes",
]


def harmonic(s: float, u: float) -> float:
    """Harmonic mean ``2 s u / (s + u)`` of the seen and unseen mIoU (the paper's hIoU).

    NaN if either input is NaN; 0 when both are 0.
    """
    s, u = float(s), float(u)
    if math.isnan(s) or math.isnan(u):
        return float("nan")
    if s + u == 0:
        return 0.0
    return 2.0 * s * u / (s + u)


def partition_classes(
    num_classes: int,
    seen: Sequence[int] | None = None,
    unseen: Sequence[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Return sorted (seen, unseen) index lists that partition ``range(num_classes)``.

    With neither given every class is seen (no unseen classes); with one given
    the other is its complement. Raises ``ValueError`` on out-of-range
    indices, overlap, or (when both are given) classes that are in neither.
    """
    everything = set(range(num_classes))

    def _check(name: str, idx: Sequence[int]) -> set[int]:
        idx = [int(i) for i in idx]
        out = set(idx)
        bad = sorted(i for i in out if i not in everything)
        if bad:
            raise ValueError(f"{name} class indices {bad} are outside [0, {num_classes})")
        if len(out) != len(idx):
            raise ValueError(f"{name} class indices contain duplicates: {idx}")
        return out

    if seen is None and unseen is None:
        s, u = everything, set()
    elif unseen is None:
        s = _check("seen", seen)
        u = everything - s
    elif seen is None:
        u = _check("unseen", unseen)
        s = everything - u
    else:
        s, u = _check("seen", seen), _check("unseen", unseen)
        both = sorted(s & u)
        if both:
            raise ValueError(f"classes {both} are both seen and unseen")
        missing = sorted(everything - s - u)
        if missing:
            raise ValueError(f"classes {missing} are neither seen nor unseen")
    return sorted(s), sorted(u)


def _as_labels(preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label maps (B, H, W) from label maps (B, H, W) / (H, W) or scores (B, C, H, W)."""
    if not isinstance(preds, torch.Tensor):
        raise TypeError(f"preds must be a torch.Tensor, got {type(preds).__name__}")
    if preds.ndim == 4:
        if preds.shape[1] != num_classes:
            raise ValueError(
                f"score preds have {preds.shape[1]} channels, expected num_classes={num_classes}"
            )
        return preds.argmax(dim=1)
    if preds.ndim in (2, 3):
        if preds.is_floating_point() or preds.is_complex():
            raise ValueError(
                "preds with 2 or 3 dims must be integer label maps; "
                "pass scores as (B, C, H, W)"
            )
        return preds if preds.ndim == 3 else preds.unsqueeze(0)
    raise ValueError(f"preds must be (B, H, W) labels or (B, C, H, W) scores, got shape {tuple(preds.shape)}")


def confusion_matrix(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """(C, C) int64 confusion matrix ``M[gt, pred]`` of one batch, on the inputs' device.

    ``preds``: (B, H, W) integer labels or (B, C, H, W) scores (argmax over C);
    ``target``: (B, H, W) integer labels (a single (H, W) map is also accepted).
    Pixels with ``target == ignore_index`` are skipped. Raises ``ValueError`` for
    target values outside ``[0, C)`` other than ``ignore_index``, prediction
    labels outside ``[0, C)`` on counted pixels, and shape mismatches.
    """
    c = int(num_classes)
    labels = _as_labels(preds, c)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must be an integer label map, got dtype {target.dtype}")
    if target.ndim == 2:
        target = target.unsqueeze(0)
    if target.ndim != 3:
        raise ValueError(f"target must be (B, H, W), got shape {tuple(target.shape)}")
    if labels.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(labels.shape)} (B, H, W) does not match target shape "
            f"{tuple(target.shape)}; resize the predictions to the label size first"
        )
    labels = labels.to(device=target.device)
    t = target.reshape(-1).long()
    p = labels.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    bad_t = (t < 0) | (t >= c)
    if bool(bad_t.any()):
        values = torch.unique(t[bad_t])[:10].tolist()
        raise ValueError(
            f"target contains value(s) {values} outside [0, {c}) "
            f"that are not ignore_index={ignore_index}"
        )
    bad_p = (p < 0) | (p >= c)
    if bool(bad_p.any()):
        values = torch.unique(p[bad_p])[:10].tolist()
        raise ValueError(f"predictions contain label(s) {values} outside [0, {c})")
    return torch.bincount(t * c + p, minlength=c * c).reshape(c, c)


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def metrics_from_confmat(
    confmat: Any,
    seen: Sequence[int] | None = None,
    unseen: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All reported metrics from a (C, C) confusion matrix ``M[gt, pred]`` (tensor, array or lists).

    Returns python floats in percent: ``pAcc``, ``mIoU``, ``mAcc``, ``mIoU(S)``,
    ``mIoU(U)``, ``hIoU``, ``mAcc(S)``, ``mAcc(U)`` and ``per_class`` (a list of
    ``{"class", "id", "split", "IoU", "Acc", "pixels"}``; ``pixels`` is the number
    of ground-truth pixels of the class). NaN where a value is undefined.
    ``seen`` / ``unseen`` follow :func:`partition_classes` (default: all seen).
    """
    m = torch.as_tensor(confmat).detach().to("cpu", torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confmat must be a square (C, C) matrix, got shape {tuple(m.shape)}")
    c = m.shape[0]
    seen_idx, unseen_idx = partition_classes(c, seen, unseen)
    if class_names is None:
        class_names = [str(i) for i in range(c)]
    class_names = list(class_names)
    if len(class_names) != c:
        raise ValueError(f"got {len(class_names)} class names for {c} classes")

    inter = torch.diagonal(m)
    area_label = m.sum(dim=1)
    area_pred = m.sum(dim=0)
    union = area_label + area_pred - inter
    nan = torch.full_like(inter, float("nan"))
    iou = torch.where(union > 0, inter / union.clamp_min(1), nan) * 100.0
    acc = torch.where(area_label > 0, inter / area_label.clamp_min(1), nan) * 100.0
    total = float(area_label.sum())
    pacc = float(inter.sum()) / total * 100.0 if total > 0 else float("nan")

    def _group(x: torch.Tensor, idx: list[int]) -> float:
        return _nanmean(x[idx]) if idx else float("nan")

    miou_s, miou_u = _group(iou, seen_idx), _group(iou, unseen_idx)
    split = {i: "seen" for i in seen_idx} | {i: "unseen" for i in unseen_idx}
    return {
        "pAcc": pacc,
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "mIoU(S)": miou_s,
        "mIoU(U)": miou_u,
        "hIoU": harmonic(miou_s, miou_u) if unseen_idx else float("nan"),
        "mAcc(S)": _group(acc, seen_idx),
        "mAcc(U)": _group(acc, unseen_idx),
        "per_class": [
            {
                "class": class_names[i],
                "id": i,
                "split": split[i],
                "IoU": float(iou[i]),
                "Acc": float(acc[i]),
                "pixels": int(area_label[i]),
            }
            for i in range(c)
        ],
    }


class SegmentationMetrics(Metric):
    """Dataset-level pAcc / mIoU / mAcc / mIoU(S) / mIoU(U) / hIoU (mmseg protocol, see module doc).

    Example::

        metric = SegmentationMetrics(20, seen=range(15), unseen=range(15, 20), class_names=names)
        for images, labels in loader:
            metric.update(model.segment(images), labels)   # or scores (B, C, H, W)
        results = metric.compute()                        # {"mIoU(U)": 77.8, ...}
        torch.save(metric.confmat.cpu(), "confmat.pt")    # metrics_from_confmat(...) later

    State: ``confmat`` (C, C) int64, ``M[gt, pred]``, summed across processes.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        seen: Sequence[int] | None = None,
        unseen: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.seen, self.unseen = partition_classes(self.num_classes, seen, unseen)
        if class_names is not None:
            class_names = list(class_names)
            if len(class_names) != self.num_classes:
                raise ValueError(f"got {len(class_names)} class names for {self.num_classes} classes")
        self.class_names = class_names
        self.add_state(
            "confmat",
            default=torch.zeros(self.num_classes, self.num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Add one batch: ``preds`` (B, H, W) labels or (B, C, H, W) scores, ``target`` (B, H, W)."""
        cm = confusion_matrix(preds, target.to(self.confmat.device), self.num_classes, self.ignore_index)
        self.confmat += cm

    def compute(self) -> dict[str, Any]:  # type: ignore[override]
        """The metric dict of :func:`metrics_from_confmat` over everything seen since the last reset."""
        return metrics_from_confmat(self.confmat, self.seen, self.unseen, self.class_names)

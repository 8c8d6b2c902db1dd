"""Segmentation losses for ZegCLIP.

Three training objectives are provided (paper Sec. 3.4, Tables 5/6):

* ``"el"``  -- *mutually exclusive* loss: softmax cross-entropy over the C
  channels, averaged over non-ignored pixels (the baseline the paper argues
  against).
* ``"plain"`` -- *non-mutually exclusive* loss: per-class sigmoid + binary
  cross-entropy ("plain" in Table 6).
* ``"plus"`` -- the official ZegCLIP loss ("plus" in Table 6): sigmoid focal
  loss + dice loss, ``mask_weight * L_focal + dice_weight * L_dice``.

Target construction and normalisation follow the official code
(``SegPlusCriterion``), not the paper text:

* Every label map is turned into a dense one-hot target (B, C, H, W).
  Pixels labelled ``ignore_index`` get an **all-zero** target vector, i.e. they
  count as negatives for every class (``ignore_as_negative=True``, official).
  With ``ignore_as_negative=False`` they are instead removed from every sum.
* ``num_masks`` M = sum over images of the number of distinct valid classes
  present, all-reduced (sum) over ranks and divided by the world size under
  ``torch.distributed``, clamped to >= 1.
* Focal / BCE: per-element loss, mean over pixels for every (b, c) pair
  (all C channels, also classes absent from the image), summed over (b, c)
  and divided by M.
* Dice: only (b, c) with c present in image b,
  ``1 - (2 sum(s*y) + 1) / (sum(s) + sum(y) + 1)``, summed and divided by M.

Official vs paper differences (reference Sec. 7 and Sec. 14 items 8/9):

* The official focal loss is alpha-balanced (alpha = 0.25); paper Eq. 4 has
  no alpha term. ``focal_alpha=None`` gives the paper variant.
* The official dice uses linear sums with +1 smoothing; paper Eq. 5 uses
  squared sums in the denominator. ``dice_squared=True`` gives Eq. 5 (the
  +1 smoothing is kept in both numerator and denominator).
* The official code treats ignore pixels as negatives (not masked out).
* The weights {alpha, beta} of Eq. 6 are not given in the paper; the official
  configs use focal x100 and dice x1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LossConfig",
    "ExclusiveLoss",
    "SigmoidBCELoss",
    "FocalDiceLoss",
    "build_loss",
]

_KINDS = ("el", "plain", "plus")


@dataclass(frozen=True)
class LossConfig:
    """Configuration of the segmentation loss (defaults = official ZegCLIP)."""

    kind: str = "plus"  # "el" | "plain" | "plus"
    mask_weight: float = 100.0  # weight of focal ("plus") or BCE ("plain")
    dice_weight: float = 1.0  # weight of dice ("plus" only)
    focal_alpha: float | None = 0.25  # None = paper Eq. 4 (no alpha)
    focal_gamma: float = 2.0
    dice_squared: bool = False  # True = paper Eq. 5 squared denominator
    ignore_as_negative: bool = True  # official: ignore pixels are negatives
    ignore_index: int = 255
    ce_weight: float = 1.0  # weight of the softmax CE ("el")

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"LossConfig.kind must be one of {_KINDS}, got {self.kind!r}")
        for name in ("mask_weight", "dice_weight", "ce_weight"):
            value = getattr(self, name)
            if not _is_real(value) or not (value >= 0) or not math.isfinite(value):
                raise ValueError(f"LossConfig.{name} must be a finite number >= 0, got {value!r}")
        if not _is_real(self.focal_gamma) or not (self.focal_gamma >= 0) or not math.isfinite(self.focal_gamma):
            raise ValueError(f"LossConfig.focal_gamma must be a finite number >= 0, got {self.focal_gamma!r}")
        if self.focal_alpha is not None and (
            not _is_real(self.focal_alpha) or not (0.0 <= self.focal_alpha <= 1.0)
        ):
            raise ValueError(f"LossConfig.focal_alpha must be None or in [0, 1], got {self.focal_alpha!r}")
        if not isinstance(self.ignore_index, int) or isinstance(self.ignore_index, bool):
            raise ValueError(f"LossConfig.ignore_index must be an int, got {self.ignore_index!r}")
        for name in ("dice_squared", "ignore_as_negative"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"LossConfig.{name} must be a bool, got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------


def _check_and_resize(logits: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """Validate ``logits`` (B,C,h,w) / ``labels`` (B,H,W); return logits at (H,W)."""
    if not isinstance(logits, Tensor) or logits.dim() != 4:
        raise ValueError(f"logits must be a 4-D tensor (B,C,h,w), got shape {tuple(getattr(logits, 'shape', ()))}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if not isinstance(labels, Tensor) or labels.dim() != 3:
        raise ValueError(f"labels must be a 3-D tensor (B,H,W), got shape {tuple(getattr(labels, 'shape', ()))}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"batch size mismatch: logits {logits.shape[0]} vs labels {labels.shape[0]}")
    num_classes = logits.shape[1]
    if num_classes < 1:
        raise ValueError(f"logits must have at least one channel, got C={num_classes}")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        value = int(labels[bad][0].item())
        raise ValueError(
            f"label value {value} out of range for C={num_classes} classes "
            f"(valid: 0..{num_classes - 1} or ignore_index={ignore_index})"
        )
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False)
    return logits


def _one_hot_targets(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """(B,H,W) labels -> (B,C,H,W) one-hot; ignore / any non-class value gives all zeros."""
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, 1, 1)
    return (labels.unsqueeze(1) == classes).to(dtype)


def _num_masks(present: Tensor) -> Tensor:
    """M = number of (image, class) pairs present, averaged over ranks, clamped >= 1.

    ``present``: bool (B,C). Returns a 0-d float tensor (no host sync).
    """
    num = present.sum().to(torch.float32)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        num = num.clone()
        torch.distributed.all_reduce(num)
        num = num / torch.distributed.get_world_size()
    return num.clamp(min=1.0)


class _SigmoidLossBase(nn.Module):
    """Shared target construction / normalisation for the sigmoid losses."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def _prepare(self, logits: Tensor, labels: Tensor):
        """Returns (x (B,C,H,W) float, y (B,C,H,W), valid (B,1,H,W) float or None,
        per-image pixel count (B,1) for the mean, present (B,C) bool, M)."""
        cfg = self.cfg
        logits = _check_and_resize(logits, labels, cfg.ignore_index)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        num_classes = x.shape[1]
        y = _one_hot_targets(labels, num_classes, x.dtype)
        present = y.flatten(2).amax(dim=2) > 0  # (B,C)
        if cfg.ignore_as_negative:
            valid = None
            count = torch.full((x.shape[0], 1), float(labels.shape[-2] * labels.shape[-1]),
                               dtype=x.dtype, device=x.device)
        else:
            valid = (labels != cfg.ignore_index).unsqueeze(1).to(x.dtype)  # (B,1,H,W)
            count = valid.flatten(1).sum(dim=1, keepdim=True)  # (B,1)
        return x, y, valid, count, present, _num_masks(present)

    @staticmethod
    def _pixel_mean_sum(elem: Tensor, valid: Tensor | None, count: Tensor) -> Tensor:
        """sum over (b,c) of the per-(b,c) pixel mean of ``elem`` (B,C,H,W)."""
        if valid is not None:
            elem = elem * valid
        per_bc = elem.flatten(2).sum(dim=2) / count.clamp(min=1.0)  # (B,C)
        return per_bc.sum()


class FocalDiceLoss(_SigmoidLossBase):
    """Official ZegCLIP "plus" loss: ``mask_weight*focal + dice_weight*dice``.

    forward(logits (B,C,h,w), labels (B,H,W) long) ->
    {"loss_focal", "loss_dice", "loss"} (0-d tensors, already weighted).
    """

    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        x, y, valid, count, present, num_masks = self._prepare(logits, labels)

        # focal term on every (b, c) channel
        prob = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = prob * y + (1.0 - prob) * (1.0 - y)
        elem = ce * (1.0 - p_t) ** cfg.focal_gamma
        if cfg.focal_alpha is not None:
            alpha_t = cfg.focal_alpha * y + (1.0 - cfg.focal_alpha) * (1.0 - y)
            elem = alpha_t * elem
        focal = self._pixel_mean_sum(elem, valid, count) / num_masks

        # dice term on the present (b, c) pairs only
        s = prob if valid is None else prob * valid
        s_flat = s.flatten(2)
        y_flat = y.flatten(2)  # ignore pixels are already 0 in y
        inter = (s_flat * y_flat).sum(dim=2)
        if cfg.dice_squared:
            denom = (s_flat * s_flat).sum(dim=2) + (y_flat * y_flat).sum(dim=2)
        else:
            denom = s_flat.sum(dim=2) + y_flat.sum(dim=2)
        dice_bc = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)  # (B,C)
        dice = (dice_bc * present.to(dice_bc.dtype)).sum() / num_masks

        loss_focal = cfg.mask_weight * focal
        loss_dice = cfg.dice_weight * dice
        return {"loss_focal": loss_focal, "loss_dice": loss_dice, "loss": loss_focal + loss_dice}


class SigmoidBCELoss(_SigmoidLossBase):
    """"plain" loss: sigmoid BCE with the focal term's targets and normalisation.

    forward(logits (B,C,h,w), labels (B,H,W) long) -> {"loss_bce", "loss"}.
    """

    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        x, y, valid, count, _present, num_masks = self._prepare(logits, labels)
        elem = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        loss_bce = self.cfg.mask_weight * self._pixel_mean_sum(elem, valid, count) / num_masks
        return {"loss_bce": loss_bce, "loss": loss_bce}


class ExclusiveLoss(nn.Module):
    """"el" loss: softmax cross-entropy, mean over non-ignored pixels, x ce_weight.

    forward(logits (B,C,h,w), labels (B,H,W) long) -> {"loss_ce", "loss"}.
    Returns 0 (attached to the graph) when every pixel is ignored.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        logits = _check_and_resize(logits, labels, cfg.ignore_index)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        labels = labels.long()
        total = F.cross_entropy(x, labels, ignore_index=cfg.ignore_index, reduction="sum")
        n_valid = (labels != cfg.ignore_index).sum().to(total.dtype)
        loss_ce = cfg.ce_weight * total / n_valid.clamp(min=1.0)
        return {"loss_ce": loss_ce, "loss": loss_ce}


def build_loss(cfg: LossConfig) -> nn.Module:
    """Return the loss module selected by ``cfg.kind``."""
    if cfg.kind == "el":
        return ExclusiveLoss(cfg)
    if cfg.kind == "plain":
        return SigmoidBCELoss(cfg)
    if cfg.kind == "plus":
        return FocalDiceLoss(cfg)
    raise ValueError(f"LossConfig.kind must be one of {_KINDS}, got {cfg.kind!r}")

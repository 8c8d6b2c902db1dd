"""Training labels for the three settings: inductive remapping and transductive pseudo-labels.

* **Inductive zero-shot**: labels are remapped into the compressed seen space (channel k = seen class
  ``seen[k]``); unseen-class pixels become ``ignore`` (which the official loss treats as negatives).
* **Fully supervised**: labels are used as they are.
* **Transductive self-training** (paper Sec. 4.3): labels stay in the full class space and the decoder queries
  every class. Online pseudo-labels come from the current forward pass (the scores of the training loss - sigmoid,
  or softmax for the exclusive loss, :mod:`zegclip.model.scores` - detached, argmax over the unseen classes, no
  threshold):

  - ``"dagger"`` (†, what the official code does): only pixels whose ground truth is an unseen class are
    pseudo-labelled (their location is known, as in MaskCLIP+);
  - ``"all"``: every unlabelled pixel (unseen ground truth *or* ignore), except image padding, is pseudo-labelled.

Label maps use ``ignore_index`` (255) for ignore; padding added by the training transforms can be marked
with a distinct ``pad_index`` so that the "all" variant does not pseudo-label it.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..model.scores import loss_scores

ST_VARIANTS = ("dagger", "all")
PAD_INDEX = 254  # label of image padding in the training crops of the "all" variant (ignore everywhere else)


def label_table(num_classes: int, keep: Sequence[int], ignore_index: int = 255, compress: bool = True) -> torch.Tensor:
    """A 256-entry lookup table: class ``keep[k]`` -> k (compress) or itself; everything else -> ignore."""
    table = torch.full((256,), ignore_index, dtype=torch.long)
    for k, c in enumerate(keep):
        if not 0 <= c < num_classes:
            raise ValueError(f"class id {c} out of range for {num_classes} classes")
        table[c] = k if compress else c
    return table


def remap(labels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Apply a lookup table to a label map (values must be 0..255)."""
    if labels.min() < 0 or labels.max() > 255:
        raise ValueError(f"label values must be in 0..255, got range [{labels.min().item()}, {labels.max().item()}]")
    return table.to(labels.device)[labels.long()]


def inductive_labels(labels: torch.Tensor, seen: Sequence[int], num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Full-space labels -> seen-space labels; unseen and ignore pixels -> ``ignore_index``."""
    return remap(labels, label_table(num_classes, seen, ignore_index, compress=True))


@torch.no_grad()
def pseudo_labels(
    labels: torch.Tensor,
    logits: torch.Tensor,
    unseen: Sequence[int],
    variant: str = "dagger",
    ignore_index: int = 255,
    pad_index: int | None = None,
    loss_kind: str = "plus",
) -> torch.Tensor:
    """Online self-training targets in the full class space.

    Args:
        labels: (B, H, W) full-space ground truth (unseen ids present), ``ignore_index`` for ignore.
        logits: (B, C_all, h, w) mask logits of the current forward pass (resized to the label size here).
        unseen: unseen class ids; pseudo-labels are argmax over these classes of the scores of ``loss_kind`` (the
            loss that trains the model: sigmoid, or softmax over all classes for ``"el"``).
        variant: ``"dagger"`` (pixels with unseen ground truth) or ``"all"`` (also ignore pixels, not padding).
        pad_index: label value of image padding (never pseudo-labelled; returned as ``ignore_index``).
    Returns (B, H, W) long labels: seen ids kept, chosen pixels set to an unseen id, the rest ``ignore_index``.
    """
    if variant not in ST_VARIANTS:
        raise ValueError(f"self-training variant must be one of {ST_VARIANTS}, got {variant!r}")
    unseen_t = torch.as_tensor(list(unseen), dtype=torch.long, device=labels.device)
    if unseen_t.numel() == 0:
        raise ValueError("self-training needs at least one unseen class")
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    scores = loss_scores(logits.detach().float(), loss_kind)[:, unseen_t]  # (B, U, H, W)
    guess = unseen_t[scores.argmax(dim=1)]  # (B, H, W) full-space unseen ids
    labels = labels.long()
    is_unseen = torch.isin(labels, unseen_t)
    target = labels.clone()
    if variant == "dagger":
        chosen = is_unseen
    else:
        chosen = is_unseen | (labels == ignore_index)
    target[chosen] = guess[chosen]
    if pad_index is not None:
        target[labels == pad_index] = ignore_index
    return target

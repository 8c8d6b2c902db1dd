"""Scores that follow the loss that trained the logits, and the seen-class shift on them.

One rule for every place that turns mask logits into class scores (evaluation, prediction, slide windows,
self-training pseudo-labels):

* a model trained with a **non-mutually exclusive** loss (``"plus"``, ``"plain"``: per-class sigmoid) scores each
  class on its own: ``sigmoid(logits)``, as the official code does;
* a model trained with the **exclusive** loss (``"el"``: softmax cross-entropy) has logits that are defined only up to a
  per-pixel offset, so their sigmoid means nothing; its scores are ``softmax(logits)`` over the evaluated classes;
* the seen-class shift (calibrated stacking; official 0.1, inductive only) is then subtracted from the seen classes'
  scores. Both score kinds lie in [0, 1], so the same shift means the same thing.

Why this matters: the official code only ever trains NEL models and takes the sigmoid. Taken for an EL model, the
sigmoid of logits with an arbitrary offset can sit below the shift for every seen class, and then every seen pixel
goes to an unseen class (in the mini world's Table 5, 10 of 12 variants scored mIoU(S) = 0 that way).

Example::

    >>> import torch
    >>> logits = torch.tensor([[-4.0, -4.5, -6.0]]).view(1, 3, 1, 1)   # an EL model: all logits low
    >>> calibrated_scores(logits, "plus", seen=[0, 1], shift=0.1).argmax(1).item()  # sigmoid: seen pushed below 0
    2
    >>> calibrated_scores(logits, "el", seen=[0, 1], shift=0.1).argmax(1).item()    # softmax: class 0 survives
    0
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["EXCLUSIVE_LOSSES", "is_exclusive", "loss_scores", "calibrated_scores"]

EXCLUSIVE_LOSSES = ("el",)  # loss kinds whose logits compete in a softmax (zegclip.model.losses)


def is_exclusive(loss_kind: str) -> bool:
    """Whether a model trained with ``loss_kind`` gives softmax (True) or sigmoid (False) scores."""
    return loss_kind in EXCLUSIVE_LOSSES


def loss_scores(logits: torch.Tensor, loss_kind: str, dim: int = 1) -> torch.Tensor:
    """Class scores in [0, 1] of logits (classes along ``dim``, e.g. (B, C, H, W)) trained with ``loss_kind``:
    softmax over ``dim`` for an exclusive loss, elementwise sigmoid otherwise. A new tensor."""
    return logits.softmax(dim) if is_exclusive(loss_kind) else logits.sigmoid()


def calibrated_scores(logits: torch.Tensor, loss_kind: str, seen: Sequence[int] | torch.Tensor = (),
                      shift: float = 0.0) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, C, H, W) scores of :func:`loss_scores`, with ``shift`` subtracted from the channels
    ``seen`` (the seen-class calibration; 0 or no seen channels leave the scores as they are)."""
    scores = loss_scores(logits, loss_kind, dim=1)
    seen = torch.as_tensor(seen, dtype=torch.long, device=logits.device)
    if shift and seen.numel():
        scores[:, seen] -= shift
    return scores

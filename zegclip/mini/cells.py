"""Patch cells of label maps: the majority label of each patch, the unit that a ViT token sees.

Used by the diagnosis (the patch oracle, linear probes) and by the mini-CLIP's dense pretraining targets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["patch_labels"]


def patch_labels(label: torch.Tensor, patch: int, num_classes: int, ignore_index: int = 255,
                 background: bool = True) -> torch.Tensor:
    """Majority label of every ``patch`` x ``patch`` cell: (B, H, W) int64 -> (B, H/p, W/p) int64.

    With ``background`` the ignored pixels count as a label of their own (a mostly-background cell is
    ``ignore_index``); without it the majority is taken over labelled pixels only (``ignore_index`` only for a
    cell without any labelled pixel) - the best single label for the cell, since ignored pixels are not scored.
    """
    b, h, w = label.shape
    c = num_classes
    lab = torch.where(label == ignore_index, torch.full_like(label, c), label)
    one_hot = F.one_hot(lab, c + 1).permute(0, 3, 1, 2).float()  # (B, C+1, H, W)
    counts = F.avg_pool2d(one_hot, patch)  # (B, C+1, h, w)
    if not background:
        counts[:, c] = torch.where(counts[:, :c].sum(1) > 0, -1.0, 1.0)
    maj = counts.argmax(1)
    return torch.where(maj == c, torch.full_like(maj, ignore_index), maj)

"""``build_model``: one factory from a preset (or config) to a ready ZegCLIP model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import open_clip
import torch

from .clip import build_towers, default_weights, load_clip_weights, pretrained_tags, resolve_weights_path
from .config import ZegCLIPConfig
from .presets import get_config
from ..data.classes import ClassSplit, load_class_split
from .segmentor import ZegCLIP
from .text import load_embedding_file


def resolve_split(cfg: ZegCLIPConfig) -> ClassSplit:
    """The class split of a config, with its unseen override and the fully-supervised setting applied."""
    split = load_class_split(cfg.split)
    if cfg.unseen is not None:
        split = split.with_unseen(cfg.unseen)
    if cfg.setting == "fully":
        split = split.fully_supervised()
    return split


def build_model(
    preset: str | ZegCLIPConfig = "voc",
    *,
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    text_embeddings: str | os.PathLike | torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    seen: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> ZegCLIP:
    """Build ZegCLIP from a preset name (``voc``, ``coco``, ``context``, mini presets) and field overrides.

    Args:
        weights: local CLIP weights file (OpenAI ``ViT-B-16.pt`` or an open_clip checkpoint); defaults to
            ``$ZEGCLIP_CLIP_WEIGHTS``; or an open_clip pretrained tag (``"openai"``), downloaded through open_clip's
            cache only when named.
        random_init: use randomly initialised CLIP weights (seeded by ``cfg.seed``), for tests and timing.
        text_embeddings: a ``(C, d)`` tensor or an official ``.npy`` file; by default the class names are encoded
            by the CLIP text tower with the preset's templates (cached on disk).
        class_names / seen: a free-text vocabulary instead of the preset's split (``seen``: ids that get the
            seen-class calibration; default none).
        overrides: config fields, e.g. ``encoder={"mode": "ft"}``, ``query_format="t"``, ``setting="fully"``.
    Returns the model in eval mode.
    """
    cfg = get_config(preset, **overrides)
    if random_init and weights is not None:
        raise ValueError("give either weights or random_init=True, not both")
    if weights is None and not random_init:
        weights = default_weights(cfg.clip.model)  # a registered provider (the mini world's CLIP), else None
    if weights is not None and not Path(str(weights)).expanduser().is_file() \
            and str(weights) in pretrained_tags(cfg.clip.model):
        # open_clip's own flag: OpenAI's weights were trained with QuickGELU, most LAION/DataComp ones without it
        tag_quick_gelu = bool(open_clip.pretrained.get_pretrained_cfg(cfg.clip.model, str(weights)).get("quick_gelu"))
        if tag_quick_gelu != cfg.clip.quick_gelu:
            raise ValueError(f"the {weights!r} weights of {cfg.clip.model} were trained with"
                             f"{'' if tag_quick_gelu else 'out'} QuickGELU: set model.clip.quick_gelu={tag_quick_gelu}")
    weights_path = None if random_init else resolve_weights_path(weights, cfg.clip.model)
    if class_names is not None:
        names = list(class_names)
        seen_ids = list(seen or [])
        train_ids = list(range(len(names))) if cfg.setting != "inductive" or not seen_ids else seen_ids
    else:
        split = resolve_split(cfg)
        names, seen_ids = list(split.classes), list(split.seen)
        train_ids = seen_ids if cfg.setting == "inductive" else list(range(len(names)))
    visual, text = build_towers(cfg.clip, seed=cfg.seed)
    if weights_path is not None:
        load_clip_weights(visual, text, weights_path)
    if isinstance(text_embeddings, (str, Path)):
        text_embeddings = load_embedding_file(text_embeddings, num_classes=len(names), dim=visual.output_dim)
    model = ZegCLIP(cfg, visual, text, names, text_embeddings, seen=seen_ids, train_classes=train_ids)
    if device is not None:
        model = model.to(device)
    return model.eval()

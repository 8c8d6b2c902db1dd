"""zegclip: a faithful, readable reimplementation of ZegCLIP (CVPR 2023) on open_clip.

Public API::

    model = zegclip.build_model("voc", weights="ViT-B-16.pt")      # or random_init=True
    logits = model(images)            # (B, C, H, W) mask logits for normalised images
    scores = model.scores(images)     # calibrated per-class scores, slide-window inference
    labels = model.segment(images)    # (B, H, W) label maps
    model = zegclip.load_official_checkpoint("voc_inductive.pth", dataset="voc")
"""
from .model.config import ZegCLIPConfig
from .model.presets import PRESETS, TABLE5_VARIANTS, get_config, register_preset, variant_overrides
from .model.factory import build_model
from .model.losses import LossConfig, build_loss
from .model.segmentor import ZegCLIP
from .model.official import load_official_checkpoint
from . import mini  # noqa: E402,F401  (the bundled plugin: registers the mini presets, datasets and CLIP)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "TABLE5_VARIANTS",
    "LossConfig",
    "ZegCLIP",
    "ZegCLIPConfig",
    "build_loss",
    "build_model",
    "get_config",
    "load_official_checkpoint",
    "register_preset",
    "variant_overrides",
]

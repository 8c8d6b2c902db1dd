"""The mini world's model presets and its CLIP, registered with the core when :mod:`zegclip.mini` is imported.

The core (``zegclip.model.config``, ``zegclip.model.factory``, ``zegclip.data``) never imports the mini world: it offers
registries (:func:`zegclip.model.config.register_preset` here; :func:`zegclip.model.clip.register_default_weights` in
:mod:`zegclip.mini.miniclip`, :func:`zegclip.data.datasets.register_dataset` in :mod:`zegclip.mini.dataset`) and the
mini world fills them, as a third-party plugin would.
"""
from __future__ import annotations

from ..model.backbone import EncoderConfig
from ..model.clip import ClipSpec
from ..model.config import ZegCLIPConfig
from ..model.presets import register_preset
from ..model.decoder import DecoderConfig

__all__ = ["MINI_CLIP_CONFIG", "MINI_PRESETS", "register"]

# The mini world's CLIP: the same open_clip classes as ViT-B/16 at laptop size (zegclip.mini.miniclip pretrains it).
# Vision: 64 px, patch 8 (an 8x8 grid), width 128 x 4 layers, 4 heads; text: width 128 x 3 layers, context 32.
MINI_CLIP_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
}
_MINI = dict(
    clip=ClipSpec(model="mini-clip", config=MINI_CLIP_CONFIG, image_size=64),
    decoder=DecoderConfig(dim=128, heads=4, ffn_dim=512),
    mask_size=None,  # masks go straight to the crop size (the official 512 detour is meaningless at 64 px)
    slide_crop=64,
    slide_stride=48,
)
MINI_PRESETS = (
    # mini-voc: 20 colour x shape classes (15/5), 10 prompts per layer, single template (as VOC)
    ZegCLIPConfig(name="mini-voc", split="mini-voc", encoder=EncoderConfig(num_prompts=10), **_MINI),
    # mini-coco: 30 things + 6 stuff (32/4), 20 prompts per layer, 15-template ensemble (as COCO)
    ZegCLIPConfig(name="mini-coco", split="mini-coco", encoder=EncoderConfig(num_prompts=20), templates="ensemble",
                  **_MINI),
)


def register() -> None:
    """Register the mini presets (idempotent)."""
    for cfg in MINI_PRESETS:
        register_preset(cfg)

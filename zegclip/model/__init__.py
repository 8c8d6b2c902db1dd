"""The paper's method and nothing else: CLIP towers, the prompted encoder, relationship descriptor, mask decoder, the
segmentor, its losses, text embeddings, configs and presets, the factory and the official-checkpoint loader.

Imports point down only: this package uses ``zegclip.typed`` and ``zegclip.io`` (base helpers) and the class lists
of ``zegclip.data.classes``, never the engine, the mini world or the experiments.

    config.py     ZegCLIPConfig: the declarative description of one model
    presets.py    voc / coco / context by name, Table 5 variants as overrides
    clip.py       open_clip towers of ViT-B/16, weight files, default weights registry
    backbone.py   the CLIP image encoder with deep prompts (DPT), fixed or fine-tuned
    queries.py    relationship descriptor: text x image-token queries
    decoder.py    the lightweight mask decoder
    segmentor.py  ZegCLIP: forward, scores, slide-window segment, set_classes
    scores.py     logits -> scores by the training loss (sigmoid / softmax), seen-class shift
    losses.py     focal + dice (+ NEL) losses
    text.py       class text embeddings (templates, cache)
    factory.py    build_model
    official.py   load the official checkpoints
"""
from .config import ZegCLIPConfig
from .factory import build_model, resolve_split
from .losses import LossConfig, build_loss
from .official import load_official_checkpoint
from .presets import PRESETS, TABLE5_VARIANTS, get_config, register_preset, variant_overrides
from .segmentor import ZegCLIP

__all__ = ["PRESETS", "TABLE5_VARIANTS", "LossConfig", "ZegCLIP", "ZegCLIPConfig", "build_loss", "build_model",
           "get_config", "load_official_checkpoint", "register_preset", "resolve_split", "variant_overrides"]

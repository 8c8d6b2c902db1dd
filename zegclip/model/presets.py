"""Named presets (``voc``, ``coco``, ``context``), timm-style, and the paper's Table 5 variants as overrides.

Every paper variant is a field override of a preset, e.g. the 12 rows of Table 5::

    get_config("voc", encoder={"mode": "ft"}, loss={"kind": "el"}, query_format="t")   # Baseline-FT
    get_config("voc", **variant_overrides("DPT+NEL+RD"))                            # ZegCLIP

Other packages add presets through :func:`register_preset` (the mini world registers ``mini-voc`` and
``mini-coco``), so this module never imports them.
"""
from __future__ import annotations

import re
from typing import Any

from .backbone import EncoderConfig
from .config import ZegCLIPConfig
from .queries import DEFAULT_QUERY_FORMAT

PRESETS: dict[str, ZegCLIPConfig] = {
    # PASCAL VOC 2012, 15 seen / 5 unseen, 10 prompts per layer, single-template text embeddings
    "voc": ZegCLIPConfig(name="voc", split="voc", embedding_file="zegclip_voc12_single.npy"),
    # COCO-Stuff 164K, 156 / 15, 100 prompts per layer, 15-template ensemble
    "coco": ZegCLIPConfig(
        name="coco",
        split="coco",
        encoder=EncoderConfig(num_prompts=100),
        templates="ensemble",
        embedding_file="zegclip_coco_multi.npy",
    ),
    # PASCAL Context-60, 50 / 10 (classic ZS3 split; the official repo ships none), 100 prompts, ensemble
    "context": ZegCLIPConfig(
        name="context", split="context60", encoder=EncoderConfig(num_prompts=100), templates="ensemble"
    ),
}


def register_preset(config: ZegCLIPConfig) -> None:
    """Add a preset by its name (the mini world registers ``mini-voc`` and ``mini-coco`` this way)."""
    PRESETS[config.name] = config


def get_config(preset: str | ZegCLIPConfig = "voc", **overrides: Any) -> ZegCLIPConfig:
    """A preset by name (or a config) with overrides applied."""
    from ..plugins import load_plugins

    load_plugins()  # presets of plugins (the mini world's) are registered on first use
    if isinstance(preset, ZegCLIPConfig):
        base = preset
    else:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
        base = PRESETS[preset]
    return base.replace(**overrides) if overrides else base


_VARIANT = re.compile(r"^(?:baseline-)?(fix|ft|dpt)((?:\+(?:nel|rd))*)(?:\s*\(zegclip\))?$")


def variant_overrides(name: str) -> dict[str, Any]:
    """Overrides for the Table 5 variants: ``Fix|FT|DPT`` optionally followed by ``+NEL`` and/or ``+RD``.

    Without NEL the loss is the exclusive softmax cross-entropy; without RD the query is the text embedding
    alone (format ``t``). ``"DPT+NEL+RD"`` is ZegCLIP.
    """
    key = name.strip().lower().replace(" ", "")
    m = _VARIANT.match(key)
    if not m:
        raise ValueError(f"unknown variant {name!r}; use e.g. 'Fix', 'FT+NEL', 'DPT+NEL+RD'")
    extras = set(filter(None, m.group(2).split("+")))
    return {
        "encoder": {"mode": m.group(1)},
        "loss": {"kind": "plus" if "nel" in extras else "el"},
        "query_format": DEFAULT_QUERY_FORMAT if "rd" in extras else "t",
    }


TABLE5_VARIANTS = tuple(
    f"{enc}{nel}{rd}" for enc in ("Fix", "FT", "DPT") for nel, rd in (("", ""), ("+NEL", ""), ("", "+RD"), ("+NEL", "+RD"))
)

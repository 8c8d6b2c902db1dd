"""zegclip: a faithful, readable reimplementation of ZegCLIP (CVPR 2023) on open_clip.

Public API::

    model = zegclip.build_model("voc", weights="ViT-B-16.pt")      # or random_init=True
    logits = model(images)            # (B, C, H, W) mask logits for normalised images
    scores = model.scores(images)     # calibrated per-class scores, slide-window inference
    labels = model.segment(images)    # (B, H, W) label maps
    model = zegclip.load_official_checkpoint("voc_inductive.pth", dataset="voc")
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The public API, imported on first use (PEP 562): ``import zegclip`` and ``python -m zegclip --help`` stay free of
# torch and open_clip, which take seconds to import. Plugins (the bundled mini world) load with the first of these.
_API = {
    "ZegCLIPConfig": ".model.config",
    "PRESETS": ".model.presets",
    "TABLE5_VARIANTS": ".model.presets",
    "get_config": ".model.presets",
    "register_preset": ".model.presets",
    "variant_overrides": ".model.presets",
    "build_model": ".model.factory",
    "LossConfig": ".model.losses",
    "build_loss": ".model.losses",
    "ZegCLIP": ".model.segmentor",
    "load_official_checkpoint": ".model.official",
}

_SUBPACKAGES = ("data", "engine", "experiments", "mini", "model")

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        from .plugins import load_plugins

        load_plugins()
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:  # zegclip.mini.<...> after a bare ``import zegclip``, as before the API went lazy
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'zegclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

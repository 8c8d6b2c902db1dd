"""Shared fixtures: a tiny open_clip config (fast CPU tests of the same code path) and the ../shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_REFERENCE = SHARED / "reference"

# A tiny CLIP with the structure of ViT-B/16 (patch 16, [CLS] token, QuickGELU, CLIP tokenizer).
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 48, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own text-embedding cache directory (never the user's)."""
    monkeypatch.setenv("ZEGCLIP_CACHE", str(tmp_path / "zegclip-cache"))
    monkeypatch.delenv("ZEGCLIP_CLIP_WEIGHTS", raising=False)


def tiny_overrides(**extra):
    """Config overrides that shrink the voc preset to the tiny CLIP (same code path, seconds on a CPU)."""
    out = {
        "clip": {"model": "tiny-test", "config": TINY_CLIP, "image_size": 64},
        "encoder": {"num_prompts": 4},
        "decoder": {"dim": 32, "heads": 4, "ffn_dim": 64},
        "mask_size": None,
        "slide_crop": 64,
        "slide_stride": 48,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


@pytest.fixture
def tiny_model():
    import zegclip

    return zegclip.build_model("voc", random_init=True, **tiny_overrides())


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when that file or folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path

"""Class embeddings: CLIP text embeddings of class names, from the text tower or from official ``.npy`` files.

``class_embeddings`` encodes every (template, class) prompt in batches with open_clip's text tower,
L2-normalises each, averages over templates and normalises again (the single template skips the average).
Results are cached on disk as safetensors, keyed by (model, weights fingerprint, templates, class names), and
written atomically; a corrupt cache file is detected, reported and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .clip import fingerprint, tokenizer_for

SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}",)  # official VOC files: no trailing period
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "a {} in the scene.",
    "a photo of a {} in the scene.",
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "This is a {} in the scene.",
    "This is the {} in the scene.",
    "This is one {} in the scene.",
)
TEMPLATE_SETS = {"single": SINGLE_TEMPLATE, "ensemble": ENSEMBLE_TEMPLATES}


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise ValueError(f"unknown template set {templates!r}; use one of {list(TEMPLATE_SETS)} or a list")
        return TEMPLATE_SETS[templates]
    out = tuple(templates)
    if not out or any("{}" not in t for t in out):
        raise ValueError("templates must be a non-empty list of strings that each contain '{}'")
    return out


def check_class_names(names: Sequence[str]) -> list[str]:
    """Class names as a list; empty lists, empty names and duplicates are errors."""
    if isinstance(names, str):
        raise ValueError("class names must be a list of strings, not one string")
    names = list(names)
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise ValueError(f"class name at position {i} is {type(n).__name__} {n!r}, not a string")
    names = [n.strip() for n in names]
    if not names:
        raise ValueError("the class-name list is empty")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(f"class name at position {empty[0]} is empty")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"duplicate class name {n!r} at positions {seen[n]} and {i}")
        seen[n] = i
    return names


@torch.no_grad()
def encode_class_names(
    text_tower: nn.Module,
    names: Sequence[str],
    templates: str | Sequence[str] = "single",
    batch_size: int = 256,
) -> torch.Tensor:
    """(C, d) float32, L2-normalised rows: template-averaged CLIP text embeddings of ``names``."""
    names = check_class_names(names)
    templates = resolve_templates(templates)
    tokenizer = tokenizer_for(text_tower)
    device = next(text_tower.parameters()).device
    prompts = [t.format(n) for n in names for t in templates]
    was_training = text_tower.training
    text_tower.eval()
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start : start + batch_size]).to(device)
        chunks.append(F.normalize(text_tower(tokens).float(), dim=-1))
    text_tower.train(was_training)
    emb = torch.cat(chunks).reshape(len(names), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1).cpu()


def cache_dir() -> Path:
    return Path(os.environ.get("ZEGCLIP_CACHE", Path.home() / ".cache" / "zegclip"))


def _cache_key(model_id: str, weights_id: str, templates: Sequence[str], names: Sequence[str]) -> str:
    blob = json.dumps([model_id, weights_id, list(templates), list(names)], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def save_tensor_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file with the package's atomic writer (:func:`zegclip.io.atomic_path`)."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def class_embeddings(
    text_tower: nn.Module,
    names: Sequence[str],
    templates: str | Sequence[str] = "single",
    model_id: str = "",
    use_cache: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """Like :func:`encode_class_names`, with an on-disk cache under ``$ZEGCLIP_CACHE/text`` (default ~/.cache/zegclip)."""
    names = check_class_names(names)
    templates = resolve_templates(templates)
    if not use_cache:
        return encode_class_names(text_tower, names, templates, batch_size)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    key = _cache_key(model_id, fingerprint(text_tower), templates, names)
    path = cache_dir() / "text" / f"{key}.safetensors"
    if path.exists():
        try:
            emb = load_file(str(path))["embeddings"]
            if emb.shape[0] == len(names) and torch.isfinite(emb).all():
                return emb
            warnings.warn(f"text-embedding cache {path} does not match its key; rebuilding it")
        except (SafetensorError, KeyError, OSError, ValueError) as exc:
            warnings.warn(f"text-embedding cache {path} is corrupt ({type(exc).__name__}); rebuilding it")
    emb = encode_class_names(text_tower, names, templates, batch_size)
    save_tensor_atomic(path, {"embeddings": emb}, {"names": json.dumps(names), "templates": json.dumps(list(templates))})
    return emb


def load_embedding_file(path: str | os.PathLike, num_classes: int | None = None, dim: int | None = None) -> torch.Tensor:
    """Read an official ``.npy`` class-embedding file (C, d) (float16 in the official repo) as float32."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text-embedding file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read text-embedding file {path}: {exc}".splitlines()[0]) from exc
    if array.ndim != 2:
        raise ValueError(f"text-embedding file {path} has shape {array.shape}; expected (classes, dim)")
    if num_classes is not None and array.shape[0] != num_classes:
        raise ValueError(f"text-embedding file {path} has {array.shape[0]} rows but there are {num_classes} classes")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"text-embedding file {path} has dimension {array.shape[1]} but the model needs {dim}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"text-embedding file {path} holds {array.dtype} values, not numbers")
    bad = int((~np.isfinite(array.astype(np.float64))).sum())
    if bad:
        raise ValueError(f"text-embedding file {path} has {bad} NaN or infinite value(s)")
    return torch.from_numpy(array.astype(np.float32))

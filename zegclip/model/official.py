"""Import of the released ZegCLIP checkpoints (mmseg format) into :class:`zegclip.model.segmentor.ZegCLIP`.

An official checkpoint holds ``state_dict`` with three groups of keys (see the fact sheet / the state-dict
listing): ``backbone.*`` (CLIP ViT-B/16 with the 1025-row positional table, plus the prompt parameters),
``decode_head.*`` (decoder layers under ``decoder_1.layers.N`` and the query projection ``q_proj``) and
``text_encoder.*`` (the frozen CLIP text transformer). The mapping to this package is one-to-one:

=====================================  ==========================================
official                               zegclip
=====================================  ==========================================
``backbone.{prompt_*,deep_prompt_*}``  ``backbone.{same}``
``backbone.<clip name>``               ``backbone.vit.<clip name>`` (open_clip names)
``decode_head.decoder_1.layers.N.*``   ``decoder.layers.N.*``
``decode_head.q_proj.*``               ``queries.proj.*``
``text_encoder.*``                     ``text_encoder.*``
``decode_head.loss_decode.criterion.empty_weight``  dropped (an unused loss buffer)
=====================================  ==========================================
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from .clip import WeightsError
from .factory import build_model, resolve_split
from .presets import get_config
from .segmentor import ZegCLIP
from .text import load_embedding_file

_DROPPED = {"decode_head.loss_decode.criterion.empty_weight"}
_MODEL_ONLY = {"class_embeddings", "seen_idx", "train_idx"}  # set from the class list, not the checkpoint


def map_official_key(key: str) -> str | None:
    """The zegclip name of an official key; None for keys that are dropped; KeyError for unknown keys."""
    if key in _DROPPED:
        return None
    if key.startswith("backbone."):
        rest = key[len("backbone."):]
        if rest.startswith(("prompt_", "deep_prompt_")):
            return "backbone." + rest
        return "backbone.vit." + rest
    if key.startswith("decode_head.decoder_1.layers."):
        return "decoder." + key[len("decode_head.decoder_1."):]
    if key.startswith("decode_head.q_proj."):
        return "queries.proj." + key[len("decode_head.q_proj."):]
    if key.startswith("text_encoder."):
        return key
    raise KeyError(key)


def official_key(name: str) -> str:
    """Inverse of :func:`map_official_key`: the official name of a zegclip key (for error messages)."""
    if name.startswith("backbone.vit."):
        return "backbone." + name[len("backbone.vit."):]
    if name.startswith("decoder."):
        return "decode_head.decoder_1." + name[len("decoder."):]
    if name.startswith("queries.proj."):
        return "decode_head.q_proj." + name[len("queries.proj."):]
    return name


def read_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an mmseg checkpoint, read with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"cannot read official checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def convert_official_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename official keys to zegclip keys; unknown keys are an error that lists them."""
    out, unknown = {}, []
    for key, value in state.items():
        try:
            new = map_official_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new is not None:
            out[new] = value
    if unknown:
        raise WeightsError(f"{source}: unknown keys for an official ZegCLIP checkpoint: {unknown[:8]}"
                           f"{' ...' if len(unknown) > 8 else ''}")
    return out


def load_official_checkpoint(
    path: str | os.PathLike,
    dataset: str = "voc",
    text_embeddings: str | os.PathLike | torch.Tensor | None = None,
    setting: str = "inductive",
    device: str | torch.device | None = None,
) -> ZegCLIP:
    """Load a released ZegCLIP checkpoint into a ready model in eval mode.

    Args:
        path: the ``.pth`` file (mmseg format); read with ``weights_only=True``.
        dataset: the preset whose classes and split to use (``voc``, ``coco``, ``context``); for a cross-dataset
            evaluation give the *target* dataset (e.g. a COCO checkpoint with ``dataset="voc"``). The number of
            prompt tokens is taken from the checkpoint.
        text_embeddings: an official ``.npy`` file or a (C, d) tensor; by default the class names are encoded
            with the checkpoint's own CLIP text encoder and the preset's templates.
        setting: ``"transductive"`` for self-training checkpoints (no seen-class calibration at test).
    """
    state = convert_official_state_dict(read_official_state_dict(path), source=str(path))
    prompts = state.get("backbone.prompt_embeddings")
    if prompts is None:
        raise WeightsError(f"{path}: no backbone.prompt_embeddings; not a ZegCLIP (deep prompt tuning) checkpoint")
    cfg = get_config(dataset, setting=setting, encoder={"num_prompts": int(prompts.shape[1])})
    split = resolve_split(cfg)
    placeholder = torch.zeros(split.num_classes, cfg.clip.model_config()["embed_dim"])
    model = build_model(cfg, random_init=True, text_embeddings=placeholder)
    expected = {k for k in model.state_dict() if k not in _MODEL_ONLY}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightsError(f"{path}: checkpoint does not fit the {dataset!r} model "
                           f"(missing {[official_key(k) for k in missing[:8]]}, "
                           f"unexpected {[official_key(k) for k in unexpected[:8]]})")
    own = model.state_dict()
    for key in expected:
        if own[key].shape != state[key].shape:
            raise WeightsError(f"{path}: {official_key(key)} has shape {tuple(state[key].shape)}, expected {tuple(own[key].shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if isinstance(text_embeddings, (str, Path)):
        text_embeddings = load_embedding_file(text_embeddings, num_classes=split.num_classes, dim=model.embed_dim)
    model.set_classes(split.classes, seen=split.seen, embeddings=text_embeddings,
                      train_classes=model.train_idx.tolist())
    if device is not None:
        model = model.to(device)
    return model.eval()

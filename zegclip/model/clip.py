"""CLIP towers from ``open_clip``: build them from a declarative config and load local weight files.

ZegCLIP uses the two towers of CLIP separately: the vision transformer (which the prompted encoder in
:mod:`zegclip.model.backbone` runs block by block) and the text transformer (which turns class names into class
embeddings, :mod:`zegclip.model.text`). Both are open_clip's own modules, built with ``pretrained=None`` semantics:
nothing is ever downloaded. Weights come from a local file:

* the OpenAI TorchScript archive ``ViT-B-16.pt`` (what the official ZegCLIP code loads), or
* an open_clip checkpoint (``.pt``/``.bin`` state dict, optionally under ``state_dict``, or ``.safetensors``).

The 14x14 positional table of a 224-px checkpoint is resized to the training grid (32x32 for 512 crops) with
**bilinear** interpolation, as the official code does (open_clip itself would use bicubic).
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

import open_clip
from open_clip.model import CLIPTextCfg, CLIPVisionCfg, _build_text_tower, _build_vision_tower

WEIGHTS_ENV = "ZEGCLIP_CLIP_WEIGHTS"
OPENAI_URL_HINT = "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"


class WeightsError(ValueError):
    """A CLIP weights file is missing, unreadable or does not fit the model."""


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to build: an open_clip model name or an explicit open_clip model config.

    ``image_size`` is the training crop; the vision tower's positional table is built for it.
    """

    model: str = "ViT-B-16"
    config: Mapping | None = None  # explicit open_clip model config (embed_dim, vision_cfg, text_cfg)
    quick_gelu: bool = True  # OpenAI CLIP weights were trained with QuickGELU
    image_size: int = 512

    def model_config(self) -> dict:
        cfg = dict(self.config) if self.config is not None else open_clip.get_model_config(self.model)
        if cfg is None:
            raise ValueError(f"unknown open_clip model {self.model!r}; pass an explicit config instead")
        cfg = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()}
        cfg["vision_cfg"]["image_size"] = self.image_size
        return cfg


def build_towers(spec: ClipSpec, seed: int | None = 0) -> tuple[nn.Module, nn.Module]:
    """Build (vision tower, text tower) with open_clip's own classes, randomly initialised.

    The initialisation is made deterministic by ``seed`` (the global RNG is left untouched), so that random
    weights used for tests and speed measurements are reproducible.
    """
    cfg = spec.model_config()
    vision_cfg = CLIPVisionCfg(**cfg["vision_cfg"])
    text_cfg = CLIPTextCfg(**cfg["text_cfg"])
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        visual = _build_vision_tower(cfg["embed_dim"], vision_cfg, quick_gelu=spec.quick_gelu)
        text = _build_text_tower(cfg["embed_dim"], text_cfg, quick_gelu=spec.quick_gelu)
        # open_clip leaves the text tower's initialisation to the CLIP wrapper; do it here.
        text.init_parameters()
    return visual, text


def tokenizer_for(text_tower: nn.Module):
    """The CLIP BPE tokenizer (bundled with open_clip) with the text tower's context length."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=text_tower.context_length)


# --------------------------------------------------------------------------------------------------------------
# Weight files


# Default weights of CLIP models by name, for models whose weights a plugin provides (the mini world's "mini-clip",
# pretrained and cached on first use). ViT-B-16 has none: its weights are a file the user names.
_DEFAULT_WEIGHTS: dict[str, Callable[[], Path]] = {}


def register_default_weights(model: str, provider: Callable[[], Path]) -> None:
    """Make ``provider()`` (returning a weights file) the default weights of CLIP model ``model``."""
    _DEFAULT_WEIGHTS[model] = provider


def default_weights(model: str) -> Path | None:
    """The registered default weights file of CLIP model ``model`` (calling its provider), or None."""
    from ..plugins import load_plugins

    load_plugins()
    provider = _DEFAULT_WEIGHTS.get(model)
    return None if provider is None else Path(provider())


def pretrained_tags(model: str = "ViT-B-16") -> list[str]:
    """open_clip's pretrained tags of ``model`` (``openai``, ``laion2b_s34b_b88k``, ...); empty for other models."""
    try:
        return list(open_clip.pretrained.list_pretrained_tags_by_model(model))
    except Exception:  # noqa: BLE001 - an unknown model has no tags
        return []


def fetch_pretrained(model: str, tag: str) -> Path:
    """Download (or find in open_clip's cache) the weights of ``model`` under pretrained ``tag``, through open_clip's
    own download and cache. Only called when a tag is named; without network a one-line :class:`WeightsError` says
    which file to fetch by hand and how to pass it."""
    cfg = open_clip.pretrained.get_pretrained_cfg(model, tag)
    if not cfg:
        raise WeightsError(f"{tag!r} is not a pretrained tag of {model}; known: {', '.join(pretrained_tags(model))}")
    hint = cfg.get("url") or (f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else "")
    try:
        path = open_clip.pretrained.download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a hub error: all end the same way
        raise WeightsError(
            f"cannot download the {model} weights {tag!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"fetch {hint} by hand, then pass weights='/path/file' (--weights /path/file) or set {WEIGHTS_ENV}"
        ) from exc
    if not path:
        raise WeightsError(f"open_clip has no download for {model} {tag!r}; fetch {hint} by hand and pass --weights")
    return Path(path)


def resolve_weights_path(weights: str | os.PathLike | None, model: str = "ViT-B-16") -> Path:
    """The weights file given by argument, else by the environment variable; a clear error if neither exists.

    A name that is not a file but one of open_clip's pretrained tags of ``model`` (``openai``,
    ``laion2b_s34b_b88k``, ...) is fetched through open_clip's download and cache (:func:`fetch_pretrained`):
    only when a tag is named, never by default.
    """
    source = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
    if not source:
        raise WeightsError(
            "CLIP ViT-B/16 weights are needed but none were given: download OpenAI's ViT-B-16.pt "
            f"({OPENAI_URL_HINT}) or an open_clip ViT-B-16 checkpoint yourself, then pass weights='/path/ViT-B-16.pt' "
            f"(--weights on the command line) or set {WEIGHTS_ENV}=/path/ViT-B-16.pt; "
            "use random_init=True (--random-init) to run with random weights; or name an open_clip tag "
            "(weights='openai') to download it"
        )
    path = Path(source).expanduser()
    if not path.is_file():
        if str(source) in pretrained_tags(model):
            return fetch_pretrained(model, str(source))
        origin = "argument" if weights is not None else f"${WEIGHTS_ENV}"
        tags = pretrained_tags(model)
        raise WeightsError(f"CLIP weights file not found: {path} (from {origin})"
                           + (f"; nor is it a pretrained tag of {model} ({', '.join(tags[:4])}, ...)" if tags else ""))
    return path


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict from an OpenAI TorchScript archive, a torch pickle or a safetensors file.

    Torch pickles are read with ``weights_only=True``. Wrappers (``state_dict``/``model`` keys, ``module.``
    prefixes) are removed. Any failure raises :class:`WeightsError` naming the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            # OpenAI's release format; TorchScript code is only deserialised, never run here.
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
        raise WeightsError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    # the text tower's causal attn_mask holds -inf by design (a buffer, ignored when loading)
    bad = next((k for k, v in obj.items() if v.is_floating_point() and not k.endswith("attn_mask")
                and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise WeightsError(f"weights file {path}: tensor {bad} has NaN or infinite values")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def resize_positional_embedding(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a (1 + h*w, D) positional table to (1 + grid[0]*grid[1], D), bilinear, keeping the CLS row."""
    cls_row, spatial = pos[:1], pos[1:]
    old = int(round(spatial.shape[0] ** 0.5))
    if old * old != spatial.shape[0]:
        raise WeightsError(f"positional embedding with {spatial.shape[0]} spatial rows is not a square grid")
    if (old, old) == tuple(grid):
        return pos
    table = spatial.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    table = F.interpolate(table, size=grid, mode="bilinear", align_corners=False)
    table = table.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([cls_row, table], dim=0)


# attn_mask: the text tower's causal mask, a non-persistent buffer that TorchScript archives still save
_IGNORED_CLIP_KEYS = {"logit_scale", "logit_bias", "input_resolution", "context_length", "vocab_size", "attn_mask"}


def load_clip_weights(visual: nn.Module, text: nn.Module, path: str | os.PathLike) -> None:
    """Load an OpenAI/open_clip CLIP state dict into the two towers (strict, shapes checked)."""
    state = read_state_dict(path)
    vis_state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    txt_state = {k: v for k, v in state.items() if not k.startswith("visual.") and k not in _IGNORED_CLIP_KEYS}
    if "positional_embedding" in vis_state:
        # resize in float32 (as the official code, which calls .float() first): no fp16 re-rounding of the result
        vis_state["positional_embedding"] = resize_positional_embedding(
            vis_state["positional_embedding"].float(), tuple(visual.grid_size)
        )
    for name, module, sub in (("visual", visual, vis_state), ("text", text, txt_state)):
        expected = module.state_dict()
        missing = sorted(set(expected) - set(sub))
        unexpected = sorted(set(sub) - set(expected))
        if missing or unexpected:
            raise WeightsError(
                f"{path}: not a CLIP checkpoint for this {name} tower "
                f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
            )
        bad = [k for k in expected if expected[k].shape != sub[k].shape]
        if bad:
            k = bad[0]
            raise WeightsError(
                f"{path}: {name} weight {k} has shape {tuple(sub[k].shape)}, the model expects {tuple(expected[k].shape)}"
            )
        module.load_state_dict({k: v.float() for k, v in sub.items()})


def fingerprint(module: nn.Module) -> str:
    """A short content hash of a module's parameters and buffers (identifies weights for caches)."""
    digest = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{tuple(tensor.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

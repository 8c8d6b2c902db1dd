"""Declarative model configuration and named presets (``voc``, ``coco``, ``context``).

A :class:`ZegCLIPConfig` fully describes a ZegCLIP model; presets are configs by name, timm-style, and every
paper variant is a field override, e.g. the 12 rows of Table 5::

    get_config("voc", encoder={"mode": "ft"}, loss={"kind": "el"}, query_format="t")   # Baseline-FT
    get_config("voc", **variant_overrides("DPT+NEL+RD"))                            # ZegCLIP

Defaults follow the official code; the paper's variants are switches documented on each field.
Configs round-trip through plain dicts (``to_dict`` / ``from_dict``) so that runs save them as JSON.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .backbone import EncoderConfig
from .clip import ClipSpec
from .decoder import DecoderConfig
from .losses import LossConfig
from .queries import DEFAULT_QUERY_FORMAT, canonical_format

SETTINGS = ("inductive", "transductive", "fully")
NORMALIZATIONS = {
    # (mean, std) on 0..255 RGB; the official code uses ImageNet statistics, not CLIP's own
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "clip": ((122.770938, 116.7460125, 104.09373615), (68.5005327, 66.6321579, 70.32316305)),
}


@dataclass(frozen=True)
class ZegCLIPConfig:
    name: str = "voc"
    clip: ClipSpec = field(default_factory=ClipSpec)
    split: str = "voc"  # packaged split name (voc, coco, context60, context59) or a path to a split JSON
    unseen: tuple[int, ...] | None = None  # override the split's unseen ids (e.g. another Context split)
    setting: str = "inductive"  # inductive zero-shot | transductive (self-training) | fully supervised
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    query_format: str = DEFAULT_QUERY_FORMAT
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    templates: str = "single"  # "single" ("a photo of a {}") or "ensemble" (15 templates)
    embedding_file: str | None = None  # official .npy file name for this class order (informational)
    seen_calibration: float = 0.1  # official: seen-class sigmoid scores -= 0.1 at test (not in the paper; 0 = paper)
    mask_size: int | None = 512  # official: masks are resized to 512 first, then to the crop; None = crop directly
    slide_crop: int = 512
    slide_stride: int = 426
    normalization: str = "imagenet"  # official: ImageNet mean/std; "clip" = CLIP's own statistics
    seed: int = 0  # seed of the random initialisation (prompts, decoder, and CLIP when random_init)

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        object.__setattr__(self, "query_format", canonical_format(self.query_format))
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {list(NORMALIZATIONS)}, got {self.normalization!r}")
        if self.templates not in ("single", "ensemble"):
            raise ValueError(f"templates must be 'single' or 'ensemble', got {self.templates!r}")
        if self.slide_crop < 1 or not 0 < self.slide_stride <= self.slide_crop:
            raise ValueError(f"need 0 < slide_stride <= slide_crop, got {self.slide_stride} and {self.slide_crop}")
        if not 0.0 <= self.seen_calibration < 1.0:
            raise ValueError(f"seen_calibration must be in [0, 1), got {self.seen_calibration}")
        if self.unseen is not None:
            object.__setattr__(self, "unseen", tuple(int(i) for i in self.unseen))

    @property
    def calibration(self) -> float:
        """The shift applied to seen-class scores at test time: none after self-training (official)."""
        return 0.0 if self.setting == "transductive" else self.seen_calibration

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ZegCLIPConfig":
        return _apply(cls(), data)

    def replace(self, **overrides: Any) -> "ZegCLIPConfig":
        """A copy with fields replaced; nested configs accept dicts of their own fields."""
        return _apply(self, overrides)


_NESTED = {"clip": ClipSpec, "encoder": EncoderConfig, "decoder": DecoderConfig, "loss": LossConfig}


def _apply(cfg: ZegCLIPConfig, overrides: Mapping[str, Any]) -> ZegCLIPConfig:
    """``cfg`` with ``overrides`` applied; nested sections (clip, encoder, decoder, loss) merge over the current
    section, and every value is converted to its field's type (:mod:`zegclip.typed`)."""
    from .typed import ConfigError, build, convert_fields

    plain = {k: v for k, v in overrides.items() if not (k in _NESTED and isinstance(v, Mapping))}
    changes = convert_fields(ZegCLIPConfig, plain, "")
    for key, value in overrides.items():
        if key in _NESTED and isinstance(value, Mapping):
            changes[key] = build(_NESTED[key], value, key, base=getattr(cfg, key))
    try:
        return dataclasses.replace(cfg, **changes)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:  # a check in __post_init__
        raise ConfigError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


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

"""Declarative model configuration: :class:`ZegCLIPConfig` fully describes a ZegCLIP model.

Named presets and the paper's variants as overrides are in :mod:`zegclip.model.presets`.
Defaults follow the official code; the paper's variants are switches documented on each field.
Configs round-trip through plain dicts (``to_dict`` / ``from_dict``) so that runs save them as JSON.
"""
from __future__ import annotations

import dataclasses
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
    from ..typed import ConfigError, build, convert_fields

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


"""Joint image/label transforms (``torchvision.transforms.v2``) reproducing the official mmseg pipelines.

Training (reference §8.3)::

    RandomScaleResize((2048, 512), ratio 0.5-2.0) -> RandomCropCatMax(512, cat_max_ratio=0.75)
    -> RandomHorizontalFlip(0.5) -> PhotoMetricDistortion -> Normalize -> PadToSize(512; image 0, label 255)

Test (reference §8.4): ``ResizeShortSide(512)`` on the image only (the label keeps its original size, since
evaluation happens at the original resolution), then ``Normalize``.

Inputs are a pair ``(tv_tensors.Image uint8 (3,H,W), tv_tensors.Mask (H,W))``; pipelines return
``(image float32 (3,H,W), label int64 (H,W))`` as plain tensors. The label must already be in training ids
(``reduce_zero_label`` applied by the dataset), as in mmseg, where the annotation is reduced at loading time,
before ``RandomCrop`` counts classes.

Randomness: every random draw comes from **torch's global RNG** (``torch.rand``/``torch.randint``), never from
``random`` or ``numpy``. Seeding torch (``torch.manual_seed``) therefore makes a pipeline reproducible, and a
``DataLoader`` gives each worker its own torch seed (``base_seed + worker_id``), so seeding the loader's
generator makes multi-worker loading reproducible as well.

Resizing mimics mmcv/OpenCV: bilinear *without* antialiasing for images, nearest for labels, and mmcv's rounding
of the output size (``int(x * factor + 0.5)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = [
    "RandomScaleResize",
    "ResizeShortSide",
    "RandomCropCatMax",
    "PhotoMetricDistortion",
    "PadToSize",
    "train_transforms",
    "test_transforms",
    "normalization_stats",
    "rgb_to_hsv",
    "hsv_to_rgb",
]


# --------------------------------------------------------------------------- helpers
def normalization_stats(normalization: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on the 0..255 scale for ``"imagenet"`` (official) or ``"clip"``."""
    from ..model.config import NORMALIZATIONS

    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r}")
    mean, std = NORMALIZATIONS[normalization]
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _first(flat_inputs: list[Any], kind: type) -> Any | None:
    for inpt in flat_inputs:
        if isinstance(inpt, kind):
            return inpt
    return None


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """(H, W) of the image (or, failing that, the mask) in a sample."""
    ref = _first(flat_inputs, tv_tensors.Image)
    if ref is None:
        ref = _first(flat_inputs, tv_tensors.Mask)
    if ref is None:
        ref = next((x for x in flat_inputs if isinstance(x, torch.Tensor)), None)
    if ref is None:
        raise TypeError("the sample holds no image or mask tensor")
    h, w = F.get_size(ref)
    return int(h), int(w)


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()).item())


def _coin() -> bool:
    return bool(torch.randint(0, 2, ()).item())


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return size  # type: ignore[return-value]


def _resize(inpt: Any, size: tuple[int, int]) -> Any:
    # Mask inputs are dispatched to torchvision's mask kernel, which always uses nearest interpolation.
    return F.resize(inpt, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=False)


# --------------------------------------------------------------------------- resize
class RandomScaleResize(v2.Transform):
    """mmseg ``Resize(img_scale=scale, ratio_range=..., keep_ratio=True)``.

    A ratio ``r ~ U(ratio_range)`` gives the target scale ``(int(long * r), int(short * r))``; the image is
    rescaled by ``min(long_target / long_side, short_target / short_side)`` (aspect ratio kept), image bilinear,
    label nearest. With the default (2048, 512) the short side usually becomes ``512 r``.
    """

    def __init__(self, scale: Sequence[int] = (2048, 512), ratio_range: Sequence[float] = (0.5, 2.0)) -> None:
        super().__init__()
        if len(scale) != 2 or min(scale) < 1:
            raise ValueError(f"scale must be two positive ints, got {scale!r}")
        lo, hi = (float(r) for r in ratio_range)
        if not 0 < lo <= hi:
            raise ValueError(f"ratio_range must satisfy 0 < low <= high, got {ratio_range!r}")
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = (lo, hi)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        r = _uniform(*self.ratio_range)
        target = (int(self.scale[0] * r), int(self.scale[1] * r))
        factor = min(max(target) / max(h, w), min(target) / min(h, w))
        size = (max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5)))
        return {"size": size, "ratio": r}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, params["size"])


class ResizeShortSide(v2.Transform):
    """Test-time resize: the short side becomes exactly ``short_side``, the long side scales proportionally
    (no cap), bilinear. Only the image is resized; masks pass through untouched (evaluation is done at the
    original label size)."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, short_side: int = 512) -> None:
        super().__init__()
        if short_side < 1:
            raise ValueError(f"short_side must be positive, got {short_side}")
        self.short_side = int(short_side)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        s = self.short_side
        if h <= w:
            size = (s, max(1, int(w * s / h + 0.5)))
        else:
            size = (max(1, int(h * s / w + 0.5)), s)
        return {"size": size}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, params["size"])


# --------------------------------------------------------------------------- crop
class RandomCropCatMax(v2.Transform):
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``.

    A crop of ``min(crop, H) x min(crop, W)`` at a uniformly random offset. When ``cat_max_ratio < 1`` and the
    sample has a mask, a crop is accepted only if its most frequent non-ignored class covers less than
    ``cat_max_ratio`` of the labelled pixels and at least two classes are present; otherwise a new offset is drawn.
    As in mmseg, ``max_tries`` (10) candidates are checked and, if all fail, one more offset is drawn and used
    as is.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int] = 512,
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        max_tries: int = 10,
    ) -> None:
        super().__init__()
        self.crop_size = _pair(crop_size, "crop_size")
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}")
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)
        self.max_tries = int(max_tries)

    def _offset(self, h: int, w: int, ch: int, cw: int) -> tuple[int, int]:
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        return top, left

    def _acceptable(self, mask: torch.Tensor) -> bool:
        values = mask.reshape(-1)
        values = values[values != self.ignore_index]
        if values.numel() == 0:
            return False
        _, counts = torch.unique(values, return_counts=True)
        if counts.numel() < 2:
            return False
        return bool(counts.max().item() / counts.sum().item() < self.cat_max_ratio)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        top, left = self._offset(h, w, ch, cw)
        mask = _first(flat_inputs, tv_tensors.Mask)
        if mask is not None and self.cat_max_ratio < 1.0:
            plain = mask.as_subclass(torch.Tensor)
            plain = plain.reshape(plain.shape[-2:]) if plain.ndim > 2 and plain.shape[0] == 1 else plain
            for _ in range(self.max_tries):
                if self._acceptable(plain[..., top : top + ch, left : left + cw]):
                    break
                top, left = self._offset(h, w, ch, cw)
        return {"top": top, "left": left, "height": ch, "width": cw}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, params["top"], params["left"], params["height"], params["width"])


# --------------------------------------------------------------------------- photometric
def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a full turn)."""
    r, g, b = rgb.unbind(-3)
    maxc = rgb.amax(-3)
    minc = rgb.amin(-3)
    delta = maxc - minc
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    safe_max = torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    s = torch.where(maxc > 0, delta / safe_max, torch.zeros_like(maxc))
    rc = (maxc - r) / safe_delta
    gc = (maxc - g) / safe_delta
    bc = (maxc - b) / safe_delta
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv.unbind(-3)
    h6 = torch.remainder(h, 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.to(torch.int64) % 6
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    choices_r = torch.stack((v, q, p, p, t, v), dim=0)
    choices_g = torch.stack((t, v, v, q, p, p), dim=0)
    choices_b = torch.stack((p, p, t, v, v, q), dim=0)
    idx = i.unsqueeze(0)
    r = choices_r.gather(0, idx).squeeze(0)
    g = choices_g.gather(0, idx).squeeze(0)
    b = choices_b.gather(0, idx).squeeze(0)
    return torch.stack((r, g, b), dim=-3)


class PhotoMetricDistortion(v2.Transform):
    """mmseg ``PhotoMetricDistortion`` with its defaults; acts on the image only (masks pass through).

    In order: brightness ``+U(-32, 32)`` (p 0.5); contrast ``xU(0.5, 1.5)`` (p 0.5) either here or last (a fair
    coin picks the mode); saturation ``xU(0.5, 1.5)`` in HSV (p 0.5); hue shift (p 0.5); contrast if not done
    before. Each step clips to [0, 255] and truncates to integers as mmseg's uint8 conversions do.

    The hue shift is mmseg's: an integer ``d`` in ``[-hue_delta, hue_delta)`` added to OpenCV's 8-bit hue, whose
    scale is 0..179 (2 degrees per unit), i.e. up to about +-36 degrees for ``hue_delta=18``.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        super().__init__()
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = int(hue_delta)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        params["brightness"] = _uniform(-self.brightness_delta, self.brightness_delta) if _coin() else None
        params["contrast_first"] = _coin()
        params["contrast"] = _uniform(*self.contrast_range) if _coin() else None
        params["saturation"] = _uniform(*self.saturation_range) if _coin() else None
        if _coin() and self.hue_delta > 0:
            params["hue"] = int(torch.randint(-self.hue_delta, self.hue_delta, ()).item())
        else:
            params["hue"] = None
        return params

    @staticmethod
    def _to_uint8_range(x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x.clamp(0.0, 255.0))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = inpt.as_subclass(torch.Tensor)
        if x.shape[-3] != 3:
            raise ValueError(f"PhotoMetricDistortion expects a 3-channel image, got shape {tuple(x.shape)}")
        is_int = not x.is_floating_point()
        out = x.to(torch.float32)
        if params["brightness"] is not None:
            out = self._to_uint8_range(out + params["brightness"])
        if params["contrast_first"] and params["contrast"] is not None:
            out = self._to_uint8_range(out * params["contrast"])
        if params["saturation"] is not None or params["hue"] is not None:
            hsv = rgb_to_hsv(out / 255.0)
            h, s, v = hsv.unbind(-3)
            if params["saturation"] is not None:
                s = torch.floor((s * 255.0 * params["saturation"]).clamp(0.0, 255.0)) / 255.0
            if params["hue"] is not None:
                h = torch.remainder(h + params["hue"] / 180.0, 1.0)
            out = torch.round(hsv_to_rgb(torch.stack((h, s, v), dim=-3)) * 255.0).clamp(0.0, 255.0)
        if not params["contrast_first"] and params["contrast"] is not None:
            out = self._to_uint8_range(out * params["contrast"])
        out = out.to(x.dtype) if is_int else out
        return tv_tensors.wrap(out, like=inpt)


# --------------------------------------------------------------------------- pad
class PadToSize(v2.Transform):
    """Pad bottom/right up to ``size`` (no-op where already as large): images with ``fill``, masks with
    ``seg_fill`` (the ignore index)."""

    def __init__(self, size: int | Sequence[int] = 512, fill: float = 0.0, seg_fill: int = 255) -> None:
        super().__init__()
        self.size = _pair(size, "size")
        self.fill = fill
        self.seg_fill = int(seg_fill)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _spatial_size(flat_inputs)
        return {"bottom": max(0, self.size[0] - h), "right": max(0, self.size[1] - w)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["bottom"] == 0 and params["right"] == 0:
            return inpt
        fill = self.seg_fill if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, [0, 0, params["right"], params["bottom"]], fill=fill, padding_mode="constant")


# --------------------------------------------------------------------------- pipelines
def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=False),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def train_transforms(
    crop_size: int | Sequence[int] = 512,
    scale: Sequence[int] = (2048, 512),
    ratio_range: Sequence[float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
    normalization: str = "imagenet",
    *,
    flip_prob: float = 0.5,
    photometric: bool = True,
    label_pad_value: int | None = None,
) -> v2.Compose:
    """The official training pipeline (reference §8.3) as a ``v2.Compose`` over ``(image, mask)``.

    Returns ``(image float32 (3, crop, crop), label int64 (crop, crop))``: normalised image padded with 0,
    label padded with ``ignore_index`` (or ``label_pad_value``, which lets self-training on all unlabelled pixels
    tell padding from ignore). ``photometric=False`` drops the colour distortion (for tests/debugging).
    """
    mean, std = normalization_stats(normalization)
    steps: list[v2.Transform] = [
        RandomScaleResize(scale, ratio_range),
        RandomCropCatMax(crop_size, cat_max_ratio, ignore_index),
        v2.RandomHorizontalFlip(p=flip_prob),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += _finish(mean, std)
    steps += [PadToSize(crop_size, fill=0.0, seg_fill=ignore_index if label_pad_value is None else label_pad_value), v2.ToPureTensor()]
    return v2.Compose(steps)


def test_transforms(short_side: int = 512, normalization: str = "imagenet") -> v2.Compose:
    """The official test pipeline (reference §8.4): short side -> ``short_side`` (bilinear, long side
    proportional, no cap), normalise. The label is returned at its original size as int64."""
    mean, std = normalization_stats(normalization)
    return v2.Compose([ResizeShortSide(short_side), *_finish(mean, std), v2.ToPureTensor()])


# pytest would otherwise try to collect ``test_transforms`` when this module is imported by a test file.
test_transforms.__test__ = False  # type: ignore[attr-defined]

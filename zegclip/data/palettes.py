"""Label colours: the PASCAL VOC colour map, the package's one label palette, and VOC colour targets -> indices."""

from __future__ import annotations

import numpy as np

__all__ = ["voc_palette", "class_colours", "png_palette", "voc_color_to_index"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map: (n, 3) uint8, class k's colour from the bits of k."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    return palette


def class_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 colours for class ids 0..n-1 of a label map: class k gets the VOC colour of raw id k + 1 (raw 0
    is VOC's black background, which a reduced label map no longer has). The one label palette of the package:
    predictions, overlays and the saved sample PNGs use it."""
    return voc_palette(n + 1)[1:]


def png_palette() -> list[int]:
    """The 768-entry PIL palette of a label PNG (mode ``P``): :func:`class_colours` for ids 0..254, white for 255
    (ignore)."""
    return [*class_colours(255).reshape(-1).tolist(), 255, 255, 255]


_VOC_NUM_RAW = 21  # background + 20 classes


def voc_color_to_index(rgb: np.ndarray, *, name: str | None = None) -> np.ndarray:
    """Colour-coded VOC target (H, W, 3) -> raw index map (H, W) uint8: 0 background, 1..20 classes,
    255 for the void/boundary colour (224, 224, 192). Any other colour raises ValueError."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
    arr = arr[..., :3].astype(np.int64)
    codes = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    palette = voc_palette(256).astype(np.int64)
    lut = {int((p[0] << 16) | (p[1] << 8) | p[2]): k for k, p in enumerate(palette[:_VOC_NUM_RAW])}
    lut[(224 << 16) | (224 << 8) | 192] = 255
    uniq, inverse = np.unique(codes.reshape(-1), return_inverse=True)
    unknown = [int(u) for u in uniq if int(u) not in lut]
    if unknown:
        cols = ", ".join(f"({u >> 16},{(u >> 8) & 255},{u & 255})" for u in unknown[:10])
        where = f" in {name}" if name else ""
        raise ValueError(f"unknown VOC colour(s){where}: {cols}{' ...' if len(unknown) > 10 else ''}")
    mapped = np.array([lut[int(u)] for u in uniq], dtype=np.uint8)
    return mapped[inverse].reshape(codes.shape)

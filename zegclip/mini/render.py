"""Rendering the mini world: procedurally generated scenes with exact per-pixel masks (no files, deterministic).

Scenes (:func:`render_scene`) are small RGB images (64 px by default): a neutral-grey textured background whose
pixels are unlabelled (255, like VOC's ignored background), optional stuff regions (worlds whose split has stuff
classes, e.g. ``mini-coco``) and 1-4 objects with light shading and brightness noise, drawn in order, so later
objects occlude earlier ones. Every shape is rasterised as a boolean mask first and then painted through that mask,
so the label is exactly the set of pixels drawn for each region. Everything is a function of
``(world.name, seed, index)``.

Two rendering styles exist: ``"a"`` (smooth grey backgrounds, no outlines, objects 14-34 px at 64 px) and ``"b"``
(checkerboard backgrounds, thick dark outlines, objects 12-28 px) -- the second is the "other dataset" of the
cross-dataset experiment (paper Table 7).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .grammar import COLOURS, SHAPES, TEXTURES, TINTS, World, get_world

__all__ = [
    "GENERATOR_VERSION",
    "render_scene",
    "render_single",
    "colourise_label",
]

#: The version of the scenes rendered here; run configs and results record it (see zegclip.mini.dataset).
GENERATOR_VERSION = 3

COLOUR_JITTER = 12  # max per-channel deviation of an object's colour from its base colour
_SHADE_MAX = 0.10  # max relative brightness change of the linear shading across an object (radius units)
_NOISE_MAX = 0.05  # max relative per-pixel brightness noise on objects (clipped Gaussian)
# Amplitude of the shape's surface pattern (brightness only). Version 2 had 0.22 and one texture for every shape.
# Chosen on controls only (issue 20, calibration log `pretrain-probes`): with 500-step mini-CLIPs, the v3 patterns
# at 0.22 / 0.45 / 0.60 / 0.80 gave a frozen-patch-token linear probe shape accuracy of 42 / 57 / 64 / 73 % and an
# image-level zero-shot top-1 (control 5) of 38 / 67 / 89 / 99 %; the hue of every class stays exact at 0.80.
_PATTERN_AMP = 0.80
_PATTERN_PERIOD = 5.0  # its period in pixels at 64 px
_OUTLINE_GAIN = 0.45  # style b: outline pixels are the object colour times this factor (same hue, darker)


@dataclass(frozen=True)
class _StyleParams:
    sizes: tuple[float, float]  # object size (px at 64 px) in scenes
    single_sizes: tuple[float, float]  # object size in render_single
    outline: int  # outline width (px at 64 px); 0 = none
    background: str  # "smooth" | "checker"


_STYLES: dict[str, _StyleParams] = {  # one entry per name in STYLES (World checks the name)
    "a": _StyleParams(sizes=(14.0, 34.0), single_sizes=(24.0, 44.0), outline=0, background="smooth"),
    "b": _StyleParams(sizes=(12.0, 28.0), single_sizes=(20.0, 40.0), outline=2, background="checker"),
}


# ============================================================================ rendering helpers
@lru_cache(maxsize=8)
def _grids(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) of a ``size`` x ``size`` image, float32."""
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.ascontiguousarray(np.broadcast_to(c[:, None], (size, size))), np.ascontiguousarray(
        np.broadcast_to(c[None, :], (size, size)))


_NOISE_BANK = 512


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed bank of standard-normal noise (float32); images take random windows of it (fast, deterministic)."""
    return np.random.default_rng(20240601).standard_normal((_NOISE_BANK, _NOISE_BANK), dtype=np.float32)


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bank = _noise_bank()
    oy = int(rng.integers(0, _NOISE_BANK - h + 1))
    ox = int(rng.integers(0, _NOISE_BANK - w + 1))
    return bank[oy:oy + h, ox:ox + w]


@lru_cache(maxsize=8)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """(size, cells) bilinear interpolation matrix (smooth low-frequency textures with two small matmuls)."""
    pos = (np.arange(size, dtype=np.float64) + 0.5) / size * (cells - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    frac = pos - lo
    m = np.zeros((size, cells), dtype=np.float32)
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _background(world: World, rng: np.random.Generator, params: _StyleParams) -> np.ndarray:
    """A neutral-grey (achromatic) background, (S, S) float32; no stripes/dots/waves so it never mimics stuff."""
    s = world.image_size
    ys, xs = _grids(s)
    level = rng.uniform(95.0, 160.0)
    theta = rng.uniform(0.0, 2 * np.pi)
    amp = rng.uniform(0.0, 35.0)
    cells = rng.normal(0.0, 9.0, size=(5, 5)).astype(np.float32)
    noise = _noise(rng, s, s)
    up = _upsampler(s, 5)
    g = (np.float32(level) + np.float32(amp / s) * ((xs - s / 2) * np.float32(np.cos(theta))
                                                  + (ys - s / 2) * np.float32(np.sin(theta))))
    g += up @ cells @ up.T
    if params.background == "checker":
        cell = rng.uniform(5.0, 10.0) * s / 64
        contrast = rng.uniform(14.0, 24.0)
        if rng.random() < 0.5:
            u, v = xs, ys
        else:
            u, v = (xs + ys) * np.float32(0.7071), (xs - ys) * np.float32(0.7071)
        ox, oy = rng.uniform(0.0, cell, size=2)
        inv = np.float32(1.0 / cell)
        parity = (np.floor((u + np.float32(ox)) * inv) + np.floor((v + np.float32(oy)) * inv)) % 2
        g += np.float32(contrast) * (parity - np.float32(0.5))
        g += np.float32(7.0) * noise
    else:
        g += np.float32(5.0) * noise
    return g


def _stuff_texture(texture: str, tint: str, rng: np.random.Generator, s: int) -> np.ndarray:
    """The full-image pattern of a stuff class, (S, S) float32 greys."""
    ys, xs = _grids(s)
    ground, pattern = TINTS[tint]
    scale = s / 64
    theta = rng.uniform(0.0, np.pi)
    c, sn = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    if texture == "stripes":
        period = rng.uniform(5.0, 8.0) * scale
        u = xs * c + ys * sn + np.float32(rng.uniform(0.0, period))
        on = (u % np.float32(period)) < np.float32(period / 2)
    elif texture == "waves":
        period = rng.uniform(6.0, 9.0) * scale
        wavelength = rng.uniform(12.0, 20.0) * scale
        amp = rng.uniform(1.8, 3.0) * scale
        u = xs * c + ys * sn
        v = -xs * sn + ys * c
        w = u + np.float32(amp) * np.sin(v * np.float32(2 * np.pi / wavelength)) + np.float32(rng.uniform(0.0, period))
        on = (w % np.float32(period)) < np.float32(period * 0.45)
    elif texture == "dots":
        spacing = rng.uniform(5.5, 7.5) * scale
        radius = np.float32(min(spacing * 0.32, rng.uniform(1.5, 2.1) * scale))
        oy, ox = rng.uniform(0.0, spacing, size=2)
        dy = (ys + np.float32(oy)) % np.float32(spacing) - np.float32(spacing / 2)
        dx = (xs + np.float32(ox)) % np.float32(spacing) - np.float32(spacing / 2)
        on = dy * dy + dx * dx <= radius * radius
    else:  # pragma: no cover - names are validated by parse_class_name
        raise ValueError(f"unknown texture {texture!r}")
    base = np.float32(ground + rng.uniform(-8.0, 8.0))
    return np.where(on, np.float32(pattern - ground), np.float32(0.0)) + base


def _region(rng: np.random.Generator, s: int) -> np.ndarray:
    """A large stuff region: a rectangle, a half-plane or a band; (S, S) bool."""
    ys, xs = _grids(s)
    kind = rng.integers(0, 3)
    if kind == 0:  # rectangle
        h, w = rng.uniform(0.35, 0.9, size=2) * s
        y0, x0 = rng.uniform(-0.1 * s, s - 0.7 * np.array([h, w]))
        return (ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)
    theta = rng.uniform(0.0, 2 * np.pi)
    c, sn = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    cy, cx = rng.uniform(0.3, 0.7, size=2) * s
    d = (xs - np.float32(cx)) * c + (ys - np.float32(cy)) * sn
    if kind == 1:  # half-plane
        return d > 0
    half = np.float32(rng.uniform(0.12, 0.25) * s)  # band
    return np.abs(d) < half


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` with "radius" ``r`` given pixel offsets from the centre."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        a = 0.8 * r
        return (np.abs(dx) <= a) & (np.abs(dy) <= a)
    if shape == "triangle":  # upright: apex at -r, base at +0.75 r with half-width 0.95 r
        return (dy <= 0.75 * r) & (np.abs(dx) <= (dy + r) * (0.95 / 1.75))
    if shape == "cross":  # a plus sign
        a, w = 0.92 * r, 0.3 * r
        adx, ady = np.abs(dx), np.abs(dy)
        return ((adx <= w) & (ady <= a)) | ((ady <= w) & (adx <= a))
    if shape == "star":  # five points, one pointing up; inner radius 0.45 r
        rho = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dx, -dy)
        sector = np.float32(2 * np.pi / 5)
        phi = np.abs((theta + sector / 2) % sector - sector / 2)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        ri = 0.45 * r
        bx, by = ri * np.cos(np.pi / 5), ri * np.sin(np.pi / 5)
        return (bx - r) * py - by * (px - r) >= 0
    raise ValueError(f"unknown shape {shape!r}")  # pragma: no cover


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        m = out
        e = m.copy()
        e[1:, :] &= m[:-1, :]
        e[:-1, :] &= m[1:, :]
        e[:, 1:] &= m[:, :-1]
        e[:, :-1] &= m[:, 1:]
        e[0, :] = e[-1, :] = False
        e[:, 0] = e[:, -1] = False
        out = e
    return out


def _paint_object(
    world: World,
    params: _StyleParams,
    rng: np.random.Generator,
    img: np.ndarray,
    class_id: int,
    cy: float,
    cx: float,
    r: float,
    shading: bool,
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Paint one object into ``img`` (S, S, 3) float32; return its mask inside its box and the box."""
    s = world.image_size
    colour, shape = world.attributes(class_id)
    # The same random draws happen with and without shading, so the layout never depends on the flag.
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    shade_dir = rng.uniform(0.0, 2 * np.pi)
    shade_amp = rng.uniform(0.3, 1.0) * _SHADE_MAX
    y0, y1 = max(0, int(np.floor(cy - r)) - 1), min(s, int(np.ceil(cy + r)) + 2)
    x0, x1 = max(0, int(np.floor(cx - r)) - 1), min(s, int(np.ceil(cx + r)) + 2)
    ys, xs = _grids(s)
    dy = ys[y0:y1, x0:x1] - np.float32(cy)
    dx = xs[y0:y1, x0:x1] - np.float32(cx)
    mask = _shape_mask(shape, dy, dx, np.float32(r))
    noise = _noise(rng, y1 - y0, x1 - x0)
    base = np.clip(np.asarray(COLOURS[colour], dtype=np.float32) + jitter.astype(np.float32), 0, 255)
    if shading:
        # Brightness-only variation (a common factor on all three channels), so the hue stays the class hue.
        along = dx * np.float32(np.cos(shade_dir)) + dy * np.float32(np.sin(shade_dir))
        gain = 1.0 + np.float32(shade_amp / r) * along
        gain += np.float32(_NOISE_MAX / 2.5) * np.clip(noise, -2.5, 2.5)
        gain += np.float32(_PATTERN_AMP) * _surface_pattern(shape, dy, dx, _PATTERN_PERIOD * s / 64)
    else:
        gain = np.ones_like(dx)
    gain = np.minimum(gain, np.float32(254.0 / float(base.max())))  # no clipping: the hue stays exact
    if params.outline:
        width = max(1, round(params.outline * s / 64))
        edge = mask & ~_erode(mask, width)
        gain = np.where(edge, np.float32(_OUTLINE_GAIN) * gain, gain)
    box = img[y0:y1, x0:x1]
    box[mask] = (gain[..., None] * base)[mask]
    return mask, (slice(y0, y1), slice(x0, x1))


def _surface_pattern(shape: str, dy: np.ndarray, dx: np.ndarray, period: float) -> np.ndarray:
    """A brightness pattern characteristic of each shape (about [-1, 1]), so that the *inside* of an object tells
    its shape, as the parts of a real object (fur, wheels, leaves) tell its class. Flip-symmetric patterns only
    (training flips images): circle bright dots, ring dark dots, square axis-aligned grid, triangle diagonal grid,
    cross horizontal stripes, star vertical stripes.

    Why these (generator version 3): version 2 drew concentric rings (circle) and spokes (ring), which look like
    stripes inside one 8 x 8 patch; a linear probe of frozen mini-CLIP patch tokens then told shapes apart in only
    68 % of patches. Every pattern here is a lattice of its own kind, identifiable within one patch (issue 20).
    """
    k = np.float32(2 * np.pi / period)
    if shape in ("circle", "ring"):
        bump = (np.cos(k * dx) + 1) * (np.cos(k * dy) + 1) / 4  # 1 on a square lattice of points, 0 between
        dots = 2 * bump * bump - np.float32(0.5)
        return dots if shape == "circle" else -dots
    if shape == "square":
        return np.cos(k * dx) * np.cos(k * dy)
    if shape == "triangle":
        return np.cos(k * (dx + dy) / np.float32(1.4142)) * np.cos(k * (dx - dy) / np.float32(1.4142))
    if shape == "cross":
        return np.cos(k * dy)
    return np.cos(k * dx)  # star


def _rng(world: World, seed: int, index: int, tag: str = "") -> np.random.Generator:
    for what, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{what} must be a non-negative integer, got {v!r}")
    return np.random.default_rng([int(seed), int(index), zlib.crc32((world.name + tag).encode("utf-8"))])


def _finish(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ============================================================================ public rendering
def render_scene(
    world: World | str,
    seed: int,
    index: int,
    *,
    shading: bool = True,
    return_masks: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[int]] | tuple[np.ndarray, np.ndarray, list[int], list[tuple[int, np.ndarray]]]:
    """Scene ``index`` of stream ``seed``: ``(image uint8 (S,S,3), label uint8 (S,S), present class ids)``.

    The label holds the class id of every pixel and ``ignore_index`` (255) on the unlabelled background;
    ``present`` lists the ids visible in the label, ascending. ``shading=False`` paints each object in its flat
    (jittered) colour without shading or noise -- same layout and label, for tests. ``return_masks=True`` adds
    a fourth element: ``[(class_id, full (S,S) bool mask), ...]`` in drawing order (stuff regions, then objects;
    masks before occlusion).
    """
    world = get_world(world)
    rng = _rng(world, seed, index)
    params = _STYLES[world.style]
    s = world.image_size
    label = np.full((s, s), world.ignore_index, dtype=np.uint8)
    grey = _background(world, rng, params)
    drawn: list[tuple[int, np.ndarray]] = []

    stuff = world.stuff
    if stuff:
        n_regions = int(rng.integers(1, min(3, len(stuff)) + 1))
        for cid in rng.choice(np.asarray(stuff), size=n_regions, replace=False):
            cid = int(cid)
            tint, texture = world.attributes(cid)
            region = _region(rng, s)
            tex = _stuff_texture(texture, tint, rng, s)
            tex += np.float32(3.0) * _noise(rng, s, s)
            grey = np.where(region, tex, grey)
            label[region] = cid
            if return_masks:
                drawn.append((cid, region))
    img = np.repeat(grey[:, :, None], 3, axis=2)

    n_objects = int(rng.integers(world.min_objects, world.max_objects + 1))
    scale = s / 64
    placed: list[tuple[float, float, float]] = []
    things = world.things
    for _ in range(n_objects):
        cid = int(things[int(rng.integers(0, len(things)))])
        r = float(rng.uniform(*params.sizes)) * scale / 2
        ok = False
        for _try in range(10):
            cy, cx = rng.uniform(r + 1, s - r - 1, size=2)
            # Limit occlusion: the new object may cover at most about half of an earlier one and vice versa.
            ok = all((cy - py) ** 2 + (cx - px) ** 2 >= (0.9 * max(r, pr) + 0.45 * min(r, pr)) ** 2
                     for py, px, pr in placed)
            if ok:
                break
        if not ok:
            continue
        placed.append((cy, cx, r))
        mask, (sy, sx) = _paint_object(world, params, rng, img, cid, cy, cx, r, shading)
        label[sy, sx][mask] = cid
        if return_masks:
            full = np.zeros((s, s), dtype=bool)
            full[sy, sx] = mask
            drawn.append((cid, full))

    present = [int(c) for c in np.unique(label) if c != world.ignore_index]
    if return_masks:
        return _finish(img), label, present, drawn
    return _finish(img), label, present


def render_single(
    world: World | str,
    seed: int,
    index: int,
    class_id: int | None = None,
    *,
    shading: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One large object near the centre over a plain background (no stuff): ``(image, label, class_id)``.

    ``class_id`` (a thing class) is drawn uniformly from the world's things when None. Used for image-level
    zero-shot accuracy of the mini-CLIP.
    """
    world = get_world(world)
    rng = _rng(world, seed, index, ":single")
    params = _STYLES[world.style]
    s = world.image_size
    things = world.things
    drawn_id = int(things[int(rng.integers(0, len(things)))])
    if class_id is None:
        class_id = drawn_id
    elif world.kind(class_id) != "thing":
        raise ValueError(f"world {world.name!r}: render_single needs an object class, got stuff class "
                         f"{world.classes[class_id]!r} (id {class_id})")
    class_id = int(class_id)
    img = np.repeat(_background(world, rng, params)[:, :, None], 3, axis=2)
    r = float(rng.uniform(*params.single_sizes)) * s / 64 / 2
    cy, cx = s / 2 + rng.uniform(-0.12, 0.12, size=2) * s
    cy, cx = float(np.clip(cy, r + 1, s - r - 1)), float(np.clip(cx, r + 1, s - r - 1))
    mask, (sy, sx) = _paint_object(world, params, rng, img, class_id, cy, cx, r, shading)
    label = np.full((s, s), world.ignore_index, dtype=np.uint8)
    label[sy, sx][mask] = class_id
    return _finish(img), label, class_id


def colourise_label(world: World | str, label: np.ndarray) -> np.ndarray:
    """An RGB picture of a label map for previews: things in their colour, stuff in its grey, ignore black."""
    world = get_world(world)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for cid in range(world.num_classes):
        a, _ = world.attributes(cid)
        b = world.attributes(cid)[1]
        if world.kind(cid) == "thing":
            # Vary brightness a little with the shape so touching same-colour classes stay distinguishable.
            f = 1.0 - 0.1 * SHAPES.index(b)
            lut[cid] = np.clip(np.asarray(COLOURS[a], dtype=float) * f, 0, 255).astype(np.uint8)
        else:  # six distinct greys: light tints bright, dark tints dim, one step per texture
            lut[cid] = ((240 if a == "light" else 150) - 25 * TEXTURES.index(b),) * 3
    return lut[np.asarray(label, dtype=np.uint8)]

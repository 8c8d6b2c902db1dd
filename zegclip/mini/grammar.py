"""The mini world's vocabulary and its worlds: class names, compositional splits and the packaged worlds.

Object ("thing") classes are named ``"<colour> <shape>"`` (e.g. ``"red circle"``), "stuff" classes
``"<tint> <texture>"`` (e.g. ``"dark dots"``). A class split is *compositional* when every attribute of an unseen
class (its colour and shape, or its tint and texture) also occurs in some seen class -- the analogue of real CLIP
having seen "sheep" images and words even though the segmentation training set never labels sheep.

A :class:`World` is a compositional class split and the rendering style of its scenes; :func:`get_world` gives the
packaged ones (``mini-voc``, ``mini-coco``, ``mini-voc-b``). Scenes are drawn by :mod:`zegclip.mini.render`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..data.classes import ClassSplit, load_class_split
from ..data.segmentation import ClassSplitMixin

__all__ = [
    "COLOURS",
    "SHAPES",
    "TINTS",
    "TEXTURES",
    "STYLES",
    "WORLD_NAMES",
    "World",
    "get_world",
    "check_compositional",
    "parse_class_name",
]

#: Object colours (RGB base values; each object jitters them by up to +-12 per channel).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "orange": (240, 140, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring")
#: Stuff tints: (ground grey, pattern grey). Achromatic, so a stuff region never looks like an object colour.
TINTS: dict[str, tuple[int, int]] = {"light": (205, 165), "dark": (60, 105)}
TEXTURES: tuple[str, ...] = ("stripes", "dots", "waves")
STYLES: tuple[str, ...] = ("a", "b")


# ============================================================================ class names and splits
def parse_class_name(name: str) -> tuple[str, str, str]:
    """``(kind, first, second)`` of a mini-world class name: ``("thing", colour, shape)`` or
    ``("stuff", tint, texture)``. ValueError for a name outside the mini-world vocabulary."""
    parts = name.split() if isinstance(name, str) else []
    if len(parts) == 2:
        a, b = parts
        if a in COLOURS and b in SHAPES:
            return "thing", a, b
        if a in TINTS and b in TEXTURES:
            return "stuff", a, b
    raise ValueError(
        f"{name!r} is not a mini-world class name; expected '<colour> <shape>' (colours {list(COLOURS)}, shapes "
        f"{list(SHAPES)}) or '<tint> <texture>' (tints {list(TINTS)}, textures {list(TEXTURES)})"
    )


_ATTRIBUTE_KINDS = {"thing": ("colour", "shape"), "stuff": ("tint", "texture")}


def check_compositional(split: ClassSplit | Mapping[str, Any] | Any) -> None:
    """Raise ValueError unless ``split`` is a valid mini-world split in which every attribute of every unseen
    class (colour/shape for things, tint/texture for stuff) also occurs in at least one seen class.

    ``split`` is a :class:`ClassSplit`, a mapping with ``classes``/``seen``/``unseen`` (the JSON schema) or any
    object with those attributes. An empty class list or an empty seen set is rejected too.
    """
    if isinstance(split, Mapping):
        name, classes, seen, unseen = (split.get("name", "<split>"), split.get("classes") or (),
                                       split.get("seen") or (), split.get("unseen") or ())
    else:
        name = getattr(split, "name", "<split>")
        classes, seen, unseen = (getattr(split, k, None) or () for k in ("classes", "seen", "unseen"))
    classes, seen, unseen = list(classes), list(seen), list(unseen)
    if not classes:
        raise ValueError(f"split {name!r} is empty: it has no classes")
    if not seen:
        raise ValueError(f"split {name!r} is empty: it has no seen classes (every unseen attribute must be seen)")
    for i in seen + unseen:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(classes):
            raise ValueError(f"split {name!r}: class id {i!r} is out of range [0, {len(classes)})")
    parsed = []
    for c in classes:
        try:
            parsed.append(parse_class_name(c))
        except ValueError as e:
            raise ValueError(f"split {name!r}: {e}") from None
    seen_attrs: set[tuple[str, int, str]] = set()  # (kind, position, value)
    for i in seen:
        kind, a, b = parsed[i]
        seen_attrs.update({(kind, 0, a), (kind, 1, b)})
    for i in unseen:
        kind, a, b = parsed[i]
        for pos, value in ((0, a), (1, b)):
            if (kind, pos, value) not in seen_attrs:
                attr = _ATTRIBUTE_KINDS[kind][pos]
                raise ValueError(
                    f"split {name!r} is impossible: unseen class {classes[i]!r} has {attr} {value!r}, which no seen "
                    f"{kind} class has (every attribute of an unseen class must occur in a seen class)"
                )


# ============================================================================ worlds
@dataclass(frozen=True)
class World(ClassSplitMixin):
    """A mini world: its class split and how its scenes are rendered.

    ``style`` is ``"a"`` (default) or ``"b"`` (another rendering style for cross-dataset tests); objects per scene
    are drawn uniformly from ``[min_objects, max_objects]``.
    """

    name: str
    split: ClassSplit
    style: str = "a"
    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.split, ClassSplit):
            raise TypeError(f"world {self.name!r}: split must be a ClassSplit, got {type(self.split).__name__}")
        if self.style not in STYLES:  # the rendering parameters of each: render._STYLES
            raise ValueError(f"world {self.name!r}: style must be one of {list(STYLES)}, got {self.style!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"world {self.name!r}: image_size must be an integer >= 32, got {self.image_size!r}")
        if not (isinstance(self.min_objects, int) and isinstance(self.max_objects, int)
                and 1 <= self.min_objects <= self.max_objects <= 16):
            raise ValueError(f"world {self.name!r}: need 1 <= min_objects <= max_objects <= 16, "
                             f"got {self.min_objects!r}, {self.max_objects!r}")
        check_compositional(self.split)
        if not 0 <= self.split.ignore_index <= 255:
            raise ValueError(f"world {self.name!r}: ignore index {self.split.ignore_index} does not fit a uint8 label")
        if len(self.split.classes) > 255:
            raise ValueError(f"world {self.name!r}: at most 255 classes fit a uint8 label")
        if not self.things:
            raise ValueError(f"world {self.name!r}: the split has no object (colour-shape) classes")

    @property
    def class_split(self) -> ClassSplit:
        """The split (``classes``, ``num_classes`` and ``ignore_index`` come from it via the mixin)."""
        return self.split

    @property
    def things(self) -> tuple[int, ...]:
        """Ids of the object (colour-shape) classes."""
        return _parsed(self.split.classes)[1]

    @property
    def stuff(self) -> tuple[int, ...]:
        """Ids of the stuff (tint-texture) classes."""
        return _parsed(self.split.classes)[2]

    def kind(self, class_id: int) -> str:
        """``"thing"`` or ``"stuff"``."""
        return _parsed(self.split.classes)[0][self._check_id(class_id)][0]

    def attributes(self, class_id: int) -> tuple[str, str]:
        """``(colour, shape)`` of a thing class, ``(tint, texture)`` of a stuff class."""
        _, a, b = _parsed(self.split.classes)[0][self._check_id(class_id)]
        return a, b

    def _check_id(self, class_id: int) -> int:
        if (isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer))
                or not 0 <= class_id < self.num_classes):
            raise ValueError(f"world {self.name!r}: class id {class_id!r} is out of range [0, {self.num_classes})")
        return int(class_id)


@lru_cache(maxsize=64)
def _parsed(classes: tuple[str, ...]) -> tuple[tuple[tuple[str, str, str], ...], tuple[int, ...], tuple[int, ...]]:
    parsed = tuple(parse_class_name(c) for c in classes)
    things = tuple(i for i, p in enumerate(parsed) if p[0] == "thing")
    stuff = tuple(i for i, p in enumerate(parsed) if p[0] == "stuff")
    return parsed, things, stuff


_WORLD_SPECS: dict[str, tuple[str, str]] = {
    "mini-voc": ("mini-voc", "a"),
    "mini-coco": ("mini-coco", "a"),
    "mini-voc-b": ("mini-voc", "b"),
}
WORLD_NAMES: tuple[str, ...] = tuple(_WORLD_SPECS)


def get_world(name: str | World) -> World:
    """The packaged world ``name`` (``mini-voc``, ``mini-coco``, ``mini-voc-b``); a World passes through."""
    if isinstance(name, World):
        return name
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _WORLD_SPECS:
        raise ValueError(f"unknown mini world {name!r}; known: {', '.join(WORLD_NAMES)}")
    return _packaged_world(key)


@lru_cache(maxsize=None)
def _packaged_world(key: str) -> World:
    split_name, style = _WORLD_SPECS[key]
    return World(name=key, split=load_class_split(split_name), style=style)
